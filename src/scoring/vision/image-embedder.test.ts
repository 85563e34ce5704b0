import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import {
  defaultImageEmbedModelDir,
  IMAGE_EMBED_FEATURE_DIMS,
  IMAGE_EMBED_FEATURE_LAYOUT,
  ImageEmbedder,
  type ImageEmbedding,
  imageEmbedFeatures,
  imageEmbedFeaturesOfMissing,
  imageEmbedProjectionMatrix,
  resizeBilinearAlignCorners,
} from "./image-embedder.js";

const FIXTURES = fileURLToPath(new URL("../../../test/fixtures/samples/", import.meta.url));
const LABELS = ["drawing", "hentai", "neutral", "porn", "sexy"];

/**
 * Reference outputs of the ORIGINAL TF.js model (nsfwjs@4.4.0 MobileNetV2, @tensorflow/tfjs 4.22.0
 * CPU backend, nsfwjs' own resizeBilinear of the full-size decode), from
 * `npx tsx models/vision/verify-nsfwjs-mobilenet.ts --json` (models/vision/README.md). The ONNX
 * model matched them to 2e-6; the tolerance below leaves room for other CPUs' kernels.
 */
const TFJS_REFERENCE: Record<string, { probs: number[]; norm: number; sum: number }> = {
  "llava_serve_examples/extreme_ironing.jpg": {
    probs: [0.007751, 0.000106, 0.991808, 0.000174, 0.000161],
    norm: 9.2395,
    sum: 115.098,
  },
  "llava_serve_examples/waterview.jpg": {
    probs: [0.001004, 0.000037, 0.998816, 0.000075, 0.000068],
    norm: 13.2016,
    sum: 175.306,
  },
  // A football photo that the model (TF.js and ONNX alike) calls "drawing": the class is not a
  // photo detector. Pinned as a known counterexample, not asserted as "not a drawing".
  "mllm_demo_data/1.jpg": {
    probs: [0.551251, 0.004268, 0.322749, 0.003902, 0.117831],
    norm: 8.5276,
    sum: 75.346,
  },
  "mllm_demo_data/2.jpg": {
    probs: [0.007593, 0.001093, 0.974228, 0.008414, 0.008675],
    norm: 7.6246,
    sum: 104.366,
  },
  "mllm_demo_data/3.jpg": {
    probs: [0.002623, 0.000154, 0.995481, 0.001373, 0.000378],
    norm: 9.2024,
    sum: 107.487,
  },
};
const FILES = Object.keys(TFJS_REFERENCE);
/** photos the model does not take for drawings */
const PLAIN_PHOTOS = FILES.filter((f) => f !== "mllm_demo_data/1.jpg");

const PIE_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="400"><rect width="520" height="400" fill="white"/>' +
  '<circle cx="260" cy="200" r="150" fill="#4e79a7"/><path d="M260 200 L410 200 A150 150 0 0 1 260 350 Z" fill="#f28e2b"/>' +
  '<path d="M260 200 L260 350 A150 150 0 0 1 120 250 Z" fill="#e15759"/></svg>';
const BAR_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="400"><rect width="520" height="400" fill="white"/>' +
  '<line x1="40" y1="20" x2="40" y2="340" stroke="black" stroke-width="3"/>' +
  '<line x1="40" y1="340" x2="500" y2="340" stroke="black" stroke-width="3"/>' +
  [120, 200, 80, 260, 170, 230]
    .map(
      (h, i) =>
        `<rect x="${60 + i * 70}" y="${340 - h}" width="44" height="${h}" fill="#${["4e79a7", "f28e2b", "e15759", "76b7b2", "59a14f", "edc948"][i]}"/>`,
    )
    .join("") +
  "</svg>";

const read = (f: string) => new Uint8Array(readFileSync(join(FIXTURES, f)));
const svgPng = async (svg: string) => new Uint8Array(await sharp(Buffer.from(svg)).png().toBuffer());
const drawingProb = (e: ImageEmbedding) => e.probs[LABELS.indexOf("drawing")];

function stats(e: Float32Array): { norm: number; sum: number; min: number; max: number } {
  let sq = 0;
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (const v of e) {
    sq += v * v;
    sum += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return { norm: Math.sqrt(sq), sum, min, max };
}

let embedder: ImageEmbedder;
let fixtures: ImageEmbedding[];

beforeAll(async () => {
  embedder = await ImageEmbedder.load({ intraOpNumThreads: 1 });
  fixtures = await embedder.embedMany(FILES.map(read));
});
afterAll(async () => {
  await embedder?.close();
});

describe("the committed model", () => {
  it("loads from models/vision/mobilenet-v2-nsfwjs with the manifest's sha256", () => {
    const dir = defaultImageEmbedModelDir();
    const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
    const sha = createHash("sha256")
      .update(readFileSync(join(dir, manifest.onnx.file)))
      .digest("hex");
    expect(sha).toBe(manifest.onnx.sha256);
    expect(embedder.manifest.onnx.sha256).toBe(sha);
    expect(manifest.source).toMatchObject({ package: "nsfwjs", version: "4.4.0", license: "MIT" });
    expect(embedder.labels).toEqual(LABELS);
    expect(embedder.inputSize).toBe(224);
    expect(embedder.embeddingDims).toBe(1280);
  });

  it("refuses a model file that does not match the manifest's sha256", async () => {
    const dir = mkdtempSync(join(tmpdir(), "embed-model-"));
    try {
      cpSync(defaultImageEmbedModelDir(), dir, { recursive: true });
      const onnx = readFileSync(join(dir, "model.onnx"));
      onnx[onnx.length - 1] ^= 0xff;
      writeFileSync(join(dir, "model.onnx"), onnx);
      const err = await ImageEmbedder.load({ modelDir: dir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MmssrError);
      expect((err as MmssrError).code).toBe(ERROR_CODES.MODEL_INVALID);
      expect((err as MmssrError).message).toMatch(/sha256/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a manifest whose labels do not fit the outputs, and bad options", async () => {
    const dir = mkdtempSync(join(tmpdir(), "embed-model-"));
    try {
      cpSync(defaultImageEmbedModelDir(), dir, { recursive: true });
      const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
      manifest.labels = manifest.labels.slice(0, 4);
      writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
      await expect(ImageEmbedder.load({ modelDir: dir })).rejects.toMatchObject({
        code: ERROR_CODES.MODEL_INVALID,
        message: expect.stringMatching(/labels: 4 labels for 5 probabilities/),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await expect(ImageEmbedder.load({ intraOpNumThreads: -1 })).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
  });
});

describe("outputs on real images", () => {
  it("have the declared shapes, probabilities that sum to 1, embeddings within ReLU6's range", () => {
    expect(fixtures).toHaveLength(FILES.length);
    for (const e of fixtures) {
      expect(e.embedding).toBeInstanceOf(Float32Array);
      expect(e.embedding).toHaveLength(1280);
      expect(e.probs).toHaveLength(5);
      expect(e.labels).toEqual(LABELS);
      const s = e.probs.reduce((a, b) => a + b, 0);
      expect(Math.abs(s - 1)).toBeLessThan(1e-5);
      for (const p of e.probs) expect(p).toBeGreaterThanOrEqual(0);
      const st = stats(e.embedding);
      expect(st.min).toBeGreaterThanOrEqual(0);
      expect(st.max).toBeLessThanOrEqual(6);
      expect(e.top.probability).toBe(Math.max(...e.probs));
      expect(e.top.label).toBe(LABELS[e.probs.indexOf(e.top.probability)]);
    }
  });

  it("match the original TF.js model's outputs on the fixture images", () => {
    FILES.forEach((f, i) => {
      const ref = TFJS_REFERENCE[f];
      const e = fixtures[i];
      for (let k = 0; k < 5; k++)
        expect(Math.abs(e.probs[k] - ref.probs[k]), `${f} ${LABELS[k]}`).toBeLessThan(1e-3);
      const st = stats(e.embedding);
      expect(Math.abs(st.norm - ref.norm) / ref.norm, `${f} norm`).toBeLessThan(1e-3);
      expect(Math.abs(st.sum - ref.sum) / ref.sum, `${f} sum`).toBeLessThan(1e-3);
    });
  });

  it("call the plain photos 'neutral', not 'drawing'", () => {
    for (const f of PLAIN_PHOTOS) {
      const e = fixtures[FILES.indexOf(f)];
      expect(e.top.label, f).toBe("neutral");
      expect(drawingProb(e), f).toBeLessThan(0.05);
    }
  });

  it("score drawn charts higher on 'drawing' than every photo", async () => {
    const [pie, bars] = await embedder.embedMany([await svgPng(PIE_SVG), await svgPng(BAR_SVG)]);
    const maxPhoto = Math.max(...fixtures.map(drawingProb));
    expect(pie.top.label).toBe("drawing");
    expect(bars.top.label).toBe("drawing");
    expect(drawingProb(pie)).toBeGreaterThan(maxPhoto + 0.1);
    expect(drawingProb(bars)).toBeGreaterThan(maxPhoto);
    expect(drawingProb(bars)).toBeGreaterThan(
      20 * Math.max(...PLAIN_PHOTOS.map((f) => drawingProb(fixtures[FILES.indexOf(f)]))),
    );
  });

  it("do not depend on the batch: one by one, in chunks of 2 and in one batch agree", async () => {
    const small = await ImageEmbedder.load({ maxBatch: 2 });
    try {
      const chunked = await small.embedMany(FILES.map(read));
      const single = await Promise.all(FILES.map((f) => embedder.embed(read(f))));
      FILES.forEach((f, i) => {
        for (const other of [chunked[i], single[i]]) {
          for (let k = 0; k < 5; k++)
            expect(Math.abs(other.probs[k] - fixtures[i].probs[k]), f).toBeLessThan(1e-5);
          let maxAbs = 0;
          for (let j = 0; j < 1280; j++)
            maxAbs = Math.max(maxAbs, Math.abs(other.embedding[j] - fixtures[i].embedding[j]));
          expect(maxAbs, f).toBeLessThan(1e-4);
        }
      });
    } finally {
      await small.close();
    }
  });

  it("are the same on a second run (deterministic)", async () => {
    const again = await embedder.embed(read(FILES[0]));
    expect(Array.from(again.probs)).toEqual(Array.from(fixtures[0].probs));
    expect(Array.from(again.embedding)).toEqual(Array.from(fixtures[0].embedding));
  });
});

describe("bad images", () => {
  it("a corrupt image gives a clear MmssrError naming it; the settled form flags it and embeds the rest", async () => {
    const good = read(FILES[0]);
    const truncated = good.slice(0, Math.floor(good.length / 3));
    const garbage = new TextEncoder().encode("this is not an image at all");
    for (const bad of [truncated, garbage, new Uint8Array(0)]) {
      const err = await embedder.embedMany([good, bad]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MmssrError);
      expect((err as MmssrError).code).toBe(ERROR_CODES.INVALID_SAMPLE);
      expect((err as MmssrError).message).toMatch(/^image 1 of 2: image-corrupt: /);
    }
    const settled = await embedder.embedManySettled([garbage, good, truncated]);
    expect(settled.map((r) => r.ok)).toEqual([false, true, false]);
    expect(settled[0]).toMatchObject({
      ok: false,
      flag: "image-corrupt",
      reason: expect.stringMatching(/readable/),
    });
    const ok = settled[1];
    if (!ok.ok) throw new Error("expected an embedding");
    expect(Array.from(ok.probs)).toEqual(Array.from(fixtures[0].probs));
    await expect(embedder.embed(garbage)).rejects.toMatchObject({ code: ERROR_CODES.INVALID_SAMPLE });
  });

  it("an image over the pixel limit is refused as image-too-large", async () => {
    const small = await ImageEmbedder.load({ maxPixels: 10_000 });
    try {
      const [r] = await small.embedManySettled([read(FILES[0])]);
      expect(r).toMatchObject({ ok: false, flag: "image-too-large" });
    } finally {
      await small.close();
    }
  });

  it("a closed embedder rejects, close is idempotent", async () => {
    const e = await ImageEmbedder.load();
    await e.close();
    await e.close();
    await expect(e.embed(read(FILES[0]))).rejects.toMatchObject({ code: ERROR_CODES.INTERNAL });
  });
});

describe("resizeBilinearAlignCorners (TF.js resizeBilinear, alignCorners true)", () => {
  it("keeps the corners and interpolates linearly in between", () => {
    // 2x2 single channel -> 3x3: corners exact, edges midpoints, centre the mean
    const out = resizeBilinearAlignCorners(Uint8Array.from([0, 100, 200, 40]), 2, 2, 1, 3, 3);
    expect(Array.from(out)).toEqual([0, 50, 100, 100, 85, 70, 200, 120, 40]);
  });

  it("is the identity at the same size and handles channels", () => {
    const src = Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (i * 37) % 256);
    expect(Array.from(resizeBilinearAlignCorners(src, 4, 3, 3, 4, 3))).toEqual(Array.from(src));
  });
});

describe("the compact feature vector", () => {
  it("follows IMAGE_EMBED_FEATURE_LAYOUT", () => {
    const L = IMAGE_EMBED_FEATURE_LAYOUT;
    expect(L.probs.offset + L.probs.length).toBe(L.projection.offset);
    expect(L.projection.offset + L.projection.length).toBe(L.hasImage.offset);
    expect(L.hasImage.offset + L.hasImage.length).toBe(IMAGE_EMBED_FEATURE_DIMS);
    expect(IMAGE_EMBED_FEATURE_DIMS).toBe(38);
    const f = imageEmbedFeatures(fixtures[0]);
    expect(f).toHaveLength(38);
    expect(Array.from(f.slice(0, 5))).toEqual(Array.from(fixtures[0].probs));
    expect(f[L.hasImage.offset]).toBe(1);
    const missing = imageEmbedFeaturesOfMissing();
    expect(missing).toHaveLength(38);
    expect(missing.every((v) => v === 0)).toBe(true);
  });

  it("uses a fixed, seeded +-1/sqrt(32) projection (pinned)", () => {
    const m = imageEmbedProjectionMatrix(1280);
    expect(m).toHaveLength(32 * 1280);
    const v = 1 / Math.sqrt(32);
    expect(m.every((x) => Math.abs(Math.abs(x) - v) < 1e-7)).toBe(true);
    const signs = Array.from(m.slice(0, 12))
      .map((x) => (x > 0 ? "+" : "-"))
      .join("");
    expect(signs).toBe("++-+--+++---");
    expect(m.reduce((a, x) => a + (x > 0 ? 1 : 0), 0)).toBe(20402);
    expect(imageEmbedProjectionMatrix(1280)).toBe(m); // cached, not redrawn
  });

  it("gives pinned values for a fixture and a unit-norm-ish projection", () => {
    const f = imageEmbedFeatures(fixtures[0]);
    const want = [-0.37703, 0.00715, 0.0877, -0.02944, 0.08667, 0.23996];
    for (const [i, w] of want.entries()) expect(Math.abs(f[5 + i] - w)).toBeLessThan(2e-3);
    let n = 0;
    for (let i = 5; i < 37; i++) n += f[i] * f[i];
    expect(Math.sqrt(n)).toBeGreaterThan(0.5);
    expect(Math.sqrt(n)).toBeLessThan(1.5);
    expect(() =>
      imageEmbedFeatures({ embedding: new Float32Array(1280), probs: new Float32Array(4) }),
    ).toThrow(MmssrError);
  });
});
