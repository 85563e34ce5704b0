/**
 * Image descriptor of the featurizer (issue 3, "Featurization"): a small, fixed, deterministic
 * vector of global image statistics, computed with sharp (libvips) from the image bytes.
 *
 * Pipeline: sharp metadata (unreadable -> "image-corrupt"; width x height over `maxPixels` ->
 * "image-too-large"), then decode with `failOn` (default "warning", sharp's advice for untrusted
 * input; truncated or corrupt pixel data -> "image-corrupt"), apply the EXIF orientation, flatten
 * any alpha onto white, convert to sRGB, resize to `spec.size` x `spec.size` (fit "fill", lanczos3;
 * the aspect ratio is kept as a feature instead), raw 8-bit RGB. Only the first page of a
 * multi-page image (GIF, TIFF, ...) is used.
 *
 * Layout (IMAGE_DESCRIPTOR_DIMS = 39 floats; L = luminance 0.299 R + 0.587 G + 0.114 B in 0..1,
 * computed on the resized image; w, h = width and height after EXIF orientation):
 *
 *   offset  n   feature                                                     range
 *   0       12  colour histogram: R bins 0-3, G bins 0-3, B bins 0-3, bin   0..1, each channel
 *               = value >> 6 (0-63, 64-127, 128-191, 192-255), the share    sums to 1
 *               of pixels in the bin
 *   12      16  luminance grid: mean L of 4 x 4 cells, row-major from the   0..1
 *               top left (cell of pixel (x, y) = floor(4x/size), ...)
 *   28      1   edge energy: (mean |L(x+1,y) - L(x,y)| + mean |L(x,y+1) -   0..1 (photos ~0.02-0.1)
 *               L(x,y)|) / 2 over the whole image
 *   29      4   the same edge energy per quadrant: top left, top right,     0..1
 *               bottom left, bottom right (a pixel's differences count in
 *               the quadrant of the pixel)
 *   33      1   contrast: 2 x standard deviation of L                       0..1
 *   34      1   saturation: mean HSV saturation (max - min) / max           0..1
 *   35      1   colourfulness (Hasler & Suesstrunk 2003) M on the 0..255    0..1
 *               scale, squashed as M / (M + 100)
 *   36      1   aspect: tanh(ln(w / h)) = (w² - h²) / (w² + h²); > 0 for   -1..1
 *               landscape, < 0 for portrait, 0 for square
 *   37      1   size: log10(w x h) / 8, clamped to 0..1 (1 px -> 0,         0..1
 *               1e8 px -> 1)
 *   38      1   has-image flag: 1 (imageDescriptorOfMissing gives 0)        0 or 1
 *
 * Same bytes and same spec give the same floats (pixel sums are integers or accumulated in a fixed
 * order in float64; the decode and resize are libvips's, so a different sharp/libvips version may
 * move the resized pixels slightly).
 *
 * Per-sample problems come back as `{ok: false, flag, reason}`; a spec that does not match this
 * layout (dims !== IMAGE_DESCRIPTOR_DIMS, size not an integer in 4..1024) is a configuration
 * error: the promise rejects with an MmssrError (BAD_OPTIONS). `checkImageFeatureSpec` runs that
 * check alone (for a manifest loader).
 */

import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { decodeToRgb, probeImage } from "./decode-image.js";
import type { FeatureSpec, ScoreFlag } from "./scoring-types.js";

export const IMAGE_HIST_BINS = 4;
export const IMAGE_GRID = 4;

/** Offsets of the descriptor's parts (see the layout above). */
export const IMAGE_DESCRIPTOR_LAYOUT = {
  histogram: { offset: 0, length: 3 * IMAGE_HIST_BINS },
  luminanceGrid: { offset: 12, length: IMAGE_GRID * IMAGE_GRID },
  edgeEnergy: { offset: 28, length: 1 },
  edgeEnergyQuadrants: { offset: 29, length: 4 },
  contrast: { offset: 33, length: 1 },
  saturation: { offset: 34, length: 1 },
  colourfulness: { offset: 35, length: 1 },
  aspect: { offset: 36, length: 1 },
  logPixels: { offset: 37, length: 1 },
  hasImage: { offset: 38, length: 1 },
} as const;

export const IMAGE_DESCRIPTOR_DIMS = 39;

export const DEFAULT_MAX_IMAGE_PIXELS = 40e6;

export interface ImageDescriptorLimits {
  /** Largest accepted width x height (after nothing: the stored dimensions). Default 40e6. */
  maxPixels?: number;
  /** sharp's failOn for the decode. Default "warning". */
  failOn?: "none" | "truncated" | "error" | "warning";
}

export type ImageDescriptorResult =
  | { ok: true; features: Float32Array }
  | { ok: false; flag: ScoreFlag; reason: string };

const MIN_SIZE = 4;
const MAX_SIZE = 1024;

/** Throws an MmssrError (BAD_OPTIONS) unless `spec` fits this descriptor. */
export function checkImageFeatureSpec(spec: FeatureSpec["image"]): void {
  if (spec === null || typeof spec !== "object")
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, "image feature spec: missing (expected {size, dims})");
  if (spec.dims !== IMAGE_DESCRIPTOR_DIMS)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `image feature spec: dims must be ${IMAGE_DESCRIPTOR_DIMS} (the layout of image-features.ts), got ${spec.dims}`,
    );
  if (!Number.isInteger(spec.size) || spec.size < MIN_SIZE || spec.size > MAX_SIZE)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `image feature spec: size must be an integer in ${MIN_SIZE}..${MAX_SIZE}, got ${spec.size}`,
    );
}

/** The descriptor of a sample without a (usable) image: all zeros, has-image flag 0. */
export function imageDescriptorOfMissing(dims: number = IMAGE_DESCRIPTOR_DIMS): Float32Array {
  return new Float32Array(dims);
}

/** Computes the descriptor from raw 8-bit RGB pixels of a size x size image. Exported for tests. */
export function descriptorFromRgb(
  rgb: Uint8Array,
  size: number,
  width: number,
  height: number,
): Float32Array {
  const out = new Float32Array(IMAGE_DESCRIPTOR_DIMS);
  const n = size * size;
  const lum = new Float64Array(n);
  const hist = new Float64Array(3 * IMAGE_HIST_BINS);
  const grid = new Float64Array(IMAGE_GRID * IMAGE_GRID);
  const gridCount = new Float64Array(IMAGE_GRID * IMAGE_GRID);
  let satSum = 0;
  let rgSum = 0;
  let ybSum = 0;
  let rgSq = 0;
  let ybSq = 0;
  let lSum = 0;
  let lSq = 0;
  for (let y = 0; y < size; y++) {
    const gy = Math.floor((y * IMAGE_GRID) / size);
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const r = rgb[3 * i];
      const g = rgb[3 * i + 1];
      const b = rgb[3 * i + 2];
      hist[r >> 6]++;
      hist[IMAGE_HIST_BINS + (g >> 6)]++;
      hist[2 * IMAGE_HIST_BINS + (b >> 6)]++;
      const l = (0.299 * r + 0.587 * g + 0.114 * b) / 255;
      lum[i] = l;
      lSum += l;
      lSq += l * l;
      const cell = gy * IMAGE_GRID + Math.floor((x * IMAGE_GRID) / size);
      grid[cell] += l;
      gridCount[cell]++;
      const max = Math.max(r, g, b);
      const min = Math.min(r, g, b);
      if (max > 0) satSum += (max - min) / max;
      const rg = r - g;
      const yb = 0.5 * (r + g) - b;
      rgSum += rg;
      ybSum += yb;
      rgSq += rg * rg;
      ybSq += yb * yb;
    }
  }
  const L = IMAGE_DESCRIPTOR_LAYOUT;
  for (let k = 0; k < hist.length; k++) out[L.histogram.offset + k] = hist[k] / n;
  for (let k = 0; k < grid.length; k++)
    out[L.luminanceGrid.offset + k] = gridCount[k] > 0 ? grid[k] / gridCount[k] : 0;

  // Edge energy: horizontal and vertical absolute differences of L, overall and per quadrant.
  const half = Math.floor(size / 2);
  const dx = new Float64Array(5); // [all, q0..q3]
  const dxN = new Float64Array(5);
  const dy = new Float64Array(5);
  const dyN = new Float64Array(5);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = y * size + x;
      const q = 1 + (y < half ? 0 : 2) + (x < half ? 0 : 1);
      if (x + 1 < size) {
        const d = Math.abs(lum[i + 1] - lum[i]);
        dx[0] += d;
        dxN[0]++;
        dx[q] += d;
        dxN[q]++;
      }
      if (y + 1 < size) {
        const d = Math.abs(lum[i + size] - lum[i]);
        dy[0] += d;
        dyN[0]++;
        dy[q] += d;
        dyN[q]++;
      }
    }
  }
  const edge = (k: number) => ((dxN[k] > 0 ? dx[k] / dxN[k] : 0) + (dyN[k] > 0 ? dy[k] / dyN[k] : 0)) / 2;
  out[L.edgeEnergy.offset] = edge(0);
  for (let q = 0; q < 4; q++) out[L.edgeEnergyQuadrants.offset + q] = edge(q + 1);

  const lMean = lSum / n;
  out[L.contrast.offset] = Math.min(1, 2 * Math.sqrt(Math.max(0, lSq / n - lMean * lMean)));
  out[L.saturation.offset] = satSum / n;
  const rgMean = rgSum / n;
  const ybMean = ybSum / n;
  const rgVar = Math.max(0, rgSq / n - rgMean * rgMean);
  const ybVar = Math.max(0, ybSq / n - ybMean * ybMean);
  const m = Math.sqrt(rgVar + ybVar) + 0.3 * Math.sqrt(rgMean * rgMean + ybMean * ybMean);
  out[L.colourfulness.offset] = m / (m + 100);
  const w2 = width * width;
  const h2 = height * height;
  out[L.aspect.offset] = w2 + h2 > 0 ? (w2 - h2) / (w2 + h2) : 0;
  out[L.logPixels.offset] = Math.min(1, Math.max(0, Math.log10(Math.max(1, width * height)) / 8));
  out[L.hasImage.offset] = 1;
  return out;
}

/**
 * The descriptor of one image (layout above). Per-sample failures resolve to a flag; a spec that
 * does not fit the layout rejects with an MmssrError (BAD_OPTIONS).
 */
export async function imageDescriptor(
  bytes: Uint8Array,
  spec: FeatureSpec["image"],
  limits: ImageDescriptorLimits = {},
): Promise<ImageDescriptorResult> {
  checkImageFeatureSpec(spec);
  const maxPixels = limits.maxPixels ?? DEFAULT_MAX_IMAGE_PIXELS;
  if (!(maxPixels > 0))
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `image descriptor: maxPixels must be > 0, got ${maxPixels}`,
    );
  const failOn = limits.failOn ?? "warning";
  const probe = await probeImage(bytes, maxPixels, failOn);
  if (!probe.ok) return probe;
  const decoded = await decodeToRgb(bytes, {
    maxPixels,
    failOn,
    resize: { width: spec.size, height: spec.size, kernel: "lanczos3" },
  });
  if (!decoded.ok) return decoded;
  if (decoded.channels !== 3 || decoded.width !== spec.size || decoded.height !== spec.size)
    return {
      ok: false,
      flag: "image-corrupt",
      reason: `decoder gave ${decoded.width} x ${decoded.height} x ${decoded.channels}, expected ${spec.size} x ${spec.size} x 3`,
    };
  return { ok: true, features: descriptorFromRgb(decoded.data, spec.size, probe.width, probe.height) };
}
