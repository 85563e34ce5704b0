"""Offline tests of the feed contract against a real (fake-curator) output folder."""

from __future__ import annotations

import json
import os
import threading
import time
from itertools import islice
from typing import List

import pyarrow.parquet as pq
import pytest
from conftest import A, B, Fleet
from fakeout import CAPABILITIES, SELECTED_SCHEMA
from waiting import wait_for

from mmssr_feed import Feed, FeedError, ManifestError, PositionError, ShardMismatchError, fnv1a32, shard_owner


def ids_of(rows) -> List[str]:
    return [r["id"] for r in rows]


# ---------------------------------------------------------------------------------------------
# order and content


def test_feed_order_merges_manifests_and_skips_scored_and_unterminated(fleet: Fleet):
    rows = list(Feed(fleet.root, batch_size=3).rows())
    assert ids_of(rows) == fleet.expected()
    # the unterminated last line of B's manifest names a real file: still not published
    assert not set(fleet.ids["B4"]) & set(ids_of(rows))


def test_rows_carry_every_selected_column_plus_scores_and_origin(fleet: Fleet):
    rows = list(Feed(fleet.root).rows())
    path = os.path.join(fleet.root, fleet.file("A1"))
    direct = pq.read_table(path).to_pylist()
    got = [r for r in rows if r["id"] in fleet.ids["A1"]]
    assert len(got) == len(direct) == 4
    for g, d in zip(got, direct):
        assert set(g) == set(SELECTED_SCHEMA.names) | {"scores", "origin"}
        assert {k: g[k] for k in d} == d
        assert g["scores"] == {c: d[f"score_{c}"] for c in CAPABILITIES}
        assert g["origin"] == {"topic": "t", "partition": 0, "offset": d["origin_offset"]}
    assert any(v is None for r in rows for v in r["scores"].values())  # missing score = None


def test_columns_option_reads_only_those(fleet: Fleet):
    rows = list(Feed(fleet.root, columns=["id", "score_ocr"]).rows())
    assert ids_of(rows) == fleet.expected()
    assert set(rows[0]) == {"id", "score_ocr", "scores"}
    assert set(rows[0]["scores"]) == {"ocr"}


def test_follow_false_stops_at_what_is_published_and_a_later_pass_continues(fleet: Fleet):
    feed = Feed(fleet.root)
    assert ids_of(feed.rows(follow=False)) == fleet.expected()
    assert ids_of(feed.rows(follow=False)) == []  # nothing new
    fleet.out.append_raw(B, "\n")  # B4's line completes: published
    assert ids_of(feed.rows(follow=False)) == fleet.ids["B4"]


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        Feed(str(tmp_path / "nope")).rows(follow=False)
    # following waits for it instead, and ends by idle_timeout
    assert list(Feed(str(tmp_path / "nope"), poll_interval=0.01).rows(follow=True, idle_timeout=0.05)) == []


# ---------------------------------------------------------------------------------------------
# position tokens


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_resume_from_every_cut_point_yields_exactly_the_rest(fleet: Fleet, world_size: int):
    for rank in range(world_size):
        full = ids_of(Feed(fleet.root, rank, world_size, batch_size=3).rows())
        for cut in range(len(full) + 1):
            feed = Feed(fleet.root, rank, world_size, batch_size=3)
            head = ids_of(islice(feed.rows(), cut))
            token = json.loads(json.dumps(feed.position()))  # survives a checkpoint file
            assert token["rank"] == rank and token["world_size"] == world_size
            rest = ids_of(Feed(fleet.root, rank, world_size, start=token, batch_size=3).rows())
            assert head + rest == full, f"rank {rank}/{world_size}, cut {cut}"


def test_resume_twice_and_token_shape(fleet: Fleet):
    full = fleet.expected()
    feed = Feed(fleet.root)
    first = ids_of(islice(feed.rows(), 5))  # L1 (3 rows) and 2 of A1's 4
    tok1 = feed.position()
    assert tok1 == {"v": 1, "rank": 0, "world_size": 1, "done": {"": 1},
                    "shard": fleet.file("A1"), "row": 2}
    feed2 = Feed(fleet.root, start=json.dumps(tok1))  # JSON text is accepted too
    second = ids_of(islice(feed2.rows(), 2))  # the rest of A1: the shard is finished
    tok2 = feed2.position()
    assert tok2 == {"v": 1, "rank": 0, "world_size": 1, "done": {"": 1, A: 1}, "shard": None, "row": 0}
    rest = ids_of(Feed(fleet.root, start=tok2).rows())
    assert first + second + rest == full


def test_position_after_everything_covers_every_instance(fleet: Fleet):
    feed = Feed(fleet.root, 1, 2)
    list(feed.rows())
    tok = feed.position()
    # other ranks' shards count as skipped: every instance's highest published seq
    assert tok["done"] == {"": 2, A: 4, B: 3} and tok["shard"] is None
    assert list(Feed(fleet.root, 1, 2, start=tok).rows()) == []
    fleet.out.append_raw(B, "\n")
    expect_b4 = fleet.ids["B4"] if shard_owner(fleet.file("B4"), 2) == 1 else []
    assert ids_of(Feed(fleet.root, 1, 2, start=tok).rows()) == expect_b4


def test_token_of_another_rank_or_world_size_is_refused(fleet: Fleet):
    feed = Feed(fleet.root, 0, 2)
    list(islice(feed.rows(), 1))
    tok = feed.position()
    with pytest.raises(PositionError, match="rank 0 of world_size 2"):
        Feed(fleet.root, 1, 2, start=tok)
    with pytest.raises(PositionError, match="rank 0 of world_size 2"):
        Feed(fleet.root, 0, 3, start=tok)
    with pytest.raises(PositionError, match="version"):
        Feed(fleet.root, 0, 2, start={**tok, "v": 2})
    with pytest.raises(PositionError):
        Feed(fleet.root, 0, 2, start={**tok, "shard": None, "row": 3})
    with pytest.raises(PositionError, match="not JSON"):
        Feed(fleet.root, 0, 2, start="{nope")


def test_token_naming_an_unknown_shard_is_refused(fleet: Fleet):
    tok = {"v": 1, "rank": 0, "world_size": 1, "done": {}, "shard": "selected/other.parquet", "row": 1}
    with pytest.raises(PositionError, match="selected/other.parquet"):
        list(Feed(fleet.root, start=tok).rows())


# ---------------------------------------------------------------------------------------------
# ranks


def test_fnv1a32_reference_values():
    # published FNV-1a 32-bit test vectors
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968
    assert shard_owner("selected/x.parquet", 1) == 0


@pytest.mark.parametrize("k", [1, 2, 3])
def test_ranks_are_disjoint_cover_everything_and_split_by_shard(fleet: Fleet, k: int):
    per_rank = [ids_of(Feed(fleet.root, r, k).rows()) for r in range(k)]
    seen: List[str] = [i for ids in per_rank for i in ids]
    assert len(seen) == len(set(seen))  # disjoint
    assert set(seen) == set(fleet.expected())  # together: everything
    for r, ids in enumerate(per_rank):
        mine = [label for label in Fleet.ORDER if shard_owner(fleet.file(label), k) == r]
        assert ids == fleet.expected(mine)  # whole shards, feed order kept within a rank


# ---------------------------------------------------------------------------------------------
# errors


def test_row_count_mismatch_names_the_file(fleet: Fleet, tmp_path):
    root = str(tmp_path / "bad")
    from fakeout import FakeOutput

    out = FakeOutput(root)
    line = out.rotation(A, "t", 0, 3, at_ms=1, write=False)
    out.append_raw(A, json.dumps({**line, "rows": 4}) + "\n")
    with pytest.raises(ShardMismatchError, match=r"selected/selected-t-p0-0-2\.parquet: 3 rows .* says 4"):
        list(Feed(root).rows())


def test_byte_size_and_sha_mismatch_name_the_file(tmp_path):
    from fakeout import FakeOutput

    root = str(tmp_path / "bad")
    out = FakeOutput(root)
    line = out.rotation(A, "t", 0, 3, at_ms=1, write=False)
    out.append_raw(A, json.dumps({**line, "bytes": line["bytes"] + 1}) + "\n")
    with pytest.raises(ShardMismatchError, match=r"selected-t-p0-0-2\.parquet: \d+ bytes"):
        list(Feed(root).rows())
    root2 = str(tmp_path / "bad2")
    out2 = FakeOutput(root2)
    line2 = out2.rotation(A, "t", 0, 3, at_ms=1, write=False)
    out2.append_raw(A, json.dumps({**line2, "sha256": "0" * 64}) + "\n")
    assert len(list(Feed(root2).rows())) == 3  # hashes are checked only when asked
    with pytest.raises(ShardMismatchError, match="sha256"):
        list(Feed(root2, verify_sha256=True).rows())


def test_missing_shard_file_names_it(fleet: Fleet):
    os.remove(os.path.join(fleet.root, fleet.file("A1")))
    with pytest.raises(ShardMismatchError, match=fleet.file("A1")):
        list(Feed(fleet.root).rows())


def test_corrupt_complete_line_names_manifest_and_line(fleet: Fleet):
    fleet.out.append_raw(B, "\n")  # complete B4
    fleet.out.append_raw(B, '{"file": "selected/x.parquet", "kind": "sel\n')
    path = fleet.out.manifest_path(B)
    with pytest.raises(ManifestError, match=rf"{path}: line 9 is not a manifest entry"):
        list(Feed(fleet.root).rows())


def test_garbage_unterminated_last_line_is_not_counted(fleet: Fleet):
    fleet.out.append_raw(A, '{"file": "selected/x.parq')  # a torn append
    assert ids_of(Feed(fleet.root).rows()) == fleet.expected()


def test_complete_line_without_file_or_with_bad_fields_is_an_error(tmp_path):
    from fakeout import FakeOutput

    out = FakeOutput(str(tmp_path / "o"))
    out.append_raw(A, '["not", "an", "entry"]\n')
    with pytest.raises(ManifestError, match="line 1 is not a manifest entry"):
        list(Feed(out.root).rows())
    out2 = FakeOutput(str(tmp_path / "o2"))
    line = out2.rotation(A, "t", 0, 1, at_ms=1, write=False)
    out2.append_raw(A, json.dumps({**line, "publishedAt": "yesterday"}) + "\n")
    with pytest.raises(ManifestError, match="line 1: `publishedAt`"):
        list(Feed(out2.root).rows())


def test_seq_that_does_not_grow_is_an_error(tmp_path):
    from fakeout import FakeOutput

    out = FakeOutput(str(tmp_path / "o"))
    l1 = out.rotation(A, "t", 0, 1, at_ms=1, write=False)
    l2 = out.rotation(A, "t", 0, 1, at_ms=2, write=False)
    out.append_raw(A, json.dumps(l2) + "\n" + json.dumps(l1) + "\n")
    with pytest.raises(ManifestError, match="line 2: seq 1 does not grow"):
        list(Feed(out.root).rows())


def test_path_outside_the_folder_is_refused(tmp_path):
    from fakeout import FakeOutput

    out = FakeOutput(str(tmp_path / "o"))
    line = out.rotation(A, "t", 0, 1, at_ms=1, write=False)
    out.append_raw(A, json.dumps({**line, "file": "../escape.parquet"}) + "\n")
    with pytest.raises(FeedError, match="not a path inside"):
        list(Feed(out.root).rows())


def test_one_pass_at_a_time(fleet: Fleet):
    feed = Feed(fleet.root)
    it = feed.rows()
    next(it)
    with pytest.raises(FeedError, match="already being iterated"):
        next(feed.rows())
    it.close()
    assert len(list(feed.rows())) == len(fleet.expected()) - 1


# ---------------------------------------------------------------------------------------------
# following


def test_follow_picks_up_shards_published_after_iteration_started(fleet: Fleet):
    feed = Feed(fleet.root, poll_interval=0.02)
    stop = threading.Event()
    got: List[str] = []
    n_before = len(fleet.expected())
    published = {}

    def publisher():
        # only once the follower has read everything that was there when it started
        wait_for(lambda: len(got) >= n_before, 10, "the follower to catch up")
        published["C1"] = fleet.out.rotation("hostC-33-ccc", "t", 5, 4, at_ms=1)  # an old clock
        fleet.out.append_raw(B, "\n")  # B4's torn line completes
        published["A5"] = fleet.out.rotation(A, "t", 0, 2, at_ms=60)

    t = threading.Thread(target=publisher)
    t.start()
    try:
        for row in feed.rows(follow=True, stop_event=stop, idle_timeout=10):
            got.append(row["id"])
            if len(got) == n_before + 4 + 3 + 2:
                break
    finally:
        t.join(10)
    assert got[:n_before] == fleet.expected()
    late = got[n_before:]
    c1 = [i for (_inst, _s, f, ids) in fleet.out.published if f == published["C1"]["file"] for i in ids]
    a5 = [i for (_inst, _s, f, ids) in fleet.out.published if f == published["A5"]["file"] for i in ids]
    # all three arrived; appended after what was consumed, whatever their publishedAt
    assert sorted(late) == sorted(c1 + fleet.ids["B4"] + a5)
    # the position after the last of them: nothing is left, and a new shard continues it
    tok = feed.position()
    assert list(Feed(fleet.root, start=tok).rows()) == []
    fleet.out.rotation(B, "t", 1, 2, at_ms=70)
    assert ids_of(Feed(fleet.root, start=tok).rows()) == fleet.out.published[-1][3]


def test_stop_event_and_idle_timeout_end_a_waiting_follower(fleet: Fleet):
    feed = Feed(fleet.root, poll_interval=0.02)
    stop = threading.Event()
    got: List[str] = []
    def follow():
        for row in feed.rows(follow=True, stop_event=stop):
            got.append(row["id"])

    t = threading.Thread(target=follow)
    t.start()
    wait_for(lambda: len(got) == len(fleet.expected()), 5, "the follower to read everything")
    assert t.is_alive()  # following: it waits for more
    stop.set()
    t.join(5)
    assert not t.is_alive() and got == fleet.expected()
    started = time.monotonic()
    assert ids_of(Feed(fleet.root, poll_interval=0.02).rows(follow=True, idle_timeout=0.2)) == fleet.expected()
    assert time.monotonic() - started < 5


def test_a_file_named_twice_is_read_once_also_across_resumes(tmp_path):
    from fakeout import FakeOutput

    out = FakeOutput(str(tmp_path / "o"))
    first = out.rotation(A, "t", 0, 3, at_ms=10)
    out.rotation(A, "t", 0, 2, at_ms=20)
    # B names A's first file again, stamped earlier than anything of A's
    out.append_raw(B, json.dumps({**first, "instance": B, "seq": 1, "publishedAt": "2026-03-01T11:00:00.000Z"}) + "\n")
    full = ids_of(Feed(out.root).rows())
    assert len(full) == len(set(full)) == 5
    for cut in range(len(full) + 1):
        feed = Feed(out.root)
        head = ids_of(islice(feed.rows(), cut))
        rest = ids_of(Feed(out.root, start=feed.position()).rows())
        assert head + rest == full, cut
