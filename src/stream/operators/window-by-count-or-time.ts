import {
  asyncScheduler,
  Observable,
  type OperatorFunction,
  type SchedulerLike,
  type Subscription,
} from "rxjs";

/**
 * Tumbling windows by count or time, whichever comes first (issue 4, DESIGN.md "window" mode).
 *
 * - A window opens with its first item and closes when it holds `maxCount` items, or `maxMs`
 *   after that first item (timer on `scheduler`), whichever happens first. The timer of a window
 *   closed by count is cancelled; the next item opens a new window with a new timer.
 * - A window is emitted as an array, in arrival order. Empty windows are never emitted (no item,
 *   no timer).
 * - Source completion flushes the open window, then completes. A source error passes through
 *   as is: the open window is dropped, not emitted (its records are not decided, so their
 *   offsets are not committed and they are read again after a restart).
 * - Unsubscribing tears down the source subscription and cancels the pending timer.
 */
export function windowByCountOrTime<T>(
  maxCount: number,
  maxMs: number,
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<T, T[]> {
  if (!Number.isSafeInteger(maxCount) || maxCount < 1)
    throw new RangeError(`windowByCountOrTime: maxCount must be a whole number >= 1, got ${maxCount}`);
  if (!(maxMs > 0)) throw new RangeError(`windowByCountOrTime: maxMs must be > 0, got ${maxMs}`);
  return (source) =>
    new Observable<T[]>((subscriber) => {
      let open: T[] = [];
      let timer: Subscription | undefined;
      const close = (): void => {
        timer?.unsubscribe();
        timer = undefined;
        if (open.length === 0) return;
        const window = open;
        open = [];
        subscriber.next(window);
      };
      const subscription = source.subscribe({
        next: (item) => {
          open.push(item);
          if (open.length === 1 && maxCount > 1) timer = scheduler.schedule(close, maxMs);
          if (open.length >= maxCount) close();
        },
        error: (err) => {
          timer?.unsubscribe();
          timer = undefined;
          open = [];
          subscriber.error(err);
        },
        complete: () => {
          close();
          subscriber.complete();
        },
      });
      return () => {
        timer?.unsubscribe();
        timer = undefined;
        open = [];
        subscription.unsubscribe();
      };
    });
}
