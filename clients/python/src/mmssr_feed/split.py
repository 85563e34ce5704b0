"""Which reader owns which shard.

Shards, not rows, are split: a shard belongs to exactly one reader, so no two ranks (or
dataloader workers) ever open the same file, and a reader's position never depends on what
the others read. The owner is a pure function of the shard's file name (FNV-1a 32-bit), so
every reader decides alone, with no coordination, and the TypeScript reader gets the same
answer from the same bytes.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

FNV32_OFFSET_BASIS = 2166136261
FNV32_PRIME = 16777619


def fnv1a32(data: bytes) -> int:
    """FNV-1a, 32 bit, over `data`: an unsigned 32-bit int."""
    h = FNV32_OFFSET_BASIS
    for b in data:
        h ^= b
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
    return h


def shard_owner(file: str, world_size: int) -> int:
    """The index (0 .. world_size-1) of the reader that reads the shard named `file`
    (the manifest entry's `file`, e.g. "selected/selected-t-p0-0-99.parquet")."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return fnv1a32(file.encode("utf-8")) % world_size


def check_rank(rank: int, world_size: int) -> None:
    """Raises ValueError unless 0 <= rank < world_size (ints, not bools)."""
    for name, v in (("rank", rank), ("world_size", world_size)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def effective_split(rank: int, world_size: int, worker_info: Optional[Any]) -> Tuple[int, int]:
    """The (index, count) a dataloader worker reads as: each rank's share is split again over
    its workers, index = rank * num_workers + worker_id over world_size * num_workers.
    `worker_info` is what torch.utils.data.get_worker_info() returns (None in the main
    process: the rank reads alone); anything with `id` and `num_workers` will do."""
    check_rank(rank, world_size)
    if worker_info is None:
        return rank, world_size
    num_workers = int(worker_info.num_workers)
    worker_id = int(worker_info.id)
    if num_workers < 1 or not 0 <= worker_id < num_workers:
        raise ValueError(f"bad worker info: id={worker_id}, num_workers={num_workers}")
    return rank * num_workers + worker_id, world_size * num_workers
