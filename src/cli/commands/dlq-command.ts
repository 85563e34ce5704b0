import type { Command } from "commander";
import { readDeadLetters } from "../../../connectors/kafka/dead-letter-topic.js";
import { parseBrokers, securityFromEnv } from "../../../connectors/kafka/kafka-client.js";
import { parseIntegerFlag, usageError } from "../cli-errors.js";

interface DlqFlags {
  brokers: string;
  topic?: string;
  dlqTopic?: string;
  limit?: string;
}

export function registerDlqCommand(program: Command): void {
  program
    .command("dlq")
    .description(
      "print the dead letters of a curated topic, one JSON line each: why (code, reason), where from (origin), and the payload",
    )
    .requiredOption("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .option("--topic <name>", "the curated topic (its dead letters are in <topic>.dlq)")
    .option("--dlq-topic <name>", "the dead-letter topic, when curators were given --dlq-topic")
    .option("--limit <n>", "print at most this many")
    .action(async (flags: DlqFlags) => {
      const brokers = parseBrokers(flags.brokers);
      if (brokers.length === 0) throw usageError("--brokers: no broker given");
      const topic = flags.dlqTopic ?? (flags.topic === undefined ? undefined : `${flags.topic}.dlq`);
      if (topic === undefined)
        throw usageError("give --topic (dead letters are in <topic>.dlq) or --dlq-topic");
      const limit = flags.limit === undefined ? undefined : parseIntegerFlag("--limit", flags.limit, 1);
      const letters = await readDeadLetters({ brokers, topic, limit, ...securityFromEnv() });
      const byCode = new Map<string, number>();
      let text = "";
      for (const l of letters) {
        text += `${JSON.stringify(l)}\n`;
        byCode.set(l.code ?? "(none)", (byCode.get(l.code ?? "(none)") ?? 0) + 1);
      }
      process.stdout.write(text);
      process.stderr.write(
        `mmssr dlq: ${letters.length} dead letter(s) in ${topic}${limit !== undefined && letters.length >= limit ? ` (--limit ${limit})` : ""}` +
          (byCode.size > 0 ? `: ${[...byCode].map(([c, n]) => `${c} ${n}`).join(", ")}` : "") +
          "\n",
      );
    });
}
