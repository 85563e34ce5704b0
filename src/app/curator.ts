/**
 * The one place that wires a curator: source (Kafka or a file), dead letters, the output
 * location and its sink, the partition owner, the scorer, the selector, metrics, and the graph.
 * The CLI (`mmssr curate`, `mmssr demo`), the benchmarks and tests build curators here; signal
 * handling is the caller's (pass an AbortSignal).
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Registry } from "prom-client";
import { BehaviorSubject, mergeMap, type OperatorFunction } from "rxjs";
import { createDeadLetterFile } from "../../connectors/files/dead-letter-file.js";
import { createFileSource } from "../../connectors/files/file-source.js";
import { createDeadLetterTopic } from "../../connectors/kafka/dead-letter-topic.js";
import { createKafka, ensureTopics, securityFromEnv } from "../../connectors/kafka/kafka-client.js";
import { createKafkaSource } from "../../connectors/kafka/kafka-source.js";
import { createSelectedTopic } from "../../connectors/kafka/selected-topic.js";
import { createCurationSink, type FileSink } from "../../connectors/sink/curation-sink.js";
import { SharedOutput } from "../../connectors/sink/shared-output.js";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { createImageLoader } from "../scoring/image-source.js";
import { createOnnxScorer } from "../scoring/onnx-scorer.js";
import type { SelectOptions } from "../selection/select-options.js";
import { POLICY_DEFAULTS, policyOrThrow } from "../selection/selection-policy.js";
import { type CurationStats, runCurationGraph } from "../stream/curation-graph.js";
import { createCurationMetrics, serveMetrics } from "../stream/curation-metrics.js";
import { groupLag } from "../stream/group-lag.js";
import { selectContinuous } from "../stream/operators/select-continuous.js";
import { selectWindowByPolicy } from "../stream/operators/select-window-by-policy.js";
import { PartitionOwner } from "../stream/partition-owner.js";
import type { DeadLetterSink, DecisionOutput, Source } from "../stream/ports.js";
import type { Decision, ScoredRecord } from "../stream/stream-types.js";
import { packageRoot } from "../util/package-root.js";

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
  /** ends the run as --until-idle does: drain, publish, commit */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface CurateSummary extends CurationStats {
  out: string;
  modelId: string;
  instance: string;
  /** files and rows this run published */
  published: { files: number; scored: number; selected: number };
  /** undecided records given up at revocations (their next owner decided them) */
  givenUp: number;
  /** Kafka runs: the group's lag per partition after the last commit */
  lag?: { partition: string; committed?: string; end: string; lag: string }[];
}

/** Builds a curator from `run` and runs it until the source ends (idle and caught up, or aborted). */
export async function runCurate(run: CurateRun): Promise<CurateSummary> {
  const log = run.log ?? ((line: string) => process.stderr.write(`mmssr curate: ${line}\n`));
  await mkdir(run.out, { recursive: true });
  const output = await SharedOutput.open({ dir: run.out });
  let source: Source;
  let deadLetters: DeadLetterSink;
  let decisionOutput: DecisionOutput | undefined;
  if (run.source.kind === "kafka") {
    const { brokers, topic, group } = run.source;
    const security = securityFromEnv();
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
    } finally {
      await admin.disconnect();
    }
    source = await retrying(() => createKafkaSource({ brokers, topic, groupId: group, ...security }), log);
    deadLetters = await createDeadLetterTopic({
      brokers,
      topic: run.source.dlqTopic ?? `${topic}.dlq`,
      ...security,
    });
    if (run.source.outputTopic)
      decisionOutput = await createSelectedTopic({ brokers, topic: run.source.outputTopic, ...security });
  } else {
    source = createFileSource(run.source.path);
    deadLetters = createDeadLetterFile(join(run.out, "dead-letters.jsonl"));
  }
  let sink: FileSink | undefined;
  const owner = new PartitionOwner({
    source,
    output,
    onRevoke: (keys) => sink?.discard(keys),
    log,
  });
  sink = await createCurationSink({
    output,
    gate: owner.gate,
    onPublish: (p) => owner.published(p),
    // the output topic gets what is published: sent before the manifest line, at least once
    beforeManifest: decisionOutput
      ? (selected) => (decisionOutput as DecisionOutput).send(selected)
      : undefined,
    rotateRows: run.rotateRows,
    rotateMs: run.rotateMs,
  });
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
  log(`instance ${output.instanceId} writing to ${run.out}`);
  try {
    const stats = await runCurationGraph({
      metrics,
      source,
      scorer,
      sink,
      owner,
      deadLetters,
      select: selectStep(run),
      // In continuous mode windows are only scoring batches: small and short, so that they do
      // not add to the decision delay.
      windowSize: run.mode === "continuous" ? Math.min(run.windowSize, 512) : run.windowSize,
      windowMs: run.mode === "continuous" ? Math.min(run.windowMs, 100) : run.windowMs,
      idleMs: run.idleMs,
      signal: run.signal,
      log,
    });
    const lag = (await groupLag(source).catch(() => undefined))?.map((l) => ({
      partition: l.partition,
      committed: l.committed,
      end: l.end.toString(),
      lag: l.lag.toString(),
    }));
    const s = sink.stats();
    return {
      ...stats,
      out: run.out,
      modelId: scorer.id,
      instance: output.instanceId,
      published: {
        files: s.publishedFiles,
        scored: s.publishedRows.scored,
        selected: s.publishedRows.selected,
      },
      givenUp: owner.stats.givenUp + s.givenUpRows,
      lag,
    };
  } finally {
    await sink.close();
    await source.stop();
    await deadLetters.close();
    await decisionOutput?.close();
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
      throw new MmssrError(
        ERROR_CODES.USAGE,
        "--mode continuous: needs --ratio (the share of incoming samples to admit)",
      );
    return (windows) =>
      windows.pipe(
        mergeMap((w) => w),
        selectContinuous({
          ratio,
          capabilities,
          threshold,
          capabilityWeights,
          styleWeights,
          maxDelayMs: run.maxDelayMs ?? POLICY_DEFAULTS.maxDelayMs,
          maxAdmitted: run.maxSelected,
          batchId: (n) => `${runId}-c${n}`,
        }),
      );
  }
  // Window mode runs under a selection policy (src/selection/selection-policy.ts); the flags
  // build the first one. Nothing changes it yet while it runs (the admin API and the control
  // topic of issue 8 will emit new ones here).
  const policy = policyOrThrow({
    ...run.select,
    maxTotal: run.maxSelected?.total,
    maxPerHour: run.maxSelected?.perHour,
    ...(run.maxDelayMs === undefined ? {} : { maxDelayMs: run.maxDelayMs }),
  });
  return selectWindowByPolicy(new BehaviorSubject(policy), { windowId: (n) => `${runId}-w${n}` });
}

/** Runs a Kafka call again while the broker answers with a retriable error (a coordinator still loading). */
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
