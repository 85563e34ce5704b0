import { readFile, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import type { Command } from "commander";
import { createKafka, ensureTopics, parseBrokers } from "../../../connectors/kafka/kafka-client.js";
import { syntheticSamples } from "../../../models/synthetic-samples.js";
import { type CurateRun, runCurate } from "../../app/curator.js";
import { packageRoot } from "../../util/package-root.js";
import { claimOwnedDir } from "../../util/safe-paths.js";
import { parseIntegerFlag, parseNumberFlag } from "../cli-errors.js";
import { formatCurateStats } from "./curate-command.js";

/** The bundled real records (src/demo/README.md says where they come from and their licences). */
export const DEMO_SAMPLES = join("src", "demo", "demo-samples.jsonl");
/** The file that marks a folder as one `mmssr demo` made (so a later run may replace its output). */
const DEMO_MARKER = ".mmssr-demo";
/** A generated scored pool for `mmssr select` examples. */
export const DEMO_POOL = join("src", "demo", "demo-pool.jsonl");

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description(
      "the main job on the embedded default: curate bundled samples through the full graph (file source)",
    )
    .option(
      "--out-dir <dir>",
      "where the result goes: a new or empty folder, or one an earlier demo made (its input and curated/ are replaced)",
      "out/demo",
    )
    .option("--ratio <r>", "share of each window to select", "0.3")
    .option("--synthetic <n>", "synthetic samples added for volume", "3000")
    .option("--window-size <n>", "samples per window", "1000")
    .option(
      "--kafka <brokers>",
      "go through Kafka: produce the input to a fresh topic and curate it from there",
    )
    .action(
      async (flags: {
        outDir: string;
        ratio: string;
        synthetic: string;
        windowSize: string;
        kafka?: string;
      }) => {
        const root = packageRoot();
        const outDir = resolve(flags.outDir);
        // Only what an earlier demo wrote here is replaced; a folder of the user's is refused.
        await claimOwnedDir(outDir, DEMO_MARKER, "--out-dir", "mmssr demo");
        await rm(join(outDir, "input.jsonl"), { force: true });
        await rm(join(outDir, "curated"), { recursive: true, force: true });
        // Input: the bundled real records, synthetic volume, and two malformed lines that must end
        // up dead-lettered with their reasons rather than lost.
        const real = (await readFile(join(root, DEMO_SAMPLES), "utf8")).trimEnd().split("\n");
        const synthetic = syntheticSamples(parseIntegerFlag("--synthetic", flags.synthetic), 2026).map((s) =>
          JSON.stringify(s),
        );
        const broken = ["{ this is not JSON", JSON.stringify({ id: "no-conversation", conversations: [] })];
        const input = join(outDir, "input.jsonl");
        const lines = [...real, ...synthetic];
        lines.splice(Math.min(100, lines.length), 0, broken[0]);
        lines.splice(Math.min(200, lines.length), 0, broken[1]);
        await writeFile(input, `${lines.join("\n")}\n`);
        process.stdout.write(
          `mmssr demo: ${real.length} bundled real records + ${synthetic.length} synthetic + 2 malformed -> ${relative(process.cwd(), input)}\n` +
            "graph: file source -> parse/validate (bad -> dead letters) -> windows -> mmssr-lite (worker threads) -> window selection -> Parquet sink\n",
        );
        let source: CurateRun["source"] = { kind: "file", path: input };
        if (flags.kafka) {
          const brokers = parseBrokers(flags.kafka);
          const topic = `mmssr-demo-${Date.now().toString(36)}`;
          const kafka = createKafka({ brokers, clientId: "mmssr-demo" });
          const admin = kafka.admin();
          await admin.connect();
          try {
            await ensureTopics(admin, [
              { topic, numPartitions: 3 },
              { topic: `${topic}.dlq`, numPartitions: 1 },
            ]);
          } finally {
            await admin.disconnect();
          }
          const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
          await producer.connect();
          try {
            for (let k = 0; k < lines.length; k += 500)
              await producer.send({
                topic,
                acks: -1,
                messages: lines.slice(k, k + 500).map((value) => ({ key: null, value })),
              });
          } finally {
            await producer.disconnect();
          }
          process.stdout.write(
            `produced ${lines.length} messages to ${topic} on ${brokers.join(",")}; curating it...\n`,
          );
          source = { kind: "kafka", brokers, topic, group: `${topic}-curator` };
        }
        const stats = await runCurate({
          source,
          idleMs: flags.kafka ? 3000 : undefined,
          out: join(outDir, "curated"),
          policy: { ratio: parseNumberFlag("--ratio", flags.ratio) },
          windowSize: parseIntegerFlag("--window-size", flags.windowSize, 1),
          windowMs: 60_000,
          imageBase: join(root, "src", "demo"),
          log: () => {},
        });
        process.stdout.write(`${formatCurateStats(stats)}\n`);
        const letters =
          source.kind === "kafka"
            ? `topic ${source.topic}.dlq`
            : relative(process.cwd(), join(outDir, "curated", "dead-letters.jsonl"));
        process.stdout.write(`dead letters (with reasons): ${letters}\n`);
      },
    );
}
