/**
 * npm run bench:kafka-clients — which Kafka client the Source should use (issue 7), measured
 * against a real broker. @platformatic/kafka is not a dependency of the project: the npm script
 * installs it (--no-save) and compiles this file alone (tsconfig.kafka-clients.json); the
 * project's own typecheck and build leave this file out.
 *
 *   npm run bench:kafka-clients [-- --cells consume,rebalance,duplicates] [--variants ...] [--repeat 1]
 *   (all cells once take about 4.5 min on 2 cores; --cells consume,rebalance about 1 min,
 *   --cells duplicates about 2.7 min)
 *   node dist/bench/kafka-clients.js [--brokers 127.0.0.1:PORT] [--n 200000] [--rate 2000]
 *                                    [--dup-n 60000] [--dup-rate 2000] [--keep] [--json FILE]
 *
 * Broker: --brokers, else MMSSR_KAFKA_BROKERS, else connectors/kafka/local-broker.sh start (which
 * honours KAFKA_PORT and only prints the address when the broker already runs). Only 127.0.0.1
 * addresses are accepted. Every topic has 6 partitions and is made fresh for the run (deleted at
 * the end unless --keep); every consumer group is fresh. All production is done by this
 * (parent) process with kafkajs, the same for every client; every measured party runs in a
 * child process of its own (fork of this file), so clients share no event loop or heap with the
 * producer or with each other's runs.
 *
 * Variants (--variants; default: the three below in every cell, plus kafkajs-nohook, see the end,
 * in the duplicates cell):
 *  - kafkajs: kafkajs 2.2.4 with the settings of connectors/kafka/kafka-source.ts
 *    (maxBytesPerPartition 32 MiB, maxBytes 64 MiB, session 30 s, heartbeat 3 s, autoCommit off,
 *    eachBatch, resolveOffset per message, heartbeat() at least every second and after each
 *    batch). Classic group protocol, eager (kafkajs has no other). Pre-revocation commit: in the
 *    heartbeat() of eachBatch, which throws REBALANCE_IN_PROGRESS before the member rejoins (the
 *    bench awaits a commit there, then rethrows), and on the REBALANCING instrumentation event
 *    (runner.js emits it just before joinAndSync; not awaited by kafkajs).
 *  - platformatic-classic: @platformatic/kafka Consumer, classic protocol (its roundrobin
 *    assigner, eager), session 30 s, heartbeat 3 s, same byte limits, autocommit off, one
 *    MessagesStream in mode "committed" (fallback earliest) read with on("data").
 *    Pre-revocation commit: on "consumer:group:rebalance" (emitted when a heartbeat or commit
 *    answers REBALANCE_IN_PROGRESS, before it sends JoinGroup; not awaited).
 *  - platformatic-consumer: the same with groupProtocol "consumer" (KIP-848: the broker assigns,
 *    incrementally; heartbeat interval and session timeout are the broker's,
 *    group.consumer.heartbeat.interval.ms 5 s / session 45 s on our Kafka 4.1.1). It offers no
 *    revocation callback (it pauses its streams and commits only autocommit's offsets), so this
 *    variant commits on the timer only.
 * Every variant "processes" a message only while its partition is in the member's latest known
 * assignment (kafkajs: GROUP_JOIN payload, plus isStale(); platformatic: consumer.assignments);
 * others are counted as dropped. Processed offsets (last processed + 1) are committed on a timer
 * and on graceful leave (stop processing, commit, then disconnect/close); a partition that leaves
 * the member's assignment is forgotten, so no member commits for a partition it lost.
 *
 * Cells (--cells, default all):
 *  1. consume: N (--n, 200,000) ~1 KiB JSON messages produced beforehand; one consumer in a fresh
 *     group from the beginning until all N distinct (partition, offset) are seen, committing
 *     every 1 s. msg/s = N / (N-th distinct message - first message); also the wall time from the
 *     child's first call (connect, join, first fetch), the child's CPU time and peak RSS.
 *  2. rebalance: a fresh topic produced live at --rate (2,000/s) while consumer A reads it
 *     (commits every 1 s). After A has read for 3 s, B joins the same group: ms from B's start
 *     until the assignments are split (A's and B's latest disjoint, both non-empty, together all
 *     6), until B's first message, and A's longest gap between two received messages from B's
 *     start to A's first message after the split (A's longest gap in the 3 s before is the
 *     baseline). 3 s later B leaves gracefully: ms until A owns all 6 again, until A's first
 *     message from a partition B had, and A's longest gap meanwhile.
 *  3. duplicates: a fresh topic; 3 members join; once they are assigned, --dup-n (60,000)
 *     messages are produced at --dup-rate (2,000/s, so 30 s) and 10 membership changes are made
 *     at fixed points, 2 s after production starts and then every 3 s: join X1, leave M1, join
 *     X2, leave M2, join X3, leave M3, join X4, leave X1, join X5, leave X2 (group size 3-4;
 *     leaves are graceful). Commits every 500 ms. Once everything produced has been delivered
 *     (or 60 s after the last change) the remaining members leave. Counted over the whole group:
 *     extra deliveries (deliveries - distinct offsets), split into re-delivered to the member
 *     that had it already vs to another member, distinct offsets delivered more than once,
 *     offsets never delivered (must be 0), and the group's committed offsets at the end vs the
 *     end offsets.
 *
 * Also kafkajs-nohook: kafkajs with timer commits only (no pre-revocation commit, like the Source
 * today); by default only in the duplicates cell, where it is the only difference.
 *
 * The bench prints Markdown tables and exits by itself: every wait has a timeout, every child is
 * killed after its limit. --repeat R runs every cell R times. --json FILE also writes the raw
 * results. BENCH_KC_DEBUG=1 prints assignment logs, gaps, failed commits and final offsets.
 */
import { type ChildProcess, fork, spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import os from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GroupProtocols, type Message, Consumer as PltConsumer } from "@platformatic/kafka";
import type { Admin, EachBatchPayload, Consumer as KjsConsumer, Producer } from "kafkajs";
import { createKafka, parseBrokers } from "../connectors/kafka/kafka-client.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 && k + 1 < args.length ? args[k + 1] : fallback;
};
const has = (name: string): boolean => args.includes(name);
const self = fileURLToPath(import.meta.url);
const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));

const PARTITIONS = 6;
const MB = 1024 * 1024;
const VARIANTS = ["kafkajs", "kafkajs-nohook", "platformatic-classic", "platformatic-consumer"] as const;
/** kafkajs-nohook differs from kafkajs only in the duplicates cell, so only that cell runs it by default. */
const MAIN_VARIANTS: readonly Variant[] = ["kafkajs", "platformatic-classic", "platformatic-consumer"];
type Variant = (typeof VARIANTS)[number];
const CELLS = ["consume", "rebalance", "duplicates"] as const;
type Cell = (typeof CELLS)[number];

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with the promise's value, or rejects after ms with a message naming what timed out. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Polls until predicate() is true; false once timeoutMs has passed. */
async function waitUntil(predicate: () => boolean, timeoutMs: number, intervalMs = 10): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (predicate()) return true;
    await sleep(intervalMs);
  }
  return predicate();
}

// ---------------------------------------------------------------------------------------------
// Members: one consumer of one variant, with the same processing and commit logic for all.

interface MemberContext {
  variant: Variant;
  brokers: string[];
  topic: string;
  groupId: string;
  commitMs: number;
  /** Called for every processed message. */
  onMessage(member: number, partition: number, offset: number, t: number): void;
  /** Called whenever the member's assignment changes. */
  onAssignment(member: number, partitions: number[], t: number): void;
  onError(member: number, err: unknown): void;
}

interface MemberStats {
  /** Group joins completed (kafkajs GROUP_JOIN; platformatic consumer:group:join, which the KIP-848 mode emits once). */
  joins: number;
  commits: number;
  commitFailures: number;
  hookCommits: number;
  dropped: number;
}

interface Member {
  readonly id: number;
  readonly name: string;
  start(): Promise<void>;
  /** Graceful leave: stop processing, commit what was processed, leave the group. */
  leave(): Promise<{ commitMs: number; closeMs: number }>;
  stats: MemberStats;
  /** Processed and committed offsets, for BENCH_KC_DEBUG. */
  describe(): string;
}

type CommitFn = (list: [partition: number, offset: number][]) => Promise<void>;

/** Processed and committed offsets of one member, and its commit timer. */
class Progress {
  readonly processed = new Map<number, number>();
  readonly committed = new Map<number, number>();
  readonly stats: MemberStats = { joins: 0, commits: 0, commitFailures: 0, hookCommits: 0, dropped: 0 };
  private timer: NodeJS.Timeout | undefined;
  /** Set once the member has made its leave commit: later commits are not made or counted. */
  private stopped = false;
  constructor(
    private readonly commitFn: CommitFn,
    private readonly onError: (err: unknown) => void,
  ) {}

  startTimer(ms: number): void {
    this.timer = setInterval(() => void this.commit("timer"), ms);
  }
  describe(): string {
    const show = (m: Map<number, number>) => [...m].map(([p, o]) => `${p}:${o}`).join(" ");
    return `processed ${show(this.processed)} | committed ${show(this.committed)}`;
  }
  stopTimer(): void {
    clearInterval(this.timer);
  }
  /** Forgets the partitions that are no longer assigned. */
  keepOnly(assigned: ReadonlySet<number>): void {
    for (const p of [...this.processed.keys()]) if (!assigned.has(p)) this.processed.delete(p);
    for (const p of [...this.committed.keys()]) if (!assigned.has(p)) this.committed.delete(p);
  }
  async commit(kind: "timer" | "hook" | "leave"): Promise<void> {
    if (this.stopped) return;
    if (kind === "leave") this.stopTimer();
    const list: [number, number][] = [];
    for (const [p, o] of this.processed) if (this.committed.get(p) !== o) list.push([p, o]);
    if (list.length === 0) return;
    try {
      await withTimeout(this.commitFn(list), 15_000, "commit");
      for (const [p, o] of list) this.committed.set(p, Math.max(o, this.committed.get(p) ?? 0));
      this.stats.commits++;
      if (kind === "hook") this.stats.hookCommits++;
    } catch (err) {
      if (this.stopped && kind !== "leave") return;
      this.stats.commitFailures++;
      if (process.env.BENCH_KC_DEBUG)
        process.stderr.write(`debug commit ${kind} failed at ${Date.now() % 100_000}: ${debugError(err)}\n`);
      if (kind === "leave") this.onError(err);
    } finally {
      if (kind === "leave") this.stopped = true;
    }
  }
}

function debugError(err: unknown): string {
  const e = err as { message?: string; type?: string; errors?: unknown[]; cause?: unknown };
  const inner = Array.isArray(e?.errors) ? ` [${e.errors.map(debugError).join("; ")}]` : "";
  return `${e?.type ?? ""} ${e?.message ?? String(err)}${inner}`;
}

function kafkajsMember(ctx: MemberContext, id: number, name: string, hook: boolean): Member {
  const kafka = createKafka({ brokers: ctx.brokers, clientId: `bench-kc-${name}` });
  const consumer: KjsConsumer = kafka.consumer({
    groupId: ctx.groupId,
    maxBytesPerPartition: 32 * MB,
    maxBytes: 64 * MB,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
  });
  const progress = new Progress(
    (list) =>
      consumer.commitOffsets(
        list.map(([partition, offset]) => ({ topic: ctx.topic, partition, offset: String(offset) })),
      ),
    (err) => ctx.onError(id, err),
  );
  let assigned = new Set<number>();
  let leaving = false;
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    progress.stats.joins++;
    assigned = new Set<number>(e.payload.memberAssignment[ctx.topic] ?? []);
    progress.keepOnly(assigned);
    ctx.onAssignment(
      id,
      [...assigned].sort((a, b) => a - b),
      Date.now(),
    );
  });
  // Emitted by runner.js just before it rejoins (after a fetch-loop error that isRebalancing).
  consumer.on(consumer.events.REBALANCING, () => {
    if (hook && !leaving) void progress.commit("hook");
  });
  const isRebalancing = (e: unknown): boolean => {
    const type = (e as { type?: string } | null)?.type;
    return type === "REBALANCE_IN_PROGRESS" || type === "ILLEGAL_GENERATION";
  };
  /** heartbeat() throws REBALANCE_IN_PROGRESS before kafkajs rejoins: commit first. */
  const beat = async (heartbeat: () => Promise<void>): Promise<void> => {
    try {
      await heartbeat();
    } catch (e) {
      if (hook && isRebalancing(e) && !leaving) await progress.commit("hook");
      throw e;
    }
  };
  return {
    id,
    name,
    stats: progress.stats,
    describe: () => progress.describe(),
    async start() {
      await consumer.connect();
      await consumer.subscribe({ topic: ctx.topic, fromBeginning: true });
      progress.startTimer(ctx.commitMs);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
          const p = batch.partition;
          let lastBeat = Date.now();
          for (const m of batch.messages) {
            if (leaving || !isRunning() || isStale()) break;
            if (!assigned.has(p)) {
              progress.stats.dropped++;
              continue;
            }
            const offset = Number(m.offset);
            ctx.onMessage(id, p, offset, Date.now());
            progress.processed.set(p, offset + 1);
            resolveOffset(m.offset);
            if (Date.now() - lastBeat > 1_000) {
              await beat(heartbeat);
              lastBeat = Date.now();
            }
          }
          if (!leaving) await beat(heartbeat);
        },
      });
    },
    async leave() {
      leaving = true;
      progress.stopTimer();
      const t0 = Date.now();
      await progress.commit("leave");
      const t1 = Date.now();
      await withTimeout(consumer.disconnect(), 40_000, `${name} disconnect`);
      return { commitMs: t1 - t0, closeMs: Date.now() - t1 };
    },
  };
}

function platformaticMember(ctx: MemberContext, id: number, name: string, kip848: boolean): Member {
  const common = {
    clientId: `bench-kc-${name}`,
    bootstrapBrokers: ctx.brokers,
    groupId: ctx.groupId,
    autocommit: false,
    maxBytes: 64 * MB,
    maxBytesPerPartition: 32 * MB,
  };
  const consumer = kip848
    ? new PltConsumer({ ...common, groupProtocol: GroupProtocols.CONSUMER })
    : new PltConsumer({ ...common, sessionTimeout: 30_000, heartbeatInterval: 3_000 });
  const progress = new Progress(
    (list) =>
      consumer.commit({
        offsets: list.map(([partition, offset]) => ({
          topic: ctx.topic,
          partition,
          offset: BigInt(offset),
          leaderEpoch: -1,
        })),
      }),
    (err) => ctx.onError(id, err),
  );
  let leaving = false;
  let closed = false;
  let stream: Awaited<ReturnType<typeof consumer.consume>> | undefined;
  const current = (): number[] =>
    (consumer.assignments?.find((a) => a.topic === ctx.topic)?.partitions ?? [])
      .slice()
      .sort((a, b) => a - b);
  let last = "";
  let poller: NodeJS.Timeout | undefined;
  const poll = (): void => {
    const now = current();
    const key = now.join(",");
    if (key !== last) {
      last = key;
      progress.keepOnly(new Set(now));
      ctx.onAssignment(id, now, Date.now());
    }
  };
  if (!kip848)
    consumer.on("consumer:group:rebalance", () => {
      if (!leaving) void progress.commit("hook");
    });
  consumer.on("consumer:group:join", () => {
    progress.stats.joins++;
  });
  consumer.on("error", (err: unknown) => {
    if (!closed) ctx.onError(id, err);
  });
  return {
    id,
    name,
    stats: progress.stats,
    describe: () => progress.describe(),
    async start() {
      poller = setInterval(poll, 10);
      const s = await consumer.consume({
        topics: [ctx.topic],
        mode: "committed",
        fallbackMode: "earliest",
        autocommit: false,
      });
      stream = s;
      s.on("error", (err: Error) => {
        if (!closed) ctx.onError(id, err);
      });
      s.on("data", (m: Message<Buffer, Buffer, Buffer, Buffer>) => {
        if (leaving) return;
        const p = m.partition;
        const owned = consumer.assignments?.find((a) => a.topic === ctx.topic)?.partitions;
        if (!owned?.includes(p)) {
          progress.stats.dropped++;
          return;
        }
        const offset = Number(m.offset);
        ctx.onMessage(id, p, offset, Date.now());
        progress.processed.set(p, offset + 1);
      });
      progress.startTimer(ctx.commitMs);
    },
    async leave() {
      leaving = true;
      progress.stopTimer();
      const t0 = Date.now();
      await progress.commit("leave");
      const t1 = Date.now();
      closed = true;
      if (stream) await withTimeout(stream.close(), 20_000, `${name} stream close`).catch(() => {});
      // close(true) also closes the streams; the boolean overload takes a callback.
      const closing = new Promise<void>((ok, fail) => consumer.close(true, (e) => (e ? fail(e) : ok())));
      await withTimeout(closing, 40_000, `${name} close`);
      clearInterval(poller);
      return { commitMs: t1 - t0, closeMs: Date.now() - t1 };
    },
  };
}

function makeMember(ctx: MemberContext, id: number, name: string): Member {
  if (ctx.variant === "kafkajs" || ctx.variant === "kafkajs-nohook")
    return kafkajsMember(ctx, id, name, ctx.variant === "kafkajs");
  return platformaticMember(ctx, id, name, ctx.variant === "platformatic-consumer");
}

// ---------------------------------------------------------------------------------------------
// Deliveries over the whole group

class Tally {
  private readonly counts: number[][] = Array.from({ length: PARTITIONS }, () => []);
  private readonly firstBy: number[][] = Array.from({ length: PARTITIONS }, () => []);
  deliveries = 0;
  distinct = 0;
  againSameMember = 0;
  againOtherMember = 0;
  add(member: number, p: number, o: number): void {
    this.deliveries++;
    const c = this.counts[p][o] ?? 0;
    this.counts[p][o] = c + 1;
    if (c === 0) {
      this.distinct++;
      this.firstBy[p][o] = member;
    } else if (this.firstBy[p][o] === member) this.againSameMember++;
    else this.againOtherMember++;
  }
  /** Distinct offsets delivered more than once, and offsets below end never delivered. */
  check(end: number[]): { multi: number; missing: number } {
    let multi = 0;
    let missing = 0;
    for (let p = 0; p < PARTITIONS; p++) {
      for (let o = 0; o < end[p]; o++) {
        const c = this.counts[p][o] ?? 0;
        if (c === 0) missing++;
        else if (c > 1) multi++;
      }
    }
    return { multi, missing };
  }
}

// ---------------------------------------------------------------------------------------------
// Children

interface ChildSpec {
  cell: Cell;
  variant: Variant;
  brokers: string[];
  topic: string;
  groupId: string;
  /** consume: the end offsets of the filled topic. */
  end?: number[];
}

interface ConsumeResult {
  n: number;
  startToFirstMs: number;
  firstToLastMs: number;
  rate: number;
  wallMs: number;
  cpuMs: number;
  peakRssMb: number;
  extra: number;
  commits: number;
  commitFailures: number;
}

interface RebalanceResult {
  baselineGapMs: number;
  joinSplitMs: number;
  joinBFirstMs: number;
  joinAPauseMs: number;
  joinARedelivered: number;
  leaveAllMs: number;
  leaveAFirstMs: number;
  leaveAPauseMs: number;
  leaveBCloseMs: number;
  aJoins: number;
  redeliveredSame: number;
  redeliveredOther: number;
  dropped: number;
  commitFailures: number;
  errors: string[];
}

interface DuplicatesResult {
  produced: number;
  deliveries: number;
  distinct: number;
  extra: number;
  againSameMember: number;
  againOtherMember: number;
  multi: number;
  missing: number;
  dropped: number;
  commits: number;
  hookCommits: number;
  commitFailures: number;
  joins: number;
  events: { at: number; what: string; tookMs: number }[];
  assignmentChanges: number;
  settledMs: number;
  /** Set by the parent: sum over partitions of end offset - the group's committed offset. */
  committedBehind?: number;
  errors: string[];
}

type ChildResult = ConsumeResult | RebalanceResult | DuplicatesResult;

/** Messages from the parent (duplicates cell). */
const parentMessages: { type: string; t?: number; end?: number[] }[] = [];
process.on("message", (m: { type: string; t?: number; end?: number[] }) => parentMessages.push(m));
async function fromParent(type: string, timeoutMs: number): Promise<{ t?: number; end?: number[] }> {
  const ok = await waitUntil(() => parentMessages.some((m) => m.type === type), timeoutMs, 20);
  if (!ok) throw new Error(`no "${type}" from the parent within ${timeoutMs} ms`);
  return parentMessages.find((m) => m.type === type) as { t?: number; end?: number[] };
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function childConsume(spec: ChildSpec): Promise<ConsumeResult> {
  const end = spec.end as number[];
  const n = end.reduce((a, b) => a + b, 0);
  const seen = end.map((e) => new Uint8Array(e));
  let distinct = 0;
  let deliveries = 0;
  let first = 0;
  let last = 0;
  const errors: string[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const member = makeMember(
    {
      variant: spec.variant,
      brokers: spec.brokers,
      topic: spec.topic,
      groupId: spec.groupId,
      commitMs: 1_000,
      onMessage(_m, p, o, t) {
        deliveries++;
        if (first === 0) first = t;
        if (seen[p][o] === 0) {
          seen[p][o] = 1;
          distinct++;
          if (distinct === n) last = t;
        }
      },
      onAssignment() {},
      onError(_m, err) {
        errors.push(errorText(err));
      },
    },
    0,
    "consume",
  );
  await withTimeout(member.start(), 60_000, "consumer start");
  const done = await waitUntil(() => distinct === n || errors.length > 0, 120_000, 5);
  const cpu = process.cpuUsage(cpu0);
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  await member.leave().catch(() => {});
  if (!done || distinct !== n)
    throw new Error(`read ${distinct} of ${n} distinct messages (${errors.slice(0, 3).join("; ")})`);
  return {
    n,
    startToFirstMs: first - t0,
    firstToLastMs: last - first,
    rate: n / ((last - first) / 1000),
    wallMs: last - t0,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssMb,
    extra: deliveries - distinct,
    commits: member.stats.commits,
    commitFailures: member.stats.commitFailures,
  };
}

async function childRebalance(spec: ChildSpec): Promise<RebalanceResult> {
  const tally = new Tally();
  const times: number[][] = [[], []];
  const parts: number[][] = [[], []];
  const assignLog: { m: number; t: number; partitions: number[] }[] = [];
  const assignment: number[][] = [[], []];
  const errors: string[] = [];
  const ctx: MemberContext = {
    variant: spec.variant,
    brokers: spec.brokers,
    topic: spec.topic,
    groupId: spec.groupId,
    commitMs: 1_000,
    onMessage(m, p, o, t) {
      tally.add(m, p, o);
      times[m].push(t);
      parts[m].push(p);
    },
    onAssignment(m, partitions, t) {
      assignment[m] = partitions;
      assignLog.push({ m, t, partitions });
    },
    onError(m, err) {
      errors.push(`${m === 0 ? "A" : "B"}: ${errorText(err)}`);
    },
  };
  const a = makeMember(ctx, 0, "A");
  const b = makeMember(ctx, 1, "B");
  await withTimeout(a.start(), 60_000, "A start");
  if (!(await waitUntil(() => assignment[0].length === PARTITIONS && times[0].length > 0, 60_000)))
    throw new Error("A did not get all partitions and a message within 60 s");
  await sleep(3_000);

  // B joins.
  const tJoin = Date.now();
  const redeliveredBefore = tally.againSameMember + tally.againOtherMember;
  const split = (): boolean => {
    const [pa, pb] = assignment;
    return (
      pa.length > 0 &&
      pb.length > 0 &&
      pa.length + pb.length === PARTITIONS &&
      pa.every((p) => !pb.includes(p))
    );
  };
  let tSplit = 0;
  await withTimeout(b.start(), 60_000, "B start");
  const joined = await waitUntil(
    () => {
      if (tSplit === 0 && split()) tSplit = Date.now();
      return tSplit > 0 && times[1].length > 0 && times[0].some((t) => t > tSplit);
    },
    60_000,
    2,
  );
  if (!joined) throw new Error(`join: no split / no first message within 60 s (${errors.join("; ")})`);
  // The exact split time from the assignment log (the poll above is 2 ms coarse).
  tSplit = splitTime(assignLog, tJoin) ?? tSplit;
  const bFirst = times[1][0];
  const aResumed = times[0].find((t) => t > tSplit) as number;
  await sleep(3_000);
  const joinARedelivered = tally.againSameMember + tally.againOtherMember - redeliveredBefore;

  // B leaves.
  const bParts = [...assignment[1]];
  const tLeave = Date.now();
  const { closeMs } = await b.leave();
  let tAll = 0;
  const back = await waitUntil(
    () => {
      if (tAll === 0 && assignment[0].length === PARTITIONS) tAll = Date.now();
      return tAll > 0 && firstFrom(times[0], parts[0], bParts, tLeave) !== undefined;
    },
    60_000,
    2,
  );
  if (!back) throw new Error(`leave: A did not get B's partitions back within 60 s (${errors.join("; ")})`);
  tAll = assignLog.find((e) => e.m === 0 && e.t >= tLeave && e.partitions.length === PARTITIONS)?.t ?? tAll;
  const aFirstFromB = firstFrom(times[0], parts[0], bParts, tLeave) as number;
  await sleep(1_000);
  await a.leave().catch((err) => errors.push(`A leave: ${errorText(err)}`));
  if (process.env.BENCH_KC_DEBUG) {
    const rel = (t: number) => t - tJoin;
    process.stderr.write(
      `debug ${spec.variant}: split ${rel(tSplit)} leave ${rel(tLeave)}\n assignments: ${assignLog.map((e) => `${"AB"[e.m]}@${rel(e.t)}=[${e.partitions}]`).join(" ")}\n`,
    );
    for (const m of [0, 1]) {
      const gaps: string[] = [];
      for (let i = 1; i < times[m].length; i++)
        if (times[m][i] - times[m][i - 1] > 300)
          gaps.push(`${rel(times[m][i - 1])}+${times[m][i] - times[m][i - 1]}`);
      process.stderr.write(
        ` ${"AB"[m]}: ${times[m].length} msgs, first ${rel(times[m][0])} last ${rel(times[m][times[m].length - 1])}, gaps>300ms: ${gaps.join(" ")}\n`,
      );
    }
  }
  return {
    baselineGapMs: longestGap(times[0], tJoin - 3_000, tJoin),
    joinSplitMs: tSplit - tJoin,
    joinBFirstMs: bFirst - tJoin,
    joinAPauseMs: longestGap(times[0], tJoin, aResumed),
    joinARedelivered,
    leaveAllMs: tAll - tLeave,
    leaveAFirstMs: aFirstFromB - tLeave,
    leaveAPauseMs: longestGap(times[0], tLeave, aFirstFromB),
    leaveBCloseMs: closeMs,
    aJoins: a.stats.joins,
    redeliveredSame: tally.againSameMember,
    redeliveredOther: tally.againOtherMember,
    dropped: a.stats.dropped + b.stats.dropped,
    commitFailures: a.stats.commitFailures + b.stats.commitFailures,
    errors: errors.slice(0, 5),
  };
}

/** First time at or after `from` when A's and B's logged assignments were split. */
function splitTime(log: { m: number; t: number; partitions: number[] }[], from: number): number | undefined {
  const cur: number[][] = [[], []];
  for (const e of log) {
    cur[e.m] = e.partitions;
    if (e.t < from) continue;
    const [pa, pb] = cur;
    if (
      pa.length > 0 &&
      pb.length > 0 &&
      pa.length + pb.length === PARTITIONS &&
      pa.every((p) => !pb.includes(p))
    )
      return e.t;
  }
  return undefined;
}

function firstFrom(times: number[], parts: number[], from: number[], after: number): number | undefined {
  for (let i = 0; i < times.length; i++) if (times[i] > after && from.includes(parts[i])) return times[i];
  return undefined;
}

/** Longest gap between consecutive receive times within [from, to], counting from the last one before `from`. */
function longestGap(times: number[], from: number, to: number): number {
  let prev: number | undefined;
  let gap = 0;
  for (const t of times) {
    if (t <= from) {
      prev = t;
      continue;
    }
    if (t > to) break;
    if (prev !== undefined) gap = Math.max(gap, t - prev);
    prev = t;
  }
  if (prev !== undefined && prev < to) gap = Math.max(gap, to - prev);
  return gap;
}

const DUP_SCHEDULE: [kind: "join" | "leave", name: string][] = [
  ["join", "X1"],
  ["leave", "M1"],
  ["join", "X2"],
  ["leave", "M2"],
  ["join", "X3"],
  ["leave", "M3"],
  ["join", "X4"],
  ["leave", "X1"],
  ["join", "X5"],
  ["leave", "X2"],
];

async function childDuplicates(spec: ChildSpec): Promise<DuplicatesResult> {
  const tally = new Tally();
  const errors: string[] = [];
  const assignment = new Map<number, number[]>();
  let assignmentChanges = 0;
  const ctx: MemberContext = {
    variant: spec.variant,
    brokers: spec.brokers,
    topic: spec.topic,
    groupId: spec.groupId,
    commitMs: 500,
    onMessage(m, p, o) {
      tally.add(m, p, o);
    },
    onAssignment(m, partitions) {
      assignment.set(m, partitions);
      assignmentChanges++;
    },
    onError(m, err) {
      errors.push(`${m}: ${errorText(err)}`);
    },
  };
  const members = new Map<string, Member>();
  const all: Member[] = [];
  let nextId = 0;
  const add = (name: string): Member => {
    const m = makeMember(ctx, nextId++, name);
    members.set(name, m);
    all.push(m);
    return m;
  };
  const stable = (names: string[]): boolean => {
    const ps = names.map((n) => assignment.get((members.get(n) as Member).id) ?? []);
    const union = new Set(ps.flat());
    return ps.every((p) => p.length > 0) && union.size === PARTITIONS && ps.flat().length === PARTITIONS;
  };
  await withTimeout(Promise.all(["M1", "M2", "M3"].map((n) => add(n).start())), 60_000, "start of M1..M3");
  if (!(await waitUntil(() => stable(["M1", "M2", "M3"]), 60_000)))
    throw new Error("M1..M3 were not all assigned within 60 s");
  process.send?.({ type: "ready" });
  const { t: tProduce = Date.now() } = await fromParent("producing", 30_000);
  const events: { at: number; what: string; tookMs: number }[] = [];
  const pending: Promise<void>[] = [];
  for (let k = 0; k < DUP_SCHEDULE.length; k++) {
    const [kind, name] = DUP_SCHEDULE[k];
    const at = 2_000 + 3_000 * k;
    const wait = tProduce + at - Date.now();
    if (wait > 0) await sleep(wait);
    const t = Date.now();
    const ev = { at, what: `${kind} ${name}`, tookMs: -1 };
    if (process.env.BENCH_KC_DEBUG) process.stderr.write(`debug event ${ev.what} at ${t % 100_000}\n`);
    events.push(ev);
    const run =
      kind === "join"
        ? add(name).start()
        : (members.get(name) as Member).leave().then(() => {
            assignment.delete((members.get(name) as Member).id);
            members.delete(name);
          });
    pending.push(
      withTimeout(run, 60_000, ev.what)
        .then(() => {
          ev.tookMs = Date.now() - t;
        })
        .catch((err) => {
          errors.push(`${ev.what}: ${errorText(err)}`);
        }),
    );
  }
  const { end = [] } = await fromParent("produced", 120_000);
  const produced = end.reduce((a, b) => a + b, 0);
  await Promise.all(pending);
  const tLast = Date.now();
  await waitUntil(() => tally.distinct >= produced && stable([...members.keys()]), 60_000, 20);
  const settledMs = Date.now() - tLast;
  await sleep(1_000);
  await Promise.all(
    [...members.values()].map((m) => m.leave().catch((err) => errors.push(`final leave: ${errorText(err)}`))),
  );
  const { multi, missing } = tally.check(end);
  if (process.env.BENCH_KC_DEBUG) {
    process.stderr.write(`debug ${spec.variant}: end ${end.join(",")}\n`);
    for (const m of all) process.stderr.write(` ${m.name}: ${m.describe()} ${JSON.stringify(m.stats)}\n`);
  }
  const sum = (f: (s: MemberStats) => number) => all.reduce((a, m) => a + f(m.stats), 0);
  return {
    produced,
    deliveries: tally.deliveries,
    distinct: tally.distinct,
    extra: tally.deliveries - tally.distinct,
    againSameMember: tally.againSameMember,
    againOtherMember: tally.againOtherMember,
    multi,
    missing,
    dropped: sum((s) => s.dropped),
    commits: sum((s) => s.commits),
    hookCommits: sum((s) => s.hookCommits),
    commitFailures: sum((s) => s.commitFailures),
    joins: sum((s) => s.joins),
    events,
    assignmentChanges,
    settledMs,
    errors: errors.slice(0, 5),
  };
}

async function runChild(spec: ChildSpec): Promise<ChildResult> {
  if (spec.cell === "consume") return childConsume(spec);
  if (spec.cell === "rebalance") return childRebalance(spec);
  return childDuplicates(spec);
}

// ---------------------------------------------------------------------------------------------
// Parent: broker, topics, production

function brokerList(): string[] {
  const given = flag("--brokers", process.env.MMSSR_KAFKA_BROKERS ?? "");
  let brokers: string[];
  if (given) brokers = parseBrokers(given);
  else {
    const r = spawnSync("bash", [join(repoRoot, "connectors", "kafka", "local-broker.sh"), "start"], {
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`local-broker.sh start failed:\n${r.stdout}\n${r.stderr}`);
    brokers = parseBrokers(r.stdout.trim().split("\n").pop() ?? "");
  }
  const bad = brokers.filter((b) => !b.startsWith("127.0.0.1:"));
  if (brokers.length === 0 || bad.length > 0)
    throw new Error(`only 127.0.0.1 brokers are used by this bench, got ${brokers.join(",")}`);
  return brokers;
}

const FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit ".repeat(20);
/** ~1 KiB of JSON. */
function value(i: number): string {
  const head = `{"id":"kc-${i}","seq":${i},"sent":${Date.now()},"source":"bench","text":"`;
  return `${head}${FILLER.slice(0, 1024 - head.length - 2)}"}`;
}

async function createTopic(admin: Admin, topic: string): Promise<void> {
  await admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
  });
}

async function endOffsets(admin: Admin, topic: string): Promise<number[]> {
  const offsets = await admin.fetchTopicOffsets(topic);
  const end = new Array<number>(PARTITIONS).fill(0);
  for (const o of offsets) end[o.partition] = Number(o.high);
  return end;
}

/** n messages as fast as it goes: partition i % 6, batches of 1,000, 4 sends in flight. */
async function fill(producer: Producer, topic: string, n: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      const from = next;
      const to = Math.min(n, from + 1_000);
      next = to;
      const messages = [];
      for (let i = from; i < to; i++) messages.push({ value: value(i), partition: i % PARTITIONS });
      await producer.send({ topic, acks: -1, messages });
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  return (performance.now() - t0) / 1000;
}

/** A steady rate: every 50 ms what is due, up to maxN messages, until stop() or the cap. */
async function produceSteady(
  producer: Producer,
  topic: string,
  rate: number,
  maxN: number,
  stop: () => boolean,
): Promise<number> {
  const t0 = Date.now();
  let sent = 0;
  while (sent < maxN && !stop()) {
    const due = Math.min(maxN, Math.floor((rate * (Date.now() - t0)) / 1000));
    if (due > sent) {
      const messages = [];
      for (let i = sent; i < due; i++) messages.push({ value: value(i), partition: i % PARTITIONS });
      await producer.send({ topic, acks: -1, messages });
      sent = due;
    }
    await sleep(50);
  }
  return sent;
}

interface Child {
  child: ChildProcess;
  result: Promise<ChildResult>;
  exited: () => boolean;
  send(m: object): void;
}

function startChild(spec: ChildSpec, limitMs: number, onMessage?: (m: { type: string }) => void): Child {
  const child = fork(self, ["--child", JSON.stringify(spec)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let exited = false;
  const result = new Promise<ChildResult>((resolveResult, reject) => {
    let got: ChildResult | undefined;
    let failed: string | undefined;
    const killer = setTimeout(() => {
      failed = `killed after ${limitMs} ms`;
      child.kill("SIGKILL");
    }, limitMs);
    child.on("message", (m: { type: string; result?: ChildResult; error?: string }) => {
      if (m.type === "result") got = m.result;
      else if (m.type === "error") failed = m.error;
      else onMessage?.(m);
    });
    child.on("exit", (code) => {
      exited = true;
      clearTimeout(killer);
      if (got) resolveResult(got);
      else reject(new Error(`${spec.cell}/${spec.variant}: ${failed ?? `exited with code ${code}`}`));
    });
  });
  return {
    child,
    result,
    exited: () => exited,
    send(m) {
      if (!exited) child.send(m);
    },
  };
}

interface Row<R> {
  variant: Variant;
  run: number;
  result?: R;
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const fmt = (x: number | undefined, digits = 0): string =>
  x !== undefined && Number.isFinite(x)
    ? x.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";

function failedRow(r: Row<unknown>, columns: number): string {
  return `| ${r.variant} | ${r.run} | failed: ${(r.error ?? "").replace(/\|/g, "/").slice(0, 200)} ${"| ".repeat(columns - 3)}|`;
}

function consumeTable(rows: Row<ConsumeResult>[], n: number): string[] {
  const out = [
    `Consume rate: ${fmt(n)} messages of ~1 KiB JSON in 6 partitions, produced beforehand; one consumer, fresh group, from the beginning, commits every 1 s (msg/s = N / (N-th distinct message - first message)):`,
    "",
    "| variant | run | **msg/s** | first -> last s | start -> first message s | wall s | child CPU s | CPU µs/msg | peak RSS MB | extra deliveries | commits (failed) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    const c = r.result;
    if (!c) out.push(failedRow(r, 11));
    else
      out.push(
        `| ${r.variant} | ${r.run} | **${fmt(c.rate)}** | ${fmt(c.firstToLastMs / 1000, 2)} | ${fmt(c.startToFirstMs / 1000, 2)} | ${fmt(c.wallMs / 1000, 2)} | ${fmt(c.cpuMs / 1000, 2)} | ${fmt((c.cpuMs * 1000) / c.n, 1)} | ${fmt(c.peakRssMb)} | ${fmt(c.extra)} | ${c.commits} (${c.commitFailures}) |`,
      );
  }
  return out;
}

function rebalanceTable(rows: Row<RebalanceResult>[], rate: number): string[] {
  const out = [
    `Time to rebalance (ms), ${fmt(rate)} msg/s produced live into 6 partitions; A alone, then B joins, then B leaves gracefully; commits every 1 s:`,
    "",
    "| variant | run | A's longest gap before | **join: split** | **join: B's first msg** | **join: A's pause** | re-delivered at join | **leave: A owns all** | **leave: A's first msg from B's partitions** | **leave: A's pause** | B close ms | re-delivered: same / other member | dropped | commit failures | A's group joins |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    const c = r.result;
    if (!c) out.push(failedRow(r, 15));
    else
      out.push(
        `| ${r.variant} | ${r.run} | ${fmt(c.baselineGapMs)} | **${fmt(c.joinSplitMs)}** | **${fmt(c.joinBFirstMs)}** | **${fmt(c.joinAPauseMs)}** | ${fmt(c.joinARedelivered)} | **${fmt(c.leaveAllMs)}** | **${fmt(c.leaveAFirstMs)}** | **${fmt(c.leaveAPauseMs)}** | ${fmt(c.leaveBCloseMs)} | ${fmt(c.redeliveredSame)} / ${fmt(c.redeliveredOther)} | ${fmt(c.dropped)} | ${fmt(c.commitFailures)} | ${fmt(c.aJoins)} |`,
      );
  }
  return out;
}

const HOOKS: Record<Variant, string> = {
  kafkajs: "eachBatch heartbeat() error + REBALANCING event",
  "kafkajs-nohook": "none (timer only, like the Source today)",
  "platformatic-classic": "consumer:group:rebalance event",
  "platformatic-consumer": "none (KIP-848, no revocation callback)",
};

function duplicatesTable(rows: Row<DuplicatesResult>[], n: number, rate: number): string[] {
  const out = [
    `Duplicates after 10 forced rebalances: 3 members, 6 partitions, ${fmt(n)} messages at ${fmt(rate)}/s, commits every 500 ms and in the pre-revocation hook:`,
    "",
    "| variant | run | pre-revocation commit | delivered | distinct | **extra deliveries** | same member / other member | **offsets delivered > once** | **never delivered** | dropped (not owned) | group joins | assignment changes seen | commits (in hook) | commit failures | committed at end: behind | settle s |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    const c = r.result;
    if (!c) out.push(failedRow(r, 16));
    else
      out.push(
        `| ${r.variant} | ${r.run} | ${HOOKS[r.variant]} | ${fmt(c.deliveries)} | ${fmt(c.distinct)} | **${fmt(c.extra)}** | ${fmt(c.againSameMember)} / ${fmt(c.againOtherMember)} | **${fmt(c.multi)}** | **${fmt(c.missing)}** | ${fmt(c.dropped)} | ${fmt(c.joins)} | ${fmt(c.assignmentChanges)} | ${fmt(c.commits)} (${fmt(c.hookCommits)}) | ${fmt(c.commitFailures)} | ${fmt(c.committedBehind)} | ${fmt(c.settledMs / 1000, 1)} |`,
      );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const cells = flag("--cells", CELLS.join(",")).split(",") as Cell[];
  const given = flag("--variants", "");
  const variants = (given ? given.split(",") : [...VARIANTS]) as Variant[];
  const variantsFor = (cell: Cell): Variant[] =>
    given || cell === "duplicates" ? variants : variants.filter((v) => MAIN_VARIANTS.includes(v));
  for (const c of cells) if (!CELLS.includes(c)) throw new Error(`--cells: unknown cell ${c}`);
  for (const v of variants) if (!VARIANTS.includes(v)) throw new Error(`--variants: unknown variant ${v}`);
  if (new Set(variants).size !== variants.length) throw new Error("--variants: a variant is named twice");
  const repeat = Number(flag("--repeat", "1"));
  const n = Number(flag("--n", "200000"));
  const rate = Number(flag("--rate", "2000"));
  const dupN = Number(flag("--dup-n", "60000"));
  const dupRate = Number(flag("--dup-rate", "2000"));
  const keep = has("--keep");
  const jsonOut = flag("--json", "");
  const brokers = brokerList();
  const runId = Date.now().toString(36);
  const started = new Date();
  const load0 = os.loadavg();
  const kafka = createKafka({ brokers, clientId: "bench-kc" });
  const admin = kafka.admin();
  await admin.connect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const topics: string[] = [];
  const consumeRows: Row<ConsumeResult>[] = [];
  const rebalanceRows: Row<RebalanceResult>[] = [];
  const dupRows: Row<DuplicatesResult>[] = [];
  const log = (s: string) => process.stderr.write(`kafka-clients: ${s}\n`);
  let fillSecs = Number.NaN;
  try {
    if (cells.includes("consume")) {
      const topic = `bench-kc-${runId}-consume`;
      await createTopic(admin, topic);
      topics.push(topic);
      fillSecs = await fill(producer, topic, n);
      const end = await endOffsets(admin, topic);
      log(`filled ${topic}: ${n} messages in ${fillSecs.toFixed(1)} s`);
      for (let run = 1; run <= repeat; run++)
        for (const variant of variantsFor("consume")) {
          const groupId = `${topic}-${variant}-${run}`;
          const c = startChild({ cell: "consume", variant, brokers, topic, groupId, end }, 150_000);
          const row: Row<ConsumeResult> = { variant, run };
          try {
            row.result = (await c.result) as ConsumeResult;
          } catch (err) {
            row.error = errorText(err);
          }
          consumeRows.push(row);
          log(
            `consume ${variant} #${run}: ${row.result ? `${Math.round(row.result.rate)} msg/s` : row.error}`,
          );
        }
    }
    if (cells.includes("rebalance"))
      for (let run = 1; run <= repeat; run++)
        for (const variant of variantsFor("rebalance")) {
          const topic = `bench-kc-${runId}-rebalance-${variant}-${run}`;
          await createTopic(admin, topic);
          topics.push(topic);
          const c = startChild(
            { cell: "rebalance", variant, brokers, topic, groupId: `${topic}-g` },
            150_000,
          );
          const producing = produceSteady(producer, topic, rate, rate * 160, c.exited);
          const row: Row<RebalanceResult> = { variant, run };
          try {
            row.result = (await c.result) as RebalanceResult;
          } catch (err) {
            row.error = errorText(err);
          }
          await producing;
          rebalanceRows.push(row);
          log(
            `rebalance ${variant} #${run}: ${row.result ? `join ${row.result.joinBFirstMs} ms, leave ${row.result.leaveAFirstMs} ms` : row.error}`,
          );
        }
    if (cells.includes("duplicates"))
      for (let run = 1; run <= repeat; run++)
        for (const variant of variantsFor("duplicates")) {
          const topic = `bench-kc-${runId}-dup-${variant}-${run}`;
          await createTopic(admin, topic);
          topics.push(topic);
          let ready = false;
          const c = startChild(
            { cell: "duplicates", variant, brokers, topic, groupId: `${topic}-g` },
            170_000,
            (m) => {
              if (m.type === "ready") ready = true;
            },
          );
          const row: Row<DuplicatesResult> = { variant, run };
          const produce = (async () => {
            if (!(await waitUntil(() => ready || c.exited(), 90_000, 20)) || c.exited()) return;
            c.send({ type: "producing", t: Date.now() });
            await produceSteady(producer, topic, dupRate, dupN, c.exited);
            c.send({ type: "produced", end: await endOffsets(admin, topic) });
          })();
          try {
            row.result = (await c.result) as DuplicatesResult;
            const committed = await admin.fetchOffsets({ groupId: `${topic}-g`, topics: [topic] });
            const end = await endOffsets(admin, topic);
            const behind = committed[0].partitions
              .map((p) => ({ p: p.partition, by: end[p.partition] - Math.max(0, Number(p.offset)) }))
              .filter((b) => b.by !== 0);
            row.result.committedBehind = behind.reduce((a, b) => a + b.by, 0);
            if (behind.length > 0)
              row.result.errors.push(
                `committed offsets at the end differ from the end offsets: ${behind.map((b) => `p${b.p} ${b.by} behind`).join(", ")}`,
              );
          } catch (err) {
            row.error = errorText(err);
          }
          await produce.catch((err) => {
            row.error ??= `producer: ${errorText(err)}`;
          });
          dupRows.push(row);
          log(
            `duplicates ${variant} #${run}: ${row.result ? `extra ${row.result.extra}, missing ${row.result.missing}` : row.error}`,
          );
        }
  } finally {
    if (!keep && topics.length > 0) await admin.deleteTopics({ topics }).catch(() => {});
    await producer.disconnect();
    await admin.disconnect();
  }
  const load1 = os.loadavg();
  const out: string[] = [];
  out.push(
    `Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? "?"}), brokers ${brokers.join(",")}; ${started.toISOString()} -> ${new Date().toISOString()}; load average before ${load0.map((l) => l.toFixed(2)).join(" / ")}, after ${load1.map((l) => l.toFixed(2)).join(" / ")}`,
  );
  out.push("");
  if (consumeRows.length > 0) {
    out.push(...consumeTable(consumeRows, n), "");
    out.push(`(topic filled by kafkajs in ${fmt(fillSecs, 1)} s)`, "");
  }
  if (rebalanceRows.length > 0) {
    out.push(...rebalanceTable(rebalanceRows, rate), "");
    for (const r of rebalanceRows)
      if (r.result && r.result.errors.length > 0)
        out.push(`- rebalance ${r.variant} #${r.run} errors: ${r.result.errors.join("; ")}`);
    out.push("");
  }
  if (dupRows.length > 0) {
    out.push(...duplicatesTable(dupRows, dupN, dupRate), "");
    for (const r of dupRows)
      if (r.result) {
        const ev = r.result.events.map((e) => `${e.what}@${e.at / 1000}s:${e.tookMs}ms`).join(", ");
        out.push(`- duplicates ${r.variant} #${r.run} changes (time to complete): ${ev}`);
        if (r.result.errors.length > 0) out.push(`  errors: ${r.result.errors.join("; ")}`);
      }
    out.push("");
  }
  process.stdout.write(`${out.join("\n")}\n`);
  if (jsonOut)
    await writeFile(
      jsonOut,
      JSON.stringify(
        { started, brokers, n, rate, dupN, dupRate, consumeRows, rebalanceRows, dupRows },
        null,
        2,
      ),
    );
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
  main()
    .then(() => process.exit(0))
    .catch((err: unknown) => {
      process.stderr.write(
        `bench:kafka-clients: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    });
}
