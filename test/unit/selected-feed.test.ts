/**
 * The TypeScript side of the feed contract (connectors/sink/selected-feed.ts; the Python
 * reader in clients/python implements the same): every selected row of a real curate output
 * once, a resume from any position yields exactly the rest, ranks split the shards, a following
 * feed picks up what another curator publishes later, and `mmssr tail` prints the shards.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openParquet, parquetBatches } from "../../connectors/parquet/parquet-batches.js";
import { type FeedPosition, feedOrder, fnv1a32, SelectedFeed } from "../../connectors/sink/selected-feed.js";
import { readPublishedEntries } from "../../connectors/sink/shared-output.js";
import type { ManifestEntry } from "../../connectors/sink/sink-manifest.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCurate } from "../../src/app/curator.js";
import { runCli } from "../support/run-cli.js";

let dir: string;
let out: string;
let n = 0;

async function curateInto(count: number, seed: number): Promise<void> {
  const input = join(dir, `in-${++n}.jsonl`);
  const samples = syntheticSamples(count, seed).map((s) => ({ ...s, id: `s${n}-${s.id}` }));
  await writeFile(input, `${samples.map((s) => JSON.stringify(s)).join("\n")}\n`);
  await runCurate({
    source: { kind: "file", path: input },
    out,
    policy: { ratio: 0.3 },
    windowSize: 60,
    windowMs: 10_000,
    rotateRows: 40,
    loadImages: false,
    log: () => {},
  });
}

/** Every selected id on disk, read straight from the files the manifests publish. */
async function publishedIds(): Promise<string[]> {
  const ids: string[] = [];
  for (const e of (await readPublishedEntries(out)).filter((x) => x.kind === "selected")) {
    const { file } = await openParquet(join(out, e.file));
    for await (const b of parquetBatches(file, 1024)) {
      const col = b.getChild("id");
      for (let i = 0; i < b.numRows; i++) ids.push(String(col?.get(i)));
    }
    file.free();
  }
  return ids;
}

async function readAll(feed: SelectedFeed): Promise<string[]> {
  const ids: string[] = [];
  for await (const row of feed.rows()) ids.push(String(row.id));
  return ids;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-feed-"));
  out = join(dir, "out");
  await curateInto(400, 1);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("SelectedFeed", () => {
  it("hands out every selected row once, with its columns", async () => {
    const expected = await publishedIds();
    expect(expected.length).toBeGreaterThan(50);
    const rows: Record<string, unknown>[] = [];
    for await (const row of new SelectedFeed(out).rows()) rows.push(row);
    expect(rows.map((r) => r.id).sort()).toEqual([...expected].sort());
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    expect(rows[0]).toHaveProperty("score_ocr");
    expect(rows[0]).toHaveProperty("conversations");
    expect(rows[0]).toHaveProperty("origin_offset");
  });

  it("resumes from the position after any row with exactly the rest", async () => {
    const all = await readAll(new SelectedFeed(out));
    for (let cut = 0; cut <= all.length; cut += 7) {
      const head: string[] = [];
      const feed = new SelectedFeed(out);
      let token: FeedPosition = feed.position();
      if (cut > 0)
        for await (const row of feed.rows()) {
          head.push(String(row.id));
          if (head.length === cut) {
            token = JSON.parse(JSON.stringify(feed.position()));
            break;
          }
        }
      const rest = await readAll(new SelectedFeed(out, { start: token }));
      expect([...head, ...rest]).toEqual(all);
    }
  });

  it("splits shards over ranks: disjoint, together everything", async () => {
    const all = (await readAll(new SelectedFeed(out))).sort();
    for (const worldSize of [2, 3]) {
      const parts = await Promise.all(
        Array.from({ length: worldSize }, (_, rank) => readAll(new SelectedFeed(out, { rank, worldSize }))),
      );
      expect(parts.flat().sort()).toEqual(all);
      expect(new Set(parts.flat()).size).toBe(all.length);
    }
    expect(() => new SelectedFeed(out, { rank: 2, worldSize: 2 })).toThrow(/rank: expected 0\.\.1/);
    const token = new SelectedFeed(out, { rank: 1, worldSize: 2 }).position();
    expect(() => new SelectedFeed(out, { start: token })).toThrow(/taken by rank 1 of 2, not rank 0 of 1/);
  });

  it("follows: shards another curator publishes later arrive, once", async () => {
    const before = await readAll(new SelectedFeed(out));
    const feed = new SelectedFeed(out, { pollMs: 50 });
    const stop = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const row of feed.rows({ follow: true, signal: stop.signal })) seen.push(String(row.id));
    })();
    await waitFor(() => seen.length === before.length);
    await curateInto(200, 2);
    const after = await publishedIds();
    await waitFor(() => seen.length === after.length);
    stop.abort();
    await following;
    expect([...seen].sort()).toEqual([...after].sort());
    expect(seen.slice(0, before.length)).toEqual(before);
  });

  it("a shard marked finished is behind the position: a feed started there never hands it out", async () => {
    const feed = new SelectedFeed(out);
    const first = (await feed.shards().next()).value as ManifestEntry;
    expect(feed.position().shard).toBe(first.file);
    feed.finish(first);
    const token = feed.position();
    expect(token.shard).toBeNull();
    expect(token.done[first.instance ?? ""]).toBe(first.seq);
    const rest: string[] = [];
    for await (const e of new SelectedFeed(out, { start: token }).shards()) rest.push(e.file);
    expect(rest).not.toContain(first.file);
    const all = (await readPublishedEntries(out)).filter((e) => e.kind === "selected");
    expect(rest.length).toBe(all.length - 1);
  });

  it("orders manifests by their next line, keeping each one's line order", () => {
    const e = (instance: string, seq: number, at: string): ManifestEntry =>
      ({
        file: `selected/${instance}-${seq}`,
        kind: "selected",
        instance,
        seq,
        publishedAt: at,
      }) as ManifestEntry;
    const order = feedOrder([
      e("a", 1, "2026-01-01T00:00:02Z"),
      e("a", 2, "2026-01-01T00:00:01Z"), // a's clock stepped back: still after a 1
      e("b", 1, "2026-01-01T00:00:01Z"),
      e("b", 2, "2026-01-01T00:00:03Z"),
    ]);
    expect(order.map((x) => `${x.instance}${x.seq}`)).toEqual(["b1", "a1", "a2", "b2"]);
  });

  it("FNV-1a 32 over UTF-8 (the Python reader's reference values)", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });
});

describe("mmssr tail", () => {
  it("prints each published shard once; --position resumes after the last one printed", async () => {
    const shards = (await readPublishedEntries(out)).filter((e) => e.kind === "selected");
    const position = join(dir, "tail-position.json");
    const first = await runCli(["tail", "--out", out, "--once", "--position", position]);
    expect(first.code).toBe(0);
    const printed = first.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(printed.map((p) => p.file).sort()).toEqual(shards.map((s) => s.file).sort());
    expect(printed.reduce((a, p) => a + p.rows, 0)).toBe(shards.reduce((a, s) => a + s.rows, 0));
    expect(JSON.parse(await readFile(position, "utf8")).shard).toBeNull();
    const again = await runCli(["tail", "--out", out, "--once", "--position", position]);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe("");
    const rows = await runCli(["tail", "--out", out, "--once", "--rows", "--rank", "0", "--world-size", "2"]);
    expect(rows.code).toBe(0);
    const ranked = await readAll(new SelectedFeed(out, { rank: 0, worldSize: 2 }));
    expect(
      rows.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).id),
    ).toEqual(ranked);
    const bad = await runCli(["tail", "--out", out, "--rank", "2", "--world-size", "2"]);
    expect(bad.code).toBe(2);
    const torn = join(dir, "torn-position.json");
    await writeFile(torn, '{"v": 1, "done": ');
    const unreadable = await runCli(["tail", "--out", out, "--once", "--position", torn]);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toMatch(/--position: .*torn-position\.json is not a position token/);
    expect(await readFile(torn, "utf8")).toBe('{"v": 1, "done": ');
  });
});

async function waitFor(cond: () => boolean, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 20));
  }
}
