/**
 * The vision-model block of a featurizer (mmssr-hashed/v2 with `vision` in its spec): text in the
 * image from the PP-OCRv4 detector (optionally the recogniser) and the MobileNetV2 class
 * probabilities and embedding projection. Both models ship inside npm packages or this repository;
 * nothing is downloaded. They cost tens of ms of CPU per image (BENCHMARKS.md, "Image models"),
 * which is why the fast default model has no vision block and the richer one does.
 */
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { resolveWorkerScript } from "../onnx-session-pool.js";
import type { ScoreFlag, VisionSpec } from "../scoring-types.js";
import {
  IMAGE_EMBED_FEATURE_DIMS,
  IMAGE_EMBED_MODEL_NAME,
  ImageEmbedder,
  imageEmbedFeatures,
} from "./image-embedder.js";
import { OcrImageError } from "./ocr-image.js";
import { OcrEngine, TEXT_IN_IMAGE_DIMS } from "./text-in-image.js";

/** Length of the vision block a spec asks for (0 without one). */
export function visionDims(spec: VisionSpec | undefined): number {
  if (spec === undefined) return 0;
  return (spec.textInImage?.dims ?? 0) + (spec.embedding?.dims ?? 0);
}

/** Throws unless the spec's dims match the layouts this version computes. */
export function checkVisionSpec(spec: VisionSpec): void {
  if (spec.textInImage !== undefined && spec.textInImage.dims !== TEXT_IN_IMAGE_DIMS)
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `featurizer.vision.textInImage.dims must be ${TEXT_IN_IMAGE_DIMS}, got ${spec.textInImage.dims}`,
    );
  if (spec.embedding !== undefined) {
    if (spec.embedding.model !== IMAGE_EMBED_MODEL_NAME)
      throw new MmssrError(
        ERROR_CODES.MODEL_INVALID,
        `featurizer.vision.embedding.model ${JSON.stringify(spec.embedding.model)} is not known (known: ${IMAGE_EMBED_MODEL_NAME})`,
      );
    if (spec.embedding.dims !== IMAGE_EMBED_FEATURE_DIMS)
      throw new MmssrError(
        ERROR_CODES.MODEL_INVALID,
        `featurizer.vision.embedding.dims must be ${IMAGE_EMBED_FEATURE_DIMS}, got ${spec.embedding.dims}`,
      );
  }
}

export type VisionFeatureResult =
  | { ok: true; vector: Float32Array }
  | { ok: false; flag: ScoreFlag; reason: string };

export interface VisionFeaturizerOptions {
  /** onnxruntime intra-op threads of each vision session (default 1) */
  intraOpNumThreads?: number;
  /** run the models on the calling thread instead of a worker thread (default false) */
  inProcess?: boolean;
}

/** What the featurizer needs of the vision models, wherever they run. */
export interface VisionBlock {
  readonly dims: number;
  features(bytes: Uint8Array): Promise<VisionFeatureResult>;
  close(): Promise<void>;
}

/**
 * Vision blocks kept by image content: a curated stream meets the same image many times (one COCO
 * photo behind dozens of questions), and the models cost ~40 ms of CPU each time.
 */
const CACHE_ENTRIES = 4096;

class CachedVisionBlock implements VisionBlock {
  private readonly cache = new Map<string, Float32Array>();
  constructor(private readonly inner: VisionBlock) {}

  get dims(): number {
    return this.inner.dims;
  }

  async features(bytes: Uint8Array): Promise<VisionFeatureResult> {
    const key = createHash("sha1").update(bytes).digest("base64");
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return { ok: true, vector: hit };
    }
    const r = await this.inner.features(bytes);
    if (r.ok) {
      this.cache.set(key, r.vector);
      if (this.cache.size > CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
    }
    return r;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

type FromWorker =
  | { type: "ready" }
  | { type: "init-error"; message: string }
  | { type: "result"; id: number; ok: true; vector: Float32Array }
  | { type: "result"; id: number; ok: false; flag: ScoreFlag; reason: string }
  | { type: "error"; id: number; message: string };

/** The vision models in a worker thread: their run() and pre/post-processing leave the event loop free. */
class VisionWorkerBlock implements VisionBlock {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (r: VisionFeatureResult) => void; reject: (e: Error) => void }
  >();

  private constructor(
    private readonly worker: Worker,
    readonly dims: number,
  ) {
    worker.on("message", (msg: FromWorker) => {
      if (msg.type !== "result" && msg.type !== "error") return;
      const p = this.pending.get(msg.id);
      if (p === undefined) return;
      this.pending.delete(msg.id);
      if (msg.type === "error")
        p.reject(new MmssrError(ERROR_CODES.INFERENCE, `vision models: ${msg.message}`));
      else
        p.resolve(
          msg.ok ? { ok: true, vector: msg.vector } : { ok: false, flag: msg.flag, reason: msg.reason },
        );
    });
    const fail = (why: string) => {
      for (const p of this.pending.values()) p.reject(new MmssrError(ERROR_CODES.INFERENCE, why));
      this.pending.clear();
    };
    worker.on("error", (err) => fail(`vision worker failed: ${err.message}`));
    worker.on("exit", (code) => fail(`vision worker exited (code ${code})`));
  }

  static async start(spec: VisionSpec, options: VisionFeaturizerOptions): Promise<VisionWorkerBlock> {
    const { script, eval: isEval } = resolveWorkerScript("vision-worker");
    const worker = new Worker(script, {
      eval: isEval,
      workerData: { spec, options: { intraOpNumThreads: options.intraOpNumThreads, inProcess: true } },
    });
    await new Promise<void>((resolve, reject) => {
      worker.once("message", (msg: FromWorker) => {
        if (msg.type === "ready") resolve();
        else if (msg.type === "init-error") reject(new MmssrError(ERROR_CODES.MODEL_INVALID, msg.message));
      });
      worker.once("error", reject);
    });
    return new VisionWorkerBlock(worker, visionDims(spec));
  }

  features(bytes: Uint8Array): Promise<VisionFeatureResult> {
    const id = this.nextId++;
    // a copy: the caller's bytes (often a slice of a larger buffer) stay usable
    const copy = bytes.slice();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: "features", id, bytes: copy }, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage({ type: "close" });
    const timer = setTimeout(() => void this.worker.terminate(), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** The vision block of a spec: in a worker thread unless `inProcess`, cached by image content. */
export async function createVisionBlock(
  spec: VisionSpec,
  options: VisionFeaturizerOptions = {},
): Promise<VisionBlock> {
  checkVisionSpec(spec);
  const inner =
    options.inProcess === true
      ? await VisionFeaturizer.create(spec, options)
      : await VisionWorkerBlock.start(spec, options);
  return new CachedVisionBlock(inner);
}

/** Runs the vision models a spec names, in this thread; sessions are created once. */
export class VisionFeaturizer implements VisionBlock {
  private constructor(
    private readonly spec: VisionSpec,
    private readonly ocr: OcrEngine | undefined,
    private readonly embedder: ImageEmbedder | undefined,
  ) {}

  static async create(spec: VisionSpec, options: VisionFeaturizerOptions = {}): Promise<VisionFeaturizer> {
    checkVisionSpec(spec);
    const threads = options.intraOpNumThreads ?? 1;
    const ocr =
      spec.textInImage === undefined
        ? undefined
        : await OcrEngine.create({
            intraOpNumThreads: threads,
            loadRecognizer: spec.textInImage.recognize === true,
          });
    try {
      const embedder =
        spec.embedding === undefined ? undefined : await ImageEmbedder.load({ intraOpNumThreads: threads });
      return new VisionFeaturizer(spec, ocr, embedder);
    } catch (err) {
      await ocr?.close();
      throw err;
    }
  }

  get dims(): number {
    return visionDims(this.spec);
  }

  /** The vision block of one decoded-able image; a bad image gives its flag, never a rejection. */
  async features(bytes: Uint8Array): Promise<VisionFeatureResult> {
    const vector = new Float32Array(this.dims);
    try {
      let offset = 0;
      if (this.ocr !== undefined && this.spec.textInImage !== undefined) {
        const t = await this.ocr.textInImage(bytes, {
          maxSide: this.spec.textInImage.maxSide,
          recognize: this.spec.textInImage.recognize === true,
        });
        vector.set(t.vector, offset);
        offset += t.vector.length;
      }
      if (this.embedder !== undefined)
        vector.set(imageEmbedFeatures(await this.embedder.embed(bytes)), offset);
      return { ok: true, vector };
    } catch (err) {
      if (err instanceof OcrImageError) return { ok: false, flag: err.flag, reason: err.message };
      if (err instanceof MmssrError && err.code === ERROR_CODES.INVALID_SAMPLE)
        return {
          ok: false,
          flag: /too-large/.test(err.message) ? "image-too-large" : "image-corrupt",
          reason: err.message,
        };
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.ocr?.close(), this.embedder?.close()]);
  }
}
