/**
 * Cooperative yielding for CPU work on the main thread (featurizing, parsing): returns at
 * once unless the event loop has not turned for `budgetMs`, then waits for one turn.
 *
 * Why a check and not a plain `await setImmediate()` per chunk: a chain of promise callbacks
 * (worker results arriving as messages, each starting the next batch) can run for a long time
 * inside a single loop turn, so "once per chunk" may still never let timers, heartbeats or
 * metric scrapes in, while yielding on every small chunk costs microseconds each. A marker
 * callback scheduled with setImmediate records when the loop last turned.
 */
let lastTurn = performance.now();
let markerPending = false;

function markTurn(): void {
  markerPending = false;
  lastTurn = performance.now();
}

export async function yieldIfBusy(budgetMs = 5): Promise<void> {
  if (!markerPending) {
    markerPending = true;
    setImmediate(markTurn);
  }
  if (performance.now() - lastTurn < budgetMs) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
}
