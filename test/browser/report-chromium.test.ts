/**
 * The report page in a real browser (Debian's chromium through playwright-core): it must draw
 * every chart from the inlined data with nothing fetched, no console error, and the numbers of
 * the Parquet files it was built from. A full-page screenshot is kept at
 * .tmp/test-output/report.png for a person to look at.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { writeParquetFile } from "../../connectors/parquet/parquet-writer.js";
import { writeScoredPoolParquet } from "../../connectors/parquet/scored-pool-parquet.js";
import { scoredBatch, selectedBatch } from "../../connectors/sink/decision-rows.js";
import { runReport } from "../../src/cli/commands/report-command.js";
import {
  CAPABILITY_IDS,
  NUM_CAPABILITIES,
  NUM_STYLES,
  STYLES,
  type StyleName,
} from "../../src/domain/taxonomy.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { createRandom } from "../../src/util/random.js";
import { poolFromRows } from "../support/pool-from-rows.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const REQUIRED = process.env.MMSSR_REQUIRE_TOOLS === "1";
const MISSING = !existsSync(CHROMIUM);
const SCREENSHOT = resolve(".tmp/test-output/report.png");

const T0 = Date.UTC(2026, 0, 15, 8, 0, 0);
/** An image_source that would run script if the page pasted it into HTML or broke out of <script>. */
const HOSTILE_SOURCE = "web</script><script>window.__pwned=1</script>";
const SOURCES = ["coco", "chartqa", HOSTILE_SOURCE];
const VERSIONS = [0, 1, 1, 2];
const REASONS = ["budget", "below-threshold", "cap-hour"] as const;

/** 4 windows of 150 decisions under policy versions 0, 1, 1, 2; every style and score bin in use. */
function makeDecisions(): Decision[] {
  const r = createRandom(42);
  const out: Decision[] = [];
  for (let i = 0; i < 600; i++) {
    const w = Math.floor(i / 150);
    const scores = new Float32Array(NUM_CAPABILITIES);
    for (let c = 0; c < NUM_CAPABILITIES; c++) scores[c] = r.next() < 0.03 ? Number.NaN : r.int(21) * 0.25;
    const styles: StyleName[] = [STYLES[i % NUM_STYLES]];
    if (r.next() < 0.3) styles.push(STYLES[(i + 4) % NUM_STYLES]);
    const selected = r.next() < 0.25 + 0.1 * w;
    const source = SOURCES[i % SOURCES.length];
    out.push({
      record: {
        origin: { topic: "t", partition: 0, offset: String(i) },
        sample: {
          id: `s${i}`,
          image_source: source,
          conversations: [
            { from: "human", value: "<image>\n</script><script>alert(1)</script>" },
            { from: "gpt", value: "<!-- no -->" },
          ],
        },
        timestamp: T0,
        modelId: "mmssr-lite@2.0.0",
        score: { scores, styles, styleProbabilities: new Float32Array(NUM_STYLES), flags: [] },
      },
      selected,
      pickedBy: selected ? "ocr" : undefined,
      bucket: selected ? `${styles[0]}+${source}` : undefined,
      windowId: `run-w${w}`,
      policyVersion: VERSIONS[w],
      reason: selected ? undefined : REASONS[r.int(REASONS.length)],
      decidedAt: T0 + w * 3_600_000 + i * 1000,
    });
  }
  return out;
}

interface ChartProbe {
  id: string;
  type: string;
  datasets: { label: string; points: number; max: number }[];
  labels: unknown[];
  data: number[][];
}

/** Every canvas's chart as the page holds it: Chart.getChart(canvas). */
async function probeCharts(page: Page): Promise<(ChartProbe | null)[]> {
  return page.evaluate(() => {
    // runs in the page: no DOM types in this project's lib, so the few used are spelled out
    type Canvas = { id: string };
    type C = {
      config: { type: string };
      data: { labels?: unknown[]; datasets: { label: string; data: unknown[] }[] };
    };
    const g = globalThis as unknown as {
      Chart: { getChart(c: Canvas): C | undefined };
      document: { querySelectorAll(selector: string): ArrayLike<Canvas> };
    };
    const value = (p: unknown): number =>
      typeof p === "number"
        ? p
        : p !== null && typeof p === "object"
          ? Number((p as { y: unknown }).y)
          : Number.NaN;
    return Array.from(g.document.querySelectorAll("canvas")).map((canvas) => {
      const chart = g.Chart.getChart(canvas);
      if (!chart) return null;
      return {
        id: canvas.id,
        type: chart.config.type,
        labels: chart.data.labels ?? [],
        data: chart.data.datasets.map((d) => d.data.map(value)),
        datasets: chart.data.datasets.map((d) => ({
          label: d.label,
          points: d.data.length,
          max: Math.max(...d.data.map(value).filter((v) => Number.isFinite(v))),
        })),
      };
    });
  });
}

interface Visit {
  page: Page;
  errors: string[];
  blocked: string[];
}

describe(`report page in chromium${MISSING ? ` (skipped: no chromium at ${CHROMIUM}; set CHROMIUM_PATH)` : ""}`, () => {
  if (MISSING && REQUIRED)
    it("has chromium", () => {
      throw new Error(
        `MMSSR_REQUIRE_TOOLS=1 but there is no chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`,
      );
    });

  let dir: string;
  let browser: Browser | undefined;
  let decisions: Decision[];
  let runHtml: string;
  let poolHtml: string;

  beforeAll(async () => {
    if (MISSING) return;
    dir = await mkdtemp(join(tmpdir(), "mmssr-report-browser-"));
    decisions = makeDecisions();
    const scored = join(dir, "scored.parquet");
    await writeParquetFile(scored, [scoredBatch(decisions)]);
    await writeParquetFile(join(dir, "selected.parquet"), [
      selectedBatch(decisions.filter((d) => d.selected)),
    ]);
    const pool = join(dir, "pool.parquet");
    await writeScoredPoolParquet(
      pool,
      poolFromRows(
        decisions.map((d) => ({
          id: d.record.sample.id,
          src: d.record.sample.image_source,
          styles: d.record.score.styles,
          s: Object.fromEntries(CAPABILITY_IDS.map((id, c) => [id, d.record.score.scores[c]])),
        })),
      ),
    );
    runHtml = join(dir, "run.html");
    poolHtml = join(dir, "pool.html");
    const quiet = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await runReport({ scores: [scored], out: runHtml, now: new Date(T0) });
      await runReport({ scores: [pool], out: poolHtml, now: new Date(T0) });
    } finally {
      quiet.mockRestore();
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  });
  afterAll(async () => {
    await browser?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Opens a page file with every other request aborted and recorded. */
  async function visit(path: string): Promise<Visit> {
    const page = await (browser as Browser).newPage({ viewport: { width: 1400, height: 1000 } });
    const url = pathToFileURL(path).href;
    const errors: string[] = [];
    const blocked: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.route("**/*", (route) => {
      if (route.request().url() === url) return route.continue();
      blocked.push(route.request().url());
      return route.abort();
    });
    await page.goto(url);
    await page.waitForSelector("body[data-charts-ready]", { timeout: 15_000 });
    return { page, errors, blocked };
  }

  it.skipIf(MISSING)("draws every chart of a run's scored log from its data, fetching nothing", async () => {
    const { page, errors, blocked } = await visit(runHtml);
    try {
      expect(blocked).toEqual([]);
      expect(errors).toEqual([]);
      const charts = await probeCharts(page);
      // 2 share charts, 14 histograms, means, decisions, policy version and window share
      expect(charts).toHaveLength(2 + 14 + 1 + 1 + 2);
      for (const c of charts) {
        expect(c).not.toBeNull();
        const chart = c as ChartProbe;
        expect(chart.datasets.length, chart.id).toBeGreaterThan(0);
        for (const d of chart.datasets) {
          expect(d.points, `${chart.id} ${d.label}`).toBeGreaterThan(0);
          expect(d.max, `${chart.id} ${d.label}`).toBeGreaterThan(0);
        }
      }
      const byId = new Map(charts.map((c) => [(c as ChartProbe).id, c as ChartProbe]));

      // numbers as computed here from the decisions written
      const sel = decisions.filter((d) => d.selected);
      const styles = byId.get("chart-styles") as ChartProbe;
      expect(styles.labels).toEqual([...STYLES]);
      const share = (ds: Decision[], s: string) =>
        (100 * ds.filter((d) => d.record.score.styles.includes(s as StyleName)).length) / ds.length;
      for (const [k, style] of STYLES.entries()) {
        expect(styles.data[0][k]).toBeCloseTo(share(decisions, style), 9);
        expect(styles.data[1][k]).toBeCloseTo(share(sel, style), 9);
      }

      const reasons = byId.get("chart-reasons") as ChartProbe;
      const counts = Object.fromEntries((reasons.labels as string[]).map((l, k) => [l, reasons.data[0][k]]));
      expect(counts.selected).toBe(sel.length);
      for (const r of REASONS) expect(counts[r]).toBe(decisions.filter((d) => d.reason === r).length);

      const policy = byId.get("chart-policy") as ChartProbe;
      expect(policy.data[0]).toEqual(VERSIONS);
      const windowShare = byId.get("chart-window-share") as ChartProbe;
      windowShare.data[0].forEach((v, w) => {
        const rows = decisions.filter((d) => d.windowId === `run-w${w}`);
        expect(v).toBeCloseTo((100 * rows.filter((d) => d.selected).length) / rows.length, 9);
      });

      // histogram bins of one capability: shares of the rows with a score
      const hist = byId.get("hist-ocr") as ChartProbe;
      const ocr = CAPABILITY_IDS.indexOf("ocr");
      const scoredRows = decisions.filter((d) => !Number.isNaN(d.record.score.scores[ocr]));
      const inBin = (b: number) =>
        scoredRows.filter((d) => {
          const v = d.record.score.scores[ocr];
          return v >= b * 0.5 && (v < (b + 1) * 0.5 || (b === 9 && v === 5));
        }).length;
      for (const [b, v] of hist.data[0].entries())
        expect(v).toBeCloseTo((100 * inBin(b)) / scoredRows.length, 9);
      expect(hist.data[0].reduce((a, b) => a + b, 0)).toBeCloseTo(100, 9);

      // the header, and the hostile source shown as text, never run
      expect(await page.textContent("#pool-rows td")).toBe("600");
      expect(await page.textContent("#selected-rows td")).toContain(`${sel.length} (`);
      expect(await page.textContent("#models td")).toBe("mmssr-lite@2.0.0 (600 rows)");
      expect(await page.evaluate(() => (globalThis as { __pwned?: unknown }).__pwned)).toBeUndefined();
      expect(await page.locator("script").count()).toBe(3);
      expect((byId.get("chart-sources") as ChartProbe).labels).toContain(HOSTILE_SOURCE);

      await mkdir(resolve(".tmp/test-output"), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(existsSync(SCREENSHOT)).toBe(true);
    } finally {
      await page.close();
    }
  });

  it.skipIf(MISSING)("shows a pool without selection as the pool only, and says so", async () => {
    const { page, errors, blocked } = await visit(poolHtml);
    try {
      expect(blocked).toEqual([]);
      expect(errors).toEqual([]);
      expect(await page.textContent("#notes")).toContain("Pool only");
      const charts = await probeCharts(page);
      // no decisions and no timeline: shares, histograms and means only
      expect(charts).toHaveLength(2 + 14 + 1);
      for (const c of charts) {
        const chart = c as ChartProbe;
        expect(chart.datasets.map((d) => d.label).join(" ")).not.toContain("selected");
        expect(chart.datasets[0].max).toBeGreaterThan(0);
      }
      expect(await page.textContent("#section-timeline")).toContain("Not available");
    } finally {
      await page.close();
    }
  });
});
