"""PyTorch adapter: FeedDataset, a torch.utils.data.IterableDataset over one rank's rows,
split again over the DataLoader's workers.

PyTorch is optional for mmssr_feed: this module imports it, and raises a plain ImportError
saying how to install it when it is missing. All logic lives in mmssr_feed.dataset
(FeedIterable, tested without torch); this class only adds the torch base class and the real
get_worker_info.
"""

from __future__ import annotations

try:
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as _err:  # pragma: no cover - exercised by a test that hides torch
    raise ImportError(
        "mmssr_feed.torch needs PyTorch, which is not installed: pip install torch "
        "(or pip install 'mmssr-feed[torch]'); the rest of mmssr_feed works without it"
    ) from _err

from typing import Any, Optional

from .dataset import FeedIterable, WorkerInfoFn


class FeedDataset(IterableDataset, FeedIterable):  # type: ignore[misc]
    """IterableDataset over the selected rows of `out_dir` for `rank` of `world_size`.

    In a DataLoader with num_workers=W, worker w of rank r reads effective shard r * W + w of
    world_size * W: together the workers of all ranks read every shard exactly once. Keyword
    arguments: those of mmssr_feed.dataset.FeedIterable (start, follow, poll_interval,
    idle_timeout, stop_event, transform, with_position, columns, batch_size, verify_sha256,
    worker_info_fn). Rows are dicts with None values and nested lists; give a `transform` (or
    a collate_fn) that makes what your model takes, since default_collate rejects None.
    """

    def __init__(self, out_dir: Any, rank: int = 0, world_size: int = 1, *,
                 worker_info_fn: Optional[WorkerInfoFn] = None, **kwargs: Any) -> None:
        IterableDataset.__init__(self)
        FeedIterable.__init__(
            self, out_dir, rank, world_size, worker_info_fn=worker_info_fn or get_worker_info, **kwargs
        )

    # IterableDataset (via typing's Iterable) comes first in the MRO: name the real one
    __iter__ = FeedIterable.__iter__
