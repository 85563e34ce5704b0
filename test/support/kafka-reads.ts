/**
 * Reads of a topic and a group that end-to-end checks share: produce a JSONL file through the
 * CLI, partition ends, committed offsets, and the dead-letter topic's origins.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Kafka } from "kafkajs";
import { REPO } from "./curate-process.js";
import { freshGroup, waitFor } from "./kafka.js";

const exec = promisify(execFile);

/** `mmssr produce` of a JSONL file; throws unless every record went out. */
export async function produceFile(list: string[], topic: string, file: string): Promise<void> {
  const { stdout } = await exec(
    process.execPath,
    [join(REPO, "bin", "mmssr.js"), "produce", "--brokers", list.join(","), "--topic", topic, "--in", file],
    { cwd: REPO, maxBuffer: 16 * 1024 * 1024 },
  );
  if (!/^produced (\d+) of \1 records/.test(stdout)) throw new Error(`produce ${file}: ${stdout}`);
}

/** Ends of the topic's partitions (next offset) by partition. */
export async function topicEnds(kafka: Kafka, topic: string): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  } finally {
    await admin.disconnect();
  }
}

/** The group's committed offsets of the topic by partition (-1: none). */
export async function committedOffsets(
  kafka: Kafka,
  group: string,
  topic: string,
): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map(t.partitions.map((p) => [p.partition, BigInt(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/** Every message of the dead-letter topic: origin "partition:offset", code. */
export async function deadLetters(
  kafka: Kafka,
  dlqTopic: string,
): Promise<{ origin: string; code: string }[]> {
  const end = [...(await topicEnds(kafka, dlqTopic)).values()].reduce((a, b) => a + b, 0n);
  const out: { origin: string; code: string }[] = [];
  if (end === 0n) return out;
  const consumer = kafka.consumer({ groupId: freshGroup("dlq-reader") });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: dlqTopic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const h = (k: string): string => String(message.headers?.[k] ?? "");
        out.push({
          origin: `${h("mmssr-origin-partition")}:${h("mmssr-origin-offset")}`,
          code: h("mmssr-code"),
        });
      },
    });
    await waitFor(() => BigInt(out.length) >= end, { timeoutMs: 30_000, what: `${end} dead letters` });
  } finally {
    await consumer.disconnect();
  }
  return out;
}
