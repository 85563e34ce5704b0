/**
 * Test helpers: build a ScoredPool from short, readable rows, and turn a SelectionResult back
 * into readable `{ id, cap, bucket }` records, so hand-worked tests read like their derivation.
 */

import {
  bucketName,
  CAPABILITY_IDS,
  type CapabilityId,
  capabilityIndex,
  NUM_CAPABILITIES,
  STYLES,
  type StyleName,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../../src/domain/taxonomy.js";
import { type ScoredPool, ScoredPoolBuilder } from "../../src/pool/scored-pool.js";
import type { SelectionResult } from "../../src/selection/select-options.js";

/** One readable row: `{ id: "a", src: "coco", styles: ["yes/no"], s: { ocr: 3, stem: 1 } }`. */
export interface Row {
  id: string;
  /** image_source; default "unknown" */
  src?: string;
  /** style names; default none (the row can never be selected) */
  styles?: readonly StyleName[];
  /** capability scores; a missing key, null or NaN is a missing score */
  s?: Partial<Record<CapabilityId, number | null>>;
}

/** Builds a columnar pool, rows in the given order (row i = rows[i]). */
export function poolFromRows(rows: readonly Row[]): ScoredPool {
  const builder = new ScoredPoolBuilder(rows.length);
  for (const row of rows) {
    let mask = 0;
    for (const style of row.styles ?? []) {
      const s = styleIndex(style);
      if (s < 0) throw new Error(`poolFromRows: unknown style ${JSON.stringify(style)}`);
      mask |= 1 << s;
    }
    const scores = new Float64Array(NUM_CAPABILITIES).fill(Number.NaN);
    for (const [key, v] of Object.entries(row.s ?? {})) {
      const c = capabilityIndex(key);
      if (c < 0) throw new Error(`poolFromRows: unknown capability ${JSON.stringify(key)}`);
      scores[c] = v === null || v === undefined ? Number.NaN : v;
    }
    builder.add({ id: row.id, imageSource: row.src ?? UNKNOWN_SOURCE, styleMask: mask, scores });
  }
  return builder.build();
}

/** One pick, readable: the row's id, the capability id that picked it and its bucket name. */
export interface Pick {
  id: string;
  cap: CapabilityId;
  bucket: string;
}

/** A SelectionResult as readable picks, in pick order. */
export function readablePicks(pool: ScoredPool, result: SelectionResult): Pick[] {
  const out: Pick[] = [];
  for (let k = 0; k < result.indices.length; k++) {
    const i = result.indices[k];
    out.push({
      id: pool.ids[i],
      cap: CAPABILITY_IDS[result.pickedBy[k]],
      bucket: bucketName(STYLES[result.pickedStyle[k]], pool.sources[pool.sourceIndex[i]]),
    });
  }
  return out;
}

/** Just the picked ids, in pick order. */
export function pickedIds(pool: ScoredPool, result: SelectionResult): string[] {
  return Array.from(result.indices, (i) => pool.ids[i]);
}
