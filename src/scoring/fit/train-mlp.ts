import { NUM_CAPABILITIES, NUM_STYLES, SCORE_MAX } from "../../domain/taxonomy.js";
import { createRandom } from "../../util/random.js";
import type { MlpWeights } from "../onnx-graph.js";

/**
 * Trains the student on feature rows: scores = 5 * sigmoid(h Ws + bs), styles =
 * sigmoid(h Wt + bt), h = relu(x W1 + b1). Loss: squared error of scores / 5 (missing targets
 * ignored) plus binary cross-entropy of styles. Adam, mini-batches, seeded: the same data and
 * options give the same weights bit for bit, so a committed model can be rebuilt and checked.
 *
 * Feature rows are mostly zeros (hashed bags), so the first layer runs over each row's
 * non-zero entries only, forward and backward.
 */
export interface TrainOptions {
  hidden?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** weight of the style loss against the score loss */
  styleLossWeight?: number;
  l2?: number;
  seed?: number;
  onEpoch?: (epoch: number, loss: number) => void;
}

export interface TrainingSet {
  n: number;
  dims: number;
  /** [n x dims] */
  features: Float32Array;
  /** [n x 14], NaN = missing */
  scores: Float32Array;
  /** [n x 9], 0 or 1 */
  styles: Float32Array;
}

interface SparseRows {
  start: Uint32Array;
  index: Uint32Array;
  value: Float32Array;
}

function toSparse(set: TrainingSet): SparseRows {
  let nnz = 0;
  for (let k = 0; k < set.features.length; k++) if (set.features[k] !== 0) nnz++;
  const start = new Uint32Array(set.n + 1);
  const index = new Uint32Array(nnz);
  const value = new Float32Array(nnz);
  let at = 0;
  for (let i = 0; i < set.n; i++) {
    start[i] = at;
    const base = i * set.dims;
    for (let j = 0; j < set.dims; j++) {
      const v = set.features[base + j];
      if (v !== 0) {
        index[at] = j;
        value[at] = v;
        at++;
      }
    }
  }
  start[set.n] = at;
  return { start, index, value };
}

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

class Adam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;
  constructor(
    private readonly params: Float32Array,
    private readonly lr: number,
    private readonly l2: number,
  ) {
    this.m = new Float32Array(params.length);
    this.v = new Float32Array(params.length);
  }
  step(grad: Float32Array): void {
    this.t++;
    const b1 = 0.9;
    const b2 = 0.999;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    const { params, m, v, lr, l2 } = this;
    for (let k = 0; k < params.length; k++) {
      const g = grad[k] + l2 * params[k];
      if (g === 0) continue;
      m[k] = b1 * m[k] + (1 - b1) * g;
      v[k] = b2 * v[k] + (1 - b2) * g * g;
      params[k] -= (lr * (m[k] / c1)) / (Math.sqrt(v[k] / c2) + 1e-8);
    }
  }
}

export function trainMlp(set: TrainingSet, options: TrainOptions = {}): MlpWeights {
  const H = options.hidden ?? 64;
  const epochs = options.epochs ?? 12;
  const batchSize = options.batchSize ?? 64;
  const lr = options.learningRate ?? 2e-3;
  const styleWeight = options.styleLossWeight ?? 1;
  const l2 = options.l2 ?? 1e-6;
  const rng = createRandom(options.seed ?? 1);
  const D = set.dims;
  const C = NUM_CAPABILITIES;
  const S = NUM_STYLES;

  const init = (len: number, fanIn: number): Float32Array => {
    const a = new Float32Array(len);
    const scale = Math.sqrt(2 / fanIn);
    for (let k = 0; k < len; k++) a[k] = rng.normal() * scale;
    return a;
  };
  const w: MlpWeights = {
    inputDims: D,
    hidden: H,
    w1: init(D * H, 16), // rows are sparse: scale by a typical non-zero count, not by D
    b1: new Float32Array(H).fill(0.01),
    wScores: init(H * C, H),
    bScores: new Float32Array(C),
    wStyles: init(H * S, H),
    bStyles: new Float32Array(S).fill(-1),
  };
  const params = [w.w1, w.b1, w.wScores, w.bScores, w.wStyles, w.bStyles];
  const grads = params.map((p) => new Float32Array(p.length));
  const [gW1, gB1, gWs, gBs, gWt, gBt] = grads;
  const optimizers = params.map((p) => new Adam(p, lr, l2));

  const sparse = toSparse(set);
  const order = Uint32Array.from({ length: set.n }, (_, i) => i);
  const h = new Float32Array(H);
  const dh = new Float32Array(H);

  for (let epoch = 0; epoch < epochs; epoch++) {
    for (let k = order.length - 1; k > 0; k--) {
      const j = rng.int(k + 1);
      [order[k], order[j]] = [order[j], order[k]];
    }
    let epochLoss = 0;
    for (let b0 = 0; b0 < set.n; b0 += batchSize) {
      const b1 = Math.min(set.n, b0 + batchSize);
      for (const g of grads) g.fill(0);
      const inv = 1 / (b1 - b0);
      for (let bi = b0; bi < b1; bi++) {
        const i = order[bi];
        // forward: h = relu(x W1 + b1) over the row's non-zeros
        h.set(w.b1);
        for (let p = sparse.start[i]; p < sparse.start[i + 1]; p++) {
          const x = sparse.value[p];
          const row = sparse.index[p] * H;
          for (let u = 0; u < H; u++) h[u] += x * w.w1[row + u];
        }
        for (let u = 0; u < H; u++) if (h[u] < 0) h[u] = 0;
        dh.fill(0);
        for (let c = 0; c < C; c++) {
          const target = set.scores[i * C + c];
          if (Number.isNaN(target)) continue;
          let z = w.bScores[c];
          for (let u = 0; u < H; u++) z += h[u] * w.wScores[u * C + c];
          const y = sigmoid(z);
          const diff = y - target / SCORE_MAX;
          epochLoss += diff * diff;
          const dz = 2 * diff * y * (1 - y) * inv;
          gBs[c] += dz;
          for (let u = 0; u < H; u++) {
            gWs[u * C + c] += dz * h[u];
            dh[u] += dz * w.wScores[u * C + c];
          }
        }
        for (let s = 0; s < S; s++) {
          let z = w.bStyles[s];
          for (let u = 0; u < H; u++) z += h[u] * w.wStyles[u * S + s];
          const y = sigmoid(z);
          const t = set.styles[i * S + s];
          epochLoss -= styleWeight * (t * Math.log(y + 1e-7) + (1 - t) * Math.log(1 - y + 1e-7));
          const dz = styleWeight * (y - t) * inv;
          gBt[s] += dz;
          for (let u = 0; u < H; u++) {
            gWt[u * S + s] += dz * h[u];
            dh[u] += dz * w.wStyles[u * S + s];
          }
        }
        // backward through relu into the first layer, non-zeros only
        for (let u = 0; u < H; u++) if (h[u] <= 0) dh[u] = 0;
        for (let u = 0; u < H; u++) gB1[u] += dh[u];
        for (let p = sparse.start[i]; p < sparse.start[i + 1]; p++) {
          const x = sparse.value[p];
          const row = sparse.index[p] * H;
          for (let u = 0; u < H; u++) gW1[row + u] += x * dh[u];
        }
      }
      optimizers.forEach((opt, k) => {
        opt.step(grads[k]);
      });
    }
    options.onEpoch?.(epoch, epochLoss / set.n);
  }
  return w;
}
