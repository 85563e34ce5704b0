/**
 * A general image embedding and 5 class probabilities from the MobileNetV2 of nsfwjs@4.4.0,
 * converted to ONNX by models/vision/convert-nsfwjs-mobilenet.ts (see models/vision/README.md).
 *
 *   const embedder = await ImageEmbedder.load();            // models/vision/mobilenet-v2-nsfwjs
 *   const [e] = await embedder.embedMany([jpegBytes]);     // {embedding[1280], probs[5], labels, top}
 *   const f = imageEmbedFeatures(e);                       // 38 floats, IMAGE_EMBED_FEATURE_LAYOUT
 *   await embedder.close();
 *
 * Load: the manifest is validated, the ONNX file's sha256 checked against it, one
 * onnxruntime-node CPU session created (intraOpNumThreads configurable, default 1), its input
 * and output names matched against the manifest. Problems: MmssrError MODEL_INVALID.
 *
 * Preprocessing (what nsfwjs does, core.js `infer`): decode with sharp (failOn "warning", EXIF
 * orientation applied, alpha flattened onto white, sRGB, first page only), then resize the full
 * RGB image to 224 x 224 *ignoring the aspect ratio* with bilinear interpolation,
 * align_corners = true, half_pixel_centers = false: exactly tf.image.resizeBilinear(x, [224, 224],
 * true) of the TF.js CPU backend (`resizeBilinearAlignCorners`, float64 arithmetic, float32
 * result; no antialiasing, as in nsfwjs). The values stay 0..255; the graph divides by 255. Two
 * choices nsfwjs leaves to its caller are ours: EXIF orientation is applied, and transparent
 * pixels are composited on white (the browser's canvas path would give black).
 *
 * Errors per image: embedMany rejects with an MmssrError (INVALID_SAMPLE) naming the image's
 * index and why (corrupt bytes, over the pixel limit); embedManySettled gives one
 * `{ok: false, flag, reason}` per bad image instead and embeds the rest.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { z } from "zod";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { describeError } from "../../util/describe-error.js";
import { packageRoot } from "../../util/package-root.js";
import { decodeToRgb, probeImage } from "../decode-image.js";
import type { ScoreFlag } from "../scoring-types.js";

export const IMAGE_EMBED_MODEL_FORMAT = "mmssr-vision-model/1";
export const IMAGE_EMBED_MODEL_NAME = "mobilenet-v2-nsfwjs";
export const DEFAULT_IMAGE_EMBED_MAX_PIXELS = 40e6;
export const DEFAULT_IMAGE_EMBED_BATCH = 16;

/** models/vision/mobilenet-v2-nsfwjs under the package root (from src/ or dist/ alike). */
export function defaultImageEmbedModelDir(): string {
  return join(packageRoot(), "models", "vision", IMAGE_EMBED_MODEL_NAME);
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits");
const posInt = z.number().int().positive();

/** The fields of manifest.json the runtime relies on (others are informative and pass through). */
export const imageEmbedManifestSchema = z
  .object({
    format: z.literal(IMAGE_EMBED_MODEL_FORMAT),
    id: z.string().min(1),
    version: z.string().min(1),
    onnx: z.object({
      file: z
        .string()
        .min(1)
        .refine(
          (p) => !p.startsWith("/") && !p.split(/[\\/]/).includes(".."),
          "a file inside the model folder",
        ),
      sha256: sha256Hex,
    }),
    input: z.object({
      name: z.string().min(1),
      dtype: z.literal("float32"),
      layout: z.literal("NHWC"),
      shape: z.tuple([z.literal("batch"), posInt, posInt, z.literal(3)]),
      range: z.tuple([z.literal(0), z.literal(255)]),
    }),
    outputs: z.object({
      embedding: z.object({ name: z.string().min(1), dims: posInt }),
      probs: z.object({ name: z.string().min(1), dims: posInt }),
    }),
    labels: z.array(z.string().min(1)).min(1),
  })
  .superRefine((m, ctx) => {
    if (m.labels.length !== m.outputs.probs.dims)
      ctx.addIssue({
        code: "custom",
        path: ["labels"],
        message: `${m.labels.length} labels for ${m.outputs.probs.dims} probabilities`,
      });
    if (m.input.shape[1] !== m.input.shape[2])
      ctx.addIssue({ code: "custom", path: ["input", "shape"], message: "the input must be square" });
  });

export type ImageEmbedManifest = z.infer<typeof imageEmbedManifestSchema>;

export interface ImageEmbedderOptions {
  /** model folder (default defaultImageEmbedModelDir()) */
  modelDir?: string;
  /** onnxruntime intra-op threads (default 1; 0 = onnxruntime chooses) */
  intraOpNumThreads?: number;
  /** images per session run in embedMany (default 16) */
  maxBatch?: number;
  /** largest accepted width x height (default 40e6) */
  maxPixels?: number;
  /** sharp's failOn for the decode (default "warning") */
  failOn?: "none" | "truncated" | "error" | "warning";
}

export interface ImageEmbedding {
  /** [embeddingDims] (1280): the average-pooled last MobileNetV2 feature map, values 0..6 */
  embedding: Float32Array;
  /** [labels.length] (5): softmax probabilities in `labels` order */
  probs: Float32Array;
  labels: readonly string[];
  /** the most probable label */
  top: { label: string; probability: number };
}

export type ImageEmbedResult =
  | ({ ok: true } & ImageEmbedding)
  | { ok: false; flag: ScoreFlag; reason: string };

type PreprocessResult = { ok: true; pixels: Float32Array } | { ok: false; flag: ScoreFlag; reason: string };

/**
 * tf.image.resizeBilinear(images, [outH, outW], alignCorners = true) of the TF.js CPU backend
 * (halfPixelCenters false) on one HWC image, 8-bit in, float32 out (same value range).
 */
export function resizeBilinearAlignCorners(
  src: Uint8Array,
  inH: number,
  inW: number,
  channels: number,
  outH: number,
  outW: number,
  out: Float32Array = new Float32Array(outH * outW * channels),
): Float32Array {
  if (src.length !== inH * inW * channels)
    throw new MmssrError(
      ERROR_CODES.INTERNAL,
      `resize: ${src.length} bytes for ${inW} x ${inH} x ${channels}`,
    );
  const effInH = outH > 1 ? inH - 1 : inH;
  const effInW = outW > 1 ? inW - 1 : inW;
  const effOutH = outH > 1 ? outH - 1 : outH;
  const effOutW = outW > 1 ? outW - 1 : outW;
  const rowRatio = effInH / effOutH;
  const colRatio = effInW / effOutW;
  const rowStride = inW * channels;
  // The column taps are the same on every row: computed once (same values as TF.js per pixel).
  const left = new Int32Array(outW);
  const right = new Int32Array(outW);
  const colFracs = new Float64Array(outW);
  for (let c = 0; c < outW; c++) {
    const fc = colRatio * c;
    const c0 = Math.max(0, Math.floor(fc));
    left[c] = c0 * channels;
    right[c] = Math.min(inW - 1, Math.ceil(fc)) * channels;
    colFracs[c] = fc - c0;
  }
  let o = 0;
  for (let r = 0; r < outH; r++) {
    const fr = rowRatio * r;
    const r0 = Math.max(0, Math.floor(fr));
    const rowFrac = fr - r0;
    const r1 = Math.min(inH - 1, Math.ceil(fr));
    const top = r0 * rowStride;
    const bot = r1 * rowStride;
    for (let c = 0; c < outW; c++) {
      const colFrac = colFracs[c];
      const tl = top + left[c];
      const tr = top + right[c];
      const bl = bot + left[c];
      const br = bot + right[c];
      for (let d = 0; d < channels; d++) {
        const a = src[tl + d];
        const e = src[bl + d];
        const t = a + (src[tr + d] - a) * colFrac;
        const b = e + (src[br + d] - e) * colFrac;
        out[o++] = t + (b - t) * rowFrac;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The compact feature vector

export const IMAGE_EMBED_PROJECTION_DIMS = 32;
/** seed of the projection matrix ("mmsr" in ASCII) */
export const IMAGE_EMBED_PROJECTION_SEED = 0x6d6d7372;

/**
 * Layout of imageEmbedFeatures (IMAGE_EMBED_FEATURE_DIMS = 38 floats):
 *
 *   offset  n   feature                                                       range
 *   0       5   class probabilities in label order: drawing, hentai,         0..1, sum 1
 *               neutral, porn, sexy
 *   5       32  random projection of the L2-normalised embedding: y = R u,   about -1..1
 *               R [32 x 1280] with entries +-1/sqrt(32) drawn by mulberry32   (||y|| ~ 1)
 *               from IMAGE_EMBED_PROJECTION_SEED (Achlioptas 2003; dot
 *               products and cosines of embeddings are kept approximately)
 *   37      1   has-image flag: 1 (imageEmbedFeaturesOfMissing gives 0)      0 or 1
 */
export const IMAGE_EMBED_FEATURE_LAYOUT = {
  probs: { offset: 0, length: 5 },
  projection: { offset: 5, length: IMAGE_EMBED_PROJECTION_DIMS },
  hasImage: { offset: 5 + IMAGE_EMBED_PROJECTION_DIMS, length: 1 },
} as const;
export const IMAGE_EMBED_FEATURE_DIMS = 5 + IMAGE_EMBED_PROJECTION_DIMS + 1;

/** mulberry32: a 32-bit PRNG whose output depends only on integer arithmetic (same on every platform). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const projectionCache = new Map<string, Float32Array>();

/**
 * The fixed projection matrix [rows x cols], row-major: entry (k, i) is +1/sqrt(rows) when bit 31
 * of the (k * cols + i)-th mulberry32 output is 0, else -1/sqrt(rows).
 */
export function imageEmbedProjectionMatrix(
  cols: number,
  rows: number = IMAGE_EMBED_PROJECTION_DIMS,
  seed: number = IMAGE_EMBED_PROJECTION_SEED,
): Float32Array {
  const key = `${cols}x${rows}@${seed}`;
  const have = projectionCache.get(key);
  if (have) return have;
  const next = mulberry32(seed);
  const v = 1 / Math.sqrt(rows);
  const m = new Float32Array(rows * cols);
  for (let j = 0; j < m.length; j++) m[j] = next() >>> 31 ? -v : v;
  projectionCache.set(key, m);
  return m;
}

/** y = R (e / ||e||), float64 sums; an all-zero embedding gives zeros. */
export function projectEmbedding(
  embedding: Float32Array,
  rows: number = IMAGE_EMBED_PROJECTION_DIMS,
): Float32Array {
  const cols = embedding.length;
  const r = imageEmbedProjectionMatrix(cols, rows);
  let norm = 0;
  for (let i = 0; i < cols; i++) norm += embedding[i] * embedding[i];
  norm = Math.sqrt(norm);
  const out = new Float32Array(rows);
  if (!(norm > 0)) return out;
  for (let k = 0; k < rows; k++) {
    let s = 0;
    const row = k * cols;
    for (let i = 0; i < cols; i++) s += r[row + i] * embedding[i];
    out[k] = s / norm;
  }
  return out;
}

/** The compact feature vector of IMAGE_EMBED_FEATURE_LAYOUT. */
export function imageEmbedFeatures(e: Pick<ImageEmbedding, "embedding" | "probs">): Float32Array {
  const L = IMAGE_EMBED_FEATURE_LAYOUT;
  if (e.probs.length !== L.probs.length)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `imageEmbedFeatures: ${e.probs.length} probabilities, the layout has ${L.probs.length}`,
    );
  const out = new Float32Array(IMAGE_EMBED_FEATURE_DIMS);
  out.set(e.probs, L.probs.offset);
  out.set(projectEmbedding(e.embedding, L.projection.length), L.projection.offset);
  out[L.hasImage.offset] = 1;
  return out;
}

/** The feature vector of a sample without a (usable) image: all zeros, has-image flag 0. */
export function imageEmbedFeaturesOfMissing(): Float32Array {
  return new Float32Array(IMAGE_EMBED_FEATURE_DIMS);
}

// ---------------------------------------------------------------------------------------------
// The embedder

function modelError(dir: string, message: string, cause?: unknown): MmssrError {
  return new MmssrError(ERROR_CODES.MODEL_INVALID, `${dir}: ${message}`, { cause });
}

async function loadManifest(dir: string): Promise<ImageEmbedManifest> {
  const file = join(dir, "manifest.json");
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    throw modelError(dir, `cannot read manifest.json: ${describeError(err)}`, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw modelError(dir, `manifest.json is not JSON: ${describeError(err)}`, err);
  }
  const parsed = imageEmbedManifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`);
    throw modelError(dir, `manifest.json: ${issues.join("; ")}`);
  }
  return parsed.data;
}

export class ImageEmbedder {
  readonly manifest: ImageEmbedManifest;
  readonly modelDir: string;
  readonly labels: readonly string[];
  readonly inputSize: number;
  readonly embeddingDims: number;
  readonly maxBatch: number;
  private session: ort.InferenceSession | undefined;
  private readonly maxPixels: number;
  private readonly failOn: NonNullable<ImageEmbedderOptions["failOn"]>;
  /** session runs one at a time, in call order */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    manifest: ImageEmbedManifest,
    modelDir: string,
    session: ort.InferenceSession,
    options: ImageEmbedderOptions,
  ) {
    this.manifest = manifest;
    this.modelDir = modelDir;
    this.session = session;
    this.labels = Object.freeze([...manifest.labels]);
    this.inputSize = manifest.input.shape[1];
    this.embeddingDims = manifest.outputs.embedding.dims;
    this.maxBatch = options.maxBatch ?? DEFAULT_IMAGE_EMBED_BATCH;
    this.maxPixels = options.maxPixels ?? DEFAULT_IMAGE_EMBED_MAX_PIXELS;
    this.failOn = options.failOn ?? "warning";
  }

  /** Loads and checks the model folder and creates the session (once). */
  static async load(options: ImageEmbedderOptions = {}): Promise<ImageEmbedder> {
    const dir = options.modelDir ?? defaultImageEmbedModelDir();
    const threads = options.intraOpNumThreads ?? 1;
    if (!Number.isInteger(threads) || threads < 0)
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `intraOpNumThreads must be an integer >= 0, got ${threads}`,
      );
    if (options.maxBatch !== undefined && (!Number.isInteger(options.maxBatch) || options.maxBatch < 1))
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `maxBatch must be a positive integer, got ${options.maxBatch}`,
      );
    if (options.maxPixels !== undefined && !(options.maxPixels > 0))
      throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `maxPixels must be > 0, got ${options.maxPixels}`);
    const manifest = await loadManifest(dir);
    const onnxPath = join(dir, manifest.onnx.file);
    let bytes: Buffer;
    try {
      bytes = await readFile(onnxPath);
    } catch (err) {
      throw modelError(dir, `cannot read ${manifest.onnx.file}: ${describeError(err)}`, err);
    }
    const sha = createHash("sha256").update(bytes).digest("hex");
    if (sha !== manifest.onnx.sha256)
      throw modelError(
        dir,
        `${manifest.onnx.file} has sha256 ${sha}, manifest.json says ${manifest.onnx.sha256} (a changed or truncated file)`,
      );
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: ["cpu"],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        logSeverityLevel: 3,
      });
    } catch (err) {
      throw modelError(dir, `onnxruntime cannot load ${manifest.onnx.file}: ${describeError(err)}`, err);
    }
    const want = [manifest.outputs.embedding.name, manifest.outputs.probs.name];
    const problems: string[] = [];
    if (!session.inputNames.includes(manifest.input.name))
      problems.push(
        `input "${manifest.input.name}" not in the graph's inputs [${session.inputNames.join(", ")}]`,
      );
    for (const o of want)
      if (!session.outputNames.includes(o))
        problems.push(`output "${o}" not in the graph's outputs [${session.outputNames.join(", ")}]`);
    if (problems.length > 0) {
      await session.release();
      throw modelError(dir, problems.join("; "));
    }
    return new ImageEmbedder(manifest, dir, session, options);
  }

  /**
   * Decodes and resizes one image as described at the top: [size * size * 3] float32 RGB 0..255,
   * HWC, ready for the model input. Failures resolve to a flag and a reason.
   */
  async preprocess(image: Uint8Array): Promise<PreprocessResult> {
    const size = this.inputSize;
    const probe = await probeImage(image, this.maxPixels, this.failOn);
    if (!probe.ok) return probe;
    const decoded = await decodeToRgb(image, { maxPixels: this.maxPixels, failOn: this.failOn });
    if (!decoded.ok) return decoded;
    const { data, width, height, channels } = decoded;
    if (channels !== 3 || data.length !== width * height * 3)
      return {
        ok: false,
        flag: "image-corrupt",
        reason: `decoder gave ${width} x ${height} x ${channels}, expected 3 channels`,
      };
    return { ok: true, pixels: resizeBilinearAlignCorners(data, height, width, 3, size, size) };
  }

  /**
   * Runs the model on n preprocessed images ([n * size * size * 3], NHWC, RGB 0..255):
   * embedding [n * embeddingDims] and probs [n * labels.length], row-major.
   */
  async infer(pixels: Float32Array, n: number): Promise<{ embedding: Float32Array; probs: Float32Array }> {
    const size = this.inputSize;
    if (!Number.isInteger(n) || n < 1 || pixels.length !== n * size * size * 3)
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `infer: ${pixels.length} values for ${n} images of ${size} x ${size} x 3`,
      );
    const run = this.queue.then(async () => {
      const session = this.session;
      if (!session) throw new MmssrError(ERROR_CODES.INTERNAL, "ImageEmbedder: used after close()");
      const m = this.manifest;
      let out: ort.InferenceSession.OnnxValueMapType;
      try {
        out = await session.run({ [m.input.name]: new ort.Tensor("float32", pixels, [n, size, size, 3]) });
      } catch (err) {
        throw new MmssrError(
          ERROR_CODES.INFERENCE,
          `image embedder: onnxruntime run failed: ${describeError(err)}`,
          {
            cause: err,
          },
        );
      }
      const embedding = out[m.outputs.embedding.name]?.data;
      const probs = out[m.outputs.probs.name]?.data;
      if (
        !(embedding instanceof Float32Array) ||
        !(probs instanceof Float32Array) ||
        embedding.length !== n * this.embeddingDims ||
        probs.length !== n * this.labels.length
      )
        throw new MmssrError(
          ERROR_CODES.INFERENCE,
          "image embedder: the model's outputs have unexpected shapes",
        );
      return { embedding, probs };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private toEmbedding(embedding: Float32Array, probs: Float32Array, i: number): ImageEmbedding {
    const d = this.embeddingDims;
    const k = this.labels.length;
    const p = probs.slice(i * k, (i + 1) * k);
    let best = 0;
    for (let j = 1; j < k; j++) if (p[j] > p[best]) best = j;
    return {
      embedding: embedding.slice(i * d, (i + 1) * d),
      probs: p,
      labels: this.labels,
      top: { label: this.labels[best], probability: p[best] },
    };
  }

  /** Embeds the images, one result per image (failures as flags), maxBatch images per run. */
  async embedManySettled(images: readonly Uint8Array[]): Promise<ImageEmbedResult[]> {
    const results: ImageEmbedResult[] = new Array(images.length);
    const per = this.inputSize * this.inputSize * 3;
    for (let start = 0; start < images.length; start += this.maxBatch) {
      const chunk = images.slice(start, start + this.maxBatch);
      const pre = await Promise.all(chunk.map((img) => this.preprocess(img)));
      const good: number[] = [];
      pre.forEach((p, j) => {
        if (p.ok) good.push(j);
        else results[start + j] = p;
      });
      if (good.length === 0) continue;
      const batch = new Float32Array(good.length * per);
      good.forEach((j, b) => {
        const p = pre[j];
        if (p.ok) batch.set(p.pixels, b * per);
      });
      const { embedding, probs } = await this.infer(batch, good.length);
      good.forEach((j, b) => {
        results[start + j] = { ok: true, ...this.toEmbedding(embedding, probs, b) };
      });
    }
    return results;
  }

  /** Embeds the images; rejects with an MmssrError (INVALID_SAMPLE) naming the first bad image. */
  async embedMany(images: readonly Uint8Array[]): Promise<ImageEmbedding[]> {
    const settled = await this.embedManySettled(images);
    return settled.map((r, i) => {
      if (!r.ok)
        throw new MmssrError(
          ERROR_CODES.INVALID_SAMPLE,
          `image ${i} of ${images.length}: ${r.flag}: ${r.reason}`,
        );
      const { ok: _ok, ...e } = r;
      return e;
    });
  }

  /** One image; rejects with an MmssrError (INVALID_SAMPLE) when it cannot be used. */
  async embed(image: Uint8Array): Promise<ImageEmbedding> {
    const [e] = await this.embedMany([image]);
    return e;
  }

  /** Releases the session; later calls reject. Idempotent. */
  async close(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    if (!session) return;
    await this.queue;
    await session.release();
  }
}
