import type { Producer } from "kafkajs";
import type { DeadLetterSink } from "../../src/stream/ports.js";
import { createKafka, type KafkaConnectionOptions } from "./kafka-client.js";

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
