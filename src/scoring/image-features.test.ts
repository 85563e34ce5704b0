import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { beforeAll, describe, expect, it } from "vitest";
import { MmssrError } from "../domain/errors.js";
import {
  descriptorFromRgb,
  IMAGE_DESCRIPTOR_DIMS,
  type ImageDescriptorResult,
  imageDescriptor,
  imageDescriptorOfMissing,
  IMAGE_DESCRIPTOR_LAYOUT as L,
} from "./image-features.js";

const FIXTURES = resolve(import.meta.dirname, "../../test/fixtures/samples");
const SPEC = { size: 32, dims: IMAGE_DESCRIPTOR_DIMS };

function solid(width: number, height: number, r: number, g: number, b: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r, g, b } } })
    .png()
    .toBuffer();
}

function features(r: ImageDescriptorResult): Float32Array {
  if (!r.ok) throw new Error(`expected a descriptor, got ${r.flag}: ${r.reason}`);
  return r.features;
}

function part(f: Float32Array, p: { offset: number; length: number }): number[] {
  return Array.from(f.subarray(p.offset, p.offset + p.length));
}

function expectFail(r: ImageDescriptorResult, flag: string, reason?: RegExp) {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.flag).toBe(flag);
  if (reason) expect(r.reason).toMatch(reason);
}

let jpeg: Buffer;
let jpeg2: Buffer;

beforeAll(async () => {
  jpeg = await readFile(join(FIXTURES, "mllm_demo_data/1.jpg"));
  jpeg2 = await readFile(join(FIXTURES, "llava_serve_examples/waterview.jpg"));
});

describe("image descriptor layout", () => {
  it("the layout's parts tile 0..IMAGE_DESCRIPTOR_DIMS in order", () => {
    let at = 0;
    for (const p of Object.values(L)) {
      expect(p.offset).toBe(at);
      at += p.length;
    }
    expect(at).toBe(IMAGE_DESCRIPTOR_DIMS);
  });

  it("the missing-image descriptor is all zeros, has-image flag 0", () => {
    const m = imageDescriptorOfMissing(IMAGE_DESCRIPTOR_DIMS);
    expect(m.length).toBe(IMAGE_DESCRIPTOR_DIMS);
    expect(Array.from(m).every((v) => v === 0)).toBe(true);
    expect(imageDescriptorOfMissing().length).toBe(IMAGE_DESCRIPTOR_DIMS);
  });

  it("a spec with other dims or a bad size is refused with BAD_OPTIONS", async () => {
    await expect(imageDescriptor(jpeg, { size: 32, dims: 40 })).rejects.toThrow(/dims must be 39.*got 40/);
    await expect(imageDescriptor(jpeg, { size: 32, dims: 40 })).rejects.toBeInstanceOf(MmssrError);
    await expect(imageDescriptor(jpeg, { size: 2, dims: IMAGE_DESCRIPTOR_DIMS })).rejects.toThrow(/size/);
    await expect(imageDescriptor(jpeg, { size: 31.5, dims: IMAGE_DESCRIPTOR_DIMS })).rejects.toThrow(/size/);
  });
});

describe("image descriptor on real photos", () => {
  it("has spec.dims finite values in range, has-image 1, histograms summing to 1", async () => {
    for (const bytes of [jpeg, jpeg2]) {
      const f = features(await imageDescriptor(bytes, SPEC));
      expect(f.length).toBe(SPEC.dims);
      for (const v of f) expect(Number.isFinite(v)).toBe(true);
      for (let k = 0; k < f.length; k++) {
        if (k === L.aspect.offset) expect(Math.abs(f[k])).toBeLessThan(1);
        else expect(f[k] >= 0 && f[k] <= 1, `feature ${k} = ${f[k]}`).toBe(true);
      }
      const h = part(f, L.histogram);
      for (let c = 0; c < 3; c++) expect(h.slice(4 * c, 4 * c + 4).reduce((a, b) => a + b)).toBeCloseTo(1, 5);
      expect(f[L.hasImage.offset]).toBe(1);
      expect(f[L.edgeEnergy.offset]).toBeGreaterThan(0.01);
      // both photos are landscape (300x168, 1000x667)
      expect(f[L.aspect.offset]).toBeGreaterThan(0);
    }
  });

  it("is deterministic: the same bytes (also copied) give the same floats", async () => {
    const a = features(await imageDescriptor(jpeg, SPEC));
    const b = features(await imageDescriptor(new Uint8Array(jpeg), SPEC));
    const c = features(await imageDescriptor(jpeg, SPEC));
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(Array.from(c)).toEqual(Array.from(a));
  });

  it("different photos give different descriptors", async () => {
    const a = features(await imageDescriptor(jpeg, SPEC));
    const b = features(await imageDescriptor(jpeg2, SPEC));
    expect(Array.from(a)).not.toEqual(Array.from(b));
  });

  it("reads a bytes view at an offset inside a larger buffer", async () => {
    const big = new Uint8Array(jpeg.length + 20);
    big.set(jpeg, 10);
    const a = features(await imageDescriptor(big.subarray(10, 10 + jpeg.length), SPEC));
    const b = features(await imageDescriptor(jpeg, SPEC));
    expect(Array.from(a)).toEqual(Array.from(b));
  });
});

describe("image descriptor features", () => {
  it("red vs blue: the colour histogram puts them in opposite bins", async () => {
    const red = features(await imageDescriptor(await solid(20, 20, 255, 0, 0), SPEC));
    const blue = features(await imageDescriptor(await solid(20, 20, 0, 0, 255), SPEC));
    // R bins 0-3, G bins 0-3, B bins 0-3
    expect(part(red, L.histogram)).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0]);
    expect(part(blue, L.histogram)).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]);
    expect(red[L.saturation.offset]).toBeCloseTo(1, 5);
    expect(red[L.colourfulness.offset]).toBeGreaterThan(0.3);
    // luminance 0.299 vs 0.114
    for (const v of part(red, L.luminanceGrid)) expect(v).toBeCloseTo(0.299, 2);
    for (const v of part(blue, L.luminanceGrid)) expect(v).toBeCloseTo(0.114, 2);
  });

  it("a flat grey image has ~0 edge energy, contrast, saturation and colourfulness", async () => {
    const f = features(await imageDescriptor(await solid(50, 50, 128, 128, 128), SPEC));
    expect(f[L.edgeEnergy.offset]).toBeLessThan(1e-6);
    for (const v of part(f, L.edgeEnergyQuadrants)) expect(v).toBeLessThan(1e-6);
    expect(f[L.contrast.offset]).toBeLessThan(1e-6);
    expect(f[L.saturation.offset]).toBeLessThan(1e-6);
    expect(f[L.colourfulness.offset]).toBeLessThan(1e-6);
    expect(f[L.aspect.offset]).toBe(0);
    expect(f[L.logPixels.offset]).toBeCloseTo(Math.log10(2500) / 8, 5);
  });

  it("edges in one quadrant only show in that quadrant; the luminance grid follows the picture", async () => {
    // 64x64: white everywhere, a fine black/white checkerboard in the top-right quadrant.
    const size = 64;
    const raw = Buffer.alloc(size * size * 3, 255);
    for (let y = 0; y < size / 2; y++)
      for (let x = size / 2; x < size; x++)
        if ((x + y) % 2 === 0) raw.fill(0, 3 * (y * size + x), 3 * (y * size + x) + 3);
    const png = await sharp(raw, { raw: { width: size, height: size, channels: 3 } })
      .png()
      .toBuffer();
    const f = features(await imageDescriptor(png, { size, dims: IMAGE_DESCRIPTOR_DIMS }));
    const [tl, tr, bl, br] = part(f, L.edgeEnergyQuadrants);
    expect(tr).toBeGreaterThan(0.5);
    expect(tl).toBeLessThan(0.05);
    expect(bl).toBe(0);
    expect(br).toBe(0);
    const grid = part(f, L.luminanceGrid);
    expect(grid[2]).toBeCloseTo(0.5, 1); // top row, third cell: half black
    expect(grid[0]).toBeCloseTo(1, 5);
    expect(grid[15]).toBeCloseTo(1, 5);
    expect(f[L.contrast.offset]).toBeGreaterThan(0.4);
  });

  it("a transparent PNG is flattened onto white", async () => {
    const png = await sharp({
      create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    const f = features(await imageDescriptor(png, SPEC));
    for (const v of part(f, L.luminanceGrid)) expect(v).toBeCloseTo(1, 5);
  });

  it("a greyscale image is converted to RGB", async () => {
    const grey = await sharp({ create: { width: 16, height: 16, channels: 3, background: "#404040" } })
      .toColourspace("b-w")
      .jpeg()
      .toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const f = features(await imageDescriptor(grey, SPEC));
    expect(part(f, L.histogram)).toEqual([0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]);
  });

  it("aspect: landscape > 0, portrait < 0, and EXIF orientation turns a stored landscape into portrait", async () => {
    const landscape = features(await imageDescriptor(await solid(40, 20, 10, 200, 10), SPEC));
    const portrait = features(await imageDescriptor(await solid(20, 40, 10, 200, 10), SPEC));
    expect(landscape[L.aspect.offset]).toBeCloseTo((1600 - 400) / 2000, 5);
    expect(portrait[L.aspect.offset]).toBeCloseTo(-(1600 - 400) / 2000, 5);
    // Stored 40x20 with orientation 6 (rotate 90 degrees clockwise to display): shown 20x40.
    const rotated = await sharp({ create: { width: 40, height: 20, channels: 3, background: "#808080" } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const meta = await sharp(rotated).metadata();
    expect([meta.width, meta.height, meta.orientation]).toEqual([40, 20, 6]);
    const f = features(await imageDescriptor(rotated, SPEC));
    expect(f[L.aspect.offset]).toBeLessThan(0);
  });

  it("EXIF rotation is applied to the pixels before the luminance grid", async () => {
    // Stored 40x20: left half black, right half white; orientation 6 shows it rotated 90 degrees
    // clockwise, so the black half ends up on top.
    const raw = Buffer.alloc(40 * 20 * 3, 255);
    for (let y = 0; y < 20; y++) raw.fill(0, 3 * (y * 40), 3 * (y * 40 + 20));
    const jpg = await sharp(raw, { raw: { width: 40, height: 20, channels: 3 } })
      .jpeg({ quality: 100 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const grid = part(features(await imageDescriptor(jpg, SPEC)), L.luminanceGrid);
    expect(grid[0]).toBeLessThan(0.1); // top left
    expect(grid[15]).toBeGreaterThan(0.9); // bottom right
  });

  it("descriptorFromRgb matches the layout on a hand-made 4x4 image", () => {
    const rgb = new Uint8Array(4 * 4 * 3).fill(255); // white
    const f = descriptorFromRgb(rgb, 4, 100, 100);
    expect(part(f, L.histogram)).toEqual([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    expect(part(f, L.luminanceGrid).every((v) => Math.abs(v - 1) < 1e-6)).toBe(true);
    expect(f[L.logPixels.offset]).toBeCloseTo(0.5, 6);
    expect(f[L.hasImage.offset]).toBe(1);
  });
});

describe("image descriptor: bad images", () => {
  it("corrupt bytes -> image-corrupt", async () => {
    const junk = new Uint8Array(2048);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) & 0xff;
    expectFail(await imageDescriptor(junk, SPEC), "image-corrupt", /not a readable image/);
  });

  it("a JPEG header followed by garbage -> image-corrupt", async () => {
    const bad = Buffer.concat([jpeg.subarray(0, 600), Buffer.alloc(4000, 0x55)]);
    expectFail(await imageDescriptor(bad, SPEC), "image-corrupt");
  });

  it("a truncated JPEG (first half of a real one) -> image-corrupt", async () => {
    const half = jpeg.subarray(0, jpeg.length >> 1);
    expectFail(await imageDescriptor(half, SPEC), "image-corrupt", /premature end|truncated/i);
  });

  it("a non-image file (JSON text) -> image-corrupt", async () => {
    const text = await readFile(join(FIXTURES, "mllm_demo.json"));
    expectFail(await imageDescriptor(text, SPEC), "image-corrupt", /unsupported image format/);
  });

  it("no bytes -> image-corrupt", async () => {
    expectFail(await imageDescriptor(new Uint8Array(0), SPEC), "image-corrupt");
  });

  it("over maxPixels -> image-too-large, before decoding", async () => {
    // 300 x 168 = 50400 pixels
    expectFail(
      await imageDescriptor(jpeg, SPEC, { maxPixels: 50_000 }),
      "image-too-large",
      /300 x 168 = 50400 pixels, over the limit of 50000/,
    );
    expect((await imageDescriptor(jpeg, SPEC, { maxPixels: 50_400 })).ok).toBe(true);
  });

  it("a huge declared size is refused by its header alone", async () => {
    // An SVG declaring 100000 x 100000 pixels: metadata says so, nothing is rasterised.
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"></svg>');
    expectFail(await imageDescriptor(svg, SPEC), "image-too-large", /over the limit of 40000000/);
  });
});
