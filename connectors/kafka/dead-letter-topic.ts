import { hostname } from "node:os";
import type { Producer } from "kafkajs";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import type { DeadLetterSink } from "../../src/stream/ports.js";
import { createKafka, FIRST_CONTACT_RETRY, type KafkaConnectionOptions } from "./kafka-client.js";
import { tailTopic } from "./topic-tail.js";

/** Headers a dead letter carries: why it was refused and where it came from. */
export const DEAD_LETTER_HEADERS = {
  code: "mmssr-code",
  reason: "mmssr-reason",
  topic: "mmssr-origin-topic",
  partition: "mmssr-origin-partition",
  offset: "mmssr-origin-offset",
} as const;

/**
 * Dead letters go to a topic (default <topic>.dlq) unchanged (key and value as received),
 * with the reason and the original topic/partition/offset in headers. The producer is
 * idempotent, so a retry after a lost acknowledgement does not write a letter twice.
 */
export async function createDeadLetterTopic(
  options: KafkaConnectionOptions & { topic: string },
): Promise<DeadLetterSink> {
  const producer: Producer = createKafka({ ...options, clientId: options.clientId ?? "mmssr-dlq" }).producer({
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  return {
    async send(letters) {
      if (letters.length === 0) return;
      await producer.send({
        topic: options.topic,
        acks: -1,
        messages: letters.map((l) => ({
          key: l.key,
          value: l.value ? Buffer.from(l.value.buffer, l.value.byteOffset, l.value.byteLength) : null,
          headers: {
            [DEAD_LETTER_HEADERS.code]: l.code,
            [DEAD_LETTER_HEADERS.reason]: l.reason,
            [DEAD_LETTER_HEADERS.topic]: l.origin.topic,
            [DEAD_LETTER_HEADERS.partition]: String(l.origin.partition),
            [DEAD_LETTER_HEADERS.offset]: l.origin.offset,
          },
        })),
      });
    },
    close: () => producer.disconnect(),
  };
}

/** A dead letter as `mmssr dlq` shows it: where it sits, why, where it came from, and its payload. */
export interface DeadLetterView {
  dlq: { topic: string; partition: number; offset: string; timestamp: string };
  code: string | null;
  reason: string | null;
  origin: { topic: string | null; partition: number | null; offset: string | null };
  key: string | null;
  /** the message value as UTF-8 text, or base64 when it is not UTF-8 */
  value: string | null;
  valueEncoding: "utf8" | "base64" | null;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Every dead letter in `topic` when it is called, in partition order (a throw-away reader group). */
export async function readDeadLetters(
  options: KafkaConnectionOptions & { topic: string; limit?: number },
): Promise<DeadLetterView[]> {
  const kafka = createKafka({
    ...options,
    clientId: options.clientId ?? "mmssr-dlq-reader",
    retry: FIRST_CONTACT_RETRY,
  });
  const admin = kafka.admin();
  await admin.connect();
  const letters: DeadLetterView[] = [];
  try {
    if (!(await admin.listTopics()).includes(options.topic))
      throw new MmssrError(ERROR_CODES.USAGE, `the dead-letter topic ${options.topic} does not exist`);
    const tail = await tailTopic(kafka, admin, {
      topic: options.topic,
      groupId: `mmssr-dlq-reader-${hostname()}-${process.pid}-${Date.now().toString(36)}`,
      what: `dead-letter topic ${options.topic}`,
      onMessage: (m, partition, caughtUp) => {
        if (caughtUp || (options.limit !== undefined && letters.length >= options.limit)) return;
        const header = (name: string): string | null => {
          const v = m.headers?.[name];
          return v === undefined ? null : Buffer.isBuffer(v) ? v.toString("utf8") : String(v);
        };
        let value: string | null = null;
        let valueEncoding: DeadLetterView["valueEncoding"] = null;
        if (m.value) {
          try {
            value = strictUtf8.decode(m.value);
            valueEncoding = "utf8";
          } catch {
            value = m.value.toString("base64");
            valueEncoding = "base64";
          }
        }
        const originPartition = header(DEAD_LETTER_HEADERS.partition);
        letters.push({
          dlq: {
            topic: options.topic,
            partition,
            offset: m.offset,
            timestamp: new Date(Number(m.timestamp)).toISOString(),
          },
          code: header(DEAD_LETTER_HEADERS.code),
          reason: header(DEAD_LETTER_HEADERS.reason),
          origin: {
            topic: header(DEAD_LETTER_HEADERS.topic),
            partition: originPartition === null ? null : Number(originPartition),
            offset: header(DEAD_LETTER_HEADERS.offset),
          },
          key: m.key ? m.key.toString("utf8") : null,
          value,
          valueEncoding,
        });
      },
    });
    try {
      await tail.caughtUp;
    } finally {
      await tail.stop();
    }
  } finally {
    await admin.disconnect().catch(() => {});
  }
  return letters;
}
