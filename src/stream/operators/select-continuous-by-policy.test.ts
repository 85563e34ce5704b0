import { BehaviorSubject, catchError, map, type Observable, of, Subject } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { describe, expect, it } from "vitest";
import { scoredRecordsOf } from "../../../test/support/scored-records.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { generatePool } from "../../pool/generate-pool.js";
import { policyOrThrow, type SelectionPolicy } from "../../selection/selection-policy.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { continuousOptionsOf, selectContinuousByPolicy } from "./select-continuous.js";

const pool = generatePool({ n: 3000, seed: 23 });
const records = scoredRecordsOf(pool);

/** One batch as `windowId:offsets@decidedAt:v<versions>`. */
const summary = (ds: Decision[]): string =>
  `${ds[0].windowId}:${ds.map((d) => d.record.origin.offset).join(",")}@${ds[0].decidedAt}:v${[
    ...new Set(ds.map((d) => d.policyVersion)),
  ].join("/")}`;

/** An error as a value, so marbles compare its code and message. */
const asValue = <T>(source: Observable<T>): Observable<T | string> =>
  source.pipe(
    catchError((e: unknown) => of(e instanceof MmssrError ? `${e.code}: ${e.message}` : String(e))),
  );

function makeScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

describe("selectContinuousByPolicy (virtual time)", () => {
  it("decides a batch under the policy in force when it is decided, and records its version", () => {
    makeScheduler().run(({ hot, cold, expectObservable }) => {
      const p0 = policyOrThrow({ ratio: 0.3, maxDelayMs: 4 });
      const p1 = policyOrThrow({ ratio: 0.5, maxDelayMs: 4, version: 1 });
      // p1 comes at frame 7: a, b (due 5) are decided under p0; e arrives at 6 under p0 and is
      // still waiting at 7 (due 10): its batch, with c, is decided under p1, as is d
      const policy$ = hot<SelectionPolicy>("p------q", { p: p0, q: p1 });
      const src = cold("-ab---e-c---d------|", {
        a: records[0],
        b: records[1],
        e: records[2],
        c: records[3],
        d: records[4],
      });
      expectObservable(src.pipe(selectContinuousByPolicy(policy$, {}), map(summary))).toBe(
        "-----x----y-----z--|",
        { x: "c0:0,1@5:v0", y: "c1:2,3@10:v1", z: "c2:4@16:v1" },
      );
    });
  });

  it("stamps every decision with the version and says why a record was not selected", () => {
    const policy$ = new BehaviorSubject(policyOrThrow({ ratio: 0.2, maxDelayMs: 1000 }));
    const records$ = new Subject<ScoredRecord>();
    const out: Decision[] = [];
    const scheduler = new TestScheduler(() => {});
    const stats: { decided: number; admitted: number; referenceSize: number }[] = [];
    records$
      .pipe(
        selectContinuousByPolicy(
          policy$,
          { maxPending: 500, referenceSize: 2000, onStats: (s) => stats.push(s) },
          scheduler,
        ),
      )
      .subscribe((ds) => {
        out.push(...ds);
      });
    for (let r = 0; r < 1000; r++) records$.next(records[r]);
    policy$.next(policyOrThrow({ ratio: 0.05, maxDelayMs: 1000, maxTotal: 230, version: 7 }));
    for (let r = 1000; r < 3000; r++) records$.next(records[r]);
    records$.complete();
    expect(out).toHaveLength(3000);
    const before = out.slice(0, 1000);
    const after = out.slice(1000);
    expect(new Set(before.map((d) => d.policyVersion))).toEqual(new Set([0]));
    expect(new Set(after.map((d) => d.policyVersion))).toEqual(new Set([7]));
    const picked = (ds: Decision[]) => ds.filter((d) => d.selected).length;
    expect(Math.abs(picked(before) / 1000 - 0.2)).toBeLessThan(0.02);
    // 5% of 2,000 (about 100) is more than the new total cap leaves: what was taken before
    // counts against it, and the cap says why the rest was not taken
    expect(230 - picked(before)).toBeGreaterThan(10);
    expect(230 - picked(before)).toBeLessThan(0.05 * 2000 - 30);
    expect(picked(before) + picked(after)).toBe(230);
    for (const d of out) {
      if (d.selected) expect(d.reason).toBeUndefined();
      else expect(["below-threshold", "no-style", "budget", "cap-total"]).toContain(d.reason);
    }
    expect(new Set(before.map((d) => d.reason))).not.toContain("cap-total");
    // onStats: once per batch, before it is emitted
    expect(stats.map((s) => s.decided)).toEqual([500, 1000, 1500, 2000, 2500, 3000]);
    expect(stats.at(-1)).toMatchObject({ admitted: 230, referenceSize: 2000 });
    const afterReasons = new Set(after.map((d) => d.reason));
    for (const r of ["budget", "cap-total", "no-style"]) expect(afterReasons).toContain(r);
  });

  it("moves the timer when maxDelayMs changes, earlier or later", () => {
    makeScheduler().run(({ hot, cold, expectObservable }) => {
      const policy$ = hot<SelectionPolicy>("p--q--r", {
        p: policyOrThrow({ ratio: 0.3, maxDelayMs: 10 }),
        q: policyOrThrow({ ratio: 0.3, maxDelayMs: 2, version: 1 }),
        r: policyOrThrow({ ratio: 0.3, maxDelayMs: 8, version: 2 }),
      });
      // a at 1 (due 11 under p) is due at 3 once q cuts the delay to 2: decided at once;
      // c at 5 (due 7 under q) waits until 13 once r gives it 8
      const src = cold("-a---c--------------|", { a: records[0], c: records[1] });
      expectObservable(src.pipe(selectContinuousByPolicy(policy$), map(summary))).toBe(
        "---x---------y------|",
        { x: "c0:0@3:v1", y: "c1:1@13:v2" },
      );
    });
  });

  it("errors the stream on a policy it cannot take; the waiting records stay undecided", () => {
    const p0 = policyOrThrow({ ratio: 0.3, maxDelayMs: 10 });
    const cases: [SelectionPolicy, string][] = [
      [
        policyOrThrow({ budget: 10, version: 1 }),
        `${ERROR_CODES.BAD_OPTIONS}: continuous mode needs a ratio (the share of incoming samples to admit); budget is per window`,
      ],
      // not through the schema: what the selector itself rejects
      [
        { ...p0, version: 1, threshold: 9 },
        `${ERROR_CODES.BAD_OPTIONS}: threshold: must be a number in 0..5, got 9`,
      ],
      [
        { ...p0, version: 1, maxTotal: -1 },
        `${ERROR_CODES.BAD_OPTIONS}: maxAdmitted.total: caps must be >= 0, got -1`,
      ],
    ];
    for (const [bad, message] of cases)
      makeScheduler().run(({ hot, cold, expectObservable }) => {
        const policy$ = hot<SelectionPolicy>("p--q", { p: p0, q: bad });
        const src = cold("-ab--------c-|", { a: records[0], b: records[1], c: records[2] });
        expectObservable(asValue(src.pipe(selectContinuousByPolicy(policy$)))).toBe("---(e|)", {
          e: message,
        });
      });
  });

  it("errors on a first policy without a ratio, and on a record before any policy", () => {
    makeScheduler().run(({ hot, cold, expectObservable }) => {
      const policy$ = hot<SelectionPolicy>("-p", { p: policyOrThrow({ budget: 5 }) });
      const src = cold("---a-|", { a: records[0] });
      expectObservable(asValue(src.pipe(selectContinuousByPolicy(policy$)))).toBe("-(e|)", {
        e: `${ERROR_CODES.BAD_OPTIONS}: continuous mode needs a ratio (the share of incoming samples to admit); budget is per window`,
      });
    });
    makeScheduler().run(({ hot, cold, expectObservable }) => {
      const policy$ = hot<SelectionPolicy>("----p", { p: policyOrThrow({ ratio: 0.1 }) });
      const src = cold("-a-|", { a: records[0] });
      expectObservable(asValue(src.pipe(selectContinuousByPolicy(policy$)))).toBe("-(e|)", {
        e: `${ERROR_CODES.INTERNAL}: selectContinuousByPolicy: no policy before the first record`,
      });
    });
  });

  it("passes a policy$ error through; unsubscribing ends the policy subscription and the timer", () => {
    makeScheduler().run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const policy$ = hot<SelectionPolicy>("p--#", { p: policyOrThrow({ ratio: 0.1 }) }, new Error("down"));
      const src = cold("-a------|", { a: records[0] });
      expectObservable(src.pipe(selectContinuousByPolicy(policy$))).toBe(
        "---#",
        undefined,
        new Error("down"),
      );
      const calm = hot<SelectionPolicy>("p-------", { p: policyOrThrow({ ratio: 0.1, maxDelayMs: 5 }) });
      expectObservable(src.pipe(selectContinuousByPolicy(calm)), "^--!").toBe("----");
      expectSubscriptions(calm.subscriptions).toBe("^--!");
    });
  });

  it("maps a policy to the selector's options", () => {
    expect(
      continuousOptionsOf(
        policyOrThrow({ ratio: 0.2, maxTotal: 5, maxPerHour: 3, threshold: 1, capabilities: ["ocr"] }),
      ),
    ).toEqual({
      ratio: 0.2,
      capabilities: ["ocr"],
      threshold: 1,
      capabilityWeights: undefined,
      styleWeights: undefined,
      maxDelayMs: 1000,
      maxAdmitted: { total: 5, perHour: 3 },
    });
  });
});
