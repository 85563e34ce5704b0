/**
 * Image decoding for OCR: bytes -> 8-bit RGB pixels, with the same rules as image-features.ts
 * (sharp metadata first: unreadable -> "image-corrupt", stored width x height over `maxPixels` ->
 * "image-too-large"; decode with failOn "warning"; EXIF orientation applied; alpha flattened onto
 * white; sRGB; first page only). Failures throw an OcrImageError (an MmssrError, INVALID_SAMPLE)
 * whose `flag` the caller can put on the sample.
 *
 * Two shapes are offered: `decodeRgb` (the whole image at its own size, for cropping) and
 * `decodeRgbResized` (straight to a target size, which lets libvips shrink a JPEG on load: the
 * fast path when only detection runs). `resizeRgb` resizes pixels already decoded.
 */

import sharp, { type Metadata, type OutputInfo, type Sharp } from "sharp";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { describeError } from "../../util/describe-error.js";

export const DEFAULT_OCR_MAX_PIXELS = 40e6;

/** Raw interleaved 8-bit RGB, row-major, no padding. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface OcrDecodeLimits {
  /** Largest accepted stored width x height. Default 40e6. */
  maxPixels?: number;
  /** sharp's failOn for the decode. Default "warning". */
  failOn?: "none" | "truncated" | "error" | "warning";
}

/** A per-image failure (the sample's fault, not the model's): carries the flag for the sample. */
export class OcrImageError extends MmssrError {
  readonly flag: "image-corrupt" | "image-too-large";

  constructor(flag: "image-corrupt" | "image-too-large", message: string, cause?: unknown) {
    super(ERROR_CODES.INVALID_SAMPLE, `${flag}: ${message}`, cause === undefined ? {} : { cause });
    this.name = "OcrImageError";
    this.flag = flag;
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0)
    throw new OcrImageError("image-corrupt", "no image bytes");
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Width and height after the EXIF orientation; checks the pixel limit. */
export async function imageSize(
  bytes: Uint8Array,
  limits: OcrDecodeLimits = {},
): Promise<{ width: number; height: number }> {
  const input = asBuffer(bytes);
  const maxPixels = limits.maxPixels ?? DEFAULT_OCR_MAX_PIXELS;
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new OcrImageError("image-corrupt", `not a readable image: ${describeError(err)}`, err);
  }
  const storedH = meta.pageHeight ?? meta.height;
  if (!(meta.width > 0) || !(storedH > 0))
    throw new OcrImageError("image-corrupt", `image of format ${meta.format} has no dimensions`);
  if (meta.width * storedH > maxPixels)
    throw new OcrImageError(
      "image-too-large",
      `${meta.width} x ${storedH} = ${meta.width * storedH} pixels, over the limit of ${maxPixels}`,
    );
  const swap = (meta.orientation ?? 1) >= 5;
  return { width: swap ? storedH : meta.width, height: swap ? meta.width : storedH };
}

async function run(pipeline: Sharp, expectW?: number, expectH?: number): Promise<RgbImage> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline.removeAlpha().raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (err) {
    const message = describeError(err);
    if (/pixel limit/i.test(message))
      throw new OcrImageError("image-too-large", `decode refused: ${message}`, err);
    throw new OcrImageError("image-corrupt", `decode failed: ${message}`, err);
  }
  const { data, info } = out;
  if (
    info.channels !== 3 ||
    (expectW !== undefined && info.width !== expectW) ||
    (expectH !== undefined && info.height !== expectH)
  )
    throw new OcrImageError(
      "image-corrupt",
      `decoder gave ${info.width} x ${info.height} x ${info.channels}, expected ${expectW ?? "?"} x ${expectH ?? "?"} x 3`,
    );
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.length),
    width: info.width,
    height: info.height,
  };
}

function source(bytes: Uint8Array, limits: OcrDecodeLimits): Sharp {
  const maxPixels = limits.maxPixels ?? DEFAULT_OCR_MAX_PIXELS;
  return sharp(asBuffer(bytes), {
    failOn: limits.failOn ?? "warning",
    limitInputPixels: Math.max(1, Math.floor(maxPixels)),
  })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace("srgb");
}

/** The whole image, at its own size (after the EXIF orientation). */
export async function decodeRgb(bytes: Uint8Array, limits: OcrDecodeLimits = {}): Promise<RgbImage> {
  return run(source(bytes, limits));
}

/** The image decoded straight to width x height (aspect not kept; bilinear like cv2.resize). */
export async function decodeRgbResized(
  bytes: Uint8Array,
  width: number,
  height: number,
  limits: OcrDecodeLimits = {},
): Promise<RgbImage> {
  return run(source(bytes, limits).resize(width, height, { fit: "fill", kernel: "linear" }), width, height);
}

/** Decoded pixels resized to width x height (aspect not kept; bilinear). */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const pipeline = sharp(image.data, {
    raw: { width: image.width, height: image.height, channels: 3 },
  }).resize(width, height, { fit: "fill", kernel: "linear" });
  return run(pipeline, width, height);
}
