import { describe, expect, it } from "vitest";
import { RecentIds } from "./recent-ids.js";

describe("RecentIds", () => {
  it("names the first origin of a repeated id; the same message again is no repeat", () => {
    const ids = new RecentIds(10);
    expect(ids.repeatOf("a", "t:0:1")).toBeUndefined();
    expect(ids.repeatOf("a", "t:0:1")).toBeUndefined(); // read again (a replay)
    expect(ids.repeatOf("a", "t:1:7")).toBe("t:0:1");
  });

  it("forgets the oldest ids beyond its capacity", () => {
    const ids = new RecentIds(2);
    ids.repeatOf("a", "o1");
    ids.repeatOf("b", "o2");
    ids.repeatOf("c", "o3");
    expect(ids.size).toBe(2);
    expect(ids.repeatOf("a", "o4")).toBeUndefined();
    expect(ids.repeatOf("c", "o5")).toBe("o3");
    expect(new RecentIds(0).repeatOf("a", "o")).toBeUndefined();
    expect(() => new RecentIds(-1)).toThrow(/capacity/);
  });

  it("keeps exactly the last `capacity` ids over many evictions (oldest out first)", () => {
    const ids = new RecentIds(1_000);
    for (let i = 0; i < 5_000; i++) expect(ids.repeatOf(`id-${i}`, `o${i}`)).toBeUndefined();
    expect(ids.size).toBe(1_000);
    for (let i = 4_000; i < 5_000; i++) expect(ids.repeatOf(`id-${i}`, "elsewhere")).toBe(`o${i}`);
    // the 1,000 before them were forgotten (and each of these lookups records a new id)
    expect(ids.repeatOf("id-3999", "again")).toBeUndefined();
    expect(ids.size).toBe(1_000);
  });
});
