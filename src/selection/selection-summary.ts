import { bucketName, CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES, STYLES } from "../domain/taxonomy.js";
import type { ScoredPool } from "../pool/scored-pool.js";
import type { SelectionResult } from "./select-options.js";

export interface CapabilitySummary {
  id: string;
  /** rows this capability picked */
  picked: number;
  /** mean of present scores over the pool / over every selected row */
  poolMean: number;
  selectedMean: number;
}

export interface BucketSummary {
  bucket: string;
  selected: number;
  /** pool rows carrying this style and source */
  pool: number;
}

export interface SelectionSummary {
  poolRows: number;
  /** rows with at least one style: the only ones that can ever be selected */
  styledRows: number;
  budget: number;
  selected: number;
  rounds: number;
  capabilities: CapabilitySummary[];
  styles: { style: string; selected: number; pool: number }[];
  /** buckets that selected something or hold pool rows, most selected first */
  buckets: BucketSummary[];
}

/** Counts and means that tell whether a selection looks right, selected vs pool. */
export function summarizeSelection(pool: ScoredPool, result: SelectionResult): SelectionSummary {
  const n = pool.size;
  const numSources = pool.sources.length;
  const bucketPool = new Float64Array(NUM_STYLES * numSources);
  const bucketSelected = new Float64Array(NUM_STYLES * numSources);
  let styledRows = 0;
  const { styleMask, sourceIndex } = pool;
  for (let i = 0; i < n; i++) {
    const mask = styleMask[i];
    if (mask === 0) continue;
    styledRows++;
    const src = sourceIndex[i];
    for (let bits = mask; bits !== 0; bits &= bits - 1)
      bucketPool[(31 - Math.clz32(bits & -bits)) * numSources + src]++;
  }
  const picked = new Float64Array(NUM_CAPABILITIES);
  const stylePicked = new Float64Array(NUM_STYLES);
  for (let k = 0; k < result.indices.length; k++) {
    picked[result.pickedBy[k]]++;
    stylePicked[result.pickedStyle[k]]++;
    bucketSelected[result.pickedStyle[k] * numSources + pool.sourceIndex[result.indices[k]]]++;
  }
  // Sorted row numbers turn 14 passes of random reads into forward scans.
  const selectedRows = result.indices.slice().sort();
  const capabilities = CAPABILITY_IDS.map((id, c) => {
    const col = pool.scores[c];
    return {
      id,
      picked: picked[c],
      poolMean: meanOf(col, undefined),
      selectedMean: meanOf(col, selectedRows),
    };
  });
  const styles = STYLES.map((style, s) => {
    let poolCount = 0;
    for (let src = 0; src < numSources; src++) poolCount += bucketPool[s * numSources + src];
    return { style, selected: stylePicked[s], pool: poolCount };
  });
  const buckets: BucketSummary[] = [];
  for (let s = 0; s < NUM_STYLES; s++)
    for (let src = 0; src < numSources; src++) {
      const b = s * numSources + src;
      if (bucketPool[b] > 0)
        buckets.push({
          bucket: bucketName(STYLES[s], pool.sources[src]),
          selected: bucketSelected[b],
          pool: bucketPool[b],
        });
    }
  buckets.sort((x, y) => y.selected - x.selected || (x.bucket < y.bucket ? -1 : 1));
  return {
    poolRows: n,
    styledRows,
    budget: result.budget,
    selected: result.indices.length,
    rounds: result.rounds,
    capabilities,
    styles,
    buckets,
  };
}

/** Mean of the present values of a column, over all rows or over `rows`. */
function meanOf(col: Float64Array, rows: Uint32Array | undefined): number {
  let sum = 0;
  let count = 0;
  // two loops rather than one with a per-element branch on `rows`: this runs over millions
  if (rows) {
    for (let k = 0; k < rows.length; k++) {
      const v = col[rows[k]];
      if (!Number.isNaN(v)) {
        sum += v;
        count++;
      }
    }
  } else {
    for (let i = 0; i < col.length; i++) {
      const v = col[i];
      if (!Number.isNaN(v)) {
        sum += v;
        count++;
      }
    }
  }
  return count > 0 ? sum / count : Number.NaN;
}
