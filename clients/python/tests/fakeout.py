"""A fake-but-real curator output folder: real Parquet shards with the columns of
connectors/sink/decision-rows.ts (SELECTED_SCHEMA), real manifest lines as
connectors/sink/curation-sink.ts writes them (scored line then selected line of a rotation in
one write, one seq per rotation), one manifest per instance plus the legacy manifest.jsonl.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq

CAPABILITIES = [
    "spatial", "attribute", "logical", "scene", "finegrained", "language", "incontext",
    "comparative", "activity", "causal", "humanities", "stem", "data", "ocr",
]

_utf8_list = pa.list_(pa.field("item", pa.string(), nullable=True))
_turn = pa.struct([pa.field("from", pa.string(), False), pa.field("value", pa.string(), False)])

SELECTED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), False),
        pa.field("image_source", pa.dictionary(pa.int32(), pa.string()), False),
        pa.field("styles", _utf8_list, False),
        *[pa.field(f"score_{c}", pa.float64(), True) for c in CAPABILITIES],
        pa.field("picked_by", pa.string(), True),
        pa.field("bucket", pa.string(), True),
        pa.field("window_id", pa.string(), False),
        pa.field("policy_version", pa.int32(), True),
        pa.field("model_id", pa.string(), False),
        pa.field("flags", _utf8_list, False),
        pa.field("origin_topic", pa.string(), False),
        pa.field("origin_partition", pa.int32(), False),
        pa.field("origin_offset", pa.int64(), False),
        pa.field("decided_at", pa.timestamp("ms", tz="UTC"), False),
        pa.field("conversations", pa.list_(pa.field("item", _turn, False)), False),
        pa.field("system", pa.string(), True),
        pa.field("image", pa.string(), True),
        pa.field("images", _utf8_list, True),
        pa.field("image_url", pa.string(), True),
        pa.field("image_bytes", pa.binary(), True),
        pa.field("extra", pa.string(), True),
    ]
)

SCORED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), False),
        pa.field("selected", pa.bool_(), False),
        pa.field("origin_offset", pa.int64(), False),
    ]
)

BASE_TIME = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def iso(ms_after_base: int) -> str:
    """publishedAt as Date.toISOString writes it."""
    t = BASE_TIME + dt.timedelta(milliseconds=ms_after_base)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sample_row(sample_id: str, topic: str, partition: int, offset: int, k: int) -> Dict:
    scores = {f"score_{c}": (None if (k + i) % 7 == 0 else round(((k * 13 + i * 7) % 50) / 10, 4))
              for i, c in enumerate(CAPABILITIES)}
    return {
        "id": sample_id,
        "image_source": "coco" if k % 2 else "unknown",
        "styles": ["yes/no"] if k % 3 else ["yes/no", "short description"],
        **scores,
        "picked_by": CAPABILITIES[k % 14],
        "bucket": "yes/no+coco",
        "window_id": f"w{k // 5}",
        "policy_version": 1,
        "model_id": "mmssr-lite@2.0.0",
        "flags": ["no-image"] if k % 4 == 0 else [],
        "origin_topic": topic,
        "origin_partition": partition,
        "origin_offset": offset,
        "decided_at": BASE_TIME + dt.timedelta(seconds=k),
        "conversations": [
            {"from": "human", "value": f"<image>\nQuestion {k}?"},
            {"from": "gpt", "value": f"Answer {k}."},
        ],
        "system": None,
        "image": f"{k:012d}.jpg" if k % 5 else None,
        "images": None,
        "image_url": None,
        "image_bytes": b"\x89PNG" if k % 5 == 0 else None,
        "extra": json.dumps({"k": k}) if k % 2 == 0 else None,
    }


class FakeOutput:
    """Writes shards and manifest lines into `root` as a fleet of curators would."""

    def __init__(self, root: str, row_group_size: int = 2) -> None:
        self.root = root
        self.row_group_size = row_group_size
        for d in ("selected", "scored", "manifests"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        self._seq: Dict[str, int] = {}
        self._next_offset: Dict[tuple, int] = {}
        self._k = 0
        #: (instance, seq, file, ids) of every selected shard published so far, in publish order
        self.published: List[tuple] = []

    def manifest_path(self, instance: str) -> str:
        if instance == "":
            return os.path.join(self.root, "manifest.jsonl")
        return os.path.join(self.root, "manifests", f"{instance}.jsonl")

    def _write_parquet(self, path: str, table: pa.Table) -> int:
        pq.write_table(table, path, row_group_size=self.row_group_size, compression="zstd")
        return os.path.getsize(path)

    def rotation(
        self,
        instance: str,
        topic: str,
        partition: int,
        n_rows: int,
        *,
        at_ms: int,
        selected_rows: Optional[int] = None,
        torn: bool = False,
        write: bool = True,
    ) -> Dict:
        """One rotation of `instance`: a scored file of n_rows decisions and, when
        `selected_rows` (default: all) > 0, a selected file of that many rows. Returns the
        selected line (a dict; None-free) or {} when nothing was selected. torn=True leaves the
        selected line without its newline (a writer caught mid-append)."""
        seq = self._seq.get(instance, 0) + 1
        self._seq[instance] = seq
        first = self._next_offset.get((topic, partition), 0)
        last = first + n_rows - 1
        self._next_offset[(topic, partition)] = last + 1
        chosen = n_rows if selected_rows is None else selected_rows
        rows = []
        for i in range(chosen):
            self._k += 1
            rows.append(sample_row(f"{instance or 'legacy'}-{topic}-p{partition}-{first + i}",
                                   topic, partition, first + i, self._k))
        name = f"{topic}-p{partition}-{first}-{last}.parquet"
        common = {"topic": topic, "partition": partition, "firstOffset": str(first),
                  "lastOffset": str(last), "publishedAt": iso(at_ms), "seq": seq}
        if instance:
            common.update(instance=instance, generation=1)
        scored_path = os.path.join(self.root, "scored", f"scored-{name}")
        scored = pa.Table.from_pylist(
            [{"id": f"s{first + i}", "selected": i < chosen, "origin_offset": first + i}
             for i in range(n_rows)], schema=SCORED_SCHEMA)
        sbytes = self._write_parquet(scored_path, scored)
        lines = [{"file": f"scored/scored-{name}", "kind": "scored", **common, "rows": n_rows,
                  "decided": n_rows, "bytes": sbytes, "sha256": _sha(scored_path)}]
        selected_line: Dict = {}
        if chosen > 0:
            path = os.path.join(self.root, "selected", f"selected-{name}")
            nbytes = self._write_parquet(path, pa.Table.from_pylist(rows, schema=SELECTED_SCHEMA))
            selected_line = {"file": f"selected/selected-{name}", "kind": "selected", **common,
                             "rows": chosen, "decided": n_rows, "bytes": nbytes, "sha256": _sha(path)}
            lines.append(selected_line)
            self.published.append((instance, seq, selected_line["file"], [r["id"] for r in rows]))
        if write:
            text = "".join(json.dumps(line) + "\n" for line in lines)
            if torn:
                text = text[:-1]
            with open(self.manifest_path(instance), "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        return selected_line

    def append_raw(self, instance: str, text: str) -> None:
        with open(self.manifest_path(instance), "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_ids(path: str) -> List[str]:
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()
