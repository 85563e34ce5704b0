/**
 * Collects single items into batches: a batch goes to `process` when it holds maxBatch items or
 * maxWaitMs after its first item arrived, whichever comes first. Result k of `process` settles
 * item k; an error (or a result list of the wrong length) rejects every item of that batch.
 * Batches may be in flight concurrently (one per call to process).
 */
import { ERROR_CODES, MmssrError } from "../domain/errors.js";

export interface MicroBatcherOptions<T, R> {
  /** items per batch at most (>= 1) */
  maxBatch: number;
  /** longest wait after a batch's first item before it is sent (>= 0) */
  maxWaitMs: number;
  process: (items: T[]) => Promise<R[]>;
}

export interface MicroBatcher<T, R> {
  submit(item: T): Promise<R>;
  /** sends what is waiting now, and resolves once every batch sent so far has settled */
  flush(): Promise<void>;
  /** flush, then refuse new items (submit rejects). Idempotent. */
  close(): Promise<void>;
}

interface Entry<T, R> {
  item: T;
  resolve: (r: R) => void;
  reject: (e: unknown) => void;
}

export function createMicroBatcher<T, R>(options: MicroBatcherOptions<T, R>): MicroBatcher<T, R> {
  const { maxBatch, maxWaitMs, process } = options;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `micro-batcher: maxBatch must be a positive integer, got ${maxBatch}`,
    );
  }
  if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) {
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `micro-batcher: maxWaitMs must be >= 0, got ${maxWaitMs}`);
  }

  let pending: Entry<T, R>[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  const inFlight = new Set<Promise<void>>();

  function clearTimer(): void {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  }

  function dispatch(): void {
    clearTimer();
    const batch = pending.slice(0, maxBatch);
    pending = pending.slice(batch.length);
    if (pending.length > 0) armTimer(); // the remainder waits for its own maxWaitMs (or maxBatch)
    if (batch.length === 0) return;
    const done = runBatch(batch);
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  }

  async function runBatch(batch: Entry<T, R>[]): Promise<void> {
    let results: R[];
    try {
      results = await process(batch.map((e) => e.item));
    } catch (err) {
      for (const e of batch) e.reject(err);
      return;
    }
    if (!Array.isArray(results) || results.length !== batch.length) {
      const err = new MmssrError(
        ERROR_CODES.INTERNAL,
        `micro-batcher: process returned ${Array.isArray(results) ? results.length : typeof results} results for ${batch.length} items`,
      );
      for (const e of batch) e.reject(err);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
  }

  function armTimer(): void {
    if (timer === undefined) timer = setTimeout(dispatch, maxWaitMs);
  }

  function submit(item: T): Promise<R> {
    if (closed) {
      return Promise.reject(new MmssrError(ERROR_CODES.INTERNAL, "micro-batcher: submit after close"));
    }
    return new Promise<R>((resolve, reject) => {
      pending.push({ item, resolve, reject });
      if (pending.length >= maxBatch) dispatch();
      else armTimer();
    });
  }

  async function flush(): Promise<void> {
    while (pending.length > 0) dispatch();
    clearTimer();
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  }

  async function close(): Promise<void> {
    closed = true;
    await flush();
  }

  return { submit, flush, close };
}
