import { map, type OperatorFunction } from "rxjs";
import { bucketName, CAPABILITY_IDS, NUM_CAPABILITIES, STYLES, styleIndex } from "../domain/taxonomy.js";
import { ScoredPoolBuilder } from "../pool/scored-pool.js";
import { selectMmssr } from "../selection/select-mmssr.js";
import type { SelectOptions } from "../selection/select-options.js";
import type { Decision, ScoredRecord } from "./stream-types.js";

/**
 * Window mode: the exact offline selector (MMSSR.md) on one window of scored records. Every
 * record gets exactly one decision; a budget larger than the window selects what is reachable.
 */
export function selectWindowDecisions(
  records: readonly ScoredRecord[],
  options: SelectOptions,
  windowId: string,
  now = Date.now(),
): Decision[] {
  // Ids may repeat across a topic (a sample sent twice); inside the window the selector needs
  // unique ids, so the row number stands in and the tie-break stays deterministic per window.
  const builder = new ScoredPoolBuilder(records.length);
  const scores = new Float64Array(NUM_CAPABILITIES);
  for (const r of records) {
    let styleMask = 0;
    for (const s of r.score.styles) styleMask |= 1 << styleIndex(s);
    for (let c = 0; c < NUM_CAPABILITIES; c++) scores[c] = r.score.scores[c];
    builder.add({
      id: `${r.sample.id}\u0000${r.origin.partition}:${r.origin.offset}`,
      imageSource: r.sample.image_source,
      styleMask,
      scores,
    });
  }
  const pool = builder.build();
  const result = selectMmssr(pool, options);
  const decisions: Decision[] = records.map((record) => ({
    record,
    selected: false,
    windowId,
    decidedAt: now,
  }));
  for (let k = 0; k < result.indices.length; k++) {
    const i = result.indices[k];
    decisions[i].selected = true;
    decisions[i].pickedBy = CAPABILITY_IDS[result.pickedBy[k]];
    decisions[i].bucket = bucketName(STYLES[result.pickedStyle[k]], records[i].sample.image_source);
  }
  return decisions;
}

/** The window-mode select step of the graph: one decision list per window, windows numbered from 0. */
export function selectEachWindow(
  options: SelectOptions,
  runId = Date.now().toString(36),
): OperatorFunction<ScoredRecord[], Decision[]> {
  let n = 0;
  return map((window) => selectWindowDecisions(window, options, `${runId}-w${n++}`));
}
