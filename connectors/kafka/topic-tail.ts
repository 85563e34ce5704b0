import type { Admin, Consumer, Kafka, KafkaMessage } from "kafkajs";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";

export interface TopicTailOptions {
  topic: string;
  /** a consumer group of this reader's own: it commits nothing and is deleted at stop */
  groupId: string;
  /** every message, in partition order; `caughtUp` tells whether it came after the end seen at start */
  onMessage: (message: KafkaMessage, partition: number, caughtUp: boolean) => void;
  /** give up reaching the end after this long (default 60 s) */
  timeoutMs?: number;
  /** names the topic in errors */
  what?: string;
}

export interface TopicTail {
  /** resolves once every message that was in the topic at start was handed to onMessage */
  readonly caughtUp: Promise<void>;
  /** stops reading and deletes the reader's group */
  stop(): Promise<void>;
}

/**
 * Reads a whole topic from its beginning and then follows it. kafkajs has no manual partition
 * assignment, so the reader joins a group of its own that never commits (a group without
 * offsets leaves nothing behind once empty; it is deleted at stop as well). Used for the
 * control topic (a group's policy) and `mmssr dlq` (dead letters).
 */
export async function tailTopic(kafka: Kafka, admin: Admin, options: TopicTailOptions): Promise<TopicTail> {
  const { topic } = options;
  const what = options.what ?? `topic ${topic}`;
  const ends = new Map(
    (await admin.fetchTopicOffsets(topic)).map((p) => [
      p.partition,
      { low: BigInt(p.low), high: BigInt(p.high) },
    ]),
  );
  const behind = new Set([...ends].filter(([, e]) => e.high > e.low).map(([p]) => p));
  let caughtUp = behind.size === 0;
  let reach: () => void = () => {};
  const reached = new Promise<void>((resolve) => {
    reach = resolve;
  });
  if (caughtUp) reach();
  const consumer: Consumer = kafka.consumer({ groupId: options.groupId, allowAutoTopicCreation: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat }) => {
      for (const m of batch.messages) options.onMessage(m, batch.partition, caughtUp);
      const end = ends.get(batch.partition);
      if (!caughtUp && end && BigInt(batch.lastOffset()) + 1n >= end.high) {
        behind.delete(batch.partition);
        if (behind.size === 0) {
          caughtUp = true;
          reach();
        }
      }
      await heartbeat();
    },
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const caughtUpOrTimeout = Promise.race([
    reached,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new MmssrError(
              ERROR_CODES.IO,
              `${what}: could not read it to its end within ${timeoutMs / 1000} s`,
              {
                retriable: true,
              },
            ),
          ),
        timeoutMs,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  caughtUpOrTimeout.catch(() => {});
  return {
    caughtUp: caughtUpOrTimeout,
    async stop() {
      clearTimeout(timer);
      await consumer.disconnect().catch(() => {});
      await admin.deleteGroups([options.groupId]).catch(() => {});
    },
  };
}
