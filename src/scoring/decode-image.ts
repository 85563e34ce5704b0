/**
 * The one way image bytes become 8-bit RGB pixels, for the hand-made descriptors
 * (image-features.ts) and the vision models (vision/): sharp metadata first (unreadable ->
 * "image-corrupt", stored width x height over `maxPixels` -> "image-too-large"), then the decode
 * with `failOn`, EXIF orientation applied, alpha flattened onto white, sRGB, first page only.
 * Failures resolve to a flag and a reason, never a rejection.
 */
import sharp from "sharp";
import { describeError } from "../util/describe-error.js";
import type { ScoreFlag } from "./scoring-types.js";

export interface ImageFailure {
  ok: false;
  flag: ScoreFlag;
  reason: string;
}

export interface DecodeOptions {
  /** largest accepted stored width x height */
  maxPixels: number;
  /** sharp's failOn for the decode */
  failOn: "none" | "truncated" | "error" | "warning";
  /** decode straight to this size (aspect not kept), with this kernel */
  resize?: { width: number; height: number; kernel: "lanczos3" | "linear" };
}

function asBuffer(bytes: Uint8Array): Buffer | undefined {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) return undefined;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

const NO_BYTES: ImageFailure = { ok: false, flag: "image-corrupt", reason: "no image bytes" };

/** Width and height after the EXIF orientation, from the metadata alone; checks the pixel limit. */
export async function probeImage(
  bytes: Uint8Array,
  maxPixels: number,
  failOn?: DecodeOptions["failOn"],
): Promise<{ ok: true; width: number; height: number } | ImageFailure> {
  const input = asBuffer(bytes);
  if (input === undefined) return NO_BYTES;
  try {
    const meta = await sharp(
      input,
      failOn === undefined ? { limitInputPixels: false } : { failOn, limitInputPixels: false },
    ).metadata();
    const storedH = meta.pageHeight ?? meta.height;
    if (!(meta.width > 0) || !(storedH > 0))
      return { ok: false, flag: "image-corrupt", reason: `image of format ${meta.format} has no dimensions` };
    if (meta.width * storedH > maxPixels)
      return {
        ok: false,
        flag: "image-too-large",
        reason: `${meta.width} x ${storedH} = ${meta.width * storedH} pixels, over the limit of ${maxPixels}`,
      };
    const swap = (meta.orientation ?? 1) >= 5;
    return { ok: true, width: swap ? storedH : meta.width, height: swap ? meta.width : storedH };
  } catch (err) {
    return { ok: false, flag: "image-corrupt", reason: `not a readable image: ${describeError(err)}` };
  }
}

/** Raw interleaved pixels as the decoder gave them; callers check `channels` and the size they need. */
export async function decodeToRgb(
  bytes: Uint8Array,
  options: DecodeOptions,
): Promise<{ ok: true; data: Uint8Array; width: number; height: number; channels: number } | ImageFailure> {
  const input = asBuffer(bytes);
  if (input === undefined) return NO_BYTES;
  // limitInputPixels backs up the metadata check (0 = no limit for sharp; ours is checked first).
  let pipeline = sharp(input, {
    failOn: options.failOn,
    limitInputPixels: Math.max(1, Math.floor(options.maxPixels)),
  })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace("srgb");
  if (options.resize !== undefined)
    pipeline = pipeline.resize(options.resize.width, options.resize.height, {
      fit: "fill",
      kernel: options.resize.kernel,
    });
  try {
    const { data, info } = await pipeline
      .removeAlpha()
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    return {
      ok: true,
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels: info.channels,
    };
  } catch (err) {
    const message = describeError(err);
    if (/pixel limit/i.test(message))
      return { ok: false, flag: "image-too-large", reason: `decode refused: ${message}` };
    return { ok: false, flag: "image-corrupt", reason: `decode failed: ${message}` };
  }
}
