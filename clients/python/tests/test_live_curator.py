"""The feed against the real thing: a real Kafka broker, `mmssr produce` and `mmssr curate`
(node bin/mmssr.js, needs the built dist/), read while the curator publishes.

Runs only when MMSSR_KAFKA_BROKERS names a broker (CI sets it; locally e.g.
MMSSR_KAFKA_BROKERS=127.0.0.1:19092 after `bash connectors/kafka/local-broker.sh start`).
Every wait polls with a deadline; nothing sleeps for a fixed time to make an assertion true.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Dict, List

import pyarrow.parquet as pq
import pytest

from mmssr_feed import Feed, ManifestReader
from waiting import wait_for

BROKERS = os.environ.get("MMSSR_KAFKA_BROKERS", "").strip()
if not BROKERS and os.environ.get("MMSSR_REQUIRE_TOOLS") == "1":
    # CI (.ci/run) starts a broker and sets both: a live test that skips there is a red test
    raise RuntimeError("MMSSR_REQUIRE_TOOLS=1 but MMSSR_KAFKA_BROKERS is not set: start a broker (connectors/kafka/local-broker.sh)")
pytestmark = pytest.mark.skipif(not BROKERS, reason="MMSSR_KAFKA_BROKERS is not set (no Kafka broker)")

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "bin" / "mmssr.js"
FIXTURE = REPO / "test" / "fixtures" / "samples" / "llava_instruct_20.json"



def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("MMSSR_KAFKA_BROKERS is set but node is not on PATH")
    if not (REPO / "dist" / "src" / "cli" / "main.js").is_file():
        pytest.fail(f"{REPO}/dist is not built: run `npm run build` first (bin/mmssr.js runs dist/)")
    return exe


def write_round(path: Path, topic: str, round_no: int, n: int) -> List[str]:
    """n LLaVA records of the fixture (CC BY 4.0, see test/fixtures/ATTRIBUTION.md), each with
    an id of its own: the fixture has 20 records, the rounds need more and unique ids."""
    records = json.loads(FIXTURE.read_text(encoding="utf-8"))
    ids = []
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            rec = dict(records[i % len(records)])
            rec["id"] = f"{topic}-r{round_no}-{i:04d}"
            ids.append(rec["id"])
            f.write(json.dumps(rec) + "\n")
    return ids


def produce(exe: str, topic: str, path: Path, create: bool) -> None:
    args = [exe, str(CLI), "produce", "--brokers", BROKERS, "--topic", topic, "--in", str(path)]
    if create:
        args += ["--create-topic", "--partitions", "2"]
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"mmssr produce failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"


def selected_ids_on_disk(out: Path) -> Dict[str, List[str]]:
    """Every DIR/selected file read with pyarrow directly: {file: ids}."""
    return {
        f"selected/{os.path.basename(p)}": pq.read_table(p, columns=["id"]).column("id").to_pylist()
        for p in sorted(glob.glob(str(out / "selected" / "*.parquet")))
    }


def published_selected(out: Path) -> List[str]:
    return [e.file for e in ManifestReader(str(out)).poll()]


def test_feed_follows_resumes_and_splits_a_live_curator(tmp_path: Path):
    exe = node()
    topic = f"pyfeed-{uuid.uuid4().hex[:10]}"
    out = tmp_path / "out"
    log_path = tmp_path / "curate.log"

    def log() -> str:
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        return "curator output (tail):\n" + text[-4000:]

    # round 1 before the curator starts: `mmssr produce --create-topic` makes the fresh topic
    sent = write_round(tmp_path / "r1.jsonl", topic, 1, 120)
    produce(exe, topic, tmp_path / "r1.jsonl", create=True)

    # a follower that starts before the output folder even exists
    follower = Feed(str(out), poll_interval=0.1)
    followed: List[str] = []
    follower_error: List[BaseException] = []
    stop = threading.Event()

    def follow() -> None:
        try:
            for row in follower.rows(follow=True, stop_event=stop):
                followed.append(row["id"])
        except BaseException as err:  # surfaced by the main thread
            follower_error.append(err)

    follow_thread = threading.Thread(target=follow, daemon=True)
    follow_thread.start()

    with log_path.open("w", encoding="utf-8") as log_file:
        curator = subprocess.Popen(
            [exe, str(CLI), "curate", "--brokers", BROKERS, "--topic", topic, "--group", f"{topic}-g",
             "--out", str(out), "--mode", "window", "--ratio", "0.3",
             "--window-size", "40", "--window-ms", "500", "--rotate-rows", "20", "--rotate-ms", "500",
             "--no-images", "--progress-every", "0"],
            cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        # the curator publishes while it runs (rotation by rows and time), not only at the end
        wait_for(lambda: len(published_selected(out)) >= 2, 120, "two published selected shards", interval=0.1, log=log)
        assert curator.poll() is None, log()

        # stop a reader somewhere inside a shard, and keep its token as a checkpoint would
        reader = Feed(str(out), poll_interval=0.1)
        head: List[str] = []
        it = reader.rows(follow=True, idle_timeout=60)
        for row in it:
            head.append(row["id"])
            if len(head) >= 3 and reader.position()["shard"] is not None:
                break
        it.close()
        token = json.loads(json.dumps(reader.position()))
        assert token["shard"] is not None and token["row"] > 0, token

        # the follower has read published shards; more are published after that
        wait_for(lambda: len(followed) > 0, 60, "the follower's first rows", interval=0.1, log=log)
        before_round2 = set(published_selected(out))
        sent += write_round(tmp_path / "r2.jsonl", topic, 2, 120)
        produce(exe, topic, tmp_path / "r2.jsonl", create=False)
        wait_for(lambda: any(i.startswith(f"{topic}-r2-") for i in followed), 120,
                 "the follower to yield a row of round 2", interval=0.1, log=log)
        sent += write_round(tmp_path / "r3.jsonl", topic, 3, 80)
        produce(exe, topic, tmp_path / "r3.jsonl", create=False)
        wait_for(lambda: any(i.startswith(f"{topic}-r3-") for i in followed), 120,
                 "the follower to yield a row of round 3", interval=0.1, log=log)

        # SIGTERM: the curator drains, publishes what it decided and exits
        curator.send_signal(signal.SIGTERM)
        code = curator.wait(timeout=120)
        assert code == 0, f"curate exited {code}\n{log()}"
    finally:
        if curator.poll() is None:
            curator.kill()
            curator.wait(timeout=30)

    on_disk = selected_ids_on_disk(out)
    all_ids = [i for ids in on_disk.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) > 0
    assert set(all_ids) <= set(sent)
    assert {i.split("-r")[-1][0] for i in all_ids} == {"1", "2", "3"}  # every round selected some
    published = published_selected(out)
    assert sorted(published) == sorted(on_disk), "every selected file is published, and only those"
    assert set(published) - before_round2, "shards were published after the follower had started reading"

    # the follower picks everything up, exactly once, then stops on request
    wait_for(lambda: len(followed) >= len(all_ids) or follower_error, 60, "the follower to catch up", interval=0.1, log=log)
    stop.set()
    follow_thread.join(10)
    assert not follow_thread.is_alive()
    assert not follower_error, follower_error
    assert sorted(followed) == sorted(all_ids)

    # resuming from the token: no repeats, no gaps, the same order as one uninterrupted read
    full = [r["id"] for r in Feed(str(out), verify_sha256=True).rows()]
    assert sorted(full) == sorted(all_ids)
    rest = [r["id"] for r in Feed(str(out), start=token).rows()]
    assert head + rest == full

    # two ranks: disjoint, together every selected row, whole files each
    rank_ids = [[r["id"] for r in Feed(str(out), rank, 2).rows()] for rank in range(2)]
    assert not set(rank_ids[0]) & set(rank_ids[1])
    assert sorted(rank_ids[0] + rank_ids[1]) == sorted(all_ids)
    file_of = {i: f for f, ids in on_disk.items() for i in ids}
    files = [{file_of[i] for i in ids} for ids in rank_ids]
    assert not files[0] & files[1]

    # the TypeScript reader of the same contract (`mmssr tail`): the same rows in the same
    # order, per rank, and a Python token and a TypeScript one resume at the same row
    for rank in range(2):
        res = subprocess.run(
            [exe, str(CLI), "tail", "--out", str(out), "--once", "--rows", "--rank", str(rank), "--world-size", "2"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 0, res.stderr
        ts_ids = [json.loads(line)["id"] for line in res.stdout.splitlines() if line.strip()]
        assert ts_ids == rank_ids[rank], f"rank {rank}: mmssr tail and Feed disagree on the feed order"
    position = tmp_path / "ts-position.json"
    position.write_text(json.dumps(token), encoding="utf-8")
    res = subprocess.run(
        [exe, str(CLI), "tail", "--out", str(out), "--once", "--rows", "--position", str(position)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["id"] for line in res.stdout.splitlines() if line.strip()] == rest
