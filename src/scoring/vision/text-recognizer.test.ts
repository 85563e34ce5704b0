import { describe, expect, it } from "vitest";
import { REC_HEIGHT, recognizerCropWidth, recognizerTensor } from "./text-recognizer.js";

describe("recognizerCropWidth", () => {
  it("keeps the aspect at height 48, caps the width, and turns tall boxes", () => {
    expect(recognizerCropWidth(200, 48, 640)).toBe(200);
    expect(recognizerCropWidth(100, 30, 640)).toBe(160);
    expect(recognizerCropWidth(3000, 30, 640)).toBe(640);
    expect(recognizerCropWidth(5, 40, 640)).toBe(Math.ceil((48 * 40) / 5)); // read turned: 40 wide, 5 high
    expect(recognizerCropWidth(20, 29, 640)).toBe(Math.ceil((48 * 20) / 29)); // under 1.5 x: not turned
  });
});

describe("recognizerTensor", () => {
  it("writes BGR planes as (v / 255 - 0.5) / 0.5 and pads each crop with 0 to the batch width", () => {
    const width = 2;
    const data = new Uint8Array(REC_HEIGHT * width * 3);
    // every pixel (255, 0, 51)
    for (let i = 0; i < data.length; i += 3) {
      data[i] = 255;
      data[i + 2] = 51;
    }
    const batchWidth = 4;
    const t = recognizerTensor(
      [
        { data, width },
        { data, width },
      ],
      batchWidth,
    );
    const plane = REC_HEIGHT * batchWidth;
    expect(t).toHaveLength(2 * 3 * plane);
    for (const b of [0, 1]) {
      const base = b * 3 * plane;
      for (const y of [0, REC_HEIGHT - 1]) {
        const row = base + y * batchWidth;
        expect(t[row]).toBeCloseTo(51 / 127.5 - 1, 5); // blue
        expect(t[row + plane]).toBeCloseTo(-1, 5); // green
        expect(t[row + 2 * plane]).toBeCloseTo(1, 5); // red
        expect(t[row + 1]).toBeCloseTo(51 / 127.5 - 1, 5);
        expect(t[row + 2]).toBe(0); // padding
        expect(t[row + 3]).toBe(0);
      }
    }
  });
});
