/**
 * The report page: one HTML file that needs nothing at view time. Chart.js (its UMD build, which
 * defines the global `Chart`) and the report's numbers are inlined; the page's own script draws
 * every chart from those numbers. Only aggregates travel (ReportData): the page stays small
 * whatever the pool's size.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ReportData } from "./report-data.js";

/**
 * chart.js's UMD build. Its package exports do not name dist/chart.umd.js, so resolve the
 * package's main entry and take the file beside it.
 */
export function chartJsPath(): string {
  return join(dirname(createRequire(import.meta.url).resolve("chart.js")), "chart.umd.js");
}

export function readChartJs(): string {
  return readFileSync(chartJsPath(), "utf8");
}

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

/**
 * Text placed inside a <script> element. In JSON `<` may only occur in strings, where `\u003c`
 * means the same, so no `</script>` or `<!--` in a sample's text can end or confuse the element.
 */
export function scriptSafeJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, "\\u003c")
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029");
}

/** Library code cannot be rewritten as JSON can; it is checked instead. */
function scriptSafeCode(code: string, what: string): string {
  if (/<\/script|<!--/i.test(code))
    throw new Error(`${what} contains "</script" or "<!--" and cannot be inlined as it is`);
  return code;
}

const iso = (ms: number): string => new Date(ms).toISOString().replace(".000Z", "Z");
const count = (n: number): string => n.toLocaleString("en-US");
const percent = (n: number, d: number): string => (d > 0 ? `${((100 * n) / d).toFixed(1)}%` : "n/a");

const SELECTION_HOW: Record<ReportData["selection"], string> = {
  column: "from the scored log's selected column",
  ids: "ids of the scored files found in the selected files",
  mixed: "per file: the selected column where present, else the selected files' ids",
  none: "unknown (no selected column, no selected files): the report shows the pool only",
};

function headerTable(data: ReportData): string {
  const scored = data.files.filter((f) => f.role === "scored");
  const selectedFiles = data.files.filter((f) => f.role === "selected");
  const fileRows = data.files
    .map(
      (f) =>
        `<tr><td>${escapeHtml(f.path)}</td><td>${f.role}</td><td class="num">${count(f.rows)}</td><td>${
          f.role === "scored" ? (f.membership ?? "") : "ids"
        }</td></tr>`,
    )
    .join("");
  const filesCell =
    `${scored.length} scored file${scored.length === 1 ? "" : "s"}` +
    (selectedFiles.length > 0
      ? `, ${selectedFiles.length} selected file${selectedFiles.length === 1 ? "" : "s"} (ids only)`
      : "") +
    `<details><summary>list</summary><table class="files"><thead><tr><th>file</th><th>role</th><th>rows</th><th>selection</th></tr></thead><tbody>${fileRows}</tbody></table></details>`;
  const models =
    data.models.length === 0
      ? "not recorded"
      : data.models.map((m) => `${escapeHtml(m.id)} (${count(m.rows)} rows)`).join("<br>");
  const time =
    data.timeRange === null
      ? "not recorded (no decided_at column)"
      : `${iso(data.timeRange.from)} to ${iso(data.timeRange.to)}`;
  const rows: [string, string, string][] = [
    ["files-read", "Files read", filesCell],
    ["pool-rows", "Rows in pool", count(data.poolRows)],
    [
      "selected-rows",
      "Rows selected",
      data.selection === "none"
        ? escapeHtml(SELECTION_HOW.none)
        : `${count(data.selectedRows)} (${percent(data.selectedRows, data.poolRows)} of the pool; ${escapeHtml(SELECTION_HOW[data.selection])})`,
    ],
    ["models", "Model id(s)", models],
    ["time-range", "Time range (decided_at, UTC)", time],
    ["generated", "Report generated", escapeHtml(data.generatedAt)],
  ];
  return `<table id="summary" class="summary"><tbody>${rows
    .map(([id, k, v]) => `<tr id="${id}"><th>${k}</th><td>${v}</td></tr>`)
    .join("")}</tbody></table>`;
}

const chartBox = (id: string, cls = "chart"): string =>
  `<div class="${cls}"><canvas id="${id}" role="img"></canvas></div>`;

function body(data: ReportData): string {
  const notes =
    data.notes.length === 0
      ? ""
      : `<ul id="notes" class="notes">${data.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>`;
  const hist = data.capabilities.map((c) => chartBox(`hist-${c.id}`, "chart small")).join("");
  const reasons =
    data.reasons === null
      ? `<p class="missing">No decisions to count: no row's selection is known.</p>`
      : chartBox("chart-reasons");
  const timeline =
    data.timeline === null
      ? `<p class="missing">Not available: policy over time needs a curate run's scored log (its decided_at, window_id, policy_version and selected columns).</p>`
      : chartBox("chart-policy") + chartBox("chart-window-share");
  return `<h1>mmSSR curation report</h1>
${headerTable(data)}
${notes}
<section id="section-buckets"><h2>1. Share of rows per style and per image source</h2>
<p class="hint">Share of the pool's rows and of the selected rows in each group. A sample with several styles counts in each, so the style bars of one series may add up to more than 100%.</p>
<div class="pair">${chartBox("chart-styles")}${chartBox("chart-sources")}</div></section>
<section id="section-histograms"><h2>2. Capability score histograms, pool vs selected</h2>
<p class="hint">Scores 0..5 (MMSSR.md) in bins of 0.5; the last bin includes 5. Bars are the share of rows with a score; missing scores are counted in each chart's title.</p>
<div class="grid">${hist}</div></section>
<section id="section-means"><h2>3. Mean score per capability</h2>${chartBox("chart-means")}</section>
<section id="section-reasons"><h2>4. Decisions</h2>${reasons}</section>
<section id="section-timeline"><h2>5. Policy over time</h2>${timeline}</section>`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1400px; padding: 0 16px; color: #1d232b; background: #fff; }
h1 { font-size: 24px; margin: 0 0 12px; }
h2 { font-size: 18px; margin: 28px 0 6px; border-bottom: 1px solid #d7dce2; padding-bottom: 4px; }
table.summary { border-collapse: collapse; margin-bottom: 12px; }
table.summary th { text-align: left; padding: 4px 16px 4px 0; vertical-align: top; white-space: nowrap; color: #46505c; }
table.summary td { padding: 4px 0; }
table.files { border-collapse: collapse; margin-top: 6px; font-size: 12px; }
table.files th, table.files td { border: 1px solid #d7dce2; padding: 2px 6px; text-align: left; }
td.num, table.files td.num { text-align: right; font-variant-numeric: tabular-nums; }
.notes { background: #fff8e1; border: 1px solid #f0d98a; padding: 8px 8px 8px 28px; }
.hint { color: #56606b; margin: 0 0 8px; }
.missing { color: #56606b; font-style: italic; }
.chart { position: relative; height: 340px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 12px; }
.chart.small { height: 220px; border: 1px solid #eceff3; padding: 4px; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
`;

/**
 * The page's own script: draws every chart from the inlined data. Plain ES2017 in a string
 * (not a serialized TS function), so what runs in the browser is exactly what is written here.
 */
const PAGE_SCRIPT = `
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var POOL = "rgba(140, 150, 165, 0.75)";
  var SELECTED = "rgba(31, 119, 180, 0.9)";
  var hasSelection = DATA.selection !== "none";
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 12;

  function pct(n, d) { return d > 0 ? (100 * n) / d : 0; }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function axis(title, extra) {
    var a = { title: { display: true, text: title } };
    for (var k in extra) a[k] = extra[k];
    return a;
  }
  function shareDataset(label, counts, total, color) {
    return { label: label, data: counts.map(function (c) { return pct(c, total); }), counts: counts, backgroundColor: color };
  }
  function shareTooltip(ctx) {
    var n = ctx.dataset.counts ? ctx.dataset.counts[ctx.dataIndex] : undefined;
    return ctx.dataset.label + ": " + ctx.parsed.y.toFixed(1) + "%" + (n === undefined ? "" : " (" + fmt(n) + " rows)");
  }
  function shareChart(id, title, labels, pool, selected, poolTotal, selTotal, xTitle, yTitle) {
    var datasets = [shareDataset("pool (" + fmt(poolTotal) + " rows)", pool, poolTotal, POOL)];
    if (hasSelection) datasets.push(shareDataset("selected (" + fmt(selTotal) + " rows)", selected, selTotal, SELECTED));
    return new Chart(document.getElementById(id), {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        plugins: {
          title: { display: true, text: title, font: { size: 14 } },
          legend: { position: "top" },
          tooltip: { callbacks: { label: shareTooltip } },
        },
        scales: { x: axis(xTitle, { ticks: { autoSkip: false, maxRotation: 50 } }), y: axis(yTitle, { beginAtZero: true }) },
      },
    });
  }

  // 1. styles and sources
  var st = DATA.styles;
  shareChart(
    "chart-styles",
    "Interaction styles" + (st.noStylePool > 0 ? " (" + fmt(st.noStylePool) + " pool rows have no style)" : ""),
    st.names, st.pool, st.selected, DATA.poolRows, DATA.selectedRows,
    "interaction style (MMSSR.md order)", "% of rows"
  );
  var so = DATA.sources;
  shareChart(
    "chart-sources", "Image sources (" + fmt(so.total) + ")",
    so.names, so.pool, so.selected, DATA.poolRows, DATA.selectedRows, "image_source", "% of rows"
  );

  // 2. histograms, one per capability
  DATA.capabilities.forEach(function (c) {
    var poolScored = c.pool.reduce(function (a, b) { return a + b; }, 0);
    var selScored = c.selected.reduce(function (a, b) { return a + b; }, 0);
    var datasets = [shareDataset("pool", c.pool, poolScored, POOL)];
    if (hasSelection) datasets.push(shareDataset("selected", c.selected, selScored, SELECTED));
    var missing = c.missingPool > 0 ? " (" + fmt(c.missingPool) + " missing)" : "";
    new Chart(document.getElementById("hist-" + c.id), {
      type: "bar",
      data: { labels: DATA.bins.labels, datasets: datasets },
      options: {
        plugins: {
          title: { display: true, text: c.id + ": " + c.name + missing },
          legend: { position: "top", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: shareTooltip } },
        },
        scales: {
          x: axis("score", { ticks: { maxRotation: 0, autoSkip: false, font: { size: 10 } } }),
          y: axis("% of scored rows", { beginAtZero: true }),
        },
      },
    });
  });

  // 3. means
  var meanSets = [{
    label: "pool mean",
    data: DATA.capabilities.map(function (c) { return c.meanPool; }),
    backgroundColor: POOL,
  }];
  if (hasSelection) meanSets.push({
    label: "selected mean",
    data: DATA.capabilities.map(function (c) { return c.meanSelected; }),
    backgroundColor: SELECTED,
  });
  new Chart(document.getElementById("chart-means"), {
    type: "bar",
    data: { labels: DATA.capabilities.map(function (c) { return c.id; }), datasets: meanSets },
    options: {
      plugins: {
        title: { display: true, text: "Mean score per capability (rows with a score)", font: { size: 14 } },
        tooltip: { callbacks: { label: function (ctx) { return ctx.dataset.label + ": " + (ctx.parsed.y === null ? "n/a" : ctx.parsed.y.toFixed(3)); } } },
      },
      scales: { x: axis("capability", { ticks: { autoSkip: false } }), y: axis("mean score (0..5)", { min: 0, max: 5 }) },
    },
  });

  // 4. decisions
  if (DATA.reasons) {
    var colors = DATA.reasons.labels.map(function (l) { return l === "selected" ? SELECTED : l === "not recorded" ? "rgba(190, 190, 190, 0.8)" : "rgba(230, 126, 34, 0.85)"; });
    new Chart(document.getElementById("chart-reasons"), {
      type: "bar",
      data: { labels: DATA.reasons.labels, datasets: [{ label: "rows", data: DATA.reasons.counts, backgroundColor: colors }] },
      options: {
        plugins: {
          title: { display: true, text: "Selected, and why the other rows were not (reason column)", font: { size: 14 } },
          legend: { display: false },
          tooltip: { callbacks: { label: function (ctx) { return fmt(ctx.parsed.y) + " rows (" + pct(ctx.parsed.y, DATA.poolRows).toFixed(1) + "% of the pool)"; } } },
        },
        scales: { x: axis("decision", { ticks: { autoSkip: false } }), y: axis("rows", { beginAtZero: true }) },
      },
    });
  }

  // 5. policy over time
  if (DATA.timeline) {
    var pts = DATA.timeline.points;
    var span = pts.length > 1 ? pts[pts.length - 1].t - pts[0].t : 0;
    // the tick text keeps only what changes over the span (a demo run lasts under a second)
    var timeTick = function (v) {
      var s = new Date(v).toISOString();
      return span < 60000 ? s.slice(14, 23) : span < 86400000 ? s.slice(11, 19) : s.slice(5, 16).replace("T", " ");
    };
    var first = pts.length > 0 ? new Date(pts[0].t).toISOString() : "";
    var when = span < 60000 ? "minutes:seconds after " + first.slice(0, 13).replace("T", " ") + ":00" : span < 86400000 ? first.slice(0, 10) : "";
    var timeAxis = axis("decided_at, end of window (UTC" + (when ? "; " + when : "") + ")", {
      type: "linear", ticks: { callback: timeTick, maxRotation: 0 },
    });
    var title = function (items) { var p = pts[items[0].dataIndex]; return p.window + " @ " + new Date(p.t).toISOString(); };
    new Chart(document.getElementById("chart-policy"), {
      type: "line",
      data: { datasets: [{
        label: "policy version",
        data: pts.map(function (p) { return { x: p.t, y: p.policyVersion }; }),
        stepped: "after", borderColor: "rgba(142, 68, 173, 1)", backgroundColor: "rgba(142, 68, 173, 0.3)", pointRadius: pts.length > 200 ? 0 : 3,
      }] },
      options: {
        plugins: { title: { display: true, text: "Policy version per window (" + fmt(DATA.timeline.windows) + " windows)", font: { size: 14 } }, tooltip: { callbacks: { title: title } } },
        scales: { x: timeAxis, y: axis("policy_version", { beginAtZero: true, suggestedMax: 1, ticks: { precision: 0 } }) },
      },
    });
    new Chart(document.getElementById("chart-window-share"), {
      type: "line",
      data: { datasets: [{
        label: "selected share of the window",
        data: pts.map(function (p) { return { x: p.t, y: pct(p.selected, p.rows) }; }),
        borderColor: SELECTED, backgroundColor: "rgba(31, 119, 180, 0.3)", pointRadius: pts.length > 200 ? 0 : 3,
      }] },
      options: {
        plugins: {
          title: { display: true, text: "Selected share per window", font: { size: 14 } },
          tooltip: { callbacks: { title: title, label: function (ctx) { var p = pts[ctx.dataIndex]; return ctx.parsed.y.toFixed(1) + "% (" + fmt(p.selected) + " of " + fmt(p.rows) + " rows)"; } } },
        },
        scales: { x: timeAxis, y: axis("% selected", { beginAtZero: true }) },
      },
    });
  }
  document.body.setAttribute("data-charts-ready", "1");
})();
`;

/** The whole page. `chartJs`: the source of chart.js's UMD build (readChartJs()). */
export function renderReportHtml(data: ReportData, chartJs: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>mmSSR report: ${count(data.poolRows)} rows, ${data.selection === "none" ? "pool only" : `${count(data.selectedRows)} selected`}</title>
<style>${STYLE}</style>
</head>
<body>
${body(data)}
<script type="application/json" id="report-data">${scriptSafeJson(data)}</script>
<script>${scriptSafeCode(chartJs, "chart.js")}</script>
<script>${scriptSafeCode(PAGE_SCRIPT, "the page script")}</script>
</body>
</html>
`;
}
