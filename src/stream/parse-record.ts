import { formatSampleErrors, parseSampleJson } from "../domain/sample.js";
import type { DeadLetter, RawRecord, SampleRecord } from "./stream-types.js";

/** Stable codes of dead letters (header mmssr-code): what kind of problem, for dashboards and replays. */
export const DEAD_LETTER_CODES = {
  EMPTY: "empty-value",
  TOO_LARGE: "too-large",
  INVALID_JSON: "invalid-json",
  INVALID_SAMPLE: "invalid-sample",
  /** a sample whose id an earlier message of the stream already carried (recent-ids.ts) */
  DUPLICATE_ID: "duplicate-id",
  /** --bad-image reject: the sample's image could not be used (the value is the sample's JSON) */
  IMAGE_UNUSABLE: "image-unusable",
} as const;

export interface ParseRecordOptions {
  /**
   * a message value larger than this is dead-lettered unparsed (default 1 MiB, Kafka's own default
   * message.max.bytes; raise both for samples with large inline images)
   */
  maxMessageBytes?: number;
  /** a sample without id: take the message key, else hash its content (default) or dead-letter it */
  missingId?: "content-hash" | "error";
  /** image_source for samples that name none */
  defaultImageSource?: string;
}

export type ParsedRecord = { ok: true; record: SampleRecord } | { ok: false; deadLetter: DeadLetter };

export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

/** A raw message as a dead letter with its stable code and reason: key and value as received. */
export function deadLetterOf(raw: RawRecord, code: string, reason: string): ParsedRecord {
  return {
    ok: false,
    deadLetter: {
      origin: raw.origin,
      key: raw.key,
      value: raw.value,
      code,
      reason,
      generation: raw.generation,
    },
  };
}

/**
 * Decides what a raw message is: a sample to curate, or a dead letter with its reason. Never
 * throws: every input leaves as exactly one of the two, so nothing is silently dropped.
 */
export function parseRawRecord(raw: RawRecord, options: ParseRecordOptions = {}): ParsedRecord {
  const dead = (code: string, reason: string): ParsedRecord => deadLetterOf(raw, code, reason);
  if (raw.value === null || raw.value.length === 0)
    return dead(DEAD_LETTER_CODES.EMPTY, "message has no value");
  const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  if (raw.value.length > max)
    return dead(
      DEAD_LETTER_CODES.TOO_LARGE,
      `message of ${raw.value.length} bytes is over the ${max}-byte limit`,
    );
  const parsed = parseSampleJson(raw.value, {
    defaultId: raw.key ?? undefined,
    missingId: options.missingId === "error" ? "error" : "content-hash",
  });
  if (!parsed.ok) {
    const json = parsed.errors.length === 1 && parsed.errors[0].path === "";
    return dead(
      json ? DEAD_LETTER_CODES.INVALID_JSON : DEAD_LETTER_CODES.INVALID_SAMPLE,
      formatSampleErrors(parsed.errors),
    );
  }
  const sample = parsed.sample;
  if (options.defaultImageSource && sample.image_source === "unknown")
    sample.image_source = options.defaultImageSource;
  return {
    ok: true,
    record: {
      origin: raw.origin,
      sample,
      timestamp: raw.timestamp,
      receivedAt: raw.receivedAt,
      generation: raw.generation,
    },
  };
}
