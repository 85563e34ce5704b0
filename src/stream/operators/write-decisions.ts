import { concatMap, type OperatorFunction } from "rxjs";
import type { Decision } from "../stream-types.js";

/** Where decisions go: the sink (which publishes them, and hands what it published on to the output topic). */
export interface DecisionTargets {
  sink: { write(decisions: readonly Decision[]): Promise<unknown> };
  /** decisions of a generation that is over are dropped: the partition's owner decides them again */
  isStale?: (decision: Decision) => boolean;
  onWritten?: (kept: readonly Decision[], dropped: number) => void;
}

/** Hands each batch of decisions to the sink, in order, one batch at a time. */
export function writeDecisions(targets: DecisionTargets): OperatorFunction<Decision[], Decision[]> {
  return concatMap(async (decisions) => {
    const kept = targets.isStale ? decisions.filter((d) => !targets.isStale?.(d)) : decisions;
    await targets.sink.write(kept);
    targets.onWritten?.(kept, decisions.length - kept.length);
    return kept;
  });
}
