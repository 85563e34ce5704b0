import { BehaviorSubject, map, Subject } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { describe, expect, it } from "vitest";
import { scoredRecordsOf } from "../../../test/support/scored-records.js";
import { generatePool } from "../../pool/generate-pool.js";
import { BudgetGovernor } from "../../selection/budget-governor.js";
import { policyOrThrow, type SelectionPolicy } from "../../selection/selection-policy.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { selectWindowByPolicy } from "./select-window-by-policy.js";

const pool = generatePool({ n: 600, seed: 8 });
const records = scoredRecordsOf(pool);
const picked = (ds: Decision[]): number => ds.filter((d) => d.selected).length;

describe("selectWindowByPolicy", () => {
  it("applies a policy change from the next window on (virtual time), and records its version", () => {
    const scheduler = new TestScheduler((a, e) => expect(a).toEqual(e));
    scheduler.run(({ hot, cold, expectObservable }) => {
      const p0 = policyOrThrow({ ratio: 0.1 });
      const p1 = policyOrThrow({ ratio: 0.5, version: 1 });
      // the policy changes at frame 4: the window at 2 is decided under p0, the ones at 5 and 8 under p1
      const policy$ = hot<SelectionPolicy>("p---q", { p: p0, q: p1 });
      const windows$ = cold("--a--b--c|", {
        a: records.slice(0, 200),
        b: records.slice(200, 400),
        c: records.slice(400, 600),
      });
      const summary = (ds: Decision[]) => ({
        n: ds.length,
        picked: picked(ds),
        versions: [...new Set(ds.map((d) => d.policyVersion))],
      });
      expectObservable(windows$.pipe(selectWindowByPolicy(policy$, { now: () => 0 }), map(summary))).toBe(
        "--a--b--c|",
        {
          a: { n: 200, picked: 20, versions: [0] },
          b: { n: 200, picked: 100, versions: [1] },
          c: { n: 200, picked: 100, versions: [1] },
        },
      );
    });
  });

  it("cuts budgets to the governor's caps, and new caps count what was selected before", () => {
    const policy$ = new BehaviorSubject(policyOrThrow({ ratio: 0.5, maxTotal: 150 }));
    const windows = new Subject<readonly ScoredRecord[]>();
    const governor = new BudgetGovernor();
    const seen: number[] = [];
    windows
      .pipe(selectWindowByPolicy(policy$, { governor, now: () => 0 }))
      .subscribe((ds) => seen.push(picked(ds)));
    windows.next(records.slice(0, 200)); // asks 100, 100 allowed
    windows.next(records.slice(200, 400)); // asks 100, 50 left
    policy$.next(policyOrThrow({ ratio: 0.5, maxTotal: 180, version: 1 }));
    windows.next(records.slice(400, 600)); // asks 100, 30 left of the new cap
    expect(seen).toEqual([100, 50, 30]);
    expect(governor.selectedTotal).toBe(180);
  });

  it("says why each record was not selected: not eligible, the budget, or the cap that bound", () => {
    const policy$ = new BehaviorSubject(policyOrThrow({ ratio: 0.3, maxTotal: 70, threshold: 2 }));
    const windows = new Subject<readonly ScoredRecord[]>();
    const out: Decision[][] = [];
    windows.pipe(selectWindowByPolicy(policy$, { now: () => 0 })).subscribe((ds) => out.push(ds));
    windows.next(records.slice(0, 200)); // asks 60, all allowed
    windows.next(records.slice(200, 400)); // asks 60, 10 left: 50 of them cut by maxTotal
    const reasons = (ds: Decision[]) => {
      const by: Record<string, number> = {};
      for (const d of ds) if (!d.selected) by[d.reason ?? "none"] = (by[d.reason ?? "none"] ?? 0) + 1;
      return by;
    };
    for (const ds of out)
      for (const d of ds) {
        if (d.selected) expect(d.reason).toBeUndefined();
        else if (d.reason === "no-style") expect(d.record.score.styles).toEqual([]);
        else if (d.reason === "below-threshold")
          expect(
            Math.max(...Array.from(d.record.score.scores).filter((v) => !Number.isNaN(v))),
          ).toBeLessThanOrEqual(2);
        else expect(d.reason === "budget" || d.reason === "cap-total").toBe(true);
      }
    expect(reasons(out[0])["cap-total"]).toBeUndefined();
    expect(picked(out[1])).toBe(10);
    expect(reasons(out[1])["cap-total"]).toBe(50);
    expect(reasons(out[0]).budget).toBeGreaterThan(0);
  });

  it("errors when no policy came before the first window", () => {
    const windows = new Subject<readonly ScoredRecord[]>();
    let error: unknown;
    windows
      .pipe(selectWindowByPolicy(new Subject<SelectionPolicy>()))
      .subscribe({ error: (e) => (error = e) });
    windows.next(records.slice(0, 10));
    expect(String(error)).toMatch(/no policy before the first window/);
  });
});
