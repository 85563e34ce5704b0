/**
 * The selection policy (issue 8, first step): one schema with defaults and field-named errors,
 * RFC 7386 merge patches that never touch the policy in force when they fail, and the budget
 * governor's caps across a change.
 */
import { describe, expect, it } from "vitest";
import { STYLES } from "../../src/domain/taxonomy.js";
import { BudgetGovernor } from "../../src/selection/budget-governor.js";
import {
  mergePatch,
  POLICY_DEFAULTS,
  parsePolicy,
  patchPolicy,
  policyOrThrow,
  selectOptionsOf,
} from "../../src/selection/selection-policy.js";

const HOUR = 3_600_000;

describe("selection policy schema", () => {
  it("fills the defaults and keeps what is given", () => {
    const p = policyOrThrow({ ratio: 0.3 });
    expect(p).toEqual({ ratio: 0.3, ...POLICY_DEFAULTS });
    expect(policyOrThrow({ budget: 10, maxTotal: 100, capabilities: ["ocr", "data"] })).toMatchObject({
      budget: 10,
      maxTotal: 100,
      capabilities: ["ocr", "data"],
      threshold: 0,
      maxDelayMs: 1000,
    });
  });

  it("names every field at fault", () => {
    const r = parsePolicy({
      ratio: 1.5,
      capabilities: ["ocr", "nope"],
      capabilityWeights: { ocr: -1 },
      styleWeights: { "yes/no": "x" },
      extra: 1,
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const paths = r.problems.map((p) => p.path).sort();
    expect(paths).toEqual(
      expect.arrayContaining(["ratio", "capabilities.1", "capabilityWeights.ocr", "styleWeights.yes/no"]),
    );
    expect(r.problems.some((p) => /extra/.test(p.message) || p.path === "extra")).toBe(true);
  });

  it("wants exactly one of ratio and budget, and no capability twice", () => {
    expect(parsePolicy({})).toMatchObject({ ok: false, problems: [{ path: "ratio" }] });
    expect(parsePolicy({ ratio: 0.1, budget: 5 })).toMatchObject({
      ok: false,
      problems: [{ path: "budget" }],
    });
    expect(parsePolicy({ ratio: 0.1, capabilities: ["ocr", "ocr"] })).toMatchObject({
      ok: false,
      problems: [{ path: "capabilities" }],
    });
    expect(() => policyOrThrow({ ratio: 0 })).toThrow(/ratio/);
  });

  it("gives the offline selector its options (caps stay with the governor)", () => {
    const p = policyOrThrow({ ratio: 0.2, maxTotal: 5, threshold: 1, styleWeights: { "yes/no": 0 } });
    expect(selectOptionsOf(p)).toEqual({
      ratio: 0.2,
      budget: undefined,
      capabilities: undefined,
      threshold: 1,
      capabilityWeights: undefined,
      styleWeights: { "yes/no": 0 },
    });
  });
});

describe("merge patch (RFC 7386)", () => {
  it("merges objects, removes with null, replaces arrays and scalars", () => {
    expect(mergePatch({ a: 1, b: { c: 2, d: 3 }, e: [1, 2] }, { a: null, b: { c: 9 }, e: [3] })).toEqual({
      b: { c: 9, d: 3 },
      e: [3],
    });
    expect(mergePatch({ a: 1 }, "x")).toBe("x");
    expect(mergePatch("x", { a: 1 })).toEqual({ a: 1 });
  });

  it("a valid patch gives the next version; ratio -> budget needs the ratio removed", () => {
    const p0 = policyOrThrow({ ratio: 0.3 });
    const p1 = patchPolicy(p0, { ratio: 0.05 });
    expect(p1).toMatchObject({ ok: true, policy: { ratio: 0.05, version: 1 } });
    const p2 = patchPolicy(p0, { budget: 100 });
    expect(p2).toMatchObject({ ok: false, problems: [{ path: "budget" }] });
    const p3 = patchPolicy(p0, { ratio: null, budget: 100 });
    expect(p3).toMatchObject({ ok: true, policy: { budget: 100, version: 1 } });
    if (p3.ok) expect(p3.policy.ratio).toBeUndefined();
  });

  it("an invalid patch changes nothing and says where", () => {
    const p0 = policyOrThrow({ ratio: 0.3, capabilityWeights: { ocr: 2 } });
    const before = structuredClone(p0);
    const r = patchPolicy(p0, { capabilityWeights: { ocr: -3 }, threshold: 9 });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems.map((p) => p.path).sort()).toEqual(["capabilityWeights.ocr", "threshold"]);
    expect(p0).toEqual(before);
    expect(patchPolicy(p0, { version: 7 })).toMatchObject({ ok: false, problems: [{ path: "version" }] });
    expect(patchPolicy(p0, [1])).toMatchObject({ ok: false });
  });
});

describe("budget governor", () => {
  it("cuts what is asked to what is left of the total and of the hour", () => {
    const g = new BudgetGovernor({ maxTotal: 10, maxPerHour: 4 });
    const t = 5 * HOUR;
    expect(g.allowance(3, t)).toBe(3);
    g.record(3, t);
    expect(g.allowance(3, t + 1)).toBe(1);
    g.record(1, t + 1);
    expect(g.allowance(3, t + 2)).toBe(0);
    // the next clock hour: the hourly allowance starts again, the total goes on
    expect(g.allowance(5, t + HOUR)).toBe(4);
    g.record(4, t + HOUR);
    g.record(2, t + 2 * HOUR);
    expect(g.selectedTotal).toBe(10);
    expect(g.allowance(5, t + 3 * HOUR)).toBe(0);
  });

  it("keeps the counts across a change of caps", () => {
    const g = new BudgetGovernor({ maxTotal: 100 });
    g.record(60, 0);
    g.setCaps({ maxTotal: 50 });
    expect(g.allowance(10, 1)).toBe(0);
    g.setCaps({ maxTotal: 70, maxPerHour: 65 });
    expect(g.allowance(10, 2)).toBe(5);
    g.setCaps({});
    expect(g.allowance(10, 3)).toBe(10);
    expect(() => g.setCaps({ maxTotal: -1 })).toThrow(/maxTotal/);
  });

  it("says which cap binds (the reason of what it cuts)", () => {
    const g = new BudgetGovernor({ maxTotal: 10, maxPerHour: 6 });
    expect(g.bindingCap(5, 0)).toBeUndefined();
    expect(g.bindingCap(7, 0)).toBe("cap-hour");
    g.record(6, 0);
    expect(g.bindingCap(1, 1)).toBe("cap-hour");
    // next hour: 4 left in total, 6 in the hour
    expect(g.bindingCap(5, HOUR)).toBe("cap-total");
    g.setCaps({ maxPerHour: 6 });
    expect(g.bindingCap(5, HOUR)).toBeUndefined();
  });
});

describe("a policy the selector would refuse", () => {
  it("fails parsePolicy with its field, not a window later", () => {
    expect(parsePolicy({ ratio: 0.2, capabilityWeights: { ocr: 0 }, capabilities: ["ocr"] })).toMatchObject({
      ok: false,
      problems: [{ path: "capabilityWeights" }],
    });
    // every style weighted 0: nothing could ever be selected
    const styles = Object.fromEntries(STYLES.map((s) => [s, 0]));
    expect(parsePolicy({ ratio: 0.2, styleWeights: styles })).toMatchObject({
      ok: false,
      problems: [{ path: "styleWeights" }],
    });
  });
});
