/**
 * PP-OCRv4 text recognition (SVTR-LCNet + CTC): text boxes on an image -> text and confidence.
 *
 * Pre-processing, as PaddleOCR's predict_rec.py (rec_image_shape 3,48,320):
 *   - each box is cut from the original pixels (sharp extract); a box at least 1.5 x taller than
 *     wide is turned 90 degrees anticlockwise (np.rot90, as PaddleOCR's get_rotate_crop_image);
 *   - resized to height 48 with its aspect kept, width ceil(48 x w / h) capped at `maxWidth`
 *     (default 640; PaddleOCR has no cap), bilinear;
 *   - BGR, (v / 255 - 0.5) / 0.5, CHW; right-padded with 0 to the batch width;
 *   - crops sorted by aspect ratio and run `batchSize` (6) at a time; the batch width is the widest
 *     crop of the batch, at least 320, rounded up to a multiple of 8 (the model's stride).
 * Decoding: ctc-decode.ts (greedy, blank 0, dictionary, space last).
 */

import type * as ort from "onnxruntime-node";
import sharp from "sharp";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { type CtcCharset, type CtcText, ctcGreedyDecode, loadCharset } from "./ctc-decode.js";
import type { TextBox } from "./db-postprocess.js";
import type { RgbImage } from "./ocr-image.js";
import { createOcrSession, type OcrSessionOptions, runOcrSession } from "./ocr-session.js";

export const REC_HEIGHT = 48;
export const REC_MIN_WIDTH = 320;
export const REC_STRIDE = 8;
export const DEFAULT_REC_MAX_WIDTH = 640;
export const DEFAULT_REC_BATCH = 6;
/** boxes this much taller than wide are read rotated (PaddleOCR: h / w >= 1.5) */
export const REC_VERTICAL_RATIO = 1.5;

export interface TextRecognizeOptions {
  /** widest crop after resizing to height 48, a multiple of 8 in 320..4096. Default 640. */
  maxWidth?: number;
  /** crops per session run. Default 6. */
  batchSize?: number;
}

export interface RecognizedText extends CtcText {
  /** the box read, as given */
  box: TextBox;
}

type Region = Pick<TextBox, "x" | "y" | "width" | "height">;

interface Crop {
  index: number;
  /** resized crop, RGB, REC_HEIGHT rows */
  data: Uint8Array;
  width: number;
}

function recTable(): Float32Array {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = (v / 255 - 0.5) / 0.5;
  return t;
}

const LUT = recTable();

function checkOptions(options: TextRecognizeOptions): { maxWidth: number; batchSize: number } {
  const maxWidth = options.maxWidth ?? DEFAULT_REC_MAX_WIDTH;
  const batchSize = options.batchSize ?? DEFAULT_REC_BATCH;
  if (
    !Number.isInteger(maxWidth) ||
    maxWidth < REC_MIN_WIDTH ||
    maxWidth > 4096 ||
    maxWidth % REC_STRIDE !== 0
  )
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `text recognition: maxWidth must be a multiple of ${REC_STRIDE} in ${REC_MIN_WIDTH}..4096, got ${maxWidth}`,
    );
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 256)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `text recognition: batchSize must be an integer in 1..256, got ${batchSize}`,
    );
  return { maxWidth, batchSize };
}

/** Crop width after resizing a w x h region (turned when vertical) to height 48. Exported for tests. */
export function recognizerCropWidth(width: number, height: number, maxWidth: number): number {
  const vertical = height >= REC_VERTICAL_RATIO * width;
  const w = vertical ? height : width;
  const h = vertical ? width : height;
  return Math.min(maxWidth, Math.max(1, Math.ceil((REC_HEIGHT * w) / h)));
}

async function cropOf(image: RgbImage, region: Region, index: number, maxWidth: number): Promise<Crop> {
  const left = Math.max(0, Math.min(image.width - 1, Math.floor(region.x)));
  const top = Math.max(0, Math.min(image.height - 1, Math.floor(region.y)));
  const width = Math.max(1, Math.min(image.width - left, Math.round(region.width)));
  const height = Math.max(1, Math.min(image.height - top, Math.round(region.height)));
  const vertical = height >= REC_VERTICAL_RATIO * width;
  const outW = recognizerCropWidth(width, height, maxWidth);
  let pipeline = sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: 3 },
  }).extract({
    left,
    top,
    width,
    height,
  });
  if (vertical) {
    // Rotate first, into its own buffer, so the resize sees the turned crop.
    const turned = await pipeline.rotate(270).raw().toBuffer({ resolveWithObject: true });
    pipeline = sharp(turned.data, {
      raw: { width: turned.info.width, height: turned.info.height, channels: 3 },
    });
  }
  const { data, info } = await pipeline
    .resize(outW, REC_HEIGHT, { fit: "fill", kernel: "linear" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.width !== outW || info.height !== REC_HEIGHT || info.channels !== 3)
    throw new MmssrError(
      ERROR_CODES.INTERNAL,
      `text recognition crop came out ${info.width} x ${info.height} x ${info.channels}, expected ${outW} x ${REC_HEIGHT} x 3`,
    );
  return { index, data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: outW };
}

/** The [n, 3, 48, batchWidth] tensor data of `crops` (BGR, normalised, zero padded). Exported for tests. */
export function recognizerTensor(
  crops: readonly Pick<Crop, "data" | "width">[],
  batchWidth: number,
): Float32Array {
  const plane = REC_HEIGHT * batchWidth;
  const out = new Float32Array(crops.length * 3 * plane);
  for (let b = 0; b < crops.length; b++) {
    const { data, width } = crops[b];
    const base = b * 3 * plane;
    for (let y = 0; y < REC_HEIGHT; y++) {
      for (let x = 0; x < width; x++) {
        const s = 3 * (y * width + x);
        const d = base + y * batchWidth + x;
        out[d] = LUT[data[s + 2]];
        out[d + plane] = LUT[data[s + 1]];
        out[d + 2 * plane] = LUT[data[s]];
      }
    }
  }
  return out;
}

export class TextRecognizer {
  private closed = false;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly charset: CtcCharset,
  ) {}

  /**
   * Loads the recogniser and its dictionary; a file missing -> MmssrError (MODEL_INVALID) naming
   * the path; a dictionary whose size does not fit the model is found on the first run.
   */
  static async create(
    modelPath: string,
    dictionaryPath: string,
    options: OcrSessionOptions = {},
  ): Promise<TextRecognizer> {
    const charset = loadCharset(dictionaryPath);
    return new TextRecognizer(await createOcrSession(modelPath, "text recognition", options), charset);
  }

  /** Reads every box of `image` (boxes in its coordinates); result k belongs to box k. */
  async recognize(
    image: RgbImage,
    boxes: readonly TextBox[],
    options: TextRecognizeOptions = {},
  ): Promise<RecognizedText[]> {
    const { maxWidth, batchSize } = checkOptions(options);
    if (this.closed) throw new MmssrError(ERROR_CODES.INFERENCE, "text recognizer is closed");
    if (boxes.length === 0) return [];
    const crops = await Promise.all(boxes.map((box, i) => cropOf(image, box, i, maxWidth)));
    crops.sort((a, b) => a.width - b.width || a.index - b.index);
    const texts: CtcText[] = new Array(boxes.length);
    for (let start = 0; start < crops.length; start += batchSize) {
      const batch = crops.slice(start, start + batchSize);
      const widest = batch[batch.length - 1].width;
      const batchWidth = Math.max(REC_MIN_WIDTH, Math.ceil(widest / REC_STRIDE) * REC_STRIDE);
      const out = await runOcrSession(this.session, "text recognition", recognizerTensor(batch, batchWidth), [
        batch.length,
        3,
        REC_HEIGHT,
        batchWidth,
      ]);
      const [n, steps, classes] = out.dims;
      if (out.dims.length !== 3 || n !== batch.length)
        throw new MmssrError(
          ERROR_CODES.INFERENCE,
          `text recognition output has shape [${out.dims.join(", ")}], expected [${batch.length}, T, C]`,
        );
      if (classes !== this.charset.classes.length)
        throw new MmssrError(
          ERROR_CODES.MODEL_INVALID,
          `text recognition model has ${classes} classes but the dictionary gives ${this.charset.classes.length} (blank + characters + space)`,
        );
      for (let b = 0; b < batch.length; b++)
        texts[batch[b].index] = ctcGreedyDecode(out.data, b, steps, classes, this.charset);
    }
    return boxes.map((box, i) => ({ box, text: texts[i].text, confidence: texts[i].confidence }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
