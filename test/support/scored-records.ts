/**
 * Test helpers: the rows of a scored pool (typically one from `generatePool`) as scored records
 * of the stream graph, offset = row index, so operator tests can feed a known pool through it.
 */

import { NUM_CAPABILITIES, styleNamesOfMask } from "../../src/domain/taxonomy.js";
import type { ScoredPool } from "../../src/pool/scored-pool.js";
import type { ScoredRecord } from "../../src/stream/stream-types.js";

/** Row r of the pool as a scored record of the graph (topic "t", partition 0, offset r). */
export function scoredRecordOf(pool: ScoredPool, r: number): ScoredRecord {
  return {
    origin: { topic: "t", partition: 0, offset: String(r) },
    sample: { id: pool.ids[r], image_source: pool.sources[pool.sourceIndex[r]], conversations: [] },
    timestamp: 0,
    score: {
      scores: Float32Array.from({ length: NUM_CAPABILITIES }, (_, c) => pool.scores[c][r]),
      styles: styleNamesOfMask(pool.styleMask[r]),
      styleProbabilities: new Float32Array(9),
      flags: [],
    },
    modelId: "test",
  };
}

/** Every row of the pool as a scored record, in row order. */
export function scoredRecordsOf(pool: ScoredPool): ScoredRecord[] {
  return Array.from({ length: pool.size }, (_, r) => scoredRecordOf(pool, r));
}
