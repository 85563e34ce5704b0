import fc from "fast-check";
import { map, Observable } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { describe, expect, it } from "vitest";
import { scoredRecordsOf } from "../../../test/support/scored-records.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { generatePool } from "../../pool/generate-pool.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { selectContinuous } from "./select-continuous.js";

const pool = generatePool({ n: 400, seed: 21 });
const records = scoredRecordsOf(pool);
const ids = (ds: Decision[]): string => ds.map((d) => d.record.origin.offset).join(",");

function makeScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

describe("selectContinuous (virtual time)", () => {
  it("decides a batch when its oldest record is due (maxDelayMs)", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("ab--c-------d---|", { a: records[0], b: records[1], c: records[2], d: records[3] });
      const out = src.pipe(
        selectContinuous({ ratio: 0.3, maxDelayMs: 5 }),
        map((ds) => `${ds[0].windowId}:${ids(ds)}@${ds[0].decidedAt}`),
      );
      // a arrives at 0 -> due at 5: a, b, c decided together; d arrives at 12, due 17, but the
      // source completes at 16 and flushes it
      expectObservable(out).toBe("-----x----------(y|)", { x: "c0:0,1,2@5", y: "c1:3@16" });
    });
  });

  it("decides a batch at once when maxPending records wait", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("abc-d|", { a: records[0], b: records[1], c: records[2], d: records[3] });
      const out = src.pipe(selectContinuous({ ratio: 0.3, maxDelayMs: 100, maxPending: 2 }), map(ids));
      // a, b: 2 waiting at frame 1; c at 2 and d at 4: 2 waiting again at 4
      expectObservable(out).toBe("-x--y|", { x: "0,1", y: "2,3" });
    });
  });

  it("passes an error through without deciding waiting records; unsubscribing cancels the timer", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("ab-#", { a: records[0], b: records[1] }, new Error("boom"));
      expectObservable(src.pipe(selectContinuous({ ratio: 0.3, maxDelayMs: 10 }))).toBe(
        "---#",
        undefined,
        new Error("boom"),
      );
      const slow = cold("a---------", { a: records[0] });
      expectObservable(slow.pipe(selectContinuous({ ratio: 0.3, maxDelayMs: 5 })), "^--!").toBe("----");
    });
  });

  it("says why a record was not selected, and carries no policy version (fixed options)", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold(`${"a".repeat(200)}|`, { a: records[0] }).pipe(map((_, j) => records[j]));
      const out = src.pipe(
        selectContinuous({ ratio: 0.2, threshold: 3, maxDelayMs: 1000, maxPending: 100 }),
        map((ds) => {
          const reasons = new Set(ds.map((d) => d.reason ?? "selected"));
          const fine = ds.every(
            (d) => d.policyVersion === undefined && (d.selected ? d.reason === undefined : !!d.reason),
          );
          return fine && reasons.has("budget") && reasons.has("below-threshold") && reasons.has("selected");
        }),
      );
      expectObservable(out).toBe(`${"-".repeat(99)}x${"-".repeat(99)}x|`, { x: true });
    });
  });

  it("errors the stream on bad options", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("-a|", { a: records[0] });
      expectObservable(src.pipe(selectContinuous({ ratio: 0.1, maxDelayMs: -1 }))).toBe(
        "#",
        undefined,
        new MmssrError(ERROR_CODES.BAD_OPTIONS, "maxDelayMs: must be a number > 0, got -1"),
      );
    });
  });

  it("every record is decided exactly once, never later than the bound (property, virtual time)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 1, max: 64 }),
        (gaps, maxDelayMs, maxPending) => {
          const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
          scheduler.run(() => {
            let t = 0;
            const arrival = gaps.map((g) => {
              t += g;
              return t;
            });
            // records arrive at their frames; the source completes 2 * maxDelayMs after the last
            const source = new Observable<ScoredRecord>((sub) => {
              arrival.forEach((f, j) => {
                scheduler.schedule(() => sub.next(records[j]), f);
              });
              scheduler.schedule(() => sub.complete(), t + 2 * maxDelayMs);
            });
            const seen = new Map<number, number>();
            source.pipe(selectContinuous({ ratio: 0.3, maxDelayMs, maxPending })).subscribe((ds) => {
              const now = scheduler.now();
              expect(ds.length).toBeLessThanOrEqual(maxPending);
              for (const d of ds) {
                const j = Number(d.record.origin.offset);
                expect(seen.has(j)).toBe(false);
                seen.set(j, now);
                expect(d.decidedAt).toBe(now);
              }
            });
            scheduler.flush();
            expect(seen.size).toBe(gaps.length);
            for (const [j, at] of seen) {
              expect(at).toBeGreaterThanOrEqual(arrival[j]);
              expect(at - arrival[j]).toBeLessThanOrEqual(maxDelayMs);
            }
          });
        },
      ),
      { numRuns: 40 },
    );
  });
});
