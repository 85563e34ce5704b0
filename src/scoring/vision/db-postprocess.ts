/**
 * DB (Differentiable Binarization, Liao et al. 2020) post-processing of a text probability map,
 * as PaddleOCR's DBPostProcess does it, simplified to axis-aligned boxes:
 *
 *   1. bitmap = prob > `threshold` (0.3);
 *   2. connected components of the bitmap (8-connected, like the outer contours cv2.findContours
 *      gives), labelled by an iterative flood fill over a Uint8Array with an Int32Array stack: each
 *      pixel is pushed once, O(map size);
 *   3. per component its bounding box [x0, x1) x [y0, y1) in map pixels; short side < `minSize` (3)
 *      -> dropped;
 *   4. score = mean probability over the component's pixels ("slow" polygon scoring, which for an
 *      axis-aligned box is the component itself); score < `boxThreshold` (0.5) -> dropped;
 *   5. unclip: the box grows by d = area x `unclipRatio` / perimeter on every side (what
 *      pyclipper's offset of a rectangle by d gives, up to the rounded corners); short side <
 *      `minSize` + 2 -> dropped;
 *   6. scaled to the destination (original image) size, rounded and clipped to it.
 *
 * At most `maxCandidates` (1000) boxes are kept, the best scored; they come back in reading order
 * (top to bottom, then left to right).
 */

export interface TextBox {
  /** left edge in destination pixels (integer, inclusive) */
  x: number;
  /** top edge in destination pixels (integer, inclusive) */
  y: number;
  /** width in destination pixels (integer, >= 1) */
  width: number;
  /** height in destination pixels (integer, >= 1) */
  height: number;
  /** mean text probability over the component, 0..1 */
  score: number;
}

export interface DbPostprocessOptions {
  /** binarisation threshold on the probability map (PaddleOCR det_db_thresh). Default 0.3. */
  threshold?: number;
  /** smallest mean probability of a kept box (det_db_box_thresh). Default 0.5. */
  boxThreshold?: number;
  /** unclip (expansion) ratio (det_db_unclip_ratio). Default 1.5. */
  unclipRatio?: number;
  /** smallest short side in map pixels before unclip (after it: minSize + 2). Default 3. */
  minSize?: number;
  /** most boxes kept. Default 1000. */
  maxCandidates?: number;
}

export const DB_DEFAULTS = {
  threshold: 0.3,
  boxThreshold: 0.5,
  unclipRatio: 1.5,
  minSize: 3,
  maxCandidates: 1000,
} as const;

/** One connected component's statistics (map pixels; x1, y1 exclusive). */
export interface Component {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  pixels: number;
  probSum: number;
}

/**
 * The 8-connected components of `prob > threshold` on a width x height map, in scan order of their
 * first pixel. Exported for tests.
 */
export function connectedComponents(
  prob: Float32Array,
  width: number,
  height: number,
  threshold: number,
): Component[] {
  const n = width * height;
  if (prob.length < n) throw new RangeError(`probability map has ${prob.length} values, expected ${n}`);
  const open = new Uint8Array(n);
  for (let i = 0; i < n; i++) open[i] = prob[i] > threshold ? 1 : 0;
  const stack = new Int32Array(n);
  const out: Component[] = [];
  for (let start = 0; start < n; start++) {
    if (open[start] === 0) continue;
    open[start] = 0;
    let top = 0;
    stack[top++] = start;
    let x0 = width;
    let y0 = height;
    let x1 = -1;
    let y1 = -1;
    let pixels = 0;
    let probSum = 0;
    while (top > 0) {
      const i = stack[--top];
      const y = (i / width) | 0;
      const x = i - y * width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
      pixels++;
      probSum += prob[i];
      const yLo = y > 0 ? y - 1 : y;
      const yHi = y + 1 < height ? y + 1 : y;
      const xLo = x > 0 ? x - 1 : x;
      const xHi = x + 1 < width ? x + 1 : x;
      for (let yy = yLo; yy <= yHi; yy++) {
        const row = yy * width;
        for (let xx = xLo; xx <= xHi; xx++) {
          const j = row + xx;
          if (open[j] !== 0) {
            open[j] = 0;
            stack[top++] = j;
          }
        }
      }
    }
    out.push({ x0, y0, x1: x1 + 1, y1: y1 + 1, pixels, probSum });
  }
  return out;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, v));
}

/**
 * Boxes (in destination coordinates, destWidth x destHeight) from a mapWidth x mapHeight DB
 * probability map. See the module comment for the steps.
 */
export function dbBoxes(
  prob: Float32Array,
  mapWidth: number,
  mapHeight: number,
  destWidth: number,
  destHeight: number,
  options: DbPostprocessOptions = {},
): TextBox[] {
  const threshold = options.threshold ?? DB_DEFAULTS.threshold;
  const boxThreshold = options.boxThreshold ?? DB_DEFAULTS.boxThreshold;
  const unclipRatio = options.unclipRatio ?? DB_DEFAULTS.unclipRatio;
  const minSize = options.minSize ?? DB_DEFAULTS.minSize;
  const maxCandidates = options.maxCandidates ?? DB_DEFAULTS.maxCandidates;
  const sx = destWidth / mapWidth;
  const sy = destHeight / mapHeight;
  const boxes: TextBox[] = [];
  for (const c of connectedComponents(prob, mapWidth, mapHeight, threshold)) {
    const w = c.x1 - c.x0;
    const h = c.y1 - c.y0;
    if (Math.min(w, h) < minSize) continue;
    const score = c.probSum / c.pixels;
    if (score < boxThreshold) continue;
    const d = (w * h * unclipRatio) / (2 * (w + h));
    if (Math.min(w, h) + 2 * d < minSize + 2) continue;
    const x0 = clamp(Math.round((c.x0 - d) * sx), 0, destWidth);
    const x1 = clamp(Math.round((c.x1 + d) * sx), 0, destWidth);
    const y0 = clamp(Math.round((c.y0 - d) * sy), 0, destHeight);
    const y1 = clamp(Math.round((c.y1 + d) * sy), 0, destHeight);
    if (x1 <= x0 || y1 <= y0) continue;
    boxes.push({ x: x0, y: y0, width: x1 - x0, height: y1 - y0, score });
  }
  const kept =
    boxes.length > maxCandidates ? boxes.sort((a, b) => b.score - a.score).slice(0, maxCandidates) : boxes;
  return kept.sort((a, b) => a.y - b.y || a.x - b.x);
}
