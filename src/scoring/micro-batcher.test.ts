import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ERROR_CODES } from "../domain/errors.js";
import { createMicroBatcher } from "./micro-batcher.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A process function that records its batches and doubles each item. */
function recorder() {
  const batches: number[][] = [];
  const process = vi.fn(async (items: number[]) => {
    batches.push([...items]);
    return items.map((x) => x * 2);
  });
  return { batches, process };
}

describe("createMicroBatcher", () => {
  it("sends a batch as soon as it holds maxBatch items, without waiting", async () => {
    const { batches, process } = recorder();
    const b = createMicroBatcher({ maxBatch: 3, maxWaitMs: 1000, process });
    const results = [1, 2, 3].map((x) => b.submit(x));
    expect(batches).toEqual([[1, 2, 3]]);
    expect(await Promise.all(results)).toEqual([2, 4, 6]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("sends a partial batch maxWaitMs after its first item, not after the last", async () => {
    const { batches, process } = recorder();
    const b = createMicroBatcher({ maxBatch: 10, maxWaitMs: 50, process });
    const r1 = b.submit(1);
    await vi.advanceTimersByTimeAsync(30);
    const r2 = b.submit(2);
    await vi.advanceTimersByTimeAsync(19);
    expect(batches).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches).toEqual([[1, 2]]);
    expect(await Promise.all([r1, r2])).toEqual([2, 4]);
    // the next item starts a new window
    const r3 = b.submit(3);
    await vi.advanceTimersByTimeAsync(49);
    expect(batches.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await r3).toBe(6);
    expect(batches).toEqual([[1, 2], [3]]);
  });

  it("splits a burst into full batches and times out the remainder", async () => {
    const { batches, process } = recorder();
    const b = createMicroBatcher({ maxBatch: 4, maxWaitMs: 10, process });
    const results = Array.from({ length: 10 }, (_, i) => b.submit(i));
    expect(batches).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    await vi.advanceTimersByTimeAsync(10);
    expect(batches[2]).toEqual([8, 9]);
    expect(await Promise.all(results)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
  });

  it("rejects every item of a failing batch, and only those", async () => {
    const boom = new Error("model exploded");
    const process = vi.fn(async (items: string[]) => {
      if (items.includes("bad")) throw boom;
      return items.map((s) => s.toUpperCase());
    });
    const b = createMicroBatcher({ maxBatch: 2, maxWaitMs: 5, process });
    const first = [b.submit("a"), b.submit("bad")].map((p) => p.catch((e) => e));
    const second = [b.submit("c"), b.submit("d")];
    expect(await Promise.all(first)).toEqual([boom, boom]);
    expect(await Promise.all(second)).toEqual(["C", "D"]);
  });

  it("rejects a batch when process throws synchronously or returns the wrong number of results", async () => {
    const sync = createMicroBatcher<number, number>({
      maxBatch: 1,
      maxWaitMs: 0,
      process: () => {
        throw new Error("sync");
      },
    });
    await expect(sync.submit(1)).rejects.toThrow("sync");
    const short = createMicroBatcher<number, number>({ maxBatch: 2, maxWaitMs: 0, process: async () => [1] });
    const both = [short.submit(1), short.submit(2)].map((p) => p.catch((e) => e));
    for (const e of await Promise.all(both)) {
      expect(e).toMatchObject({
        code: ERROR_CODES.INTERNAL,
        message: expect.stringMatching(/1 results for 2 items/),
      });
    }
  });

  it("flush() sends what waits without the timer and waits for batches in flight", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const batches: number[][] = [];
    const b = createMicroBatcher({
      maxBatch: 2,
      maxWaitMs: 1_000_000,
      process: async (items: number[]) => {
        batches.push(items);
        await gate;
        return items;
      },
    });
    const results = [1, 2, 3].map((x) => b.submit(x));
    let flushed = false;
    const f = b.flush().then(() => {
      flushed = true;
    });
    expect(batches).toEqual([[1, 2], [3]]);
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(0);
    expect(flushed).toBe(false);
    release();
    await f;
    expect(flushed).toBe(true);
    expect(await Promise.all(results)).toEqual([1, 2, 3]);
  });

  it("close() flushes, then refuses new items", async () => {
    const { batches, process } = recorder();
    const b = createMicroBatcher({ maxBatch: 8, maxWaitMs: 100, process });
    const r = b.submit(5);
    await b.close();
    expect(await r).toBe(10);
    expect(batches).toEqual([[5]]);
    await expect(b.submit(6)).rejects.toThrow(/submit after close/);
    await b.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("validates its options", () => {
    const process = async (items: number[]) => items;
    expect(() => createMicroBatcher({ maxBatch: 0, maxWaitMs: 1, process })).toThrow(/maxBatch/);
    expect(() => createMicroBatcher({ maxBatch: 1, maxWaitMs: -1, process })).toThrow(/maxWaitMs/);
  });
});
