import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { parseBrokers } from "../../../connectors/kafka/kafka-client.js";
import { type CurateSummary, runCurate } from "../../app/curator.js";
import { isLoopbackHost } from "../../control/admin-server.js";
import { parseIntegerFlag, parseNumberFlag, usageError } from "../cli-errors.js";
import { addPolicyFlags, givenPolicyFlags, policyFromFlags } from "../policy-flags.js";

interface CurateFlags {
  brokers: string;
  topic: string;
  group: string;
  out: string;
  mode: string;
  windowSize: string;
  windowMs: string;
  model?: string;
  untilIdle?: string;
  workers: string;
  dlqTopic?: string;
  outputTopic?: string;
  controlTopic?: string;
  imageBase?: string;
  metricsPort?: string;
  metricsHost?: string;
  adminPort?: string;
  adminHost: string;
  adminTokenFile?: string;
  adminInsecure?: boolean;
  rotateRows: string;
  rotateMs: string;
  progressEvery: string;
  [policyFlag: string]: unknown;
}

export function registerCurateCommand(program: Command): void {
  const command = program
    .command("curate")
    .description("curate a Kafka topic: score, select the best and most diverse share, publish Parquet")
    .requiredOption("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .requiredOption("--topic <name>", "topic of incoming samples")
    .requiredOption("--group <id>", "consumer group (instances of one group share the partitions)")
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
  command
    .option("--window-size <n>", "samples per window", "20000")
    .option("--window-ms <ms>", "a window closes this long after its first sample, full or not", "60000")
    .option("--model <dir>", "model folder (default: the bundled mmssr-lite)")
    .option("--workers <n>", "inference worker threads", "1")
    .option(
      "--until-idle <seconds>",
      "drain, publish, commit and exit once nothing arrived for this long and the group is caught up (lag 0)",
    )
    .option("--dlq-topic <name>", "dead-letter topic (default <topic>.dlq)")
    .option("--output-topic <name>", "also send selected samples to this topic (key = sample id)")
    .option("--image-base <dir>", "relative image paths resolve against this folder")
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
      "--progress-every <seconds>",
      "print a progress line (read, scored, selected, dead-lettered, lag, rate) this often; 0: never",
      "10",
    )
    .option("--rotate-rows <n>", "publish a partition's files at this many rows", "100000")
    .option("--rotate-ms <ms>", "... or this long after their oldest row (publish latency)", "60000")
    .action(async (flags: CurateFlags) => {
      if (flags.mode !== "window" && flags.mode !== "continuous")
        throw usageError(`--mode: expected window or continuous, got ${JSON.stringify(flags.mode)}`);
      const brokers = parseBrokers(flags.brokers);
      if (brokers.length === 0) throw usageError("--brokers: no broker given");
      const policy = policyFromFlags(flags);
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
        source: {
          kind: "kafka",
          brokers,
          topic: flags.topic,
          group: flags.group,
          dlqTopic: flags.dlqTopic,
          outputTopic: flags.outputTopic,
          controlTopic: flags.controlTopic,
        },
        out: flags.out,
        policy,
        givenPolicyFlags: givenPolicyFlags(flags),
        mode: flags.mode,
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
        admin,
        progressMs: parseNumberFlag("--progress-every", flags.progressEvery) * 1000,
      });
      process.removeListener("SIGTERM", onSignal);
      process.removeListener("SIGINT", onSignal);
      process.removeListener("SIGHUP", onSignal);
      process.stdout.write(`${formatCurateStats(stats)}\n`);
    });
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
  if (s.lag)
    lines.push(
      `lag: ${s.lag.map((l) => `${l.partition}=${l.lag}`).join(" ")} (total ${s.lag.reduce((a, l) => a + BigInt(l.lag), 0n)})`,
    );
  lines.push(
    `-> ${join(s.out, "selected")}, ${join(s.out, "scored")}, ${join(s.out, "manifests")}/${s.instance}.jsonl`,
  );
  return lines.join("\n");
}
