"""The feed: the selected rows of an output folder, in feed order, followed while it grows.

See README.md, "The feed contract", for what is read, in which order, how ranks split it and
what a position token means; this module implements exactly that.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Set, Union

import pyarrow.parquet as pq

from .errors import FeedError, PositionError, ShardMismatchError
from .manifest import Entry, ManifestReader
from .split import check_rank, fnv1a32

TOKEN_VERSION = 1

#: a position token, or its JSON text
Token = Union[Mapping[str, Any], str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_token(token: Token) -> Dict[str, Any]:
    """Validates a position token (a dict, or its JSON text) and returns it as a fresh dict."""
    if isinstance(token, (str, bytes)):
        try:
            token = json.loads(token)
        except ValueError as err:
            raise PositionError(f"position token is not JSON: {err}") from None
    if not isinstance(token, Mapping):
        raise PositionError(f"position token must be an object, got {type(token).__name__}")
    if token.get("v") != TOKEN_VERSION:
        raise PositionError(f"position token version {token.get('v')!r} is not {TOKEN_VERSION}")
    rank: Any = token.get("rank")
    world_size: Any = token.get("world_size")
    if not _is_int(rank) or not _is_int(world_size) or not 0 <= rank < world_size:
        raise PositionError(f"position token: bad rank/world_size {rank!r}/{world_size!r}")
    done = token.get("done")
    if not isinstance(done, Mapping) or not all(
        isinstance(k, str) and _is_int(v) for k, v in done.items()
    ):
        raise PositionError("position token: `done` must map instance names to integer seqs")
    shard: Any = token.get("shard")
    row: Any = token.get("row")
    if shard is not None and not isinstance(shard, str):
        raise PositionError(f"position token: `shard` must be a file name or null, got {shard!r}")
    if not _is_int(row) or row < 0 or (shard is None and row != 0):
        raise PositionError(f"position token: bad `row` {row!r} for shard {shard!r}")
    return {
        "v": TOKEN_VERSION,
        "rank": rank,
        "world_size": world_size,
        "done": dict(done),
        "shard": shard,
        "row": row,
    }


class Feed:
    """The selected rows of one mmssr output folder, as one rank (of `world_size`) reads them.

    `out_dir` is the folder `mmssr curate --out` writes (it holds selected/ and manifests/).
    `start` is a position token from `position()` of an earlier Feed with the same rank and
    world_size: the feed continues exactly after the row it describes.

    A Feed keeps its position: calling `rows()` again (after a `follow=False` pass ended, or
    after the caller stopped iterating) continues where the last pass stopped. Only one pass
    may be running at a time.
    """

    def __init__(
        self,
        out_dir: Union[str, "os.PathLike[str]"],
        rank: int = 0,
        world_size: int = 1,
        start: Optional[Token] = None,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 1024,
        columns: Optional[Sequence[str]] = None,
        verify_sha256: bool = False,
    ) -> None:
        check_rank(rank, world_size)
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.out_dir = os.fspath(out_dir)
        self.rank = rank
        self.world_size = world_size
        self.poll_interval = float(poll_interval)
        self.batch_size = int(batch_size)
        self.columns: Optional[List[str]] = None if columns is None else list(columns)
        self.verify_sha256 = verify_sha256
        # which shards are ours: fnv1a32(file) % modulus in parts (one part for a plain rank)
        self._modulus = world_size
        self._parts: FrozenSet[int] = frozenset((rank,))
        self._reader = ManifestReader(self.out_dir)
        self._queue: Deque[Entry] = deque()
        self._seen: Set[str] = set()
        #: id() of queued entries that name a file an earlier entry named (skipped when passed)
        self._dups: Set[int] = set()
        self._done: Dict[str, int] = {}
        self._shard: Optional[str] = None
        self._row = 0
        self._resume_shard: Optional[str] = None
        self._active = False
        self._lock = threading.Lock()
        if start is not None:
            tok = parse_token(start)
            if tok["rank"] != rank or tok["world_size"] != world_size:
                raise PositionError(
                    f"position token belongs to rank {tok['rank']} of world_size "
                    f"{tok['world_size']}, this Feed is rank {rank} of {world_size}: a token "
                    "resumes only the rank and world size that wrote it"
                )
            self._done = dict(tok["done"])
            self._shard = tok["shard"]
            self._row = tok["row"]
            self._resume_shard = tok["shard"]

    @classmethod
    def _over_parts(
        cls, out_dir: Union[str, "os.PathLike[str]"], parts: Sequence[int], modulus: int, **kw: Any
    ) -> "Feed":
        """A feed of the shards whose owner index (over `modulus`) is any of `parts`: for
        generators that a framework hands a list of parts (Hugging Face datasets' shards).
        Its position is not a token of the contract, so position() refuses."""
        for p in parts:
            check_rank(p, modulus)
        feed = cls(out_dir, 0, 1, **kw)
        feed._modulus = modulus
        feed._parts = frozenset(parts)
        feed.rank = -1
        feed.world_size = modulus
        return feed

    # -------------------------------------------------------------------------------------
    # position

    def position(self) -> Dict[str, Any]:
        """A JSON-serializable token for the point after the last row yielded. Give it to
        `Feed(out_dir, rank, world_size, start=token)` to continue exactly there."""
        if len(self._parts) != 1 or self.rank < 0:
            raise FeedError("a feed over several parts has no position token")
        return {
            "v": TOKEN_VERSION,
            "rank": self.rank,
            "world_size": self.world_size,
            "done": dict(sorted(self._done.items())),
            "shard": self._shard,
            "row": self._row,
        }

    def owns(self, file: str) -> bool:
        """Whether the shard named `file` (a manifest entry's `file`) is this reader's."""
        return fnv1a32(file.encode("utf-8")) % self._modulus in self._parts

    # -------------------------------------------------------------------------------------
    # rows

    def rows(
        self,
        follow: bool = False,
        *,
        stop_event: Optional[threading.Event] = None,
        idle_timeout: Optional[float] = None,
    ) -> Iterator[Dict[str, Any]]:
        """Yields this rank's selected rows as dicts, in feed order.

        follow=False: what the manifests publish when iteration starts, then it ends.
        follow=True: when everything published is read, it polls the manifests every
        `poll_interval` seconds and yields new shards as they are published. It ends when
        `stop_event` is set (checked while waiting, so a set event ends it within one poll
        interval) or after `idle_timeout` seconds of waiting with nothing new for this rank;
        a trainer may equally just stop iterating (the position stays exact).

        Each row: every column of the selected file (those of `columns` when given), plus
        `scores` ({capability: float or None}, from the score_<capability> columns) and
        `origin` ({"topic", "partition", "offset"}).
        """
        if not follow and not os.path.isdir(self.out_dir):
            raise FileNotFoundError(f"{self.out_dir}: no such output folder")
        if idle_timeout is not None and idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0, got {idle_timeout}")
        return self._iterate(follow, stop_event, idle_timeout)

    def _iterate(
        self, follow: bool, stop_event: Optional[threading.Event], idle_timeout: Optional[float]
    ) -> Iterator[Dict[str, Any]]:
        with self._lock:
            if self._active:
                raise FeedError("this Feed is already being iterated (one pass at a time)")
            self._active = True
        try:
            idle_since = time.monotonic()
            while True:
                self._refresh()
                while self._queue:
                    entry = self._queue[0]
                    if self.owns(entry.file) and id(entry) not in self._dups:
                        for row in self._entry_rows(entry):
                            yield row
                            idle_since = time.monotonic()
                    else:
                        self._finish(entry)
                    self._dups.discard(id(entry))
                    self._queue.popleft()
                if not follow:
                    return
                if stop_event is not None and stop_event.is_set():
                    return
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return
                if stop_event is not None:
                    if stop_event.wait(self.poll_interval):
                        return
                else:
                    time.sleep(self.poll_interval)
        finally:
            self._active = False

    def _refresh(self) -> None:
        """Appends the newly published, unfinished entries to the queue (feed order)."""
        new = self._reader.poll()
        # files of entries already done count as seen first, so that a second entry naming
        # one of them is passed over whatever the order of this poll
        for e in new:
            if e.seq <= self._done.get(e.instance, -1):
                self._seen.add(e.file)
        fresh: List[Entry] = []
        for e in new:
            if e.seq <= self._done.get(e.instance, -1):
                continue
            if e.file in self._seen:
                self._dups.add(id(e))  # named twice: the first one counts, this one is skipped
            self._seen.add(e.file)
            fresh.append(e)
        if self._resume_shard is not None:
            shard, self._resume_shard = self._resume_shard, None
            at = next(
                (i for i, e in enumerate(fresh) if e.file == shard and id(e) not in self._dups), None
            )
            if at is None:
                raise PositionError(
                    f"position token: its shard {shard} is not among the published, unfinished "
                    f"shards of {self.out_dir} (another folder, or an inconsistent token)"
                )
            entry = fresh.pop(at)
            if not self.owns(entry.file):
                raise PositionError(f"position token: shard {shard} is not rank {self.rank}'s")
            if self._row >= entry.rows:
                raise PositionError(
                    f"position token: row {self._row} of {shard}, which has {entry.rows} rows"
                )
            # the shard in progress continues first, then the rest in feed order
            fresh.insert(0, entry)
        self._queue.extend(fresh)

    def _finish(self, entry: Entry) -> None:
        self._done[entry.instance] = max(self._done.get(entry.instance, -1), entry.seq)
        if self._shard == entry.file:
            self._shard = None
            self._row = 0

    def _entry_rows(self, entry: Entry) -> Iterator[Dict[str, Any]]:
        if self._shard != entry.file:
            self._shard = entry.file
            self._row = 0
        if self._row >= entry.rows:
            self._finish(entry)
            return
        for row in self._shard_rows(entry, self._row):
            # the position moves before the row leaves: position() after receiving a row
            # is the point after it
            self._row += 1
            if self._row == entry.rows:
                self._finish(entry)
            yield row

    # -------------------------------------------------------------------------------------
    # one shard

    def _path_of(self, entry: Entry) -> str:
        parts = entry.file.replace("\\", "/").split("/")
        if os.path.isabs(entry.file) or ".." in parts or entry.file == "":
            raise FeedError(
                f"{entry.manifest}: line {entry.line}: file {entry.file!r} is not a path inside "
                "the output folder"
            )
        return os.path.join(self.out_dir, *parts)

    def _shard_rows(self, entry: Entry, skip: int) -> Iterator[Dict[str, Any]]:
        """The rows of one shard after the first `skip`, read batch by batch, checked against
        the manifest line that published it."""
        path = self._path_of(entry)
        said = f"({entry.manifest} line {entry.line} says"
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            raise ShardMismatchError(
                f"{entry.file}: published by {entry.manifest} line {entry.line}, but not in "
                f"{self.out_dir}"
            ) from None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if entry.bytes is not None and size != entry.bytes:
                raise ShardMismatchError(f"{entry.file}: {size} bytes {said} {entry.bytes})")
            if self.verify_sha256 and entry.sha256 is not None:
                h = hashlib.sha256()
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
                if h.hexdigest() != entry.sha256:
                    raise ShardMismatchError(
                        f"{entry.file}: sha256 {h.hexdigest()} {said} {entry.sha256})"
                    )
                fh.seek(0)
            pf = pq.ParquetFile(fh)
            meta = pf.metadata
            if meta.num_rows != entry.rows:
                raise ShardMismatchError(f"{entry.file}: {meta.num_rows} rows {said} {entry.rows})")
            names = self.columns if self.columns is not None else pf.schema_arrow.names
            score_cols = [(n[len("score_"):], n) for n in names if n.startswith("score_")]
            with_origin = all(c in names for c in ("origin_topic", "origin_partition", "origin_offset"))
            # whole row groups before `skip` are not read at all
            group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            first, before = 0, 0
            while first < len(group_rows) and before + group_rows[first] <= skip:
                before += group_rows[first]
                first += 1
            cut = skip - before
            seen = before
            if first < len(group_rows):
                batches = pf.iter_batches(
                    batch_size=self.batch_size,
                    row_groups=list(range(first, len(group_rows))),
                    columns=self.columns,
                )
                for batch in batches:
                    n = batch.num_rows
                    if cut >= n:
                        cut -= n
                        seen += n
                        continue
                    if cut:
                        batch = batch.slice(cut)
                        seen += cut
                        cut = 0
                    for row in batch.to_pylist():
                        seen += 1
                        row["scores"] = {cap: row.get(col) for cap, col in score_cols}
                        if with_origin:
                            row["origin"] = {
                                "topic": row.get("origin_topic"),
                                "partition": row.get("origin_partition"),
                                "offset": row.get("origin_offset"),
                            }
                        yield row
            if seen != entry.rows:
                raise ShardMismatchError(f"{entry.file}: read {seen} rows {said} {entry.rows})")

    # -------------------------------------------------------------------------------------
    # frameworks

    def torch_dataset(self, **kwargs: Any) -> Any:
        """A torch.utils.data.IterableDataset over this Feed's folder, rank and world size
        (split again over dataloader workers); see mmssr_feed.torch.FeedDataset for the
        keyword arguments. Raises ImportError when PyTorch is not installed."""
        from .torch import FeedDataset  # imported here: torch is optional

        kwargs.setdefault("poll_interval", self.poll_interval)
        kwargs.setdefault("batch_size", self.batch_size)
        kwargs.setdefault("columns", self.columns)
        kwargs.setdefault("verify_sha256", self.verify_sha256)
        return FeedDataset(self.out_dir, self.rank, self.world_size, **kwargs)
