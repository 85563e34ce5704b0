import type { Command } from "commander";
import { countSampleRecords, readSampleRecords } from "../../../connectors/files/sample-reader.js";
import {
  createKafka,
  ensureTopics,
  FIRST_CONTACT_RETRY,
  parseBrokers,
  securityFromEnv,
} from "../../../connectors/kafka/kafka-client.js";
import { parseIntegerFlag, usageError } from "../cli-errors.js";

interface ProduceFlags {
  brokers: string;
  topic: string;
  in: string;
  partitions: string;
  batch: string;
  createTopic?: boolean;
}

/**
 * Backfills a topic from a samples file: one message per record, key = the record's id when
 * it has one, value = the record as JSON. A line that is not JSON is sent as it is, so the
 * curator dead-letters it with its reason rather than the backfill losing it.
 */
export function registerProduceCommand(program: Command): void {
  program
    .command("produce")
    .description("backfill a Kafka topic from a samples file (.jsonl, .json array, .parquet)")
    .requiredOption("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .requiredOption("--topic <name>", "topic to write (created if missing)")
    .requiredOption("--in <file>", "samples: .jsonl, .json (LLaVA array) or .parquet")
    .option("--create-topic", "create the topic when it does not exist (else a missing topic is an error)")
    .option("--partitions <n>", "partitions when the topic is created (--create-topic)", "3")
    .option("--batch <n>", "messages per send", "500")
    .action(async (flags: ProduceFlags) => {
      const brokers = parseBrokers(flags.brokers);
      if (brokers.length === 0) throw usageError("--brokers: no broker given");
      const partitions = parseIntegerFlag("--partitions", flags.partitions, 1);
      const batchSize = parseIntegerFlag("--batch", flags.batch, 1);
      const total = await countSampleRecords(flags.in);
      const kafka = createKafka({ brokers, clientId: "mmssr-produce", ...securityFromEnv() });
      const admin = createKafka({
        brokers,
        clientId: "mmssr-produce",
        retry: FIRST_CONTACT_RETRY,
        ...securityFromEnv(),
      }).admin();
      await admin.connect();
      try {
        // A mistyped topic must not be created silently: only with --create-topic.
        if (flags.createTopic) {
          const created = await ensureTopics(admin, [{ topic: flags.topic, numPartitions: partitions }]);
          if (created.length > 0)
            process.stderr.write(`mmssr produce: created topic ${flags.topic} (${partitions} partitions)\n`);
        } else if (!(await admin.listTopics()).includes(flags.topic))
          throw usageError(
            `--topic: ${flags.topic} does not exist on ${brokers.join(",")} (give --create-topic to create it)`,
          );
      } finally {
        await admin.disconnect();
      }
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      let sent = 0;
      let raw = 0;
      const t0 = performance.now();
      try {
        let batch: { key: string | null; value: string }[] = [];
        const flush = async (): Promise<void> => {
          if (batch.length === 0) return;
          await producer.send({ topic: flags.topic, acks: -1, messages: batch });
          sent += batch.length;
          batch = [];
        };
        for await (const rec of readSampleRecords(flags.in)) {
          if ("error" in rec) {
            raw++;
            batch.push({ key: null, value: rec.raw ?? "" });
          } else {
            const id = (rec.value as { id?: unknown } | null)?.id;
            batch.push({
              key: typeof id === "string" || typeof id === "number" ? String(id) : null,
              value: JSON.stringify(rec.value),
            });
          }
          if (batch.length >= batchSize) await flush();
        }
        await flush();
      } finally {
        await producer.disconnect();
      }
      const secs = (performance.now() - t0) / 1000;
      process.stdout.write(
        `produced ${sent} of ${total} records to ${flags.topic} in ${secs.toFixed(1)} s` +
          `${raw > 0 ? ` (${raw} lines that are not JSON sent as they are: the curator will dead-letter them)` : ""}\n`,
      );
    });
}
