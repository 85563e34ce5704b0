import { CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES, STYLES } from "../../domain/taxonomy.js";

/** Ranks with ties given their average rank (1-based), as Spearman's rho needs. */
function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(values.length);
  for (let k = 0; k < order.length; ) {
    let end = k + 1;
    while (end < order.length && order[end][0] === order[k][0]) end++;
    const r = (k + end + 1) / 2;
    for (let j = k; j < end; j++) ranks[order[j][1]] = r;
    k = end;
  }
  return ranks;
}

/** Spearman's rank correlation over the pairs where both values are present; NaN if undefined. */
export function spearman(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const xs: number[] = [];
  const ys: number[] = [];
  for (let i = 0; i < a.length; i++)
    if (!Number.isNaN(a[i]) && !Number.isNaN(b[i])) {
      xs.push(a[i]);
      ys.push(b[i]);
    }
  if (xs.length < 3) return Number.NaN;
  const rx = averageRanks(xs);
  const ry = averageRanks(ys);
  const mean = (xs.length + 1) / 2;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < rx.length; i++) {
    const dx = rx[i] - mean;
    const dy = ry[i] - mean;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : Number.NaN;
}

export interface StyleFidelity {
  style: string;
  support: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface Fidelity {
  n: number;
  capabilities: { id: string; spearman: number; meanAbsError: number }[];
  styles: StyleFidelity[];
}

/**
 * How closely a student follows its teacher on held-out samples: Spearman per capability
 * (what selection cares about is the order), mean absolute error, and precision / recall /
 * F1 per style at the student's thresholds.
 */
export function measureFidelity(
  n: number,
  teacher: { scores: Float32Array; styles: Float32Array },
  student: { scores: Float32Array; styles: Float32Array },
  thresholds: ArrayLike<number>,
): Fidelity {
  const capabilities = CAPABILITY_IDS.map((id, c) => {
    const t = Array.from({ length: n }, (_, i) => teacher.scores[i * NUM_CAPABILITIES + c]);
    const s = Array.from({ length: n }, (_, i) => student.scores[i * NUM_CAPABILITIES + c]);
    let err = 0;
    let m = 0;
    for (let i = 0; i < n; i++)
      if (!Number.isNaN(t[i]) && !Number.isNaN(s[i])) {
        err += Math.abs(t[i] - s[i]);
        m++;
      }
    return { id, spearman: spearman(t, s), meanAbsError: m > 0 ? err / m : Number.NaN };
  });
  const styles = STYLES.map((style, k) => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < n; i++) {
      const truth = teacher.styles[i * NUM_STYLES + k] >= 0.5;
      const pred = student.styles[i * NUM_STYLES + k] >= thresholds[k];
      if (truth && pred) tp++;
      else if (pred) fp++;
      else if (truth) fn++;
    }
    const precision = tp + fp > 0 ? tp / (tp + fp) : Number.NaN;
    const recall = tp + fn > 0 ? tp / (tp + fn) : Number.NaN;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : Number.NaN;
    return { style, support: tp + fn, precision, recall, f1 };
  });
  return { n, capabilities, styles };
}
