import { map, type OperatorFunction } from "rxjs";
import { bucketName, CAPABILITY_IDS, NUM_CAPABILITIES, STYLES, styleIndex } from "../../domain/taxonomy.js";
import { ScoredPoolBuilder } from "../../pool/scored-pool.js";
import type { SelectionRow } from "../../selection/continuous-selector.js";
import { ineligibleReason } from "../../selection/decision-reason.js";
import { resolveSelectOptions } from "../../selection/resolve-select-options.js";
import { selectMmssr } from "../../selection/select-mmssr.js";
import type { SelectOptions } from "../../selection/select-options.js";
import type { Decision, ScoredRecord } from "../stream-types.js";

/** Style names of a scored record as the 9-bit mask of the selectors (unknown names ignored). */
export function styleMaskOf(record: ScoredRecord): number {
  let mask = 0;
  for (const s of record.score.styles) {
    const i = styleIndex(s);
    if (i >= 0) mask |= 1 << i;
  }
  return mask;
}

/**
 * The selectors' view of a scored record. The id is made unique per origin: a sample id may
 * repeat in a topic (sent twice), and the tie-break needs one id per row.
 */
export function selectionRowOf(record: ScoredRecord): SelectionRow {
  const { origin } = record;
  return {
    id: `${record.sample.id}\u0000${origin.topic}:${origin.partition}:${origin.offset}`,
    imageSource: record.sample.image_source,
    styleMask: styleMaskOf(record),
    scores: record.score.scores,
  };
}

export interface SelectWindowOptions extends SelectOptions {
  /** Window id of the n-th window (0-based) (default `w<n>`). */
  windowId?: (n: number, window: readonly ScoredRecord[]) => string;
  /** Clock for decidedAt (default Date.now). */
  now?: () => number;
}

/**
 * The offline mmSSR selection (MMSSR.md, exact) of one window of scored records. Every record
 * gets exactly one decision, in window order; ratio applies to the window's size, an absolute
 * budget is per window. A record not selected says why (`reason`: not eligible, or the budget
 * went to others).
 */
export function decideWindow(
  records: readonly ScoredRecord[],
  options: SelectOptions,
  windowId: string,
  now: number,
): Decision[] {
  const builder = new ScoredPoolBuilder(Math.max(records.length, 1));
  const scores = new Float64Array(NUM_CAPABILITIES);
  const masks = new Uint16Array(records.length);
  records.forEach((record, i) => {
    const row = selectionRowOf(record);
    for (let c = 0; c < NUM_CAPABILITIES; c++) scores[c] = row.scores[c];
    masks[i] = row.styleMask;
    builder.add({ id: row.id, imageSource: row.imageSource, styleMask: row.styleMask, scores });
  });
  const result = selectMmssr(builder.build(), options);
  const decisions: Decision[] = records.map((record) => ({
    record,
    selected: false,
    windowId,
    decidedAt: now,
  }));
  for (let k = 0; k < result.indices.length; k++) {
    const d = decisions[result.indices[k]];
    d.selected = true;
    d.pickedBy = CAPABILITY_IDS[result.pickedBy[k]];
    d.bucket = bucketName(STYLES[result.pickedStyle[k]], d.record.sample.image_source);
  }
  const resolved = resolveSelectOptions(records.length, options);
  decisions.forEach((d, i) => {
    if (!d.selected) d.reason = ineligibleReason(d.record.score.scores, masks[i], resolved) ?? "budget";
  });
  return decisions;
}

/**
 * Window mode (DESIGN.md): windows of scored records (from windowByCountOrTime) in, one array
 * of decisions per window out, decided by the exact offline selector. Options are checked on
 * the first window (MmssrError BAD_OPTIONS is thrown into the stream as an error).
 */
export function selectWindow(
  options: SelectWindowOptions,
): OperatorFunction<readonly ScoredRecord[], Decision[]> {
  const { windowId = (n: number) => `w${n}`, now = Date.now, ...select } = options;
  let n = 0;
  return map((window) => {
    const id = windowId(n++, window);
    return decideWindow(window, select, id, now());
  });
}
