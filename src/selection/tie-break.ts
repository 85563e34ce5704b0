import type { ScoredPool } from "../pool/scored-pool.js";
import { type RadixSorted, radixArgsortF64, radixArgsortU32 } from "./radix-argsort.js";

/**
 * Deterministic tie-break of MMSSR.md: among equal capability scores, the higher mean score
 * over the sample's present capability scores first, then the smaller tieHash(id), then the
 * smaller id (UTF-16 code-unit order) for the rare hash collision. The release used an
 * unstable sort here, so any fixed rule is as faithful; this one does not depend on the
 * input order, so a shuffled pool selects the same set.
 */

/**
 * A 53-bit string hash (the cyrb53 construction: two 32-bit multiply-xorshift lanes). Stable
 * across runs, platforms and versions: part of the selection contract, never change it.
 */
export function tieHash(id: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < id.length; i++) {
    const ch = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Mean of each row's present scores; -Infinity for a row without any. */
export function meanScores(pool: ScoredPool): Float64Array {
  const n = pool.size;
  const sum = new Float64Array(n);
  const count = new Uint8Array(n);
  for (const col of pool.scores) {
    for (let i = 0; i < n; i++) {
      const v = col[i];
      if (!Number.isNaN(v)) {
        sum[i] += v;
        count[i]++;
      }
    }
  }
  for (let i = 0; i < n; i++) sum[i] = count[i] > 0 ? sum[i] / count[i] : Number.NEGATIVE_INFINITY;
  return sum;
}

/**
 * Every row of the pool in tie-break order: mean desc, tieHash asc, id asc.
 *
 * Two stable radix sorts: by the top 32 bits of the hash (runs of equal top bits, about one
 * in 6,000 rows at 2.6M, are then ordered by the whole hash and the id), then by the exact
 * mean. Means that are equal in real numbers often differ in the last bit of their float64
 * sums; the rule compares the float64 values as they are, so the mean sort uses all 64 bits.
 */
export function tieOrder(pool: ScoredPool): Uint32Array {
  const n = pool.size;
  const { ids } = pool;
  const hashes = new Float64Array(n);
  const hashTop = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const h = tieHash(ids[i]);
    hashes[i] = h;
    hashTop[i] = Math.floor(h / 2097152); // 2^21: keeps the top 32 of 53 bits
  }
  const all = new Uint32Array(n);
  for (let i = 0; i < n; i++) all[i] = i;
  const byHash = radixArgsortU32(hashTop, all, "asc");
  fixRuns(byHash, (a, b) => hashes[a] - hashes[b] || (ids[a] < ids[b] ? -1 : ids[a] > ids[b] ? 1 : 0));

  // Stable: rows of equal means keep hash order.
  return radixArgsortF64(meanScores(pool), byHash.rows, "desc");
}

/** Sorts each run of equal keys with `compare` (stable), after checking the run needs it. */
function fixRuns(sorted: RadixSorted, compare: (a: number, b: number) => number): void {
  const { rows, keys } = sorted;
  const n = rows.length;
  for (let start = 0; start < n; ) {
    let end = start + 1;
    while (end < n && keys[end] === keys[start]) end++;
    if (end - start > 1) {
      let ordered = true;
      for (let k = start + 1; k < end && ordered; k++) ordered = compare(rows[k - 1], rows[k]) <= 0;
      if (!ordered) rows.set(Array.from(rows.subarray(start, end)).sort(compare), start);
    }
    start = end;
  }
}
