/**
 * The Kafka source, the parse step and the dead-letter topic against the real broker: a
 * backfilled topic of good and bad messages is read once; every good message becomes a
 * sample, every bad one lands in the DLQ with its reason and origin; commits hold.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDeadLetterTopic, DEAD_LETTER_HEADERS } from "../../connectors/kafka/dead-letter-topic.js";
import { createKafkaSource } from "../../connectors/kafka/kafka-source.js";
import { parseRawRecord } from "../../src/stream/parse-record.js";
import type { DeadLetter, SampleRecord } from "../../src/stream/stream-types.js";
import { brokers, freshGroup, freshTopic, testKafka, waitFor } from "../support/kafka.js";
import { runCli } from "../support/run-cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-kafka-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sample = (i: number) => ({
  id: `s${i}`,
  conversations: [
    { from: "human", value: `Question ${i}?` },
    { from: "gpt", value: `Answer ${i}.` },
  ],
});

describe("Kafka source + dead letters", () => {
  it("decides every message: samples out, bad ones to the DLQ with reason and origin", async () => {
    const topic = await freshTopic("src", 3);
    const dlqTopic = await freshTopic("src-dlq", 1);
    const input = join(dir, "mixed.jsonl");
    const lines: string[] = [];
    for (let i = 0; i < 60; i++) lines.push(JSON.stringify(sample(i)));
    lines.splice(10, 0, "{not json");
    lines.splice(20, 0, JSON.stringify({ id: "bad-sample", conversations: [] }));
    lines.splice(30, 0, JSON.stringify({ ...sample(999), id: "huge", pad: "x".repeat(5000) }));
    await writeFile(input, `${lines.join("\n")}\n`);
    const produced = await runCli([
      "produce",
      "--brokers",
      brokers().join(","),
      "--topic",
      topic,
      "--in",
      input,
    ]);
    expect(produced.code, produced.stderr).toBe(0);
    expect(produced.stdout).toMatch(/produced 63 of 63/);

    const group = freshGroup("src");
    const source = await createKafkaSource({ brokers: brokers(), topic, groupId: group });
    const dlq = await createDeadLetterTopic({ brokers: brokers(), topic: dlqTopic });
    const samples: SampleRecord[] = [];
    const letters: DeadLetter[] = [];
    const sub = source.records$.subscribe((raw) => {
      const parsed = parseRawRecord(raw, { maxMessageBytes: 4000 });
      if (parsed.ok) samples.push(parsed.record);
      else letters.push(parsed.deadLetter);
    });
    try {
      await waitFor(() => samples.length + letters.length === 63, {
        what: "63 decided messages",
        timeoutMs: 30_000,
      });
      expect(samples).toHaveLength(60);
      expect(new Set(samples.map((s) => s.sample.id)).size).toBe(60);
      expect(letters.map((l) => l.code).sort()).toEqual(["invalid-json", "invalid-sample", "too-large"]);
      await dlq.send(letters);

      // commit everything read: next offset = last + 1 per partition
      const next = new Map<string, string>();
      for (const r of [...samples.map((s) => s.origin), ...letters.map((l) => l.origin)]) {
        const key = `${r.topic}:${r.partition}`;
        const after = String(BigInt(r.offset) + 1n);
        if (!next.has(key) || BigInt(next.get(key) as string) < BigInt(after)) next.set(key, after);
      }
      await source.commit(next);
      const admin = testKafka("check").admin();
      await admin.connect();
      const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      await admin.disconnect();
      const total = committed[0].partitions.reduce((a, p) => a + Number(p.offset), 0);
      expect(total).toBe(63);
    } finally {
      sub.unsubscribe();
      await source.stop();
      await dlq.close();
    }

    // the DLQ holds the three letters, unchanged, with reason and origin headers
    const consumer = testKafka("dlq-reader").consumer({ groupId: freshGroup("dlq") });
    const got: { code: string; reason: string; offset: string; value: string }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: dlqTopic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const h = message.headers ?? {};
        got.push({
          code: String(h[DEAD_LETTER_HEADERS.code]),
          reason: String(h[DEAD_LETTER_HEADERS.reason]),
          offset: String(h[DEAD_LETTER_HEADERS.offset]),
          value: message.value?.toString("utf8") ?? "",
        });
      },
    });
    try {
      await waitFor(() => got.length === 3, { what: "3 dead letters" });
      const json = got.find((g) => g.code === "invalid-json");
      expect(json?.value).toBe("{not json");
      expect(got.find((g) => g.code === "too-large")?.reason).toMatch(/4000-byte limit/);
      expect(got.every((g) => /^\d+$/.test(g.offset))).toBe(true);
    } finally {
      await consumer.disconnect();
    }
  });
});
