import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { OcrImageError } from "./ocr-image.js";
import {
  hasNumericMarker,
  TEXT_IN_IMAGE_LAYOUT as L,
  OcrEngine,
  TEXT_IN_IMAGE_DIMS,
  textFeatures,
  textInImage,
  textInImageOfMissing,
} from "./text-in-image.js";

const FIXTURES = resolve(import.meta.dirname, "../../../test/fixtures");
// Rendered once from the .svg next to it (see ATTRIBUTION.md): dark text on a light card.
const TEXT_CARD = resolve(FIXTURES, "ocr/text-card.png");
// waterview.jpg (a lake photo, no text) with a sign "BOATS / Rent 15%" in its top right.
const LAKE_SIGN = resolve(FIXTURES, "ocr/lake-sign.jpg");
// A photo without text.
const WATERVIEW = resolve(FIXTURES, "samples/llava_serve_examples/waterview.jpg");

let engine: OcrEngine;
let card: Buffer;
let lake: Buffer;
let water: Buffer;

beforeAll(async () => {
  engine = await OcrEngine.create({ intraOpNumThreads: 1 });
  [card, lake, water] = await Promise.all([readFile(TEXT_CARD), readFile(LAKE_SIGN), readFile(WATERVIEW)]);
});

afterAll(async () => {
  await engine?.close();
});

function allText(words: string[]): string {
  return words.join(" ").toLowerCase();
}

describe("textInImage, detection only (the default)", () => {
  it("finds the two lines of the text card, in reading order, in the right places", async () => {
    const f = await textInImage(card, { engine });
    expect(f.width).toBe(640);
    expect(f.height).toBe(240);
    expect(f.recognized).toBe(false);
    expect(f.boxCount).toBeGreaterThanOrEqual(2);
    expect(f.boxCount).toBeLessThanOrEqual(6);
    // "INVOICE 2024" spans y 45..95, "Total $42.50 (15%)" y 140..190, both from x ~30.
    const top = f.boxes.filter((b) => b.y + b.height / 2 < 120);
    const bottom = f.boxes.filter((b) => b.y + b.height / 2 >= 120);
    expect(top.length).toBeGreaterThanOrEqual(1);
    expect(bottom.length).toBeGreaterThanOrEqual(1);
    for (const b of f.boxes) {
      expect(b.x).toBeGreaterThanOrEqual(15);
      expect(b.x + b.width).toBeLessThanOrEqual(500);
    }
    expect(f.textAreaShare).toBeGreaterThan(0.15);
    expect(f.textAreaShare).toBeLessThan(0.45);
    expect(f.meanBoxScore).toBeGreaterThan(0.8);
    expect(f.words).toEqual([]);
    expect(f.vector).toHaveLength(TEXT_IN_IMAGE_DIMS);
    expect(f.vector[L.hasText]).toBe(1);
    expect(f.vector[L.recognized]).toBe(0);
    expect(Array.from(f.vector.subarray(L.recognized))).toEqual(
      new Array(TEXT_IN_IMAGE_DIMS - L.recognized).fill(0),
    );
  });

  it("finds the sign on the photo and nothing else", async () => {
    const f = await engine.textInImage(lake);
    expect(f.boxCount).toBeGreaterThanOrEqual(2);
    for (const b of f.boxes) {
      // the sign is the rectangle x 250..450, y 40..132 of the 480 x 320 image
      expect(b.x).toBeGreaterThanOrEqual(240);
      expect(b.x + b.width).toBeLessThanOrEqual(460);
      expect(b.y).toBeGreaterThanOrEqual(30);
      expect(b.y + b.height).toBeLessThanOrEqual(142);
    }
  });

  it("finds no text on a photo without text", async () => {
    for (const maxSide of [320, 480, 640]) {
      const f = await engine.textInImage(water, { maxSide });
      expect(f.boxCount, `maxSide ${maxSide}`).toBe(0);
      expect(f.textAreaShare).toBe(0);
      expect(f.vector).toEqual(textInImageOfMissing());
    }
  });

  it("gives the same vector for the same bytes", async () => {
    const a = await engine.textInImage(lake, { maxSide: 480 });
    const b = await engine.textInImage(lake, { maxSide: 480 });
    expect(Array.from(b.vector)).toEqual(Array.from(a.vector));
    expect(b.boxes).toEqual(a.boxes);
  });
});

describe("textInImage with recognition", () => {
  it("reads the text card's words, digits and the money and percent amounts", async () => {
    const f = await engine.textInImage(card, { recognize: true });
    expect(f.recognized).toBe(true);
    const text = allText(f.words);
    expect(text).toContain("invoice");
    expect(text).toContain("total");
    expect(text).toMatch(/42[.,]50/);
    expect(f.hasNumericMarker).toBe(true);
    expect(f.meanTextConfidence).toBeGreaterThan(0.8);
    // characters: INVOICE2024 Total$42.50(15%) -> 10 digits of 29
    expect(f.digitShare).toBeGreaterThan(0.2);
    expect(f.digitShare).toBeLessThan(0.5);
    expect(f.latinShare).toBeGreaterThan(0.3);
    expect(f.cjkShare).toBeLessThan(0.1);
    expect(f.vector[L.recognized]).toBe(1);
    expect(f.vector[L.numericMarker]).toBe(1);
    expect(f.vector[L.wordCountLog]).toBeGreaterThan(0);
    expect(f.vector[L.digitShare]).toBeCloseTo(f.digitShare, 5);
  });

  it("reads the sign on the photo", async () => {
    const f = await textInImage(lake, { engine, recognize: true, maxSide: 480 });
    const text = allText(f.words);
    expect(text).toContain("boats");
    expect(text).toMatch(/15\s?%/);
    expect(f.hasNumericMarker).toBe(true);
  });

  it("reads text that runs top to bottom (a card turned 90 degrees clockwise)", async () => {
    const turned = await sharp(card).rotate(90).png().toBuffer();
    const f = await engine.textInImage(turned, { recognize: true });
    expect(f.width).toBe(240);
    expect(f.height).toBe(640);
    expect(allText(f.words)).toContain("invoice");
  });

  it("reads no words on a photo without text", async () => {
    const f = await engine.textInImage(water, { recognize: true });
    expect(f.wordCount).toBe(0);
    expect(f.vector[L.recognized]).toBe(1);
    expect(f.vector[L.hasText]).toBe(0);
  });
});

describe("errors", () => {
  it("rejects bytes that are no image with an image-corrupt OcrImageError", async () => {
    const err = await engine.textInImage(Buffer.from("not an image at all")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OcrImageError);
    expect(err).toBeInstanceOf(MmssrError);
    expect(err).toMatchObject({ code: ERROR_CODES.INVALID_SAMPLE, flag: "image-corrupt" });
    expect((err as Error).message).toMatch(/^image-corrupt: not a readable image/);
  });

  it("rejects a truncated JPEG and empty bytes as image-corrupt, with and without recognition", async () => {
    const truncated = water.subarray(0, Math.floor(water.length / 2));
    for (const recognize of [false, true]) {
      await expect(engine.textInImage(truncated, { recognize })).rejects.toMatchObject({
        flag: "image-corrupt",
      });
      await expect(engine.textInImage(new Uint8Array(0), { recognize })).rejects.toMatchObject({
        flag: "image-corrupt",
      });
    }
  });

  it("rejects an image over the pixel limit as image-too-large", async () => {
    await expect(engine.textInImage(card, { maxPixels: 1000 })).rejects.toMatchObject({
      code: ERROR_CODES.INVALID_SAMPLE,
      flag: "image-too-large",
    });
  });

  it("names the missing model file (MODEL_INVALID)", async () => {
    const missing = "/nonexistent/det.onnx";
    const err = await OcrEngine.create({ paths: { detection: missing } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect(err).toMatchObject({ code: ERROR_CODES.MODEL_INVALID });
    expect((err as Error).message).toContain(missing);
    await expect(OcrEngine.create({ paths: { dictionary: "/nonexistent/keys.txt" } })).rejects.toMatchObject({
      code: ERROR_CODES.MODEL_INVALID,
      message: expect.stringContaining("/nonexistent/keys.txt"),
    });
  });

  it("rejects bad options (BAD_OPTIONS)", async () => {
    await expect(engine.textInImage(card, { maxSide: 500 })).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
    await expect(engine.textInImage(card, { recognize: true, maxWidth: 100 })).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
    await expect(OcrEngine.create({ intraOpNumThreads: 0 })).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
  });

  it("refuses work after close()", async () => {
    const e = await OcrEngine.create();
    await e.close();
    await expect(e.textInImage(card)).rejects.toMatchObject({ code: ERROR_CODES.INFERENCE });
  });
});

describe("textFeatures (pure)", () => {
  const box = (x: number, y: number, width: number, height: number, score = 0.9) => ({
    x,
    y,
    width,
    height,
    score,
  });
  const read = (text: string, confidence: number) => ({ box: box(0, 0, 1, 1), text, confidence });

  it("computes shares, coverage and log-scaled counts as documented", () => {
    const f = textFeatures(
      100,
      200,
      [box(0, 0, 50, 20, 0.8), box(0, 10, 100, 30, 1)],
      [read("ab 12", 0.9), read("中文", 0.7), read("zz", 0.2)],
    );
    expect(f.textAreaShare).toBeCloseTo((1000 + 3000) / 20000, 6);
    expect(f.vector[L.rowCoverage]).toBeCloseTo(40 / 200, 6);
    expect(f.vector[L.textSize]).toBeCloseTo(30 / 100, 6);
    expect(f.vector[L.boxCountLog]).toBeCloseTo(Math.log(3) / Math.log(65), 6);
    expect(f.words).toEqual(["ab", "12", "中文"]); // "zz" is under minTextConfidence
    expect(f.charCount).toBe(6);
    expect(f.digitShare).toBeCloseTo(2 / 6, 6);
    expect(f.latinShare).toBeCloseTo(2 / 6, 6);
    expect(f.cjkShare).toBeCloseTo(2 / 6, 6);
    expect(f.meanTextConfidence).toBeCloseTo(0.6, 6);
    expect(f.hasNumericMarker).toBe(false);
    expect(f.vector[L.wordCountLog]).toBeCloseTo(Math.log(4) / Math.log(257), 6);
  });

  it("clips the text-area share and the counts to 1", () => {
    const boxes = Array.from({ length: 100 }, () => box(0, 0, 10, 10));
    const f = textFeatures(10, 10, boxes, undefined);
    expect(f.textAreaShare).toBe(1);
    expect(f.vector[L.boxCountLog]).toBe(1);
    expect(f.vector[L.recognized]).toBe(0);
  });

  it("recognises numbers with percent or currency", () => {
    for (const s of ["15%", "up 3.5 %", "$42.50", "€ 9", "10€", "¥100", "100元", "20 USD", "EUR 5", "50％"])
      expect(hasNumericMarker(s), s).toBe(true);
    for (const s of ["2024", "100 percent", "$", "USD", "room 101"])
      expect(hasNumericMarker(s), s).toBe(false);
  });
});
