import { describe, expect, it } from "vitest";
import { detectorInputSize, detectorTensor } from "./text-detector.js";

describe("detectorInputSize", () => {
  it("scales the longer side to maxSide and rounds both sides to multiples of 32", () => {
    expect(detectorInputSize(640, 240, 640)).toEqual({ width: 640, height: 256 });
    expect(detectorInputSize(300, 168, 480)).toEqual({ width: 480, height: 256 });
    expect(detectorInputSize(168, 300, 960)).toEqual({ width: 544, height: 960 });
    expect(detectorInputSize(4000, 10, 960)).toEqual({ width: 960, height: 32 });
  });

  it("only shrinks without upscale (PaddleOCR's limit_type max)", () => {
    expect(detectorInputSize(300, 168, 480, false)).toEqual({ width: 288, height: 160 });
    expect(detectorInputSize(1000, 500, 480, false)).toEqual({ width: 480, height: 256 });
  });
});

describe("detectorTensor", () => {
  it("writes CHW planes in BGR order, normalised with PaddleOCR's mean and std in that order", () => {
    // two pixels: pure red, then (0, 128, 255)
    const t = detectorTensor({ data: Uint8Array.from([255, 0, 0, 0, 128, 255]), width: 2, height: 1 });
    expect(t).toHaveLength(6);
    const n = (v: number, mean: number, std: number) => (v / 255 - mean) / std;
    // plane 0 = blue (mean 0.485, std 0.229)
    expect(t[0]).toBeCloseTo(n(0, 0.485, 0.229), 5);
    expect(t[1]).toBeCloseTo(n(255, 0.485, 0.229), 5);
    // plane 1 = green (0.456, 0.224)
    expect(t[2]).toBeCloseTo(n(0, 0.456, 0.224), 5);
    expect(t[3]).toBeCloseTo(n(128, 0.456, 0.224), 5);
    // plane 2 = red (0.406, 0.225)
    expect(t[4]).toBeCloseTo(n(255, 0.406, 0.225), 5);
    expect(t[5]).toBeCloseTo(n(0, 0.406, 0.225), 5);
  });
});
