/**
 * The tie-break order and the radix sorts under it, checked against plain comparator sorts,
 * plus the selector against the slow reference on generated pools far larger than the
 * property tests' (so that score bins hold many rows and the tie order decides a lot).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generatePool } from "../../src/pool/generate-pool.js";
import type { ScoredPool } from "../../src/pool/scored-pool.js";
import { radixArgsortF64, radixArgsortU32 } from "../../src/selection/radix-argsort.js";
import { selectMmssr } from "../../src/selection/select-mmssr.js";
import { meanScores, tieHash, tieOrder } from "../../src/selection/tie-break.js";
import { createRandom } from "../../src/util/random.js";
import { referenceSelect } from "../support/reference-select.js";

const identity = (n: number): Uint32Array => Uint32Array.from({ length: n }, (_, i) => i);

describe("tieHash", () => {
  it("is pinned: the selection contract depends on these exact values", () => {
    expect(tieHash("s1")).toBe(187978386372231);
    expect(tieHash("sample-000042")).toBe(8458982887396938);
    expect(tieHash("")).toBe(3338908027751811);
    expect(tieHash("日本語")).toBe(179667132864817);
  });

  it("gives a non-negative integer below 2^53", () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const h = tieHash(s);
        return Number.isSafeInteger(h) && h >= 0;
      }),
      { seed: 11, numRuns: 300 },
    );
  });
});

describe("radix argsorts", () => {
  it("radixArgsortU32 equals a stable comparator sort, both directions", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.nat({ max: 5 }), fc.nat({ max: 0xffffffff })), { maxLength: 300 }),
        fc.boolean(),
        (values, desc) => {
          const keys = Uint32Array.from(values);
          const got = radixArgsortU32(keys, identity(keys.length), desc ? "desc" : "asc");
          const want = Array.from(identity(keys.length)).sort((a, b) =>
            desc ? keys[b] - keys[a] : keys[a] - keys[b],
          );
          expect(Array.from(got.rows)).toEqual(want);
          expect(Array.from(got.keys)).toEqual(want.map((i) => keys[i]));
        },
      ),
      { seed: 12, numRuns: 200 },
    );
  });

  it("radixArgsortF64 equals a stable comparator sort (negatives, -0, ties, tiny gaps)", () => {
    const value = fc.oneof(
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.constantFrom(0, -0, 1, 2.5, 2.5000000000000004, -1e-300, 5),
    );
    fc.assert(
      fc.property(fc.array(value, { maxLength: 300 }), fc.boolean(), (values, desc) => {
        const keys = Float64Array.from(values);
        const got = radixArgsortF64(keys, identity(keys.length), desc ? "desc" : "asc");
        const want = Array.from(identity(keys.length)).sort((a, b) => {
          const d = desc ? keys[b] - keys[a] : keys[a] - keys[b];
          return d === 0 ? 0 : d; // -0 and 0 are equal keys
        });
        expect(Array.from(got)).toEqual(want);
      }),
      { seed: 13, numRuns: 200 },
    );
  });
});

function naiveTieOrder(pool: ScoredPool): number[] {
  const mean = meanScores(pool);
  const ids = pool.ids;
  return Array.from(identity(pool.size)).sort(
    (a, b) =>
      mean[b] - mean[a] ||
      tieHash(ids[a]) - tieHash(ids[b]) ||
      (ids[a] < ids[b] ? -1 : ids[a] > ids[b] ? 1 : 0),
  );
}

describe("tieOrder", () => {
  it("matches mean desc, tieHash asc, id asc on a pool with many equal means", () => {
    const pool = generatePool({ n: 20_000, seed: 5, integerScores: true });
    expect(Array.from(tieOrder(pool))).toEqual(naiveTieOrder(pool));
  });

  it("matches on a pool with two-decimal scores and missing scores", () => {
    const pool = generatePool({ n: 20_000, seed: 6, missingScoreRate: 0.2 });
    expect(Array.from(tieOrder(pool))).toEqual(naiveTieOrder(pool));
  });
});

/** A generated pool whose scores are made continuous (no two-decimal grid): mixed score bins. */
function continuousPool(n: number, seed: number): ScoredPool {
  const pool = generatePool({ n, seed });
  const rng = createRandom(seed + 1);
  for (const col of pool.scores)
    for (let i = 0; i < n; i++) if (!Number.isNaN(col[i])) col[i] = Math.min(5, col[i] + rng.next() * 0.0099);
  return pool;
}

describe("selectMmssr on generated pools equals the slow reference", () => {
  const cases: [string, () => ScoredPool][] = [
    ["integer scores (large ties)", () => generatePool({ n: 3000, seed: 21, integerScores: true })],
    ["two-decimal scores", () => generatePool({ n: 3000, seed: 22 })],
    ["continuous scores (mixed bins)", () => continuousPool(3000, 23)],
  ];
  for (const [name, make] of cases)
    it(name, () => {
      const pool = make();
      for (const options of [
        { ratio: 0.05 },
        { ratio: 0.3 },
        { budget: 2500, threshold: 2.5 },
        { ratio: 0.2, capabilities: ["ocr", "data", "stem"] as const },
      ]) {
        const opts = {
          ...options,
          capabilities: options.capabilities ? [...options.capabilities] : undefined,
        };
        const fast = selectMmssr(pool, opts);
        const slow = referenceSelect(pool, opts);
        expect(Array.from(fast.indices)).toEqual(Array.from(slow.indices));
        expect(Array.from(fast.pickedBy)).toEqual(Array.from(slow.pickedBy));
        expect(Array.from(fast.pickedStyle)).toEqual(Array.from(slow.pickedStyle));
        expect(fast.rounds).toBe(slow.rounds);
      }
    });
});
