/**
 * npm run bench:stream — the curation stream through the real local broker (issue 4, "Performance").
 *
 *   npm run bench:stream [-- --n 2000000] [--images-n 100000] [--quick]
 *   node dist/bench/stream-bench.js [--n N] [--images-n N] [--rate 2000] [--latency-s 60] [--brokers B] [--keep]
 *
 * Everything goes through the broker of connectors/kafka/local-broker.sh (started if it is not
 * running; MMSSR_KAFKA_BROKERS or --brokers names another) with the bundled mmssr-lite model.
 * Each measured party runs in its own child process (fork of this file), so its RSS is its own.
 *
 * 1. Throughput. A fresh topic (3 partitions) is filled with N messages, then read by fresh
 *    consumer groups (bare once, end to end once per worker count), and the scorer alone is run
 *    on the same samples before each end-to-end run (child role "score": the parsed samples
 *    through OnnxScorer.score, 256 per call, 2 x workers calls in flight, same model, workers and
 *    image loader), so that the ratio end to end / scorer alone comes from one run:
 *    - bare: a kafkajs consumer with exactly the settings of connectors/kafka/kafka-source.ts
 *      (maxBytesPerPartition 32 MiB, maxBytes 64 MiB, session 30 s, heartbeat 3 s, autoCommit
 *      off, eachBatch, resolveOffset per message, heartbeat every second) that does nothing else:
 *      no parse, no score, no sink, no commit;
 *    - end to end: `runCurate` (src/cli/commands/curate-command.ts), window mode, ratio 0.3,
 *      window 20,000 / 2,000 ms, 1 or 2 scoring workers, sink rotation 100,000 rows or 2,000 ms
 *      (the CLI's 60 s time trigger would hold a partition's tail until the exit). The child
 *      watches its manifests and aborts the run (as SIGTERM does: drain, publish, commit) once all N scored rows are published
 *      (not --until-idle: its clock also runs while the source is paused for backpressure).
 *    Rates are N / (done - joined): joined = the consumer group first seen Stable with a member
 *    (an admin client polls describeGroups every 100 ms in the child), done = the bare consumer's
 *    N-th message, or the time the last file of the rotation that completes N scored rows is in
 *    place (its mtime). The wall time from the child's call (connect, join) is reported beside it.
 *    Two inputs: text-only (syntheticSamples without the image reference and its <image>
 *    placeholder) and small inline images (the same texts with image_b64 = one 64x64 JPEG made
 *    by sharp once and reused), every message with its own id.
 * 2. RSS: the end-to-end child samples process.memoryUsage().rss every second; start / p50 / max
 *    / end and the least-squares slope over the read (joined .. done), whole and second half.
 * 3. Latency from produce to publish: a fresh topic; the curator child starts (window 1,000 /
 *    1,000 ms, rotation 1,000 ms; and a second run with the throughput settings), and once its
 *    group is joined this process produces at a steady --rate (default 2,000/s, batches every
 *    50 ms, round-robin over the partitions, Kafka timestamp = send time) for --latency-s
 *    seconds. Each message's send time is kept by (partition, offset) from the send results;
 *    every row of every published scored file is then matched: publish latency = its file's
 *    manifest publishedAt - send time, decision latency = its decided_at - send time.
 *
 * --quick: N 50,000 text, 5,000 images, one 15 s latency run. --only text,images,latency: a subset.
 * --workers 1,2 (default): the scoring worker counts of the throughput runs.
 * BENCH_CPU_PROF=1: the end-to-end children run under node --cpu-prof, summarized in the report.
 * --keep: do not delete the topics.
 */
import { type ChildProcess, fork, spawnSync } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import os from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Admin, Consumer, EachBatchPayload, Producer } from "kafkajs";
import sharp from "sharp";
import { createKafka, parseBrokers } from "../connectors/kafka/kafka-client.js";
import { openParquet, parquetBatches } from "../connectors/parquet/parquet-batches.js";
import { readPublishedEntries } from "../connectors/sink/shared-output.js";
import { syntheticSamples } from "../models/synthetic-samples.js";
import { runCurate } from "../src/app/curator.js";
import { parseSampleJson, type Sample } from "../src/domain/sample.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { createOnnxScorer } from "../src/scoring/onnx-scorer.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 && k + 1 < args.length ? args[k + 1] : fallback;
};
const has = (name: string): boolean => args.includes(name);
const self = fileURLToPath(import.meta.url);
const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

const PARTITIONS = 3;
const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Children

interface CurateSpec {
  role: "curate";
  brokers: string[];
  topic: string;
  group: string;
  out: string;
  n: number;
  windowSize: number;
  windowMs: number;
  rotateMs: number;
  idleMs: number;
  workers: number;
}

/** The scorer alone: the same samples (already parsed) through OnnxScorer.score, nothing else. */
interface ScoreSpec {
  role: "score";
  input: "text" | "images";
  n: number;
  workers: number;
}

interface BareSpec {
  role: "bare";
  brokers: string[];
  topic: string;
  group: string;
  n: number;
}

type ChildSpec = CurateSpec | BareSpec | ScoreSpec;

interface RssSample {
  t: number;
  mb: number;
}

interface ChildResult {
  role: ChildSpec["role"];
  /** bare only: the consumer's own GROUP_JOIN event (exact; the admin poll lags by up to ~0.2 s) */
  joinedAt?: number;
  tCall: number;
  tJoined: number;
  tDone: number;
  tExit: number;
  read: number;
  rss: RssSample[];
  peakRssMb: number;
  cpuMs: number;
  /** curate only */
  stats?: { read: number; scored: number; selected: number; windows: number; commits: number; dead: number };
  publishedFiles?: number;
  pauses?: number;
  /** ms from the last needed publication to runCurate's return (the SIGTERM drain and close) */
  doneToReturnMs?: number;
}

async function waitForStableGroup(admin: Admin, group: string, stop: () => boolean): Promise<number> {
  for (;;) {
    if (stop()) return Date.now();
    try {
      const { groups } = await admin.describeGroups([group]);
      const g = groups[0];
      if (g && g.state === "Stable" && g.members.length > 0) return Date.now();
    } catch {
      // coordinator loading: ask again
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function runChild(spec: ChildSpec): Promise<ChildResult> {
  const rss: RssSample[] = [{ t: Date.now(), mb: process.memoryUsage().rss / MB }];
  const sampler = setInterval(() => rss.push({ t: Date.now(), mb: process.memoryUsage().rss / MB }), 1000);
  const cpu0 = process.cpuUsage();
  if (spec.role === "score") {
    const r = await scoreAlone(spec);
    clearInterval(sampler);
    const c = process.cpuUsage(cpu0);
    return {
      ...r,
      tJoined: r.tCall,
      tExit: Date.now(),
      rss,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      cpuMs: (c.user + c.system) / 1000,
    };
  }
  const admin = createKafka({ brokers: spec.brokers, clientId: "bench-stream-watch" }).admin();
  await admin.connect();
  const tCall = Date.now();
  let finished = false;
  const joined = waitForStableGroup(admin, spec.group, () => finished).then((t) => {
    process.send?.({ type: "joined", t });
    return t;
  });
  let result: Omit<ChildResult, "tJoined" | "rss" | "peakRssMb" | "cpuMs" | "tExit">;
  if (spec.role === "bare") {
    result = await bareConsume(spec, tCall);
  } else {
    let pauses = 0;
    // Stop at once (abort: drain, publish, commit, as SIGTERM does) when the manifests show all n scored rows.
    // The --until-idle clock is not used to end these runs: it also runs while the graph has
    // paused the source for backpressure (records undecided > 50,000), and ends the run early
    // when draining the backlog takes longer than the idle time.
    let watching = true;
    const stop = new AbortController();
    const watch = (async () => {
      while (watching) {
        const entries = await readPublishedEntries(spec.out).catch(() => []);
        if (entries.reduce((a, e) => a + (e.kind === "scored" ? e.rows : 0), 0) >= spec.n) {
          stop.abort();
          return;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const stats = await runCurate({
      source: { kind: "kafka", brokers: spec.brokers, topic: spec.topic, group: spec.group },
      out: spec.out,
      policy: { ratio: 0.3, threshold: 0 },
      mode: "window",
      windowSize: spec.windowSize,
      windowMs: spec.windowMs,
      workers: spec.workers,
      idleMs: spec.idleMs,
      rotateMs: spec.rotateMs,
      signal: stop.signal,
      log: (line) => {
        if (line.startsWith("paused")) pauses++;
        else process.stderr.write(`  [curate] ${line}\n`);
      },
    });
    const tReturned = Date.now();
    watching = false;
    await watch;
    const entries = await readPublishedEntries(spec.out);
    // done = the last file of the rotation that completes n scored rows is in place (mtime)
    const writtenBySeq = new Map<number, number>();
    for (const e of entries) {
      const m = (await stat(join(spec.out, e.file))).mtimeMs;
      writtenBySeq.set(e.seq, Math.max(writtenBySeq.get(e.seq) ?? 0, m));
    }
    const scored = entries
      .filter((e) => e.kind === "scored")
      .map((e) => ({ rows: e.rows, at: writtenBySeq.get(e.seq) ?? Date.parse(e.publishedAt) }))
      .sort((a, b) => a.at - b.at);
    let sum = 0;
    let tDone = Number.NaN;
    for (const e of scored) {
      sum += e.rows;
      if (sum >= spec.n && Number.isNaN(tDone)) tDone = e.at;
    }
    if (Number.isNaN(tDone))
      process.stderr.write(
        `  [curate] INCOMPLETE: ${sum} of ${spec.n} rows published (read ${stats.read})\n`,
      );
    result = {
      role: "curate",
      tCall,
      tDone,
      read: stats.read,
      stats: {
        read: stats.read,
        scored: stats.scored,
        selected: stats.selected,
        windows: stats.windows,
        commits: stats.commits,
        dead: stats.deadLettered,
      },
      publishedFiles: entries.length,
      pauses,
      doneToReturnMs: tReturned - tDone,
    };
  }
  finished = true;
  const polled = await joined;
  const tJoined = result.joinedAt || polled;
  clearInterval(sampler);
  rss.push({ t: Date.now(), mb: process.memoryUsage().rss / MB });
  await admin.disconnect();
  const c = process.cpuUsage(cpu0);
  return {
    ...result,
    tJoined,
    tExit: Date.now(),
    rss,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    cpuMs: (c.user + c.system) / 1000,
  };
}

/**
 * The scorer alone, as bench:score drives it: the n samples of the run (parsed and validated
 * beforehand, as the stream's parse step would), one score() call per 256, at most 2 x workers
 * calls in flight, the same model, workers and image loader as runCurate's. A warm-up of 2,048
 * first. tJoined..tDone is the timed part.
 */
async function scoreAlone(
  spec: ScoreSpec,
): Promise<Omit<ChildResult, "tJoined" | "rss" | "peakRssMb" | "cpuMs" | "tExit">> {
  const values = await messageValues(spec.input);
  const samples: Sample[] = [];
  for (let i = 0; i < spec.n; i++) {
    const parsed = parseSampleJson(values(i));
    if (!parsed.ok) throw new Error(`sample ${i} does not parse: ${JSON.stringify(parsed.errors)}`);
    samples.push(parsed.sample);
  }
  const loader = createImageLoader({ baseDir: process.cwd() });
  const scorer = await createOnnxScorer({
    modelDir: join(repoRoot, "models", "mmssr-lite"),
    workers: spec.workers,
    imageLoader: loader,
  });
  try {
    const drive = async (from: number, to: number): Promise<void> => {
      let next = from;
      const lane = async (): Promise<void> => {
        while (next < to) {
          const k = next;
          next = Math.min(to, next + 256);
          await scorer.score(samples.slice(k, next));
        }
      };
      await Promise.all(Array.from({ length: 2 * spec.workers }, lane));
    };
    await drive(0, Math.min(2_048, samples.length));
    const t0 = Date.now();
    await drive(0, samples.length);
    const t1 = Date.now();
    process.send?.({ type: "joined", t: t0 });
    return { role: "score", tCall: t0, tDone: t1, read: samples.length, joinedAt: t0 };
  } finally {
    await scorer.close();
    await loader.close();
  }
}

/** The Source's consumer settings (connectors/kafka/kafka-source.ts) and nothing else. */
async function bareConsume(
  spec: BareSpec,
  tCall: number,
): Promise<Omit<ChildResult, "tJoined" | "rss" | "peakRssMb" | "cpuMs" | "tExit">> {
  const kafka = createKafka({ brokers: spec.brokers, clientId: "mmssr-curate" });
  const maxBytesPerPartition = 32 * 1024 * 1024;
  const consumer: Consumer = kafka.consumer({
    groupId: spec.group,
    maxBytesPerPartition,
    maxBytes: 2 * maxBytesPerPartition,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
  });
  let joinedAt = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joinedAt ||= Date.now();
  });
  await consumer.connect();
  await consumer.subscribe({ topic: spec.topic, fromBeginning: true });
  let read = 0;
  let tDone = 0;
  const done = new Promise<void>((resolveDone) => {
    void consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
        let lastBeat = Date.now();
        for (const m of batch.messages) {
          if (!isRunning() || isStale()) break;
          read++;
          resolveOffset(m.offset);
          if (Date.now() - lastBeat > 1_000) {
            await heartbeat();
            lastBeat = Date.now();
          }
          if (read === spec.n) {
            tDone = Date.now();
            resolveDone();
          }
        }
        await heartbeat();
      },
    });
  });
  await done;
  await consumer.disconnect();
  return { role: "bare", tCall, tDone, read, joinedAt };
}

// ---------------------------------------------------------------------------------------------
// Inputs

function textTemplates(count: number): Omit<Sample, "id">[] {
  return syntheticSamples(count, 11).map((s) => {
    // the template's own id goes: each message gets its own (a repeated id is dead-lettered)
    const { image: _image, id: _id, ...rest } = s;
    return {
      ...rest,
      conversations: s.conversations.map((t) => ({ ...t, value: t.value.replace("<image>\n", "") })),
    };
  });
}

function imageTemplates(count: number, b64: string): Omit<Sample, "id">[] {
  return syntheticSamples(count, 11).map((s) => {
    const { image: _image, id: _id, ...rest } = s;
    return { ...rest, image_b64: b64 };
  });
}

/** A 64x64 JPEG: a colour gradient with a little noise (photo-like size, not a flat block). */
async function smallJpeg(): Promise<Buffer> {
  const w = 64;
  const h = 64;
  const px = Buffer.alloc(w * h * 3);
  let seed = 12345;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 16) / 65536;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const k = (y * w + x) * 3;
      px[k] = Math.min(255, x * 4 + rnd() * 24);
      px[k + 1] = Math.min(255, y * 4 + rnd() * 24);
      px[k + 2] = Math.min(255, 128 + Math.sin((x + y) / 6) * 80 + rnd() * 24);
    }
  return sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

/** Message i of an input, as the parent produces it (every message with its own id). */
async function messageValues(input: "text" | "images"): Promise<(i: number) => string> {
  if (input === "text") {
    const text = textTemplates(10_000).map((s) => JSON.stringify(s).slice(1));
    return (i) => `{"id":"txt-${i}",${text[i % text.length]}`;
  }
  const b64 = (await smallJpeg()).toString("base64");
  const images = imageTemplates(1_000, b64).map((s) => JSON.stringify(s).slice(1));
  return (i) => `{"id":"img-${i}",${images[i % images.length]}`;
}

// ---------------------------------------------------------------------------------------------
// Broker helpers (parent)

function brokerList(): string[] {
  const given = flag("--brokers", process.env.MMSSR_KAFKA_BROKERS ?? "");
  if (given) return parseBrokers(given);
  const r = spawnSync("bash", [join(repoRoot, "connectors", "kafka", "local-broker.sh"), "start"], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`local-broker.sh start failed:\n${r.stdout}\n${r.stderr}`);
  const address = r.stdout.trim().split("\n").pop() ?? "";
  return parseBrokers(address);
}

async function createTopic(admin: Admin, topic: string): Promise<void> {
  await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
  });
}

/** Fills a topic: n messages, partition i % 3, batches of 1,000, 4 sends in flight. */
async function fill(
  producer: Producer,
  topic: string,
  n: number,
  value: (i: number) => string,
): Promise<{ secs: number; bytes: number }> {
  const t0 = performance.now();
  const batch = 1_000;
  let next = 0;
  let bytes = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const from = next;
      const to = Math.min(n, from + batch);
      next = to;
      const messages = [];
      for (let i = from; i < to; i++) {
        const v = value(i);
        bytes += v.length;
        messages.push({ value: v, partition: i % PARTITIONS });
      }
      await producer.send({ topic, acks: -1, messages });
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  return { secs: (performance.now() - t0) / 1000, bytes };
}

function startChild(
  spec: ChildSpec,
  profileDir?: string,
): {
  child: ChildProcess;
  joined: Promise<number>;
  result: Promise<ChildResult>;
} {
  const child = fork(self, ["--child", JSON.stringify(spec)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    execArgv: profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : [],
  });
  let onJoined: (t: number) => void = () => {};
  const joined = new Promise<number>((r) => {
    onJoined = r;
  });
  const result = new Promise<ChildResult>((resolveResult, reject) => {
    let got: ChildResult | undefined;
    child.on("message", (m: { type: string; t?: number; result?: ChildResult; error?: string }) => {
      if (m.type === "joined") onJoined(m.t as number);
      else if (m.type === "result") got = m.result;
      else if (m.type === "error") reject(new Error(`child ${spec.role}: ${m.error}`));
    });
    child.on("exit", (code) => {
      if (got) resolveResult(got);
      else reject(new Error(`child ${spec.role} exited with code ${code} and no result`));
    });
  });
  return { child, joined, result };
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

const fmt = (x: number, digits = 0): string =>
  Number.isFinite(x)
    ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";

function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[k];
}

/** Least-squares slope of mb against minutes. */
function slopePerMin(samples: RssSample[]): number {
  if (samples.length < 3) return Number.NaN;
  const xs = samples.map((s) => s.t / 60_000);
  const ys = samples.map((s) => s.mb);
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return num / den;
}

interface ThroughputRow {
  input: string;
  n: number;
  msgBytes: number;
  produceRate: number;
  bare: ChildResult;
  /** by worker count: the scorer alone and the whole stream, measured one after the other */
  runs: { workers: number; scorer: ChildResult; e2e: ChildResult; profile?: string[] }[];
  /** for the tables that show one end-to-end run: the first */
  e2e: ChildResult;
}

interface LatencyRow {
  config: string;
  rate: number;
  produced: number;
  matched: number;
  /** longest time between two successive rotations (manifest publishedAt) */
  longestGapMs: number;
  /** last file of the row's rotation in place (mtime) - send */
  publish: Float64Array;
  /** the rotation began (manifest publishedAt) - send */
  started: Float64Array;
  /** decided_at - send */
  decide: Float64Array;
  e2e: ChildResult;
}

// ---------------------------------------------------------------------------------------------
// Parent

async function throughput(
  admin: Admin,
  producer: Producer,
  brokers: string[],
  input: "text" | "images",
  n: number,
  workerCounts: readonly number[],
  topics: string[],
  tmp: string,
): Promise<ThroughputRow> {
  const value = await messageValues(input);
  const stamp = Date.now().toString(36);
  const topic = `bench-stream-${input}-${stamp}`;
  topics.push(topic);
  await createTopic(admin, topic);
  process.stderr.write(`[${input}] producing ${fmt(n)} messages to ${topic} ...\n`);
  const filled = await fill(producer, topic, n, value);
  process.stderr.write(`[${input}] produced in ${filled.secs.toFixed(1)} s; bare consume ...\n`);
  const bare = await startChild({ role: "bare", brokers, topic, group: `${topic}-bare`, n }).result;
  process.stderr.write(`[${input}] bare: ${fmt(rateOf(bare, n))} msg/s\n`);
  const runs: ThroughputRow["runs"] = [];
  for (const workers of workerCounts) {
    const scorer = await startChild({ role: "score", input, n, workers }).result;
    process.stderr.write(
      `[${input}] ${workers} worker(s): scorer alone ${fmt(rateOf(scorer, n))} samples/s; runCurate ...\n`,
    );
    const profileDir = process.env.BENCH_CPU_PROF ? join(tmp, `prof-${input}-${workers}`) : undefined;
    const e2e = await startChild(
      {
        role: "curate",
        brokers,
        topic,
        group: `${topic}-curate-${workers}`,
        out: join(tmp, `${input}-out-${workers}`),
        n,
        windowSize: 20_000,
        windowMs: 2_000,
        rotateMs: 2_000,
        idleMs: 300_000,
        workers,
      },
      profileDir,
    ).result;
    process.stderr.write(
      `[${input}] ${workers} worker(s): end to end ${fmt(rateOf(e2e, n))} samples/s (read ${e2e.read}), ratio ${(rateOf(e2e, n) / rateOf(scorer, n)).toFixed(2)}\n`,
    );
    const profile = profileDir ? await summarizeProfiles(profileDir) : undefined;
    runs.push({ workers, scorer, e2e, profile });
    await rm(join(tmp, `${input}-out-${workers}`), { recursive: true, force: true });
  }
  return {
    input,
    n,
    msgBytes: filled.bytes / n,
    produceRate: n / filled.secs,
    bare,
    runs,
    e2e: runs[0].e2e,
  };
}

const rateOf = (c: ChildResult, n: number): number => n / ((c.tDone - c.tJoined) / 1000);

/**
 * The CPU profiles of one child (node --cpu-prof: one file per thread), summarized: per thread
 * with at least 0.5 s of work, its busy time and its top functions by self time.
 */
async function summarizeProfiles(dir: string): Promise<string[]> {
  const { readdir, readFile } = await import("node:fs/promises");
  const files = (await readdir(dir)).filter((f) => f.endsWith(".cpuprofile")).sort();
  const out: string[] = [];
  let workersSkipped = 0;
  for (const f of files) {
    const profile = JSON.parse(await readFile(join(dir, f), "utf8")) as {
      nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
    const self = new Map<string, number>();
    let total = 0;
    let idle = 0;
    for (let i = 0; i < profile.samples.length; i++) {
      const dt = profile.timeDeltas[i] ?? 0;
      const frame = byId.get(profile.samples[i]);
      total += dt;
      if (!frame) continue;
      if (frame.functionName === "(idle)") {
        idle += dt;
        continue;
      }
      const where = frame.url
        .replace(/^.*\/node_modules\//, "")
        .replace(/^.*\/dist\//, "")
        .replace(/^file:\/\//, "");
      const key =
        `${frame.functionName || "(anonymous)"} ${where ? `${where}:${frame.lineNumber + 1}` : ""}`.trim();
      self.set(key, (self.get(key) ?? 0) + dt);
    }
    const busy = total - idle;
    if (busy < 500_000) {
      workersSkipped++;
      continue;
    }
    // CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile: thread 0 is the main thread
    const thread = f.split(".")[4] === "0" ? "main thread" : `worker thread ${f.split(".")[4]}`;
    out.push(
      `${thread}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${((100 * busy) / Math.max(total, 1)).toFixed(0)}%)`,
    );
    out.push("");
    out.push("| self % of busy | self s | function |");
    out.push("|---:|---:|---|");
    for (const [key, t] of [...self].sort((x, y) => y[1] - x[1]).slice(0, 12))
      out.push(`| ${((100 * t) / busy).toFixed(1)} | ${(t / 1e6).toFixed(2)} | \`${key}\` |`);
    out.push("");
  }
  if (workersSkipped > 0) out.push(`(${workersSkipped} thread(s) with less than 0.5 s of work left out)`);
  return out;
}

async function latency(
  admin: Admin,
  producer: Producer,
  brokers: string[],
  value: (i: number) => string,
  cfg: { windowSize: number; windowMs: number; rotateMs: number },
  rate: number,
  seconds: number,
  topics: string[],
  tmp: string,
): Promise<LatencyRow> {
  const topic = `bench-stream-latency-${cfg.windowSize}-${Date.now().toString(36)}`;
  topics.push(topic);
  await createTopic(admin, topic);
  const out = join(tmp, `latency-${cfg.windowSize}`);
  const config = `window ${fmt(cfg.windowSize)} / ${fmt(cfg.windowMs)} ms, rotation ${fmt(cfg.rotateMs)} ms`;
  process.stderr.write(`[latency] ${config}: starting the curator ...\n`);
  const run = startChild({
    role: "curate",
    brokers,
    topic,
    group: `${topic}-curate`,
    out,
    n: Math.round(rate * seconds),
    ...cfg,
    idleMs: 300_000,
    workers: 1,
  });
  await run.joined;
  process.stderr.write(`[latency] joined; producing ${rate}/s for ${seconds} s ...\n`);
  // send times by partition and offset
  const sent: number[][] = Array.from({ length: PARTITIONS }, () => []);
  const base: number[] = Array.from({ length: PARTITIONS }, () => -1);
  const tickMs = 50;
  const t0 = Date.now();
  let produced = 0;
  const total = Math.round(rate * seconds);
  while (produced < total) {
    const now = Date.now();
    const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
    if (due > produced) {
      const byPart: { value: string; timestamp: string }[][] = Array.from({ length: PARTITIONS }, () => []);
      for (let i = produced; i < due; i++)
        byPart[i % PARTITIONS].push({ value: value(i), timestamp: String(now) });
      const meta = await producer.send({
        topic,
        acks: -1,
        messages: byPart.flatMap((ms, p) => ms.map((m) => ({ ...m, partition: p }))),
      });
      for (const m of meta) {
        const p = m.partition;
        const off = Number(m.baseOffset);
        if (base[p] < 0) base[p] = off;
        const count = byPart[p].length;
        for (let k = 0; k < count; k++) sent[p][off + k - base[p]] = now;
      }
      produced = due;
    }
    const wait = t0 + ((produced + 1) / rate) * 1000 - Date.now();
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(tickMs, wait))));
  }
  const achieved = produced / ((Date.now() - t0) / 1000);
  process.stderr.write(`[latency] produced ${produced} (${fmt(achieved)}/s); waiting for the curator ...\n`);
  const e2e = await run.result;
  const entries = await readPublishedEntries(out);
  // a rotation = the entries of one seq (its scored file, then its selected file if any): it is
  // published when the last of its files is in place (their manifest lines follow in one fsync)
  const writtenBySeq = new Map<number, number>();
  for (const e of entries) {
    const m = (await stat(join(out, e.file))).mtimeMs;
    writtenBySeq.set(e.seq, Math.max(writtenBySeq.get(e.seq) ?? 0, m));
  }
  const publish: number[] = [];
  const started: number[] = [];
  const decide: number[] = [];
  for (const e of entries) {
    if (e.kind !== "scored") continue;
    const at = Date.parse(e.publishedAt);
    const written = writtenBySeq.get(e.seq) ?? at;
    const { file } = await openParquet(join(out, e.file));
    try {
      for await (const b of parquetBatches(file, 65_536)) {
        const part = b.getChild("origin_partition");
        const off = b.getChild("origin_offset");
        const dec = b.getChild("decided_at");
        if (!part || !off || !dec) throw new Error(`${e.file}: origin columns missing`);
        for (let r = 0; r < b.numRows; r++) {
          const p = Number(part.get(r));
          const o = Number(off.get(r));
          const s = sent[p]?.[o - base[p]];
          if (s === undefined) continue;
          publish.push(written - s);
          started.push(at - s);
          decide.push(Number(dec.get(r)) - s);
        }
      }
    } finally {
      file.free();
    }
  }
  await rm(out, { recursive: true, force: true });
  return {
    config,
    rate: achieved,
    produced,
    matched: publish.length,
    longestGapMs: entries
      .map((e) => Date.parse(e.publishedAt))
      .sort((a, b) => a - b)
      .reduce((g, t, i, all) => (i > 0 ? Math.max(g, t - all[i - 1]) : 0), 0),
    publish: Float64Array.from(publish).sort(),
    started: Float64Array.from(started).sort(),
    decide: Float64Array.from(decide).sort(),
    e2e,
  };
}

async function main(): Promise<void> {
  const quick = has("--quick");
  const n = Number(flag("--n", quick ? "50000" : "2000000"));
  const nImages = Number(flag("--images-n", quick ? "5000" : "100000"));
  const rate = Number(flag("--rate", "2000"));
  const latencyS = Number(flag("--latency-s", quick ? "15" : "60"));
  const load0 = os.loadavg();
  const loads: number[] = [];
  const loadTimer = setInterval(() => loads.push(os.loadavg()[0]), 5_000);
  const started = new Date();
  const brokers = brokerList();
  const tmp = await mkdtemp(join(os.tmpdir(), "bench-stream-"));
  const kafka = createKafka({ brokers, clientId: "bench-stream" });
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const topics: string[] = [];
  const jpeg = await smallJpeg();
  const text = textTemplates(10_000).map((s) => JSON.stringify(s).slice(1));
  const textIds = (prefix: string) => (i: number) => `{"id":"${prefix}-${i}",${text[i % text.length]}`;
  const workerCounts = flag("--workers", "1,2")
    .split(",")
    .map((w) => Number(w));
  const rows: ThroughputRow[] = [];
  const lat: LatencyRow[] = [];
  let load1: number[] = [];
  try {
    const only = flag("--only", "text,images,latency").split(",");
    if (only.includes("text"))
      rows.push(await throughput(admin, producer, brokers, "text", n, workerCounts, topics, tmp));
    if (only.includes("images"))
      rows.push(await throughput(admin, producer, brokers, "images", nImages, workerCounts, topics, tmp));
    const configs = quick
      ? [{ windowSize: 1_000, windowMs: 1_000, rotateMs: 1_000 }]
      : [
          { windowSize: 1_000, windowMs: 1_000, rotateMs: 1_000 },
          { windowSize: 20_000, windowMs: 2_000, rotateMs: 2_000 },
        ];
    if (only.includes("latency"))
      for (const cfg of configs)
        lat.push(await latency(admin, producer, brokers, textIds("lat"), cfg, rate, latencyS, topics, tmp));
    load1 = os.loadavg();
  } finally {
    clearInterval(loadTimer);
    await producer.disconnect();
    if (!has("--keep") && topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
    await admin.disconnect();
    await rm(tmp, { recursive: true, force: true });
  }
  report({
    started,
    load0,
    load1,
    loads,
    brokers,
    n,
    nImages,
    jpegBytes: jpeg.length,
    rows,
    lat,
    rate,
    latencyS,
  });
}

function report(r: {
  started: Date;
  load0: number[];
  load1: number[];
  loads: number[];
  brokers: string[];
  n: number;
  nImages: number;
  jpegBytes: number;
  rows: ThroughputRow[];
  lat: LatencyRow[];
  rate: number;
  latencyS: number;
}): void {
  const cpu = os.cpus();
  const out: string[] = [];
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(", ");
  out.push(
    `machine: ${cpu.length} CPUs (${cpu[0]?.model.trim() ?? "?"}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM; ` +
      `node ${process.version}; broker ${r.brokers.join(",")}; started ${r.started.toISOString()}`,
  );
  out.push(`load average (1, 5, 15 min): before ${load(r.load0)}; after ${load(r.load1)}`);
  const meanLoad = r.loads.reduce((a, b) => a + b, 0) / Math.max(1, r.loads.length);
  out.push(
    `1-min load average sampled every 5 s during the run: mean ${meanLoad.toFixed(2)}, max ${Math.max(...r.loads, 0).toFixed(2)} (${r.loads.length} samples; 2 cores, this bench's own processes and the broker included)`,
  );
  out.push(
    `inline image: one ${r.jpegBytes}-byte 64x64 JPEG (base64 in image_b64), the same in every message`,
  );
  out.push("");
  out.push(
    "Throughput (window mode, ratio 0.3, window 20,000 / 2,000 ms, rotation 100k rows / 2,000 ms; end to end with the first worker count):",
  );
  out.push("");
  out.push(
    "| input | messages | bytes/msg | produce msg/s | bare consume msg/s | end-to-end samples/s | end-to-end / bare | e2e wall s (call to done) | e2e CPU s | selected | files |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const row of r.rows) {
    const bareRate = row.n / ((row.bare.tDone - row.bare.tJoined) / 1000);
    const e2eRate = row.n / ((row.e2e.tDone - row.e2e.tJoined) / 1000);
    out.push(
      `| ${row.input} | ${fmt(row.n)} | ${fmt(row.msgBytes)} | ${fmt(row.produceRate)} | ${fmt(bareRate)} | ${fmt(e2eRate)} | ${(e2eRate / bareRate).toFixed(3)} | ${((row.e2e.tDone - row.e2e.tCall) / 1000).toFixed(1)} | ${(row.e2e.cpuMs / 1000).toFixed(1)} | ${fmt(row.e2e.stats?.selected ?? 0)} | ${fmt(row.e2e.publishedFiles ?? 0)} |`,
    );
  }
  out.push("");
  out.push(
    "End to end against the scorer alone on the same samples (same model, workers and image loader; the scorer child scores the parsed samples, 256 per call, 2 x workers calls in flight), measured one after the other in this run:",
  );
  out.push("");
  out.push(
    "| input | workers | scorer alone samples/s | end-to-end samples/s | **end to end / scorer alone** | e2e CPU s | e2e wall s (join to done) | scorer CPU s | scorer wall s |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const row of r.rows)
    for (const run of row.runs) {
      const sRate = rateOf(run.scorer, row.n);
      const eRate = rateOf(run.e2e, row.n);
      out.push(
        `| ${row.input} | ${run.workers} | ${fmt(sRate)} | ${fmt(eRate)} | **${(eRate / sRate).toFixed(2)}** | ${(run.e2e.cpuMs / 1000).toFixed(1)} | ${((run.e2e.tDone - run.e2e.tJoined) / 1000).toFixed(1)} | ${(run.scorer.cpuMs / 1000).toFixed(1)} | ${((run.scorer.tDone - run.scorer.tJoined) / 1000).toFixed(1)} |`,
      );
    }
  for (const row of r.rows)
    for (const run of row.runs) {
      if (!run.profile) continue;
      out.push("");
      out.push(
        `CPU profile of the end-to-end child, ${row.input}, ${run.workers} worker(s) (node --cpu-prof):`,
      );
      out.push("");
      out.push(...run.profile);
    }
  out.push("");
  out.push("Checks: every run read and scored exactly its messages (first worker count):");
  out.push("");
  out.push(
    "| input | bare read | e2e read | scored | dead-lettered | windows | commits | pauses (backpressure) | s from done to return (SIGTERM drain) | group join s (bare / e2e) |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const row of r.rows) {
    const s = row.e2e.stats;
    out.push(
      `| ${row.input} | ${fmt(row.bare.read)} | ${fmt(row.e2e.read)} | ${fmt(s?.scored ?? 0)} | ${fmt(s?.dead ?? 0)} | ${fmt(s?.windows ?? 0)} | ${fmt(s?.commits ?? 0)} | ${fmt(row.e2e.pauses ?? 0)} | ${((row.e2e.doneToReturnMs ?? 0) / 1000).toFixed(1)} | ${((row.bare.tJoined - row.bare.tCall) / 1000).toFixed(1)} / ${((row.e2e.tJoined - row.e2e.tCall) / 1000).toFixed(1)} |`,
    );
  }
  out.push("");
  out.push(
    "RSS of each child process, MB (sampled every second; 'read' = from group join to the last publication):",
  );
  out.push("");
  out.push(
    "| run | samples | before call | at join | p50 (read) | max (read) | end of read | at exit | peak (maxRSS) | slope MB/min (read) | slope MB/min (2nd half of read) |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const rssRows: [string, ChildResult][] = [];
  for (const row of r.rows)
    rssRows.push([`${row.input} bare`, row.bare], [`${row.input} end to end`, row.e2e]);
  for (const [name, c] of rssRows) {
    const during = c.rss.filter((s) => s.t >= c.tJoined && s.t <= c.tDone);
    const sorted = Float64Array.from(during.map((s) => s.mb)).sort();
    const atJoin = c.rss.find((s) => s.t >= c.tJoined)?.mb ?? Number.NaN;
    const half = during.filter((s) => s.t >= (c.tJoined + c.tDone) / 2);
    out.push(
      `| ${name} | ${during.length} | ${fmt(c.rss[0].mb)} | ${fmt(atJoin)} | ${fmt(quantile(sorted, 0.5))} | ${fmt(sorted[sorted.length - 1] ?? Number.NaN)} | ${fmt(during[during.length - 1]?.mb ?? Number.NaN)} | ${fmt(c.rss[c.rss.length - 1].mb)} | ${fmt(c.peakRssMb)} | ${slopePerMin(during).toFixed(2)} | ${slopePerMin(half).toFixed(2)} |`,
    );
  }
  const big = r.rows[0]?.e2e;
  if (big) {
    out.push("");
    out.push(
      `RSS of the text end-to-end child over the read, one sample in ${Math.max(1, Math.round(big.rss.length / 20))}:`,
    );
    out.push("");
    out.push("| s since join | RSS MB |");
    out.push("|---:|---:|");
    const during = big.rss.filter((s) => s.t >= big.tJoined && s.t <= big.tDone);
    const step = Math.max(1, Math.round(during.length / 20));
    for (let i = 0; i < during.length; i += step)
      out.push(`| ${((during[i].t - big.tJoined) / 1000).toFixed(0)} | ${fmt(during[i].mb)} |`);
  }
  out.push("");
  out.push(
    `Latency from produce to publish, text-only, produced at ${fmt(r.rate)}/s for ${r.latencyS} s (ms after the send time, taken just before producer.send; decided = the row's decided_at; rotation began = its file's manifest publishedAt; published = the mtime of the last file of its rotation, after which one fsynced manifest append makes it visible):`,
  );
  out.push("");
  out.push(
    "| config | achieved rate /s | produced | rows matched | decided p50 | decided p99 | rotation began p50 | rotation began p99 | **published p50** | **published p99** | published max | longest gap between rotations | curator peak RSS MB |",
  );
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const l of r.lat)
    out.push(
      `| ${l.config} | ${fmt(l.rate)} | ${fmt(l.produced)} | ${fmt(l.matched)} | ${fmt(quantile(l.decide, 0.5))} | ${fmt(quantile(l.decide, 0.99))} | ${fmt(quantile(l.started, 0.5))} | ${fmt(quantile(l.started, 0.99))} | **${fmt(quantile(l.publish, 0.5))}** | **${fmt(quantile(l.publish, 0.99))}** | ${fmt(l.publish[l.publish.length - 1] ?? Number.NaN)} | ${fmt(l.longestGapMs)} | ${fmt(l.e2e.peakRssMb)} |`,
    );
  process.stdout.write(`${out.join("\n")}\n`);
}

const childArg = flag("--child", "");
if (childArg) {
  runChild(JSON.parse(childArg) as ChildSpec)
    .then((result) => {
      process.send?.({ type: "result", result }, () => process.exit(0));
    })
    .catch((err: unknown) => {
      process.send?.(
        { type: "error", error: err instanceof Error ? (err.stack ?? err.message) : String(err) },
        () => process.exit(1),
      );
    });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(
      `bench:stream: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  });
}
