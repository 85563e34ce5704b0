import { map, Subject } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { describe, expect, it } from "vitest";
import { scoredRecordsOf } from "../../../test/support/scored-records.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { generatePool } from "../../pool/generate-pool.js";
import { selectMmssr } from "../../selection/select-mmssr.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { selectWindow } from "./select-window.js";
import { windowByCountOrTime } from "./window-by-count-or-time.js";

const pool = generatePool({ n: 400, seed: 21 });
const records = scoredRecordsOf(pool);
const ids = (ds: Decision[]): string => ds.map((d) => d.record.origin.offset).join(",");

function makeScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

describe("selectWindow", () => {
  it("decides each window with the offline selector, every record once, windows numbered", () => {
    const windows = [records.slice(0, 150), records.slice(150, 400)];
    const out: Decision[][] = [];
    const subject = new Subject<readonly ScoredRecord[]>();
    subject.pipe(selectWindow({ ratio: 0.2, now: () => 42 })).subscribe((ds) => out.push(ds));
    for (const w of windows) subject.next(w);
    expect(out.map((ds) => ds.length)).toEqual([150, 250]);
    windows.forEach((w, k) => {
      expect(out[k].map((d) => d.record)).toEqual(w);
      expect(new Set(out[k].map((d) => d.windowId))).toEqual(new Set([`w${k}`]));
      const rows = w.map((rec) => Number(rec.origin.offset));
      const sub = generatePool({ n: 400, seed: 21 });
      // the same rows as a pool of their own: same selection
      const expected = new Set(
        [
          ...selectMmssr(
            {
              ...sub,
              size: rows.length,
              ids: rows.map((r) => `${sub.ids[r]}\u0000t:0:${r}`),
              sourceIndex: Uint32Array.from(rows, (r) => sub.sourceIndex[r]),
              styleMask: Uint16Array.from(rows, (r) => sub.styleMask[r]),
              scores: sub.scores.map((col) => Float64Array.from(rows, (r) => Math.fround(col[r]))),
            },
            { ratio: 0.2 },
          ).indices,
        ].map((i) => rows[i]),
      );
      const picked = out[k].filter((d) => d.selected);
      expect(new Set(picked.map((d) => Number(d.record.origin.offset)))).toEqual(expected);
      for (const d of picked) {
        expect(CAPABILITY_IDS).toContain(d.pickedBy);
        expect(d.bucket?.endsWith(`+${d.record.sample.image_source}`)).toBe(true);
        expect(d.decidedAt).toBe(42);
      }
    });
  });

  it("after windowByCountOrTime: every record decided once, at its window's close (marble)", () => {
    makeScheduler().run(({ cold, expectObservable }) => {
      const src = cold("abcde-----f|", {
        a: records[0],
        b: records[1],
        c: records[2],
        d: records[3],
        e: records[4],
        f: records[5],
      });
      const out = src.pipe(
        windowByCountOrTime(3, 4),
        selectWindow({ ratio: 0.5 }),
        map((ds) => `${ds[0].windowId}:${ids(ds)}`),
      );
      expectObservable(out).toBe("--x----y---(z|)", { x: "w0:0,1,2", y: "w1:3,4", z: "w2:5" });
    });
  });
});
