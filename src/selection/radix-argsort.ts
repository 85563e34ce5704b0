/**
 * Stable LSD radix sorts of row indices: by a 32-bit unsigned key (two 16-bit passes) or by
 * a float64 key (four).
 *
 * Why not Array.prototype.sort: a comparator sort of 2.6M indices takes about 1.1 s here and
 * a native typed-array sort gives no permutation. Two linear passes take a few tens of ms;
 * a pass whose digit is the same for every key is skipped.
 */

const RADIX = 1 << 16;
const MASK = RADIX - 1;

/**
 * Turns one pass's digit histogram into scatter offsets. Returns false when one digit holds
 * every key: the pass would not change the order and is skipped.
 */
function prefixOffsets(hist: Uint32Array, base: number, m: number, offsets: Uint32Array): boolean {
  let sum = 0;
  for (let d = 0; d < RADIX; d++) {
    const c = hist[base + d];
    if (c === m) return false;
    offsets[d] = sum;
    sum += c;
  }
  return true;
}

export interface RadixSorted {
  /** the rows, reordered */
  rows: Uint32Array;
  /** keys[rows[k]] for each k: lets callers scan runs of equal keys sequentially */
  keys: Uint32Array;
}

/** Reorders `rows` by keys[row] (ascending or descending), keeping the given order among equal keys. */
export function radixArgsortU32(
  keys: Uint32Array,
  rows: Uint32Array,
  direction: "asc" | "desc",
): RadixSorted {
  const m = rows.length;
  let idx = rows.slice();
  let key = new Uint32Array(m);
  const flip = direction === "desc" ? 0xffffffff : 0;
  for (let k = 0; k < m; k++) key[k] = (keys[idx[k]] ^ flip) >>> 0;

  const hist = new Uint32Array(2 * RADIX);
  for (let k = 0; k < m; k++) {
    const v = key[k];
    hist[v & MASK]++;
    hist[RADIX + (v >>> 16)]++;
  }
  let idx2 = new Uint32Array(m);
  let key2 = new Uint32Array(m);
  const offsets = new Uint32Array(RADIX);
  for (let pass = 0; pass < 2; pass++) {
    if (!prefixOffsets(hist, pass * RADIX, m, offsets)) continue;
    const shift = pass * 16;
    for (let k = 0; k < m; k++) {
      const v = key[k];
      const at = offsets[(v >>> shift) & MASK]++;
      idx2[at] = idx[k];
      key2[at] = v;
    }
    [idx, idx2] = [idx2, idx];
    [key, key2] = [key2, key];
  }
  if (flip) for (let k = 0; k < m; k++) key[k] = (key[k] ^ flip) >>> 0;
  return { rows: idx, keys: key };
}

const f64 = new Float64Array(1);
const f64words = new Uint32Array(f64.buffer);
// little-endian hosts keep the high word at index 1
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/**
 * Reorders `rows` by the float64 keys[row], descending or ascending, stably: four 16-bit
 * passes over the IEEE-754 bits made order-preserving. NaN keys are not allowed.
 */
export function radixArgsortF64(
  keys: Float64Array,
  rows: Uint32Array,
  direction: "asc" | "desc",
): Uint32Array {
  const m = rows.length;
  let idx = rows.slice();
  let hi = new Uint32Array(m);
  let lo = new Uint32Array(m);
  const flip = direction === "desc" ? 0xffffffff : 0;
  for (let k = 0; k < m; k++) {
    f64[0] = keys[idx[k]] + 0; // + 0 folds -0 into +0
    let h = f64words[HI];
    let l = f64words[LO];
    // sign bit set: flip every bit; else flip the sign bit (unsigned order = numeric order)
    if (h & 0x80000000) {
      h = ~h;
      l = ~l;
    } else {
      h ^= 0x80000000;
    }
    hi[k] = (h ^ flip) >>> 0;
    lo[k] = (l ^ flip) >>> 0;
  }
  const hist = new Uint32Array(4 * RADIX);
  for (let k = 0; k < m; k++) {
    const l = lo[k];
    const h = hi[k];
    hist[l & MASK]++;
    hist[RADIX + (l >>> 16)]++;
    hist[2 * RADIX + (h & MASK)]++;
    hist[3 * RADIX + (h >>> 16)]++;
  }
  let idx2 = new Uint32Array(m);
  let hi2 = new Uint32Array(m);
  let lo2 = new Uint32Array(m);
  const offsets = new Uint32Array(RADIX);
  for (let pass = 0; pass < 4; pass++) {
    if (!prefixOffsets(hist, pass * RADIX, m, offsets)) continue;
    const src = pass >= 2 ? hi : lo;
    const shift = (pass % 2) * 16;
    for (let k = 0; k < m; k++) {
      const at = offsets[(src[k] >>> shift) & MASK]++;
      idx2[at] = idx[k];
      hi2[at] = hi[k];
      lo2[at] = lo[k];
    }
    [idx, idx2] = [idx2, idx];
    [hi, hi2] = [hi2, hi];
    [lo, lo2] = [lo2, lo];
  }
  return idx;
}
