import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from "prom-client";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import type { SelectionPolicy } from "../selection/selection-policy.js";

/**
 * What an operator watches on a dashboard. The registry is passed in (not the global one), so
 * tests and several graphs in one process keep their counters apart.
 */
export interface CurationMetrics {
  read: Counter;
  deadLettered: Counter<"code">;
  scored: Counter;
  selected: Counter<"capability">;
  windows: Counter;
  commits: Counter;
  undecided: Gauge;
  paused: Gauge;
  /** partitions this instance owns now (claimed) */
  partitionsOwned: Gauge;
  /** assignment changes seen (each rebalance, or a rejoin, is one or two) */
  assignmentChanges: Counter;
  /** records read again whose decision a published file already held */
  skippedPublished: Counter;
  /** records dropped because their generation was over (their partition moved) */
  droppedStale: Counter;
  /** seconds from a record's arrival (or produce timestamp) to its decision being handed to the sink */
  decisionLatency: Histogram;
  /** samples not selected, by why (below-threshold, no-style, budget, cap-total, cap-hour) */
  notSelected: Counter<"reason">;
  /** selected / decided of the last window (window mode) or decision batch (continuous mode) */
  windowSelectedShare: Gauge;
  /** the policy in force: its version, and each numeric setting it has */
  policy: Gauge<"setting">;
  /** seconds from this process receiving a record to its decision (a backfill's produce timestamps are old) */
  decisionLatencyFromArrival: Histogram;
  /** decided and selected samples per style tag (a sample with several styles counts in each) */
  decidedByStyle: Counter<"style">;
  selectedByStyle: Counter<"style">;
  /** why samples were scored with less than they carried (no-image, image-corrupt, ...) */
  imageFlags: Counter<"flag">;
  /** files and bytes published, by kind (selected, scored) */
  filesPublished: Counter<"kind">;
  bytesPublished: Counter<"kind">;
  /** a worker's time per inference batch (featurizing there + session.run) */
  inferenceBatch: Histogram;
  /** the group's lag per partition (end offset - committed), refreshed at most every few seconds */
  consumerLag: Gauge<"topic" | "partition">;
  /** 1, labelled with what runs: the version, the model and the execution provider */
  buildInfo: Gauge<"version" | "model_id" | "execution_provider">;
}

/** The policy gauges for `policy` (none for a setting it does not have). */
export function showPolicy(metrics: CurationMetrics, policy: SelectionPolicy): void {
  const settings: Record<string, number | undefined> = {
    version: policy.version,
    ratio: policy.ratio,
    budget: policy.budget,
    max_total: policy.maxTotal,
    max_per_hour: policy.maxPerHour,
    threshold: policy.threshold,
    max_delay_ms: policy.maxDelayMs,
    capabilities: policy.capabilities?.length ?? 14,
  };
  // a setting the policy does not have has no sample (prom-client would print NaN as "Nan")
  for (const [setting, v] of Object.entries(settings))
    if (v === undefined) metrics.policy.remove({ setting });
    else metrics.policy.set({ setting }, v);
}

/** seconds; both decision latencies share them, so their panels compare bucket by bucket */
const DECISION_LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export function createCurationMetrics(registry: Registry, prefix = "mmssr_"): CurationMetrics {
  const registers = [registry];
  return {
    read: new Counter({
      name: `${prefix}records_read_total`,
      help: "records read from the source",
      registers,
    }),
    deadLettered: new Counter({
      name: `${prefix}dead_lettered_total`,
      help: "records sent to the dead-letter sink, by reason code",
      labelNames: ["code"],
      registers,
    }),
    scored: new Counter({ name: `${prefix}scored_total`, help: "samples scored", registers }),
    selected: new Counter({
      name: `${prefix}selected_total`,
      help: "samples selected, by the capability that picked them",
      labelNames: ["capability"],
      registers,
    }),
    windows: new Counter({ name: `${prefix}windows_total`, help: "scoring windows processed", registers }),
    commits: new Counter({ name: `${prefix}offset_commits_total`, help: "offset commits", registers }),
    undecided: new Gauge({
      name: `${prefix}undecided_records`,
      help: "records read but not yet decided",
      registers,
    }),
    paused: new Gauge({
      name: `${prefix}source_paused`,
      help: "1 while the source is paused for backpressure",
      registers,
    }),
    partitionsOwned: new Gauge({
      name: `${prefix}partitions_owned`,
      help: "partitions this instance owns (claimed) now",
      registers,
    }),
    assignmentChanges: new Counter({
      name: `${prefix}assignment_changes_total`,
      help: "assignment changes (rebalances, rejoins) this instance went through",
      registers,
    }),
    skippedPublished: new Counter({
      name: `${prefix}skipped_published_total`,
      help: "records read again whose decision was already published (not decided twice)",
      registers,
    }),
    droppedStale: new Counter({
      name: `${prefix}dropped_stale_total`,
      help: "records and decisions dropped because their partition moved (its new owner decides them)",
      registers,
    }),
    decisionLatency: new Histogram({
      name: `${prefix}decision_latency_seconds`,
      help: "from a record's timestamp to its decision",
      buckets: DECISION_LATENCY_BUCKETS,
      registers,
    }),
    notSelected: new Counter({
      name: `${prefix}not_selected_total`,
      help: "samples decided and not selected, by reason (below-threshold, no-style, budget, cap-total, cap-hour)",
      labelNames: ["reason"],
      registers,
    }),
    windowSelectedShare: new Gauge({
      name: `${prefix}window_selected_share`,
      help: "selected / decided in the last window (window mode) or decision batch (continuous mode)",
      registers,
    }),
    policy: new Gauge({
      name: `${prefix}policy`,
      help: "the selection policy in force: version, ratio, budget, max_total, max_per_hour, threshold, max_delay_ms, capabilities (absent: not set)",
      labelNames: ["setting"],
      registers,
    }),
    decisionLatencyFromArrival: new Histogram({
      name: `${prefix}decision_latency_from_arrival_seconds`,
      help: "from this process receiving a record (its fetch) to its decision",
      buckets: DECISION_LATENCY_BUCKETS,
      registers,
    }),
    decidedByStyle: new Counter({
      name: `${prefix}decided_by_style_total`,
      help: "samples decided, per style tag (a sample with several styles counts in each)",
      labelNames: ["style"],
      registers,
    }),
    selectedByStyle: new Counter({
      name: `${prefix}selected_by_style_total`,
      help: "samples selected, per style tag (a sample with several styles counts in each)",
      labelNames: ["style"],
      registers,
    }),
    imageFlags: new Counter({
      name: `${prefix}image_flags_total`,
      help: "samples scored with less than they carried, by flag (no-image, image-missing, image-unreadable, image-corrupt, image-too-large, image-refused, text-truncated)",
      labelNames: ["flag"],
      registers,
    }),
    filesPublished: new Counter({
      name: `${prefix}files_published_total`,
      help: "Parquet files published (named by a manifest line), by kind (selected, scored)",
      labelNames: ["kind"],
      registers,
    }),
    bytesPublished: new Counter({
      name: `${prefix}bytes_published_total`,
      help: "bytes of the Parquet files published, by kind (selected, scored)",
      labelNames: ["kind"],
      registers,
    }),
    inferenceBatch: new Histogram({
      name: `${prefix}inference_batch_seconds`,
      help: "a worker's time per inference batch (featurizing in the worker + session.run), not the wait in its queue",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    consumerLag: new Gauge({
      name: `${prefix}consumer_lag`,
      help: "messages the group is behind per partition (end offset - committed offset)",
      labelNames: ["topic", "partition"],
      registers,
    }),
    buildInfo: new Gauge({
      name: `${prefix}build_info`,
      help: "1, labelled with the mmssr version, the model (id@version) and the execution provider",
      labelNames: ["version", "model_id", "execution_provider"],
      registers,
    }),
  };
}

/**
 * Counts one written batch of decisions: tallied here first, so prom-client's label lookup runs
 * once per label value instead of once per sample (a window holds tens of thousands).
 */
export function countDecisions(
  metrics: CurationMetrics,
  decisions: readonly {
    selected: boolean;
    pickedBy?: string;
    reason?: string;
    decidedAt: number;
    record: {
      timestamp: number;
      receivedAt?: number;
      score: { styles: readonly string[] };
    };
  }[],
  now = Date.now(),
): void {
  const tally = (into: Map<string, number>, key: string) => into.set(key, (into.get(key) ?? 0) + 1);
  const selected = new Map<string, number>();
  const notSelected = new Map<string, number>();
  const decidedStyles = new Map<string, number>();
  const selectedStyles = new Map<string, number>();
  let chosen = 0;
  for (const d of decisions) {
    if (d.selected) {
      chosen++;
      tally(selected, d.pickedBy ?? "unknown");
    } else tally(notSelected, d.reason ?? "unknown");
    for (const s of d.record.score.styles) {
      tally(decidedStyles, s);
      if (d.selected) tally(selectedStyles, s);
    }
    metrics.decisionLatency.observe(Math.max(0, now - d.record.timestamp) / 1000);
    if (d.record.receivedAt !== undefined)
      metrics.decisionLatencyFromArrival.observe(Math.max(0, now - d.record.receivedAt) / 1000);
  }
  for (const [capability, n] of selected) metrics.selected.inc({ capability }, n);
  for (const [reason, n] of notSelected) metrics.notSelected.inc({ reason }, n);
  for (const [style, n] of decidedStyles) metrics.decidedByStyle.inc({ style }, n);
  for (const [style, n] of selectedStyles) metrics.selectedByStyle.inc({ style }, n);
  if (decisions.length > 0) metrics.windowSelectedShare.set(chosen / decisions.length);
}

/** Serves GET /metrics (Prometheus text format) and GET /healthz on host:port; 127.0.0.1 unless told otherwise. */
export async function serveMetrics(registry: Registry, port: number, host = "127.0.0.1"): Promise<Server> {
  collectDefaultMetrics({ register: registry });
  const server = createServer((req, res) => {
    // the container's health check: the metrics port is on wherever the curator runs, the
    // admin API only where a token is given
    if (req.url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
      return;
    }
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry
      .metrics()
      .then((text) => res.writeHead(200, { "content-type": registry.contentType }).end(text))
      .catch((err) => res.writeHead(500).end(String(err)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new MmssrError(
          ERROR_CODES.PORT_UNAVAILABLE,
          `--metrics-port: cannot listen on ${host}:${port} (${err.code === "EADDRINUSE" ? "in use by another process" : err.message})`,
          { cause: err },
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return server;
}
