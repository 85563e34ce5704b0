import type { Sample } from "../domain/sample.js";
import { yieldIfBusy } from "../util/yield-if-busy.js";
import { layoutConversation } from "./conversation-text.js";
import { imageDescriptor } from "./image-features.js";
import type { ImageLoader } from "./image-source.js";
import { hasImageReference } from "./rule-teacher.js";
import type { FeatureSpec, ScoreFlag } from "./scoring-types.js";
import { featureLayout, writeTextFeatures } from "./text-features.js";
import {
  createVisionBlock,
  type VisionBlock,
  type VisionFeaturizerOptions,
} from "./vision/vision-features.js";

/**
 * The TypeScript half of a model: turns samples into the float32 rows its manifest describes
 * (kind mmssr-hashed/v1). Text blocks come from the conversation as the released scorer lays it
 * out; the image block from the decoded image, or zeros with a flag saying why there is none.
 */
export interface SampleFeaturizer {
  readonly spec: FeatureSpec;
  /** One row per sample in a [n x spec.dims] matrix, and each sample's flags. Never rejects for one bad sample. */
  featurize(samples: readonly Sample[]): Promise<{ features: Float32Array; flags: ScoreFlag[][] }>;
  /**
   * The same from samples whose images are already loaded (loadSamples): what a scoring worker
   * thread runs, so that decoding and featurizing happen next to inference, off the main thread.
   */
  featurizeLoaded(
    items: readonly LoadedSample[],
    /** write the rows here (zeroed first) instead of a fresh matrix: at least n * dims long */
    into?: Float32Array,
  ): Promise<{ features: Float32Array; flags: ScoreFlag[][] }>;
  /** Releases the vision models' sessions, if the spec has any. */
  close(): Promise<void>;
}

/**
 * What the featurizer reads of a sample, with its image already loaded: plain data, so that it
 * crosses to a worker thread by structured clone (image bytes transferred).
 */
export interface LoadedSample {
  conversations: Sample["conversations"];
  image_source: string;
  image: ImageInput;
}

/** A sample's image as the featurizer gets it: none named (or no loader), a load failure, or bytes. */
export type ImageInput =
  | { kind: "none" }
  | { kind: "failed"; flag: ScoreFlag }
  | { kind: "bytes"; bytes: Uint8Array };

export interface SampleFeaturizerOptions {
  /** Loads images; without one every sample is featurized text-only (flag "no-image" when it names one). */
  imageLoader?: ImageLoader;
  /** Options of the vision models (specs with a `vision` block only). */
  vision?: VisionFeaturizerOptions;
}

/** Images in flight per featurize call: enough to keep sharp's 4 threads and the disk busy. */
const IMAGE_WINDOW = 16;

/** Why a sample without image bytes is scored text-only. */
function imagelessFlag(image: Exclude<ImageInput, { kind: "bytes" }>): ScoreFlag {
  return image.kind === "none" ? "no-image" : image.flag;
}

/** One sample's image, loaded (never rejects). Without a loader every image counts as not named. */
export async function loadImageInput(sample: Sample, imageLoader?: ImageLoader): Promise<ImageInput> {
  if (!imageLoader || !hasImageReference(sample)) return { kind: "none" };
  const loaded = await imageLoader.load(sample);
  return loaded.ok ? { kind: "bytes", bytes: loaded.bytes } : { kind: "failed", flag: loaded.flag };
}

/**
 * The samples with their images loaded, a window at a time (reads and fetches are I/O; a
 * thousand completions in one loop turn would still hold the loop, hence the yield check).
 */
export async function loadSamples(
  samples: readonly Sample[],
  imageLoader?: ImageLoader,
): Promise<LoadedSample[]> {
  const out: LoadedSample[] = new Array(samples.length);
  const item = (s: Sample, image: ImageInput): LoadedSample => ({
    conversations: s.conversations,
    image_source: s.image_source,
    image,
  });
  if (!imageLoader) {
    for (let k = 0; k < samples.length; k++) out[k] = item(samples[k], { kind: "none" });
    return out;
  }
  for (let w = 0; w < samples.length; w += IMAGE_WINDOW) {
    await yieldIfBusy();
    const end = Math.min(samples.length, w + IMAGE_WINDOW);
    const images = await Promise.all(samples.slice(w, end).map((s) => loadImageInput(s, imageLoader)));
    for (let k = 0; k < images.length; k++) out[w + k] = item(samples[w + k], images[k]);
  }
  return out;
}

export function createSampleFeaturizer(
  spec: FeatureSpec,
  options: SampleFeaturizerOptions = {},
): SampleFeaturizer {
  if (spec.kind !== "mmssr-hashed/v1" && spec.kind !== "mmssr-hashed/v2")
    throw new Error(`featurizer kind ${JSON.stringify(spec.kind)} is not known to this version`);
  const layout = featureLayout(spec);
  if (layout.vision[1] !== spec.dims)
    throw new Error(`featurizer dims ${spec.dims} != the sum of its blocks (${layout.vision[1]})`);
  const { imageLoader } = options;
  // Vision sessions are created on the first image, not for text-only runs.
  const visionSpec = spec.vision;
  let vision: Promise<VisionBlock> | undefined;
  const visionOf = (): Promise<VisionBlock> | undefined => {
    if (visionSpec === undefined) return undefined;
    vision ??= createVisionBlock(visionSpec, options.vision);
    return vision;
  };

  async function imageBlock(
    image: ImageInput,
    out: Float32Array,
    row: number,
    flags: ScoreFlag[],
  ): Promise<boolean> {
    if (image.kind !== "bytes") {
      flags.push(imagelessFlag(image));
      return false;
    }
    const desc = await imageDescriptor(image.bytes, spec.image);
    if (!desc.ok) {
      flags.push(desc.flag);
      return false;
    }
    out.set(desc.features, row * spec.dims + layout.image[0]);
    const models = visionOf();
    if (models !== undefined) {
      const v = await (await models).features(image.bytes);
      if (!v.ok) {
        // The image decoded for the descriptor but not for a model: score it as image-less.
        out.fill(0, row * spec.dims + layout.image[0], row * spec.dims + layout.vision[1]);
        flags.push(v.flag);
        return false;
      }
      out.set(v.vector, row * spec.dims + layout.vision[0]);
    }
    return true;
  }

  const featurizer: SampleFeaturizer = {
    spec,
    async featurize(samples) {
      return featurizer.featurizeLoaded(await loadSamples(samples, imageLoader));
    },
    async featurizeLoaded(items, into) {
      const n = items.length;
      let features: Float32Array;
      if (into === undefined) features = new Float32Array(n * spec.dims);
      else {
        if (into.length < n * spec.dims)
          throw new Error(`featurizeLoaded: the buffer holds ${into.length} values, ${n * spec.dims} needed`);
        features = into.subarray(0, n * spec.dims);
        features.fill(0);
      }
      const flags: ScoreFlag[][] = items.map(() => []);
      // Images decode off this thread (sharp's thread pool), a window at a time: a thousand
      // completions landing in one loop turn would run their descriptor code back to back and
      // hold the loop for hundreds of ms (measured at batch 1024).
      const hasImage: boolean[] = new Array(n).fill(false);
      for (let w = 0; w < n; w += IMAGE_WINDOW) {
        const end = Math.min(n, w + IMAGE_WINDOW);
        const window = items.slice(w, end);
        if (!window.some((it) => it.image.kind === "bytes")) {
          // text-only: no decode to wait for, only the flag saying why
          for (let k = w; k < end; k++) {
            const image = items[k].image;
            if (image.kind !== "bytes") flags[k].push(imagelessFlag(image));
          }
          continue;
        }
        await yieldIfBusy();
        const done = await Promise.all(
          window.map((it, k) => imageBlock(it.image, features, w + k, flags[w + k])),
        );
        for (let k = 0; k < done.length; k++) hasImage[w + k] = done[k];
      }
      // Text: hand the event loop back whenever it has not turned for a few ms, so that
      // featurizing never holds up heartbeats, timers or metric scrapes for long.
      for (let row = 0; row < n; row++) {
        if (row % 8 === 0) await yieldIfBusy();
        const item = items[row];
        const { questions, answers } = layoutConversation(item);
        const truncated = writeTextFeatures(
          { questions, answers, imageSource: item.image_source, hasImage: hasImage[row] },
          spec,
          features,
          row,
        );
        if (truncated) flags[row].push("text-truncated");
      }
      return { features, flags };
    },
    async close() {
      const models = vision;
      vision = undefined;
      if (models !== undefined) await (await models).close();
    },
  };
  return featurizer;
}

/** The featurizer of mmssr-lite: 2048 + 2048 hashed text dims, 64 source, 32 form, 39 image. */
export const DEFAULT_FEATURE_SPEC: FeatureSpec = {
  kind: "mmssr-hashed/v2",
  dims: 2048 + 2048 + 64 + 32 + 39,
  text: { questionDims: 2048, answerDims: 2048, ngrams: [1, 2], maxChars: 8000, hashSeed: 17 },
  sourceDims: 64,
  formDims: 32,
  image: { size: 64, dims: 39 },
};

/**
 * The featurizer of mmssr-vision: mmssr-lite's, plus text in the image (PP-OCRv4 detection at
 * 320 px, the cheapest size that still finds text in most images that have it) and MobileNetV2's
 * class probabilities and embedding projection. About 40 ms of CPU per image more (BENCHMARKS.md).
 */
export const VISION_FEATURE_SPEC: FeatureSpec = {
  ...DEFAULT_FEATURE_SPEC,
  dims: DEFAULT_FEATURE_SPEC.dims + 14 + 38,
  vision: {
    textInImage: { maxSide: 320, dims: 14 },
    embedding: { model: "mobilenet-v2-nsfwjs", dims: 38 },
  },
};
