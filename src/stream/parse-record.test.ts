import { describe, expect, it } from "vitest";
import { DEAD_LETTER_CODES, parseRawRecord } from "./parse-record.js";
import type { RawRecord } from "./stream-types.js";

const enc = new TextEncoder();
const raw = (value: string | null, key: string | null = null): RawRecord => ({
  origin: { topic: "t", partition: 0, offset: "7" },
  key,
  value: value === null ? null : enc.encode(value),
  timestamp: 1,
});
const good = {
  id: "a",
  conversations: [
    { from: "human", value: "What is it?" },
    { from: "gpt", value: "A cat." },
  ],
};

describe("parseRawRecord", () => {
  it("turns a valid message into a sample record with its origin", () => {
    const r = parseRawRecord(raw(JSON.stringify(good)));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.record.sample.id).toBe("a");
      expect(r.record.origin).toEqual({ topic: "t", partition: 0, offset: "7" });
    }
  });

  it("takes the message key as id when the value has none", () => {
    const { id: _, ...noId } = good;
    const r = parseRawRecord(raw(JSON.stringify(noId), "key-1"));
    expect(r.ok && r.record.sample.id).toBe("key-1");
  });

  it("dead-letters each kind of bad message with a code and a reason", () => {
    const cases: [RawRecord, string, RegExp][] = [
      [raw(null), DEAD_LETTER_CODES.EMPTY, /no value/],
      [raw("{not json"), DEAD_LETTER_CODES.INVALID_JSON, /JSON/],
      [
        raw(JSON.stringify({ id: "b", conversations: [] })),
        DEAD_LETTER_CODES.INVALID_SAMPLE,
        /conversations/,
      ],
      [raw(JSON.stringify(good)), DEAD_LETTER_CODES.TOO_LARGE, /over the 10-byte limit/],
    ];
    cases.forEach(([input, code, reason], k) => {
      const r = parseRawRecord(input, k === 3 ? { maxMessageBytes: 10 } : {});
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.deadLetter.code).toBe(code);
        expect(r.deadLetter.reason).toMatch(reason);
        expect(r.deadLetter.origin.offset).toBe("7");
        expect(r.deadLetter.value).toBe(input.value);
      }
    });
  });
});

describe("securityFromEnv", () => {
  it("reads TLS and SASL from the environment and names a bad mechanism", async () => {
    const { securityFromEnv } = await import("../../connectors/kafka/kafka-client.js");
    expect(securityFromEnv({})).toEqual({ ssl: undefined });
    expect(
      securityFromEnv({
        MMSSR_KAFKA_SSL: "1",
        MMSSR_KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
        MMSSR_KAFKA_SASL_USERNAME: "u",
        MMSSR_KAFKA_SASL_PASSWORD: "p",
      }),
    ).toEqual({ ssl: true, sasl: { mechanism: "scram-sha-512", username: "u", password: "p" } });
    expect(() => securityFromEnv({ MMSSR_KAFKA_SASL_MECHANISM: "kerberos" })).toThrow(
      /MMSSR_KAFKA_SASL_MECHANISM/,
    );
  });
});
