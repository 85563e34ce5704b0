"""Reading the manifests of an output folder, incrementally.

A curator process appends one JSON line per published file to DIR/manifests/<instance>.jsonl
(the older single-instance layout: DIR/manifest.jsonl). A file is published once a complete
line (newline included) names it; an unterminated last line is being written, or its writer
died, and does not count yet. This module turns the complete lines appended since the last
poll into selected-shard entries, in feed order (see README.md, "The feed contract").
"""

from __future__ import annotations

import calendar
import heapq
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .errors import ManifestError

LEGACY_MANIFEST = "manifest.jsonl"
MANIFESTS_DIR = "manifests"
#: the instance key of DIR/manifest.jsonl (its lines have no `instance`)
LEGACY_INSTANCE = ""

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_published_at(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 instant as Date.toISOString writes it
    ("2026-01-02T03:04:05.678Z"; an explicit offset is accepted too). Digits past the
    millisecond are dropped, so that both readers compare the same integers."""
    m = _ISO.match(text)
    if not m:
        raise ValueError(f"not an ISO 8601 instant: {text!r}")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    frac = (m.group(7) or "") + "000"
    ms = int(frac[:3])
    tz = m.group(8)
    offset_min = 0
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset_min = sign * (int(tz[1:3]) * 60 + int(tz[4:6]))
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset_min * 60
    return secs * 1000 + ms


@dataclass(frozen=True)
class Entry:
    """A selected shard, as one complete manifest line publishes it."""

    file: str
    """path relative to the output folder, e.g. "selected/selected-t-p0-0-99.parquet" """
    instance: str
    """the manifest's key: <instance> of manifests/<instance>.jsonl, "" for manifest.jsonl"""
    seq: int
    rows: int
    published_at: str
    published_ms: int
    bytes: Optional[int]
    sha256: Optional[str]
    manifest: str
    """path of the manifest file, and the 1-based line number in it (for error messages)"""
    line: int
    raw: Dict[str, Any] = field(compare=False, repr=False)

    @property
    def order_key(self) -> tuple:
        return (self.published_ms, self.instance, self.seq)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class _ManifestState:
    consumed: int = 0
    """bytes up to and including the last newline read so far"""
    lines: int = 0
    last_seq: Optional[int] = None
    """seq of the last selected entry read: selected seqs must grow, line after line"""


class ManifestReader:
    """Reads what was appended to every manifest of `out_dir` since the last poll."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self._state: Dict[str, _ManifestState] = {}

    def manifest_paths(self) -> List[str]:
        """DIR/manifest.jsonl (when present) and DIR/manifests/*.jsonl, sorted by name."""
        paths: List[str] = []
        legacy = os.path.join(self.out_dir, LEGACY_MANIFEST)
        if os.path.isfile(legacy):
            paths.append(legacy)
        mdir = os.path.join(self.out_dir, MANIFESTS_DIR)
        try:
            names = sorted(n for n in os.listdir(mdir) if n.endswith(".jsonl"))
        except FileNotFoundError:
            names = []
        paths.extend(os.path.join(mdir, n) for n in names)
        return paths

    def _instance_of(self, path: str) -> str:
        if path == os.path.join(self.out_dir, LEGACY_MANIFEST):
            return LEGACY_INSTANCE
        return os.path.basename(path)[: -len(".jsonl")]

    def poll(self) -> List[Entry]:
        """The selected entries of the complete lines appended since the last poll, in feed
        order: each manifest's lines in line order, manifests merged by taking, among the
        first untaken entries of each, the one with the least (publishedAt, instance, seq)."""
        per_manifest: List[List[Entry]] = []
        updates: Dict[str, _ManifestState] = {}
        for path in self.manifest_paths():
            new, state = self._read_new(path)
            updates[path] = state
            if new:
                per_manifest.append(new)
        # committed only once every manifest read: a poll that raises leaves nothing half-read
        self._state.update(updates)
        return list(heapq.merge(*per_manifest, key=lambda e: e.order_key))

    def _read_new(self, path: str) -> Tuple[List[Entry], _ManifestState]:
        st = self._state.get(path) or _ManifestState()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < st.consumed:
                    raise ManifestError(
                        f"{path}: shrank to {size} bytes after {st.consumed} bytes of complete "
                        "lines were read (manifests are append-only)"
                    )
                if size == st.consumed:
                    return [], st
                f.seek(st.consumed)
                data = f.read(size - st.consumed)
        except FileNotFoundError:
            return [], st
        end = data.rfind(b"\n")
        if end < 0:
            return [], st  # only an unterminated line: not published yet
        complete = data[: end + 1]
        lines = complete.split(b"\n")[:-1]
        instance = self._instance_of(path)
        out: List[Entry] = []
        last_seq = st.last_seq
        for i, raw_line in enumerate(lines):
            lineno = st.lines + i + 1
            if len(raw_line) == 0:
                continue
            entry = self._parse_line(path, lineno, raw_line, instance, last_seq)
            if entry is not None:
                out.append(entry)
                last_seq = entry.seq
        return out, _ManifestState(st.consumed + end + 1, st.lines + len(lines), last_seq)

    @staticmethod
    def _parse_line(
        path: str, lineno: int, raw_line: bytes, instance: str, last_seq: Optional[int]
    ) -> Optional[Entry]:
        where = f"{path}: line {lineno}"
        try:
            obj = json.loads(raw_line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise ManifestError(f"{where} is not a manifest entry (invalid JSON: {err})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("file"), str):
            raise ManifestError(f"{where} is not a manifest entry (no string `file`)")
        if obj.get("kind") != "selected":
            return None
        seq: Any = obj.get("seq")
        rows: Any = obj.get("rows")
        published_at: Any = obj.get("publishedAt")
        if not _is_int(seq):
            raise ManifestError(f"{where}: `seq` must be an integer, got {seq!r}")
        if not _is_int(rows) or rows < 0:
            raise ManifestError(f"{where}: `rows` must be a non-negative integer, got {rows!r}")
        if not isinstance(published_at, str):
            raise ManifestError(f"{where}: `publishedAt` must be a string, got {published_at!r}")
        try:
            published_ms = parse_published_at(published_at)
        except ValueError as err:
            raise ManifestError(f"{where}: `publishedAt`: {err}") from None
        nbytes = obj.get("bytes")
        if nbytes is not None and (not _is_int(nbytes) or nbytes < 0):
            raise ManifestError(f"{where}: `bytes` must be a non-negative integer, got {nbytes!r}")
        sha = obj.get("sha256")
        if sha is not None and not isinstance(sha, str):
            raise ManifestError(f"{where}: `sha256` must be a string, got {sha!r}")
        if last_seq is not None and seq <= last_seq:
            raise ManifestError(
                f"{where}: seq {seq} does not grow (the previous selected line has seq "
                f"{last_seq}); position tokens rely on it"
            )
        return Entry(
            file=obj["file"],
            instance=instance,
            seq=seq,
            rows=rows,
            published_at=published_at,
            published_ms=published_ms,
            bytes=nbytes,
            sha256=sha,
            manifest=path,
            line=lineno,
            raw=obj,
        )
