import { concatMap, type OperatorFunction } from "rxjs";
import type { Scorer } from "../../scoring/scoring-types.js";
import type { SampleRecord, ScoredRecord } from "../stream-types.js";

/**
 * Scores each window of samples with the scorer (featurizing on this thread, inference in the
 * worker pool), one window at a time so that windows keep their order; every record leaves
 * with its score and the model id. A scorer failure errors the stream: nothing is decided,
 * so nothing is committed, and the records are read again after a restart.
 */
export function scoreWindows(
  scorer: Scorer,
  onScored?: (window: readonly ScoredRecord[]) => void,
): OperatorFunction<readonly SampleRecord[], ScoredRecord[]> {
  return concatMap(async (window) => {
    const scores = await scorer.score(window.map((r) => r.sample));
    const scored = window.map((r, k) => ({ ...r, score: scores[k], modelId: scorer.id }));
    onScored?.(scored);
    return scored;
  });
}
