/**
 * Stable LSD radix sort of row indices by a float64 key, 16 bits per pass.
 *
 * Why not Array.prototype.sort: a comparator sort of 2.6M indices takes about 1.1 s here and
 * a native Float64Array sort about 0.25 s without giving the permutation. Radix passes are
 * linear, and a pass whose 16-bit digit is the same for every key is skipped.
 */

const DIGIT_BITS = 16;
const RADIX = 1 << DIGIT_BITS;
const MASK = RADIX - 1;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
// little-endian hosts keep the high word at index 1
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/**
 * Returns `rows` reordered by keys[row], descending or ascending, keeping the given order
 * among equal keys. NaN keys are not allowed.
 */
export function radixArgsort(keys: Float64Array, rows: Uint32Array, direction: "desc" | "asc"): Uint32Array {
  const m = rows.length;
  if (m < 2) return rows.slice();
  let idx = rows.slice();
  let hi = new Uint32Array(m);
  let lo = new Uint32Array(m);
  const flipAll = direction === "desc" ? 0xffffffff : 0;
  for (let k = 0; k < m; k++) {
    f64[0] = keys[idx[k]] + 0; // + 0 folds -0 into +0
    let h = u32[HI];
    let l = u32[LO];
    // IEEE-754 bits to an unsigned integer of the same order: flip the sign bit of
    // non-negatives, every bit of negatives.
    if (h & 0x80000000) {
      h = ~h;
      l = ~l;
    } else {
      h ^= 0x80000000;
    }
    hi[k] = (h ^ flipAll) >>> 0;
    lo[k] = (l ^ flipAll) >>> 0;
  }

  // All four digit histograms in one read of the keys.
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
    const base = pass * RADIX;
    let trivial = false;
    let sum = 0;
    for (let d = 0; d < RADIX; d++) {
      const c = hist[base + d];
      if (c === m) {
        trivial = true;
        break;
      }
      offsets[d] = sum;
      sum += c;
    }
    if (trivial) continue;
    const src = pass >= 2 ? hi : lo;
    const shift = pass % 2 === 1 ? 16 : 0;
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
