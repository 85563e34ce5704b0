import { basename } from "node:path";
import { Observable } from "rxjs";
import type { AssignmentHandler, Source } from "../../src/stream/ports.js";
import type { RawRecord } from "../../src/stream/stream-types.js";
import { readSampleRecords } from "./sample-reader.js";

/**
 * A samples file as a Source, so the demo and batch backfills run the same graph as Kafka:
 * one record per sample (JSONL line, JSON array element or Parquet row), origin
 * "file:<name>" partition 0, offset = its ordinal. Lines that are not JSON are handed on
 * as they are, to be dead-lettered like a bad message. Commits are kept in memory only. The
 * one partition is assigned (generation 1) before the first record and never moves.
 */
export function createFileSource(path: string): Source & { committed: Map<string, string> } {
  const topic = `file:${basename(path)}`;
  const committed = new Map<string, string>();
  let handler: AssignmentHandler | undefined;
  const enc = new TextEncoder();
  let ended = false;
  let paused = false;
  let wake: (() => void) | undefined;
  const records$ = new Observable<RawRecord>((subscriber) => {
    let cancelled = false;
    (async () => {
      await handler?.({ generation: 1, assigned: [{ topic, partition: 0 }], revoked: [] });
      for await (const rec of readSampleRecords(path)) {
        if (cancelled || ended) break;
        while (paused && !cancelled && !ended) await new Promise<void>((resolve) => (wake = resolve));
        const text = "error" in rec ? (rec.raw ?? "") : JSON.stringify(rec.value);
        const now = Date.now();
        const id = "error" in rec ? undefined : (rec.value as { id?: unknown } | null)?.id;
        subscriber.next({
          origin: { topic, partition: 0, offset: String(rec.ordinal) },
          key: typeof id === "string" || typeof id === "number" ? String(id) : null,
          value: enc.encode(text),
          timestamp: now,
          receivedAt: now,
          generation: 1,
        });
        // hand the loop back now and then: the graph downstream runs on this thread too
        if (rec.ordinal % 256 === 255) await new Promise<void>((resolve) => setImmediate(resolve));
      }
      subscriber.complete();
    })().catch((err) => subscriber.error(err));
    return () => {
      cancelled = true;
      wake?.();
    };
  });
  const readyAt = Date.now();
  return {
    readyAt,
    records$,
    committed,
    onAssignment(h) {
      handler = h;
    },
    async commit(offsets) {
      for (const [k, v] of offsets) committed.set(k, v);
    },
    async fence() {
      return true; // one reader, one partition: nobody else can own it
    },
    async committedOffsets() {
      return new Map(committed);
    },
    async endOffsets() {
      return undefined;
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    async stop() {
      ended = true;
      wake?.();
    },
  };
}
