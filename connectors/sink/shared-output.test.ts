import { spawn } from "node:child_process";
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { NUM_CAPABILITIES, NUM_STYLES } from "../../src/domain/taxonomy.js";
import type { PublishGate, TopicPartition } from "../../src/stream/ports.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { createCurationSink, type FileSink } from "./curation-sink.js";
import { newInstanceId, readPublishedEntries, SharedOutput } from "./shared-output.js";
import { fileName, type ManifestEntry } from "./sink-manifest.js";

/** the host part of instance ids and lock holders, sanitised as shared-output.ts does */
const HOST = hostname().replace(/[^A-Za-z0-9._]/g, "_");
const T0: TopicPartition = { topic: "t", partition: 0 };

let root: string;
let dir: string;
let n = 0;
const opened: FileSink[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "shared-output-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
beforeEach(() => {
  dir = join(root, `run-${++n}`);
});
afterEach(async () => {
  for (const s of opened.splice(0)) await s.abort();
});

function decision(topic: string, partition: number, offset: number): Decision {
  const scores = new Float32Array(NUM_CAPABILITIES).fill(2);
  return {
    record: {
      origin: { topic, partition, offset: String(offset) },
      sample: {
        id: `${topic}-${partition}-${offset}`,
        image_source: "coco",
        conversations: [
          { from: "human", value: "q" },
          { from: "gpt", value: "a" },
        ],
      },
      timestamp: 0,
      modelId: "m@1",
      score: { scores, styles: [], styleProbabilities: new Float32Array(NUM_STYLES), flags: [] },
    },
    selected: offset % 2 === 0,
    windowId: "w",
    decidedAt: 0,
  };
}
const offsets = (topic: string, partition: number, list: number[]) =>
  list.map((o) => decision(topic, partition, o));
const span = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

const publishAll: PublishGate = async (_tp, _generation, commitPoint) => {
  await commitPoint();
  return "published";
};

/** A sink on `out` that publishes whatever it is given (one rotation per flush and partition). */
async function sinkOn(out: SharedOutput): Promise<FileSink> {
  const sink = await createCurationSink({ output: out, gate: publishAll, timer: false, sha256: false });
  opened.push(sink);
  return sink;
}
async function publish(sink: FileSink, decisions: Decision[]): Promise<void> {
  await sink.write(decisions);
  await sink.flush();
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** A pid that is not running: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  const pid = child.pid as number;
  await new Promise((resolve) => child.once("exit", resolve));
  return pid;
}

const lockFile = (name: string) => join(dir, "locks", `${name}.lock`);

describe("shared output: layout", () => {
  it("open creates the layout, this instance's manifest path and tmp folder", async () => {
    const out = await SharedOutput.open({ dir });
    expect(out.instanceId).toMatch(new RegExp(`^${HOST.replaceAll(".", "\\.")}-${process.pid}-[0-9a-z]+$`));
    expect(newInstanceId().startsWith(`${HOST}-${process.pid}-`)).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(["locks", "manifests", "scored", "selected", "tmp"]);
    expect(out.manifestPath).toBe(join(dir, "manifests", `${out.instanceId}.jsonl`));
    expect(out.tmpDir).toBe(join(dir, "tmp", out.instanceId));
    expect(await readdir(out.tmpDir)).toEqual([]);
  });

  it("open removes tmp folders of dead instances of this host, not of live ones nor of other hosts", async () => {
    const dead = `${HOST}-${await deadPid()}-abc`;
    const live = `${HOST}-${process.pid}-other`;
    const foreign = "elsewhere-1-abc";
    const named = "worker-a";
    for (const id of [dead, live, foreign, named]) {
      await mkdir(join(dir, "tmp", id), { recursive: true });
      await writeFile(join(dir, "tmp", id, "scored-t-p0-0-1.parquet"), "half a file");
    }
    const out = await SharedOutput.open({ dir, instanceId: "me" });
    expect((await readdir(join(dir, "tmp"))).sort()).toEqual([foreign, live, "me", named].sort());
    expect(await readdir(join(dir, "tmp", live))).toEqual(["scored-t-p0-0-1.parquet"]);
    expect(out.tmpDir).toBe(join(dir, "tmp", "me"));
  });
});

describe("shared output: readPublishedEntries", () => {
  it("is the union of every instance's manifest and of the legacy manifest, skipping torn last lines", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const b = await SharedOutput.open({ dir, instanceId: "b" });
    await publish(await sinkOn(a), offsets("t", 0, span(0, 3)));
    await publish(await sinkOn(b), offsets("t", 1, span(0, 1)));
    const legacy: ManifestEntry = {
      file: "scored/scored-t-p2-0-4-000001.parquet",
      kind: "scored",
      topic: "t",
      partition: 2,
      firstOffset: "0",
      lastOffset: "4",
      rows: 5,
      publishedAt: "2025-01-01T00:00:00.000Z",
      seq: 1,
    };
    await writeFile(join(dir, "manifest.jsonl"), `${JSON.stringify(legacy)}\n{"file":"scored/x`);
    await appendFile(b.manifestPath, '{"file":"scored/scored-t-p1-2-3.parquet","kind":"scored"');
    const entries = await readPublishedEntries(dir);
    expect(entries.map((e) => e.file).sort()).toEqual([
      "scored/scored-t-p0-0-3.parquet",
      "scored/scored-t-p1-0-1.parquet",
      "scored/scored-t-p2-0-4-000001.parquet",
      "selected/selected-t-p0-0-3.parquet",
      "selected/selected-t-p1-0-1.parquet",
    ]);
    const byFile = new Map(entries.map((e) => [e.file, e]));
    expect(byFile.get("scored/scored-t-p0-0-3.parquet")).toMatchObject({
      instance: "a",
      generation: 0,
      rows: 4,
    });
    expect(byFile.get("selected/selected-t-p1-0-1.parquet")).toMatchObject({ instance: "b", rows: 1 });
    // the same file named by two manifests counts once
    await appendFile(
      join(dir, "manifests", "c.jsonl"),
      `${JSON.stringify(byFile.get("scored/scored-t-p0-0-3.parquet"))}\n`,
    );
    expect(await readPublishedEntries(dir)).toHaveLength(5);
    // an empty location has nothing published
    expect(await readPublishedEntries(join(root, "nothing-here"))).toEqual([]);
  });
});

describe("shared output: claim", () => {
  it("returns what published files of any instance decided: full-range scored files by name, others by origin_offset", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const b = await SharedOutput.open({ dir, instanceId: "b" });
    const sa = await sinkOn(a);
    await publish(sa, offsets("t", 0, span(0, 4)));
    await publish(sa, offsets("t", 0, span(5, 9)));
    await publish(await sinkOn(b), offsets("t", 0, [12, 14, 15])); // holes: 13 is undecided
    await publish(await sinkOn(b), offsets("t", 1, span(0, 99)));
    // a full-range file is never read: garble it to prove it
    await writeFile(join(dir, "scored", "scored-t-p0-0-4.parquet"), "not parquet");
    const c = await SharedOutput.open({ dir, instanceId: "c" });
    expect((await c.claim(T0)).ranges).toEqual([
      [0n, 9n],
      [12n, 12n],
      [14n, 15n],
    ]);
    expect((await c.claim(T0, 5n)).ranges).toEqual([
      [5n, 9n],
      [12n, 12n],
      [14n, 15n],
    ]);
    expect((await c.claim(T0, 13n)).ranges).toEqual([[14n, 15n]]);
    expect((await c.claim(T0, 16n)).isEmpty).toBe(true);
    expect((await c.claim({ topic: "t", partition: 1 })).ranges).toEqual([[0n, 99n]]);
    expect((await c.claim({ topic: "t", partition: 2 })).isEmpty).toBe(true);
    expect((await c.claim({ topic: "u", partition: 0 })).isEmpty).toBe(true);
    // a file whose rows do not fill its range is read: garbled, the claim fails (no silent guess)
    await writeFile(join(dir, "scored", "scored-t-p0-12-15.parquet"), "not parquet");
    const d = await SharedOutput.open({ dir, instanceId: "d" });
    await expect(d.claim(T0)).rejects.toThrow();
    // ... but not when it is committed past (below `from`)
    expect((await d.claim(T0, 16n)).isEmpty).toBe(true);
  });

  it("reads the offsets of a legacy selected file without its scored file", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    await publish(await sinkOn(a), offsets("t", 0, [0, 2, 3, 4])); // selected: 0, 2, 4
    const text = await readFile(a.manifestPath, "utf8");
    const [, sel] = text.trim().split("\n");
    await writeFile(a.manifestPath, `${sel}\n`); // only the selected file's line
    await rm(join(dir, "scored", "scored-t-p0-0-4.parquet"));
    const c = await SharedOutput.open({ dir, instanceId: "c" });
    expect((await c.claim(T0)).ranges).toEqual([
      [0n, 0n],
      [2n, 2n],
      [4n, 4n],
    ]);
  });

  it("removes the partition's files that no manifest names, and only that partition's", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    await publish(await sinkOn(a), offsets("t", 0, span(0, 2)));
    const name = (
      kind: "scored" | "selected",
      topic: string,
      partition: number,
      first: number,
      last: number,
    ) =>
      `${kind}/${fileName({ kind, topic, partition, firstOffset: String(first), lastOffset: String(last) })}`;
    const orphans = [
      name("scored", "t", 0, 3, 5),
      name("selected", "t", 0, 3, 5),
      "scored/scored-t-p0-6-7-000009.parquet",
    ];
    const others = [
      name("scored", "t", 1, 3, 5), // another partition
      name("scored", "t", 10, 3, 5), // p10, whose name starts like p1's
      name("scored", "t-p0", 0, 3, 5), // topic "t-p0": its name starts with "scored-t-p0-"
      name("selected", "u", 0, 3, 5), // another topic
      "scored/notes.txt",
    ];
    for (const f of [...orphans, ...others]) await writeFile(join(dir, f), "left by a crash");
    const c = await SharedOutput.open({ dir, instanceId: "c" });
    expect((await c.claim(T0)).ranges).toEqual([[0n, 2n]]);
    for (const f of orphans) expect(await exists(join(dir, f))).toBe(false);
    for (const f of others) expect(await exists(join(dir, f))).toBe(true);
    // the published ones stay
    expect(await exists(join(dir, "scored", "scored-t-p0-0-2.parquet"))).toBe(true);
    expect(await exists(join(dir, "selected", "selected-t-p0-0-2.parquet"))).toBe(true);
    await c.claim({ topic: "t", partition: 10 });
    expect(await exists(join(dir, others[1]))).toBe(false);
    expect(await exists(join(dir, others[0]))).toBe(true);
  });

  it("reads the manifests incrementally: what is appended after a claim shows in the next", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const c = await SharedOutput.open({ dir, instanceId: "c" });
    expect((await c.claim(T0)).isEmpty).toBe(true);
    const sa = await sinkOn(a);
    await publish(sa, offsets("t", 0, span(0, 4)));
    expect((await c.claim(T0)).ranges).toEqual([[0n, 4n]]);
    await publish(sa, offsets("t", 0, span(5, 6)));
    expect((await c.claim(T0)).ranges).toEqual([[0n, 6n]]);
    expect(c.index.files.size).toBe(4);
    // a line being written counts only once complete
    const e: ManifestEntry = {
      file: "scored/scored-t-p0-7-9.parquet",
      kind: "scored",
      topic: "t",
      partition: 0,
      firstOffset: "7",
      lastOffset: "9",
      rows: 3,
      publishedAt: "2025-01-01T00:00:00.000Z",
      seq: 9,
      instance: "x",
      generation: 1,
    };
    const text = JSON.stringify(e);
    const xPath = join(dir, "manifests", "x.jsonl");
    await writeFile(xPath, text.slice(0, 20));
    expect((await c.claim(T0)).ranges).toEqual([[0n, 6n]]);
    await appendFile(xPath, `${text.slice(20)}\n`);
    expect((await c.claim(T0)).ranges).toEqual([[0n, 9n]]);
    // and a line after it is read from where the last read stopped (a bad line later is reported with its number)
    await appendFile(xPath, "oops\n");
    await expect(c.claim(T0)).rejects.toThrow(/x\.jsonl: line 2 /);
  });
});

describe("shared output: partition locks", () => {
  it("exclude each other across instances: the second waits until the first releases", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const b = await SharedOutput.open({ dir, instanceId: "b" });
    const events: string[] = [];
    const releaseA = await a.lock(T0);
    events.push("a holds");
    expect(JSON.parse(await readFile(lockFile("t-p0"), "utf8"))).toMatchObject({
      instance: "a",
      host: HOST,
      pid: process.pid,
    });
    const bLocked = b.lock(T0).then((release) => {
      events.push("b holds");
      return release;
    });
    // a lock of another partition is not held up
    const releaseB1 = await b.lock({ topic: "t", partition: 1 });
    await releaseB1();
    // give b some polls against a's lock
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 10));
    events.push("a releases");
    await releaseA();
    const releaseB = await bLocked;
    expect(events).toEqual(["a holds", "a releases", "b holds"]);
    expect(JSON.parse(await readFile(lockFile("t-p0"), "utf8"))).toMatchObject({ instance: "b" });
    await releaseB();
    await releaseB(); // twice is harmless
    expect(await exists(lockFile("t-p0"))).toBe(false);
  });

  it("queue within one instance, in call order", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const events: string[] = [];
    const take = (name: string) =>
      a.lock(T0).then((release) => {
        events.push(`${name} holds`);
        return async () => {
          events.push(`${name} releases`);
          await release();
        };
      });
    const first = take("1");
    const second = take("2");
    const third = take("3");
    const r1 = await first;
    await new Promise((r) => setTimeout(r, 20));
    await r1();
    const r2 = await second;
    await r2();
    const r3 = await third;
    await r3();
    expect(events).toEqual(["1 holds", "1 releases", "2 holds", "2 releases", "3 holds", "3 releases"]);
    expect(await exists(lockFile("t-p0"))).toBe(false);
  });

  it("take over a lock left by a dead process of this host", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a", lockWaitMs: 10_000 });
    const pid = await deadPid();
    await writeFile(
      lockFile("t-p0"),
      JSON.stringify({ instance: `${HOST}-${pid}-x`, host: HOST, pid, at: Date.now() }),
    );
    const release = await a.lock(T0);
    expect(JSON.parse(await readFile(lockFile("t-p0"), "utf8"))).toMatchObject({
      instance: "a",
      pid: process.pid,
    });
    await release();
  });

  it("give up after lockWaitMs on a lock a live process holds (MMSSR_LOCK_TIMEOUT), and stay usable", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a" });
    const b = await SharedOutput.open({ dir, instanceId: "b", lockWaitMs: 100 });
    const releaseA = await a.lock(T0);
    const err = await b.lock(T0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.LOCK_TIMEOUT);
    expect((err as MmssrError).retriable).toBe(true);
    // the failed wait left nothing queued behind it, nor a's lock touched
    expect(JSON.parse(await readFile(lockFile("t-p0"), "utf8"))).toMatchObject({ instance: "a" });
    await releaseA();
    const releaseB = await b.lock(T0);
    await releaseB();
  });

  it("take over another host's lock once older than lockStaleMs, not before", async () => {
    const a = await SharedOutput.open({ dir, instanceId: "a", lockStaleMs: 60_000, lockWaitMs: 100 });
    const holder = { instance: "otherhost-7-x", host: "otherhost", pid: process.pid, at: Date.now() };
    await writeFile(lockFile("t-p0"), JSON.stringify(holder));
    const err = await a.lock(T0).catch((e: unknown) => e);
    expect((err as MmssrError).code).toBe(ERROR_CODES.LOCK_TIMEOUT);
    const old = new Date(Date.now() - 120_000);
    await utimes(lockFile("t-p0"), old, old);
    const release = await a.lock(T0);
    expect(JSON.parse(await readFile(lockFile("t-p0"), "utf8"))).toMatchObject({ instance: "a" });
    await release();
  });

  it("a dead holder's lock that two waiters take over at once is held by only one of them", async () => {
    // Both waiters read the dead holder's lock before either removes it; the one that is slower
    // to judge it stale removes the lock the other has just created (the check and the removal
    // are not one atomic step). The interleaving is forced through node:fs/promises.
    const lockPath = lockFile("t-p0");
    let reads = 0;
    let stats = 0;
    let firstHolds!: () => void;
    const someoneHolds = new Promise<void>((resolve) => (firstHolds = resolve));
    let twoRead!: () => void;
    const bothRead = new Promise<void>((resolve) => (twoRead = resolve));
    vi.resetModules();
    vi.doMock("node:fs/promises", async (importOriginal) => {
      const fs = await importOriginal<typeof import("node:fs/promises")>();
      return {
        ...fs,
        readFile: (async (...args: Parameters<typeof fs.readFile>) => {
          const r = await fs.readFile(...args);
          if (args[0] === lockPath && ++reads === 2) twoRead();
          return r;
        }) as typeof fs.readFile,
        stat: (async (...args: Parameters<typeof fs.stat>) => {
          if (args[0] === lockPath) {
            const k = ++stats;
            if (k === 1) await bothRead;
            else if (k === 2) await Promise.race([someoneHolds, new Promise((r) => setTimeout(r, 500))]);
          }
          return fs.stat(...args);
        }) as typeof fs.stat,
      };
    });
    try {
      const { SharedOutput: Fresh } = await import("./shared-output.js");
      const a = await Fresh.open({ dir, instanceId: "a", lockWaitMs: 10_000 });
      const b = await Fresh.open({ dir, instanceId: "b", lockWaitMs: 10_000 });
      const pid = await deadPid();
      await writeFile(lockPath, JSON.stringify({ instance: "dead", host: HOST, pid, at: Date.now() }));
      let holders = 0;
      let most = 0;
      const hold = async (o: SharedOutput) => {
        const release = await o.lock(T0);
        holders++;
        most = Math.max(most, holders);
        firstHolds();
        await new Promise((r) => setTimeout(r, 50));
        holders--;
        await release();
      };
      await Promise.all([hold(a), hold(b)]);
      expect(most).toBe(1);
    } finally {
      vi.doUnmock("node:fs/promises");
      vi.resetModules();
    }
  });
});
