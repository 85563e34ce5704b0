/**
 * Chaos of a curator fleet against a real broker (issue 7, "A fleet that never duplicates"):
 *
 * 3 `mmssr curate` processes in ONE consumer group share ONE --out directory and curate a
 * 6-partition topic: 42,000 valid samples (unique ids) and a few malformed messages, 30 % produced
 * before the fleet starts and the rest in chunks while it runs. At seeded points instances join,
 * leave (SIGTERM: a graceful drain) and die (SIGKILL; the dead member is evicted from the group
 * at once, as the crash-safety test does, instead of waiting out its 30 s session), so that the
 * group goes through well over 10 membership changes (rebalances) while files are published
 * mid-run (--rotate-rows / --rotate-ms). Then one instance runs alone with --until-idle and
 * must exit 0 with every partition caught up. What it proves, on the union of the one out dir:
 *
 * - every valid (partition, offset) is in exactly one row of the published scored files, every
 *   valid id is scored exactly once, nothing is missing (rows = samples produced);
 * - no id twice in the published selected files, and they hold exactly the samples the scored
 *   files mark selected;
 * - the malformed messages are in the dead-letter topic and in no scored file;
 * - published = named in a manifest: the union of DIR/manifests/*.jsonl (an unterminated last
 *   line skipped) names each file once, every named file exists and agrees with its line
 *   (kind, topic, partition, offset range, rows), and after the final run the *.parquet files on
 *   disk under DIR/scored and DIR/selected are exactly the named ones (no orphans);
 * - the group's committed offsets are the partitions' end offsets (lag 0);
 * - no instance failed: SIGTERM exits 0 and within a minute, nothing exits by itself.
 *
 * Readers take exactly the files the manifests name (DuckDB read_parquet over that list), never
 * a glob of the folders. Where DIR/manifests/ does not exist, the checker falls back to the
 * single-curator layout DIR/manifest.jsonl.
 *
 * MMSSR_CHAOS_SEED changes the schedule (who, what, when); MMSSR_CHAOS_VERBOSE=1 prints each
 * step as it happens and the output of the instances that failed or were stopped;
 * MMSSR_CHAOS_KEEP=1 keeps the out dir. The test prints the schedule, the outcome and a few
 * examples of each violation either way.
 *
 * Harness notes: the fleet runs with MMSSR_KAFKA_LOG_LEVEL=info, and an instance's member id is
 * the one in kafkajs's "Consumer has joined the group" line (the group cannot tell its members
 * apart: same client id, same host); that is what a SIGKILL evicts. Member ids that no running
 * instance owns for 10 s are evicted too (a killed consumer whose join completed after its
 * death). Membership changes are counted as they are caused (a join seen in the log, a SIGTERM
 * exit, a SIGKILL or an exit by itself of an instance that had joined); most are followed by a
 * wait for the group to be stable again, so that they do not merge into one rebalance.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, relative } from "node:path";
import type { Admin, Kafka } from "kafkajs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { createRandom, type Random } from "../../src/util/random.js";
import {
  type CurateExit,
  type CurateProcess,
  type CurateProcessOptions,
  ensureBuilt,
  evictGroupMembers,
  startCurate,
} from "../support/curate-process.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { brokers, freshGroup, testKafka, uniqueName, waitFor } from "../support/kafka.js";
import { committedOffsets, deadLetters, produceFile, topicEnds } from "../support/kafka-reads.js";

const SEED = Number(process.env.MMSSR_CHAOS_SEED ?? 7007);
const VERBOSE = Boolean(process.env.MMSSR_CHAOS_VERBOSE);
const MESSAGES = 42_000;
const PARTITIONS = 6;
/** instances running at most at once */
const FLEET = 3;
/** invalid JSON or not a sample: each must end in the dead-letter topic */
const MALFORMED = [
  "{broken",
  "not json at all",
  JSON.stringify({ id: "chaos-bad-schema", conversations: "nope" }),
  JSON.stringify({ id: "chaos-bad-empty", conversations: [] }),
  JSON.stringify({ id: "chaos-bad-role", conversations: [{ from: "robot", value: "hi" }] }),
  "[1, 2, 3]",
];
/**
 * share produced before the first instance starts; the rest goes in LATER_CHUNKS (seeded sizes),
 * one after the other, the next one queued at each step of the schedule
 */
const UPFRONT = 0.3;
const LATER_CHUNKS = 8;
/** removals of the schedule, in a seeded order (the final stops are graceful too) */
const REMOVALS: ("SIGKILL" | "SIGTERM")[] = ["SIGKILL", "SIGKILL", "SIGKILL", "SIGTERM", "SIGTERM"];
const MIN_CHANGES = 10;
const CURATE = { ratio: 0.2, windowSize: 1000, windowMs: 1500, rotateRows: 1500, rotateMs: 800 };
/** the fleet never idles out by itself: it is stopped by the schedule */
const FLEET_IDLE_S = 600;
const FINAL_IDLE_S = 5;
/** a graceful drain that takes longer than this is a fault (the instance is then SIGKILLed) */
const DRAIN_LIMIT_MS = 60_000;
/** the final run must be done within this */
const FINAL_LIMIT_MS = 120_000;

/** kafkajs's INFO line for a completed join (join and sync), with the member id */
const JOINED = /Consumer has joined the group[^\n]*?"memberId":"([^"]+)"/g;

let dir: string;
let duck: Duck;
const running = new Set<CurateProcess>();

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), "mmssr-chaos-"));
  duck = await openDuck();
}, 300_000);

afterAll(async () => {
  for (const p of running) await p.kill("SIGKILL");
  duck?.close();
  if (dir && process.env.MMSSR_CHAOS_KEEP) console.log(`chaos: out dir and inputs kept in ${dir}`);
  else if (dir) await rm(dir, { recursive: true, force: true });
});

function curate(o: CurateProcessOptions): CurateProcess {
  const p = startCurate({ ...CURATE, ...o });
  running.add(p);
  p.exited.then(() => running.delete(p));
  return p;
}

const sql = (query: string) => duck.sql(query);

/** p's value, or undefined when p has not settled within ms */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

// ---------------------------------------------------------------------------------------------
// Input

interface Dataset {
  topic: string;
  dlqTopic: string;
  ids: Set<string>;
  /** JSONL files to produce, in order: the first before the fleet starts */
  files: { path: string; lines: number }[];
}

async function dataset(kafka: Kafka, rng: Random): Promise<Dataset> {
  const topic = uniqueName("chaos");
  const dlqTopic = `${topic}.dlq`;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [
        { topic, numPartitions: PARTITIONS, replicationFactor: 1 },
        { topic: dlqTopic, numPartitions: 1, replicationFactor: 1 },
      ],
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
  const samples = syntheticSamples(MESSAGES, SEED);
  const lines = samples.map((s) => JSON.stringify(s));
  for (const bad of MALFORMED) lines.splice(rng.int(lines.length), 0, bad);
  // chunk boundaries: UPFRONT, then LATER_CHUNKS seeded cuts of the rest
  const first = Math.floor(lines.length * UPFRONT);
  const cuts = new Set<number>();
  while (cuts.size < LATER_CHUNKS - 1) cuts.add(first + 1 + rng.int(lines.length - first - 2));
  const bounds = [0, first, ...[...cuts].sort((a, b) => a - b), lines.length];
  const files: Dataset["files"] = [];
  for (let k = 0; k + 1 < bounds.length; k++) {
    const path = join(dir, `${topic}-${k}.jsonl`);
    const chunk = lines.slice(bounds[k], bounds[k + 1]);
    await writeFile(path, `${chunk.join("\n")}\n`);
    files.push({ path, lines: chunk.length });
  }
  return { topic, dlqTopic, ids: new Set(samples.map((s) => String(s.id))), files };
}

const produce = produceFile;

// ---------------------------------------------------------------------------------------------
// Manifests: the union of DIR/manifests/*.jsonl (or the old DIR/manifest.jsonl)

interface ManifestLine {
  file: string;
  kind: string;
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string;
  rows: number;
  /** the manifest file it came from */
  from: string;
}

interface Manifests {
  layout: "manifests/" | "manifest.jsonl" | "none";
  /** manifest files read */
  sources: string[];
  lines: ManifestLine[];
  /** unterminated last lines skipped */
  torn: number;
  /** terminated lines that are not a manifest entry */
  bad: string[];
}

async function readManifests(out: string): Promise<Manifests> {
  let layout: Manifests["layout"] = "manifests/";
  let sources = (await readdir(join(out, "manifests")).catch(() => undefined))
    ?.filter((f) => f.endsWith(".jsonl"))
    .sort()
    .map((f) => join("manifests", f));
  if (sources === undefined) {
    const old = await stat(join(out, "manifest.jsonl")).then(
      () => true,
      () => false,
    );
    layout = old ? "manifest.jsonl" : "none";
    sources = old ? ["manifest.jsonl"] : [];
  }
  const result: Manifests = { layout, sources, lines: [], torn: 0, bad: [] };
  for (const source of sources) {
    const text = await readFile(join(out, source), "utf8").catch(() => "");
    const parts = text.split("\n");
    // the part after the last newline is an unterminated line (being written, or torn)
    if ((parts.pop() ?? "") !== "") result.torn++;
    for (const line of parts) {
      if (line.trim() === "") continue;
      try {
        const e = JSON.parse(line) as Record<string, unknown>;
        const ok =
          typeof e.file === "string" &&
          typeof e.kind === "string" &&
          typeof e.topic === "string" &&
          Number.isInteger(e.partition) &&
          e.firstOffset !== undefined &&
          e.lastOffset !== undefined &&
          Number.isInteger(e.rows);
        if (!ok) {
          result.bad.push(`${source}: ${line.slice(0, 200)}`);
          continue;
        }
        result.lines.push({
          file: posix.normalize(e.file as string),
          kind: e.kind as string,
          topic: e.topic as string,
          partition: e.partition as number,
          firstOffset: String(e.firstOffset),
          lastOffset: String(e.lastOffset),
          rows: e.rows as number,
          from: source,
        });
      } catch {
        result.bad.push(`${source}: ${line.slice(0, 200)}`);
      }
    }
  }
  return result;
}

/** Rows of the scored files the manifests name so far (how far the fleet has published). */
async function scoredRows(out: string): Promise<number> {
  const m = await readManifests(out);
  return m.lines.filter((l) => l.kind === "scored").reduce((a, l) => a + l.rows, 0);
}

// ---------------------------------------------------------------------------------------------
// Kafka reads for the check

// ---------------------------------------------------------------------------------------------
// The check

interface Outcome {
  layout: Manifests["layout"];
  manifests: number;
  manifestLines: number;
  tornLines: number;
  badLines: number;
  /** files named by more than one manifest line */
  namedTwice: number;
  /** named files that are not on disk */
  namedMissing: number;
  /** *.parquet files on disk under scored/ and selected/ that no manifest names */
  orphans: number;
  /** temporary files left under scored/ and selected/ (reported, not asserted) */
  tempFiles: number;
  /** manifest lines whose file disagrees with them (rows, partition, topic, offset range, kind) */
  lineMismatches: number;
  scoredFiles: number;
  selectedFiles: number;
  scoredRows: number;
  /** distinct valid (partition, offset) in the scored files */
  scoredOrigins: number;
  /** rows beyond the first of a (partition, offset) */
  duplicateDecisions: number;
  /** ids scored more than once, and ids produced but never scored */
  idsScoredTwice: number;
  idsMissing: number;
  /** offsets neither scored nor dead-lettered */
  offsetsMissing: number;
  selectedRows: number;
  selectedIds: number;
  /** ids the scored files mark selected but no selected file holds, and the reverse */
  selectedMismatch: number;
  deadLetters: number;
  deadLetterOrigins: number;
  deadLettersAlsoScored: number;
  /** partitions whose committed offset is not the end offset */
  lagging: string[];
  /** a few instances of each violation found */
  examples: string[];
}

async function check(kafka: Kafka, d: Dataset, group: string, out: string): Promise<Outcome> {
  const ends = await topicEnds(kafka, d.topic);
  const total = [...ends.values()].reduce((a, b) => a + b, 0n);
  expect(Number(total), "messages in the topic").toBe(MESSAGES + MALFORMED.length);

  const m = await readManifests(out);
  const named = new Map<string, ManifestLine[]>();
  for (const l of m.lines) named.set(l.file, [...(named.get(l.file) ?? []), l]);
  const onDisk = new Set<string>();
  let tempFiles = 0;
  for (const kind of ["scored", "selected"])
    for (const e of await readdir(join(out, kind), { recursive: true, withFileTypes: true }).catch(
      () => [],
    )) {
      if (!e.isFile()) continue;
      if (e.name.endsWith(".parquet") && !e.name.startsWith("."))
        onDisk.add(relative(out, join(e.parentPath, e.name)));
      else tempFiles++;
    }
  const namedMissing: string[] = [];
  for (const f of named.keys())
    if (
      !onDisk.has(f) &&
      !(await stat(join(out, f)).then(
        (st) => st.isFile(),
        () => false,
      ))
    )
      namedMissing.push(f);
  const orphans = [...onDisk].filter((f) => !named.has(f));
  const files = (kind: string): string[] =>
    [...named.entries()].filter(([f, ls]) => ls[0].kind === kind && onDisk.has(f)).map(([f]) => f);
  const scoredFiles = files("scored");
  const selectedFiles = files("selected");
  expect(scoredFiles.length, "no scored file named in a manifest").toBeGreaterThan(0);
  const list = (fs: string[]): string =>
    `read_parquet([${fs.map((f) => lit(join(out, f))).join(", ")}], filename = true)`;

  // the manifest lines against their files
  const mismatches: string[] = [];
  const perFile = async (fs: string[]): Promise<void> => {
    if (fs.length === 0) return;
    const rows = await sql(
      `SELECT filename AS f, count(*) AS n, min(origin_partition) AS p0, max(origin_partition) AS p1,
              CAST(min(origin_offset) AS VARCHAR) AS o0, CAST(max(origin_offset) AS VARCHAR) AS o1,
              count(DISTINCT origin_topic) AS topics, min(origin_topic) AS t
       FROM ${list(fs)} GROUP BY filename`,
    );
    const byFile = new Map(rows.map((r) => [String(r.f), r]));
    for (const f of fs) {
      const l = (named.get(f) ?? [])[0];
      const r = byFile.get(join(out, f));
      const n = r ? Number(r.n) : 0;
      const why: string[] = [];
      if (!f.startsWith(`${l.kind}/`)) why.push(`kind ${l.kind}`);
      if (n !== l.rows) why.push(`rows ${n} (line: ${l.rows})`);
      if (r) {
        if (Number(r.p0) !== l.partition || Number(r.p1) !== l.partition)
          why.push(`partitions ${r.p0}..${r.p1} (line: ${l.partition})`);
        if (Number(r.topics) !== 1 || r.t !== l.topic || l.topic !== d.topic)
          why.push(`topic ${r.t} (line: ${l.topic})`);
        if (BigInt(String(r.o0)) < BigInt(l.firstOffset) || BigInt(String(r.o1)) > BigInt(l.lastOffset))
          why.push(`offsets ${r.o0}..${r.o1} outside ${l.firstOffset}..${l.lastOffset}`);
      }
      if (why.length > 0) mismatches.push(`${f}: ${why.join(", ")}`);
    }
  };
  await perFile(scoredFiles);
  await perFile(selectedFiles);

  // decisions
  const rows = await sql(
    `SELECT origin_partition AS p, CAST(origin_offset AS VARCHAR) AS o, id, selected, filename AS f FROM ${list(scoredFiles)}`,
  );
  const decided = new Map<string, number>();
  const where = new Map<string, string[]>();
  const idCount = new Map<string, number>();
  const flagged = new Set<string>();
  for (const r of rows) {
    const key = `${r.p}:${r.o}`;
    decided.set(key, (decided.get(key) ?? 0) + 1);
    where.set(key, [...(where.get(key) ?? []), relative(out, String(r.f))]);
    const id = String(r.id);
    idCount.set(id, (idCount.get(id) ?? 0) + 1);
    if (r.selected) flagged.add(id);
  }
  const idsMissing = [...d.ids].filter((id) => !idCount.has(id));
  const idsTwice = [...idCount.values()].filter((n) => n > 1).length;

  const letters = await deadLetters(kafka, d.dlqTopic);
  const letterOrigins = new Set(letters.map((l) => l.origin));
  for (const l of letters)
    expect(["invalid-json", "invalid-sample"], `dead letter ${l.origin}`).toContain(l.code);
  let offsetsMissing = 0;
  for (const [p, end] of ends)
    for (let o = 0n; o < end; o++)
      if (!decided.has(`${p}:${o}`) && !letterOrigins.has(`${p}:${o}`)) offsetsMissing++;

  const sel =
    selectedFiles.length === 0
      ? []
      : await sql(`SELECT id FROM ${list(selectedFiles)}`).then((r) => r.map((x) => String(x.id)));
  const selIds = new Set(sel);
  const selectedMismatch =
    [...flagged].filter((id) => !selIds.has(id)).length + [...selIds].filter((id) => !flagged.has(id)).length;

  const committed = await committedOffsets(kafka, group, d.topic);
  const lagging = [...ends]
    .filter(([p, end]) => committed.get(p) !== end)
    .map(([p, end]) => `p${p}: committed ${committed.get(p)} of ${end}`);

  // a few of each kind of violation, to start debugging from
  const n = VERBOSE ? 20 : 3;
  const by = (f: string): string => (named.get(f) ?? []).map((l) => l.from).join(" + ");
  const examples = [
    ...[...where]
      .filter(([, fs]) => fs.length > 1)
      .slice(0, n)
      .map(([o, fs]) => `offset ${o} decided in ${fs.map((f) => `${f} (${by(f)})`).join(", ")}`),
    ...mismatches.slice(0, n).map((w) => `manifest line vs file: ${w}`),
    ...orphans.slice(0, n).map((f) => `orphan: ${f}`),
    ...namedMissing.slice(0, n).map((f) => `named, not on disk: ${f} (${by(f)})`),
    ...[...named]
      .filter(([, ls]) => ls.length > 1)
      .slice(0, n)
      .map(([f]) => `named twice: ${f} (${by(f)})`),
    ...m.bad.slice(0, n).map((b) => `not a manifest entry: ${b}`),
  ];
  return {
    layout: m.layout,
    manifests: m.sources.length,
    manifestLines: m.lines.length,
    tornLines: m.torn,
    badLines: m.bad.length,
    namedTwice: [...named.values()].filter((ls) => ls.length > 1).length,
    namedMissing: namedMissing.length,
    orphans: orphans.length,
    tempFiles,
    lineMismatches: mismatches.length,
    scoredFiles: scoredFiles.length,
    selectedFiles: selectedFiles.length,
    scoredRows: rows.length,
    scoredOrigins: decided.size,
    duplicateDecisions: rows.length - decided.size,
    idsScoredTwice: idsTwice,
    idsMissing: idsMissing.length,
    offsetsMissing,
    selectedRows: sel.length,
    selectedIds: selIds.size,
    selectedMismatch,
    deadLetters: letters.length,
    deadLetterOrigins: letterOrigins.size,
    deadLettersAlsoScored: [...letterOrigins].filter((o) => decided.has(o)).length,
    lagging,
    examples,
  };
}

// ---------------------------------------------------------------------------------------------
// The fleet

interface Instance {
  name: string;
  proc: CurateProcess;
  /** its member id in the group, once it joined */
  memberId?: string;
  /** no longer counted as running (stopped, killed, or exited by itself) */
  gone: boolean;
}

describe("chaos: a fleet of curators in one group and one out dir", () => {
  it("joins, graceful leaves and SIGKILLs at seeded points: every offset decided exactly once", async () => {
    const list = brokers();
    const kafka = testKafka("chaos", { brokers: list });
    const rng = createRandom(SEED);
    const d = await dataset(kafka, rng);
    const group = freshGroup("chaos");
    const out = join(dir, "out");
    await mkdir(out);

    const t0 = Date.now();
    const log: string[] = [];
    const faults: string[] = [];
    const note = (line: string): void => {
      const entry = `+${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s ${line}`;
      log.push(entry);
      if (VERBOSE) console.log(`chaos: ${entry}`);
    };
    /** the last lines of an instance's output, less kafkajs's log */
    const tail = (text: string, n = 6): string =>
      text
        .trim()
        .split("\n")
        .filter((l) => !l.startsWith('{"level"'))
        .slice(-n)
        .map((l) => `      | ${l}`)
        .join("\n");
    const summaryOf = (e: CurateExit): string =>
      e.output
        .split("\n")
        .find((l) => l.startsWith("read "))
        ?.trim() ?? "no summary";

    const admin: Admin = kafka.admin();
    await admin.connect();
    const instances: Instance[] = [];
    let changes = 0;
    const counts = { joins: 0, sigterm: 0, sigkill: 0, selfExits: 0 };
    let producing: Promise<void> = Promise.resolve();
    const evicted = new Set<string>();
    /** member ids of the group that no running instance owns, and since when */
    const unownedSince = new Map<string, number>();
    let finalExit: CurateExit | undefined;

    const live = (): Instance[] => instances.filter((i) => !i.gone);
    const evict = async (ids: string[]): Promise<void> => {
      const fresh = ids.filter((id) => !evicted.has(id));
      for (const id of fresh) evicted.add(id);
      if (fresh.length > 0) await evictGroupMembers(list[0], group, fresh);
    };
    /** The member id the instance's consumer last joined the group with (its kafkajs log). */
    const memberIdOf = (i: Instance): string | undefined =>
      [...i.proc.output().matchAll(JOINED)].at(-1)?.[1] ?? i.memberId;
    /** Instances that exited without being told to: faults, and membership changes if they had joined. */
    const reap = async (): Promise<void> => {
      for (const i of live())
        if (i.proc.done) {
          i.gone = true;
          const e = await i.proc.exited;
          i.memberId = memberIdOf(i);
          counts.selfExits++;
          if (i.memberId) changes++;
          faults.push(`${i.name} exited by itself (${e.code ?? e.signal})`);
          note(`${i.name} EXITED BY ITSELF (${e.code ?? e.signal}); ${summaryOf(e)}\n${tail(e.output)}`);
          if (i.memberId) await evict([i.memberId]).catch(() => {});
        }
    };
    /**
     * One look at the group: the instances' member ids refreshed, instances that exited by
     * themselves reaped, and a member that no running instance owns evicted once it has lingered
     * 10 s (a SIGKILLed consumer whose join the coordinator completed after its death: it would
     * hold every rebalance up until its session times out).
     */
    const observe = async (): Promise<{ state: string; ids: string[] }> => {
      for (const i of live()) i.memberId = memberIdOf(i);
      await reap();
      const g = (await admin.describeGroups([group])).groups[0];
      const ids = (g?.members ?? []).map((m) => m.memberId);
      const owned = new Set(live().map((i) => i.memberId));
      const now = Date.now();
      for (const id of [...unownedSince.keys()])
        if (!ids.includes(id) || owned.has(id)) unownedSince.delete(id);
      for (const id of ids) if (!owned.has(id) && !unownedSince.has(id)) unownedSince.set(id, now);
      const stale = [...unownedSince].filter(([, since]) => now - since >= 10_000).map(([id]) => id);
      if (stale.length > 0) {
        for (const id of stale) unownedSince.delete(id);
        note(`  evicting ${stale.length} member(s) that no running instance owns`);
        await evict(stale).catch((err) => note(`  eviction failed: ${(err as Error).message}`));
      }
      return { state: g?.state ?? "Dead", ids };
    };
    /** Until the group is stable with exactly the running instances that joined (or empty). */
    const settle = async (what: string): Promise<void> => {
      await waitFor(
        async () => {
          const g = await observe();
          const mine = live().filter((i) => i.memberId);
          if (mine.length === 0) return g.ids.length === 0;
          return (
            g.state === "Stable" &&
            g.ids.length === mine.length &&
            mine.every((i) => g.ids.includes(i.memberId as string))
          );
        },
        { timeoutMs: 90_000, intervalMs: 100, what },
      );
    };
    const start = async (): Promise<Instance> => {
      const inst: Instance = {
        name: `i${instances.length + 1}`,
        proc: curate({
          brokers: list,
          topic: d.topic,
          group,
          out,
          dlqTopic: d.dlqTopic,
          untilIdle: FLEET_IDLE_S,
          // kafkajs then logs "Consumer has joined the group" with the member id (see JOINED)
          env: { MMSSR_KAFKA_LOG_LEVEL: "info" },
        }),
        gone: false,
      };
      instances.push(inst);
      // noticed (and logged) as it happens, not only at the next look at the group
      inst.proc.exited.then(() => reap()).catch(() => {});
      const at = Date.now();
      await waitFor(
        async () => {
          await observe();
          return inst.proc.done || inst.memberId !== undefined;
        },
        {
          timeoutMs: 90_000,
          intervalMs: 100,
          what: `${inst.name} to join the group (a kafkajs "Consumer has joined the group" line in its output)`,
        },
      );
      if (inst.memberId) {
        changes++;
        counts.joins++;
        note(
          `start ${inst.name}: joined after ${((Date.now() - at) / 1000).toFixed(1)} s (${live().length} running)`,
        );
      }
      return inst;
    };
    const remove = async (inst: Instance, signal: "SIGKILL" | "SIGTERM", at: string): Promise<void> => {
      const rows = await scoredRows(out);
      if (inst.proc.done) return reap();
      inst.gone = true;
      if (signal === "SIGKILL") {
        const e = await inst.proc.kill("SIGKILL");
        inst.memberId = memberIdOf(inst);
        if (e.signal === "SIGKILL") counts.sigkill++;
        else faults.push(`${inst.name} had exited (${e.code}) before its SIGKILL`);
        if (inst.memberId) {
          changes++;
          await evict([inst.memberId]);
        }
        note(`SIGKILL ${inst.name} ${at} (${rows} rows published)${inst.memberId ? ", evicted" : ""}`);
        if (VERBOSE) console.log(tail(e.output, 12));
        return;
      }
      const t = Date.now();
      inst.proc.kill("SIGTERM");
      const drained = await within(inst.proc.exited, DRAIN_LIMIT_MS);
      const e = drained ?? (await inst.proc.kill("SIGKILL"));
      inst.memberId = memberIdOf(inst);
      if (inst.memberId) changes++;
      counts.sigterm++;
      const clean = drained !== undefined && e.code === 0;
      if (!drained) faults.push(`${inst.name} did not exit within ${DRAIN_LIMIT_MS / 1000} s of SIGTERM`);
      else if (e.code !== 0) faults.push(`${inst.name} exited ${e.code ?? e.signal} after SIGTERM`);
      // a clean exit left the group; any other may have left its member behind
      if (!clean && inst.memberId) await evict([inst.memberId]).catch(() => {});
      note(
        `SIGTERM ${inst.name} ${at} (${rows} rows published): ${drained ? `exit ${e.code ?? e.signal}` : "HUNG, SIGKILLed"} ` +
          `after ${((Date.now() - t) / 1000).toFixed(1)} s; ${summaryOf(e)}` +
          (clean ? "" : `\n${tail(e.output)}`),
      );
      if (VERBOSE) console.log(tail(e.output, 12));
    };
    /** A seeded point of the schedule: after the next publish, after a pause, or at once. */
    const point = async (): Promise<string> => {
      const kind = rng.int(3);
      if (kind === 0) {
        const lag = rng.int(400);
        const before = await scoredRows(out);
        const published = await waitFor(async () => (await scoredRows(out)) > before, {
          timeoutMs: 5_000,
          intervalMs: 20,
          what: "a publish",
        }).then(
          () => true,
          () => false,
        );
        const at = Date.now();
        await waitFor(() => Date.now() - at >= lag, { what: `${lag} ms` });
        return published ? `${lag} ms after a publish` : "after 5 s without a publish";
      }
      if (kind === 1) {
        const ms = 300 + rng.int(2_500);
        const at = Date.now();
        await waitFor(() => Date.now() - at >= ms, { timeoutMs: ms + 1_000, what: `${ms} ms` });
        return `after ${ms} ms`;
      }
      return "at once";
    };
    /** After a change, most of the time: wait for the group to settle, so that changes do not merge. */
    const maybeSettle = async (): Promise<void> => {
      if (rng.next() < 0.25) return;
      const at = Date.now();
      await settle("the group to settle");
      note(`  group stable with ${live().length} after ${((Date.now() - at) / 1000).toFixed(1)} s`);
    };
    /** Queues the next chunk of the input (produced in the background, one chunk after the other). */
    let queued = 1;
    const nextChunk = (): void => {
      if (queued >= d.files.length) return;
      const k = queued++;
      const f = d.files[k];
      note(`queue chunk ${k} (${f.lines} messages)`);
      producing = producing.then(async () => {
        const at = Date.now();
        await produce(list, d.topic, f.path);
        note(`  chunk ${k} produced in ${((Date.now() - at) / 1000).toFixed(1)} s`);
      });
      // a failure surfaces where the test awaits `producing`
      producing.catch(() => {});
    };

    try {
      await produce(list, d.topic, d.files[0].path);
      note(`produced chunk 0 (${d.files[0].lines} messages) before the fleet`);
      // the fleet comes up
      for (let k = 0; k < FLEET; k++) {
        await start();
        if (k < FLEET - 1) {
          nextChunk();
          note(`  next start ${await point()}`);
        }
      }
      await maybeSettle();
      // seeded removals, each maybe followed by a replacement, production going on meanwhile
      const removals = [...REMOVALS];
      for (let k = removals.length - 1; k > 0; k--) {
        const j = rng.int(k + 1);
        [removals[k], removals[j]] = [removals[j], removals[k]];
      }
      for (let r = 0; r < removals.length; r++) {
        await reap();
        if (live().length < FLEET && (live().length <= 1 || rng.next() < 0.6)) {
          nextChunk();
          const at = await point();
          note(`  (start ${at})`);
          await start();
          await maybeSettle();
        }
        const victims = live().filter((i) => i.memberId);
        if (victims.length === 0) continue;
        const victim = victims[rng.int(victims.length)];
        nextChunk();
        await remove(victim, removals[r], await point());
        await maybeSettle();
      }
      if (live().length < FLEET) {
        nextChunk();
        note(`  (start ${await point()})`);
        await start();
        await maybeSettle();
      }
      // the fleet goes away, gracefully, in a seeded order
      note("stopping the fleet");
      while (live().length > 0) {
        await reap();
        const rest = live();
        if (rest.length === 0) break;
        nextChunk();
        await remove(rest[rng.int(rest.length)], "SIGTERM", await point());
        await maybeSettle();
      }
      while (queued < d.files.length) nextChunk();
      await producing;
      note(`all ${MESSAGES + MALFORMED.length} messages produced`);
      await settle("the group to empty");
      note(`group empty; ${changes} membership changes (${JSON.stringify(counts)})`);
      // one instance alone, until idle
      const t = Date.now();
      const last = curate({
        brokers: list,
        topic: d.topic,
        group,
        out,
        dlqTopic: d.dlqTopic,
        untilIdle: FINAL_IDLE_S,
      });
      const ended = await within(last.exited, FINAL_LIMIT_MS);
      if (!ended) faults.push(`the final run did not exit within ${FINAL_LIMIT_MS / 1000} s`);
      const exit = ended ?? (await last.kill("SIGKILL"));
      finalExit = exit;
      note(
        `final run alone: ${ended ? `exit ${exit.code ?? exit.signal}` : "HUNG, SIGKILLed"} after ${((Date.now() - t) / 1000).toFixed(1)} s; ${summaryOf(exit)}` +
          (exit.code === 0 ? "" : `\n${tail(exit.output, 12)}`),
      );
    } catch (err) {
      for (const i of live()) await i.proc.kill("SIGKILL");
      throw new Error(`${(err as Error).message}\nschedule (seed ${SEED}):\n  ${log.join("\n  ")}`);
    } finally {
      await admin.disconnect();
    }

    const outcome = await check(kafka, d, group, out);
    const took = ((Date.now() - t0) / 1000).toFixed(0);
    console.log(
      `chaos (seed ${SEED}, ${took} s, ${changes} membership changes: ${counts.joins} joins, ${counts.sigterm} SIGTERM, ` +
        `${counts.sigkill} SIGKILL, ${counts.selfExits} exits by themselves):\n  ${log.join("\n  ")}\n` +
        `  faults: ${faults.length === 0 ? "none" : faults.join("; ")}\n  outcome: ${JSON.stringify({ ...outcome, examples: undefined })}` +
        outcome.examples.map((e) => `\n    ${e}`).join(""),
    );

    // the schedule really was chaos
    expect.soft(changes, "membership changes (rebalances)").toBeGreaterThanOrEqual(MIN_CHANGES);
    expect.soft(counts.sigkill, "SIGKILLs").toBeGreaterThanOrEqual(2);
    expect.soft(counts.sigterm, "graceful leaves").toBeGreaterThanOrEqual(2);
    // the guarantees, each reported (soft) so that one run shows every violation
    expect.soft(finalExit?.code, "the final run's exit code").toBe(0);
    expect.soft(outcome.duplicateDecisions, "(partition, offset) decided more than once").toBe(0);
    expect.soft(outcome.idsScoredTwice, "ids scored more than once").toBe(0);
    expect.soft(outcome.idsMissing, "ids never scored").toBe(0);
    expect.soft(outcome.scoredOrigins, "valid offsets scored").toBe(MESSAGES);
    expect.soft(outcome.scoredRows, "scored rows").toBe(MESSAGES);
    expect.soft(outcome.offsetsMissing, "offsets neither scored nor dead-lettered").toBe(0);
    expect.soft(outcome.selectedRows - outcome.selectedIds, "ids twice in the selected files").toBe(0);
    expect.soft(outcome.selectedMismatch, "selected files vs the scored files' selected flag").toBe(0);
    expect.soft(outcome.deadLetterOrigins, "malformed messages dead-lettered").toBe(MALFORMED.length);
    expect.soft(outcome.deadLettersAlsoScored, "dead letters also scored").toBe(0);
    expect.soft(outcome.badLines, "manifest lines that are not entries").toBe(0);
    expect.soft(outcome.namedTwice, "files named by two manifest lines").toBe(0);
    expect.soft(outcome.namedMissing, "named files missing on disk").toBe(0);
    expect.soft(outcome.orphans, "parquet files no manifest names").toBe(0);
    expect.soft(outcome.lineMismatches, "manifest lines that disagree with their files").toBe(0);
    expect.soft(outcome.lagging, "committed offsets at the end offsets (lag 0)").toEqual([]);
    expect.soft(faults, "instance faults").toEqual([]);
  }, 300_000);
});
