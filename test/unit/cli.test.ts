import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeScoredPool } from "../../connectors/scored-pool-io.js";
import { CAPABILITY_IDS, type CapabilityId, NUM_STYLES, STYLES } from "../../src/domain/taxonomy.js";
import { generatePool } from "../../src/pool/generate-pool.js";
import type { ScoredPool } from "../../src/pool/scored-pool.js";
import { selectMmssr } from "../../src/selection/select-mmssr.js";
import type { SelectOptions } from "../../src/selection/select-options.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { runCli } from "../support/run-cli.js";

const N = 2000;

let dir: string;
let duck: Duck;
/** The generated pool (no extras) and its JSONL / Parquet forms; JSONL rows carry extras. */
let pool: ScoredPool;
let poolJsonl: string;
let poolParquet: string;
/** Input rows by id, as written to poolJsonl (some with an extra `note` field). */
const inputRows = new Map<string, Record<string, unknown>>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-cli-"));
  duck = await openDuck();
  pool = generatePool({ n: N, seed: 42 });
  const plain = join(dir, "plain.jsonl");
  await writeScoredPool(plain, pool);
  // Add a field outside the interchange format to every 10th row: it must be carried through.
  const lines = (await readFile(plain, "utf8")).split("\n").filter((l) => l !== "");
  const withExtras = lines.map((line, i) => {
    const row = JSON.parse(line) as Record<string, unknown>;
    if (i % 10 === 0) row.note = { origin: `batch-${i}`, tags: [i, "x"] };
    inputRows.set(row.id as string, row);
    return JSON.stringify(row);
  });
  poolJsonl = join(dir, "pool.jsonl");
  await writeFile(poolJsonl, `${withExtras.join("\n")}\n`);
  // The Parquet form of the same pool (extras included), written through the CLI's own I/O.
  const { readScoredPool } = await import("../../connectors/scored-pool-io.js");
  poolParquet = join(dir, "pool.parquet");
  await writeScoredPool(poolParquet, await readScoredPool(poolJsonl));
});

afterAll(async () => {
  duck?.close();
  await rm(dir, { recursive: true, force: true });
});

const lit = (path: string) => `'${path.replaceAll("'", "''")}'`;

const sql = (query: string) => duck.sql(query);

async function readJsonl(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Output rows of a Parquet file in file order, read by DuckDB (an independent reader). */
async function readParquetRows(path: string): Promise<Record<string, unknown>[]> {
  return sql(`SELECT * FROM read_parquet(${lit(path)}, file_row_number = true) ORDER BY file_row_number`);
}

/** Ids selectMmssr picks in memory, in pick order. */
function expectedIds(options: SelectOptions): string[] {
  const result = selectMmssr(pool, options);
  return Array.from(result.indices, (i) => pool.ids[i]);
}

let outCounter = 0;
function outPath(ext: string): string {
  return join(dir, `out-${++outCounter}${ext}`);
}

/** Checks every output row against its input row: fields preserved, picked_by and bucket well formed. */
function checkSelectedRows(rows: Record<string, unknown>[]): void {
  for (const row of rows) {
    const input = inputRows.get(row.id as string);
    expect(input, `output id ${String(row.id)} is not in the input`).toBeDefined();
    if (!input) continue;
    expect(row.image_source).toBe(input.image_source);
    expect(row.styles).toEqual(input.styles);
    expect(row.scores).toEqual(input.scores);
    expect(row.note).toEqual(input.note);
    expect(CAPABILITY_IDS).toContain(row.picked_by);
    const styles = input.styles as string[];
    expect(styles.map((s) => `${s}+${input.image_source}`)).toContain(row.bucket);
    // the capability that picked the row had a present score above the default threshold 0
    const score = (input.scores as Record<string, number | null>)[row.picked_by as string];
    expect(score).not.toBeNull();
    expect(score as number).toBeGreaterThan(0);
  }
}

describe("mmssr select: JSONL and Parquet", () => {
  it("JSONL -> JSONL: floor(n*ratio) rows, fields carried, picked_by and bucket, same ids as selectMmssr", async () => {
    const out = outPath(".jsonl");
    const res = await runCli(["select", "--scores", poolJsonl, "--ratio", "0.3", "--out", out]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const rows = await readJsonl(out);
    expect(rows.length).toBe(Math.floor(N * 0.3));
    expect(new Set(rows.map((r) => r.id)).size).toBe(rows.length);
    checkSelectedRows(rows);
    // at least one selected row had an extra field, so carrying it through was really checked
    expect(rows.some((r) => r.note !== undefined)).toBe(true);
    expect(rows.map((r) => r.id)).toEqual(expectedIds({ ratio: 0.3 }));
    // the summary names the selected count
    expect(res.stdout).toContain(`selected ${Math.floor(N * 0.3)} of ${N} rows`);
  });

  it("JSONL -> Parquet and Parquet -> Parquet give the ids of JSONL -> JSONL (read back by DuckDB)", async () => {
    const jsonlOut = outPath(".jsonl");
    expect((await runCli(["select", "--scores", poolJsonl, "--ratio", "0.25", "--out", jsonlOut])).code).toBe(
      0,
    );
    const jsonlIds = (await readJsonl(jsonlOut)).map((r) => r.id);
    expect(jsonlIds.length).toBe(Math.floor(N * 0.25));

    for (const input of [poolJsonl, poolParquet]) {
      const out = outPath(".parquet");
      const res = await runCli(["select", "--scores", input, "--ratio", "0.25", "--out", out]);
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      const rows = await readParquetRows(out);
      expect(rows.map((r) => r.id)).toEqual(jsonlIds);
      const cols = (await sql(`DESCRIBE SELECT * FROM ${lit(out)}`)).map((c) => c.column_name);
      expect(cols).toEqual(expect.arrayContaining(["id", "image_source", "styles", "picked_by", "bucket"]));
      expect(cols).toEqual(expect.arrayContaining(CAPABILITY_IDS.map((c) => `score_${c}`)));
      // back to the interchange shape, then the same checks as for JSONL
      checkSelectedRows(
        rows.map((r) => {
          const scores: Record<string, number | null> = {};
          for (const c of CAPABILITY_IDS) scores[c] = r[`score_${c}`] as number | null;
          const note = typeof r.note === "string" ? JSON.parse(r.note) : (r.note ?? undefined);
          return { ...r, scores, note };
        }),
      );
    }
  });

  it("--budget N selects N rows, the ids selectMmssr gives", async () => {
    const out = outPath(".jsonl");
    const res = await runCli(["select", "--scores", poolJsonl, "--budget", "137", "--out", out]);
    expect(res.code).toBe(0);
    const rows = await readJsonl(out);
    expect(rows.length).toBe(137);
    expect(rows.map((r) => r.id)).toEqual(expectedIds({ budget: 137 }));
    expect(res.stdout).toContain("selected 137 of");
  });

  it("--caps ocr,stem picks only with ocr and stem", async () => {
    const out = outPath(".jsonl");
    const res = await runCli([
      "select",
      "--scores",
      poolJsonl,
      "--ratio",
      "0.2",
      "--caps",
      "ocr,stem",
      "--out",
      out,
    ]);
    expect(res.code).toBe(0);
    const rows = await readJsonl(out);
    expect(rows.length).toBe(Math.floor(N * 0.2));
    expect(new Set(rows.map((r) => r.picked_by))).toEqual(new Set(["ocr", "stem"]));
    checkSelectedRows(rows);
    expect(rows.map((r) => r.id)).toEqual(
      expectedIds({ ratio: 0.2, capabilities: ["ocr", "stem"] as CapabilityId[] }),
    );
  });

  it("--thr 4 keeps only rows whose picking score is above 4", async () => {
    const out = outPath(".jsonl");
    const res = await runCli(["select", "--scores", poolJsonl, "--ratio", "0.3", "--thr", "4", "--out", out]);
    expect(res.code).toBe(0);
    const rows = await readJsonl(out);
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      const s = (r.scores as Record<string, number | null>)[r.picked_by as string];
      expect(s).not.toBeNull();
      expect(s as number).toBeGreaterThan(4);
    }
    expect(rows.map((r) => r.id)).toEqual(expectedIds({ ratio: 0.3, threshold: 4 }));
  });

  it("--summary-json writes the summary as JSON: capabilities, styles, buckets", async () => {
    const out = outPath(".jsonl");
    const summaryPath = join(dir, "summary.json");
    const res = await runCli([
      "select",
      "--scores",
      poolJsonl,
      "--ratio",
      "0.1",
      "--out",
      out,
      "--summary-json",
      summaryPath,
    ]);
    expect(res.code).toBe(0);
    const summary = JSON.parse(await readFile(summaryPath, "utf8"));
    expect(summary.selected).toBe(Math.floor(N * 0.1));
    expect(summary.poolRows).toBe(N);
    expect(summary.capabilities.map((c: { id: string }) => c.id)).toEqual([...CAPABILITY_IDS]);
    expect(summary.capabilities.reduce((a: number, c: { picked: number }) => a + c.picked, 0)).toBe(
      summary.selected,
    );
    expect(summary.styles).toHaveLength(NUM_STYLES);
    expect(summary.styles.map((s: { style: string }) => s.style)).toEqual([...STYLES]);
    expect(summary.buckets.length).toBeGreaterThan(0);
    expect(summary.buckets.reduce((a: number, b: { selected: number }) => a + b.selected, 0)).toBe(
      summary.selected,
    );
    for (const b of summary.buckets) expect(b.bucket).toMatch(/^.+\+.+$/);
  });
});

/** Runs a failing select and checks: exit 2, stderr names every part, no output (nor temp file) left. */
async function expectUsageFailure(args: string[], ...parts: string[]): Promise<string> {
  const sub = await mkdtemp(join(dir, "fail-"));
  const out = join(sub, "out.jsonl");
  const argv = args.map((a) => (a === "OUT" ? out : a));
  const res = await runCli(argv);
  expect(res.code, `stderr: ${res.stderr}`).toBe(2);
  for (const part of parts) expect(res.stderr).toContain(part);
  expect(res.stdout).toBe("");
  expect(existsSync(out)).toBe(false);
  expect(await readdir(sub)).toEqual([]);
  return res.stderr;
}

describe("mmssr select: bad usage exits 2 naming the problem", () => {
  const base = () => ["select", "--scores", poolJsonl, "--out", "OUT"];

  it.each([
    [
      ["--ratio", "1.5"],
      ["--ratio", "1.5"],
    ],
    [
      ["--ratio", "0"],
      ["--ratio", "(0, 1)"],
    ],
    [
      ["--ratio", "abc"],
      ["--ratio", "abc"],
    ],
    [["--ratio", "0.3", "--budget", "10"], ["--ratio and --budget"]],
    [[], ["--ratio or --budget"]],
    [
      ["--budget", "-1"],
      ["--budget", "-1"],
    ],
    [
      ["--budget", "2.5"],
      ["--budget", "2.5"],
    ],
    [
      ["--ratio", "0.3", "--caps", "ocr,nope"],
      ["--caps", '"nope"'],
    ],
    [
      ["--ratio", "0.3", "--thr", "7"],
      ["--thr", "7"],
    ],
    [
      ["--ratio", "0.3", "--bogus"],
      ["unknown option", "--bogus"],
    ],
  ])("%j", async (extra, parts) => {
    await expectUsageFailure([...base(), ...extra], ...parts);
  });

  it("a missing --scores file names the path", async () => {
    const missing = join(dir, "no-such-pool.jsonl");
    await expectUsageFailure(
      ["select", "--scores", missing, "--ratio", "0.3", "--out", "OUT"],
      "MMSSR_FILE_NOT_FOUND",
      missing,
    );
  });

  it("an output path with an unknown extension names it", async () => {
    const out = join(dir, "selected.csv");
    await expectUsageFailure(["select", "--scores", poolJsonl, "--ratio", "0.3", "--out", out], out, ".csv");
    expect(existsSync(out)).toBe(false);
  });

  it("an input path with an unknown extension names it", async () => {
    await expectUsageFailure(
      ["select", "--scores", join(dir, "pool.csv"), "--ratio", "0.3", "--out", "OUT"],
      "pool.csv",
      ".csv",
    );
  });

  it("a missing required option names it", async () => {
    await expectUsageFailure(["select", "--scores", poolJsonl, "--ratio", "0.3"], "--out");
    await expectUsageFailure(["select", "--ratio", "0.3", "--out", "OUT"], "--scores");
  });

  it("an unknown command is a usage error", async () => {
    const res = await runCli(["selekt"]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("selekt");
  });
});

describe("mmssr select: bad rows exit 2 with line numbers", () => {
  const row = (id: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      id,
      image_source: "coco",
      styles: ["yes/no"],
      scores: { ocr: 3, stem: 2.5 },
      ...extra,
    });

  async function badPool(name: string, lines: string[]): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, `${lines.join("\n")}\n`);
    return path;
  }

  async function failsWith(lines: string[], ...parts: string[]): Promise<string> {
    const path = await badPool(`bad-${++outCounter}.jsonl`, lines);
    return expectUsageFailure(
      ["select", "--scores", path, "--ratio", "0.5", "--out", "OUT"],
      "MMSSR_BAD_ROW",
      ...parts.map((p) => p.replace("FILE", path)),
    );
  }

  it("invalid JSON on line 3", async () => {
    await failsWith([row("a"), row("b"), '{"id": "c", "styles": [', row("d")], "FILE:3", "invalid JSON");
  });

  it("an unknown style name names the style and the line", async () => {
    await failsWith([row("a"), row("b", { styles: ["yes/no", "haiku"] })], "FILE:2", '"haiku"', "styles[1]");
  });

  it("a score of 7 names the capability and the line", async () => {
    await failsWith(
      [row("a"), row("b"), row("c"), row("d", { scores: { ocr: 7 } })],
      "FILE:4",
      "scores.ocr",
      "7",
    );
  });

  it("an unknown capability key names it", async () => {
    await failsWith([row("a", { scores: { vision: 3 } })], "FILE:1", "scores.vision", "unknown capability");
  });

  it("a duplicate id names both rows", async () => {
    await failsWith([row("a"), row("b"), row("c"), row("b")], "FILE:4", '"b"', "line 2");
  });

  it("a duplicate id after blank lines names the line of the first occurrence", async () => {
    await failsWith(["", row("a"), "", row("b"), row("c"), row("b")], "FILE:6", '"b"', "line 4");
  });

  it("a row without id names the line", async () => {
    const noId = JSON.stringify({ image_source: "coco", styles: ["yes/no"], scores: { ocr: 3 } });
    await failsWith([row("a"), noId], "FILE:2", "id: missing");
  });

  it("a Parquet pool without score_ocr names the column", async () => {
    const path = join(dir, "no-ocr.parquet");
    await sql(
      `COPY (SELECT * EXCLUDE (score_ocr) FROM read_parquet(${lit(poolParquet)})) TO ${lit(path)} (FORMAT parquet)`,
    );
    await expectUsageFailure(
      ["select", "--scores", path, "--ratio", "0.3", "--out", "OUT"],
      "MMSSR_MISSING_COLUMN",
      "score_ocr",
    );
  });

  it("a failed read leaves an existing output file untouched", async () => {
    const sub = await mkdtemp(join(dir, "keep-"));
    const out = join(sub, "selected.jsonl");
    await writeFile(out, "previous result\n");
    const path = await badPool("keep-bad.jsonl", [row("a"), "not json"]);
    const res = await runCli(["select", "--scores", path, "--ratio", "0.5", "--out", out]);
    expect(res.code).toBe(2);
    expect(await readFile(out, "utf8")).toBe("previous result\n");
    expect(await readdir(sub)).toEqual(["selected.jsonl"]);
  });

  it("an output directory that does not exist fails without leaving anything", async () => {
    const sub = await mkdtemp(join(dir, "nodir-"));
    const out = join(sub, "missing", "selected.jsonl");
    const res = await runCli(["select", "--scores", poolJsonl, "--ratio", "0.3", "--out", out]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain(join(sub, "missing"));
    expect(res.stderr).not.toContain("unexpected error");
    expect(await readdir(sub)).toEqual([]);
    await mkdir(join(sub, "missing"));
  });
});

describe("mmssr demo", () => {
  it("runs the bundled samples through the whole graph: every record decided once, bad ones dead-lettered", async () => {
    const outDir = join(dir, "demo");
    const res = await runCli(["demo", "--out-dir", outDir, "--synthetic", "1500", "--window-size", "500"]);
    expect(res.code, res.stderr).toBe(0);
    // 26 bundled real records + 1500 synthetic + 2 malformed lines
    expect(res.stdout).toMatch(
      /read 1528 records: 1526 scored with mmssr-lite@2\.0\.0 in 4 window\(s\), (\d+) selected, 2 dead-lettered/,
    );
    const selectedCount = Number(/(\d+) selected/.exec(res.stdout)?.[1]);
    const curated = join(outDir, "curated");
    const [scored] = await sql(
      `SELECT count(*) AS n, count(DISTINCT origin_offset) AS offsets FROM read_parquet(${lit(join(curated, "scored", "*.parquet"))})`,
    );
    expect(Number(scored.n)).toBe(1526);
    expect(Number(scored.offsets)).toBe(1526);
    const [selected] = await sql(
      `SELECT count(*) AS n, count(DISTINCT id) AS ids FROM read_parquet(${lit(join(curated, "selected", "*.parquet"))})`,
    );
    expect(Number(selected.n)).toBe(selectedCount);
    expect(Number(selected.ids)).toBe(selectedCount);
    // 30% of each window: floor(0.3 * 500) x 3 windows + floor(0.3 * 26)
    expect(selectedCount).toBe(3 * 150 + 7);
    const letters = (await readFile(join(curated, "dead-letters.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(letters.map((l) => l.code).sort()).toEqual(["invalid-json", "invalid-sample"]);
  });
});
