import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { capabilityIndex, NUM_CAPABILITIES } from "../domain/taxonomy.js";
import { generatePool } from "../pool/generate-pool.js";
import type { ScoredPool } from "../pool/scored-pool.js";
import {
  type ContinuousDecision,
  type ContinuousPolicyOptions,
  ContinuousSelector,
  type ContinuousSelectorOptions,
  type SelectionRow,
} from "./continuous-selector.js";
import { selectMmssr } from "./select-mmssr.js";

function rowOf(pool: ScoredPool) {
  return (r: number) => ({
    id: pool.ids[r],
    imageSource: pool.sources[pool.sourceIndex[r]],
    styleMask: pool.styleMask[r],
    scores: Float64Array.from({ length: NUM_CAPABILITIES }, (_, c) => pool.scores[c][r]),
  });
}

/**
 * Feeds rows at the given times, polling at every due time as the operator's timer would;
 * `policies` maps an arrival number to a policy set (setPolicy) just before that arrival.
 */
function run(
  pool: ScoredPool,
  options: ContinuousSelectorOptions,
  order: ArrayLike<number>,
  times: ArrayLike<number>,
  policies: ReadonlyMap<number, ContinuousPolicyOptions> = new Map(),
): ContinuousDecision<number>[] {
  const sel = new ContinuousSelector<number>(options, rowOf(pool));
  const out: ContinuousDecision<number>[] = [];
  for (let j = 0; j < order.length; j++) {
    for (let due = sel.nextDueAt(); due !== undefined && due <= times[j]; due = sel.nextDueAt())
      out.push(...sel.poll(due));
    const policy = policies.get(j);
    if (policy) sel.setPolicy(policy);
    out.push(...sel.decide(order[j], times[j]));
  }
  out.push(...sel.flush(order.length > 0 ? times[order.length - 1] : 0));
  return out;
}

describe("ContinuousSelector", () => {
  it("on a stream that fits one batch, admits exactly the offline selection", () => {
    for (const ratio of [0.05, 0.1, 0.3]) {
      const pool = generatePool({ n: 3000, seed: 11 });
      const order = Array.from({ length: pool.size }, (_, i) => (i * 7919) % pool.size);
      const decisions = run(
        pool,
        { ratio, maxPending: 10_000, feedback: 0, tolerance: Number.POSITIVE_INFINITY },
        order,
        new Float64Array(pool.size),
      );
      const offline = new Set(selectMmssr(pool, { ratio }).indices);
      const admitted = new Set(decisions.filter((d) => d.selected).map((d) => d.item));
      expect(admitted).toEqual(offline);
    }
  });

  it("decides every input exactly once, within maxDelayMs and maxPending (property)", () => {
    const pool = generatePool({ n: 600, seed: 5 });
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 0, maxLength: 600 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 300 }),
        fc.constantFrom(0.05, 0.2, 0.5),
        (gaps, maxDelayMs, maxPending, ratio) => {
          const times = new Float64Array(gaps.length);
          let t = 0;
          gaps.forEach((g, j) => {
            t += g;
            times[j] = t;
          });
          const order = gaps.map((_, j) => j);
          const ds = run(pool, { ratio, maxDelayMs, maxPending, refreshEvery: 100 }, order, times);
          expect(ds.map((d) => d.item).sort((a, b) => a - b)).toEqual(order);
          for (const d of ds) {
            expect(d.decidedAt - d.arrivedAt).toBeLessThanOrEqual(maxDelayMs);
            expect(d.decidedAt).toBeGreaterThanOrEqual(d.arrivedAt);
          }
          // a batch never holds more than maxPending records
          const perBatch = new Map<number, number>();
          for (const d of ds) perBatch.set(d.batch, (perBatch.get(d.batch) ?? 0) + 1);
          for (const n of perBatch.values()) expect(n).toBeLessThanOrEqual(maxPending);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("is deterministic", () => {
    const pool = generatePool({ n: 5000, seed: 3 });
    const order = Array.from({ length: pool.size }, (_, i) => (i * 4001) % pool.size);
    const times = Float64Array.from(order, (_, j) => j);
    const a = run(
      pool,
      { ratio: 0.1, maxDelayMs: 300, referenceSize: 1000, refreshEvery: 500 },
      order,
      times,
    );
    const b = run(
      pool,
      { ratio: 0.1, maxDelayMs: 300, referenceSize: 1000, refreshEvery: 500 },
      order,
      times,
    );
    expect(a).toEqual(b);
  });

  it("tracks the ratio and resembles the offline selection on a long stream", () => {
    const pool = generatePool({ n: 30_000, seed: 9 });
    const order = Array.from({ length: pool.size }, (_, i) => (i * 7919) % pool.size);
    const times = Float64Array.from(order, (_, j) => j / 2); // 2,000 records/s in ms
    for (const ratio of [0.1, 0.3]) {
      const ds = run(pool, { ratio, referenceSize: 10_000 }, order, times);
      const admitted = ds.filter((d) => d.selected);
      expect(Math.abs(admitted.length / pool.size - ratio)).toBeLessThan(0.005);
      const offline = new Set(selectMmssr(pool, { ratio }).indices);
      let hit = 0;
      for (const d of admitted) if (offline.has(d.item)) hit++;
      expect(hit / offline.size).toBeGreaterThan(ratio === 0.3 ? 0.9 : 0.6);
      for (const d of admitted) {
        expect(d.pickedBy).toBeDefined();
        expect(d.bucket).toMatch(/\+/);
      }
    }
  });

  it("never selects a sample without styles or without a score above the threshold", () => {
    const pool = generatePool({ n: 4000, seed: 2, styleLessRate: 0.2 });
    const order = Array.from({ length: pool.size }, (_, i) => i);
    const ds = run(pool, { ratio: 0.5, threshold: 4.5 }, order, Float64Array.from(order));
    const reasons = new Set<string | undefined>();
    for (const d of ds) {
      reasons.add(d.reason);
      if (!d.selected) {
        // why: no style, no score above the threshold (styles present), or the ratio
        const expected =
          pool.styleMask[d.item] === 0
            ? "no-style"
            : pool.scores.some((col) => col[d.item] > 4.5)
              ? "budget"
              : "below-threshold";
        expect(d.reason).toBe(expected);
        continue;
      }
      expect(d.reason).toBeUndefined();
      expect(pool.styleMask[d.item]).not.toBe(0);
      expect(pool.scores.some((col) => col[d.item] > 4.5)).toBe(true);
    }
    // (at 50% every eligible sample is taken here: no "budget")
    expect(reasons).toEqual(new Set([undefined, "no-style", "below-threshold"]));
  });

  it("respects an absolute cap in total and per hour", () => {
    const pool = generatePool({ n: 4000, seed: 4 });
    const order = Array.from({ length: pool.size }, (_, i) => i);
    const total = run(pool, { ratio: 0.3, maxAdmitted: { total: 100 } }, order, Float64Array.from(order));
    expect(total.filter((d) => d.selected).length).toBe(100);
    // 4,000 records over 4 hours; at most 50 per hour
    const hourly = run(
      pool,
      { ratio: 0.3, maxAdmitted: { perHour: 50 } },
      order,
      Float64Array.from(order, (j) => j * 3600),
    );
    const perHour = new Map<number, number>();
    for (const d of hourly)
      if (d.selected)
        perHour.set(
          Math.floor(d.decidedAt / 3_600_000),
          (perHour.get(Math.floor(d.decidedAt / 3_600_000)) ?? 0) + 1,
        );
    for (const n of perHour.values()) expect(n).toBeLessThanOrEqual(50);
    expect([...perHour.values()].reduce((a, b) => a + b, 0)).toBe(200);
  });

  it("tracks a new ratio from the change on (setPolicy), not paying back the old ratio's history", () => {
    const pool = generatePool({ n: 16_000, seed: 12 });
    const order = Array.from({ length: pool.size }, (_, i) => (i * 7919) % pool.size);
    const times = Float64Array.from(order, (_, j) => j / 2);
    const change = 10_000;
    for (const [before, after] of [
      [0.2, 0.05],
      [0.05, 0.2],
    ]) {
      const ds = run(
        pool,
        { ratio: before, referenceSize: 5000 },
        order,
        times,
        new Map([[change, { ratio: after }]]),
      );
      const share = (from: number, to: number): number =>
        ds.filter((d) => d.seq >= from && d.seq < to && d.selected).length / (to - from);
      expect(Math.abs(share(0, change) - before)).toBeLessThan(0.01);
      // the samples decided after the change (a batch is decided under the policy in force)
      const firstBatchAfter = Math.min(...ds.filter((d) => d.seq >= change).map((d) => d.batch));
      const after$ = ds.filter((d) => d.batch >= firstBatchAfter);
      const afterShare = after$.filter((d) => d.selected).length / after$.length;
      expect(after$.length).toBeGreaterThan(5000);
      expect(Math.abs(afterShare - after)).toBeLessThan(0.01);
      // and every window of 2,000 after the change, not only the average
      for (let from = change; from + 2000 <= pool.size; from += 2000)
        expect(Math.abs(share(from, from + 2000) - after)).toBeLessThan(0.02);
    }
  });

  it("refreshes the thresholds at the next batch after setPolicy, under the new options", () => {
    const pool = generatePool({ n: 3000, seed: 13 });
    const sel = new ContinuousSelector<number>(
      { ratio: 0.1, maxDelayMs: 1e9, maxPending: 500, refreshEvery: 100_000 },
      rowOf(pool),
    );
    for (let r = 0; r < 1000; r++) sel.decide(r, r);
    const before = sel.stats.refreshes;
    for (let r = 1000; r < 1400; r++) sel.decide(r, r);
    sel.setPolicy({ ratio: 0.1, threshold: 4, capabilities: ["ocr", "stem"], maxDelayMs: 1e9 });
    expect(sel.stats.refreshes).toBe(before); // nothing happens before the next batch
    const ds: ContinuousDecision<number>[] = [];
    for (let r = 1400; r < 1500; r++) ds.push(...sel.decide(r, r));
    expect(sel.stats.refreshes).toBe(before + 1);
    // the whole pending batch (400 from before the change, 100 after) is decided under it
    expect(ds).toHaveLength(500);
    for (const d of ds) {
      if (!d.selected) continue;
      expect(["ocr", "stem"]).toContain(d.pickedBy);
      expect(pool.scores[capabilityIndex(d.pickedBy as string)][d.item]).toBeGreaterThan(4);
    }
  });

  it("keeps the caps' counts across setPolicy, and says which cap dropped a sample", () => {
    const pool = generatePool({ n: 4000, seed: 4 });
    const order = Array.from({ length: pool.size }, (_, i) => i);
    const ds = run(
      pool,
      { ratio: 0.3, maxAdmitted: { total: 100 } },
      order,
      Float64Array.from(order),
      new Map([
        [2000, { ratio: 0.3, maxAdmitted: { total: 150 } }],
        [3000, { ratio: 0.3, maxAdmitted: { total: 1000, perHour: 170 } }],
      ]),
    );
    const picked = (from: number, to: number): number =>
      ds.filter((d) => d.selected && d.seq >= from && d.seq < to).length;
    expect(picked(0, 2000)).toBe(100);
    // 100 already count against the new cap of 150: 50 more; then 170 per hour (all in hour 0)
    expect(picked(0, 3000)).toBe(150);
    expect(picked(0, 4000)).toBe(170);
    const reasonsIn = (from: number, to: number): Set<string | undefined> =>
      new Set(ds.filter((d) => !d.selected && d.seq >= from && d.seq < to).map((d) => d.reason));
    expect(reasonsIn(1000, 2000)).toContain("cap-total");
    expect(reasonsIn(3200, 4000)).toContain("cap-hour");
    expect(reasonsIn(3200, 4000)).not.toContain("cap-total");
  });

  it("rejects a bad policy in setPolicy naming the option, and stays as it was", () => {
    const pool = generatePool({ n: 3000, seed: 6 });
    const options: ContinuousSelectorOptions = { ratio: 0.2, maxDelayMs: 50, maxAdmitted: { total: 400 } };
    const times = Float64Array.from({ length: pool.size }, (_, j) => j);
    const clean = new ContinuousSelector<number>(options, rowOf(pool));
    const tried = new ContinuousSelector<number>(options, rowOf(pool));
    const bad: [ContinuousPolicyOptions, RegExp][] = [
      [{ ratio: 1.5 }, /^ratio:/],
      [{ ratio: 0.5, threshold: 9 }, /^threshold:/],
      [{ ratio: 0.5, maxDelayMs: 0 }, /^maxDelayMs:/],
      [{ ratio: 0.5, maxAdmitted: { total: -1 } }, /^maxAdmitted\.total:/],
      [{ ratio: 0.5, maxAdmitted: { perHour: Number.NaN } }, /^maxAdmitted\.perHour:/],
      [{ ratio: 0.5, capabilities: ["nope" as never] }, /^capabilities:/],
      [{ ratio: 0.5, styleWeights: { "yes/no": -1 } }, /^styleWeights\.yes\/no:/],
      [{ ratio: 0.5, capabilityWeights: { ocr: 0 }, capabilities: ["ocr"] }, /^capabilityWeights:/],
    ];
    const a: ContinuousDecision<number>[] = [];
    const b: ContinuousDecision<number>[] = [];
    for (let r = 0; r < pool.size; r++) {
      if (r % 500 === 250) {
        const dueBefore = tried.nextDueAt();
        for (const [policy, message] of bad) {
          let error: unknown;
          try {
            tried.setPolicy(policy);
          } catch (err) {
            error = err;
          }
          expect(error).toBeInstanceOf(MmssrError);
          expect((error as MmssrError).code).toBe(ERROR_CODES.BAD_OPTIONS);
          expect((error as MmssrError).message).toMatch(message);
        }
        expect(tried.nextDueAt()).toBe(dueBefore);
      }
      for (const [sel, out] of [
        [clean, a],
        [tried, b],
      ] as const) {
        for (let due = sel.nextDueAt(); due !== undefined && due <= times[r]; due = sel.nextDueAt())
          out.push(...sel.poll(due));
        out.push(...sel.decide(r, times[r]));
      }
    }
    a.push(...clean.flush(pool.size));
    b.push(...tried.flush(pool.size));
    expect(b).toEqual(a);
    expect(tried.stats).toEqual(clean.stats);
  });

  it("says why a constructed sample was not selected: no-style, below-threshold, budget, cap-total, cap-hour", () => {
    // one image source; styles by bit (0 = multi-choice); the same score in every capability
    const row = (id: string, styleMask: number, score: number): SelectionRow => ({
      id,
      imageSource: "src",
      styleMask,
      scores: new Float64Array(NUM_CAPABILITIES).fill(score),
    });
    const rows = [
      row("no-style", 0, 4.9),
      row("low", 1, 1),
      row("nan", 1, Number.NaN),
      ...Array.from({ length: 40 }, (_, i) => row(`ok${i}`, 1 << (i % 3), 2.5 + i / 20)),
    ];
    const decideAll = (options: ContinuousSelectorOptions): ContinuousDecision<SelectionRow>[] => {
      const sel = new ContinuousSelector<SelectionRow>(
        { maxPending: 1000, maxDelayMs: 10, ...options },
        (r) => r,
      );
      for (const r of rows) sel.decide(r, 0);
      return sel.flush(0);
    };
    const reasonOf = (ds: ContinuousDecision<SelectionRow>[]) =>
      new Map(ds.map((d) => [d.item.id, d.selected ? "selected" : d.reason]));

    const free = reasonOf(decideAll({ ratio: 0.25, threshold: 2 }));
    expect(free.get("no-style")).toBe("no-style");
    expect(free.get("low")).toBe("below-threshold");
    expect(free.get("nan")).toBe("below-threshold");
    const taken = [...free].filter(([, r]) => r === "selected").map(([id]) => id);
    expect(taken.length).toBeGreaterThan(0);
    for (const [id, r] of free) if (id.startsWith("ok") && r !== "selected") expect(r).toBe("budget");

    // a cap of 0: what the ratio would have taken is dropped by the cap, the rest as before
    for (const [caps, reason] of [
      [{ total: 0 }, "cap-total"],
      [{ total: 0, perHour: 5 }, "cap-total"],
      [{ perHour: 0 }, "cap-hour"],
      [{ total: 10, perHour: 0 }, "cap-hour"],
      [{ total: 0, perHour: 0 }, "cap-total"], // equal room: the total cap
    ] as const) {
      const capped = reasonOf(decideAll({ ratio: 0.25, threshold: 2, maxAdmitted: caps }));
      for (const [id, r] of free) expect(capped.get(id)).toBe(r === "selected" ? reason : r);
    }

    // a style weighted 0 makes its samples ineligible: no-style
    const noMc = reasonOf(decideAll({ ratio: 0.25, threshold: 2, styleWeights: { "multi-choice": 0 } }));
    expect(noMc.get("low")).toBe("no-style");
    expect(noMc.get("ok0")).toBe("no-style");
    expect(noMc.get("ok1")).not.toBe("no-style");
  });

  it("rejects bad options", () => {
    const toRow = rowOf(generatePool({ n: 1, seed: 1 }));
    expect(() => new ContinuousSelector({ ratio: 0 }, toRow)).toThrow(/ratio/);
    expect(() => new ContinuousSelector({ ratio: 0.1, maxDelayMs: 0 }, toRow)).toThrow(/maxDelayMs/);
    expect(() => new ContinuousSelector({ ratio: 0.1, maxPending: 1.5 }, toRow)).toThrow(/maxPending/);
    expect(() => new ContinuousSelector({ ratio: 0.1, feedback: 2 }, toRow)).toThrow(/feedback/);
    expect(() => new ContinuousSelector({ ratio: 0.1, capabilities: ["nope" as never] }, toRow)).toThrow(
      /capabilities/,
    );
  });
});
