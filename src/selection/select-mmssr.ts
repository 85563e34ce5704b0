import { bucketName, NUM_STYLES, STYLES } from "../domain/taxonomy.js";
import type { ScoredPool } from "../pool/scored-pool.js";
import { type ResolvedSelectOptions, resolveSelectOptions } from "./resolve-select-options.js";
import type { SelectionResult, SelectOptions } from "./select-options.js";
import { tieOrder } from "./tie-break.js";

/**
 * The offline mmSSR selection of MMSSR.md, exact, built for millions of rows.
 *
 * The reference re-ranks the remaining pool for every capability in every round. Removing
 * rows never changes the relative order of the rows that remain, so each capability is
 * ranked once, and its eligible rows are split into one list per bucket (style x
 * image_source) kept in rank order; a cursor per list skips rows another capability took,
 * and bucket sizes are live counters.
 *
 * How ranking stays cheap:
 * - Rows are renamed by their tie-break rank (one global sort), so inside a list "equal score,
 *   better tie-break first" is just "smaller number first", and per-row state (taken, styles,
 *   source) is kept by rank.
 * - A counting pass per capability reads the score column sequentially and sizes one segment
 *   per (bucket, score bin), bin = round(score * 100), best first.
 * - A segment is put in final order when a cursor first enters it: a native numeric sort of
 *   its ranks when every score in its bin is equal (always, for scores of up to two
 *   decimals or the released scorer's integers), else by exact score, then rank.
 */
export function selectMmssr(pool: ScoredPool, options: SelectOptions): SelectionResult {
  const resolved = resolveSelectOptions(pool.size, options);
  return new MmssrSelection(pool, resolved).run();
}

/**
 * Score bins per unit of score. round(score * 100) is monotone in score and gives every
 * two-decimal score its own bin; 501 bins x ~180 buckets of counters stay in L2 cache,
 * which the counting pass's scattered increments need (5001 bins ran 2x slower).
 */
const BIN_SCALE = 100;
const NUM_BINS = 5 * BIN_SCALE + 1;

/** Per capability: its eligible rows (as tie ranks) in per-bucket lists, grouped by score bin. */
interface CapabilityLists {
  capability: number;
  /** ranks; bucket b owns items[segStart[b * NUM_BINS] .. segStart[(b + 1) * NUM_BINS]) */
  items: Uint32Array;
  /** start of segment (bucket, bin) at segStart[bucket * NUM_BINS + bin]; bin 0 = best scores */
  segStart: Uint32Array;
  /** 1 when a bin holds more than one distinct score */
  binMixed: Uint8Array;
  /** next position in each bucket's list that may still hold a remaining row */
  cursor: Uint32Array;
  /** bin of the segment each bucket's sorting has reached */
  segBin: Uint32Array;
  /** items before this position of each bucket's list are in final rank order */
  sortedTo: Uint32Array;
  /** rows of each bucket still in the pool */
  remaining: Int32Array;
}

class MmssrSelection {
  private readonly numSources: number;
  private readonly numBuckets: number;
  /** rank of each bucket's name in ascending string order (the size tie-break) */
  private readonly bucketNameRank: Int32Array;
  private readonly lists: CapabilityLists[] = [];
  private readonly indices: Uint32Array;
  private readonly pickedBy: Uint8Array;
  private readonly pickedStyle: Uint8Array;
  private count = 0;
  /** rows in tie-break order; row `order[r]` has rank r */
  private order: Uint32Array = new Uint32Array(0);
  private rankOf: Uint32Array = new Uint32Array(0);
  /** by row: bit k = the row sits in the lists of this.lists[k] */
  private eligibleLists = new Uint16Array(0);
  /** by rank: the row of that rank has been selected */
  private taken = new Uint8Array(0);

  constructor(
    private readonly pool: ScoredPool,
    private readonly options: ResolvedSelectOptions,
  ) {
    this.numSources = pool.sources.length;
    this.numBuckets = NUM_STYLES * this.numSources;
    this.bucketNameRank = this.rankBucketNames();
    const capacity = Math.min(options.budget, pool.size);
    this.indices = new Uint32Array(capacity);
    this.pickedBy = new Uint8Array(capacity);
    this.pickedStyle = new Uint8Array(capacity);
  }

  run(): SelectionResult {
    const { budget, capabilities } = this.options;
    let rounds = 0;
    const n = this.pool.size;
    if (budget > 0 && n > 0) {
      this.order = tieOrder(this.pool);
      this.rankOf = new Uint32Array(n);
      for (let r = 0; r < n; r++) this.rankOf[this.order[r]] = r;
      this.eligibleLists = new Uint16Array(n);
      for (const c of capabilities) this.lists.push(this.buildLists(c));
      this.taken = new Uint8Array(n);
      rounds = this.loop();
    }
    const indices = new Uint32Array(this.count);
    for (let k = 0; k < this.count; k++) indices[k] = this.order[this.indices[k]];
    return {
      budget,
      indices,
      pickedBy: this.pickedBy.slice(0, this.count),
      pickedStyle: this.pickedStyle.slice(0, this.count),
      rounds,
    };
  }

  private rankBucketNames(): Int32Array {
    const names: { b: number; name: string }[] = [];
    for (let s = 0; s < NUM_STYLES; s++)
      for (let src = 0; src < this.numSources; src++)
        names.push({ b: s * this.numSources + src, name: bucketName(STYLES[s], this.pool.sources[src]) });
    names.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    const rank = new Int32Array(this.numBuckets);
    names.forEach((x, r) => {
      rank[x.b] = r;
    });
    return rank;
  }

  /** Descending bin of a score in 0..5 (bin 0 holds the best scores). */
  private static binOf(score: number): number {
    const bin = Math.round(score * BIN_SCALE);
    return NUM_BINS - 1 - Math.min(Math.max(bin, 0), NUM_BINS - 1);
  }

  private buildLists(capability: number): CapabilityLists {
    const { numSources, numBuckets, eligibleLists } = this;
    const { styleMask, sourceIndex } = this.pool;
    const { threshold, allowedStyleMask } = this.options;
    const scores = this.pool.scores[capability];
    const n = scores.length;
    const listBit = 1 << this.lists.length;
    const segStart = new Uint32Array(numBuckets * NUM_BINS + 1);
    const binValue = new Float64Array(NUM_BINS).fill(Number.NaN);
    const binMixed = new Uint8Array(NUM_BINS);
    for (let i = 0; i < n; i++) {
      const v = scores[i];
      if (!(v > threshold)) continue; // NaN never passes
      const bits0 = styleMask[i] & allowedStyleMask;
      if (bits0 === 0) continue;
      eligibleLists[i] |= listBit;
      const bin = MmssrSelection.binOf(v);
      if (binValue[bin] !== v) {
        if (Number.isNaN(binValue[bin])) binValue[bin] = v;
        else binMixed[bin] = 1;
      }
      const src = sourceIndex[i];
      for (let bits = bits0; bits !== 0; bits &= bits - 1)
        segStart[((31 - Math.clz32(bits & -bits)) * numSources + src) * NUM_BINS + bin + 1]++;
    }
    for (let k = 1; k < segStart.length; k++) segStart[k] += segStart[k - 1];
    const cursor = new Uint32Array(numBuckets);
    const remaining = new Int32Array(numBuckets);
    for (let b = 0; b < numBuckets; b++) {
      cursor[b] = segStart[b * NUM_BINS];
      remaining[b] = segStart[(b + 1) * NUM_BINS] - segStart[b * NUM_BINS];
    }
    // Scatter pass: every eligible row, as its tie rank, into each of its segments. Rows are
    // visited in row order, so a segment is not in rank order yet (sortSegmentAt does that).
    const { rankOf } = this;
    const fill = segStart.slice(0, segStart.length - 1);
    const items = new Uint32Array(segStart[segStart.length - 1]);
    for (let i = 0; i < n; i++) {
      const v = scores[i];
      if (!(v > threshold)) continue;
      const bits0 = styleMask[i] & allowedStyleMask;
      if (bits0 === 0) continue;
      const bin = MmssrSelection.binOf(v);
      const r = rankOf[i];
      const src = sourceIndex[i];
      for (let bits = bits0; bits !== 0; bits &= bits - 1)
        items[fill[((31 - Math.clz32(bits & -bits)) * numSources + src) * NUM_BINS + bin]++] = r;
    }
    return {
      capability,
      items,
      segStart,
      binMixed,
      cursor,
      segBin: new Uint32Array(numBuckets),
      sortedTo: cursor.slice(),
      remaining,
    };
  }

  /** Puts the segment of bucket b that starts at `at` into final rank order. */
  private sortSegmentAt(lists: CapabilityLists, b: number, at: number): void {
    const { segStart, items, segBin } = lists;
    // Cursors only move forward, so the bucket's current bin only moves forward too.
    const base = b * NUM_BINS;
    let bin = segBin[b];
    while (segStart[base + bin + 1] <= at) bin++;
    segBin[b] = bin;
    const end = segStart[base + bin + 1];
    const len = end - at;
    if (len > 1) {
      if (lists.binMixed[bin] === 0) {
        // Equal scores: rank order is the tie-break. Segments are small (about a dozen items
        // at 2.6M rows), where an in-place insertion sort beats a native sort call.
        if (len <= 32) insertionSort(items, at, end);
        else items.subarray(at, end).sort();
      } else {
        const scores = this.pool.scores[lists.capability];
        const { order } = this;
        const seg = Array.from(items.subarray(at, end));
        seg.sort((x, y) => scores[order[y]] - scores[order[x]] || x - y);
        items.set(seg, at);
      }
    }
    lists.sortedTo[b] = end;
  }

  /** The outer loop of MMSSR.md: round robin over active capabilities with drop-out. */
  private loop(): number {
    const { budget, capabilityWeights } = this.options;
    let active = this.lists.map((_, k) => k);
    let rounds = 0;
    while (this.count < budget && active.length > 0) {
      rounds++;
      const left = budget - this.count;
      let weightSum = 0;
      if (capabilityWeights) for (const k of active) weightSum += capabilityWeights[k];
      const evenShare = Math.max(Math.floor(left / active.length), 1);
      const dropped = new Set<number>();
      for (const k of active) {
        const share = capabilityWeights
          ? Math.max(Math.floor((left * capabilityWeights[k]) / weightSum), 1)
          : evenShare;
        const n = Math.min(share, budget - this.count);
        if (this.spreadOverStyles(this.lists[k], n) === 0) dropped.add(k);
        if (this.count >= budget) break;
      }
      if (dropped.size > 0) active = active.filter((k) => !dropped.has(k));
    }
    return rounds;
  }

  /** spread_over_styles of MMSSR.md: smallest buckets first, unused quota carried on. */
  private spreadOverStyles(lists: CapabilityLists, n: number): number {
    const { remaining } = lists;
    const { styleWeights } = this.options;
    const present: number[] = [];
    for (let b = 0; b < this.numBuckets; b++) if (remaining[b] > 0) present.push(b);
    if (present.length === 0) return 0;
    const rank = this.bucketNameRank;
    present.sort((a, b) => remaining[a] - remaining[b] || rank[a] - rank[b]);

    let weightSum = 0;
    if (styleWeights) for (const b of present) weightSum += styleWeights[Math.floor(b / this.numSources)];
    const evenQuota = Math.max(Math.floor(n / present.length), 1);
    let carry = 0;
    let picked = 0;
    for (const b of present) {
      if (picked >= n) break;
      const quota = styleWeights
        ? Math.max(Math.floor((n * styleWeights[Math.floor(b / this.numSources)]) / weightSum), 1)
        : evenQuota;
      const free = remaining[b]; // already excludes rows picked earlier in this call
      // Deliberate difference from the pseudocode, which has no `n - picked` here: when an
      // earlier bucket already took all of a later bucket's rows (a multi-style row), that
      // bucket passes its whole quota on as carry and the next one could take more than n,
      // even more than the budget. Capping at n keeps MMSSR.md's "never more than B".
      const take = Math.min(quota + carry, free, n - picked);
      carry = Math.max(quota + carry - free, 0);
      this.takeFromBucket(lists, b, take);
      picked += take;
    }
    return picked;
  }

  private takeFromBucket(lists: CapabilityLists, b: number, take: number): void {
    const { items, cursor, sortedTo } = lists;
    const style = Math.floor(b / this.numSources);
    let at = cursor[b];
    for (let t = 0; t < take; t++) {
      for (;;) {
        if (at === sortedTo[b]) this.sortSegmentAt(lists, b, at);
        if (this.taken[items[at]] === 0) break;
        at++;
      }
      this.pick(items[at], lists.capability, style);
      at++;
    }
    cursor[b] = at;
  }

  /** `rank` leaves the pool: out of every bucket list it is in, for every capability. */
  private pick(rank: number, capability: number, style: number): void {
    this.taken[rank] = 1;
    const k = this.count++;
    this.indices[k] = rank;
    this.pickedBy[k] = capability;
    this.pickedStyle[k] = style;
    // Row attributes stay indexed by row: looking up the few picked rows costs less than
    // permuting whole columns into rank order.
    const row = this.order[rank];
    const base = this.pool.sourceIndex[row];
    const mask = this.pool.styleMask[row] & this.options.allowedStyleMask;
    const { numSources } = this;
    for (let lists = this.eligibleLists[row]; lists !== 0; lists &= lists - 1) {
      const other = this.lists[31 - Math.clz32(lists & -lists)];
      for (let bits = mask; bits !== 0; bits &= bits - 1)
        other.remaining[(31 - Math.clz32(bits & -bits)) * numSources + base]--;
    }
  }
}

function insertionSort(a: Uint32Array, from: number, to: number): void {
  for (let i = from + 1; i < to; i++) {
    const v = a[i];
    let j = i - 1;
    while (j >= from && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}
