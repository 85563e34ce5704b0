import Table from "cli-table3";
import type { SelectionSummary } from "../selection/selection-summary.js";

/** Compact tables: no colours (logs and pipes), no rule between rows. */
const COMPACT = {
  chars: { mid: "", "left-mid": "", "mid-mid": "", "right-mid": "" },
  style: { head: [] as string[], border: [] as string[] },
};

const fmt = (v: number): string => (Number.isNaN(v) ? "-" : v.toFixed(3));
const pct = (part: number, whole: number): string =>
  whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-";

/** Human-readable tables of a selection summary (the full list goes to --summary-json). */
export function formatSummary(summary: SelectionSummary, options: { maxBuckets?: number } = {}): string {
  const maxBuckets = options.maxBuckets ?? 25;
  const lines: string[] = [];
  lines.push(
    `selected ${summary.selected} of ${summary.poolRows} rows (budget ${summary.budget}, ` +
      `${pct(summary.selected, summary.poolRows)} of the pool; ${summary.styledRows} rows carry a style) in ${summary.rounds} round(s)`,
  );

  const caps = new Table({
    head: ["capability", "picked", "share", "pool mean", "selected mean", "gain"],
    ...COMPACT,
  });
  for (const c of summary.capabilities)
    caps.push([
      c.id,
      c.picked,
      pct(c.picked, summary.selected),
      fmt(c.poolMean),
      fmt(c.selectedMean),
      fmt(c.selectedMean - c.poolMean),
    ]);
  lines.push(caps.toString());

  const styles = new Table({
    head: ["style", "selected", "pool", "selected share", "pool share"],
    ...COMPACT,
  });
  const styleTotal = summary.styles.reduce((a, s) => a + s.pool, 0);
  for (const s of summary.styles)
    styles.push([s.style, s.selected, s.pool, pct(s.selected, summary.selected), pct(s.pool, styleTotal)]);
  lines.push(styles.toString());

  const buckets = new Table({
    head: ["bucket (style+image_source)", "selected", "pool", "taken"],
    ...COMPACT,
  });
  for (const b of summary.buckets.slice(0, maxBuckets))
    buckets.push([b.bucket, b.selected, b.pool, pct(b.selected, b.pool)]);
  lines.push(buckets.toString());
  if (summary.buckets.length > maxBuckets)
    lines.push(`... ${summary.buckets.length - maxBuckets} more buckets (all of them: --summary-json FILE)`);
  return lines.join("\n");
}

/**
 * What a curate run decided, as select's summary shows a selection: selected samples per
 * capability that picked them (contract order), and the samples not selected by reason.
 */
export function formatDecisionTable(
  selectedBy: Readonly<Record<string, number>>,
  notSelectedBy: Readonly<Record<string, number>>,
  capabilityOrder: readonly string[],
): string {
  const selected = Object.values(selectedBy).reduce((a, b) => a + b, 0);
  const table = new Table({ head: ["capability", "selected", "share"], ...COMPACT });
  for (const c of [
    ...capabilityOrder,
    ...Object.keys(selectedBy).filter((k) => !capabilityOrder.includes(k)),
  ])
    if (selectedBy[c]) table.push([c, String(selectedBy[c]), pct(selectedBy[c], selected)]);
  const notSelected = Object.values(notSelectedBy).reduce((a, b) => a + b, 0);
  const reasons = new Table({ head: ["not selected because", "samples", "share"], ...COMPACT });
  for (const [r, n] of Object.entries(notSelectedBy).sort((a, b) => b[1] - a[1]))
    reasons.push([r, String(n), pct(n, notSelected)]);
  return `${selected > 0 ? table.toString() : "nothing selected"}\n${notSelected > 0 ? reasons.toString() : "every decided sample was selected"}`;
}
