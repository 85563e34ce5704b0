/**
 * `mmssr report`'s numbers: a scored log written by the sink's own Arrow builders (scoredBatch,
 * selectedBatch) and the repo's Parquet writer, read back batch by batch, must give counts that
 * this test computes on its own from the decisions it wrote; a real curate run's output folder
 * must be found through its manifests; bad inputs fail with stable codes naming file and field.
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tableFromArrays } from "apache-arrow";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { openParquet, parquetBatches } from "../../connectors/parquet/parquet-batches.js";
import { writeParquetFile } from "../../connectors/parquet/parquet-writer.js";
import { writeScoredPoolParquet } from "../../connectors/parquet/scored-pool-parquet.js";
import { scoredBatch, selectedBatch } from "../../connectors/sink/decision-rows.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCurate } from "../../src/app/curator.js";
import { registerReportCommand, runReport } from "../../src/cli/commands/report-command.js";
import { ERROR_CODES, isUserError, MmssrError } from "../../src/domain/errors.js";
import {
  CAPABILITY_IDS,
  NUM_CAPABILITIES,
  NUM_STYLES,
  STYLES,
  type StyleName,
} from "../../src/domain/taxonomy.js";
import { ReportAccumulator, type ReportData, SCORE_BINS } from "../../src/report/report-data.js";
import { scriptSafeJson } from "../../src/report/report-html.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { createRandom } from "../../src/util/random.js";
import { poolFromRows } from "../support/pool-from-rows.js";

const T0 = Date.UTC(2026, 0, 15, 8, 0, 0);
const HOSTILE_SOURCE = "web</script><script>window.__pwned=1</script>";
const SOURCES = ["coco", "ocr-vqa", HOSTILE_SOURCE];
const VERSIONS = [0, 0, 1, 2, 2];
const REASONS = ["budget", "below-threshold", "cap-total", undefined] as const;

/**
 * Decisions of 5 windows of 100 rows: integer scores on even capabilities (the released
 * scorer's scale) and quarter steps on odd ones (exact in float32, so what is written is what
 * is computed here), some missing; styles multi-label, some rows without any.
 */
function makeDecisions(n: number, seed: number): Decision[] {
  const r = createRandom(seed);
  const out: Decision[] = [];
  for (let i = 0; i < n; i++) {
    const w = Math.floor(i / 100);
    const scores = new Float32Array(NUM_CAPABILITIES);
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      scores[c] = r.next() < 0.05 ? Number.NaN : c % 2 === 0 ? r.int(6) : r.int(21) * 0.25;
    const styles: StyleName[] = [];
    if (r.next() >= 0.1)
      for (let s = 0; s < NUM_STYLES; s++)
        if (r.next() < 0.25 || s === i % NUM_STYLES) styles.push(STYLES[s]);
    const selected = styles.length > 0 && r.next() < 0.3;
    const reason = selected ? undefined : styles.length === 0 ? "no-style" : REASONS[r.int(REASONS.length)];
    const source = SOURCES[i % SOURCES.length];
    out.push({
      record: {
        origin: { topic: "t", partition: 0, offset: String(i) },
        sample: {
          id: `s${i}`,
          image_source: source,
          conversations: [
            { from: "human", value: "<image>\nWhat does the sign say? </script><!--" },
            { from: "gpt", value: "STOP" },
          ],
        },
        timestamp: T0,
        modelId: i < n / 2 ? "mmssr-lite@2.0.0" : "mmssr-lite@2.1.0",
        score: { scores, styles, styleProbabilities: new Float32Array(NUM_STYLES), flags: [] },
      },
      selected,
      pickedBy: selected ? "ocr" : undefined,
      bucket: selected ? `${styles[0]}+${source}` : undefined,
      windowId: `run-w${w}`,
      policyVersion: VERSIONS[w],
      reason,
      decidedAt: T0 + w * 60_000 + (i % 100) * 10,
    });
  }
  return out;
}

/** What the report must show, computed straight from the decisions. */
function expected(decisions: readonly Decision[]) {
  const sel = decisions.filter((d) => d.selected);
  const styleCount = (ds: readonly Decision[], s: string) =>
    ds.filter((d) => d.record.score.styles.includes(s as StyleName)).length;
  const binOf = (v: number): number => {
    for (let b = 0; b < SCORE_BINS; b++) {
      const lo = (b * 5) / SCORE_BINS;
      const hi = ((b + 1) * 5) / SCORE_BINS;
      if (v >= lo && (v < hi || (b === SCORE_BINS - 1 && v <= hi))) return b;
    }
    throw new Error(`score ${v} outside 0..5`);
  };
  const hist = (ds: readonly Decision[], c: number) => {
    const bins = new Array<number>(SCORE_BINS).fill(0);
    for (const d of ds) if (!Number.isNaN(d.record.score.scores[c])) bins[binOf(d.record.score.scores[c])]++;
    return bins;
  };
  const mean = (ds: readonly Decision[], c: number) => {
    const vs = ds.map((d) => d.record.score.scores[c]).filter((v) => !Number.isNaN(v));
    return vs.reduce((a, b) => a + b, 0) / vs.length;
  };
  return {
    pool: decisions.length,
    selected: sel.length,
    stylesPool: STYLES.map((s) => styleCount(decisions, s)),
    stylesSelected: STYLES.map((s) => styleCount(sel, s)),
    histPool: CAPABILITY_IDS.map((_, c) => hist(decisions, c)),
    histSelected: CAPABILITY_IDS.map((_, c) => hist(sel, c)),
    meanPool: CAPABILITY_IDS.map((_, c) => mean(decisions, c)),
    meanSelected: CAPABILITY_IDS.map((_, c) => mean(sel, c)),
    reason: (r: string | undefined) => decisions.filter((d) => !d.selected && d.reason === r).length,
    windowShare: [0, 1, 2, 3, 4].map((w) => {
      const rows = decisions.filter((d) => d.windowId === `run-w${w}`);
      return rows.filter((d) => d.selected).length / rows.length;
    }),
  };
}

let dir: string;
let decisions: Decision[];
let scoredPath: string;
let selectedPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-report-"));
  decisions = makeDecisions(500, 7);
  scoredPath = join(dir, "scored.parquet");
  selectedPath = join(dir, "selected.parquet");
  // two row groups, so the reader hands over more than one batch
  await writeParquetFile(scoredPath, [
    scoredBatch(decisions.slice(0, 230)),
    scoredBatch(decisions.slice(230)),
  ]);
  await writeParquetFile(selectedPath, [selectedBatch(decisions.filter((d) => d.selected))]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Reads files the way the command does, with small batches to cross batch boundaries. */
async function accumulate(paths: string[], selectedIds?: Set<string>): Promise<ReportData> {
  const acc = new ReportAccumulator({ selectedIds });
  for (const path of paths) {
    const { file, schema } = await openParquet(path);
    try {
      acc.startFile(path, schema);
      for await (const batch of parquetBatches(file, 64)) acc.addBatch(batch);
    } finally {
      file.free();
    }
  }
  return acc.build(new Date(T0));
}

async function thrown(p: Promise<unknown>): Promise<MmssrError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MmssrError) return err;
    throw err;
  }
  throw new Error("expected an MmssrError");
}

describe("report data of a curate-style scored log", () => {
  it("counts the pool, the selected rows, styles, bins, means, reasons and windows as computed here", async () => {
    const data = await accumulate([scoredPath]);
    const want = expected(decisions);
    expect(data.poolRows).toBe(500);
    expect(data.selectedRows).toBe(want.selected);
    expect(want.selected).toBeGreaterThan(50);
    expect(data.selection).toBe("column");
    expect(data.files).toEqual([{ path: scoredPath, role: "scored", rows: 500, membership: "column" }]);

    expect(data.styles.names).toEqual([...STYLES]);
    expect(data.styles.pool).toEqual(want.stylesPool);
    expect(data.styles.selected).toEqual(want.stylesSelected);
    const noStyle = decisions.filter((d) => d.record.score.styles.length === 0).length;
    expect(noStyle).toBeGreaterThan(0);
    expect(data.styles.noStylePool).toBe(noStyle);
    expect(data.styles.noStyleSelected).toBe(0);

    expect(data.sources.names.sort()).toEqual([...SOURCES].sort());
    for (const [k, name] of data.sources.names.entries()) {
      const rows = decisions.filter((d) => d.record.sample.image_source === name);
      expect(data.sources.pool[k]).toBe(rows.length);
      expect(data.sources.selected[k]).toBe(rows.filter((d) => d.selected).length);
    }

    expect(data.bins.edges).toEqual([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]);
    expect(data.capabilities.map((c) => c.id)).toEqual([...CAPABILITY_IDS]);
    for (const [c, cap] of data.capabilities.entries()) {
      expect(cap.pool).toEqual(want.histPool[c]);
      expect(cap.selected).toEqual(want.histSelected[c]);
      // every row is in one bin or missing
      expect(cap.pool.reduce((a, b) => a + b, 0) + cap.missingPool).toBe(500);
      expect(cap.selected.reduce((a, b) => a + b, 0) + cap.missingSelected).toBe(want.selected);
      expect(cap.meanPool).toBeCloseTo(want.meanPool[c], 10);
      expect(cap.meanSelected).toBeCloseTo(want.meanSelected[c], 10);
    }
    // a score of exactly 5 is in the last bin: integer scores reach it
    expect(data.capabilities[0].pool[SCORE_BINS - 1]).toBe(
      decisions.filter((d) => d.record.score.scores[0] === 5).length,
    );

    expect(data.reasons?.labels).toEqual([
      "selected",
      "below-threshold",
      "no-style",
      "budget",
      "cap-total",
      "cap-hour",
      "not recorded",
    ]);
    expect(data.reasons?.counts).toEqual([
      want.selected,
      want.reason("below-threshold"),
      want.reason("no-style"),
      want.reason("budget"),
      want.reason("cap-total"),
      0,
      want.reason(undefined),
    ]);
    expect(data.reasons?.counts.reduce((a, b) => a + b, 0)).toBe(500);

    expect(data.models).toEqual([
      { id: "mmssr-lite@2.0.0", rows: 250 },
      { id: "mmssr-lite@2.1.0", rows: 250 },
    ]);
    expect(data.timeRange).toEqual({ from: T0, to: T0 + 4 * 60_000 + 990 });
    const points = data.timeline?.points ?? [];
    expect(points.map((p) => p.window)).toEqual(["run-w0", "run-w1", "run-w2", "run-w3", "run-w4"]);
    expect(points.map((p) => p.policyVersion)).toEqual(VERSIONS);
    expect(points.map((p) => p.rows)).toEqual([100, 100, 100, 100, 100]);
    expect(points.map((p) => p.selected / p.rows)).toEqual(want.windowShare);
    expect(points.map((p) => p.t)).toEqual([0, 1, 2, 3, 4].map((w) => T0 + w * 60_000 + 990));
    expect(data.notes).toEqual([]);
  });

  it("takes membership from selected files' ids when the scored file has no selected column", async () => {
    // the same rows as a `mmssr score` pool: interchange columns only
    const pool = poolFromRows(
      decisions.map((d) => ({
        id: d.record.sample.id,
        src: d.record.sample.image_source,
        styles: d.record.score.styles,
        s: Object.fromEntries(CAPABILITY_IDS.map((id, c) => [id, d.record.score.scores[c]])),
      })),
    );
    const poolPath = join(dir, "pool.parquet");
    await writeScoredPoolParquet(poolPath, pool);
    const ids = new Set(decisions.filter((d) => d.selected).map((d) => d.record.sample.id));
    ids.add("not-in-the-pool");
    const data = await accumulate([poolPath], ids);
    const want = expected(decisions);
    expect(data.selection).toBe("ids");
    expect(data.poolRows).toBe(500);
    expect(data.selectedRows).toBe(want.selected);
    expect(data.styles.selected).toEqual(want.stylesSelected);
    expect(data.capabilities.map((c) => c.selected)).toEqual(want.histSelected);
    // no reason column: every row not selected is "not recorded"; no decided_at: no timeline
    expect(data.reasons).toEqual({
      labels: ["selected", "below-threshold", "no-style", "budget", "cap-total", "cap-hour", "not recorded"],
      counts: [want.selected, 0, 0, 0, 0, 0, 500 - want.selected],
    });
    expect(data.timeline).toBeNull();
    expect(data.timeRange).toBeNull();
    expect(
      data.notes.some((n) =>
        n.includes(`1 of ${ids.size} ids of the selected files are not in the scored files`),
      ),
    ).toBe(true);

    const poolOnly = await accumulate([poolPath]);
    expect(poolOnly.selection).toBe("none");
    expect(poolOnly.selectedRows).toBe(0);
    expect(poolOnly.reasons).toBeNull();
    expect(poolOnly.notes[0]).toMatch(/^Pool only/);
    expect(poolOnly.capabilities.map((c) => c.pool)).toEqual(want.histPool);
  });

  it("keeps the page's JSON inert inside a <script> element", () => {
    const text = scriptSafeJson({ source: HOSTILE_SOURCE, note: "<!-- x -->" });
    expect(text).not.toContain("<");
    expect(JSON.parse(text)).toEqual({ source: HOSTILE_SOURCE, note: "<!-- x -->" });
  });
});

describe("bad input", () => {
  it("names the file and the missing column", async () => {
    const path = join(dir, "no-scores.parquet");
    await writeParquetFile(path, [tableFromArrays({ id: ["a", "b"], image_source: ["x", "y"] })]);
    const err = await thrown(accumulate([path]));
    expect(err.code).toBe(ERROR_CODES.MISSING_COLUMN);
    expect(err.message).toContain(path);
    expect(err.message).toContain("missing column styles");
    const noId = join(dir, "no-id.parquet");
    await writeParquetFile(noId, [tableFromArrays({ name: ["a"] })]);
    const err2 = await thrown(accumulate([noId]));
    expect(err2.code).toBe(ERROR_CODES.MISSING_COLUMN);
    expect(err2.message).toContain(`${noId}: missing column id`);
  });

  it("names the file, row and field of a score outside 0..5 and of an unknown style", async () => {
    const bad = makeDecisions(10, 3);
    bad[6].record.score.scores[2] = 7;
    const path = join(dir, "bad-score.parquet");
    await writeParquetFile(path, [scoredBatch(bad)]);
    const err = await thrown(accumulate([path]));
    expect(err.code).toBe(ERROR_CODES.BAD_ROW);
    expect(err.message).toBe(`${path}: row 7: score_logical: score 7 is outside 0..5`);

    const odd = makeDecisions(10, 3);
    odd[3].record.score.styles = ["yes/no", "interpretive dance" as StyleName];
    const stylePath = join(dir, "bad-style.parquet");
    await writeParquetFile(stylePath, [scoredBatch(odd)]);
    const err2 = await thrown(accumulate([stylePath]));
    expect(err2.code).toBe(ERROR_CODES.BAD_ROW);
    expect(err2.message).toContain(`${stylePath}: row 4: styles[1]: unknown style "interpretive dance"`);
  });
});

describe("runReport on a real curate output folder", () => {
  let out: string;
  let stats: Awaited<ReturnType<typeof runCurate>>;
  beforeAll(async () => {
    const input = join(dir, "in.jsonl");
    await writeFile(
      input,
      `${syntheticSamples(1200, 11)
        .map((s) => JSON.stringify(s))
        .join("\n")}\n`,
    );
    out = join(dir, "curated");
    stats = await runCurate({
      source: { kind: "file", path: input },
      out,
      policy: { ratio: 0.25 },
      windowSize: 400,
      windowMs: 60_000,
      rotateRows: 500,
      log: () => {},
    });
  });

  it("reads the published scored files, takes selection from the scored log, writes one page", async () => {
    // a file in scored/ that no manifest names is not published: it must not count
    const scoredFiles = await readdir(join(out, "scored"));
    await copyFile(join(out, "scored", scoredFiles[0]), join(out, "scored", "scored-t-p9-0-99.parquet"));
    const html = join(dir, "report.html");
    const printed: string[] = [];
    const err = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      printed.push(String(chunk));
      return true;
    });
    let result: Awaited<ReturnType<typeof runReport>>;
    try {
      result = await runReport({ scores: [out], out: html });
    } finally {
      err.mockRestore();
    }
    const { data } = result;
    expect(stats.scored).toBe(1200);
    expect(data.poolRows).toBe(1200);
    expect(data.selectedRows).toBe(stats.selected);
    expect(data.selection).toBe("column");
    expect(data.files.filter((f) => f.role === "scored")).toHaveLength(scoredFiles.length);
    expect(data.files.some((f) => f.path.endsWith("scored-t-p9-0-99.parquet"))).toBe(false);
    // the curate output's selected/ files are not needed: the scored log says what was selected
    expect(data.files.some((f) => f.role === "selected")).toBe(false);
    expect(data.timeline?.windows).toBe(3);
    expect(data.timeline?.points.map((p) => p.rows)).toEqual([400, 400, 400]);
    expect(data.models.map((m) => m.rows)).toEqual([1200]);
    expect(printed.join("")).toMatch(
      new RegExp(
        `^mmssr report: 1200 rows from ${scoredFiles.length} scored files?, ${stats.selected} selected \\(`,
      ),
    );

    const page = await readFile(html, "utf8");
    expect(page.startsWith("<!doctype html>")).toBe(true);
    expect(page).not.toMatch(/<script[^>]+src=/i);
    expect(page).not.toMatch(/<link[^>]+href=/i);
    expect(page).toContain("Chart.js v4");
    const json = /<script type="application\/json" id="report-data">([^<]*)<\/script>/.exec(page);
    expect(JSON.parse(json?.[1] ?? "null").poolRows).toBe(1200);
    expect((await readdir(dir)).filter((n) => n.includes(".tmp"))).toEqual([]);
  });

  it("parses the command line through commander (variadic --scores and --selected)", async () => {
    const poolPath = join(dir, "pool-for-cli.parquet");
    await writeParquetFile(poolPath, [scoredBatch(decisions.slice(0, 100))]);
    const program = new Command("mmssr").exitOverride();
    registerReportCommand(program);
    const html = join(dir, "cli.html");
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await program.parseAsync(
        ["report", "--scores", poolPath, scoredPath, "--selected", selectedPath, "--out", html],
        {
          from: "user",
        },
      );
    } finally {
      err.mockRestore();
    }
    const page = await readFile(html, "utf8");
    const data = JSON.parse(/id="report-data">([^<]*)</.exec(page)?.[1] ?? "null") as ReportData;
    expect(data.poolRows).toBe(600);
    // both have the selected column: the --selected file is not read, and the page says so
    expect(data.files.map((f) => f.role)).toEqual(["scored", "scored"]);
    expect(data.notes.some((n) => n.startsWith("The --selected files were not read"))).toBe(true);
  });

  it("refuses an --out that is an input, a non-.html --out, and missing or bad inputs, as user errors", async () => {
    const quiet = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      // a link named .html that resolves to the scored file
      const alias = join(dir, "alias.html");
      await symlink(scoredPath, alias);
      const over = await thrown(runReport({ scores: [scoredPath], out: alias }));
      expect(over.code).toBe(ERROR_CODES.USAGE);
      expect(over.message).toContain("is the same file as --scores");
      expect((await readFile(scoredPath)).subarray(0, 4).toString()).toBe("PAR1");

      const notHtml = await thrown(runReport({ scores: [scoredPath], out: join(dir, "r.parquet") }));
      expect(notHtml.code).toBe(ERROR_CODES.USAGE);

      const missing = await thrown(
        runReport({ scores: [join(dir, "nope.parquet")], out: join(dir, "r.html") }),
      );
      expect(missing.code).toBe(ERROR_CODES.FILE_NOT_FOUND);
      expect(missing.message).toContain(join(dir, "nope.parquet"));

      const jsonl = join(dir, "pool.jsonl");
      await writeFile(jsonl, "{}\n");
      const format = await thrown(runReport({ scores: [jsonl], out: join(dir, "r.html") }));
      expect(format.code).toBe(ERROR_CODES.UNSUPPORTED_FORMAT);

      // a folder: every .parquet in it; the one without score columns is named
      const folder = join(dir, "mixed");
      await mkdir(folder);
      await copyFile(scoredPath, join(folder, "a.parquet"));
      await writeParquetFile(join(folder, "b.parquet"), [
        tableFromArrays({ id: ["a"], styles_text: ["yes/no"] }),
      ]);
      const column = await thrown(runReport({ scores: [folder], out: join(dir, "r.html") }));
      expect(column.code).toBe(ERROR_CODES.MISSING_COLUMN);
      expect(column.message).toContain(join(folder, "b.parquet"));

      const empty = join(dir, "empty");
      await mkdir(empty);
      const none = await thrown(runReport({ scores: [empty], out: join(dir, "r.html") }));
      expect(none.code).toBe(ERROR_CODES.FILE_NOT_FOUND);

      for (const e of [over, notHtml, missing, format, column, none]) expect(isUserError(e)).toBe(true);
      expect((await readdir(dir)).includes("r.html")).toBe(false);
    } finally {
      quiet.mockRestore();
    }
  });
});
