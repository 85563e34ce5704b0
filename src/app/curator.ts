/**
 * The one place that wires a curator: source (Kafka or a file), dead letters, the output
 * location and its sink, the partition owner, the scorer, the selector, metrics, and the graph.
 * The CLI (`mmssr curate`, `mmssr demo`), the benchmarks and tests build curators here; signal
 * handling is the caller's (pass an AbortSignal).
 */
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { mergeMap, type Observable, type OperatorFunction } from "rxjs";
import { createDeadLetterFile } from "../../connectors/files/dead-letter-file.js";
import { createFileSource } from "../../connectors/files/file-source.js";
import { createPolicyFileStore } from "../../connectors/files/policy-file.js";
import { createControlTopicStore } from "../../connectors/kafka/control-topic.js";
import { createDeadLetterTopic } from "../../connectors/kafka/dead-letter-topic.js";
import {
  createKafka,
  ensureTopics,
  FIRST_CONTACT_RETRY,
  securityFromEnv,
} from "../../connectors/kafka/kafka-client.js";
import { createKafkaSource } from "../../connectors/kafka/kafka-source.js";
import { createSelectedTopic } from "../../connectors/kafka/selected-topic.js";
import { createCurationSink, type FileSink } from "../../connectors/sink/curation-sink.js";
import { SharedOutput } from "../../connectors/sink/shared-output.js";
import { type AdminServer, startAdminServer } from "../control/admin-server.js";
import type { AdminBackend } from "../control/admin-types.js";
import { PolicyControl } from "../control/policy-control.js";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { createImageLoader, ImageHealth } from "../scoring/image-source.js";
import { createOnnxScorer, type OnnxScorer } from "../scoring/onnx-scorer.js";
import type { Scorer } from "../scoring/scoring-types.js";
import {
  type PolicyProblem,
  policyOrThrow,
  type SelectionPolicy,
  type SelectionPolicyInput,
} from "../selection/selection-policy.js";
import { type CurationLive, type CurationStats, runCurationGraph } from "../stream/curation-graph.js";
import {
  type CurationMetrics,
  createCurationMetrics,
  serveMetrics,
  showPolicy,
} from "../stream/curation-metrics.js";
import { groupLag } from "../stream/group-lag.js";
import { parsePartitionKey } from "../stream/offset-ledger.js";
import { selectContinuousByPolicy } from "../stream/operators/select-continuous.js";
import { selectWindowByPolicy } from "../stream/operators/select-window-by-policy.js";
import { PartitionOwner } from "../stream/partition-owner.js";
import type { DeadLetterSink, DecisionOutput, PolicyStore, Source } from "../stream/ports.js";
import type { Decision, ScoredRecord } from "../stream/stream-types.js";
import { createLogger, type Logger } from "../util/logger.js";
import { packageRoot, packageVersion } from "../util/package-root.js";

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
        /** the group's policy channel (default `<topic>.control`) */
        controlTopic?: string;
        /** the group session and heartbeat (defaults: connectors/kafka/kafka-source.ts) */
        sessionTimeoutMs?: number;
        heartbeatIntervalMs?: number;
      }
    | {
        kind: "file";
        path: string;
        /** where the policy lives and is changed (default: in this process only) */
        policyFile?: string;
      };
  out: string;
  /**
   * The first selection policy (src/selection/selection-policy.ts; built by the command line):
   * in force only when the group's control topic (or the policy file) holds none.
   */
  policy: SelectionPolicyInput;
  /** the policy flags the user gave, named at start when the group's stored policy wins */
  givenPolicyFlags?: readonly string[];
  /** window: the offline selector on each window; continuous: each sample within maxDelayMs */
  mode?: "window" | "continuous";
  windowSize: number;
  windowMs: number;
  model?: string;
  workers?: number;
  /** ONNX Runtime intra-op threads per worker (default 1) */
  threads?: number;
  /** execution provider (default cpu); cuda fails unless cudaFallback */
  executionProvider?: "cpu" | "cuda";
  cudaFallback?: boolean;
  /** false: score text only, load no image (flag no-image) */
  loadImages?: boolean;
  /** image_source of samples that name none (default "unknown") */
  imageSource?: string;
  /** a sample whose image cannot be used: scored text-only and flagged (default), or dead-lettered */
  badImage?: "text-only" | "reject";
  idleMs?: number;
  imageBase?: string;
  /**
   * Which image references of (untrusted) messages are followed: local paths only inside
   * imageBase unless allowOutsideBase; URLs only from allowHosts and never private addresses
   * unless allowPrivateAddresses (src/scoring/image-source.ts).
   */
  images?: { allowOutsideBase?: boolean; allowHosts?: string[]; allowPrivateAddresses?: boolean };
  rotateRows?: number;
  rotateMs?: number;
  /** a message larger than this is dead-lettered as too-large (default 1 MiB: parse-record.ts) */
  maxMessageBytes?: number;
  /** serve Prometheus metrics on this port (127.0.0.1 unless metricsHost) */
  metricsPort?: number;
  metricsHost?: string;
  /** the admin HTTP API (src/control/admin-server.ts): policy, status, drain, health, metrics */
  admin?: { port: number; host?: string; token?: string; insecure?: boolean };
  /** where the metrics go (default: a registry of this run) */
  registry?: Registry;
  /** ends the run as --until-idle does: drain, publish, commit */
  signal?: AbortSignal;
  /** log a progress line (read, decided, selected, lag, rate) this often, ms (default: never) */
  progressMs?: number;
  /** called once the admin API listens (its URL), e.g. to print it */
  onAdmin?: (url: string) => void;
  log?: (line: string) => void;
  /** structured logs (pino); `log`, when given, takes every line instead (tests) */
  logger?: Logger;
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
  /** the policy in force at the end */
  policy: SelectionPolicy;
  mode: "window" | "continuous";
  /** samples that named an image, how many of those images could not be used, and a line saying so */
  images: { named: number; failed: number; summary: string };
}

/** Builds a curator from `run` and runs it until the source ends (idle and caught up, or aborted). */
export async function runCurate(run: CurateRun): Promise<CurateSummary> {
  const logger = run.logger ?? createLogger({ name: "mmssr curate" });
  const log = run.log ?? ((line: string) => logger.info(line));
  const warn = run.log ?? ((line: string) => logger.warn(line));
  const mode = run.mode ?? "window";
  // The command line's policy is checked before anything connects, even when the group's
  // stored policy will win: a typo in a flag is the user's to hear about now.
  const initial = policyOrThrow(run.policy);
  const modeProblems = policyProblemsForMode(mode);
  const refused = modeProblems(initial);
  if (refused.length > 0)
    throw new MmssrError(ERROR_CODES.USAGE, refused.map((p) => `${p.path}: ${p.message}`).join("; "));
  // What is opened is closed in reverse order, whichever step fails.
  const closers: (() => Promise<unknown>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.reverse())
      await close().catch((err) => warn(`close: ${(err as Error).message}`));
  };
  try {
    await mkdir(run.out, { recursive: true });
    const output = await SharedOutput.open({ dir: run.out });
    const stop = new AbortController();
    const abort = (): void => stop.abort();
    run.signal?.addEventListener("abort", abort, { once: true });
    closers.push(async () => run.signal?.removeEventListener("abort", abort));
    if (run.signal?.aborted) stop.abort();

    const { source, deadLetters, decisionOutput, store } = await openConnectors(
      run,
      output.instanceId,
      log,
      closers,
    );
    const control = await PolicyControl.start({
      store,
      initial,
      givenFlags: run.givenPolicyFlags,
      origin: { host: hostname(), instance: output.instanceId },
      accept: modeProblems,
      log,
    });
    closers.push(() => control.close());

    const registry = run.registry ?? new Registry();
    const metrics = createCurationMetrics(registry);
    const showing = control.policy$.subscribe((p) => showPolicy(metrics, p));
    closers.push(async () => showing.unsubscribe());
    const live: CurationLive & { scorer?: OnnxScorer; reservoir?: { rows: number; size: number } } = {
      windowFill: 0,
    };
    let sink: FileSink | undefined;
    const owner = new PartitionOwner({ source, output, onRevoke: (keys) => sink?.discard(keys), log });

    const metricsServer =
      run.metricsPort === undefined
        ? undefined
        : await serveMetrics(registry, run.metricsPort, run.metricsHost);
    if (metricsServer) {
      closers.push(() => new Promise<void>((resolve) => metricsServer.close(() => resolve())));
      log(`metrics on http://${run.metricsHost ?? "127.0.0.1"}:${run.metricsPort}/metrics`);
    }
    // The admin API listens before the model loads, so /readyz can say what it waits for.
    let admin: AdminServer | undefined;
    if (run.admin) {
      admin = await startAdminServer({
        ...run.admin,
        instance: output.instanceId,
        log,
        backend: adminBackend({ run, mode, control, owner, source, live, registry, output, stop, log }),
      });
      const server = admin;
      closers.push(() => server.close());
      log(`admin API on ${admin.url} (GET/PATCH/PUT /v1/policy, GET /v1/status, POST /v1/drain)`);
      run.onAdmin?.(admin.url);
    }

    sink = await createCurationSink({
      output,
      gate: owner.gate,
      onPublish: (p) => owner.published(p),
      onPublishedFiles: (entries) => {
        for (const e of entries) {
          metrics.filesPublished.inc({ kind: e.kind });
          metrics.bytesPublished.inc({ kind: e.kind }, e.bytes ?? 0);
        }
      },
      // the output topic gets what is published: sent before the manifest line, at least once
      beforeManifest: decisionOutput ? (selected) => decisionOutput.send(selected) : undefined,
      rotateRows: run.rotateRows,
      rotateMs: run.rotateMs,
    });
    const fileSink = sink;
    closers.push(() => fileSink.close());
    const imageBase = run.imageBase ?? process.cwd();
    const imageLoader = createImageLoader({
      baseDir: imageBase,
      allowLocalOutsideBase: run.images?.allowOutsideBase,
      allowHosts: run.images?.allowHosts,
      allowPrivateAddresses: run.images?.allowPrivateAddresses,
    });
    closers.push(() => imageLoader.close());
    const scorer = await createOnnxScorer({
      modelDir: run.model ?? join(packageRoot(), "models", "mmssr-lite"),
      workers: run.workers ?? 1,
      intraOpThreads: run.threads,
      executionProvider: run.executionProvider,
      onCudaUnavailable: run.cudaFallback ? "fallback-cpu" : "fail",
      imageLoader: run.loadImages === false ? undefined : imageLoader,
      onBatch: (_samples, seconds) => metrics.inferenceBatch.observe(seconds),
      logger: log,
    });
    closers.push(() => scorer.close());
    live.scorer = scorer;
    metrics.buildInfo.set(
      { version: packageVersion(), model_id: scorer.id, execution_provider: scorer.provider },
      1,
    );
    // two admin requests every 5 s: only where someone can read the gauge (a metrics port, the
    // admin API's /metrics, or a registry the caller holds)
    if (run.metricsPort !== undefined || run.admin || run.registry) {
      const lagTimer = watchConsumerLag(source, metrics);
      closers.push(async () => clearInterval(lagTimer));
    }
    // Images that cannot be used change the scores: say so loudly, once, and count them.
    const images = new ImageHealth();
    const observed: Scorer = {
      id: scorer.id,
      async score(samples) {
        const results = await scorer.score(samples);
        const flags = new Map<string, number>();
        for (const r of results) {
          images.record(r.flags);
          for (const f of r.flags) flags.set(f, (flags.get(f) ?? 0) + 1);
        }
        for (const [flag, n] of flags) metrics.imageFlags.inc({ flag }, n);
        if (images.warningDue()) warn(imageWarning(images, imageBase));
        return results;
      },
      close: () => scorer.close(),
    };
    log(`instance ${output.instanceId} writing to ${run.out}`);
    if (run.progressMs !== undefined && run.progressMs > 0) {
      // JSON logs get the figures as fields as well (a log shipper should not parse the line)
      const report = run.log ?? ((line: string, fields: object) => logger.info({ progress: fields }, line));
      const progress = startProgress(live, source, run.progressMs, report);
      closers.push(async () => clearInterval(progress));
    }

    const stats = await runCurationGraph({
      metrics,
      source,
      scorer: observed,
      sink,
      owner,
      deadLetters,
      select: selectStep(mode, control.policy$, live),
      // In continuous mode windows are only scoring batches: small and short, so that they do
      // not add to the decision delay.
      windowSize: mode === "continuous" ? Math.min(run.windowSize, 512) : run.windowSize,
      windowMs: mode === "continuous" ? Math.min(run.windowMs, 100) : run.windowMs,
      idleMs: run.idleMs,
      parse: { maxMessageBytes: run.maxMessageBytes, defaultImageSource: run.imageSource },
      rejectBadImages: run.badImage === "reject",
      signal: stop.signal,
      live,
      log,
    });
    const lag = (await groupLag(source).catch(() => undefined))?.map((l) => ({
      partition: l.partition,
      committed: l.committed,
      end: l.end.toString(),
      lag: l.lag.toString(),
    }));
    const s = sink.stats();
    if (images.warningDue(true)) warn(imageWarning(images, imageBase));
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
      policy: control.policy,
      mode,
      images: {
        named: images.named,
        failed: images.failed,
        summary:
          run.loadImages === false ? "images: not loaded (--no-images): text-only scores" : images.summary(),
      },
    };
  } finally {
    await closeAll();
  }
}

/** A line every `everyMs`: what was read, decided, selected and dead-lettered, the lag, the rate. */
/** The image warning as a log message (the logger adds the program and the level). */
const imageWarning = (images: ImageHealth, base: string): string =>
  images
    .warning("mmssr curate", base)
    .trimEnd()
    .replace(/^mmssr curate: WARNING: /, "");

/**
 * Keeps mmssr_consumer_lag per partition current: the group's committed offsets against the
 * partitions' ends, every 5 s (two admin requests; a scrape does not wait for them). A partition
 * that is no longer reported loses its series.
 */
/** A partition key of the lag report (offset-ledger's "topic:partition") as the lag gauge's labels. */
function lagLabels(key: string): { topic: string; partition: string } {
  const { topic, partition } = parsePartitionKey(key);
  return { topic, partition: String(partition) };
}

function watchConsumerLag(source: Source, metrics: CurationMetrics): NodeJS.Timeout {
  let shown = new Set<string>();
  let busy = false;
  const refresh = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const lags = await groupLag(source).catch(() => undefined);
      if (!lags) return;
      const now = new Set<string>();
      for (const l of lags) {
        metrics.consumerLag.set(lagLabels(l.partition), Number(l.lag));
        now.add(l.partition);
      }
      for (const gone of shown) if (!now.has(gone)) metrics.consumerLag.remove(lagLabels(gone));
      shown = now;
    } finally {
      busy = false;
    }
  };
  void refresh();
  const timer = setInterval(() => void refresh(), 5_000);
  timer.unref();
  return timer;
}

function startProgress(
  live: CurationLive,
  source: Source,
  everyMs: number,
  report: (line: string, fields: object) => void,
): NodeJS.Timeout {
  let lastRead = 0;
  let lastAt = Date.now();
  let running = false;
  const timer = setInterval(() => {
    const s = live.stats;
    if (!s || running) return;
    running = true;
    groupLag(source)
      .catch(() => undefined)
      .then((lags) => {
        const now = Date.now();
        const rate = ((s.read - lastRead) * 1000) / Math.max(now - lastAt, 1);
        lastRead = s.read;
        lastAt = now;
        const total = lags?.reduce((a, l) => a + l.lag, 0n);
        const lag = total === undefined ? "" : `, lag ${total}`;
        report(
          `progress: read ${s.read}, scored ${s.scored}, selected ${s.selected}, dead-lettered ${s.deadLettered}${lag}, ${rate.toFixed(0)} msg/s`,
          {
            read: s.read,
            scored: s.scored,
            selected: s.selected,
            deadLettered: s.deadLettered,
            ...(total === undefined ? {} : { lag: Number(total) }),
            ratePerSecond: Math.round(rate),
          },
        );
      })
      .finally(() => {
        running = false;
      });
  }, everyMs);
  timer.unref();
  return timer;
}

/** Source, dead letters, output topic and policy store of `run`, each registered to be closed. */
async function openConnectors(
  run: CurateRun,
  instance: string,
  log: (line: string) => void,
  closers: (() => Promise<unknown>)[],
): Promise<{
  source: Source;
  deadLetters: DeadLetterSink;
  decisionOutput?: DecisionOutput;
  store: PolicyStore;
}> {
  if (run.source.kind === "file") {
    const source = createFileSource(run.source.path);
    closers.push(() => source.stop());
    const deadLetters = createDeadLetterFile(join(run.out, "dead-letters.jsonl"));
    closers.push(() => deadLetters.close());
    const store = createPolicyFileStore({ path: run.source.policyFile, log });
    closers.push(() => store.close());
    return { source, deadLetters, store };
  }
  const kafka = run.source;
  const { brokers, topic, group } = kafka;
  const security = securityFromEnv();
  const dlqTopic = run.source.dlqTopic ?? `${topic}.dlq`;
  const admin = createKafka({
    brokers,
    clientId: "mmssr-curate-admin",
    retry: FIRST_CONTACT_RETRY,
    ...security,
  }).admin();
  await admin.connect();
  try {
    // A topic that does not exist is most likely a typo: say so now, not after a minute of retries.
    const topics = await retrying(() => admin.listTopics(), log);
    if (!topics.includes(topic))
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `--topic: ${topic} does not exist on ${brokers.join(",")} (create it, or produce to it with \`mmssr produce\`)`,
      );
    // Dead letters (and selected samples) need their topics: create them when missing.
    const wanted = [dlqTopic, run.source.outputTopic].filter((t): t is string => t !== undefined);
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
  const store = await retrying(
    () =>
      createControlTopicStore({
        brokers,
        topic: run.source.kind === "kafka" ? (run.source.controlTopic ?? `${topic}.control`) : "",
        group,
        reader: instance,
        log,
        ...security,
      }),
    log,
  );
  closers.push(() => store.close());
  const source = await retrying(
    () =>
      createKafkaSource({
        brokers,
        topic,
        groupId: group,
        sessionTimeoutMs: kafka.sessionTimeoutMs,
        heartbeatIntervalMs: kafka.heartbeatIntervalMs,
        ...security,
      }),
    log,
  );
  closers.push(() => source.stop());
  const deadLetters = await createDeadLetterTopic({ brokers, topic: dlqTopic, ...security });
  closers.push(() => deadLetters.close());
  let decisionOutput: DecisionOutput | undefined;
  if (run.source.outputTopic) {
    const out = await createSelectedTopic({ brokers, topic: run.source.outputTopic, ...security });
    closers.push(() => out.close());
    decisionOutput = out;
  }
  return { source, deadLetters, decisionOutput, store };
}

/** Where a group's policy lives: its control topic on `brokers`, or a policy file. */
export type PolicyTarget =
  | { kind: "kafka"; brokers: string[]; group: string; controlTopic: string }
  | { kind: "file"; path: string };

/** The policy store of `target` (for `mmssr policy get|set`); close it after use. */
export async function openPolicyStore(
  target: PolicyTarget,
  log?: (line: string) => void,
): Promise<PolicyStore> {
  if (target.kind === "file") return createPolicyFileStore({ path: target.path, log });
  return retrying(
    () =>
      createControlTopicStore({
        brokers: target.brokers,
        topic: target.controlTopic,
        group: target.group,
        reader: `cli-${hostname()}-${process.pid}-${Date.now().toString(36)}`,
        log,
        ...securityFromEnv(),
      }),
    log ?? (() => {}),
  );
}

/** What a mode cannot run with: continuous mode admits a share of the stream, so it needs a ratio. */
function policyProblemsForMode(mode: "window" | "continuous"): (p: SelectionPolicy) => PolicyProblem[] {
  return (p) =>
    mode === "continuous" && p.ratio === undefined
      ? [
          {
            path: "ratio",
            message:
              "continuous mode needs a ratio (the share of incoming samples to admit); a budget is per window",
          },
        ]
      : [];
}

/** The admin API's view of a running curator. */
function adminBackend(c: {
  run: CurateRun;
  mode: "window" | "continuous";
  control: PolicyControl;
  owner: PartitionOwner;
  source: Source;
  live: CurationLive & { scorer?: OnnxScorer; reservoir?: { rows: number; size: number } };
  registry: Registry;
  output: SharedOutput;
  stop: AbortController;
  log: (line: string) => void;
}): AdminBackend {
  const { run, control, owner, source, live } = c;
  return {
    policy: () => control.policy,
    patchPolicy: (patch, from) => control.patch(patch, from),
    putPolicy: (body, from) => control.replace(body, from),
    async status() {
      const lags = (await groupLag(source).catch(() => undefined)) ?? [];
      const mine = new Map(owner.positions().map((p) => [`${p.tp.topic}:${p.tp.partition}`, p]));
      return {
        instance: c.output.instanceId,
        source:
          run.source.kind === "kafka"
            ? { kind: "kafka", topic: run.source.topic, group: run.source.group }
            : { kind: "file", path: run.source.path },
        mode: c.mode,
        draining: c.stop.signal.aborted,
        model: live.scorer
          ? { id: live.scorer.id, executionProvider: live.scorer.provider, loaded: true }
          : { loaded: false },
        policy: control.policy,
        policySet: { at: control.record.at, from: control.record.from },
        partitions: lags.map((l) => ({
          partition: l.partition,
          owned: mine.get(l.partition)?.ready ?? false,
          committed: l.committed ?? null,
          end: l.end.toString(),
          lag: l.lag.toString(),
          undecided: mine.get(l.partition)?.undecided ?? 0,
        })),
        window: { fill: live.windowFill, size: run.windowSize },
        reservoir: live.reservoir ?? null,
        undecided: owner.undecidedTotal,
      };
    },
    async ready() {
      const checks = {
        broker: source.readyAt !== undefined,
        model: live.scorer !== undefined,
        partitions: owner.positions().some((p) => p.ready),
      };
      return { ready: Object.values(checks).every(Boolean), checks };
    },
    drain() {
      if (c.stop.signal.aborted) return;
      c.log("drain asked through the admin API: draining (publish, commit, then exit)");
      c.stop.abort();
    },
    async metrics() {
      return { contentType: c.registry.contentType, text: await c.registry.metrics() };
    },
  };
}

/**
 * The select step of the graph, under the policy `policy$` emits. Window mode decides each
 * window with the exact offline selector (a change applies from the next window); continuous
 * mode takes the scored windows (scoring batches) apart and decides each sample within
 * maxDelayMs with bounded memory (src/selection/continuous-selector.ts; a change applies at its
 * next refresh).
 */
function selectStep(
  mode: "window" | "continuous",
  policy$: Observable<SelectionPolicy>,
  live: { reservoir?: { rows: number; size: number } },
): OperatorFunction<ScoredRecord[], Decision[]> {
  const runId = Date.now().toString(36);
  if (mode === "continuous")
    return (windows) =>
      windows.pipe(
        mergeMap((w) => w),
        selectContinuousByPolicy(policy$, {
          batchId: (n) => `${runId}-c${n}`,
          onStats: (s) => {
            live.reservoir = { rows: s.referenceRows, size: s.referenceSize };
          },
        }),
      );
  return selectWindowByPolicy(policy$, { windowId: (n) => `${runId}-w${n}` });
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
