import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { parseBrokers } from "../../../connectors/kafka/kafka-client.js";
import { type CurateRun, type CurateSummary, runCurate } from "../../app/curator.js";
import { isLoopbackHost } from "../../control/admin-server.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../stream/parse-record.js";
import { parseIntegerFlag, parseNumberFlag, parseShareFlag, usageError } from "../cli-errors.js";
import { formatDecisionTable } from "../format-summary.js";
import { addImageOptions, checkImageBase, parseHostList } from "../image-flags.js";
import { addPolicyFlags, givenPolicyFlags, policyFromFlags } from "../policy-flags.js";

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
    .requiredOption(
      "--out <dir>",
      "output (shareable by a fleet): DIR/selected/*.parquet, DIR/scored/*.parquet, DIR/manifests/<instance>.jsonl",
    )
    .option(
      "--mode <mode>",
      "window (the offline selector on each window) or continuous (each sample within --max-delay-ms)",
      "window",
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
    .option("--window-size <n>", "samples per window", "20000")
    .option("--window-ms <ms>", "a window closes this long after its first sample, full or not", "60000")
    .option("--model <dir>", "model folder (default: the bundled mmssr-lite)")
    .option("--workers <n>", "inference worker threads", "1")
    .option("--threads <n>", "ONNX Runtime intra-op threads per worker", "1")
    .option("--ep <provider>", "execution provider: cpu or cuda", "cpu")
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
    .option("--metrics-host <host>", "address the metrics server binds to", "127.0.0.1")
    .option(
      "--control-topic <name>",
      "the group's policy channel (compacted, key = group; default <topic>.control): its policy wins over the flags",
    )
    .option(
      "--admin-port <port>",
      "serve the admin API (policy, status, drain, health, metrics) on this port (0: any free one, printed at start)",
    )
    .option("--admin-host <host>", "address the admin API binds to", "127.0.0.1")
    .option(
      "--admin-token-file <file>",
      "bearer token of the admin API (else MMSSR_ADMIN_TOKEN); required unless --admin-insecure",
    )
    .option("--admin-insecure", "admin API without a token (only on a loopback --admin-host)")
    .option(
      "--max-message-bytes <n>",
      "dead-letter (too-large) a message over this many bytes; raise it with the broker's message.max.bytes for large inline images",
      String(DEFAULT_MAX_MESSAGE_BYTES),
    )
    .option(
      "--progress-every <seconds>",
      "print a progress line (read, scored, selected, dead-lettered, lag, rate) this often; 0: never",
      "10",
    )
    .option("--rotate-rows <n>", "publish a partition's files at this many rows", "100000")
    .option("--rotate-ms <ms>", "... or this long after their oldest row (publish latency)", "60000")
    .action(async (flags: CurateFlags) => {
      if (flags.mode !== "window" && flags.mode !== "continuous")
        throw usageError(`--mode: expected window or continuous, got ${JSON.stringify(flags.mode)}`);
      const source = sourceOf(flags);
      const policy = policyFromFlags(flags);
      if (flags.mode === "continuous" && policy.ratio === undefined)
        throw usageError(
          "--mode continuous: needs --ratio (the share of incoming samples to admit); --budget is per window",
        );
      if (flags.imageBase !== undefined) await checkImageBase(flags.imageBase);
      const allowHosts = parseHostList(flags.allowImageHosts);
      const maxMissing = parseShareFlag("--max-missing-images", flags.maxMissingImages);
      const admin =
        flags.adminPort === undefined
          ? undefined
          : {
              port: parseIntegerFlag("--admin-port", flags.adminPort, 0),
              host: flags.adminHost,
              token: await adminToken(flags.adminTokenFile),
              insecure: flags.adminInsecure === true,
            };
      // Refused here, before anything connects (the server would refuse the same at start).
      if (admin?.insecure && !isLoopbackHost(admin.host))
        throw usageError(`--admin-insecure: only on a loopback --admin-host, not ${admin.host}`);
      if (admin && !admin.token && !admin.insecure)
        throw usageError(
          "--admin-port: the admin API needs a bearer token: set MMSSR_ADMIN_TOKEN or --admin-token-file (or --admin-insecure on a loopback --admin-host)",
        );
      // SIGTERM / SIGINT / SIGHUP: drain, publish, commit, exit (a second one exits at once)
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stop.signal.aborted) process.exit(signal === "SIGINT" ? 130 : signal === "SIGHUP" ? 129 : 143);
        process.stderr.write(`mmssr curate: ${signal}: draining (publish, commit, then exit)\n`);
        stop.abort();
      };
      process.on("SIGTERM", onSignal);
      process.on("SIGINT", onSignal);
      // SIGHUP (a closed terminal) drains too: nothing is lost, nothing is left half done
      process.on("SIGHUP", onSignal);
      const stats = await runCurate({
        signal: stop.signal,
        source,
        out: flags.out,
        policy,
        givenPolicyFlags: givenPolicyFlags(flags),
        mode: flags.mode,
        windowSize: parseIntegerFlag("--window-size", flags.windowSize, 1),
        windowMs: parseIntegerFlag("--window-ms", flags.windowMs, 1),
        model: flags.model,
        workers: parseIntegerFlag("--workers", flags.workers, 1),
        threads: parseIntegerFlag("--threads", flags.threads, 1),
        executionProvider: executionProviderOf(flags.ep),
        cudaFallback: flags.cudaFallback === true,
        loadImages: flags.images,
        imageSource: flags.imageSource,
        badImage: badImageOf(flags.badImage),
        idleMs:
          flags.untilIdle === undefined ? undefined : parseNumberFlag("--until-idle", flags.untilIdle) * 1000,
        imageBase: flags.imageBase,
        images: {
          allowOutsideBase: flags.allowImagesOutsideBase === true,
          allowHosts,
          allowPrivateAddresses: flags.allowPrivateImageHosts === true,
        },
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
        admin,
        progressMs: parseNumberFlag("--progress-every", flags.progressEvery) * 1000,
        maxMessageBytes: parseIntegerFlag("--max-message-bytes", flags.maxMessageBytes, 1),
      });
      process.removeListener("SIGTERM", onSignal);
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGHUP", onSignal);
      process.stdout.write(`${formatCurateStats(stats)}\n`);
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

/** The source of the flags: a Kafka topic (--brokers, --topic, --group) or a file (--in). */
function sourceOf(flags: CurateFlags): CurateRun["source"] {
  const kafkaFlags = (["brokers", "topic", "group"] as const).filter((k) => flags[k] !== undefined);
  if (flags.in !== undefined) {
    if (kafkaFlags.length > 0)
      throw usageError(`--in: a file source takes no ${kafkaFlags.map((k) => `--${k}`).join(", ")}`);
    for (const [flag, v] of [
      ["--dlq-topic", flags.dlqTopic],
      ["--output-topic", flags.outputTopic],
      ["--control-topic", flags.controlTopic],
    ] as const)
      if (v !== undefined) throw usageError(`${flag}: only for a Kafka source, not with --in`);
    return { kind: "file", path: flags.in, policyFile: flags.policyFile };
  }
  if (kafkaFlags.length < 3)
    throw usageError("give --brokers, --topic and --group (a Kafka topic), or --in (a samples file)");
  if (flags.policyFile !== undefined)
    throw usageError("--policy-file: only with --in (a Kafka group's policy lives on its control topic)");
  const brokers = parseBrokers(flags.brokers as string);
  if (brokers.length === 0) throw usageError("--brokers: no broker given");
  return {
    kind: "kafka",
    brokers,
    topic: flags.topic as string,
    group: flags.group as string,
    dlqTopic: flags.dlqTopic,
    outputTopic: flags.outputTopic,
    controlTopic: flags.controlTopic,
  };
}

function badImageOf(policy: string): "text-only" | "reject" {
  if (policy !== "text-only" && policy !== "reject")
    throw usageError(`--bad-image: expected text-only or reject, got ${JSON.stringify(policy)}`);
  return policy;
}

function executionProviderOf(ep: string): "cpu" | "cuda" {
  if (ep !== "cpu" && ep !== "cuda")
    throw usageError(`--ep: expected cpu or cuda, got ${JSON.stringify(ep)}`);
  return ep;
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
