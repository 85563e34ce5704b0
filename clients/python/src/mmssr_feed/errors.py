"""Errors of the feed.

One base class, so that a trainer can tell "the output folder breaks its contract" (stop and
look) from its own errors; subclasses say which part broke.
"""

from __future__ import annotations


class FeedError(Exception):
    """The output folder, or a position token, does not follow the feed contract."""


class ManifestError(FeedError):
    """A complete manifest line is not a usable entry (message: manifest file and line)."""


class ShardMismatchError(FeedError):
    """A published shard differs from what its manifest line says (rows, bytes, sha256)."""


class PositionError(FeedError, ValueError):
    """A position token is malformed, or belongs to another rank / world size / folder."""
