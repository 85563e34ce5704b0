/**
 * The broker the tests run against, and the kafkajs usage the Source builds on: produce,
 * consume with autoCommit off and manually resolved batches, commit by hand, and resume from
 * the committed offsets in a new consumer of the same group.
 */

import type { Consumer, EachBatchPayload, Kafka } from "kafkajs";
import { afterEach, describe, expect, inject, it } from "vitest";
import { brokers, freshGroup, freshTopic, testKafka, waitFor } from "../support/kafka.js";

interface Seen {
  partition: number;
  offset: string;
  i: number;
}

const PARTITIONS = 3;

describe("local Kafka broker", () => {
  const open: Array<{ disconnect(): Promise<void> }> = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.disconnect()));
  });

  /** A consumer of `group` that records every message (value {"i": n}) and resolves offsets one by one. */
  async function startConsumer(kafka: Kafka, topic: string, group: string, seen: Seen[]): Promise<Consumer> {
    const consumer = kafka.consumer({
      groupId: group,
      sessionTimeout: 10_000,
      heartbeatInterval: 1_000,
      maxWaitTimeInMs: 100,
    });
    open.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
        for (const message of batch.messages) {
          if (!isRunning() || isStale()) break;
          const { i } = JSON.parse(message.value?.toString("utf8") ?? "null") as { i: number };
          seen.push({ partition: batch.partition, offset: message.offset, i });
          resolveOffset(message.offset);
          await heartbeat();
        }
      },
    });
    return consumer;
  }

  async function produce(kafka: Kafka, topic: string, from: number, to: number): Promise<void> {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    open.push(producer);
    await producer.connect();
    const messages = [];
    for (let i = from; i < to; i++) messages.push({ key: `k${i}`, value: JSON.stringify({ i }) });
    await producer.send({ topic, acks: -1, messages });
  }

  it("is the one the global setup provides", () => {
    expect(brokers()).toEqual(inject("kafkaBrokers").split(","));
  });

  it("delivers each message once with manual commits, and a new consumer resumes after the commit", async () => {
    const kafka = testKafka("broker-test");
    const topic = await freshTopic("broker-test", PARTITIONS);
    const group = freshGroup("broker-test");

    await produce(kafka, topic, 0, 100);
    const first: Seen[] = [];
    const consumer = await startConsumer(kafka, topic, group, first);
    await waitFor(() => first.length >= 100, { what: "the first consumer to see 100 messages" });

    // All of them, each once, and spread over the partitions by key.
    expect(first.map((s) => s.i).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(new Set(first.map((s) => `${s.partition}:${s.offset}`)).size).toBe(100);
    expect(new Set(first.map((s) => s.partition)).size).toBe(PARTITIONS);

    // autoCommit is off: nothing is committed until we say so.
    const admin = kafka.admin();
    open.push(admin);
    await admin.connect();
    const committed = async () =>
      (await admin.fetchOffsets({ groupId: group, topics: [topic] }))[0].partitions
        .map((p) => ({ partition: p.partition, offset: p.offset }))
        .sort((a, b) => a.partition - b.partition);
    expect((await committed()).every((p) => p.offset === "-1")).toBe(true);

    // Commit the next offset to read on each partition: what a Source does once the
    // records below it are decided.
    const next = new Map<number, string>();
    for (const s of first) {
      const after = (BigInt(s.offset) + 1n).toString();
      if (!next.has(s.partition) || BigInt(after) > BigInt(next.get(s.partition) as string)) {
        next.set(s.partition, after);
      }
    }
    await consumer.commitOffsets([...next].map(([partition, offset]) => ({ topic, partition, offset })));
    const ends = (await admin.fetchTopicOffsets(topic))
      .map((p) => ({ partition: p.partition, offset: p.high }))
      .sort((a, b) => a.partition - b.partition);
    expect(await committed()).toEqual(ends);
    await consumer.disconnect();

    // A new consumer in the same group starts where the commit left off: only new messages.
    await produce(kafka, topic, 100, 120);
    const second: Seen[] = [];
    await startConsumer(kafka, topic, group, second);
    await waitFor(() => second.length >= 20, { what: "the second consumer to see the 20 new messages" });
    expect(second.map((s) => s.i).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, k) => 100 + k),
    );
    for (const s of second) {
      expect(BigInt(s.offset) >= BigInt(next.get(s.partition) ?? "0")).toBe(true);
    }
  });
});
