"""mmssr_feed: read what `mmssr curate --out DIR` publishes, as a trainer does.

    from mmssr_feed import Feed
    feed = Feed("/data/curated", rank=0, world_size=1, poll_interval=1.0)
    for row in feed.rows(follow=True):
        ...
        token = feed.position()     # JSON-serializable; Feed(..., start=token) resumes

The contract (what is published, feed order, rank split, position tokens) is in README.md,
"The feed contract". PyTorch: mmssr_feed.torch.FeedDataset or Feed.torch_dataset();
Hugging Face datasets: hf_generator / hf_dataset. Neither framework is required.
"""

from .dataset import FeedIterable, hf_dataset, hf_generator
from .errors import FeedError, ManifestError, PositionError, ShardMismatchError
from .feed import Feed, parse_token
from .manifest import Entry, ManifestReader
from .split import effective_split, fnv1a32, shard_owner

__all__ = [
    "Entry",
    "Feed",
    "FeedError",
    "FeedIterable",
    "ManifestError",
    "ManifestReader",
    "PositionError",
    "ShardMismatchError",
    "effective_split",
    "fnv1a32",
    "hf_dataset",
    "hf_generator",
    "parse_token",
    "shard_owner",
]

__version__ = "0.1.0"
