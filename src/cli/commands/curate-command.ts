import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { Registry } from "prom-client";
import { map, mergeMap, type OperatorFunction } from "rxjs";
import { createDeadLetterFile } from "../../../connectors/files/dead-letter-file.js";
import { createFileSource } from "../../../connectors/files/file-source.js";
import type { DeadLetterSink } from "../../../connectors/kafka/dead-letter-topic.js";
import { createDeadLetterTopic } from "../../../connectors/kafka/dead-letter-topic.js";
import {
  createKafka,
  ensureTopics,
  parseBrokers,
  securityFromEnv,
} from "../../../connectors/kafka/kafka-client.js";
import { createKafkaSource, type Source } from "../../../connectors/kafka/kafka-source.js";
import { createSelectedTopic, type SelectedTopic } from "../../../connectors/kafka/selected-topic.js";
import { createCurationSink } from "../../../connectors/sink/curation-sink.js";
import { createImageLoader } from "../../scoring/image-source.js";
import { createOnnxScorer } from "../../scoring/onnx-scorer.js";
import type { SelectOptions } from "../../selection/select-options.js";
import { type CurationStats, runCurationGraph } from "../../stream/curation-graph.js";
import { createCurationMetrics, serveMetrics } from "../../stream/curation-metrics.js";
import { OffsetLedger } from "../../stream/offset-ledger.js";
import { selectContinuous } from "../../stream/operators/select-continuous.js";
import { decideWindow, selectWindow } from "../../stream/operators/select-window.js";
import type { Decision, ScoredRecord } from "../../stream/stream-types.js";
import { packageRoot } from "../../util/package-root.js";
import { parseIntegerFlag, parseNumberFlag, usageError } from "../cli-errors.js";
import { parseSelectFlags } from "./select-command.js";

export interface CurateRun {
  /** a Kafka topic, or a samples file (file source: the demo, batch backfills) */
  source:
    | {
        kind: "kafka";
        brokers: string[];
        topic: string;
        group: string;
        dlqTopic?: string;
        outputTopic?: string;
      }
    | { kind: "file"; path: string };
  out: string;
  select: SelectOptions;
  /** window: the offline selector on each window; continuous: each sample within maxDelayMs */
  mode?: "window" | "continuous";
  maxDelayMs?: number;
  /** absolute caps on what is selected: in total over the run, and per clock hour */
  maxSelected?: { total?: number; perHour?: number };
  windowSize: number;
  windowMs: number;
  model?: string;
  workers?: number;
  idleMs?: number;
  imageBase?: string;
  rotateRows?: number;
  rotateMs?: number;
  /** serve Prometheus metrics on this port (127.0.0.1 unless metricsHost) */
  metricsPort?: number;
  metricsHost?: string;
  /** where the metrics go (default: a registry of this run) */
  registry?: Registry;
  log?: (line: string) => void;
}

/** Wires source, scorer, selector, sink and ledger into the curation graph and runs it. */
export async function runCurate(run: CurateRun): Promise<CurationStats & { out: string; modelId: string }> {
  const log = run.log ?? ((line: string) => process.stderr.write(`mmssr curate: ${line}\n`));
  await mkdir(run.out, { recursive: true });
  const ledger = new OffsetLedger();
  const sink = await createCurationSink({
    dir: run.out,
    ledger,
    rotateRows: run.rotateRows,
    rotateMs: run.rotateMs,
  });
  let source: Source;
  let deadLetters: DeadLetterSink;
  let output: SelectedTopic | undefined;
  if (run.source.kind === "kafka") {
    const { brokers, topic, group } = run.source;
    const security = securityFromEnv();
    // Reconcile published files with the group's committed offsets before reading: a crash
    // between publish and commit must neither lose nor duplicate.
    const admin = createKafka({ brokers, clientId: "mmssr-curate-admin", ...security }).admin();
    await admin.connect();
    try {
      // Dead letters (and selected samples) need their topics: create them when missing.
      const wanted = [run.source.dlqTopic ?? `${topic}.dlq`, run.source.outputTopic].filter(
        (t): t is string => t !== undefined,
      );
      const created = await retrying(
        () =>
          ensureTopics(
            admin,
            wanted.map((t) => ({ topic: t, numPartitions: 1 })),
          ),
        log,
      );
      if (created.length > 0) log(`created topic(s) ${created.join(", ")}`);
      const fetched = await retrying(() => admin.fetchOffsets({ groupId: group, topics: [topic] }), log);
      const committed = new Map<string, string>();
      for (const p of fetched[0]?.partitions ?? [])
        if (Number(p.offset) >= 0) committed.set(`${topic}:${p.partition}`, p.offset);
      const resume = await sink.reconcile(committed);
      const moves = [...resume.values()].filter(
        (r) => r.resumeFrom !== undefined && r.resumeFrom !== r.committed,
      );
      if (moves.length > 0) {
        try {
          await admin.setOffsets({
            groupId: group,
            topic,
            partitions: moves.map((r) => ({ partition: r.partition, offset: r.resumeFrom as string })),
          });
          log(
            `resumed past published files: ${moves.map((r) => `p${r.partition}@${r.resumeFrom}`).join(", ")}`,
          );
        } catch (err) {
          // Kafka refuses while the group has members (another instance, or one that crashed and
          // has not timed out yet). Not needed for correctness: records re-read from the committed
          // offset are recognised as published by the sink and only advance the commit.
          log(
            `could not move the group past published files (${(err as Error).message}); re-reading them instead`,
          );
        }
      }
    } finally {
      await admin.disconnect();
    }
    source = await createKafkaSource({ brokers, topic, groupId: group, ...security });
    deadLetters = await createDeadLetterTopic({
      brokers,
      topic: run.source.dlqTopic ?? `${topic}.dlq`,
      ...security,
    });
    if (run.source.outputTopic)
      output = await createSelectedTopic({ brokers, topic: run.source.outputTopic, ...security });
  } else {
    await sink.reconcile(new Map());
    source = createFileSource(run.source.path);
    deadLetters = createDeadLetterFile(join(run.out, "dead-letters.jsonl"));
  }
  const imageLoader = createImageLoader({ baseDir: run.imageBase ?? process.cwd() });
  const scorer = await createOnnxScorer({
    modelDir: run.model ?? join(packageRoot(), "models", "mmssr-lite"),
    workers: run.workers ?? 1,
    imageLoader,
    logger: log,
  });
  const registry = run.registry ?? new Registry();
  const metrics = createCurationMetrics(registry);
  const metricsServer =
    run.metricsPort === undefined
      ? undefined
      : await serveMetrics(registry, run.metricsPort, run.metricsHost);
  if (metricsServer) log(`metrics on http://${run.metricsHost ?? "127.0.0.1"}:${run.metricsPort}/metrics`);
  try {
    const stats = await runCurationGraph({
      metrics,
      source,
      scorer,
      sink,
      ledger,
      deadLetters,
      output,
      select: selectStep(run),
      // In continuous mode windows are only scoring batches: small and short, so that they do
      // not add to the decision delay.
      windowSize: run.mode === "continuous" ? Math.min(run.windowSize, 512) : run.windowSize,
      windowMs: run.mode === "continuous" ? Math.min(run.windowMs, 100) : run.windowMs,
      idleMs: run.idleMs,
      log,
    });
    return { ...stats, out: run.out, modelId: scorer.id };
  } finally {
    await sink.close();
    await source.stop();
    await deadLetters.close();
    await output?.close();
    await scorer.close();
    await imageLoader.close();
    await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
  }
}

/**
 * The select step of the graph. Window mode decides each window with the exact offline
 * selector; continuous mode takes the scored windows (scoring batches) apart and decides each
 * sample within maxDelayMs with bounded memory (src/selection/continuous-selector.ts).
 */
function selectStep(run: CurateRun): OperatorFunction<ScoredRecord[], Decision[]> {
  const runId = Date.now().toString(36);
  if (run.mode === "continuous") {
    const { ratio, capabilities, threshold, capabilityWeights, styleWeights } = run.select;
    if (ratio === undefined)
      throw usageError("--mode continuous: needs --ratio (the share of incoming samples to admit)");
    return (windows) =>
      windows.pipe(
        mergeMap((w) => w),
        selectContinuous({
          ratio,
          capabilities,
          threshold,
          capabilityWeights,
          styleWeights,
          maxDelayMs: run.maxDelayMs ?? 1000,
          maxAdmitted: run.maxSelected,
          batchId: (n) => `${runId}-c${n}`,
        }),
      );
  }
  const caps = run.maxSelected;
  if (!caps?.total && !caps?.perHour)
    return selectWindow({ ...run.select, windowId: (n) => `${runId}-w${n}` });
  // Absolute caps: each window's budget is what its ratio (or budget) asks, cut to what is left
  // of the total and of the current hour's allowance.
  let n = 0;
  let total = 0;
  let hour = -1;
  let inHour = 0;
  return map((window) => {
    const now = Date.now();
    const h = Math.floor(now / 3_600_000);
    if (h !== hour) {
      hour = h;
      inHour = 0;
    }
    const asked = run.select.budget ?? Math.floor(window.length * (run.select.ratio ?? 0));
    const budget = Math.max(
      0,
      Math.min(
        asked,
        caps.total === undefined ? asked : caps.total - total,
        caps.perHour === undefined ? asked : caps.perHour - inHour,
      ),
    );
    const { ratio: _ratio, ...rest } = run.select;
    const decisions = decideWindow(window, { ...rest, budget }, `${runId}-w${n++}`, now);
    const picked = decisions.filter((d) => d.selected).length;
    total += picked;
    inHour += picked;
    return decisions;
  });
}

interface CurateFlags {
  brokers: string;
  topic: string;
  group: string;
  out: string;
  mode: string;
  ratio?: string;
  budget?: string;
  caps: string;
  thr: string;
  windowSize: string;
  windowMs: string;
  model?: string;
  untilIdle?: string;
  maxDelayMs: string;
  maxTotal?: string;
  maxPerHour?: string;
  capWeights?: string;
  styleWeights?: string;
  workers: string;
  dlqTopic?: string;
  outputTopic?: string;
  imageBase?: string;
  metricsPort?: string;
  metricsHost?: string;
  rotateRows: string;
  rotateMs: string;
}

export function registerCurateCommand(program: Command): void {
  program
    .command("curate")
    .description("curate a Kafka topic: score, select the best and most diverse share, publish Parquet")
    .requiredOption("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .requiredOption("--topic <name>", "topic of incoming samples")
    .requiredOption("--group <id>", "consumer group (instances of one group share the partitions)")
    .requiredOption("--out <dir>", "output: DIR/selected/*.parquet, DIR/scored/*.parquet, DIR/manifest.jsonl")
    .option(
      "--mode <mode>",
      "window (the offline selector on each window) or continuous (each sample within --max-delay-ms)",
      "window",
    )
    .option("--max-delay-ms <ms>", "continuous mode: longest a sample waits for its decision", "1000")
    .option("--ratio <r>", "share of each window to select (0 < r < 1)")
    .option("--budget <n>", "samples to select per window")
    .option("--caps <list>", "capabilities, in order: all or a comma list", "all")
    .option("--thr <t>", "a score must be above t (0..5) to count", "0")
    .option("--cap-weights <list>", "budget shares per capability, e.g. ocr=2,data=2")
    .option("--style-weights <list>", 'quota weights per style, e.g. "yes/no=0.5" (0 excludes a style)')
    .option("--max-total <n>", "select at most this many samples over the whole run")
    .option("--max-per-hour <n>", "select at most this many samples per clock hour")
    .option("--window-size <n>", "samples per window", "20000")
    .option("--window-ms <ms>", "a window closes this long after its first sample, full or not", "60000")
    .option("--model <dir>", "model folder (default: the bundled mmssr-lite)")
    .option("--workers <n>", "inference worker threads", "1")
    .option("--until-idle <seconds>", "drain, publish, commit and exit once nothing arrived for this long")
    .option("--dlq-topic <name>", "dead-letter topic (default <topic>.dlq)")
    .option("--output-topic <name>", "also send selected samples to this topic (key = sample id)")
    .option("--image-base <dir>", "relative image paths resolve against this folder")
    .option(
      "--metrics-port <port>",
      "serve Prometheus metrics at /metrics (default: MMSSR_METRICS_PORT, else off)",
    )
    .option("--metrics-host <host>", "address the metrics server binds to", "127.0.0.1")
    .option("--rotate-rows <n>", "publish a partition's files at this many rows", "100000")
    .option("--rotate-ms <ms>", "... or this long after their oldest row (publish latency)", "60000")
    .action(async (flags: CurateFlags) => {
      if (flags.mode !== "window" && flags.mode !== "continuous")
        throw usageError(`--mode: expected window or continuous, got ${JSON.stringify(flags.mode)}`);
      const brokers = parseBrokers(flags.brokers);
      if (brokers.length === 0) throw usageError("--brokers: no broker given");
      const select = parseSelectFlags(flags);
      const stats = await runCurate({
        source: {
          kind: "kafka",
          brokers,
          topic: flags.topic,
          group: flags.group,
          dlqTopic: flags.dlqTopic,
          outputTopic: flags.outputTopic,
        },
        out: flags.out,
        select,
        mode: flags.mode,
        maxSelected: {
          total: flags.maxTotal === undefined ? undefined : parseIntegerFlag("--max-total", flags.maxTotal),
          perHour:
            flags.maxPerHour === undefined ? undefined : parseIntegerFlag("--max-per-hour", flags.maxPerHour),
        },
        maxDelayMs: parseIntegerFlag("--max-delay-ms", flags.maxDelayMs, 1),
        windowSize: parseIntegerFlag("--window-size", flags.windowSize, 1),
        windowMs: parseIntegerFlag("--window-ms", flags.windowMs, 1),
        model: flags.model,
        workers: parseIntegerFlag("--workers", flags.workers, 1),
        idleMs:
          flags.untilIdle === undefined ? undefined : parseNumberFlag("--until-idle", flags.untilIdle) * 1000,
        imageBase: flags.imageBase,
        metricsPort:
          (flags.metricsPort ?? process.env.MMSSR_METRICS_PORT) === undefined
            ? undefined
            : parseIntegerFlag(
                "--metrics-port",
                (flags.metricsPort ?? process.env.MMSSR_METRICS_PORT) as string,
                1,
              ),
        metricsHost: flags.metricsHost,
        rotateRows: parseIntegerFlag("--rotate-rows", flags.rotateRows, 1),
        rotateMs: parseIntegerFlag("--rotate-ms", flags.rotateMs, 1),
      });
      process.stdout.write(`${formatCurateStats(stats)}\n`);
    });
}

export function formatCurateStats(s: CurationStats & { out: string; modelId: string }): string {
  return (
    `read ${s.read} records: ${s.scored} scored with ${s.modelId} in ${s.windows} window(s), ` +
    `${s.selected} selected, ${s.deadLettered} dead-lettered; ${s.commits} commit(s)\n` +
    `-> ${join(s.out, "selected")}, ${join(s.out, "scored")}, ${join(s.out, "manifest.jsonl")}`
  );
}

/** Runs a Kafka admin call again while the broker answers with a retriable error (a coordinator still loading). */
async function retrying<T>(
  call: () => Promise<T>,
  log: (line: string) => void,
  timeoutMs = 60_000,
): Promise<T> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const retriable = (err as { retriable?: boolean }).retriable === true;
      if (!retriable || Date.now() - started > timeoutMs) throw err;
      log(`retrying (${attempt}): ${(err as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(250 * attempt, 2_000)));
    }
  }
}
