import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { OffsetLedger, parsePartitionKey, partitionKey } from "./offset-ledger.js";
import type { Origin } from "./stream-types.js";

const o = (topic: string, partition: number, offset: number | bigint | string): Origin => ({
  topic,
  partition,
  offset: String(offset),
});

describe("OffsetLedger", () => {
  it("commits up to the lowest undecided offset, then past the last tracked", () => {
    const l = new OffsetLedger();
    expect(l.committable().size).toBe(0);
    for (let i = 10; i < 15; i++) l.track(o("t", 0, i));
    expect(l.committable().get("t:0")).toBe("10");
    l.decided(o("t", 0, 12));
    l.decided(o("t", 0, 11));
    expect(l.committable().get("t:0")).toBe("10");
    l.decided(o("t", 0, 10));
    expect(l.committable().get("t:0")).toBe("13");
    l.decided(o("t", 0, 14));
    l.decided(o("t", 0, 13));
    expect(l.committable().get("t:0")).toBe("15");
    expect(l.undecidedTotal).toBe(0);
  });

  it("keeps partitions apart and handles gaps in offsets", () => {
    const l = new OffsetLedger();
    l.track(o("a", 0, 0));
    l.track(o("a", 0, 5)); // a compacted topic: 1..4 do not exist
    l.track(o("a", 1, 100));
    l.track(o("b", 0, 7));
    l.decided(o("a", 0, 0));
    l.decided(o("b", 0, 7));
    expect(Object.fromEntries(l.committable())).toEqual({ "a:0": "5", "a:1": "100", "b:0": "8" });
    expect(l.undecidedCounts().get("a:1")).toBe(1);
  });

  it("keeps int64 offsets exact", () => {
    const l = new OffsetLedger();
    const big = 2n ** 62n + 1n;
    l.track(o("t", 3, big));
    l.track(o("t", 3, big + 1n));
    l.decided(o("t", 3, big));
    expect(l.committable().get("t:3")).toBe((big + 1n).toString());
    l.decided(o("t", 3, big + 1n));
    expect(l.committable().get("t:3")).toBe((big + 2n).toString());
  });

  it("ignores unknown, repeated and revoked decisions; drops revoked partitions", () => {
    const l = new OffsetLedger();
    l.track(o("t", 0, 1));
    l.track(o("t", 0, 1)); // tracked twice: once
    expect(l.decided(o("t", 0, 2))).toBe(false);
    expect(l.decided(o("u", 0, 1))).toBe(false);
    expect(l.decided(o("t", 0, 1))).toBe(true);
    expect(l.decided(o("t", 0, 1))).toBe(false);
    l.track(o("t", 1, 4));
    l.revoke("t", [1]);
    expect(l.decided(o("t", 1, 4))).toBe(false);
    expect(Object.fromEntries(l.committable())).toEqual({ "t:0": "2" });
  });

  it("reports an assigned start before anything arrives, and never below it when all is decided", () => {
    const l = new OffsetLedger();
    l.assign("t", 0, "500");
    expect(l.committable().get("t:0")).toBe("500");
    l.track(o("t", 0, 503));
    expect(l.committable().get("t:0")).toBe("503");
    l.decided(o("t", 0, 503));
    expect(l.committable().get("t:0")).toBe("504");
  });

  it("rejects offsets that are not decimal integers", () => {
    const l = new OffsetLedger();
    expect(() => l.track(o("t", 0, "1e3"))).toThrow(RangeError);
  });

  it("partition keys round-trip", () => {
    expect(parsePartitionKey(partitionKey("my.topic-1", 12))).toEqual({ topic: "my.topic-1", partition: 12 });
  });

  it("stays fast with one offset held back while many others are decided (heap rebuild)", () => {
    const l = new OffsetLedger();
    l.track(o("t", 0, 0));
    const n = 200_000;
    for (let i = 1; i <= n; i++) {
      l.track(o("t", 0, i));
      l.decided(o("t", 0, i));
    }
    expect(l.committable().get("t:0")).toBe("0");
    l.decided(o("t", 0, 0));
    expect(l.committable().get("t:0")).toBe(String(n + 1));
  });

  // Model: per partition, offsets tracked in increasing order (with gaps) and decided in any order,
  // interleaved with tracking of later ones.
  it("property: never passes an undecided offset, and reaches the end once all are decided", () => {
    const scenario = fc
      .array(
        fc.record({
          partition: fc.integer({ min: 0, max: 2 }),
          gap: fc.integer({ min: 1, max: 3 }),
        }),
        { minLength: 1, maxLength: 120 },
      )
      .chain((tracks) =>
        fc.record({
          tracks: fc.constant(tracks),
          // for each tracked record, how many steps later its decision comes
          delays: fc.array(fc.integer({ min: 0, max: 40 }), {
            minLength: tracks.length,
            maxLength: tracks.length,
          }),
          checkEvery: fc.integer({ min: 1, max: 5 }),
        }),
      );
    fc.assert(
      fc.property(scenario, ({ tracks, delays, checkEvery }) => {
        const l = new OffsetLedger();
        const next = [0n, 0n, 0n].map((x, p) => x + BigInt(p) * 1_000_000_000_000n);
        const origins: Origin[] = tracks.map((t) => {
          next[t.partition] += BigInt(t.gap);
          return o("t", t.partition, next[t.partition]);
        });
        // events: track i at step i, decide i at step i + delays[i] (after its track)
        type Ev = { at: number; kind: 0 | 1; i: number };
        const events: Ev[] = [];
        origins.forEach((_, i) => {
          events.push({ at: i, kind: 0, i });
          events.push({ at: i + delays[i], kind: 1, i });
        });
        events.sort((a, b) => a.at - b.at || a.kind - b.kind || a.i - b.i);
        const undecided = new Set<number>();
        const lastTracked = new Map<number, bigint>();
        const committed = new Map<string, bigint>();
        let step = 0;
        for (const ev of events) {
          const origin = origins[ev.i];
          if (ev.kind === 0) {
            l.track(origin);
            undecided.add(ev.i);
            lastTracked.set(origin.partition, BigInt(origin.offset));
          } else {
            expect(l.decided(origin)).toBe(true);
            undecided.delete(ev.i);
          }
          if (++step % checkEvery !== 0) continue;
          for (const [key, value] of l.committable()) {
            const { partition } = parsePartitionKey(key);
            const c = BigInt(value);
            // never past an undecided offset
            for (const i of undecided)
              if (origins[i].partition === partition) expect(c <= BigInt(origins[i].offset)).toBe(true);
            // never beyond what was read
            expect(c <= (lastTracked.get(partition) ?? -1n) + 1n).toBe(true);
            // monotone when offsets are tracked in order
            const before = committed.get(key);
            if (before !== undefined) expect(c >= before).toBe(true);
            committed.set(key, c);
          }
        }
        // eventually: the end of each partition
        const end = l.committable();
        for (const [p, last] of lastTracked) expect(end.get(`t:${p}`)).toBe((last + 1n).toString());
        expect(l.undecidedTotal).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});
