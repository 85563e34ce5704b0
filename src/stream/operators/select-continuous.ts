import {
  asyncScheduler,
  Observable,
  type OperatorFunction,
  type SchedulerLike,
  type Subscription,
} from "rxjs";
import {
  type ContinuousDecision,
  ContinuousSelector,
  type ContinuousSelectorOptions,
} from "../../selection/continuous-selector.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { selectionRowOf } from "./select-window.js";

export interface SelectContinuousOptions extends ContinuousSelectorOptions {
  /** Window id of the n-th decision batch (default `c<n>`). */
  batchId?: (n: number) => string;
}

/**
 * Continuous mode (DESIGN.md): scored records in, arrays of decisions out (one per decision
 * batch of the ContinuousSelector). Every record is decided exactly once, at most
 * `maxDelayMs` (scheduler time) after it arrived: a timer on `scheduler` fires when the oldest
 * waiting record is due. Source completion decides every waiting record; a source error passes
 * through and leaves them undecided (their offsets are not committed). Unsubscribing cancels
 * the timer.
 */
export function selectContinuous(
  options: SelectContinuousOptions,
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<ScoredRecord, Decision[]> {
  const { batchId = (n: number) => `c${n}`, ...selectorOptions } = options;
  return (source) =>
    new Observable<Decision[]>((subscriber) => {
      const selector = new ContinuousSelector<ScoredRecord>(selectorOptions, selectionRowOf);
      let timer: Subscription | undefined;
      let timerDue: number | undefined;
      const emit = (decisions: ContinuousDecision<ScoredRecord>[]): void => {
        if (decisions.length === 0) return;
        subscriber.next(
          decisions.map((d) => {
            const out: Decision = {
              record: d.item,
              selected: d.selected,
              windowId: batchId(d.batch),
              decidedAt: d.decidedAt,
            };
            if (d.pickedBy !== undefined) out.pickedBy = d.pickedBy;
            if (d.bucket !== undefined) out.bucket = d.bucket;
            return out;
          }),
        );
      };
      const cancel = (): void => {
        timer?.unsubscribe();
        timer = undefined;
        timerDue = undefined;
      };
      const arm = (): void => {
        const due = selector.nextDueAt();
        if (due === timerDue) return;
        cancel();
        if (due === undefined) return;
        timerDue = due;
        timer = scheduler.schedule(
          () => {
            timer = undefined;
            timerDue = undefined;
            emit(selector.poll(Math.max(scheduler.now(), due)));
            arm();
          },
          Math.max(due - scheduler.now(), 0),
        );
      };
      const subscription = source.subscribe({
        next: (record) => {
          let decisions: ContinuousDecision<ScoredRecord>[];
          try {
            decisions = selector.decide(record, scheduler.now());
          } catch (err) {
            cancel();
            subscriber.error(err);
            return;
          }
          emit(decisions);
          arm();
        },
        error: (err) => {
          cancel();
          subscriber.error(err);
        },
        complete: () => {
          cancel();
          emit(selector.flush(scheduler.now()));
          subscriber.complete();
        },
      });
      return () => {
        cancel();
        subscription.unsubscribe();
      };
    });
}
