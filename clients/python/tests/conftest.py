from __future__ import annotations

import os
import sys
from typing import Dict, List

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fakeout import FakeOutput  # noqa: E402

A = "hostA-11-aaa"
B = "hostB-22-bbb"
LEGACY = ""


class Fleet:
    """An output folder written by two instances and the legacy single-instance manifest,
    with publishedAt values that make merge order differ from a plain sort (a tie between
    instances, a clock that steps back inside one manifest) and B's last line unterminated."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.out = FakeOutput(root, row_group_size=2)
        o = self.out
        self.shards: Dict[str, Dict] = {}
        self.shards["L1"] = o.rotation(LEGACY, "t", 9, 3, at_ms=5)
        self.shards["A1"] = o.rotation(A, "t", 0, 4, at_ms=10)
        self.shards["B1"] = o.rotation(B, "t", 1, 5, at_ms=20)
        self.shards["A2"] = o.rotation(A, "t", 0, 3, at_ms=30)
        o.rotation(A, "t", 0, 2, at_ms=28, selected_rows=0)  # A3: nothing selected, seq gap
        self.shards["A4"] = o.rotation(A, "t", 2, 6, at_ms=25)  # the clock stepped back
        self.shards["B2"] = o.rotation(B, "t", 1, 2, at_ms=30)  # ties with A2: instance decides
        self.shards["L2"] = o.rotation(LEGACY, "t", 9, 1, at_ms=35)
        self.shards["B3"] = o.rotation(B, "u", 0, 7, at_ms=40, selected_rows=5)
        self.shards["B4"] = o.rotation(B, "t", 1, 3, at_ms=50, torn=True)  # not published yet
        self.ids: Dict[str, List[str]] = {}
        for _inst, _seq, file, ids in o.published:
            label = next(k for k, v in self.shards.items() if v.get("file") == file)
            self.ids[label] = ids

    ORDER = ["L1", "A1", "B1", "A2", "A4", "B2", "L2", "B3"]

    def expected(self, labels: List[str] = None) -> List[str]:
        return [i for label in (self.ORDER if labels is None else labels) for i in self.ids[label]]

    def file(self, label: str) -> str:
        return self.shards[label]["file"]


@pytest.fixture
def fleet(tmp_path) -> Fleet:
    return Fleet(str(tmp_path / "out"))
