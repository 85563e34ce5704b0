import { describe, expect, it } from "vitest";
import { connectedComponents, dbBoxes } from "./db-postprocess.js";

function map(width: number, height: number): Float32Array {
  return new Float32Array(width * height);
}

function fill(
  m: Float32Array,
  width: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
  p: number,
): void {
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * width + x] = p;
}

describe("connectedComponents", () => {
  it("labels separate blobs with their extents, pixel counts and probability sums", () => {
    const m = map(20, 10);
    fill(m, 20, 1, 1, 5, 3, 0.9); // 4 x 2
    fill(m, 20, 10, 4, 13, 9, 0.5); // 3 x 5
    const cs = connectedComponents(m, 20, 10, 0.3);
    expect(cs).toHaveLength(2);
    expect(cs[0]).toMatchObject({ x0: 1, y0: 1, x1: 5, y1: 3, pixels: 8 });
    expect(cs[0].probSum).toBeCloseTo(8 * 0.9, 5);
    expect(cs[1]).toMatchObject({ x0: 10, y0: 4, x1: 13, y1: 9, pixels: 15 });
  });

  it("joins diagonal neighbours (8-connected) and ignores values at the threshold", () => {
    const m = map(6, 6);
    m[0] = 1;
    m[7] = 1; // (1,1)
    m[14] = 1; // (2,2)
    m[5] = 0.5; // exactly the threshold: background
    const cs = connectedComponents(m, 6, 6, 0.5);
    expect(cs).toHaveLength(1);
    expect(cs[0]).toMatchObject({ x0: 0, y0: 0, x1: 3, y1: 3, pixels: 3 });
  });

  it("handles a map that is all text (one component) and one with none", () => {
    const full = new Float32Array(64 * 32).fill(0.8);
    expect(connectedComponents(full, 64, 32, 0.3)).toEqual([
      { x0: 0, y0: 0, x1: 64, y1: 32, pixels: 64 * 32, probSum: expect.any(Number) },
    ]);
    expect(connectedComponents(map(64, 32), 64, 32, 0.3)).toEqual([]);
  });

  it("rejects a map shorter than width x height", () => {
    expect(() => connectedComponents(new Float32Array(10), 4, 4, 0.3)).toThrow(RangeError);
  });
});

describe("dbBoxes", () => {
  it("expands a box by area x ratio / perimeter per side and scales it to the destination", () => {
    const m = map(64, 32);
    fill(m, 64, 10, 10, 30, 16, 0.9); // 20 x 6
    const [box, ...rest] = dbBoxes(m, 64, 32, 128, 64);
    expect(rest).toEqual([]);
    const d = (20 * 6 * 1.5) / (2 * 26); // 3.46
    expect(box.x).toBe(Math.round((10 - d) * 2));
    expect(box.y).toBe(Math.round((10 - d) * 2));
    expect(box.x + box.width).toBe(Math.round((30 + d) * 2));
    expect(box.y + box.height).toBe(Math.round((16 + d) * 2));
    expect(box.score).toBeCloseTo(0.9, 5);
  });

  it("drops boxes scored under the box threshold, tiny ones, and clips to the image", () => {
    const m = map(40, 40);
    fill(m, 40, 2, 2, 20, 8, 0.4); // mean 0.4 < 0.5
    fill(m, 40, 30, 30, 32, 39, 0.95); // 2 px wide < minSize 3
    fill(m, 40, 0, 20, 40, 26, 0.95); // full width: clipped to 0..40
    const boxes = dbBoxes(m, 40, 40, 40, 40);
    expect(boxes).toHaveLength(1);
    expect(boxes[0].x).toBe(0);
    expect(boxes[0].width).toBe(40);
    expect(dbBoxes(m, 40, 40, 40, 40, { boxThreshold: 0.3 })).toHaveLength(2);
  });

  it("keeps the best maxCandidates boxes and returns them in reading order", () => {
    const m = map(100, 100);
    fill(m, 100, 60, 10, 90, 20, 0.7);
    fill(m, 100, 5, 10, 40, 20, 0.9);
    fill(m, 100, 5, 60, 40, 70, 0.6);
    const all = dbBoxes(m, 100, 100, 100, 100);
    expect(all.map((b) => b.score.toFixed(1))).toEqual(["0.9", "0.7", "0.6"]);
    const two = dbBoxes(m, 100, 100, 100, 100, { maxCandidates: 2 });
    expect(two.map((b) => b.score.toFixed(1))).toEqual(["0.9", "0.7"]);
  });
});
