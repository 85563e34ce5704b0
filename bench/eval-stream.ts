/**
 * Fidelity of streaming selection (issue 4): `npm run eval:stream`.
 *
 * A scored stream of N samples (generatePool, fixed seed) arrives in a shuffled order at a
 * simulated rate. For each ratio, the offline selection of the whole stream (the oracle) is
 * compared with window mode (the offline selector on each tumbling window of W arrivals) and
 * continuous mode (ContinuousSelector, simulated clock): recall of the oracle set, per-bucket
 * share error, mean selected score per capability, decision delay and admitted share.
 *
 * Options: --n 200000 --seed 4242 --order-seed 7 --rate 2000 --ratios 0.05,0.1,0.3
 *          --windows 5000,20000,50000 --max-delay-ms 500 --max-pending 1000 --reference 50000
 *          --refresh 5000 --feedback 0.5 --tolerance 2 --quick (skip the per-capability tables)
 */
import os from "node:os";
import { CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES } from "../src/domain/taxonomy.js";
import { generatePool } from "../src/pool/generate-pool.js";
import { type ScoredPool, ScoredPoolBuilder } from "../src/pool/scored-pool.js";
import { ContinuousSelector, type ContinuousSelectorOptions } from "../src/selection/continuous-selector.js";
import { selectMmssr } from "../src/selection/select-mmssr.js";
import { createRandom } from "../src/util/random.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const N = Number(arg("n", "200000"));
const SEED = Number(arg("seed", "4242"));
const ORDER_SEED = Number(arg("order-seed", "7"));
const RATE = Number(arg("rate", "2000"));
const RATIOS = arg("ratios", "0.05,0.1,0.3").split(",").map(Number);
const WINDOWS = arg("windows", "5000,20000,50000").split(",").map(Number);
const QUICK = process.argv.includes("--quick");
const NO_BOUND = process.argv.includes("--no-bound");
const continuousOptions: Omit<ContinuousSelectorOptions, "ratio"> = {
  maxDelayMs: Number(arg("max-delay-ms", "500")),
  maxPending: Number(arg("max-pending", "1000")),
  referenceSize: Number(arg("reference", "50000")),
  refreshEvery: Number(arg("refresh", "5000")),
  feedback: Number(arg("feedback", "0.5")),
  tolerance: Number(arg("tolerance", "2")),
};
const msPerRecord = 1000 / RATE;
const REF = continuousOptions.referenceSize ?? 50_000;

interface ModeResult {
  mode: string;
  selected: Uint8Array; // by pool row
  count: number;
  /** per record (pool row): delay in arrivals and in simulated ms */
  delayRecords: Float64Array;
  delayMs: Float64Array;
  seconds: number;
  refreshes?: number;
}

function subPool(pool: ScoredPool, rows: ArrayLike<number>): ScoredPool {
  const b = new ScoredPoolBuilder(rows.length);
  const scores = new Float64Array(NUM_CAPABILITIES);
  for (let k = 0; k < rows.length; k++) {
    const r = rows[k];
    for (let c = 0; c < NUM_CAPABILITIES; c++) scores[c] = pool.scores[c][r];
    b.add({
      id: pool.ids[r],
      imageSource: pool.sources[pool.sourceIndex[r]],
      styleMask: pool.styleMask[r],
      scores,
    });
  }
  return b.build();
}

function runWindow(pool: ScoredPool, arrival: Uint32Array, ratio: number, w: number): ModeResult {
  const t0 = performance.now();
  const selected = new Uint8Array(pool.size);
  const delayRecords = new Float64Array(pool.size);
  const delayMs = new Float64Array(pool.size);
  let count = 0;
  for (let start = 0; start < arrival.length; start += w) {
    const rows = arrival.subarray(start, Math.min(start + w, arrival.length));
    const res = selectMmssr(subPool(pool, rows), { ratio });
    for (const i of res.indices) {
      selected[rows[i]] = 1;
      count++;
    }
    // count-bound windows: a record waits for the rest of its window to arrive
    for (let k = 0; k < rows.length; k++) {
      delayRecords[rows[k]] = rows.length - 1 - k;
      delayMs[rows[k]] = (rows.length - 1 - k) * msPerRecord;
    }
  }
  return {
    mode: `window ${w / 1000}k`,
    selected,
    count,
    delayRecords,
    delayMs,
    seconds: (performance.now() - t0) / 1000,
  };
}

function runContinuous(
  pool: ScoredPool,
  arrival: Uint32Array,
  ratio: number,
  label: string,
  extra: Partial<ContinuousSelectorOptions> = {},
): ModeResult {
  const t0 = performance.now();
  const selected = new Uint8Array(pool.size);
  const delayRecords = new Float64Array(pool.size);
  const delayMs = new Float64Array(pool.size);
  const decidedCount = new Uint8Array(pool.size);
  let count = 0;
  const sel = new ContinuousSelector<number>({ ratio, ...continuousOptions, ...extra }, (r) => ({
    id: pool.ids[r],
    imageSource: pool.sources[pool.sourceIndex[r]],
    styleMask: pool.styleMask[r],
    scores: rowScores(pool, r),
  }));
  let arrived = 0;
  const take = (ds: ReturnType<typeof sel.flush>): void => {
    for (const d of ds) {
      decidedCount[d.item]++;
      delayRecords[d.item] = arrived - 1 - d.seq;
      delayMs[d.item] = d.decidedAt - d.arrivedAt;
      if (d.selected) {
        selected[d.item] = 1;
        count++;
      }
    }
  };
  for (let j = 0; j < arrival.length; j++) {
    const now = j * msPerRecord;
    // the operator's timer: poll at each due time before the next arrival
    for (let due = sel.nextDueAt(); due !== undefined && due <= now; due = sel.nextDueAt())
      take(sel.poll(due));
    arrived = j + 1;
    take(sel.decide(arrival[j], now));
  }
  const end = arrival.length * msPerRecord;
  for (let due = sel.nextDueAt(); due !== undefined; due = sel.nextDueAt())
    take(sel.poll(Math.max(due, end - msPerRecord)));
  for (let r = 0; r < pool.size; r++)
    if (decidedCount[r] !== 1) throw new Error(`row ${r} decided ${decidedCount[r]} times`);
  const s = sel.stats;
  return {
    mode: label,
    selected,
    count,
    delayRecords,
    delayMs,
    seconds: (performance.now() - t0) / 1000,
    refreshes: s.refreshes,
  };
}

/**
 * Not a streaming mode: the threshold rule alone (no feedback, no batches) with thresholds from
 * an independent draw of N more samples of the same generator, replayed at the stream's scale.
 * What a rule that decides each sample by thresholds can reach when it knows the distribution
 * perfectly in advance but not the stream's own realisation.
 */
function runKnownDistribution(
  pool: ScoredPool,
  arrival: Uint32Array,
  ratio: number,
  big: ScoredPool,
): ModeResult {
  const t0 = performance.now();
  const n = pool.size;
  const sel = new ContinuousSelector<number>(
    {
      ratio,
      referenceSize: n,
      horizon: n,
      maxPending: 2 * n + 1,
      refreshEvery: 2 * n + 1,
      maxDelayMs: 1,
      feedback: 0,
      tolerance: Number.POSITIVE_INFINITY,
    },
    (r) => ({
      id: big.ids[r],
      imageSource: big.sources[big.sourceIndex[r]],
      styleMask: big.styleMask[r],
      scores: rowScores(big, r),
    }),
  );
  // The independent draw fills the reference (exactly: referenceSize = n) and is decided as
  // one batch at t=10, which computes the thresholds; the next refresh would come after 3n
  // arrivals, so the stream, arriving at t=10 and flushed at t=20, is judged by those alone.
  for (let r = n; r < 2 * n; r++) sel.decide(r, 0);
  sel.poll(10);
  for (let j = 0; j < n; j++) sel.decide(arrival[j], 10);
  const selected = new Uint8Array(n);
  let count = 0;
  for (const d of sel.flush(20))
    if (d.item < n && d.selected) {
      selected[d.item] = 1;
      count++;
    }
  const none = new Float64Array(n).fill(Number.NaN);
  return {
    mode: "threshold rule, distribution known",
    selected,
    count,
    delayRecords: none,
    delayMs: none,
    seconds: (performance.now() - t0) / 1000,
  };
}

function rowScores(pool: ScoredPool, r: number): Float64Array {
  const out = new Float64Array(NUM_CAPABILITIES);
  for (let c = 0; c < NUM_CAPABILITIES; c++) out[c] = pool.scores[c][r];
  return out;
}

function bucketShares(pool: ScoredPool, selected: Uint8Array): Float64Array {
  const shares = new Float64Array(pool.sources.length * NUM_STYLES);
  let total = 0;
  for (let r = 0; r < pool.size; r++) {
    if (!selected[r]) continue;
    for (let bits = pool.styleMask[r]; bits !== 0; bits &= bits - 1) {
      shares[pool.sourceIndex[r] * NUM_STYLES + (31 - Math.clz32(bits & -bits))]++;
      total++;
    }
  }
  for (let b = 0; b < shares.length; b++) shares[b] /= Math.max(total, 1);
  return shares;
}

function meanScoresOf(pool: ScoredPool, selected: Uint8Array): Float64Array {
  const out = new Float64Array(NUM_CAPABILITIES);
  for (let c = 0; c < NUM_CAPABILITIES; c++) {
    let sum = 0;
    let n = 0;
    const col = pool.scores[c];
    for (let r = 0; r < pool.size; r++)
      if (selected[r] && !Number.isNaN(col[r])) {
        sum += col[r];
        n++;
      }
    out[c] = sum / Math.max(n, 1);
  }
  return out;
}

function quantile(values: Float64Array, q: number): number {
  const s = Float64Array.from(values).sort();
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
}

function fmt(x: number, d = 3): string {
  return x.toFixed(d);
}

function main(): void {
  console.log(
    `# eval-stream: n=${N} seed=${SEED} order-seed=${ORDER_SEED} rate=${RATE}/s node ${process.version} ` +
      `${os.cpus()[0]?.model ?? "?"} x${os.cpus().length} ${new Date().toISOString().slice(0, 10)}`,
  );
  console.log(`# continuous options: ${JSON.stringify(continuousOptions)}`);
  const pool = generatePool({ n: N, seed: SEED });
  const arrival = new Uint32Array(N);
  for (let i = 0; i < N; i++) arrival[i] = i;
  const rng = createRandom(ORDER_SEED);
  for (let i = N - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = arrival[i];
    arrival[i] = arrival[j];
    arrival[j] = t;
  }
  // rows 0..N-1 of a 2N pool are the N pool (same generator sequence, same ids)
  const big = generatePool({ n: 2 * N, seed: SEED });
  for (let r = 0; r < N; r += 997)
    if (big.ids[r] !== pool.ids[r] || big.styleMask[r] !== pool.styleMask[r])
      throw new Error("2N pool prefix differs");
  for (const ratio of RATIOS) {
    const t0 = performance.now();
    const oracleRes = selectMmssr(pool, { ratio });
    const oracle = new Uint8Array(N);
    for (const i of oracleRes.indices) oracle[i] = 1;
    const oracleSeconds = (performance.now() - t0) / 1000;
    const oracleShares = bucketShares(pool, oracle);
    const oracleMeans = meanScoresOf(pool, oracle);
    const modes: ModeResult[] = [
      ...WINDOWS.map((w) => runWindow(pool, arrival, ratio, w)),
      runContinuous(pool, arrival, ratio, `continuous (ref ${REF / 1000}k)`),
      runContinuous(pool, arrival, ratio, `continuous (ref ${REF / 1000}k, horizon ${N / 1000}k)`, {
        horizon: N,
      }),
      runContinuous(pool, arrival, ratio, `continuous (ref ${(2 * REF) / 1000}k, horizon ${N / 1000}k)`, {
        horizon: N,
        referenceSize: 2 * REF,
      }),
      ...(NO_BOUND ? [] : [runKnownDistribution(pool, arrival, ratio, big)]),
    ];
    console.log(
      `\n## ratio ${ratio * 100}%: oracle selects ${oracleRes.indices.length} of ${N} (${fmt(oracleSeconds, 2)} s)\n`,
    );
    console.log(
      "| mode | recall of oracle | admitted share (target " +
        `${fmt(ratio, 3)}) | bucket share MAE | bucket share max err | mean score gap (mode - oracle, mean over caps) | ` +
        "delay p50 / p99 / max (records) | delay p50 / p99 / max (ms) | run s |",
    );
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    const means: Float64Array[] = [];
    for (const m of modes) {
      let hit = 0;
      for (let r = 0; r < N; r++) if (m.selected[r] && oracle[r]) hit++;
      const shares = bucketShares(pool, m.selected);
      let mae = 0;
      let maxErr = 0;
      let nb = 0;
      for (let b = 0; b < shares.length; b++) {
        if (shares[b] === 0 && oracleShares[b] === 0) continue;
        const e = Math.abs(shares[b] - oracleShares[b]);
        mae += e;
        maxErr = Math.max(maxErr, e);
        nb++;
      }
      mae /= Math.max(nb, 1);
      const ms = meanScoresOf(pool, m.selected);
      means.push(ms);
      let gap = 0;
      for (let c = 0; c < NUM_CAPABILITIES; c++) gap += ms[c] - oracleMeans[c];
      gap /= NUM_CAPABILITIES;
      const dr = m.delayRecords;
      const dm = m.delayMs;
      const delays = Number.isNaN(dr[0])
        ? "n/a | n/a"
        : `${quantile(dr, 0.5)} / ${quantile(dr, 0.99)} / ${quantile(dr, 1)} | ` +
          `${fmt(quantile(dm, 0.5), 0)} / ${fmt(quantile(dm, 0.99), 0)} / ${fmt(quantile(dm, 1), 0)}`;
      console.log(
        `| ${m.mode} | ${fmt(hit / oracleRes.indices.length)} | ${fmt(m.count / N, 4)} | ${fmt(mae, 5)} | ${fmt(maxErr, 4)} | ` +
          `${gap >= 0 ? "+" : ""}${fmt(gap, 3)} | ${delays} | ${fmt(m.seconds, 1)} |`,
      );
    }
    if (QUICK) continue;
    console.log(`\nMean selected score per capability at ${ratio * 100}%:\n`);
    console.log(`| capability | oracle | ${modes.map((m) => m.mode).join(" | ")} |`);
    console.log(`|---|---:|${modes.map(() => "---:").join("|")}|`);
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      console.log(
        `| ${CAPABILITY_IDS[c]} | ${fmt(oracleMeans[c], 3)} | ${means.map((m) => fmt(m[c], 3)).join(" | ")} |`,
      );
  }
}

main();
