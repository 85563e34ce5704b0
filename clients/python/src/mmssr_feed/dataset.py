"""Framework adapters without the frameworks: the dataloader-worker split and the generator
that Hugging Face datasets calls. Kept free of torch and datasets imports, so that the split
logic is tested (and usable) where neither is installed; mmssr_feed.torch adds only the
torch base class.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union, cast

from .errors import PositionError
from .feed import Feed, Token, parse_token
from .split import check_rank, effective_split

#: returns torch.utils.data.get_worker_info()'s answer: None, or an object with id, num_workers
WorkerInfoFn = Callable[[], Optional[Any]]
#: a row transform applied before a row leaves the dataset (e.g. to tensors)
Transform = Callable[[Dict[str, Any]], Any]
#: start positions: one token per effective shard index, as a mapping or a list of tokens
StartTokens = Union[Mapping[int, Token], Sequence[Token], Token]


def _start_for(start: Optional[StartTokens], index: int, count: int) -> Optional[Token]:
    """The token of effective shard `index` of `count` among `start` (None: from the start)."""
    if start is None:
        return None
    if isinstance(start, Mapping) and "v" in start:
        tokens: Sequence[Token] = [cast(Token, start)]  # a single token
    elif isinstance(start, Mapping):
        tok = cast(Mapping[int, Token], start).get(index)
        if tok is None:
            raise PositionError(f"no position token for reader {index} of {count} in start")
        return tok
    elif isinstance(start, str):
        tokens = [start]
    else:
        tokens = list(start)
    for tok in tokens:
        parsed = parse_token(tok)
        if parsed["rank"] == index and parsed["world_size"] == count:
            return parsed
    raise PositionError(
        f"no position token for reader {index} of {count} in start (tokens resume only the "
        "rank, worker and world size that wrote them)"
    )


def _no_workers() -> None:
    """The worker info outside a dataloader worker (a module function: picklable, so that a
    dataset can be sent to worker processes)."""
    return None


class FeedIterable:
    """An iterable over one rank's rows that splits itself over dataloader workers.

    In each worker it reads as effective shard rank * num_workers + worker_id of
    world_size * num_workers (see split.effective_split), so the workers of all ranks cover
    the stream once. `worker_info_fn` is torch.utils.data.get_worker_info in
    mmssr_feed.torch.FeedDataset; here it is injectable (default: no workers).

    with_position=True adds "_position" to each row: the position token of its worker after
    that row. A trainer keeps the latest token per worker (token["rank"] is the effective
    index) and passes them all back as `start` (a list, or {index: token}) to resume.
    `stop_event` only reaches workers that share the creating process's memory (threads,
    num_workers=0); in worker processes, end a following dataset with `idle_timeout`.
    """

    def __init__(
        self,
        out_dir: Union[str, "os.PathLike[str]"],
        rank: int = 0,
        world_size: int = 1,
        *,
        start: Optional[StartTokens] = None,
        follow: bool = False,
        poll_interval: float = 1.0,
        idle_timeout: Optional[float] = None,
        stop_event: Optional[threading.Event] = None,
        transform: Optional[Transform] = None,
        with_position: bool = False,
        columns: Optional[Sequence[str]] = None,
        batch_size: int = 1024,
        verify_sha256: bool = False,
        worker_info_fn: Optional[WorkerInfoFn] = None,
    ) -> None:
        check_rank(rank, world_size)
        self.out_dir = os.fspath(out_dir)
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.follow = follow
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        self.stop_event = stop_event
        self.transform = transform
        self.with_position = with_position
        self.columns = columns
        self.batch_size = batch_size
        self.verify_sha256 = verify_sha256
        self.worker_info_fn: WorkerInfoFn = worker_info_fn or _no_workers

    def split(self) -> Tuple[int, int]:
        """(effective index, effective count) of the calling worker."""
        return effective_split(self.rank, self.world_size, self.worker_info_fn())

    def feed(self) -> Feed:
        """The Feed the calling worker reads."""
        index, count = self.split()
        return Feed(
            self.out_dir,
            index,
            count,
            start=_start_for(self.start, index, count),
            poll_interval=self.poll_interval,
            batch_size=self.batch_size,
            columns=self.columns,
            verify_sha256=self.verify_sha256,
        )

    def __iter__(self) -> Iterator[Any]:
        feed = self.feed()
        for row in feed.rows(self.follow, stop_event=self.stop_event, idle_timeout=self.idle_timeout):
            if self.with_position:
                row["_position"] = feed.position()
            yield row if self.transform is None else self.transform(row)


def hf_generator(
    out_dir: str,
    rank: int = 0,
    world_size: int = 1,
    parts: Optional[Sequence[int]] = None,
    num_parts: int = 1,
    follow: bool = False,
    poll_interval: float = 1.0,
    idle_timeout: Optional[float] = None,
    columns: Optional[Sequence[str]] = None,
    batch_size: int = 1024,
) -> Iterator[Dict[str, Any]]:
    """The rows of one rank, for `datasets.IterableDataset.from_generator(hf_generator,
    gen_kwargs={"out_dir": ..., "rank": r, "world_size": w})`.

    Hugging Face treats list-valued gen_kwargs as its shards and hands each dataloader worker
    a sublist: pass `parts=list(range(k)), num_parts=k` to let k workers share the rank (part p
    of the rank reads effective shard rank * k + p of world_size * k, the same split as torch
    workers). Without parts there is one HF shard, and HF uses one worker. Give `columns` as
    a tuple: HF would take a list for shards too.
    """
    check_rank(rank, world_size)
    if parts is None:
        feed = Feed(out_dir, rank, world_size, poll_interval=poll_interval, batch_size=batch_size, columns=columns)
    else:
        if num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        for p in parts:
            check_rank(p, num_parts)
        feed = Feed._over_parts(
            out_dir,
            [rank * num_parts + p for p in parts],
            world_size * num_parts,
            poll_interval=poll_interval,
            batch_size=batch_size,
            columns=columns,
        )
    yield from feed.rows(follow, idle_timeout=idle_timeout)


def hf_dataset(
    out_dir: str, rank: int = 0, world_size: int = 1, num_parts: Optional[int] = None, **kwargs: Any
) -> Any:
    """datasets.IterableDataset.from_generator over hf_generator (num_parts: split the rank
    into that many HF shards). Raises ImportError when `datasets` is not installed."""
    try:
        import datasets  # noqa: PLC0415 (optional dependency)
    except ImportError as err:
        raise ImportError(
            "mmssr_feed.hf_dataset needs Hugging Face datasets: pip install 'mmssr-feed[datasets]'"
        ) from err
    gen_kwargs: Dict[str, Any] = {"out_dir": os.fspath(out_dir), "rank": rank, "world_size": world_size, **kwargs}
    if gen_kwargs.get("columns") is not None:
        gen_kwargs["columns"] = tuple(gen_kwargs["columns"])  # a list would count as HF shards
    if num_parts is not None:
        gen_kwargs["parts"] = list(range(num_parts))
        gen_kwargs["num_parts"] = num_parts
    return datasets.IterableDataset.from_generator(hf_generator, gen_kwargs=gen_kwargs)
