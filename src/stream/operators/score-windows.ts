import { concatMap, map, type OperatorFunction, pipe } from "rxjs";
import type { Scorer } from "../../scoring/scoring-types.js";
import type { SampleRecord, ScoredRecord } from "../stream-types.js";

/**
 * Scores each window of samples with the scorer (featurizing and inference in its worker
 * threads); every record leaves with its score and the model id, windows in their order.
 *
 * A window's scoring starts when the window arrives, not when the one before it has been
 * scored: while this thread selects and encodes window k, the workers already featurize
 * window k+1 (otherwise the two would take turns and each would idle half the time). The
 * scorer bounds the batches in flight, and the graph's undecided limit bounds the windows.
 * A scorer failure errors the stream: nothing is decided, so nothing is committed, and the
 * records are read again after a restart.
 */
export function scoreWindows(
  scorer: Scorer,
  onScored?: (window: readonly ScoredRecord[]) => void,
): OperatorFunction<readonly SampleRecord[], ScoredRecord[]> {
  return pipe(
    map((window: readonly SampleRecord[]) => {
      const scores = scorer.score(window.map((r) => r.sample));
      scores.catch(() => {}); // awaited in order below; an early failure is not "unhandled" meanwhile
      return { window, scores };
    }),
    concatMap(async ({ window, scores }) => {
      const got = await scores;
      const modelId = scorer.id;
      const scored: ScoredRecord[] = new Array(window.length);
      for (let k = 0; k < window.length; k++) {
        const r = window[k];
        scored[k] = {
          origin: r.origin,
          sample: r.sample,
          timestamp: r.timestamp,
          receivedAt: r.receivedAt,
          generation: r.generation,
          score: got[k],
          modelId,
        };
      }
      onScored?.(scored);
      return scored;
    }),
  );
}
