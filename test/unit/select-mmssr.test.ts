/**
 * Hand-worked pools for the offline mmSSR selector (../shared/MMSSR.md, "Offline selection").
 * Each expected selection is derived by hand in the comment above it and written out
 * literally; the slow reference selector must agree with every derivation too.
 */
import { describe, expect, it } from "vitest";
import { MmssrError } from "../../src/domain/errors.js";
import { selectMmssr } from "../../src/selection/select-mmssr.js";
import type { SelectOptions } from "../../src/selection/select-options.js";
import { tieHash } from "../../src/selection/tie-break.js";
import { type Pick, poolFromRows, type Row, readablePicks } from "../support/pool-from-rows.js";
import { referenceSelect } from "../support/reference-select.js";

/** Runs the fast selector and the reference on the same pool; both must give `expected`. */
function expectSelection(rows: Row[], options: SelectOptions, expected: Pick[], rounds?: number): void {
  const pool = poolFromRows(rows);
  const fast = selectMmssr(pool, options);
  expect(readablePicks(pool, fast)).toEqual(expected);
  const ref = referenceSelect(pool, options);
  expect(readablePicks(pool, ref)).toEqual(expected);
  if (rounds !== undefined) {
    expect(fast.rounds).toBe(rounds);
    expect(ref.rounds).toBe(rounds);
  }
}

describe("selectMmssr on hand-worked pools", () => {
  it("carries the unused quota of a small bucket to the larger ones", () => {
    // caps [ocr], B = 9, one round: share = 9, n = 9.
    // Buckets (all coco): yes/no {y1} size 1, comparison {c1,c2,c3} size 3,
    // multi-choice {m1..m6} size 6. quota = floor(9/3) = 3.
    //   yes/no:       take min(3, 1) = 1 -> y1, carry 2
    //   comparison:   take min(3+2, 3) = 3 -> c1 c2 c3, carry 2
    //   multi-choice: take min(3+2, 6) = 5 -> m1..m5 (best first), carry 0
    // 9 picked in the first round (without carry only 7 would be, and a 2nd round needed).
    const rows: Row[] = [
      { id: "m1", src: "coco", styles: ["multi-choice"], s: { ocr: 4.9 } },
      { id: "m2", src: "coco", styles: ["multi-choice"], s: { ocr: 4.8 } },
      { id: "m3", src: "coco", styles: ["multi-choice"], s: { ocr: 4.7 } },
      { id: "m4", src: "coco", styles: ["multi-choice"], s: { ocr: 4.6 } },
      { id: "m5", src: "coco", styles: ["multi-choice"], s: { ocr: 4.5 } },
      { id: "m6", src: "coco", styles: ["multi-choice"], s: { ocr: 4.4 } },
      { id: "c1", src: "coco", styles: ["comparison"], s: { ocr: 2.0 } },
      { id: "c2", src: "coco", styles: ["comparison"], s: { ocr: 1.5 } },
      { id: "c3", src: "coco", styles: ["comparison"], s: { ocr: 1.0 } },
      { id: "y1", src: "coco", styles: ["yes/no"], s: { ocr: 0.5 } },
    ];
    expectSelection(
      rows,
      { budget: 9, capabilities: ["ocr"] },
      [
        { id: "y1", cap: "ocr", bucket: "yes/no+coco" },
        { id: "c1", cap: "ocr", bucket: "comparison+coco" },
        { id: "c2", cap: "ocr", bucket: "comparison+coco" },
        { id: "c3", cap: "ocr", bucket: "comparison+coco" },
        { id: "m1", cap: "ocr", bucket: "multi-choice+coco" },
        { id: "m2", cap: "ocr", bucket: "multi-choice+coco" },
        { id: "m3", cap: "ocr", bucket: "multi-choice+coco" },
        { id: "m4", cap: "ocr", bucket: "multi-choice+coco" },
        { id: "m5", cap: "ocr", bucket: "multi-choice+coco" },
      ],
      1,
    );
  });

  it("fills the smallest bucket first, equal sizes by bucket name (code-unit order)", () => {
    // caps [ocr], B = 3, n = 3. Four buckets of size 1, quota = max(floor(3/4), 1) = 1.
    // Name order (plain string <): "short description+coco" < "word/short-phrase+coco"
    //   < "yes/no+Zeta" < "yes/no+alpha" ('Z' = 90 < 'a' = 97). Not style-index order
    //   (word/short-phrase is style 3, short description style 4), not localeCompare.
    // Picks sd1, w1, z1; then |picked| = 3 = n stops before a1 despite a1's best score.
    const rows: Row[] = [
      { id: "a1", src: "alpha", styles: ["yes/no"], s: { ocr: 5 } },
      { id: "w1", src: "coco", styles: ["word/short-phrase"], s: { ocr: 4 } },
      { id: "sd1", src: "coco", styles: ["short description"], s: { ocr: 3 } },
      { id: "z1", src: "Zeta", styles: ["yes/no"], s: { ocr: 1 } },
    ];
    expectSelection(
      rows,
      { budget: 3, capabilities: ["ocr"] },
      [
        { id: "sd1", cap: "ocr", bucket: "short description+coco" },
        { id: "w1", cap: "ocr", bucket: "word/short-phrase+coco" },
        { id: "z1", cap: "ocr", bucket: "yes/no+Zeta" },
      ],
      1,
    );
  });

  it("drops a capability that picks nothing and gives the rest of the budget to the others", () => {
    // caps [ocr, stem, data], B = 6. Nobody has ocr > 0 (0 or missing); stem passes only s1, s2.
    // Round 1: share = floor(6/3) = 2. ocr: nothing -> dropped. stem: s1 s2. data: d1 d2. |sel| = 4.
    // Round 2: active [stem, data], share = floor(2/2) = 1. stem: s1 s2 gone -> dropped.
    //          data: d3. |sel| = 5.
    // Round 3: active [data], share = 1. data: d4. |sel| = 6 = B.
    const rows: Row[] = [
      { id: "s1", src: "coco", styles: ["yes/no"], s: { stem: 5, ocr: 0 } },
      { id: "s2", src: "coco", styles: ["yes/no"], s: { stem: 4 } },
      { id: "d1", src: "coco", styles: ["yes/no"], s: { data: 5, ocr: 0 } },
      { id: "d2", src: "coco", styles: ["yes/no"], s: { data: 4, ocr: 0 } },
      { id: "d3", src: "coco", styles: ["yes/no"], s: { data: 3, ocr: 0 } },
      { id: "d4", src: "coco", styles: ["yes/no"], s: { data: 2, ocr: 0 } },
      { id: "d5", src: "coco", styles: ["yes/no"], s: { data: 1, ocr: 0 } },
    ];
    expectSelection(
      rows,
      { budget: 6, capabilities: ["ocr", "stem", "data"] },
      [
        { id: "s1", cap: "stem", bucket: "yes/no+coco" },
        { id: "s2", cap: "stem", bucket: "yes/no+coco" },
        { id: "d1", cap: "data", bucket: "yes/no+coco" },
        { id: "d2", cap: "data", bucket: "yes/no+coco" },
        { id: "d3", cap: "data", bucket: "yes/no+coco" },
        { id: "d4", cap: "data", bucket: "yes/no+coco" },
      ],
      3,
    );
  });

  it("passes only scores strictly above the threshold", () => {
    // caps [ocr], thr = 3, B = 10. Passing: e 5, c 4, b 3.5, f 3.0001; a = 3 (equal) and
    // d 2.9 do not pass. One bucket: round 1 takes all 4 in rank order; round 2 finds
    // nothing -> ocr drops -> loop ends after 2 rounds with 4 < B.
    const rows: Row[] = [
      { id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 3 } },
      { id: "b", src: "coco", styles: ["yes/no"], s: { ocr: 3.5 } },
      { id: "c", src: "coco", styles: ["yes/no"], s: { ocr: 4 } },
      { id: "d", src: "coco", styles: ["yes/no"], s: { ocr: 2.9 } },
      { id: "e", src: "coco", styles: ["yes/no"], s: { ocr: 5 } },
      { id: "f", src: "coco", styles: ["yes/no"], s: { ocr: 3.0001 } },
    ];
    expectSelection(
      rows,
      { budget: 10, capabilities: ["ocr"], threshold: 3 },
      [
        { id: "e", cap: "ocr", bucket: "yes/no+coco" },
        { id: "c", cap: "ocr", bucket: "yes/no+coco" },
        { id: "b", cap: "ocr", bucket: "yes/no+coco" },
        { id: "f", cap: "ocr", bucket: "yes/no+coco" },
      ],
      2,
    );
  });

  it("threshold 5 lets nothing pass on the 0..5 scale", () => {
    const rows: Row[] = [{ id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 5, stem: 5 } }];
    expectSelection(rows, { budget: 1, threshold: 5 }, [], 1);
  });

  it("never passes a missing score, not even at threshold 0", () => {
    // caps [ocr], thr 0, B = 5. miss (null), nan (NaN) and absent have no ocr score; zero has
    // ocr 0 (not > 0). Only half (0.5) passes; the sample with every score missing never does.
    const rows: Row[] = [
      { id: "miss", src: "coco", styles: ["yes/no"], s: { ocr: null, stem: 5 } },
      { id: "nan", src: "coco", styles: ["yes/no"], s: { ocr: Number.NaN } },
      { id: "absent", src: "coco", styles: ["yes/no"], s: { stem: 4 } },
      { id: "zero", src: "coco", styles: ["yes/no"], s: { ocr: 0 } },
      { id: "half", src: "coco", styles: ["yes/no"], s: { ocr: 0.5 } },
      { id: "none", src: "coco", styles: ["yes/no"] },
    ];
    expectSelection(
      rows,
      { budget: 5, capabilities: ["ocr"] },
      [{ id: "half", cap: "ocr", bucket: "yes/no+coco" }],
      2,
    );
    // With all 14 capabilities, "none" (no score at all) is still never picked.
    const pool = poolFromRows(rows);
    const ids = readablePicks(pool, selectMmssr(pool, { budget: 6 })).map((p) => p.id);
    expect(ids).not.toContain("none");
    expect(ids).not.toContain("nan");
    expect(ids).not.toContain("zero");
    expect(ids.sort()).toEqual(["absent", "half", "miss"]);
  });

  it("puts a multi-style sample in several buckets but picks it once", () => {
    // caps [ocr], B = 3. x has styles yes/no and multi-choice.
    // Round 1: n = 3. Buckets: yes/no+coco [x, y] (size 2), multi-choice+coco [x, z, w] (size 3).
    //   quota = max(floor(3/2), 1) = 1. yes/no: x. multi-choice: free = [z, w] (x taken) -> z.
    //   2 picked.
    // Round 2: share = n = 1. Remaining y (yes/no), w (multi-choice): two buckets of size 1;
    //   "multi-choice+coco" < "yes/no+coco", so w (score 2) is picked, not y (score 4).
    const rows: Row[] = [
      { id: "x", src: "coco", styles: ["yes/no", "multi-choice"], s: { ocr: 5 } },
      { id: "y", src: "coco", styles: ["yes/no"], s: { ocr: 4 } },
      { id: "z", src: "coco", styles: ["multi-choice"], s: { ocr: 3 } },
      { id: "w", src: "coco", styles: ["multi-choice"], s: { ocr: 2 } },
    ];
    expectSelection(
      rows,
      { budget: 3, capabilities: ["ocr"] },
      [
        { id: "x", cap: "ocr", bucket: "yes/no+coco" },
        { id: "z", cap: "ocr", bucket: "multi-choice+coco" },
        { id: "w", cap: "ocr", bucket: "multi-choice+coco" },
      ],
      2,
    );
  });

  it("never takes more than n in one capability, even when carry passes through an emptied bucket", () => {
    // caps [ocr], B = 2, n = 2. x has styles comparison and short description.
    // Buckets: comparison+coco [x] (1), short description+coco [x] (1), multi-choice+coco [a, b] (2);
    //   quota = max(floor(2/3), 1) = 1. comparison: x. short description: free = [] -> take 0,
    //   carry 1. multi-choice: quota + carry = 2 but only n - |picked| = 1 left -> a.
    // (Read literally, MMSSR.md's take = min(quota + carry, |free|) would take a and b: 3 > B.)
    const rows: Row[] = [
      { id: "a", src: "coco", styles: ["multi-choice"], s: { ocr: 5 } },
      { id: "b", src: "coco", styles: ["multi-choice"], s: { ocr: 4 } },
      { id: "x", src: "coco", styles: ["comparison", "short description"], s: { ocr: 3 } },
    ];
    expectSelection(
      rows,
      { budget: 2, capabilities: ["ocr"] },
      [
        { id: "x", cap: "ocr", bucket: "comparison+coco" },
        { id: "a", cap: "ocr", bucket: "multi-choice+coco" },
      ],
      1,
    );
  });

  it("selects every reachable sample and stops when the budget exceeds the eligible pool", () => {
    // caps [ocr, stem], B = 100. n1, n2 have no style (no bucket), m1 has no score.
    // Round 1: share = 50. ocr: passing r1 (5), n1 (5), r2 (2); buckets yes/no+coco [r1],
    //   comparison+vg [r2], sizes 1 and 1, "comparison+vg" < "yes/no+coco" -> r2, r1.
    //   stem: passing n1 (5), r3 (3) (r1 gone); bucket yes/no+vg [r3] -> r3.
    // Round 2: ocr passes only n1 (no bucket) -> dropped; stem likewise -> dropped; end.
    const rows: Row[] = [
      { id: "r1", src: "coco", styles: ["yes/no"], s: { ocr: 5, stem: 1 } },
      { id: "r2", src: "vg", styles: ["comparison"], s: { ocr: 2, stem: 4 } },
      { id: "r3", src: "vg", styles: ["yes/no"], s: { ocr: null, stem: 3 } },
      { id: "n1", src: "coco", s: { ocr: 5, stem: 5 } },
      { id: "n2", src: "coco", styles: [], s: { ocr: 4, stem: 4 } },
      { id: "m1", src: "coco", styles: ["yes/no"] },
    ];
    expectSelection(
      rows,
      { budget: 100, capabilities: ["ocr", "stem"] },
      [
        { id: "r2", cap: "ocr", bucket: "comparison+vg" },
        { id: "r1", cap: "ocr", bucket: "yes/no+coco" },
        { id: "r3", cap: "stem", bucket: "yes/no+vg" },
      ],
      2,
    );
  });

  it("a ratio that gives B = 0 selects nothing", () => {
    // 9 rows, ratio 0.1: B = floor(0.9) = 0; the loop never runs.
    const rows: Row[] = Array.from({ length: 9 }, (_, k) => ({
      id: `r${k}`,
      src: "coco",
      styles: ["yes/no"] as const,
      s: { ocr: 5 },
    }));
    const pool = poolFromRows(rows);
    const res = selectMmssr(pool, { ratio: 0.1 });
    expect(res.budget).toBe(0);
    expect(res.indices.length).toBe(0);
    expect(res.pickedBy.length).toBe(0);
    expect(res.pickedStyle.length).toBe(0);
    expect(res.rounds).toBe(0);
  });

  it("counts style-less rows in |P| for the ratio budget", () => {
    // 10 rows (5 without styles), ratio 0.1: B = floor(10 * 0.1) = 1, not floor(5 * 0.1) = 0.
    // caps [ocr]: the best styled row t0 (ocr 5) is picked.
    const rows: Row[] = [
      ...Array.from({ length: 5 }, (_, k) => ({
        id: `t${k}`,
        src: "coco",
        styles: ["yes/no"] as const,
        s: { ocr: 5 - k },
      })),
      ...Array.from({ length: 5 }, (_, k) => ({ id: `u${k}`, src: "coco", s: { ocr: 5 } })),
    ];
    const pool = poolFromRows(rows);
    const res = selectMmssr(pool, { ratio: 0.1, capabilities: ["ocr"] });
    expect(res.budget).toBe(1);
    expect(readablePicks(pool, res)).toEqual([{ id: "t0", cap: "ocr", bucket: "yes/no+coco" }]);
  });

  it("uses only the given capabilities, in the given order", () => {
    // a is best on both stem and ocr; d passes only on spatial (not in the list): never picked.
    // [stem, ocr], B = 3: round 1 share = 1: stem a; ocr b (a gone). Round 2 share = 1:
    //   stem: c (4) -> |sel| = 3 = B, stop.
    // [ocr, stem], B = 3: round 1: ocr a; stem c. Round 2: ocr b.
    const rows: Row[] = [
      { id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 5, stem: 5 } },
      { id: "b", src: "coco", styles: ["yes/no"], s: { ocr: 4, stem: 1 } },
      { id: "c", src: "coco", styles: ["yes/no"], s: { ocr: 1, stem: 4 } },
      { id: "d", src: "coco", styles: ["yes/no"], s: { spatial: 5 } },
    ];
    const bucket = "yes/no+coco";
    expectSelection(
      rows,
      { budget: 3, capabilities: ["stem", "ocr"] },
      [
        { id: "a", cap: "stem", bucket },
        { id: "b", cap: "ocr", bucket },
        { id: "c", cap: "stem", bucket },
      ],
      2,
    );
    expectSelection(
      rows,
      { budget: 3, capabilities: ["ocr", "stem"] },
      [
        { id: "a", cap: "ocr", bucket },
        { id: "c", cap: "stem", bucket },
        { id: "b", cap: "ocr", bucket },
      ],
      2,
    );
  });

  it("breaks score ties by mean score over all capabilities, then by tieHash(id)", () => {
    // caps [ocr] only, B = 9, one bucket, so the pick order is the rank order.
    // top: ocr 4 beats every ocr 3, whatever its mean (2).
    // ocr 3 ties by mean of present scores over ALL 14 capabilities (stem counts though
    //   not selected; missing ones don't): p (3+5)/2 = 4, r 3/1 = 3, q (3+1)/2 = 2,
    //   s (3+0)/2 = 1.5 (a 0 counts).
    // ocr 2, mean 2 each: a, b, c, d tie fully -> tieHash ascending: c, d, a, b
    //   (asserted below; id order would give a, b, c, d).
    expect(tieHash("c")).toBeLessThan(tieHash("d"));
    expect(tieHash("d")).toBeLessThan(tieHash("a"));
    expect(tieHash("a")).toBeLessThan(tieHash("b"));
    const rows: Row[] = [
      { id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 2 } },
      { id: "b", src: "coco", styles: ["yes/no"], s: { ocr: 2 } },
      { id: "c", src: "coco", styles: ["yes/no"], s: { ocr: 2 } },
      { id: "d", src: "coco", styles: ["yes/no"], s: { ocr: 2 } },
      { id: "s", src: "coco", styles: ["yes/no"], s: { ocr: 3, spatial: 0 } },
      { id: "q", src: "coco", styles: ["yes/no"], s: { ocr: 3, stem: 1 } },
      { id: "r", src: "coco", styles: ["yes/no"], s: { ocr: 3 } },
      { id: "p", src: "coco", styles: ["yes/no"], s: { ocr: 3, stem: 5 } },
      { id: "top", src: "coco", styles: ["yes/no"], s: { ocr: 4, stem: 0 } },
    ];
    const order = ["top", "p", "r", "q", "s", "c", "d", "a", "b"];
    expectSelection(
      rows,
      { budget: 9, capabilities: ["ocr"] },
      order.map((id) => ({ id, cap: "ocr", bucket: "yes/no+coco" })),
      1,
    );
    // With B = 2 from the hash group alone: c, d.
    expectSelection(
      rows.slice(0, 4),
      { budget: 2, capabilities: ["ocr"] },
      [
        { id: "c", cap: "ocr", bucket: "yes/no+coco" },
        { id: "d", cap: "ocr", bucket: "yes/no+coco" },
      ],
      1,
    );
  });
});

describe("selectMmssr option errors", () => {
  const pool = poolFromRows([{ id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 5 } }]);

  function expectBadOptions(options: SelectOptions, message: RegExp): void {
    let caught: unknown;
    try {
      selectMmssr(pool, options);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MmssrError);
    expect((caught as MmssrError).code).toBe("MMSSR_BAD_OPTIONS");
    expect((caught as MmssrError).message).toMatch(message);
  }

  it("rejects both ratio and budget", () => {
    expectBadOptions({ ratio: 0.5, budget: 1 }, /ratio/);
    expectBadOptions({ ratio: 0.5, budget: 1 }, /budget/);
  });

  it("rejects neither ratio nor budget", () => {
    expectBadOptions({}, /ratio/);
    expectBadOptions({}, /budget/);
  });

  it.each([0, 1, -0.1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("rejects ratio %s", (ratio) => {
    expectBadOptions({ ratio }, /ratio/);
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])("rejects budget %s", (budget) => {
    expectBadOptions({ budget }, /budget/);
  });

  it("rejects an unknown capability, naming it", () => {
    expectBadOptions({ budget: 1, capabilities: ["ocr", "vision" as never] }, /vision/);
  });

  it.each([-0.5, 5.5, Number.NaN])("rejects threshold %s", (threshold) => {
    expectBadOptions({ budget: 1, threshold }, /threshold/);
  });

  it("rejects negative capability and style weights", () => {
    expectBadOptions({ budget: 1, capabilityWeights: { ocr: -1 } }, /weight/i);
    expectBadOptions({ budget: 1, styleWeights: { "yes/no": -1 } }, /weight/i);
  });

  it("accepts the edges: budget 0, threshold 0 and 5", () => {
    expect(selectMmssr(pool, { budget: 0 }).indices.length).toBe(0);
    expect(selectMmssr(pool, { budget: 1, threshold: 0 }).indices.length).toBe(1);
    expect(selectMmssr(pool, { budget: 1, threshold: 5 }).indices.length).toBe(0);
  });
});
