import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  bucketName,
  CAPABILITY_IDS,
  type CapabilityId,
  NUM_CAPABILITIES,
  NUM_STYLES,
  STYLES,
} from "../domain/taxonomy.js";
import { createRandom, type Random } from "../util/random.js";
import { type BudgetCaps, BudgetGovernor } from "./budget-governor.js";
import { type DecisionReason, ineligibleReason } from "./decision-reason.js";
import { type ResolvedSelectOptions, resolveSelectOptions } from "./resolve-select-options.js";
import type { SelectOptions } from "./select-options.js";
import { POLICY_DEFAULTS } from "./selection-policy.js";
import { tieHash } from "./tie-break.js";

/**
 * Continuous mmSSR selection (DESIGN.md "continuous" mode, issue 4): every sample of an
 * unbounded stream is decided within a bounded delay, with bounded memory, so that the admitted
 * share tracks `ratio` and the admitted samples are the ones the offline selection of
 * MMSSR.md would pick from everything seen.
 *
 * The algorithm
 * -------------
 * 1. Reference sketch. A uniform reservoir (Vitter's algorithm R, seeded PRNG) keeps at most
 *    `referenceSize` samples of everything seen: their 14 scores, style mask, image source, mean
 *    score and tie hash (about 150 bytes each). It is a sketch of the joint distribution of
 *    scores, styles and sources; per-capability score quantiles per bucket are read off it.
 *
 * 2. Running thresholds. Every so often (each `refreshEvery` arrivals; more often while the
 *    stream is young) the offline algorithm of MMSSR.md is replayed on the reservoir, each
 *    reservoir row standing for w = H / |reservoir| samples, where H = records seen so far
 *    (or `horizon`). The replay is the exact loop of the offline selector (round robin over
 *    capabilities with drop-out, per capability the spread over buckets smallest-first with
 *    quota and carry, rows leaving every list once taken) with masses instead of counts, so
 *    budget B = floor(ratio * H), quotas and bucket sizes are in units of real samples: the
 *    replay reproduces the offline choice at the stream's scale, not at the reservoir's (a
 *    plain offline run on a 20k reservoir at 5% would give each bucket a quota of 1 where the
 *    stream's offline run gives 3 or more). From the replay, for each (capability, bucket):
 *    - the rank key (score, then mean score, then tie hash, the offline tie-break) of the last
 *      reservoir row that capability took from that bucket: a sample that ranks at or above it
 *      is one the offline selection would take (every untaken row ranked above it was taken);
 *    - "all": the bucket's list was used up (a small bucket, filled completely by the offline
 *      spread): any eligible sample of it is taken;
 *    - "none": that capability took nothing there;
 *    - a bucket absent from the reservoir is a very small one: taken, as the offline spread
 *      fills the smallest buckets first.
 *    On the reservoir itself this rule admits exactly the replay's selection.
 *
 * 3. Delay. Arriving samples wait in one pending buffer for at most `maxDelayMs` or until
 *    `maxPending` are waiting; then the whole buffer is decided as one batch (the batch id is
 *    the decision's window id). The per-bucket quotas live in the thresholds (step 2), not in
 *    separate per-bucket queues: the buffer only gives the feedback step a batch to choose in. They enter the reference sketch on arrival, so each batch is judged with
 *    thresholds that have already seen it (for the first batch the replay is exactly the
 *    offline selection of that batch).
 *
 * 4. Feedback. A batch of n samples should admit T = ratio * n + feedback * deficit, where
 *    deficit = ratio * decided - admitted before the batch. The threshold rule gives a set C of
 *    candidates; when |C| is outside T +- tolerance * sqrt(ratio * n), the candidates closest to
 *    their threshold (smallest margin, largest bucket first) are dropped, or the best near
 *    misses (smallest shortfall, smallest bucket first) are added, so admitted / decided
 *    converges to ratio while the thresholds do the choosing. Absolute caps (in total, per hour
 *    of the `now` clock) only ever drop. A sample not admitted says why (`reason`): not eligible
 *    (`no-style`, `below-threshold`), not taken by the threshold rule and feedback (`budget`),
 *    or taken and then dropped by a cap (`cap-total`, `cap-hour`: the one that left less room).
 *
 * 5. Policy changes. setPolicy() replaces the policy-dependent options (ratio, capabilities,
 *    threshold, weights, maxDelayMs, caps) while the stream runs. The reservoir and the counts
 *    stay; the thresholds are refreshed at the next batch decision (the samples still pending
 *    are decided under the new policy), and a new maxDelayMs moves the due time of the pending
 *    batch at once. A new ratio restarts the feedback basis (step 4 counts decided / admitted
 *    from the change on), so the new ratio is tracked from then on instead of paying back the
 *    old ratio's history. The caps' counts carry over (what was admitted still counts).
 *
 * Deterministic: the same inputs in the same order with the same `now` values and options give
 * the same decisions. Memory: O(referenceSize + maxPending), independent of the stream length.
 */

/** What the selector reads from a sample: the fields of the scored-pool interchange format. */
export interface SelectionRow {
  id: string;
  imageSource: string;
  /** bit s = STYLES[s] */
  styleMask: number;
  /** 14 scores in CAPABILITIES order; NaN = missing */
  scores: ArrayLike<number>;
}

export interface ContinuousSelectorOptions
  extends Pick<SelectOptions, "capabilities" | "threshold" | "capabilityWeights" | "styleWeights"> {
  /** Share of incoming samples to admit, in (0, 1). */
  ratio: number;
  /** Longest a sample waits for its decision, in the clock of `now` (default 1000: POLICY_DEFAULTS). */
  maxDelayMs?: number;
  /** Most samples waiting at once; reaching it decides the batch at once (default 1000). */
  maxPending?: number;
  /** Rows of the reference reservoir (default 50,000). */
  referenceSize?: number;
  /** Arrivals between two threshold refreshes once the stream is past it (default 5,000). */
  refreshEvery?: number;
  /** Pool size the thresholds emulate (default: the number of samples seen so far). */
  horizon?: number;
  /** Share of the running admission deficit a batch corrects, 0..1 (default 0.5). */
  feedback?: number;
  /** Band around a batch's target, in standard deviations sqrt(ratio * n) (default 2). */
  tolerance?: number;
  /** Absolute caps on admissions: in total, and per hour of the `now` clock. */
  maxAdmitted?: { total?: number; perHour?: number };
  /** Seed of the reservoir's PRNG (default 1). */
  seed?: number;
}

/** The options a selection policy sets, which setPolicy() may change while the stream runs. */
export type ContinuousPolicyOptions = Pick<
  ContinuousSelectorOptions,
  "ratio" | "capabilities" | "threshold" | "capabilityWeights" | "styleWeights" | "maxDelayMs" | "maxAdmitted"
>;

export interface ContinuousDecision<T> {
  item: T;
  selected: boolean;
  /** capability and bucket (style+image_source) that admitted it, when selected */
  pickedBy?: CapabilityId;
  bucket?: string;
  /** why it was not selected (absent when selected) */
  reason?: DecisionReason;
  /** 0-based number of the batch it was decided in */
  batch: number;
  /** 0-based arrival number */
  seq: number;
  arrivedAt: number;
  decidedAt: number;
}

export interface ContinuousSelectorStats {
  seen: number;
  decided: number;
  admitted: number;
  pending: number;
  batches: number;
  refreshes: number;
  referenceRows: number;
  /** capacity of the reference reservoir (referenceSize) */
  referenceSize: number;
}

/** Per (capability, bucket) threshold states. */
const UNSEEN = 0; // bucket not in the reservoir: a very small bucket, taken
const CUT = 1; // taken when the rank key is at or above the cut
const NONE = 2; // this capability took nothing from this bucket
const ALL = 3; // the list was used up: every eligible sample is taken

const BIN_SCALE = 100;
const NUM_BINS = 5 * BIN_SCALE + 1;
const EPS = 1e-9;

interface Pending<T> {
  item: T;
  row: SelectionRow;
  src: number;
  mean: number;
  hash: number;
  seq: number;
  arrivedAt: number;
}

interface Verdict {
  pass: boolean;
  /** has a score above the threshold in some capability and an allowed style: offline could pick it */
  eligible: boolean;
  /** best score - cut score over the (capability, bucket) pairs (+5 for small buckets) */
  margin: number;
  cap: number;
  bucket: number;
}

function bad(message: string): MmssrError {
  return new MmssrError(ERROR_CODES.BAD_OPTIONS, message);
}

/** The policy-dependent options, checked: what the constructor and setPolicy() take over. */
interface CheckedPolicy {
  resolved: ResolvedSelectOptions;
  ratio: number;
  maxDelayMs: number;
  caps: BudgetCaps;
}

function positive(name: string, v: number | undefined, dflt: number, integer: boolean): number {
  const x = v ?? dflt;
  if (typeof x !== "number" || !(x > 0) || (integer && !Number.isSafeInteger(x)))
    throw bad(`${name}: must be a ${integer ? "whole " : ""}number > 0, got ${String(x)}`);
  return x;
}

/** Throws MmssrError(BAD_OPTIONS) naming the option at fault. */
function checkPolicy(options: ContinuousPolicyOptions): CheckedPolicy {
  const resolved = resolveSelectOptions(0, {
    ratio: options.ratio,
    capabilities: options.capabilities,
    threshold: options.threshold,
    capabilityWeights: options.capabilityWeights,
    styleWeights: options.styleWeights,
  });
  const maxDelayMs = positive("maxDelayMs", options.maxDelayMs, POLICY_DEFAULTS.maxDelayMs, false);
  const caps: BudgetCaps = { maxTotal: options.maxAdmitted?.total, maxPerHour: options.maxAdmitted?.perHour };
  for (const [name, v] of [
    ["total", caps.maxTotal],
    ["perHour", caps.maxPerHour],
  ] as const)
    if (v !== undefined && !(typeof v === "number" && v >= 0))
      throw bad(`maxAdmitted.${name}: caps must be >= 0, got ${String(v)}`);
  return { resolved, ratio: options.ratio, maxDelayMs, caps };
}

function meanOf(scores: ArrayLike<number>): number {
  let sum = 0;
  let count = 0;
  for (let c = 0; c < NUM_CAPABILITIES; c++) {
    const v = scores[c];
    if (!Number.isNaN(v)) {
      sum += v;
      count++;
    }
  }
  return count > 0 ? sum / count : Number.NEGATIVE_INFINITY;
}

export class ContinuousSelector<T> {
  // the policy-dependent options (setPolicy)
  private resolved: ResolvedSelectOptions;
  private ratio: number;
  private maxDelayMs: number;
  private caps: BudgetCaps;
  private readonly maxPending: number;
  private readonly refSize: number;
  private readonly refreshEvery: number;
  private readonly feedback: number;
  private readonly tolerance: number;
  private readonly horizon: number | undefined;
  /** the absolute caps (shared code with window mode: budget-governor.ts) */
  private readonly governor: BudgetGovernor;
  private readonly rng: Random;

  // image sources, dictionary-encoded; bucket key = src * NUM_STYLES + style
  private readonly sources: string[] = [];
  private readonly sourceLookup = new Map<string, number>();

  // reference reservoir, row-major scores
  private refCount = 0;
  private readonly refScores: Float64Array;
  private readonly refMean: Float64Array;
  private readonly refHash: Float64Array;
  private readonly refMask: Uint16Array;
  private readonly refSrc: Uint32Array;

  // thresholds of the last refresh, indexed [k * numBucketsAtRefresh + bucket]
  private thrBuckets = 0;
  private thrState = new Uint8Array(0);
  private thrScore = new Float64Array(0);
  private thrMean = new Float64Array(0);
  private thrHash = new Float64Array(0);
  /** reference mass of each bucket at the last refresh (smallest-first ordering) */
  private bucketMass = new Float64Array(0);
  private nextRefreshAt = 0;

  private pending: Pending<T>[] = [];
  private seen = 0;
  private decided = 0;
  private admitted = 0;
  /** the feedback basis: decided / admitted since the ratio last changed */
  private decidedAtRatio = 0;
  private admittedAtRatio = 0;
  private batches = 0;
  private refreshes = 0;

  constructor(
    options: ContinuousSelectorOptions,
    private readonly toRow: (item: T) => SelectionRow,
  ) {
    const policy = checkPolicy(options);
    this.resolved = policy.resolved;
    this.ratio = policy.ratio;
    this.maxDelayMs = policy.maxDelayMs;
    this.caps = policy.caps;
    this.maxPending = positive("maxPending", options.maxPending, 1000, true);
    this.refSize = positive("referenceSize", options.referenceSize, 50_000, true);
    this.refreshEvery = positive("refreshEvery", options.refreshEvery, 5000, true);
    this.horizon = options.horizon === undefined ? undefined : positive("horizon", options.horizon, 1, true);
    this.feedback = options.feedback ?? 0.5;
    if (!(this.feedback >= 0 && this.feedback <= 1))
      throw bad(`feedback: must be in 0..1, got ${this.feedback}`);
    this.tolerance = options.tolerance ?? 2;
    if (!(this.tolerance >= 0)) throw bad(`tolerance: must be >= 0, got ${this.tolerance}`);
    this.governor = new BudgetGovernor({ ...this.caps });
    this.rng = createRandom(options.seed ?? 1);
    const r = this.refSize;
    this.refScores = new Float64Array(r * NUM_CAPABILITIES);
    this.refMean = new Float64Array(r);
    this.refHash = new Float64Array(r);
    this.refMask = new Uint16Array(r);
    this.refSrc = new Uint32Array(r);
  }

  /**
   * A new policy: ratio, capabilities, threshold, weights, maxDelayMs and caps as the
   * constructor takes them (an absent option is its default, not the old value), checked the
   * same way: MmssrError(BAD_OPTIONS) naming the option at fault, the selector unchanged. It
   * applies at the next batch decision, which refreshes the thresholds first (the pending
   * samples are decided under it); a new maxDelayMs moves nextDueAt() at once (a caller with a
   * timer re-arms it). A new ratio restarts the feedback basis; the caps' counts carry over.
   */
  setPolicy(options: ContinuousPolicyOptions): void {
    const policy = checkPolicy(options);
    this.governor.setCaps({ ...policy.caps });
    this.caps = policy.caps;
    this.resolved = policy.resolved;
    if (policy.ratio !== this.ratio) {
      this.ratio = policy.ratio;
      this.decidedAtRatio = 0;
      this.admittedAtRatio = 0;
    }
    this.maxDelayMs = policy.maxDelayMs;
    this.nextRefreshAt = 0; // refresh at the next batch
  }

  /** Takes one sample that arrived at `now`; returns the decisions that are due (maybe none). */
  decide(item: T, now: number): ContinuousDecision<T>[] {
    const row = this.toRow(item);
    let src = this.sourceLookup.get(row.imageSource);
    if (src === undefined) {
      src = this.sources.length;
      this.sources.push(row.imageSource);
      this.sourceLookup.set(row.imageSource, src);
    }
    const p: Pending<T> = {
      item,
      row,
      src,
      mean: meanOf(row.scores),
      hash: tieHash(row.id),
      seq: this.seen,
      arrivedAt: now,
    };
    this.seen++;
    this.sketch(p);
    this.pending.push(p);
    if (this.pending.length >= this.maxPending) return this.decideBatch(now);
    return this.poll(now);
  }

  /** Decides the pending batch when its oldest sample is due; call it at nextDueAt(). */
  poll(now: number): ContinuousDecision<T>[] {
    const due = this.nextDueAt();
    if (due === undefined || now < due) return [];
    return this.decideBatch(now);
  }

  /** Decides every pending sample now (end of stream, shutdown). */
  flush(now: number): ContinuousDecision<T>[] {
    return this.pending.length === 0 ? [] : this.decideBatch(now);
  }

  /** When the oldest pending sample must be decided, or undefined when none is pending. */
  nextDueAt(): number | undefined {
    return this.pending.length === 0 ? undefined : this.pending[0].arrivedAt + this.maxDelayMs;
  }

  get stats(): ContinuousSelectorStats {
    return {
      seen: this.seen,
      decided: this.decided,
      admitted: this.admitted,
      pending: this.pending.length,
      batches: this.batches,
      refreshes: this.refreshes,
      referenceRows: this.refCount,
      referenceSize: this.refSize,
    };
  }

  /** Algorithm R: the reservoir stays a uniform sample of everything seen. */
  private sketch(p: Pending<T>): void {
    let slot: number;
    if (this.refCount < this.refSize) slot = this.refCount++;
    else {
      slot = this.rng.int(this.seen);
      if (slot >= this.refSize) return;
    }
    const base = slot * NUM_CAPABILITIES;
    for (let c = 0; c < NUM_CAPABILITIES; c++) this.refScores[base + c] = p.row.scores[c];
    this.refMean[slot] = p.mean;
    this.refHash[slot] = p.hash;
    this.refMask[slot] = p.row.styleMask;
    this.refSrc[slot] = p.src;
  }

  private decideBatch(now: number): ContinuousDecision<T>[] {
    if (this.seen >= this.nextRefreshAt || this.sources.length * NUM_STYLES > this.thrBuckets) {
      this.refresh();
      const step = Math.min(this.refreshEvery, Math.max(this.maxPending, Math.floor(this.seen / 4)));
      this.nextRefreshAt = this.seen + step;
    }
    const batch = this.pending;
    this.pending = [];
    const n = batch.length;
    const verdicts = batch.map((p) => this.judge(p));
    const admit = verdicts.map((v) => v.pass);
    let count = 0;
    for (const a of admit) if (a) count++;

    // Feedback toward ratio: drop the weakest candidates or add the best near misses.
    const expected = this.ratio * n;
    const target = expected + this.feedback * (this.ratio * this.decidedAtRatio - this.admittedAtRatio);
    const band = this.tolerance * Math.sqrt(Math.max(expected, 1));
    const order = (a: number, b: number, sign: number): number =>
      sign * (verdicts[a].margin - verdicts[b].margin) ||
      sign * (this.massOf(verdicts[b].bucket) - this.massOf(verdicts[a].bucket)) ||
      batch[a].seq - batch[b].seq;
    if (count > target + band) {
      const drop = count - Math.max(0, Math.ceil(target + band));
      const cands = [...admit.keys()].filter((i) => admit[i]).sort((a, b) => order(a, b, 1));
      for (let j = 0; j < drop; j++) admit[cands[j]] = false;
      count -= drop;
    } else if (count < target - band) {
      const misses = [...admit.keys()]
        .filter((i) => !admit[i] && verdicts[i].eligible)
        .sort((a, b) => order(a, b, -1));
      const add = Math.min(Math.floor(target - band) - count, misses.length);
      for (let j = 0; j < add; j++) admit[misses[j]] = true;
      count += add;
    }

    // Absolute caps only ever drop (weakest first).
    const wanted = admit.slice();
    let capReason: DecisionReason = "budget";
    const room = this.governor.allowance(count, now);
    if (count > room) {
      capReason = this.bindingCap(now);
      const cands = [...admit.keys()].filter((i) => admit[i]).sort((a, b) => order(a, b, 1));
      for (let j = 0; j < count - Math.max(room, 0); j++) admit[cands[j]] = false;
      count = Math.max(room, 0);
    }

    const batchNo = this.batches++;
    const out: ContinuousDecision<T>[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const p = batch[i];
      const v = verdicts[i];
      const d: ContinuousDecision<T> = {
        item: p.item,
        selected: admit[i],
        batch: batchNo,
        seq: p.seq,
        arrivedAt: p.arrivedAt,
        decidedAt: now,
      };
      if (admit[i]) {
        if (v.cap >= 0) {
          d.pickedBy = CAPABILITY_IDS[this.resolved.capabilities[v.cap]];
          const b = v.bucket;
          d.bucket = bucketName(STYLES[b % NUM_STYLES], this.sources[Math.floor(b / NUM_STYLES)]);
        }
      } else if (wanted[i]) d.reason = capReason;
      else d.reason = ineligibleReason(p.row.scores, p.row.styleMask, this.resolved) ?? "budget";
      out[i] = d;
    }
    this.decided += n;
    this.admitted += count;
    this.decidedAtRatio += n;
    this.admittedAtRatio += count;
    this.governor.record(count, now);
    return out;
  }

  /** The cap that leaves less room at `now` (maxTotal on a tie): the reason of what the caps drop. */
  private bindingCap(now: number): "cap-total" | "cap-hour" {
    const { maxTotal, maxPerHour } = this.caps;
    const total = maxTotal === undefined ? Number.POSITIVE_INFINITY : maxTotal - this.governor.selectedTotal;
    const hour =
      maxPerHour === undefined ? Number.POSITIVE_INFINITY : maxPerHour - this.governor.selectedInHour(now);
    return total <= hour ? "cap-total" : "cap-hour";
  }

  private massOf(bucket: number): number {
    return bucket >= 0 && bucket < this.bucketMass.length ? this.bucketMass[bucket] : 0;
  }

  /** The threshold rule of step 2 for one sample, with its margin for the feedback step. */
  private judge(p: Pending<T>): Verdict {
    const { capabilities, threshold, allowedStyleMask } = this.resolved;
    const scores = p.row.scores;
    const mask = p.row.styleMask & allowedStyleMask;
    const verdict: Verdict = {
      pass: false,
      eligible: false,
      margin: Number.NEGATIVE_INFINITY,
      cap: -1,
      bucket: -1,
    };
    if (mask === 0) return verdict; // no bucket: never selected (MMSSR.md)
    const nb = this.thrBuckets;
    for (let k = 0; k < capabilities.length; k++) {
      const v = scores[capabilities[k]];
      if (!(v > threshold)) continue;
      verdict.eligible = true;
      for (let bits = mask; bits !== 0; bits &= bits - 1) {
        const b = p.src * NUM_STYLES + (31 - Math.clz32(bits & -bits));
        const at = k * nb + b;
        const state = b < nb ? this.thrState[at] : UNSEEN;
        let pass = false;
        let margin: number;
        if (state === UNSEEN || state === ALL) {
          pass = true;
          margin = 5 + v;
        } else if (state === NONE) {
          margin = Number.NEGATIVE_INFINITY;
        } else {
          const s = this.thrScore[at];
          margin = v - s;
          pass =
            v > s ||
            (v === s &&
              (p.mean > this.thrMean[at] || (p.mean === this.thrMean[at] && p.hash <= this.thrHash[at])));
        }
        // pickedBy: the first capability (in order) that admits, in its smallest bucket
        if (pass) {
          if (!verdict.pass) {
            verdict.pass = true;
            verdict.margin = margin;
            verdict.cap = k;
            verdict.bucket = b;
          } else {
            if (margin > verdict.margin) verdict.margin = margin;
            if (verdict.cap === k && this.massOf(b) < this.massOf(verdict.bucket)) verdict.bucket = b;
          }
        } else if (!verdict.pass && margin > verdict.margin) {
          verdict.margin = margin;
          verdict.cap = k;
          verdict.bucket = b;
        }
      }
    }
    return verdict;
  }

  /** Step 2: replays the offline selection on the reservoir at the stream's scale. */
  private refresh(): void {
    this.refreshes++;
    const { capabilities, threshold, allowedStyleMask, capabilityWeights, styleWeights } = this.resolved;
    const R = this.refCount;
    const numSources = this.sources.length;
    const nb = numSources * NUM_STYLES;
    const K = capabilities.length;
    this.thrBuckets = nb;
    this.thrState = new Uint8Array(K * nb);
    this.thrScore = new Float64Array(K * nb);
    this.thrMean = new Float64Array(K * nb);
    this.thrHash = new Float64Array(K * nb);
    this.bucketMass = new Float64Array(nb);
    if (R === 0) return;
    const H = Math.max(this.horizon ?? this.seen, R);
    const w = H / R;
    const budget = Math.floor(this.ratio * H);
    const { refScores, refMean, refHash, refMask, refSrc } = this;

    // Tie order of the reservoir: mean desc, hash asc. rank[r] = position.
    const byTie = Array.from({ length: R }, (_, r) => r).sort(
      (a, b) => refMean[b] - refMean[a] || refHash[a] - refHash[b] || 0,
    );
    const rank = new Uint32Array(R);
    for (let i = 0; i < R; i++) rank[byTie[i]] = i;

    for (let r = 0; r < R; r++)
      for (let bits = refMask[r] & allowedStyleMask; bits !== 0; bits &= bits - 1)
        this.bucketMass[refSrc[r] * NUM_STYLES + (31 - Math.clz32(bits & -bits))] += w;

    // Per capability: bucket lists in rank order (score desc, then tie order).
    const listStart: Uint32Array[] = [];
    const listItems: Uint32Array[] = [];
    const remaining: Float64Array[] = [];
    const eligible = new Uint32Array(R); // bit k: row is in capability k's lists
    for (let k = 0; k < K; k++) {
      const c = capabilities[k];
      const binCount = new Uint32Array(NUM_BINS + 1);
      const binValue = new Float64Array(NUM_BINS).fill(Number.NaN);
      const binMixed = new Uint8Array(NUM_BINS);
      let total = 0;
      for (let r = 0; r < R; r++) {
        const v = refScores[r * NUM_CAPABILITIES + c];
        if (!(v > threshold) || (refMask[r] & allowedStyleMask) === 0) continue;
        eligible[r] |= 1 << k;
        const bin = NUM_BINS - 1 - Math.min(Math.max(Math.round(v * BIN_SCALE), 0), NUM_BINS - 1);
        if (binValue[bin] !== v) {
          if (Number.isNaN(binValue[bin])) binValue[bin] = v;
          else binMixed[bin] = 1;
        }
        binCount[bin + 1]++;
        total++;
      }
      for (let b = 1; b <= NUM_BINS; b++) binCount[b] += binCount[b - 1];
      const sorted = new Uint32Array(total);
      const fill = binCount.slice(0, NUM_BINS);
      for (let i = 0; i < R; i++) {
        const r = byTie[i];
        if ((eligible[r] & (1 << k)) === 0) continue;
        const v = refScores[r * NUM_CAPABILITIES + c];
        const bin = NUM_BINS - 1 - Math.min(Math.max(Math.round(v * BIN_SCALE), 0), NUM_BINS - 1);
        sorted[fill[bin]++] = r;
      }
      for (let bin = 0; bin < NUM_BINS; bin++) {
        if (binMixed[bin] === 0) continue;
        const seg = Array.from(sorted.subarray(binCount[bin], binCount[bin + 1]));
        seg.sort(
          (a, b) =>
            refScores[b * NUM_CAPABILITIES + c] - refScores[a * NUM_CAPABILITIES + c] || rank[a] - rank[b],
        );
        sorted.set(seg, binCount[bin]);
      }
      // scatter into bucket lists, keeping that order
      const start = new Uint32Array(nb + 1);
      for (const r of sorted)
        for (let bits = refMask[r] & allowedStyleMask; bits !== 0; bits &= bits - 1)
          start[refSrc[r] * NUM_STYLES + (31 - Math.clz32(bits & -bits)) + 1]++;
      for (let b = 1; b <= nb; b++) start[b] += start[b - 1];
      const items = new Uint32Array(start[nb]);
      const put = start.slice(0, nb);
      for (const r of sorted)
        for (let bits = refMask[r] & allowedStyleMask; bits !== 0; bits &= bits - 1)
          items[put[refSrc[r] * NUM_STYLES + (31 - Math.clz32(bits & -bits))]++] = r;
      const rem = new Float64Array(nb);
      for (let b = 0; b < nb; b++) rem[b] = (start[b + 1] - start[b]) * w;
      listStart.push(start);
      listItems.push(items);
      remaining.push(rem);
    }

    // Bucket name order (the size tie-break of the offline spread).
    const nameRank = new Int32Array(nb);
    Array.from({ length: nb }, (_, b) => b)
      .map((b) => ({ b, name: bucketName(STYLES[b % NUM_STYLES], this.sources[Math.floor(b / NUM_STYLES)]) }))
      .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
      .forEach((x, i) => {
        nameRank[x.b] = i;
      });

    const mass = new Float64Array(R).fill(w);
    const cursor = listStart.map((s) => s.slice(0, nb));
    const last = Array.from({ length: K }, () => new Int32Array(nb).fill(-1));
    const tiny = EPS * w;
    let selected = 0;

    const consume = (r: number, amount: number): void => {
      mass[r] -= amount;
      if (mass[r] <= tiny) {
        amount += mass[r];
        mass[r] = 0;
      }
      const src = refSrc[r] * NUM_STYLES;
      const mask = refMask[r] & allowedStyleMask;
      for (let lists = eligible[r]; lists !== 0; lists &= lists - 1) {
        const rem = remaining[31 - Math.clz32(lists & -lists)];
        for (let bits = mask; bits !== 0; bits &= bits - 1)
          rem[src + (31 - Math.clz32(bits & -bits))] -= amount;
      }
      selected += amount;
    };

    const takeFromBucket = (k: number, b: number, take: number): number => {
      const items = listItems[k];
      const end = listStart[k][b + 1];
      let at = cursor[k][b];
      let need = take;
      let got = 0;
      while (need > tiny && at < end) {
        const r = items[at];
        const m = mass[r];
        if (m <= 0) {
          at++;
          continue;
        }
        const amount = Math.min(m, need);
        consume(r, amount);
        need -= amount;
        got += amount;
        last[k][b] = at;
        if (mass[r] <= 0) at++;
      }
      cursor[k][b] = at;
      return got;
    };

    const spread = (k: number, n: number): number => {
      const rem = remaining[k];
      const present: number[] = [];
      for (let b = 0; b < nb; b++) if (rem[b] > tiny) present.push(b);
      if (present.length === 0) return 0;
      present.sort((a, b) => rem[a] - rem[b] || nameRank[a] - nameRank[b]);
      let weightSum = 0;
      if (styleWeights) for (const b of present) weightSum += styleWeights[b % NUM_STYLES];
      const evenQuota = Math.max(Math.floor(n / present.length), 1);
      let carry = 0;
      let picked = 0;
      for (const b of present) {
        if (picked >= n - tiny) break;
        const quota = styleWeights
          ? Math.max(Math.floor((n * styleWeights[b % NUM_STYLES]) / weightSum), 1)
          : evenQuota;
        const free = Math.max(rem[b], 0);
        const take = Math.min(quota + carry, free, n - picked);
        carry = Math.max(quota + carry - free, 0);
        if (take > tiny) picked += takeFromBucket(k, b, take);
      }
      return picked;
    };

    let active = Array.from({ length: K }, (_, k) => k);
    while (selected < budget - tiny && active.length > 0) {
      const left = budget - selected;
      let weightSum = 0;
      if (capabilityWeights) for (const k of active) weightSum += capabilityWeights[k];
      const evenShare = Math.max(Math.floor(left / active.length), 1);
      const dropped = new Set<number>();
      for (const k of active) {
        const share = capabilityWeights
          ? Math.max(Math.floor((left * capabilityWeights[k]) / weightSum), 1)
          : evenShare;
        const n = Math.min(share, budget - selected);
        if (spread(k, n) <= tiny) dropped.add(k);
        if (selected >= budget - tiny) break;
      }
      if (dropped.size > 0) active = active.filter((k) => !dropped.has(k));
    }

    // Thresholds per (capability, bucket).
    for (let k = 0; k < K; k++) {
      const c = capabilities[k];
      const start = listStart[k];
      const items = listItems[k];
      for (let b = 0; b < nb; b++) {
        const at = k * nb + b;
        if (start[b + 1] === start[b]) {
          this.thrState[at] = this.bucketMass[b] > 0 ? ALL : UNSEEN;
          continue;
        }
        if (remaining[k][b] <= tiny) {
          this.thrState[at] = ALL;
          continue;
        }
        let p = last[k][b];
        // A reservoir row stands for w samples: when less than half of the last row's mass was
        // taken, the cut lies nearer the row above it (its key is the closer estimate).
        if (p >= 0 && w > 1 && w - mass[items[p]] < w / 2) p = p > start[b] ? p - 1 : -1;
        if (p < 0) {
          this.thrState[at] = NONE;
          continue;
        }
        const r = items[p];
        this.thrState[at] = CUT;
        this.thrScore[at] = refScores[r * NUM_CAPABILITIES + c];
        this.thrMean[at] = refMean[r];
        this.thrHash[at] = refHash[r];
      }
    }
  }
}
