/**
 * Contracts of the scoring stage (issue 3). A Scorer turns validated samples into the 14
 * capability scores and the style tags of MMSSR.md; an ONNX model does it in one forward pass
 * over a feature vector that the TypeScript featurizer fills as the model's manifest says.
 */
import type { Sample } from "../domain/sample.js";
import type { StyleName } from "../domain/taxonomy.js";

/** Why a sample was scored with less than it carried. Carried into the scored output. */
export type ScoreFlag =
  | "no-image" // the sample names no image
  | "image-missing" // a path that does not exist
  | "image-unreadable" // a file or URL that could not be read (I/O, HTTP status, timeout)
  | "image-corrupt" // bytes that do not decode as an image
  | "image-too-large" // over the byte or pixel limit
  | "image-refused" // a reference the loader may not read: outside the image base, host not allowed, private address
  | "text-truncated"; // conversation text cut at the featurizer's limit

export interface SampleScore {
  /** length 14, CAPABILITIES order, each in 0..5; NaN = missing */
  scores: Float32Array;
  /** style names in STYLES order whose probability passed the model's threshold */
  styles: StyleName[];
  /** length 9, STYLES order, probabilities in 0..1 (rule teacher: 0 or 1) */
  styleProbabilities: Float32Array;
  flags: ScoreFlag[];
}

export interface Scorer {
  /** model id and version, e.g. "mmssr-lite@1.0.0" or "rule-teacher@1" */
  readonly id: string;
  /** Scores a batch; result k belongs to sample k. Never rejects for one bad sample. */
  score(samples: readonly Sample[]): Promise<SampleScore[]>;
  close(): Promise<void>;
}

/** The featurizer of manifest.json: how a sample becomes the model's float32 input row. */
export interface FeatureSpec {
  /** v2: v1 plus answer-to-options form features and, optionally, vision-model image features */
  kind: "mmssr-hashed/v1" | "mmssr-hashed/v2";
  /** total length of the feature vector; equals the ONNX input's second dimension */
  dims: number;
  text: {
    /** hashed bag of words (uni+bigrams) for the human turns, then for the gpt turns */
    questionDims: number;
    answerDims: number;
    /** lowercase, then split on non-letters/digits (Unicode-aware) */
    ngrams: readonly number[];
    /** characters of the laid-out conversation read at most (longer: flag text-truncated) */
    maxChars: number;
    /** seed of the 32-bit hash (murmur3-style) of each n-gram */
    hashSeed: number;
  };
  /** hashed image_source token */
  sourceDims: number;
  /** dense form features of the answer and conversation (lengths, counts of options, boxes...) */
  formDims: number;
  image: {
    /** side of the square the image is resized to before the descriptors are taken */
    size: number;
    /** descriptor dims: colour histogram, luminance grid, edge energy, aspect, has-image flag */
    dims: number;
  };
  /** v2 only: features from vision models, after the image block (absent: none, the fast default) */
  vision?: VisionSpec;
}

/** Which vision models fill the vision block, in this order. */
export interface VisionSpec {
  /** PP-OCRv4 text detection (and recognition when `recognize`) at `maxSide`; dims 14 */
  textInImage?: { maxSide: number; recognize?: boolean; dims: number };
  /** MobileNetV2 class probabilities + embedding projection; dims 38 */
  embedding?: { model: string; dims: number };
}
