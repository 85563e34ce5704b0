import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPoolJsonl } from "../../connectors/files/scored-pool-jsonl.js";
import { readScoredPool } from "../../connectors/scored-pool-io.js";
import { NUM_CAPABILITIES } from "../../src/domain/taxonomy.js";
import { generatePool } from "../../src/pool/generate-pool.js";
import type { ScoredPool } from "../../src/pool/scored-pool.js";
import { runCli } from "../support/run-cli.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-gen-pool-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function genPool(name: string, ...args: string[]): Promise<string> {
  const out = join(dir, name);
  const res = await runCli(["gen-pool", "--out", out, ...args]);
  expect(res.stderr).toBe("");
  expect(res.code).toBe(0);
  return out;
}

function popcount(x: number): number {
  let n = 0;
  for (let v = x; v !== 0; v &= v - 1) n++;
  return n;
}

describe("mmssr gen-pool", () => {
  it("the same seed gives a byte-identical file, another seed a different one", async () => {
    const a = await genPool("a.jsonl", "--n", "3000", "--seed", "7");
    const b = await genPool("b.jsonl", "--n", "3000", "--seed", "7");
    const c = await genPool("c.jsonl", "--n", "3000", "--seed", "8");
    const [ta, tb, tc] = await Promise.all([a, b, c].map((p) => readFile(p)));
    expect(ta.equals(tb)).toBe(true);
    expect(ta.equals(tc)).toBe(false);
    expect(ta.toString("utf8").trimEnd().split("\n")).toHaveLength(3000);
  });

  it("writes what generatePool gives, as JSONL and as Parquet", async () => {
    const expected = generatePool({ n: 1500, seed: 3 });
    for (const name of ["g.jsonl", "g.parquet"]) {
      const path = await genPool(name, "--n", "1500", "--seed", "3");
      const pool = await readScoredPool(path);
      expect(pool.ids).toEqual(expected.ids);
      expect(pool.styleMask).toEqual(expected.styleMask);
      expect(Array.from(pool.sourceIndex, (s) => pool.sources[s])).toEqual(
        Array.from(expected.sourceIndex, (s) => expected.sources[s]),
      );
      for (let c = 0; c < NUM_CAPABILITIES; c++) expect(pool.scores[c]).toEqual(expected.scores[c]);
    }
    expect((await readdir(dir)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("--integer-scores gives whole scores 0..5 only", async () => {
    const path = await genPool("int.jsonl", "--n", "4000", "--seed", "5", "--integer-scores");
    const pool = await readScoredPoolJsonl(path);
    let present = 0;
    const seen = new Set<number>();
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      for (const v of pool.scores[c]) {
        if (Number.isNaN(v)) continue;
        present++;
        seen.add(v);
      }
    expect([...seen].sort()).toEqual([...seen].filter((v) => Number.isInteger(v) && v >= 0 && v <= 5).sort());
    expect(present).toBeGreaterThan(0.98 * 4000 * NUM_CAPABILITIES);
    expect(seen.size).toBeGreaterThanOrEqual(5);
  });

  it("rejects bad flags with exit code 2", async () => {
    for (const args of [
      ["--n", "-5"],
      ["--n", "abc"],
      ["--n", "10", "--seed", "x"],
    ]) {
      const out = join(dir, "never.jsonl");
      const res = await runCli(["gen-pool", "--out", out, ...args]);
      expect(res.code).toBe(2);
      expect(res.stderr).toMatch(/--n|--seed/);
    }
    const res = await runCli(["gen-pool", "--n", "10", "--out", join(dir, "pool.txt")]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("pool.txt");
    expect(await readdir(dir)).not.toContain("never.jsonl");
    expect(await readdir(dir)).not.toContain("pool.txt");
  });
});

describe("generatePool: a realistic pool", () => {
  const n = 40_000;
  let pool: ScoredPool;

  beforeAll(() => {
    pool = generatePool({ n, seed: 2026 });
  });

  it("has unique ids and scores within 0..5 (two decimals) or missing", () => {
    expect(pool.size).toBe(n);
    expect(new Set(pool.ids).size).toBe(n);
    const bad: number[] = [];
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      for (const v of pool.scores[c]) {
        if (Number.isNaN(v)) continue;
        if (!(v >= 0 && v <= 5) || Math.abs(v * 100 - Math.round(v * 100)) > 1e-6) bad.push(v);
      }
    expect(bad).toEqual([]);
  });

  it("has about 1% style-less rows and about 0.5% missing scores", () => {
    let styleLess = 0;
    let missing = 0;
    for (let i = 0; i < n; i++) if (pool.styleMask[i] === 0) styleLess++;
    for (let c = 0; c < NUM_CAPABILITIES; c++) for (const v of pool.scores[c]) if (Number.isNaN(v)) missing++;
    expect(styleLess / n).toBeGreaterThan(0.006);
    expect(styleLess / n).toBeLessThan(0.014);
    expect(missing / (n * NUM_CAPABILITIES)).toBeGreaterThan(0.004);
    expect(missing / (n * NUM_CAPABILITIES)).toBeLessThan(0.006);
  });

  it("follows the requested rates", () => {
    const p = generatePool({ n: 20_000, seed: 1, missingScoreRate: 0.1, styleLessRate: 0.2 });
    let styleLess = 0;
    let missing = 0;
    for (let i = 0; i < p.size; i++) if (p.styleMask[i] === 0) styleLess++;
    for (let c = 0; c < NUM_CAPABILITIES; c++) for (const v of p.scores[c]) if (Number.isNaN(v)) missing++;
    expect(styleLess / p.size).toBeCloseTo(0.2, 1);
    expect(missing / (p.size * NUM_CAPABILITIES)).toBeCloseTo(0.1, 1);
    const none = generatePool({ n: 5000, seed: 1, missingScoreRate: 0, styleLessRate: 0 });
    expect(Array.from(none.styleMask).every((m) => m !== 0)).toBe(true);
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      expect(none.scores[c].every((v) => !Number.isNaN(v))).toBe(true);
  });

  it("has 20 sources with skewed sizes, and --sources controls the count", () => {
    expect(pool.sources.length).toBe(20);
    const sizes = new Array<number>(pool.sources.length).fill(0);
    for (const s of pool.sourceIndex) sizes[s]++;
    sizes.sort((a, b) => b - a);
    expect(sizes[sizes.length - 1]).toBeGreaterThan(0);
    // Zipf-like: the largest source is several times the smallest
    expect(sizes[0] / sizes[sizes.length - 1]).toBeGreaterThan(5);
    expect(sizes[0] / n).toBeGreaterThan(0.1);
    expect(generatePool({ n: 2000, seed: 1, sources: 4 }).sources.length).toBe(4);
  });

  it("has multi-style rows (about a quarter) and uses every style", () => {
    let multi = 0;
    let union = 0;
    for (const m of pool.styleMask) {
      if (popcount(m) >= 2) multi++;
      union |= m;
    }
    expect(multi / n).toBeGreaterThan(0.15);
    expect(multi / n).toBeLessThan(0.35);
    expect(union).toBe((1 << 9) - 1);
  });

  it("has correlated capability scores (a per-sample quality)", () => {
    const a = pool.scores[0];
    const b = pool.scores[1];
    let sa = 0;
    let sb = 0;
    let m = 0;
    for (let i = 0; i < n; i++)
      if (!Number.isNaN(a[i]) && !Number.isNaN(b[i])) {
        sa += a[i];
        sb += b[i];
        m++;
      }
    const ma = sa / m;
    const mb = sb / m;
    let cov = 0;
    let va = 0;
    let vb = 0;
    for (let i = 0; i < n; i++)
      if (!Number.isNaN(a[i]) && !Number.isNaN(b[i])) {
        cov += (a[i] - ma) * (b[i] - mb);
        va += (a[i] - ma) ** 2;
        vb += (b[i] - mb) ** 2;
      }
    expect(cov / Math.sqrt(va * vb)).toBeGreaterThan(0.2);
  });
});
