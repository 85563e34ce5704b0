/**
 * PP-OCRv4 text detection (DB): image -> text boxes in original-image coordinates.
 *
 * Pre-processing, as PaddleOCR's DetResizeForTest + NormalizeImage + ToCHWImage (predict_det.py),
 * except that the longer side is scaled to `maxSide` both ways (PaddleOCR's limit_type "max" only
 * shrinks; `upscale: false` gives that), so the cost per image is fixed by `maxSide`:
 *   - scale = maxSide / max(w, h); each side = max(32, round(side x scale / 32) x 32) (so both
 *     are multiples of 32, the detector's stride); bilinear resize, aspect kept up to that rounding;
 *   - channel order BGR (PaddleOCR decodes with cv2, and the model was trained on BGR), each
 *     channel (v / 255 - mean) / std with mean [0.485, 0.456, 0.406] and std [0.229, 0.224, 0.225]
 *     taken in that (B, G, R) order, as PaddleOCR does;
 *   - CHW float32, batch 1.
 * Post-processing: db-postprocess.ts (threshold 0.3, box threshold 0.5, unclip 1.5, axis-aligned).
 */

import type * as ort from "onnxruntime-node";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { type DbPostprocessOptions, dbBoxes, type TextBox } from "./db-postprocess.js";
import { decodeRgbResized, imageSize, type OcrDecodeLimits, type RgbImage, resizeRgb } from "./ocr-image.js";
import { createOcrSession, type OcrSessionOptions, runOcrSession } from "./ocr-session.js";

export const DET_STRIDE = 32;
export const DET_MEAN_BGR = [0.485, 0.456, 0.406] as const;
export const DET_STD_BGR = [0.229, 0.224, 0.225] as const;
export const DEFAULT_DET_MAX_SIDE = 640;
export const MIN_DET_MAX_SIDE = 64;
export const MAX_DET_MAX_SIDE = 4096;

export interface TextDetectOptions extends DbPostprocessOptions {
  /** target longer side of the detector input, a multiple of 32 in 64..4096. Default 640. */
  maxSide?: number;
  /** scale images smaller than maxSide up to it (default true); false: only shrink (PaddleOCR). */
  upscale?: boolean;
}

export interface TextDetection {
  boxes: TextBox[];
  /** original image size (after the EXIF orientation) */
  width: number;
  height: number;
  /** detector input size */
  inputWidth: number;
  inputHeight: number;
}

export function checkMaxSide(maxSide: number): void {
  if (
    !Number.isInteger(maxSide) ||
    maxSide < MIN_DET_MAX_SIDE ||
    maxSide > MAX_DET_MAX_SIDE ||
    maxSide % DET_STRIDE !== 0
  )
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `text detection: maxSide must be a multiple of ${DET_STRIDE} in ${MIN_DET_MAX_SIDE}..${MAX_DET_MAX_SIDE}, got ${maxSide}`,
    );
}

/** The detector input size for a width x height image (see the module comment). */
export function detectorInputSize(
  width: number,
  height: number,
  maxSide: number = DEFAULT_DET_MAX_SIDE,
  upscale = true,
): { width: number; height: number } {
  const longer = Math.max(width, height);
  const scale = upscale || longer > maxSide ? maxSide / longer : 1;
  const side = (v: number) => Math.max(DET_STRIDE, Math.round((v * scale) / DET_STRIDE) * DET_STRIDE);
  return { width: side(width), height: side(height) };
}

function channelTable(mean: number, std: number): Float32Array {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = (v / 255 - mean) / std;
  return t;
}

const LUT_B = channelTable(DET_MEAN_BGR[0], DET_STD_BGR[0]);
const LUT_G = channelTable(DET_MEAN_BGR[1], DET_STD_BGR[1]);
const LUT_R = channelTable(DET_MEAN_BGR[2], DET_STD_BGR[2]);

/** RGB pixels -> the detector's [1, 3, H, W] BGR-normalised tensor data. Exported for tests. */
export function detectorTensor(image: RgbImage): Float32Array {
  const n = image.width * image.height;
  const out = new Float32Array(3 * n);
  const src = image.data;
  for (let i = 0; i < n; i++) {
    out[i] = LUT_B[src[3 * i + 2]];
    out[n + i] = LUT_G[src[3 * i + 1]];
    out[2 * n + i] = LUT_R[src[3 * i]];
  }
  return out;
}

export class TextDetector {
  private closed = false;

  private constructor(private readonly session: ort.InferenceSession) {}

  /** Loads the detector; the file missing -> MmssrError (MODEL_INVALID) naming the path. */
  static async create(path: string, options: OcrSessionOptions = {}): Promise<TextDetector> {
    return new TextDetector(await createOcrSession(path, "text detection", options));
  }

  /** Detects text in encoded image bytes (decoded straight to the detector's input size). */
  async detect(
    bytes: Uint8Array,
    options: TextDetectOptions = {},
    limits: OcrDecodeLimits = {},
  ): Promise<TextDetection> {
    const maxSide = options.maxSide ?? DEFAULT_DET_MAX_SIDE;
    checkMaxSide(maxSide);
    const { width, height } = await imageSize(bytes, limits);
    const size = detectorInputSize(width, height, maxSide, options.upscale ?? true);
    const input = await decodeRgbResized(bytes, size.width, size.height, limits);
    return this.run(input, width, height, options);
  }

  /** Detects text in decoded pixels (resized here); boxes are in `image`'s coordinates. */
  async detectRgb(image: RgbImage, options: TextDetectOptions = {}): Promise<TextDetection> {
    const maxSide = options.maxSide ?? DEFAULT_DET_MAX_SIDE;
    checkMaxSide(maxSide);
    const size = detectorInputSize(image.width, image.height, maxSide, options.upscale ?? true);
    const input = await resizeRgb(image, size.width, size.height);
    return this.run(input, image.width, image.height, options);
  }

  private async run(
    input: RgbImage,
    width: number,
    height: number,
    options: DbPostprocessOptions,
  ): Promise<TextDetection> {
    if (this.closed) throw new MmssrError(ERROR_CODES.INFERENCE, "text detector is closed");
    const out = await runOcrSession(this.session, "text detection", detectorTensor(input), [
      1,
      3,
      input.height,
      input.width,
    ]);
    const mapH = out.dims[2];
    const mapW = out.dims[3];
    if (out.dims.length !== 4 || mapH !== input.height || mapW !== input.width)
      throw new MmssrError(
        ERROR_CODES.INFERENCE,
        `text detection output has shape [${out.dims.join(", ")}], expected [1, 1, ${input.height}, ${input.width}]`,
      );
    return {
      boxes: dbBoxes(out.data, mapW, mapH, width, height, options),
      width,
      height,
      inputWidth: input.width,
      inputHeight: input.height,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}
