import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NUM_CAPABILITIES } from "../domain/taxonomy.js";
import { generatePool } from "../pool/generate-pool.js";
import type { ScoredPool } from "../pool/scored-pool.js";
import {
  type ContinuousDecision,
  ContinuousSelector,
  type ContinuousSelectorOptions,
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

/** Feeds rows at the given times, polling at every due time as the operator's timer would. */
function run(
  pool: ScoredPool,
  options: ContinuousSelectorOptions,
  order: ArrayLike<number>,
  times: ArrayLike<number>,
): ContinuousDecision<number>[] {
  const sel = new ContinuousSelector<number>(options, rowOf(pool));
  const out: ContinuousDecision<number>[] = [];
  for (let j = 0; j < order.length; j++) {
    for (let due = sel.nextDueAt(); due !== undefined && due <= times[j]; due = sel.nextDueAt())
      out.push(...sel.poll(due));
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
    for (const d of ds) {
      if (!d.selected) continue;
      expect(pool.styleMask[d.item]).not.toBe(0);
      expect(pool.scores.some((col) => col[d.item] > 4.5)).toBe(true);
    }
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
