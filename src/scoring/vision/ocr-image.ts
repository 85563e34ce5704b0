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

import sharp, { type OutputInfo } from "sharp";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { describeError } from "../../util/describe-error.js";
import { decodeToRgb, type ImageFailure, probeImage } from "../decode-image.js";

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

function orThrow<T extends { ok: true }>(r: T | ImageFailure): T {
  if (!r.ok)
    throw new OcrImageError(r.flag === "image-too-large" ? "image-too-large" : "image-corrupt", r.reason);
  return r;
}

/** Width and height after the EXIF orientation; checks the pixel limit. */
export async function imageSize(
  bytes: Uint8Array,
  limits: OcrDecodeLimits = {},
): Promise<{ width: number; height: number }> {
  const { width, height } = orThrow(await probeImage(bytes, limits.maxPixels ?? DEFAULT_OCR_MAX_PIXELS));
  return { width, height };
}

function checkedRgb(
  decoded: { data: Uint8Array; width: number; height: number; channels: number },
  expectW?: number,
  expectH?: number,
): RgbImage {
  const { data, width, height, channels } = decoded;
  if (
    channels !== 3 ||
    (expectW !== undefined && width !== expectW) ||
    (expectH !== undefined && height !== expectH)
  )
    throw new OcrImageError(
      "image-corrupt",
      `decoder gave ${width} x ${height} x ${channels}, expected ${expectW ?? "?"} x ${expectH ?? "?"} x 3`,
    );
  return { data, width, height };
}

const decodeOptions = (limits: OcrDecodeLimits) => ({
  maxPixels: limits.maxPixels ?? DEFAULT_OCR_MAX_PIXELS,
  failOn: limits.failOn ?? "warning",
});

/** The whole image, at its own size (after the EXIF orientation). */
export async function decodeRgb(bytes: Uint8Array, limits: OcrDecodeLimits = {}): Promise<RgbImage> {
  return checkedRgb(orThrow(await decodeToRgb(bytes, decodeOptions(limits))));
}

/** The image decoded straight to width x height (aspect not kept; bilinear like cv2.resize). */
export async function decodeRgbResized(
  bytes: Uint8Array,
  width: number,
  height: number,
  limits: OcrDecodeLimits = {},
): Promise<RgbImage> {
  const resize = { width, height, kernel: "linear" as const };
  return checkedRgb(orThrow(await decodeToRgb(bytes, { ...decodeOptions(limits), resize })), width, height);
}

/** Decoded pixels resized to width x height (aspect not kept; bilinear). */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(width, height, { fit: "fill", kernel: "linear" })
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const message = describeError(err);
    if (/pixel limit/i.test(message))
      throw new OcrImageError("image-too-large", `decode refused: ${message}`, err);
    throw new OcrImageError("image-corrupt", `decode failed: ${message}`, err);
  }
  const { data, info } = out;
  return checkedRgb(
    {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels: info.channels,
    },
    width,
    height,
  );
}
