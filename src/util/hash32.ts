/**
 * MurmurHash3 (x86, 32-bit) pieces. Feature hashing needs a hash that is fast, well mixed and
 * frozen: a model's weights are indexed by it, so changing it invalidates every trained model
 * (the manifest names the featurizer kind for that reason; a test pins the output).
 */

/** One 32-bit block folded into the running hash (murmur3's body step). */
export function mixBlock(h: number, block: number): number {
  let k = Math.imul(block, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let x = h ^ k;
  x = (x << 13) | (x >>> 19);
  return (Math.imul(x, 5) + 0xe6546b64) | 0;
}

/** murmur3's finalizer: spreads every input bit over the output (unsigned). */
export function fmix32(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** MurmurHash3 of a string's UTF-16 code units, two code units per 32-bit block. */
export function murmur3(text: string, seed = 0): number {
  return murmur3Range(text, 0, text.length, seed);
}

/**
 * murmur3(text.slice(start, end), seed) without the slice: the featurizer hashes its tokens
 * in place in the text, so that no token string is ever built.
 */
export function murmur3Range(text: string, start: number, end: number, seed = 0): number {
  let h = seed >>> 0;
  let i = start;
  for (; i + 1 < end; i += 2) h = mixBlock(h, text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16));
  if (i < end) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return fmix32(h ^ ((end - start) * 2));
}
