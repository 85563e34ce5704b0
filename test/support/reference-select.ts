/**
 * A slow, obviously-correct mmSSR selector written line by line from the pseudocode of
 * ../shared/MMSSR.md ("Offline selection"). It re-sorts the remaining pool for every
 * capability in every round and rebuilds the style buckets each time. Only for tests: it is
 * the oracle the fast selector (src/selection/select-mmssr.ts) is compared against.
 *
 * Supported options: ratio | budget, capabilities, threshold. No weights, no validation.
 */

import {
  bucketName,
  CAPABILITY_IDS,
  capabilityIndex,
  NUM_STYLES,
  STYLES,
} from "../../src/domain/taxonomy.js";
import type { ScoredPool } from "../../src/pool/scored-pool.js";
import type { SelectionResult, SelectOptions } from "../../src/selection/select-options.js";
import { tieHash } from "../../src/selection/tie-break.js";

interface Picked {
  row: number;
  style: number;
}

/** Mean over the row's non-missing scores of all 14 capabilities; -Infinity with none. */
function meanOfRow(pool: ScoredPool, i: number): number {
  let sum = 0;
  let count = 0;
  for (const col of pool.scores) {
    const v = col[i];
    if (!Number.isNaN(v)) {
      sum += v;
      count++;
    }
  }
  return count === 0 ? Number.NEGATIVE_INFINITY : sum / count;
}

export function referenceSelect(pool: ScoredPool, options: SelectOptions): SelectionResult {
  if (options.capabilityWeights !== undefined || options.styleWeights !== undefined)
    throw new Error("referenceSelect supports no weights");
  const B = options.budget !== undefined ? options.budget : Math.floor(pool.size * (options.ratio as number));
  const C = (options.capabilities ?? CAPABILITY_IDS).map((id) => capabilityIndex(id));
  const thr = options.threshold ?? 0;

  const mean = Array.from({ length: pool.size }, (_, i) => meanOfRow(pool, i));
  const hash = pool.ids.map((id) => tieHash(id));
  // score desc; then mean desc; then tieHash asc; then id asc (code-unit order)
  const compare = (cap: number, a: number, b: number): number => {
    const sa = pool.scores[cap][a];
    const sb = pool.scores[cap][b];
    if (sa !== sb) return sb - sa;
    if (mean[a] !== mean[b]) return mean[b] > mean[a] ? 1 : -1;
    if (hash[a] !== hash[b]) return hash[a] - hash[b];
    const ia = pool.ids[a];
    const ib = pool.ids[b];
    return ia < ib ? -1 : ia > ib ? 1 : 0;
  };

  const selected: { row: number; cap: number; style: number }[] = [];
  const inPool = new Array<boolean>(pool.size).fill(true);
  let active = C.slice();
  let rounds = 0;

  while (selected.length < B && active.length > 0) {
    rounds++;
    const share = Math.max(Math.floor((B - selected.length) / active.length), 1);
    const dropped: number[] = [];
    for (const cap of active) {
      const n = Math.min(share, B - selected.length);
      const ranked: number[] = [];
      for (let i = 0; i < pool.size; i++) {
        const v = pool.scores[cap][i];
        if (inPool[i] && !Number.isNaN(v) && v > thr) ranked.push(i);
      }
      ranked.sort((a, b) => compare(cap, a, b));
      const picked = spreadOverStyles(pool, ranked, n);
      if (picked.length === 0) dropped.push(cap);
      else
        for (const p of picked) {
          inPool[p.row] = false;
          selected.push({ row: p.row, cap, style: p.style });
        }
      if (selected.length >= B) break;
    }
    active = active.filter((c) => !dropped.includes(c));
  }

  return {
    budget: B,
    indices: Uint32Array.from(selected, (p) => p.row),
    pickedBy: Uint8Array.from(selected, (p) => p.cap),
    pickedStyle: Uint8Array.from(selected, (p) => p.style),
    rounds,
  };
}

function spreadOverStyles(pool: ScoredPool, ranked: readonly number[], n: number): Picked[] {
  // buckets: walk `ranked` in order; append each sample to the bucket of every one of its tags
  const buckets = new Map<string, { name: string; style: number; members: number[] }>();
  for (const i of ranked) {
    for (let s = 0; s < NUM_STYLES; s++) {
      if ((pool.styleMask[i] & (1 << s)) === 0) continue;
      const name = bucketName(STYLES[s], pool.sources[pool.sourceIndex[i]]);
      let bucket = buckets.get(name);
      if (bucket === undefined) {
        bucket = { name, style: s, members: [] };
        buckets.set(name, bucket);
      }
      bucket.members.push(i);
    }
  }
  if (buckets.size === 0) return [];
  // order buckets by size ascending (ties: bucket name ascending, plain string comparison)
  const ordered = [...buckets.values()].sort((a, b) =>
    a.members.length !== b.members.length
      ? a.members.length - b.members.length
      : a.name < b.name
        ? -1
        : a.name > b.name
          ? 1
          : 0,
  );
  const quota = Math.max(Math.floor(n / ordered.length), 1);
  let carry = 0;
  const picked: Picked[] = [];
  const pickedRows = new Set<number>();
  for (const bucket of ordered) {
    if (picked.length >= n) break;
    const free = bucket.members.filter((i) => !pickedRows.has(i));
    // MMSSR.md writes take = min(quota + carry, |free|). When an earlier bucket already took
    // members of this one, the carry can then push |picked| past n (and the selection past B,
    // against the stated property "never more than B"); we read n as a hard cap, as the
    // `if |picked| >= n: break` guard intends, and never take more than n - |picked|.
    const take = Math.min(quota + carry, free.length, n - picked.length);
    carry = Math.max(quota + carry - free.length, 0);
    for (const i of free.slice(0, take)) {
      picked.push({ row: i, style: bucket.style });
      pickedRows.add(i);
    }
  }
  return picked;
}
