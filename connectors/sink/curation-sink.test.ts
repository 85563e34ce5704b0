import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES, type StyleName } from "../../src/domain/taxonomy.js";
import { OffsetLedger } from "../../src/stream/offset-ledger.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { readScoredPoolParquet } from "../parquet/scored-pool-parquet.js";
import { type CurationSinkOptions, createCurationSink, type PublishedFile } from "./curation-sink.js";
import { MANIFEST_NAME, parseFileName, readManifest } from "./sink-manifest.js";

let root: string;
let dir: string;
let duck: DuckDBInstance;
let n = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "curation-sink-"));
  duck = await DuckDBInstance.create(":memory:");
});
afterAll(async () => {
  duck.closeSync();
  await rm(root, { recursive: true, force: true });
});
beforeEach(() => {
  dir = join(root, `run-${++n}`);
});

async function sql(query: string): Promise<Record<string, unknown>[]> {
  const con = await duck.connect();
  try {
    return (await con.runAndReadAll(query)).getRowObjectsJS() as Record<string, unknown>[];
  } finally {
    con.closeSync();
  }
}
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

const range = (topic: string, partition: number, from: number, to: number): Decision[] => {
  const out: Decision[] = [];
  for (let o = from; o <= to; o++) out.push(decision(topic, partition, o));
  return out;
};

const names = (files: PublishedFile[]) => files.map((f) => f.entry.file).sort();

async function open(over: Partial<CurationSinkOptions> = {}) {
  return createCurationSink({
    dir,
    rotateRows: 1000,
    rotateBytes: 1 << 30,
    rotateMs: 3_600_000,
    timer: false,
    ...over,
  });
}

async function allScoredOffsets(): Promise<string[]> {
  const files = (await readdir(join(dir, "scored"))).filter((f) => f.endsWith(".parquet"));
  if (files.length === 0) return [];
  const rows = await sql(
    `SELECT origin_topic || ':' || origin_partition || ':' || origin_offset AS k FROM read_parquet([${files.map((f) => lit(join(dir, "scored", f))).join(", ")}]) ORDER BY k`,
  );
  return rows.map((r) => String(r.k));
}

describe("curation sink: rotation and names", () => {
  it("rotates by rows, one file per partition per rotation, names carrying the range", async () => {
    const sink = await open({ rotateRows: 3 });
    const published = await sink.write(range("t", 0, 0, 6));
    expect(names(published)).toEqual([
      "scored/scored-t-p0-0-2-000001.parquet",
      "scored/scored-t-p0-3-5-000002.parquet",
      "selected/selected-t-p0-0-2-000001.parquet",
      "selected/selected-t-p0-3-5-000002.parquet",
    ]);
    const rest = await sink.flush();
    expect(names(rest)).toEqual([
      "scored/scored-t-p0-6-6-000003.parquet",
      "selected/selected-t-p0-6-6-000003.parquet",
    ]);
    expect(sink.stats()).toMatchObject({
      pendingRows: 0,
      publishedFiles: 6,
      publishedRows: { scored: 7, selected: 3 },
    });
    await sink.close();
    const { entries } = await readManifest(dir);
    expect(
      entries.map((e) => [e.file, e.kind, e.topic, e.partition, e.firstOffset, e.lastOffset, e.rows]),
    ).toEqual([
      ["scored/scored-t-p0-0-2-000001.parquet", "scored", "t", 0, "0", "2", 3],
      ["selected/selected-t-p0-0-2-000001.parquet", "selected", "t", 0, "0", "2", 1],
      ["scored/scored-t-p0-3-5-000002.parquet", "scored", "t", 0, "3", "5", 3],
      ["selected/selected-t-p0-3-5-000002.parquet", "selected", "t", 0, "3", "5", 1],
      ["scored/scored-t-p0-6-6-000003.parquet", "scored", "t", 0, "6", "6", 1],
      ["selected/selected-t-p0-6-6-000003.parquet", "selected", "t", 0, "6", "6", 1],
    ]);
    for (const e of entries) expect(e.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("rotates by estimated bytes", async () => {
    const sink = await open({ rotateBytes: 1500 });
    const published = await sink.write(range("t", 1, 10, 19));
    expect(published.length).toBeGreaterThan(0);
    for (const f of published) expect(f.entry.rows).toBeLessThan(10);
    await sink.flush();
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(10);
  });

  it("rotates by time (injected clock) through tick()", async () => {
    let t = 1000;
    const sink = await open({ rotateMs: 500, now: () => t });
    expect(await sink.write(range("t", 0, 0, 1))).toEqual([]);
    t = 1200;
    await sink.write(range("t", 1, 0, 0));
    expect(await sink.tick()).toEqual([]);
    t = 1500; // partition 0's oldest row is 500 ms old; partition 1's only 300
    expect(names(await sink.tick())).toEqual([
      "scored/scored-t-p0-0-1-000001.parquet",
      "selected/selected-t-p0-0-1-000001.parquet",
    ]);
    t = 1700;
    expect(names(await sink.tick())).toEqual([
      "scored/scored-t-p1-0-0-000002.parquet",
      "selected/selected-t-p1-0-0-000002.parquet",
    ]);
    await sink.close();
  });

  it("rotates by time on its own timer", async () => {
    const seen: string[] = [];
    const sink = await open({
      rotateMs: 40,
      timer: true,
      onPublish: (p) => seen.push(...p.files.map((f) => f.entry.file)),
    });
    await sink.write([decision("t", 0, 1, { selected: false })]);
    for (let i = 0; i < 200 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual(["scored/scored-t-p0-1-1-000001.parquet"]); // nothing selected: no selected file
    await sink.close();
  });

  it("percent-encodes topics that are not name-safe, and parses them back", async () => {
    const sink = await open();
    await sink.write([decision("data/in put.jsonl", 2, 5, { selected: false })]);
    const [f] = await sink.flush();
    expect(f.entry.file).toBe("scored/scored-data%2Fin%20put.jsonl-p2-5-5-000001.parquet");
    expect(parseFileName("scored-data%2Fin%20put.jsonl-p2-5-5-000001.parquet")).toEqual({
      kind: "scored",
      topic: "data/in put.jsonl",
      partition: 2,
      firstOffset: "5",
      lastOffset: "5",
      seq: 1,
    });
    await sink.close();
  });
});

describe("curation sink: file contents", () => {
  it("writes files DuckDB reads: the sample, scores, styles, picks and origin", async () => {
    const sink = await open();
    const d = decision("t", 0, "9007199254740993", { selected: true }); // above 2^53
    (d.record.sample as Record<string, unknown>).image_b64 = Buffer.from([1, 2, 3]).toString("base64");
    d.record.score.flags.push("text-truncated");
    await sink.write([d, decision("t", 0, "9007199254740994", { selected: false })]);
    const files = await sink.flush();
    await sink.close();
    const sel = files.find((f) => f.entry.kind === "selected") as PublishedFile;
    const scored = files.find((f) => f.entry.kind === "scored") as PublishedFile;
    const [row] = await sql(
      `SELECT id, image_source, styles, score_spatial, score_scene, picked_by, bucket, window_id, model_id, flags,
              origin_topic, origin_partition, CAST(origin_offset AS VARCHAR) AS off, epoch_ms(decided_at)::DOUBLE AS at,
              conversations[1].from AS f1, conversations[2].value AS v2, len(conversations)::INTEGER AS turns,
              image, images, image_url, octet_length(image_bytes)::INTEGER AS nbytes, extra
       FROM read_parquet(${lit(sel.path)})`,
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
      `SELECT CAST(origin_offset AS VARCHAR) AS off, selected, score_ocr FROM read_parquet(${lit(scored.path)}) ORDER BY origin_offset`,
    );
    expect(rows.map((r) => [r.off, r.selected])).toEqual([
      ["9007199254740993", true],
      ["9007199254740994", false],
    ]);
    expect(scored.entry.firstOffset).toBe("9007199254740993");
    expect(scored.entry.lastOffset).toBe("9007199254740994");
  });

  it("writes scored files that readScoredPoolParquet (mmssr select --scores) reads", async () => {
    const sink = await open();
    await sink.write(range("t", 0, 0, 9));
    const files = await sink.flush();
    await sink.close();
    const scored = files.find((f) => f.entry.kind === "scored") as PublishedFile;
    const pool = await readScoredPoolParquet(scored.path);
    expect(pool.size).toBe(10);
    expect(pool.ids[0]).toBe("t-0-0");
    const d = decision("t", 0, 7);
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const expected = d.record.score.scores[c];
      if (Number.isNaN(expected)) expect(Number.isNaN(pool.scores[c][7])).toBe(true);
      else expect(pool.scores[c][7]).toBe(expected);
    }
    expect(pool.extras.get(3)).toMatchObject({
      selected: true,
      origin_offset: 3,
      origin_topic: "t",
      model_id: "mmssr-lite@1",
    });
    expect(CAPABILITY_IDS).toHaveLength(14);
    // the selected output is a scored pool too
    const sel = files.find((f) => f.entry.kind === "selected") as PublishedFile;
    expect((await readScoredPoolParquet(sel.path)).size).toBe(4);
  });
});

describe("curation sink: delivery", () => {
  it("tells the ledger only after the manifest line is durable, and drops duplicates", async () => {
    const ledger = new OffsetLedger();
    const sink = await open({ rotateRows: 4, ledger });
    const ds = range("t", 0, 0, 5);
    for (const d of ds) ledger.track(d.record.origin);
    await sink.write(ds.slice(0, 3));
    expect(ledger.committable().get("t:0")).toBe("0");
    await sink.write(ds.slice(3)); // 0..3 rotate
    expect(ledger.committable().get("t:0")).toBe("4");
    const { entries } = await readManifest(dir);
    expect(entries.map((e) => e.lastOffset)).toEqual(["3", "3"]);
    // re-delivered: 2 (published) and 4 (pending) are dropped; 2 counts decided at once
    ledger.track(ds[2].record.origin);
    expect(ledger.committable().get("t:0")).toBe("2");
    await sink.write([ds[2], ds[4]]);
    expect(ledger.committable().get("t:0")).toBe("4");
    expect(sink.stats().duplicatesDropped).toBe(2);
    await sink.flush();
    expect(ledger.committable().get("t:0")).toBe("6");
    await sink.close();
    expect(await allScoredOffsets()).toEqual(["t:0:0", "t:0:1", "t:0:2", "t:0:3", "t:0:4", "t:0:5"]);
  });
});

describe("curation sink: crashes", () => {
  it("publish, crash before commit, restart: reconcile skips the published records; nothing lost or twice", async () => {
    const input = range("t", 0, 0, 29);
    let committed = new Map<string, string>();
    {
      const ledger = new OffsetLedger();
      const sink = await open({ rotateRows: 10, ledger });
      for (const d of input.slice(0, 25)) ledger.track(d.record.origin);
      await sink.write(input.slice(0, 10));
      committed = ledger.committable(); // committed: 10
      await sink.write(input.slice(10, 25)); // 10..19 published, 20..24 pending
      // crash: no close, no commit (the pending rows are lost with the process)
      await sink.abort();
    }
    expect(committed.get("t:0")).toBe("10");
    const ledger = new OffsetLedger();
    const sink = await open({ rotateRows: 10, ledger });
    const resume = await sink.reconcile(committed);
    const r = resume.get("t:0");
    expect(r?.resumeFrom).toBe("20");
    ledger.assign("t", 0, r?.resumeFrom as string);
    expect(ledger.committable().get("t:0")).toBe("20");
    // the consumer re-reads from the committed offset (10): the graph skips published ones
    const again = input.slice(10).filter((d) => !r?.isPublished(d.record.origin.offset));
    expect(again[0].record.origin.offset).toBe("20");
    for (const d of again) ledger.track(d.record.origin);
    await sink.write(again);
    await sink.flush();
    expect(ledger.committable().get("t:0")).toBe("30");
    await sink.close();
    const offsets = await allScoredOffsets();
    expect(offsets).toHaveLength(30);
    expect(new Set(offsets).size).toBe(30);
    const ids = await sql(
      `SELECT id, count(*) AS c FROM read_parquet(${lit(join(dir, "selected", "*.parquet"))}) GROUP BY id HAVING c > 1`,
    );
    expect(ids).toEqual([]);
  });

  it("even re-fed the published records, the sink itself drops them (idempotent sink)", async () => {
    const input = range("t", 3, 100, 119);
    {
      const sink = await open({ rotateRows: 10 });
      await sink.write(input);
      await sink.abort();
    }
    const sink = await open({ rotateRows: 10 });
    await sink.reconcile(new Map([["t:3", "100"]]));
    await sink.write(input);
    await sink.flush();
    expect(sink.stats().duplicatesDropped).toBe(20);
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(20);
  });

  it("out-of-order decisions: reconcile reads exact offsets and resumes at the hole", async () => {
    const input = range("t", 0, 0, 9);
    {
      const sink = await open();
      // 4 is still held (a reservoir) when the rest is published
      await sink.write(input.filter((d) => d.record.origin.offset !== "4"));
      await sink.flush();
      await sink.abort();
    }
    const sink = await open();
    const r = (await sink.reconcile(new Map([["t:0", "0"]]))).get("t:0");
    expect(r?.resumeFrom).toBe("4");
    expect(input.map((d) => r?.isPublished(d.record.origin.offset))).toEqual([
      true,
      true,
      true,
      true,
      false,
      true,
      true,
      true,
      true,
      true,
    ]);
    await sink.close();
  });

  it("cuts a torn manifest line and appends after it", async () => {
    {
      const sink = await open();
      await sink.write(range("t", 0, 0, 2));
      await sink.close();
    }
    await appendFile(join(dir, MANIFEST_NAME), '{"file":"scored/scored-t-p0-3-');
    expect((await readManifest(dir)).torn).toBe(true);
    const sink = await open();
    expect(sink.recovery.tornLine).toBe(true);
    await sink.write(range("t", 0, 3, 4));
    await sink.close();
    const m = await readManifest(dir);
    expect(m.torn).toBe(false);
    expect(m.entries.filter((e) => e.kind === "scored").map((e) => [e.firstOffset, e.lastOffset])).toEqual([
      ["0", "2"],
      ["3", "4"],
    ]);
    const text = await readFile(join(dir, MANIFEST_NAME), "utf8");
    expect(text.endsWith("\n")).toBe(true);
  });

  it("removes stray temporary files", async () => {
    {
      const sink = await open();
      await sink.close();
    }
    const stray = join(dir, "selected", ".selected-t-p0-0-9-000001.parquet.0badc0de.tmp");
    await writeFile(stray, "half a file");
    const sink = await open();
    expect(sink.recovery.removedTemp).toEqual(["selected/.selected-t-p0-0-9-000001.parquet.0badc0de.tmp"]);
    expect(await readdir(join(dir, "selected"))).toEqual([]);
    await sink.close();
  });

  it("adopts a complete rotation the manifest missed (crash between rename and manifest append)", async () => {
    {
      const sink = await open();
      await sink.write(range("t", 0, 0, 5));
      await sink.close();
    }
    await writeFile(join(dir, MANIFEST_NAME), ""); // the append never happened
    const sink = await open();
    expect(sink.recovery.adopted.sort()).toEqual([
      "scored/scored-t-p0-0-5-000001.parquet",
      "selected/selected-t-p0-0-5-000001.parquet",
    ]);
    const r = (await sink.reconcile(new Map([["t:0", "0"]]))).get("t:0");
    expect(r?.resumeFrom).toBe("6");
    await sink.write(range("t", 0, 6, 7));
    const [next] = await sink.flush();
    expect(parseFileName(next.entry.file.split("/")[1])?.seq).toBe(2);
    await sink.close();
    const { entries } = await readManifest(dir);
    expect(entries.filter((e) => e.adopted).map((e) => [e.kind, e.rows])).toEqual([
      ["scored", 6],
      ["selected", 2],
    ]);
  });

  it("deletes a scored file whose selected file never appeared (crash between the two renames)", async () => {
    {
      const sink = await open();
      await sink.write(range("t", 0, 0, 5));
      await sink.close();
    }
    await writeFile(join(dir, MANIFEST_NAME), "");
    await rm(join(dir, "selected", "selected-t-p0-0-5-000001.parquet"));
    const sink = await open();
    expect(sink.recovery.deleted).toEqual(["scored/scored-t-p0-0-5-000001.parquet"]);
    expect(sink.recovery.adopted).toEqual([]);
    const r = (await sink.reconcile(new Map([["t:0", "0"]]))).get("t:0");
    expect(r?.resumeFrom).toBe("0"); // redo them
    await sink.write(range("t", 0, 0, 5));
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(6);
  });

  it("adopts a selected file whose manifest line was cut right after its scored line", async () => {
    {
      const sink = await open();
      await sink.write(range("t", 0, 0, 5));
      await sink.close();
    }
    const text = await readFile(join(dir, MANIFEST_NAME), "utf8");
    await writeFile(join(dir, MANIFEST_NAME), `${text.split("\n")[0]}\n`);
    const sink = await open();
    expect(sink.recovery.adopted).toEqual(["selected/selected-t-p0-0-5-000001.parquet"]);
    expect(sink.recovery.incomplete).toEqual([]);
    const r = (await sink.reconcile(new Map([["t:0", "0"]]))).get("t:0");
    expect(r?.resumeFrom).toBe("6");
    await sink.close();
  });

  it("a failed publish takes back its scored file and keeps the rows pending for the next try", async () => {
    const ledger = new OffsetLedger();
    const sink = await open({ ledger });
    const ds = range("t", 0, 0, 5);
    for (const d of ds) ledger.track(d.record.origin);
    await sink.write(ds);
    await rm(join(dir, "selected"), { recursive: true }); // the selected file cannot be written
    const err = await sink.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(await readdir(join(dir, "scored"))).toEqual([]);
    expect(sink.stats().pendingRows).toBe(6);
    expect(ledger.committable().get("t:0")).toBe("0");
    expect((await readManifest(dir)).entries).toEqual([]);
    await mkdir(join(dir, "selected"));
    const files = await sink.flush();
    expect(names(files)).toEqual([
      "scored/scored-t-p0-0-5-000001.parquet",
      "selected/selected-t-p0-0-5-000001.parquet",
    ]);
    expect(ledger.committable().get("t:0")).toBe("6");
    await sink.close();
    expect(await allScoredOffsets()).toHaveLength(6);
  });

  it("random runs with crashes at random points: every offset decided exactly once, no id selected twice", async () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const total = 120;
    const input = [...range("t", 0, 0, total - 1), ...range("t", 1, 0, total - 1)];
    const committed = new Map<string, string>();
    const recovered = { adopted: 0, deleted: 0, torn: 0, skipped: 0 };
    const LIVES = 20;
    for (let life = 0; life < LIVES; life++) {
      const ledger = new OffsetLedger();
      const sink = await open({ rotateRows: 7 + Math.floor(rand() * 10), ledger });
      recovered.adopted += sink.recovery.adopted.length;
      recovered.deleted += sink.recovery.deleted.length;
      recovered.torn += sink.recovery.tornLine ? 1 : 0;
      const resume = await sink.reconcile(committed);
      for (const [key, r] of resume)
        if (r.resumeFrom) ledger.assign("t", Number(key.split(":")[1]), r.resumeFrom);
      // the consumer re-reads from the committed offsets
      const toRead = input.filter((d) => {
        const c = committed.get(`t:${d.record.origin.partition}`);
        return c === undefined || BigInt(d.record.origin.offset) >= BigInt(c);
      });
      const held: Decision[] = [];
      let published = 0;
      let committedSincePublish = true;
      const stopAt = life === LIVES - 1 ? Number.POSITIVE_INFINITY : Math.floor(rand() * toRead.length * 1.2);
      for (let i = 0; i < toRead.length && i < stopAt; i++) {
        const d = toRead[i];
        ledger.track(d.record.origin);
        const r = resume.get(`t:${d.record.origin.partition}`);
        if (r?.isPublished(d.record.origin.offset)) {
          ledger.decided(d.record.origin);
          recovered.skipped++;
          continue;
        }
        held.push(d);
        if (rand() < 0.3) {
          // decide a random subset of what is held, out of order
          const out = held.filter(() => rand() < 0.6);
          for (const o of out) held.splice(held.indexOf(o), 1);
          const files = await sink.write(out);
          if (files.length > 0) {
            published += files.length;
            committedSincePublish = false;
          }
        }
        if (rand() < 0.04) {
          for (const [k, v] of ledger.committable()) committed.set(k, v);
          sink.committed(committed);
          committedSincePublish = true;
        }
      }
      if (life === LIVES - 1) {
        await sink.write(held);
        await sink.close();
        for (const [k, v] of ledger.committable()) committed.set(k, v);
        break;
      }
      await sink.abort();
      // crash. Sometimes the last rotation's manifest lines were never appended (files in place),
      // or even its selected file never appeared; only possible if nothing was committed since.
      if (published > 0 && !committedSincePublish && rand() < 0.8) {
        const text = await readFile(join(dir, MANIFEST_NAME), "utf8");
        const lines = text.split("\n").filter((l) => l.length > 0);
        const last = JSON.parse(lines[lines.length - 1]) as { kind: string; seq: number; file: string };
        const cut = lines.filter((l) => (JSON.parse(l) as { seq: number }).seq !== last.seq);
        await writeFile(
          join(dir, MANIFEST_NAME),
          cut.map((l) => `${l}\n`).join("") + (rand() < 0.5 ? '{"fi' : ""),
        );
        if (last.kind === "selected" && rand() < 0.6) await rm(join(dir, last.file));
      }
    }
    expect(committed.get("t:0")).toBe(String(total));
    expect(committed.get("t:1")).toBe(String(total));
    // the run went through each kind of recovery (fixed seed)
    expect(recovered.adopted).toBeGreaterThan(0);
    expect(recovered.deleted).toBeGreaterThan(0);
    expect(recovered.torn).toBeGreaterThan(0);
    expect(recovered.skipped).toBeGreaterThan(0);
    const offsets = await allScoredOffsets();
    expect(offsets).toHaveLength(2 * total);
    expect(new Set(offsets).size).toBe(2 * total);
    const selected = await sql(`SELECT id FROM read_parquet(${lit(join(dir, "selected", "*.parquet"))})`);
    const ids = selected.map((r) => String(r.id));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.sort()).toEqual(
      input
        .filter((d) => d.selected)
        .map((d) => d.record.sample.id)
        .sort(),
    );
  });
});
