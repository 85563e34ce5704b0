import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { parseBrokers } from "../../../connectors/kafka/kafka-client.js";
import {
  type ConfigKey,
  defaultOf,
  loadConfigFile,
  type ResolvedConfig,
  resolveCurateConfig,
} from "../../app/curate-config.js";
import { type CurateRun, type CurateSummary, runCurate } from "../../app/curator.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { createLogger } from "../../util/logger.js";
import { usageError } from "../cli-errors.js";
import { formatDecisionTable } from "../format-summary.js";
import { addImageOptions, checkImageBase, parseHostList } from "../image-flags.js";
import {
  addPolicyFlags,
  givenPolicyFlags,
  POLICY_FLAGS,
  policyFlagOf,
  policyInputOf,
} from "../policy-flags.js";

interface CurateFlags {
  brokers?: string;
  topic?: string;
  group?: string;
  in?: string;
  policyFile?: string;
  out: string;
  mode: string;
  windowSize: string;
  windowMs: string;
  model?: string;
  untilIdle?: string;
  workers: string;
  threads: string;
  ep: string;
  cudaFallback?: boolean;
  images: boolean;
  imageSource?: string;
  badImage: string;
  dlqTopic?: string;
  outputTopic?: string;
  controlTopic?: string;
  imageBase?: string;
  allowImagesOutsideBase?: boolean;
  allowImageHosts?: string;
  allowPrivateImageHosts?: boolean;
  maxMissingImages?: string;
  metricsPort?: string;
  metricsHost?: string;
  adminPort?: string;
  adminHost: string;
  adminTokenFile?: string;
  adminInsecure?: boolean;
  rotateRows: string;
  rotateMs: string;
  progressEvery: string;
  maxMessageBytes: string;
  [policyFlag: string]: unknown;
}

export function registerCurateCommand(program: Command): void {
  const command = program
    .command("curate")
    .description(
      "curate a Kafka topic (or a samples file): score, select the best and most diverse share, publish Parquet",
    )
    .option("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .option("--topic <name>", "topic of incoming samples")
    .option("--group <id>", "consumer group (instances of one group share the partitions)")
    .option(
      "--in <file>",
      "instead of Kafka: a samples file (.jsonl, .json, .parquet), curated through the same graph (dead letters: DIR/dead-letters.jsonl)",
    )
    .option(
      "--policy-file <file>",
      "with --in: where the selection policy lives (mmssr policy set --policy-file changes it)",
    )
    .option(
      "--out <dir>",
      "output (shareable by a fleet): DIR/selected/*.parquet, DIR/scored/*.parquet, DIR/manifests/<instance>.jsonl",
    )
    .option(
      "--mode <mode>",
      `window (the offline selector on each window) or continuous (each sample within --max-delay-ms)${dflt("mode")}`,
    )
    .option(
      "--config <file>",
      "settings from a YAML or JSON file (keys: these flags in camelCase, policy: a section); MMSSR_<KEY> environment variables override it, flags override both (mmssr config check <file> shows the result)",
    );
  addPolicyFlags(command);
  addImageOptions(command, {
    noImages: "do not load images: text-only scoring (flag no-image)",
    imageBase:
      "images of messages are read only inside this folder (relative paths resolve against it; default: the current folder)",
    outsideBase: "also read local image paths outside --image-base (trusted producers only)",
    allowHosts: "fetch image URLs from these hosts (comma list; *.example.com; default: none)",
    allowPrivate: "also fetch from loopback, link-local and private addresses",
    badImage:
      "a sample whose image cannot be used: text-only (scored, flagged) or reject (dead-lettered, image-unusable)",
    maxMissing:
      "exit 2 at the end when more than this share (0..1) of the samples naming an image could not use it",
  });
  command
    .option("--window-size <n>", `samples per window${dflt("windowSize")}`)
    .option(
      "--window-ms <ms>",
      `a window closes this long after its first sample, full or not${dflt("windowMs")}`,
    )
    .option("--model <dir>", "model folder (default: the bundled mmssr-lite)")
    .option("--workers <n>", `inference worker threads${dflt("workers")}`)
    .option("--threads <n>", `ONNX Runtime intra-op threads per worker${dflt("threads")}`)
    .option("--ep <provider>", `execution provider: cpu or cuda${dflt("ep")}`)
    .option("--cuda-fallback", "if CUDA cannot load, run on CPU instead of failing")
    .option("--image-source <name>", "image_source of samples that name none (default: unknown)")
    .option(
      "--until-idle <seconds>",
      "drain, publish, commit and exit once nothing arrived for this long and the group is caught up (lag 0)",
    )
    .option("--dlq-topic <name>", "dead-letter topic (default <topic>.dlq)")
    .option("--output-topic <name>", "also send selected samples to this topic (key = sample id)")
    .option(
      "--metrics-port <port>",
      "serve Prometheus metrics at /metrics (default: MMSSR_METRICS_PORT, else off)",
    )
    .option("--metrics-host <host>", `address the metrics server binds to${dflt("metricsHost")}`)
    .option(
      "--control-topic <name>",
      "the group's policy channel (compacted, key = group; default <topic>.control): its policy wins over the flags",
    )
    .option(
      "--admin-port <port>",
      "serve the admin API (policy, status, drain, health, metrics) on this port (0: any free one, printed at start)",
    )
    .option("--admin-host <host>", `address the admin API binds to${dflt("adminHost")}`)
    .option(
      "--admin-token-file <file>",
      "bearer token of the admin API (else MMSSR_ADMIN_TOKEN); required unless --admin-insecure",
    )
    .option("--admin-insecure", "admin API without a token (only on a loopback --admin-host)")
    .option(
      "--max-message-bytes <n>",
      `dead-letter (too-large) a message over this many bytes; raise it with the broker's message.max.bytes for large inline images${dflt("maxMessageBytes")}`,
    )
    .option(
      "--progress-every <seconds>",
      `print a progress line (read, scored, selected, dead-lettered, lag, rate) this often; 0: never${dflt("progressEvery")}`,
    )
    .option("--rotate-rows <n>", `publish a partition's files at this many rows${dflt("rotateRows")}`)
    .option(
      "--rotate-ms <ms>",
      `... or this long after their oldest row (publish latency)${dflt("rotateMs")}`,
    )
    .option(
      "--session-timeout-ms <ms>",
      `the Kafka group session: a member silent this long loses its partitions${dflt("sessionTimeoutMs")}`,
    )
    .option(
      "--heartbeat-interval-ms <ms>",
      `heartbeats to the group coordinator, at most a third of the session${dflt("heartbeatIntervalMs")}`,
    )
    .option("--log-level <level>", `fatal, error, warn, info, debug, trace or silent${dflt("logLevel")}`)
    .option(
      "--log-format <format>",
      `text (a line per event) or json (pino's JSON lines, for log shippers)${dflt("logFormat")}`,
    )
    .action(async (_flags: CurateFlags, cmd: Command) => {
      const resolved = await resolveCurateCommand(cmd);
      const run = await curateRunOf(resolved);
      const { config } = resolved;
      // SIGTERM / SIGINT / SIGHUP: drain, publish, commit, exit (a second one exits at once)
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stop.signal.aborted) process.exit(signal === "SIGINT" ? 130 : signal === "SIGHUP" ? 129 : 143);
        run.logger?.warn(`${signal}: draining (publish, commit, then exit)`);
        stop.abort();
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
      // SIGHUP (a closed terminal) drains too: nothing is lost, nothing is left half done
      process.on("SIGHUP", onSignal);
      const stats = await runCurate({ ...run, signal: stop.signal });
      process.removeListener("SIGTERM", onSignal);
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGHUP", onSignal);
      process.stdout.write(`${formatCurateStats(stats)}\n`);
      const maxMissing = config.maxMissingImages;
      if (
        maxMissing !== undefined &&
        stats.images.named > 0 &&
        stats.images.failed / stats.images.named > maxMissing
      )
        throw new MmssrError(
          ERROR_CODES.BAD_ROW,
          `${stats.images.failed} of ${stats.images.named} images could not be used, more than --max-missing-images ${maxMissing} (${stats.images.summary})`,
        );
    });
}

/** ` (default: X)` for a help text, from the schema (the one place defaults live). */
function dflt(key: ConfigKey): string {
  const v = defaultOf(key);
  return v === undefined ? "" : ` (default: ${String(v)})`;
}

/**
 * The curate command's effective settings: its --config file, MMSSR_* environment variables
 * and the flags given on the command line (not commander's defaults: the schema has those).
 */
export async function resolveCurateCommand(cmd: Command): Promise<ResolvedConfig> {
  const opts = cmd.opts() as Record<string, unknown>;
  // given on the command line, split into settings and policy flags (--config names the file)
  const given = Object.fromEntries(
    Object.entries(opts).filter(([attr]) => cmd.getOptionValueSource(attr) === "cli"),
  );
  const flags: Partial<Record<ConfigKey, string | boolean>> = {};
  for (const [attr, value] of Object.entries(given))
    if (
      attr !== "config" &&
      !POLICY_ATTRS.has(attr) &&
      (typeof value === "string" || typeof value === "boolean")
    )
      flags[attr as ConfigKey] = value;
  const file = typeof opts.config === "string" ? await loadConfigFile(opts.config) : undefined;
  return resolveCurateConfig({
    file,
    env: process.env,
    flags,
    policyFlags: { input: policyInputOf(given), given: givenPolicyFlags(given), flagOf: policyFlagOf },
  });
}

const POLICY_ATTRS = new Set(POLICY_FLAGS.map((f) => f.attr));

/**
 * What runCurate gets from the settings: the source, the admin API with its token, the image
 * rules, the logger. Checks what the schema cannot (folders exist, token file readable).
 */
export async function curateRunOf(r: ResolvedConfig): Promise<CurateRun> {
  const c = r.config;
  if (c.imageBase !== undefined) await checkImageBase(c.imageBase);
  const allowHosts = parseHostList(c.allowImageHosts?.join(","));
  const admin =
    c.adminPort === undefined
      ? undefined
      : {
          port: c.adminPort,
          host: c.adminHost,
          token: await adminToken(c.adminTokenFile),
          insecure: c.adminInsecure,
        };
  const logger = createLogger({ level: c.logLevel, format: c.logFormat, name: "mmssr curate" });
  const source: CurateRun["source"] =
    c.in !== undefined
      ? { kind: "file", path: c.in, policyFile: c.policyFile }
      : {
          kind: "kafka",
          brokers: parseBrokers((c.brokers ?? []).join(",")),
          topic: c.topic as string,
          group: c.group as string,
          dlqTopic: c.dlqTopic,
          outputTopic: c.outputTopic,
          controlTopic: c.controlTopic,
          sessionTimeoutMs: c.sessionTimeoutMs,
          heartbeatIntervalMs: c.heartbeatIntervalMs,
        };
  return {
    source,
    out: c.out,
    policy: c.policy,
    givenPolicyFlags: r.givenPolicy,
    mode: c.mode,
    windowSize: c.windowSize,
    windowMs: c.windowMs,
    model: c.model,
    workers: c.workers,
    threads: c.threads,
    executionProvider: c.ep,
    cudaFallback: c.cudaFallback,
    loadImages: c.images,
    imageSource: c.imageSource,
    badImage: c.badImage,
    idleMs: c.untilIdle === undefined ? undefined : c.untilIdle * 1000,
    imageBase: c.imageBase,
    images: {
      allowOutsideBase: c.allowImagesOutsideBase,
      allowHosts,
      allowPrivateAddresses: c.allowPrivateImageHosts,
    },
    metricsPort: c.metricsPort,
    metricsHost: c.metricsHost,
    rotateRows: c.rotateRows,
    rotateMs: c.rotateMs,
    admin,
    progressMs: c.progressEvery * 1000,
    maxMessageBytes: c.maxMessageBytes,
    logger,
  };
}

/** The admin API's token: --admin-token-file, else MMSSR_ADMIN_TOKEN, else none. */
async function adminToken(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return process.env.MMSSR_ADMIN_TOKEN?.trim() || undefined;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw usageError(`--admin-token-file: cannot read ${file}: ${(err as Error).message}`);
  }
  const token = text.trim();
  if (token === "") throw usageError(`--admin-token-file: ${file} is empty`);
  return token;
}

export function formatCurateStats(s: CurateSummary): string {
  const lines = [
    `read ${s.read} records: ${s.scored} scored with ${s.modelId} in ${s.windows} ${s.mode === "continuous" ? "scoring batch(es)" : "window(s)"}, ` +
      `${s.selected} selected, ${s.deadLettered} dead-lettered; ${s.commits} commit(s)`,
    `decided: published ${s.published.scored} scored / ${s.published.selected} selected row(s) in ${s.published.files} file(s); ` +
      `${s.skippedPublished} read again and already published; ${s.givenUp} given up to other owners`,
  ];
  lines.push(formatDecisionTable(s.selectedBy, s.notSelectedBy, CAPABILITY_IDS));
  lines.push(s.images.summary);
  if (s.lag)
    lines.push(
      `lag: ${s.lag.map((l) => `${l.partition}=${l.lag}`).join(" ")} (total ${s.lag.reduce((a, l) => a + BigInt(l.lag), 0n)})`,
    );
  lines.push(
    `-> ${join(s.out, "selected")}, ${join(s.out, "scored")}, ${join(s.out, "manifests")}/${s.instance}.jsonl`,
  );
  return lines.join("\n");
}
