import { Subject } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { describe, expect, it } from "vitest";
import { windowByCountOrTime } from "./window-by-count-or-time.js";

function makeScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

describe("windowByCountOrTime (virtual time)", () => {
  it("closes a window when it holds maxCount items", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("abcdefg|");
      // 3 items close a window at once (frame of the 3rd item); the rest is flushed on completion
      expectObservable(src.pipe(windowByCountOrTime(3, 1000))).toBe("--x--y-(z|)", {
        x: ["a", "b", "c"],
        y: ["d", "e", "f"],
        z: ["g"],
      });
    });
  });

  it("closes a window maxMs after its first item, whichever comes first", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      // a at 0, b at 2; window opened at 0 closes at 5 (before the count of 10 is reached)
      const src = cold("a-b------c-d---|");
      expectObservable(src.pipe(windowByCountOrTime(10, 5))).toBe("-----x--------y|", {
        x: ["a", "b"],
        y: ["c", "d"],
      });
    });
  });

  it("starts the timer at the first item of a window, not at the previous close", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      // a at 0 -> closes at 4; c arrives at 10 -> its window closes at 14
      const src = cold("ab--------c------|");
      expectObservable(src.pipe(windowByCountOrTime(10, 4))).toBe("----x---------y--|", {
        x: ["a", "b"],
        y: ["c"],
      });
    });
  });

  it("a window closed by count cancels its timer; the next item starts a fresh one", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      // a,b close by count at 1; c at 3 opens a window whose timer fires at 3+5 = 8, not at 5
      const src = cold("ab-c--------|");
      expectObservable(src.pipe(windowByCountOrTime(2, 5))).toBe("-x------y---|", {
        x: ["a", "b"],
        y: ["c"],
      });
    });
  });

  it("never emits an empty window", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("--------------|");
      expectObservable(src.pipe(windowByCountOrTime(2, 3))).toBe("--------------|");
      const idle = cold("a----------------b-|");
      expectObservable(idle.pipe(windowByCountOrTime(5, 3))).toBe("---x---------------(y|)", {
        x: ["a"],
        y: ["b"],
      });
    });
  });

  it("flushes the open window on completion", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("ab|");
      expectObservable(src.pipe(windowByCountOrTime(10, 100))).toBe("--(x|)", { x: ["a", "b"] });
    });
  });

  it("passes an error through without flushing the open window", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("abc-d#", undefined, new Error("boom"));
      expectObservable(src.pipe(windowByCountOrTime(3, 100))).toBe(
        "--x--#",
        { x: ["a", "b", "c"] },
        new Error("boom"),
      );
    });
  });

  it("teardown cancels the timer: nothing is emitted after unsubscribing", () => {
    makeScheduler().run(({ cold, expectObservable, flush }) => {
      const src = cold("a------------");
      const sub = "^--!";
      expectObservable(src.pipe(windowByCountOrTime(10, 6)), sub).toBe("----");
      flush();
    });
  });

  it("teardown leaves no scheduled action behind", () => {
    const scheduler = makeScheduler();
    const subject = new Subject<number>();
    const seen: number[][] = [];
    const sub = subject.pipe(windowByCountOrTime(10, 50, scheduler)).subscribe((w) => seen.push(w));
    subject.next(1);
    expect(scheduler.actions.length).toBe(1);
    sub.unsubscribe();
    // the pending timer's action is removed from the scheduler's queue when cancelled
    expect(scheduler.actions.filter((a) => !a.closed).length).toBe(0);
    scheduler.flush();
    expect(seen).toEqual([]);
  });

  it("rejects bad arguments", () => {
    expect(() => windowByCountOrTime(0, 10)).toThrow(RangeError);
    expect(() => windowByCountOrTime(2, 0)).toThrow(RangeError);
  });
});
