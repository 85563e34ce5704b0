/**
 * Revocation and reassignment inside one run (issue 7): the curation graph with a scripted
 * source that behaves as kafkajs' eager protocol does (every rebalance revokes everything and
 * re-reads kept partitions from the committed offset), a real partition owner, output location,
 * sink and scorer. A partition taken away and handed back is processed normally in its new
 * generation; what was published before is not decided again, what was in flight is given up
 * and decided once in the new generation; the final commit reaches the end of each partition.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { Subject } from "rxjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeadLetterFile } from "../../connectors/files/dead-letter-file.js";
import { createCurationSink, type FileSink } from "../../connectors/sink/curation-sink.js";
import { readPublishedEntries, SharedOutput } from "../../connectors/sink/shared-output.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { createImageLoader } from "../../src/scoring/image-source.js";
import { createOnnxScorer } from "../../src/scoring/onnx-scorer.js";
import type { Scorer } from "../../src/scoring/scoring-types.js";
import { runCurationGraph } from "../../src/stream/curation-graph.js";
import { selectWindow } from "../../src/stream/operators/select-window.js";
import { PartitionOwner } from "../../src/stream/partition-owner.js";
import type { AssignmentHandler, Source, TopicPartition } from "../../src/stream/ports.js";
import type { RawRecord } from "../../src/stream/stream-types.js";
import { packageRoot } from "../../src/util/package-root.js";
import { waitFor } from "../support/kafka.js";

const TOPIC = "t";
const PER_PARTITION = 400;

let dir: string;
let duck: DuckDBInstance;
let scorer: Scorer;
const imageLoader = createImageLoader({ baseDir: process.cwd() });
const values = syntheticSamples(2 * PER_PARTITION, 7).map((s) => new TextEncoder().encode(JSON.stringify(s)));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-rebalance-in-run-"));
  duck = await DuckDBInstance.create(":memory:");
  scorer = await createOnnxScorer({
    modelDir: join(packageRoot(), "models", "mmssr-lite"),
    workers: 1,
    imageLoader,
  });
}, 60_000);
afterAll(async () => {
  await scorer?.close();
  await imageLoader.close();
  duck?.closeSync();
  await rm(dir, { recursive: true, force: true });
});

/** A source whose assignments and deliveries the test drives, with kafkajs' eager semantics. */
function scriptedSource() {
  const records = new Subject<RawRecord>();
  const committed = new Map<string, string>();
  let handler: AssignmentHandler | undefined;
  let generation = 0;
  let owned: TopicPartition[] = [];
  const source: Source = {
    readyAt: Date.now(),
    records$: records.asObservable(),
    onAssignment(h) {
      handler = h;
    },
    async commit(offsets) {
      for (const [k, v] of offsets) committed.set(k, v);
    },
    async fence(_tp, _offset, gen) {
      return gen === generation;
    },
    async committedOffsets() {
      return new Map(committed);
    },
    async endOffsets() {
      return undefined;
    },
    pause() {},
    resume() {},
    end() {
      records.complete();
    },
    async stop() {},
  };
  return {
    source,
    committed,
    /** a rebalance: everything revoked, `partitions` assigned under a new generation */
    async assign(partitions: number[]): Promise<void> {
      generation++;
      const revoked = owned;
      owned = partitions.map((partition) => ({ topic: TOPIC, partition }));
      await handler?.({ generation, assigned: owned, revoked });
    },
    /** what kafkajs does after a (re)assignment: read from the committed offset up to `to` */
    deliver(partition: number, to: number): void {
      const from = Number(committed.get(`${TOPIC}:${partition}`) ?? "0");
      for (let o = from; o < to; o++)
        records.next({
          origin: { topic: TOPIC, partition, offset: String(o) },
          key: null,
          value: values[partition * PER_PARTITION + o],
          timestamp: Date.now(),
          generation,
        });
    },
  };
}

describe("a partition revoked and assigned again within one run", () => {
  it("is processed in its new generation: every offset decided exactly once, commits to the end", async () => {
    const out = join(dir, "out");
    const output = await SharedOutput.open({ dir: out });
    const script = scriptedSource();
    let sink: FileSink | undefined;
    const owner = new PartitionOwner({
      source: script.source,
      output,
      onRevoke: (keys) => sink?.discard(keys),
    });
    sink = await createCurationSink({
      output,
      gate: owner.gate,
      onPublish: (p) => owner.published(p),
      rotateRows: 50,
      rotateMs: 30,
    });
    const run = runCurationGraph({
      source: script.source,
      scorer,
      sink,
      owner,
      deadLetters: createDeadLetterFile(join(out, "dead-letters.jsonl")),
      select: selectWindow({ ratio: 0.2 }),
      windowSize: 100,
      windowMs: 40,
      commitIntervalMs: 20,
    });
    const scoredRows = async () =>
      (await readPublishedEntries(out)).filter((e) => e.kind === "scored").reduce((a, e) => a + e.rows, 0);

    // generation 1: both partitions, the first half of each
    await script.assign([0, 1]);
    script.deliver(0, PER_PARTITION / 2);
    script.deliver(1, PER_PARTITION / 2);
    await waitFor(async () => (await scoredRows()) >= 100, {
      timeoutMs: 30_000,
      what: "a first publication",
    });
    // generation 2: partition 1 moves away, partition 0 comes back (eager: from its committed offset)
    await script.assign([0]);
    script.deliver(0, PER_PARTITION);
    await waitFor(async () => script.committed.get(`${TOPIC}:0`) === String(PER_PARTITION), {
      timeoutMs: 30_000,
      what: "partition 0 committed to its end in generation 2",
    });
    // generation 3: partition 1 comes back too
    await script.assign([0, 1]);
    script.deliver(0, PER_PARTITION);
    script.deliver(1, PER_PARTITION);
    await waitFor(async () => script.committed.get(`${TOPIC}:1`) === String(PER_PARTITION), {
      timeoutMs: 30_000,
      what: "partition 1 committed to its end in generation 3",
    });
    script.source.end();
    const stats = await run;
    await sink.close();

    const files = (await readPublishedEntries(out))
      .filter((e) => e.kind === "scored")
      .map((e) => join(out, e.file));
    const con = await duck.connect();
    const rows = (
      await con.runAndReadAll(
        `SELECT origin_partition AS p, origin_offset AS o, count(*) AS n FROM read_parquet([${files.map((f) => `'${f}'`).join(", ")}]) GROUP BY 1, 2`,
      )
    ).getRowObjectsJS();
    con.closeSync();
    expect(rows.length, "distinct (partition, offset) decided").toBe(2 * PER_PARTITION);
    expect(
      rows.filter((r) => Number(r.n) !== 1),
      "offsets decided more than once",
    ).toEqual([]);
    expect(script.committed.get(`${TOPIC}:0`)).toBe(String(PER_PARTITION));
    expect(script.committed.get(`${TOPIC}:1`)).toBe(String(PER_PARTITION));
    // partition 0 was re-read from its committed offset twice, and partition 1 once: what had
    // been published by then was recognised, not decided again
    expect(stats.skippedPublished + owner.stats.givenUp).toBeGreaterThan(0);
    expect(owner.stats.revocations).toBe(2);
  }, 120_000);
});
