import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES, type StyleName } from "../../src/domain/taxonomy.js";
import { partitionKey } from "../../src/stream/offset-ledger.js";
import { PartitionOwner } from "../../src/stream/partition-owner.js";
import type { Publication, PublishGate, Source, TopicPartition } from "../../src/stream/ports.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { createRandom } from "../../src/util/random.js";
import { type Duck, openDuck } from "../../test/support/duckdb.js";
import { readScoredPoolParquet } from "../parquet/scored-pool-parquet.js";
import { type CurationSinkOptions, createCurationSink, type FileSink } from "./curation-sink.js";
import { readPublishedEntries, SharedOutput } from "./shared-output.js";
import { type ManifestEntry, ManifestWriter, parseFileName, readManifestFile } from "./sink-manifest.js";

let root: string;
let dir: string;
let duck: Duck;
let n = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "curation-sink-"));
  duck = await openDuck();
});
afterAll(async () => {
  duck.close();
  await rm(root, { recursive: true, force: true });
});
beforeEach(() => {
  dir = join(root, `run-${++n}`);
});
afterEach(() => {
  vi.restoreAllMocks();
});

const sql = (query: string) => duck.sql(query);
const lit = (p: string) => `'${p.replaceAll("'", "''")}'`;

function decision(
  topic: string,
  partition: number,
  offset: number | string,
  over: Partial<Decision> = {},
): Decision {
  const off = String(offset);
  const scores = new Float32Array(NUM_CAPABILITIES);
  for (let c = 0; c < NUM_CAPABILITIES; c++) scores[c] = (Number(BigInt(off) % 5n) + c / 14) % 5;
  scores[3] = Number.NaN; // a missing score
  const selected = over.selected ?? BigInt(off) % 3n === 0n;
  return {
    record: {
      origin: { topic, partition, offset: off },
      sample: {
        id: `${topic}-${partition}-${off}`,
        image_source: "coco",
        image: `img/${off}.jpg`,
        conversations: [
          { from: "human", value: `<image>\nWhat is in picture ${off}?` },
          { from: "gpt", value: "A cat, é." },
        ],
        note: { n: Number(off) },
      },
      timestamp: 0,
      modelId: "mmssr-lite@1",
      score: {
        scores,
        styles: ["yes/no", "short description"] as StyleName[],
        styleProbabilities: new Float32Array(NUM_STYLES),
        flags: [],
      },
    },
    selected,
    pickedBy: selected ? "ocr" : undefined,
    bucket: selected ? "yes/no+coco" : undefined,
    windowId: "w1",
    decidedAt: 1_700_000_000_000,
    ...over,
  };
}

/** the decision as read under an assignment generation */
const under = (generation: number, ds: Decision[]): Decision[] =>
  ds.map((d) => ({ ...d, record: { ...d.record, generation } }));

const range = (topic: string, partition: number, from: number, to: number): Decision[] => {
  const out: Decision[] = [];
  for (let o = from; o <= to; o++) out.push(decision(topic, partition, o));
  return out;
};

const publishAll: PublishGate = async (_tp, _generation, commitPoint) => {
  await commitPoint();
  return "published";
};

interface Opened {
  sink: FileSink;
  output: SharedOutput;
  /** what onPublish was told, in order */
  published: Publication[];
}

async function open(over: Partial<CurationSinkOptions> = {}, instanceId = "i1"): Promise<Opened> {
  const output = over.output ?? (await SharedOutput.open({ dir, instanceId }));
  const published: Publication[] = [];
  const sink = await createCurationSink({
    gate: publishAll,
    rotateRows: 1000,
    rotateBytes: 1 << 30,
    rotateMs: 3_600_000,
    timer: false,
    ...over,
    output,
    onPublish: (p) => {
      published.push(p);
      over.onPublish?.(p);
    },
  });
  return { sink, output, published };
}

/** the files of publications, in order */
const names = (ps: readonly Publication[]) => ps.flatMap((p) => p.files);

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

async function listed(sub: string): Promise<string[]> {
  return (await readdir(join(dir, sub)).catch(() => [] as string[])).sort();
}

async function allScoredOffsets(): Promise<string[]> {
  const files = (await readdir(join(dir, "scored"))).filter((f) => f.endsWith(".parquet"));
  if (files.length === 0) return [];
  const rows = await sql(
    `SELECT origin_topic || ':' || origin_partition || ':' || origin_offset AS k FROM read_parquet([${files.map((f) => lit(join(dir, "scored", f))).join(", ")}]) ORDER BY k`,
  );
  return rows.map((r) => String(r.k));
}

/** A gate that holds the commit point until `open()` is called. */
function heldGate(verdict: "published" | "retry" | "given-up" = "published") {
  let entered!: () => void;
  const reached = new Promise<void>((resolve) => (entered = resolve));
  let let_go!: () => void;
  const released = new Promise<void>((resolve) => (let_go = resolve));
  const gate: PublishGate = async (_tp, _g, commitPoint) => {
    entered();
    await released;
    if (verdict === "published") await commitPoint();
    return verdict;
  };
  return { gate, reached, open: () => let_go() };
}

describe("curation sink: rotation and names", () => {
  it("rotates by rows, one file per partition per rotation, names carrying the range (no seq)", async () => {
    const { sink, output, published } = await open({ rotateRows: 3 });
    await sink.write(range("t", 0, 0, 6));
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-2.parquet",
      "selected/selected-t-p0-0-2.parquet",
      "scored/scored-t-p0-3-5.parquet",
      "selected/selected-t-p0-3-5.parquet",
    ]);
    expect(sink.pendingRows).toBe(1);
    await sink.flush();
    expect(names(published.slice(2))).toEqual([
      "scored/scored-t-p0-6-6.parquet",
      "selected/selected-t-p0-6-6.parquet",
    ]);
    expect(sink.stats()).toMatchObject({
      pendingRows: 0,
      publishedFiles: 6,
      publishedRows: { scored: 7, selected: 3 },
      givenUpRows: 0,
      retries: 0,
    });
    await sink.close();
    const { entries } = await readManifestFile(join(dir, "manifests", "i1.jsonl"));
    expect(output.manifestPath).toBe(join(dir, "manifests", "i1.jsonl"));
    expect(
      entries.map((e) => [
        e.file,
        e.kind,
        e.topic,
        e.partition,
        e.firstOffset,
        e.lastOffset,
        e.rows,
        e.decided,
      ]),
    ).toEqual([
      ["scored/scored-t-p0-0-2.parquet", "scored", "t", 0, "0", "2", 3, 3],
      ["selected/selected-t-p0-0-2.parquet", "selected", "t", 0, "0", "2", 1, 3],
      ["scored/scored-t-p0-3-5.parquet", "scored", "t", 0, "3", "5", 3, 3],
      ["selected/selected-t-p0-3-5.parquet", "selected", "t", 0, "3", "5", 1, 3],
      ["scored/scored-t-p0-6-6.parquet", "scored", "t", 0, "6", "6", 1, 1],
      ["selected/selected-t-p0-6-6.parquet", "selected", "t", 0, "6", "6", 1, 1],
    ]);
    for (const e of entries) {
      expect(e.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(e).toMatchObject({ instance: "i1", generation: 0 });
      expect(e.bytes).toBe((await stat(join(dir, e.file))).size);
    }
    // both lines of a rotation share its seq
    expect(entries.map((e) => e.seq)).toEqual([1, 1, 2, 2, 3, 3]);
    expect(await exists(join(dir, "manifest.jsonl"))).toBe(false); // no legacy manifest
  });

  it("rotates by estimated bytes", async () => {
    const { sink, published } = await open({ rotateBytes: 1500 });
    await sink.write(range("t", 1, 10, 19));
    expect(published.length).toBeGreaterThan(0);
    for (const p of published) expect(p.offsets.length).toBeLessThan(10);
    await sink.flush();
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(10);
  });

  it("rotates by time (injected clock) through tick()", async () => {
    let t = 1000;
    const { sink, published } = await open({ rotateMs: 500, now: () => t });
    await sink.write(range("t", 0, 0, 1));
    expect(published).toEqual([]);
    t = 1200;
    await sink.write(range("t", 1, 0, 0));
    await sink.tick();
    expect(published).toEqual([]);
    t = 1500; // partition 0's oldest row is 500 ms old; partition 1's only 300
    await sink.tick();
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-1.parquet",
      "selected/selected-t-p0-0-1.parquet",
    ]);
    t = 1700;
    await sink.tick();
    expect(names(published.slice(1))).toEqual([
      "scored/scored-t-p1-0-0.parquet",
      "selected/selected-t-p1-0-0.parquet",
    ]);
    await sink.close();
  });

  it("rotates by time on its own timer", async () => {
    const { sink, published } = await open({ rotateMs: 40, timer: true });
    await sink.write([decision("t", 0, 1, { selected: false })]);
    for (let i = 0; i < 200 && published.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(names(published)).toEqual(["scored/scored-t-p0-1-1.parquet"]); // nothing selected: no selected file
    await sink.close();
  });

  it("percent-encodes topics that are not name-safe, and parses them back", async () => {
    const { sink, published } = await open();
    await sink.write([decision("data/in put.jsonl", 2, 5, { selected: false })]);
    await sink.flush();
    expect(names(published)).toEqual(["scored/scored-data%2Fin%20put.jsonl-p2-5-5.parquet"]);
    const parsed = {
      kind: "scored",
      topic: "data/in put.jsonl",
      partition: 2,
      firstOffset: "5",
      lastOffset: "5",
    };
    expect(parseFileName("scored-data%2Fin%20put.jsonl-p2-5-5.parquet")).toEqual(parsed);
    // a name of the single-instance layout (with its seq) still parses
    expect(parseFileName("scored-data%2Fin%20put.jsonl-p2-5-5-000001.parquet")).toEqual(parsed);
    await sink.close();
    const [e] = await readPublishedEntries(dir);
    expect(e).toMatchObject({ topic: "data/in put.jsonl", partition: 2 });
  });

  it("refuses bad options, decisions of another model, and writes after close", async () => {
    const output = await SharedOutput.open({ dir, instanceId: "i1" });
    await expect(createCurationSink({ output, gate: publishAll, rotateRows: 0 })).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
    const { sink } = await open({ output, modelId: "other@2" });
    await expect(sink.write([decision("t", 0, 0)])).rejects.toThrow(
      /scored by mmssr-lite@1, sink expects other@2/,
    );
    expect(sink.pendingRows).toBe(0);
    await sink.close();
    await expect(sink.write([decision("t", 0, 0)])).rejects.toMatchObject({ code: ERROR_CODES.INTERNAL });
  });
});

describe("curation sink: file contents", () => {
  it("writes files DuckDB reads: the sample, scores, styles, picks and origin", async () => {
    const { sink, published } = await open();
    const d = decision("t", 0, "9007199254740993", { selected: true }); // above 2^53
    (d.record.sample as Record<string, unknown>).image_b64 = Buffer.from([1, 2, 3]).toString("base64");
    d.record.score.flags.push("text-truncated");
    await sink.write([d, decision("t", 0, "9007199254740994", { selected: false })]);
    await sink.flush();
    await sink.close();
    const [p] = published;
    const sel = join(dir, p.files.find((f) => f.startsWith("selected/")) as string);
    const scored = join(dir, p.files.find((f) => f.startsWith("scored/")) as string);
    const [row] = await sql(
      `SELECT id, image_source, styles, score_spatial, score_scene, picked_by, bucket, window_id, model_id, flags,
              origin_topic, origin_partition, CAST(origin_offset AS VARCHAR) AS off, epoch_ms(decided_at)::DOUBLE AS at,
              conversations[1].from AS f1, conversations[2].value AS v2, len(conversations)::INTEGER AS turns,
              image, images, image_url, octet_length(image_bytes)::INTEGER AS nbytes, extra
       FROM read_parquet(${lit(sel)})`,
    );
    expect(row).toEqual({
      id: "t-0-9007199254740993",
      image_source: "coco",
      styles: ["yes/no", "short description"],
      score_spatial: Math.fround(Number(9007199254740993n % 5n)),
      score_scene: null,
      picked_by: "ocr",
      bucket: "yes/no+coco",
      window_id: "w1",
      model_id: "mmssr-lite@1",
      flags: ["text-truncated"],
      origin_topic: "t",
      origin_partition: 0,
      off: "9007199254740993",
      at: 1_700_000_000_000,
      f1: "human",
      v2: "A cat, é.",
      turns: 2,
      image: "img/9007199254740993.jpg",
      images: null,
      image_url: null,
      nbytes: 3,
      extra: JSON.stringify({ note: { n: 9007199254740992 } }),
    });
    const rows = await sql(
      `SELECT CAST(origin_offset AS VARCHAR) AS off, selected, score_ocr FROM read_parquet(${lit(scored)}) ORDER BY origin_offset`,
    );
    expect(rows.map((r) => [r.off, r.selected])).toEqual([
      ["9007199254740993", true],
      ["9007199254740994", false],
    ]);
    expect(p.files).toEqual([
      "scored/scored-t-p0-9007199254740993-9007199254740994.parquet",
      "selected/selected-t-p0-9007199254740993-9007199254740994.parquet",
    ]);
  });

  it("writes scored files that readScoredPoolParquet (mmssr select --scores) reads", async () => {
    const { sink, published } = await open();
    await sink.write(range("t", 0, 0, 9));
    await sink.flush();
    await sink.close();
    const [p] = published;
    const pool = await readScoredPoolParquet(join(dir, p.files[0]));
    expect(pool.size).toBe(10);
    expect(pool.ids[0]).toBe("t-0-0");
    const d = decision("t", 0, 7);
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const expected = d.record.score.scores[c];
      if (Number.isNaN(expected)) expect(Number.isNaN(pool.scores[c][7])).toBe(true);
      // scores are stored as mmssr score writes them: 4 decimals
      else expect(pool.scores[c][7]).toBe(Math.round(expected * 1e4) / 1e4);
    }
    expect(pool.extras.get(3)).toMatchObject({
      selected: true,
      origin_offset: 3,
      origin_topic: "t",
      model_id: "mmssr-lite@1",
    });
    expect(CAPABILITY_IDS).toHaveLength(14);
    // the selected output is a scored pool too
    expect((await readScoredPoolParquet(join(dir, p.files[1]))).size).toBe(4);
  });
});

describe("curation sink: the shared output", () => {
  it("writes under DIR/tmp/<instance>/, publishes into scored/ and selected/, empties tmp, removes it at close", async () => {
    let inTmp: string[] = [];
    let published: string[] = [];
    const gate: PublishGate = async (_tp, _g, commitPoint) => {
      inTmp = await listed("tmp/i1");
      published = [...(await listed("scored")), ...(await listed("selected"))];
      await commitPoint();
      return "published";
    };
    const { sink, output } = await open({ gate });
    expect(output.tmpDir).toBe(join(dir, "tmp", "i1"));
    await sink.write(range("t", 0, 0, 2));
    await sink.flush();
    expect(inTmp).toEqual(["scored-t-p0-0-2.parquet", "selected-t-p0-0-2.parquet"]);
    expect(published).toEqual([]); // nothing visible before the commit point
    expect(await listed("tmp/i1")).toEqual([]);
    expect(await listed("scored")).toEqual(["scored-t-p0-0-2.parquet"]);
    expect(await listed("selected")).toEqual(["selected-t-p0-0-2.parquet"]);
    await sink.write(range("t", 0, 3, 4));
    await sink.flush();
    expect(await listed("tmp/i1")).toEqual([]);
    await sink.close();
    expect(await exists(output.tmpDir)).toBe(false);
    expect(await listed("manifests")).toEqual(["i1.jsonl"]);
    const lines = (await readFile(output.manifestPath, "utf8")).trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ instance: "i1", generation: 0 });
  });

  it("two instances on one folder each append to their own manifest", async () => {
    const a = await open({}, "a");
    const b = await open({}, "b");
    await a.sink.write(range("t", 0, 0, 3));
    await b.sink.write(range("t", 1, 0, 3));
    await Promise.all([a.sink.flush(), b.sink.flush()]);
    await a.sink.close();
    expect(await exists(b.output.tmpDir)).toBe(true); // a's close leaves b's folder alone
    await b.sink.close();
    expect(await listed("manifests")).toEqual(["a.jsonl", "b.jsonl"]);
    const entries = await readPublishedEntries(dir);
    expect(entries.filter((e) => e.instance === "a").map((e) => e.partition)).toEqual([0, 0]);
    expect(entries.filter((e) => e.instance === "b").map((e) => e.partition)).toEqual([1, 1]);
  });

  it("tells onPublish the topic, partition, generation, offsets ascending, selected count and files", async () => {
    const { sink, published } = await open();
    await sink.write(
      under(
        4,
        [9, 2, 5, 3].map((o) => decision("t", 0, o)),
      ),
    );
    await sink.flush();
    expect(published).toEqual([
      {
        topic: "t",
        partition: 0,
        generation: 4,
        offsets: ["2", "3", "5", "9"],
        selected: 2,
        files: ["scored/scored-t-p0-2-9.parquet", "selected/selected-t-p0-2-9.parquet"],
      },
    ]);
    await sink.close();
    const { entries } = await readManifestFile(join(dir, "manifests", "i1.jsonl"));
    expect(entries.map((e) => [e.generation, e.rows, e.decided])).toEqual([
      [4, 4, 4],
      [4, 2, 4],
    ]);
    // rows in offset order
    const rows = await sql(
      `SELECT CAST(origin_offset AS VARCHAR) AS off FROM read_parquet(${lit(join(dir, "scored", "scored-t-p0-2-9.parquet"))})`,
    );
    expect(rows.map((r) => r.off)).toEqual(["2", "3", "5", "9"]);
  });
});

describe("curation sink: the publish gate", () => {
  it("is asked per rotation with the partition and the rows' generation", async () => {
    const asked: [TopicPartition, number][] = [];
    const gate: PublishGate = async (tp, g, commitPoint) => {
      asked.push([tp, g]);
      await commitPoint();
      return "published";
    };
    const { sink } = await open({ gate });
    await sink.write([...under(3, range("t", 0, 0, 1)), ...under(5, range("t", 2, 0, 0))]);
    await sink.flush();
    expect(asked).toEqual([
      [{ topic: "t", partition: 0 }, 3],
      [{ topic: "t", partition: 2 }, 5],
    ]);
    await sink.close();
  });

  it("given-up: no file, no manifest line, rows dropped, tmp empty, onPublish not called", async () => {
    let ran = 0;
    const gate: PublishGate = async (tp) => {
      ran++;
      if (tp.partition === 0) return "given-up";
      return "published";
    };
    const { sink, output, published } = await open({ gate, rotateRows: 4 });
    await sink.write(range("t", 0, 0, 5)); // 0..3 rotate and are given up; 4..5 stay
    expect(ran).toBe(1);
    expect(sink.stats()).toMatchObject({ pendingRows: 2, givenUpRows: 4, publishedFiles: 0 });
    await sink.flush();
    expect(sink.stats()).toMatchObject({ pendingRows: 0, givenUpRows: 6, publishedFiles: 0, retries: 0 });
    expect(published).toEqual([]);
    expect(await listed("scored")).toEqual([]);
    expect(await listed("selected")).toEqual([]);
    expect(await listed("tmp/i1")).toEqual([]);
    expect(await readFile(output.manifestPath, "utf8")).toBe("");
    await sink.close();
    expect(await readPublishedEntries(dir)).toEqual([]);
  });

  it("retry: rows kept, published on a later flush once the gate says published", async () => {
    let verdict: "retry" | "published" = "retry";
    const gate: PublishGate = async (_tp, _g, commitPoint) => {
      if (verdict === "retry") return "retry";
      await commitPoint();
      return "published";
    };
    const { sink, output, published } = await open({ gate });
    await sink.write(range("t", 0, 0, 5));
    await sink.flush();
    await sink.flush();
    expect(sink.stats()).toMatchObject({ pendingRows: 6, retries: 2, publishedFiles: 0, givenUpRows: 0 });
    expect(await listed("scored")).toEqual([]);
    expect(await listed("tmp/i1")).toEqual([]);
    expect(await readFile(output.manifestPath, "utf8")).toBe("");
    // rows that arrive meanwhile join the kept ones
    await sink.write(range("t", 0, 6, 7));
    verdict = "published";
    await sink.flush();
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-7.parquet",
      "selected/selected-t-p0-0-7.parquet",
    ]);
    expect(published[0].offsets).toEqual(["0", "1", "2", "3", "4", "5", "6", "7"]);
    expect(sink.stats()).toMatchObject({ pendingRows: 0, retries: 2, publishedFiles: 2 });
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(8);
  });

  it("retry on the time trigger: tried again at the next tick", async () => {
    let t = 0;
    let verdict: "retry" | "published" = "retry";
    const gate: PublishGate = async (_tp, _g, commitPoint) => {
      if (verdict === "retry") return "retry";
      await commitPoint();
      return "published";
    };
    const { sink, published } = await open({ gate, rotateMs: 100, now: () => t });
    await sink.write(range("t", 0, 0, 1));
    t = 100;
    await sink.tick();
    expect(sink.stats()).toMatchObject({ pendingRows: 2, retries: 1 });
    verdict = "published";
    t = 101;
    await sink.tick(); // still due: its rows are as old as before
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-1.parquet",
      "selected/selected-t-p0-0-1.parquet",
    ]);
    await sink.close();
  });

  it("a commit point that fails (the selected folder is gone) takes back the scored file; rows pending; error surfaces", async () => {
    let sabotage = true;
    const gate: PublishGate = async (_tp, _g, commitPoint) => {
      if (sabotage) await rm(join(dir, "selected"), { recursive: true });
      await commitPoint();
      return "published";
    };
    const { sink, output, published } = await open({ gate });
    await sink.write(range("t", 0, 0, 5));
    const err = await sink.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.IO);
    expect(await listed("scored")).toEqual([]);
    expect(await listed("tmp/i1")).toEqual([]);
    expect(sink.stats()).toMatchObject({ pendingRows: 6, publishedFiles: 0, givenUpRows: 0 });
    expect(published).toEqual([]);
    expect(await readFile(output.manifestPath, "utf8")).toBe("");
    sabotage = false;
    await mkdir(join(dir, "selected"));
    await sink.flush();
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-5.parquet",
      "selected/selected-t-p0-0-5.parquet",
    ]);
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(6);
  });

  it("a manifest append that fails takes both renamed files back; rows pending; error surfaces", async () => {
    const { sink, output, published } = await open();
    vi.spyOn(ManifestWriter.prototype, "append").mockRejectedValueOnce(new Error("disk full"));
    // two partitions due at once: the second is not tried after the first failed, and stays too
    await sink.write([...range("t", 1, 0, 1), ...range("t", 0, 0, 2)]);
    const err = await sink.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).message).toContain("disk full");
    expect(await listed("scored")).toEqual([]);
    expect(await listed("selected")).toEqual([]);
    expect(await listed("tmp/i1")).toEqual([]);
    expect(sink.pendingRows).toBe(5);
    expect(published).toEqual([]);
    expect(await readFile(output.manifestPath, "utf8")).toBe("");
    await sink.flush();
    expect(names(published).sort()).toEqual([
      "scored/scored-t-p0-0-2.parquet",
      "scored/scored-t-p1-0-1.parquet",
      "selected/selected-t-p0-0-2.parquet",
      "selected/selected-t-p1-0-1.parquet",
    ]);
    await sink.close();
    expect((await readPublishedEntries(dir)).map((e) => e.file).sort()).toEqual(names(published).sort());
  });

  it("a gate that throws: error surfaces, temporary files dropped, rows pending", async () => {
    const gate: PublishGate = async () => {
      throw new MmssrError(ERROR_CODES.LOCK_TIMEOUT, "held too long", { retriable: true });
    };
    const { sink, output } = await open({ gate });
    await sink.write(range("t", 0, 0, 2));
    await expect(sink.flush()).rejects.toMatchObject({ code: ERROR_CODES.LOCK_TIMEOUT });
    expect(await listed("tmp/i1")).toEqual([]);
    expect(sink.pendingRows).toBe(3);
    await expect(sink.close()).rejects.toMatchObject({ code: ERROR_CODES.LOCK_TIMEOUT });
    expect(await exists(output.tmpDir)).toBe(false);
  });
});

describe("curation sink: the output topic hook", () => {
  it("beforeManifest gets the rotation's selected decisions once the files are in place, before the manifest line", async () => {
    const seen: { ids: string[]; filesThere: boolean; lines: number }[] = [];
    const opened = await open({
      rotateRows: 6,
      beforeManifest: async (selected) => {
        const manifest = await readManifestFile(opened.output.manifestPath);
        seen.push({
          ids: selected.map((d) => d.record.sample.id as string),
          filesThere: (await listed("scored")).length > 0,
          lines: manifest.entries.length,
        });
      },
    });
    await opened.sink.write(range("t", 0, 0, 5));
    await opened.sink.close();
    // offsets 0 and 3 are the selected ones of the fixture (offset % 3 === 0)
    expect(seen).toEqual([{ ids: ["t-0-0", "t-0-3"], filesThere: true, lines: 0 }]);
    expect((await readManifestFile(opened.output.manifestPath)).entries.length).toBe(2);
  });

  it("a failing beforeManifest takes the renamed files back and keeps the rows pending: nothing is published", async () => {
    let fail = true;
    const { sink, output } = await open({
      beforeManifest: async () => {
        if (fail) throw new Error("output topic down");
      },
    });
    await sink.write(range("t", 0, 0, 2));
    await expect(sink.flush()).rejects.toThrow(/output topic down/);
    expect(await listed("scored")).toEqual([]);
    expect(await listed("selected")).toEqual([]);
    expect((await readManifestFile(output.manifestPath)).entries).toEqual([]);
    expect(sink.stats().pendingRows).toBe(3);
    fail = false;
    await sink.flush();
    expect(await allScoredOffsets()).toEqual(["t:0:0", "t:0:1", "t:0:2"]);
    await sink.close();
  });
});

describe("curation sink: discard and generations", () => {
  it("discard drops the pending rows of those partitions only", async () => {
    const { sink, published } = await open();
    await sink.write([...range("t", 0, 0, 3), ...range("t", 1, 0, 1), ...range("u", 0, 0, 0)]);
    sink.discard(["t:0", "u:0", "t:7"]);
    expect(sink.stats()).toMatchObject({ pendingRows: 2, givenUpRows: 5 });
    await sink.flush();
    expect(names(published)).toEqual([
      "scored/scored-t-p1-0-1.parquet",
      "selected/selected-t-p1-0-1.parquet",
    ]);
    await sink.close();
  });

  it("ignores decisions of an older generation than the pending group; a newer one replaces it", async () => {
    const { sink, published } = await open();
    await sink.write(under(2, range("t", 0, 0, 2)));
    await sink.write(under(1, range("t", 0, 3, 4))); // stale: its partition was given up since
    expect(sink.stats()).toMatchObject({ pendingRows: 3, givenUpRows: 0 });
    await sink.write(under(3, range("t", 0, 0, 1))); // re-read under the next generation
    expect(sink.stats()).toMatchObject({ pendingRows: 2, givenUpRows: 3 });
    await sink.write(under(2, range("t", 0, 5, 5)));
    expect(sink.pendingRows).toBe(2);
    await sink.flush();
    expect(published).toEqual([
      expect.objectContaining({ generation: 3, offsets: ["0", "1"], files: expect.any(Array) }),
    ]);
    await sink.close();
    const entries = await readPublishedEntries(dir);
    expect(entries.map((e) => [e.file, e.generation])).toEqual([
      ["scored/scored-t-p0-0-1.parquet", 3],
      ["selected/selected-t-p0-0-1.parquet", 3],
    ]);
  });

  it("a decision repeated within one generation's pending group is kept once", async () => {
    const { sink, published } = await open();
    await sink.write(range("t", 0, 0, 2));
    await sink.write(range("t", 0, 1, 3));
    expect(sink.pendingRows).toBe(4);
    await sink.flush();
    expect(published[0].offsets).toEqual(["0", "1", "2", "3"]);
    await sink.close();
  });

  it("rows kept for a retry give way to a newer generation written meanwhile", async () => {
    const held = heldGate("retry");
    const { sink } = await open({ gate: held.gate });
    await sink.write(under(1, range("t", 0, 0, 2)));
    const flushing = sink.flush();
    await held.reached;
    const writing = sink.write(under(2, range("t", 0, 0, 0))); // queued behind the flush
    held.open();
    await flushing;
    await writing;
    expect(sink.stats()).toMatchObject({ pendingRows: 1, givenUpRows: 3, retries: 1 });
    await sink.abort();
  });

  it("abort drops what is pending, publishes nothing, leaves tmp for the next start", async () => {
    const { sink, output, published } = await open();
    await sink.write(range("t", 0, 0, 4));
    await sink.abort();
    await sink.abort(); // twice is harmless
    expect(sink.pendingRows).toBe(0);
    expect(published).toEqual([]);
    expect(await listed("scored")).toEqual([]);
    expect(await exists(output.tmpDir)).toBe(true);
    await sink.close(); // after abort: nothing to do
    expect(await listed("scored")).toEqual([]);
  });

  it("abort while a rotation is in flight: pendingRows stays 0", async () => {
    const held = heldGate("published");
    const { sink, published } = await open({ gate: held.gate, rotateRows: 2 });
    const writing = sink.write(range("t", 0, 0, 1)); // rotates at once
    await held.reached;
    const aborting = sink.abort();
    held.open();
    await writing;
    await aborting;
    expect(published).toHaveLength(1); // the commit point had started: it completes
    expect(sink.pendingRows).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A fleet: instances sharing one output, each with a real PartitionOwner over a fake source

type FakeSource = Pick<Source, "fence" | "committedOffsets">;

interface Member {
  id: string;
  output: SharedOutput;
  owner: PartitionOwner;
  sink: FileSink;
  alive: boolean;
  generation: number;
  /** partition keys assigned to it in the current generation */
  owned: Set<string>;
  /** next offset to read, per owned key (after its claim) */
  next: Map<string, number>;
  /** records read and tracked, not yet decided */
  held: Decision[];
}

/** The broker: a group generation, who owns what in it, committed offsets. */
class FakeGroup {
  generation = 0;
  readonly assignment = new Map<string, Member>();
  readonly committed = new Map<string, string>();
  /** commits that moved an offset backwards (must stay 0) */
  backwards = 0;

  commit(key: string, offset: string): void {
    const before = this.committed.get(key);
    if (before !== undefined && BigInt(offset) < BigInt(before)) this.backwards++;
    this.committed.set(key, offset);
  }

  source(m: Member, flaky: () => boolean): FakeSource {
    return {
      fence: async (tp, offset, generation) => {
        await Promise.resolve();
        const key = partitionKey(tp.topic, tp.partition);
        if (!m.alive || generation !== this.generation || this.assignment.get(key) !== m) return false;
        if (flaky()) return false; // a broker error: not known lost
        this.commit(key, offset);
        return true;
      },
      committedOffsets: async (partitions) => {
        await Promise.resolve();
        const out = new Map<string, string>();
        for (const [key, c] of this.committed)
          if (!partitions || partitions.some((tp) => partitionKey(tp.topic, tp.partition) === key))
            out.set(key, c);
        return out;
      },
    };
  }
}

interface FleetResult {
  skipped: number;
  givenUp: number;
  retries: number;
  crashes: number;
  moves: number;
  publications: number;
}

async function fleetRun(seed: number, partitions = 3, records = 36, steps = 200): Promise<FleetResult> {
  const topic = "t";
  const keys = Array.from({ length: partitions }, (_, p) => partitionKey(topic, p));
  const tpOf = (key: string): TopicPartition => ({ topic, partition: Number(key.split(":")[1]) });
  const rnd = createRandom(seed);
  const flakyRnd = createRandom(seed ^ 0x5eed);
  const group = new FakeGroup();
  const members: Member[] = [];
  const errors: unknown[] = [];
  const inflight: Promise<void>[] = [];
  const res: FleetResult = {
    skipped: 0,
    givenUp: 0,
    retries: 0,
    crashes: 0,
    moves: 0,
    publications: 0,
  };
  let lives = 0;
  let orphan = 1000;

  const background = (p: Promise<unknown>) =>
    inflight.push(
      p.then(
        () => {},
        (e) => {
          errors.push(e);
        },
      ),
    );
  const settle = async () => {
    while (inflight.length > 0) await Promise.all(inflight.splice(0));
  };
  const live = () => members.filter((m) => m.alive);

  const start = async (): Promise<Member> => {
    const id = `m${++lives}`;
    const output = await SharedOutput.open({ dir, instanceId: id });
    const m = {
      id,
      output,
      alive: true,
      generation: -1,
      owned: new Set(),
      next: new Map(),
      held: [],
    } as unknown as Member;
    m.owner = new PartitionOwner({
      source: group.source(m, () => flakyRnd.next() < 0.15),
      output,
      onRevoke: (ks) => m.sink.discard(ks),
    });
    m.sink = await createCurationSink({
      output,
      gate: m.owner.gate,
      onPublish: (p) => {
        res.publications++;
        m.owner.published(p);
      },
      rotateRows: 5 + rnd.int(10),
      rotateBytes: 1 << 30,
      rotateMs: 3_600_000,
      timer: false,
      sha256: false,
    });
    members.push(m);
    return m;
  };

  /** The eager protocol (kafkajs): every member gives up everything, then gets its new share. */
  const rebalance = async () => {
    const gen = ++group.generation;
    const members = live();
    const before = new Map(group.assignment);
    group.assignment.clear();
    for (const key of keys) {
      const m = members[rnd.int(members.length)];
      group.assignment.set(key, m);
      if (before.get(key) !== m) res.moves++;
    }
    await Promise.all(
      members.map(async (m) => {
        const revoked = [...m.owned].map(tpOf);
        const mine = keys.filter((k) => group.assignment.get(k) === m);
        m.owned = new Set(mine);
        m.generation = gen;
        m.next.clear();
        await m.owner.handleAssignment({ generation: gen, revoked, assigned: mine.map(tpOf) });
        // the consumer reads the assigned partitions from the committed offset, after the claim
        for (const k of mine) m.next.set(k, Number(group.committed.get(k) ?? "0"));
      }),
    );
  };

  const read = (m: Member, count: number) => {
    const ks = [...m.next.keys()];
    if (ks.length === 0) return;
    const key = ks[rnd.int(ks.length)];
    const partition = tpOf(key).partition;
    let off = m.next.get(key) as number;
    for (let i = 0; i < count && off < records; i++, off++) {
      const d = under(m.generation, [decision(topic, partition, off)])[0];
      const verdict = m.owner.admit(d.record.origin, m.generation);
      if (verdict === "track") m.held.push(d);
      else if (verdict === "skip") res.skipped++;
    }
    m.next.set(key, off);
  };

  const decide = (m: Member, share: number): Promise<void> => {
    const out: Decision[] = [];
    const keep: Decision[] = [];
    for (const d of m.held) (rnd.next() < share ? out : keep).push(d);
    m.held = keep;
    // the graph drops decisions of a generation that is over; sometimes let them reach the sink anyway
    const batch =
      rnd.next() < 0.85 ? out.filter((d) => m.owner.isCurrent(d.record.origin, d.record.generation)) : out;
    return m.sink.write(batch);
  };

  /** The graph's commit timer: commits what the owner says; the broker takes it from the current owner only. */
  const commit = (m: Member) => {
    const accepted = new Map<string, string>();
    for (const [key, offset] of m.owner.committable())
      if (m.alive && m.generation === group.generation && group.assignment.get(key) === m) {
        group.commit(key, offset);
        accepted.set(key, offset);
      }
    m.owner.committed(accepted);
  };

  const crash = async (m: Member) => {
    m.alive = false;
    res.crashes++;
    await m.sink.abort();
    // what a crash may leave: a torn manifest line, files renamed into place that no manifest names
    if (rnd.next() < 0.5) await appendFile(m.output.manifestPath, '{"file":"scored/scored-t-p0-');
    if (rnd.next() < 0.5) {
      const p = rnd.int(partitions);
      const o = orphan++;
      await writeFile(join(dir, "scored", `scored-t-p${p}-${o}-${o + 1}.parquet`), "renamed, never named");
      await writeFile(
        join(dir, "selected", `selected-t-p${p}-${o}-${o + 1}.parquet`),
        "renamed, never named",
      );
    }
    if (rnd.next() < 0.5) await writeFile(join(m.output.tmpDir, "scored-t-p0-0-1.parquet"), "half written");
  };

  await start();
  await start();
  await rebalance();
  for (let step = 0; step < steps; step++) {
    const alive = live();
    const m = alive[rnd.int(alive.length)];
    const r = rnd.next();
    if (r < 0.34) read(m, 1 + rnd.int(6));
    else if (r < 0.58) {
      const p = decide(m, 0.6);
      if (rnd.next() < 0.5) await p.catch((e) => errors.push(e));
      else background(p);
    } else if (r < 0.68) background(m.sink.flush());
    else if (r < 0.8) commit(m);
    else if (r < 0.87) await rebalance();
    else if (r < 0.91) {
      if (alive.length === 1) await start();
      await crash(m);
      await rebalance();
    } else if (r < 0.94 && alive.length < 4) {
      await start();
      await rebalance();
    }
    if (step % 20 === 19) await settle();
  }

  // the end: the last assignment reads everything, decides it, publishes and commits
  await settle();
  await rebalance();
  const done = () =>
    live().every(
      (m) =>
        m.sink.pendingRows === 0 &&
        m.held.length === 0 &&
        m.owner.undecidedTotal === 0 &&
        [...m.next.values()].every((o) => o >= records),
    );
  for (let round = 0; round < 200 && !done(); round++) {
    for (const m of live()) {
      for (let i = 0; i < partitions; i++) read(m, records);
      await decide(m, 1);
      await m.sink.flush();
      commit(m);
    }
  }
  expect(done()).toBe(true);
  for (const m of members) {
    res.givenUp += m.owner.stats.givenUp + m.sink.stats().givenUpRows;
    res.retries += m.sink.stats().retries;
  }
  for (const m of live()) await m.sink.close();
  expect(errors).toEqual([]);

  // every offset published exactly once over the union of manifests
  const entries = await readPublishedEntries(dir);
  const scored = entries.filter((e) => e.kind === "scored");
  expect(scored.reduce((s, e) => s + e.rows, 0)).toBe(partitions * records);
  const rows = await sql(
    `SELECT origin_partition AS p, CAST(origin_offset AS VARCHAR) AS o, count(*)::INTEGER AS c
     FROM read_parquet([${scored.map((e) => lit(join(dir, e.file))).join(", ")}]) GROUP BY p, o ORDER BY p, o::BIGINT`,
  );
  expect(rows).toHaveLength(partitions * records);
  for (const row of rows) expect(row.c).toBe(1);
  // no id selected twice, and every selected one published
  const selectedFiles = entries.filter((e) => e.kind === "selected").map((e) => lit(join(dir, e.file)));
  const ids = (await sql(`SELECT id FROM read_parquet([${selectedFiles.join(", ")}])`)).map((r) =>
    String(r.id),
  );
  expect(new Set(ids).size).toBe(ids.length);
  const expected: string[] = [];
  for (let p = 0; p < partitions; p++) for (let o = 0; o < records; o += 3) expected.push(`t-${p}-${o}`);
  expect(ids.sort()).toEqual(expected.sort());
  // on disk: exactly what the manifests name (the last claims removed what crashes left)
  const onDisk = [
    ...(await listed("scored")).map((f) => `scored/${f}`),
    ...(await listed("selected")).map((f) => `selected/${f}`),
  ];
  expect(onDisk.sort()).toEqual(entries.map((e) => e.file).sort());
  // every manifest line says which instance wrote it, and under which generation
  for (const name of await listed("manifests")) {
    const { entries: own } = await readManifestFile(join(dir, "manifests", name));
    for (const e of own as ManifestEntry[]) {
      expect(e.instance).toBe(basename(name, ".jsonl"));
      expect(e.generation).toBeGreaterThan(0);
      expect(e.generation).toBeLessThanOrEqual(group.generation);
    }
  }
  expect(await listed("locks")).toEqual([]);
  for (const m of live()) expect(await exists(m.output.tmpDir)).toBe(false);
  // commits never went back, and reached the end of every partition
  expect(group.backwards).toBe(0);
  expect(keys.map((k) => group.committed.get(k))).toEqual(keys.map(() => String(records)));
  return res;
}

describe("curation sink: a fleet sharing one output", () => {
  it("random runs: partitions move between instances, instances crash; every offset published exactly once, no id selected twice", async () => {
    const total: FleetResult = {
      skipped: 0,
      givenUp: 0,
      retries: 0,
      crashes: 0,
      moves: 0,
      publications: 0,
    };
    for (const seed of [1, 2]) {
      dir = join(root, `fleet-${seed}`);
      const r = await fleetRun(seed);
      for (const k of Object.keys(total) as (keyof FleetResult)[]) total[k] += r[k];
    }
    // the runs went through each path (fixed seeds)
    expect(total.crashes).toBeGreaterThan(0);
    expect(total.moves).toBeGreaterThan(0);
    expect(total.skipped).toBeGreaterThan(0);
    expect(total.givenUp).toBeGreaterThan(0);
    expect(total.retries).toBeGreaterThan(0);
    expect(total.publications).toBeGreaterThan(0);
  });

  it("a new owner that re-reads the previous owner's published tail (past a hole) commits to the partition's end", async () => {
    const group = new FakeGroup();
    const tp = { topic: "t", partition: 0 };
    const member = async (id: string): Promise<Member> => {
      const output = await SharedOutput.open({ dir, instanceId: id });
      const m = {
        id,
        output,
        alive: true,
        generation: -1,
        owned: new Set(),
        next: new Map(),
        held: [],
      } as unknown as Member;
      m.owner = new PartitionOwner({
        source: group.source(m, () => false),
        output,
        onRevoke: (ks) => m.sink.discard(ks),
      });
      m.sink = await createCurationSink({
        output,
        gate: m.owner.gate,
        onPublish: (p) => m.owner.published(p),
        timer: false,
      });
      return m;
    };
    const a = await member("a");
    const b = await member("b");
    // generation 1: a owns t:0 (records 0..9), decides 5..9 first (0..4 are held back) and publishes them
    group.generation = 1;
    group.assignment.set("t:0", a);
    await a.owner.handleAssignment({ generation: 1, revoked: [], assigned: [tp] });
    const all = under(1, range("t", 0, 0, 9));
    for (const d of all) expect(a.owner.admit(d.record.origin, 1)).toBe("track");
    await a.sink.write(all.slice(5));
    await a.sink.flush();
    expect(group.committed.get("t:0")).toBe("0"); // the fence committed the lowest undecided
    // generation 2: t:0 moves to b, which re-reads from 0
    group.generation = 2;
    group.assignment.set("t:0", b);
    await a.owner.handleAssignment({ generation: 2, revoked: [tp], assigned: [] });
    await b.owner.handleAssignment({ generation: 2, revoked: [], assigned: [tp] });
    const again = under(2, range("t", 0, 0, 9));
    expect(again.map((d) => b.owner.admit(d.record.origin, 2))).toEqual([
      ...Array(5).fill("track"),
      ...Array(5).fill("skip"),
    ]);
    await b.sink.write(again.slice(0, 5));
    await b.sink.flush();
    expect(b.owner.undecidedTotal).toBe(0);
    // everything of 0..9 is published: the partition is read and decided to its end (10)
    expect(b.owner.positions()[0].next).toBe(10n);
    expect(b.owner.committable().get("t:0")).toBe("10");
    await a.sink.close();
    await b.sink.close();
  });

  it("a commit made before the consumer re-read the previous owner's published records does not make them undecided again", async () => {
    const group = new FakeGroup();
    const tp = { topic: "t", partition: 0 };
    const member = async (id: string): Promise<Member> => {
      const output = await SharedOutput.open({ dir, instanceId: id });
      const m = {
        id,
        output,
        alive: true,
        generation: -1,
        owned: new Set(),
        next: new Map(),
        held: [],
      } as unknown as Member;
      m.owner = new PartitionOwner({
        source: group.source(m, () => false),
        output,
        onRevoke: (ks) => m.sink.discard(ks),
      });
      m.sink = await createCurationSink({
        output,
        gate: m.owner.gate,
        onPublish: (p) => m.owner.published(p),
        timer: false,
      });
      return m;
    };
    const a = await member("a");
    const b = await member("b");
    // generation 1: a publishes 0..3; its fence committed 0, its crash came before the next commit
    group.generation = 1;
    group.assignment.set("t:0", a);
    await a.owner.handleAssignment({ generation: 1, revoked: [], assigned: [tp] });
    const first = under(1, range("t", 0, 0, 3));
    for (const d of first) a.owner.admit(d.record.origin, 1);
    await a.sink.write(first);
    await a.sink.flush();
    await a.sink.abort();
    expect(group.committed.get("t:0")).toBe("0");
    // generation 2: b claims t:0; its consumer fetches from the committed offset, 0
    group.generation = 2;
    group.assignment.set("t:0", b);
    await b.owner.handleAssignment({ generation: 2, revoked: [], assigned: [tp] });
    // the commit timer runs before those records are handed out (backpressure, another partition's batch)
    const offsets = b.owner.committable();
    expect(offsets.get("t:0")).toBe("4");
    group.commit("t:0", "4");
    b.owner.committed(offsets);
    // now the records 0..3 arrive: published by a, they must not be decided (and published) again
    const again = under(2, range("t", 0, 0, 4));
    expect(again.map((d) => b.owner.admit(d.record.origin, 2))).toEqual([
      "skip",
      "skip",
      "skip",
      "skip",
      "track",
    ]);
    await b.sink.write(again.filter((d) => b.owner.isCurrent(d.record.origin, 2)).slice(0, 4));
    await b.sink.flush();
    expect(b.owner.committable().get("t:0")).not.toBe("0"); // never back below what was committed
    await b.sink.close();
  });
});
