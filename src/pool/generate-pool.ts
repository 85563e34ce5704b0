import { NUM_CAPABILITIES, NUM_STYLES } from "../domain/taxonomy.js";
import { createRandom, type Random } from "../util/random.js";
import { type ScoredPool, ScoredPoolBuilder } from "./scored-pool.js";

/**
 * Seeded generator of realistic scored pools for tests and benchmarks. Realistic means:
 * capability scores correlated through a per-sample quality and a per-source profile,
 * skewed (Zipf-like) source sizes, styles that depend on the source, multi-style samples,
 * a few missing scores and a few samples without any style.
 */
export interface GeneratePoolOptions {
  n: number;
  seed: number;
  /** Number of image sources (default 20). */
  sources?: number;
  /** Share of individual scores left missing (default 0.005). */
  missingScoreRate?: number;
  /** Share of samples with no style tag (default 0.01). */
  styleLessRate?: number;
  /** Round scores to whole numbers 0..5, as the released 7B scorer emits (default false: 2 decimals). */
  integerScores?: boolean;
}

const SOURCE_NAMES = [
  "coco",
  "textvqa",
  "docvqa",
  "chartqa",
  "scienceqa",
  "gqa",
  "vsr",
  "ocrvqa",
  "ai2d",
  "infographicsvqa",
  "sroie",
  "flickr30k",
  "cub",
  "visual7w",
  "openimages",
  "emotic",
  "mme",
  "llava-instruct",
  "sharegpt4v",
  "geoqa",
];

interface SourceProfile {
  name: string;
  weight: number;
  /** mean score per capability before the per-sample quality is added */
  capabilityMeans: Float64Array;
  /** cumulative probability of each style being the primary one */
  styleCdf: Float64Array;
}

function makeProfiles(count: number, rng: Random): SourceProfile[] {
  const profiles: SourceProfile[] = [];
  for (let k = 0; k < count; k++) {
    const name = k < SOURCE_NAMES.length ? SOURCE_NAMES[k] : `source-${k}`;
    const capabilityMeans = new Float64Array(NUM_CAPABILITIES);
    // Each source is strong on two or three capabilities and middling to weak on the rest.
    for (let c = 0; c < NUM_CAPABILITIES; c++) capabilityMeans[c] = 0.8 + rng.next() * 1.6;
    const strong = 2 + Math.floor(rng.next() * 2);
    for (let j = 0; j < strong; j++)
      capabilityMeans[Math.floor(rng.next() * NUM_CAPABILITIES)] += 1.5 + rng.next();
    // Styles: a source favours one or two forms (a yes/no benchmark, a caption set, ...).
    const styleWeights = new Float64Array(NUM_STYLES);
    for (let s = 0; s < NUM_STYLES; s++) styleWeights[s] = 0.05 + rng.next() * 0.3;
    styleWeights[Math.floor(rng.next() * NUM_STYLES)] += 3;
    styleWeights[Math.floor(rng.next() * NUM_STYLES)] += 1;
    const styleCdf = cumulative(styleWeights);
    profiles.push({ name, weight: 1 / (k + 1) ** 0.9, capabilityMeans, styleCdf });
  }
  return profiles;
}

function cumulative(weights: ArrayLike<number>): Float64Array {
  const out = new Float64Array(weights.length);
  let total = 0;
  for (let i = 0; i < weights.length; i++) total += weights[i];
  let acc = 0;
  for (let i = 0; i < weights.length; i++) {
    acc += weights[i] / total;
    out[i] = acc;
  }
  out[weights.length - 1] = 1;
  return out;
}

function pick(cdf: Float64Array, u: number): number {
  let i = 0;
  while (i < cdf.length - 1 && u > cdf[i]) i++;
  return i;
}

export function generatePool(options: GeneratePoolOptions): ScoredPool {
  const { n, seed } = options;
  const sourceCount = options.sources ?? 20;
  const missingRate = options.missingScoreRate ?? 0.005;
  const styleLessRate = options.styleLessRate ?? 0.01;
  const rng = createRandom(seed);
  const profiles = makeProfiles(sourceCount, rng);
  const sourceCdf = cumulative(profiles.map((p) => p.weight));
  const builder = new ScoredPoolBuilder(n);
  const scores = new Float64Array(NUM_CAPABILITIES);
  const width = String(Math.max(n - 1, 0)).length;

  for (let i = 0; i < n; i++) {
    const profile = profiles[pick(sourceCdf, rng.next())];
    const quality = rng.normal() * 0.7;
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      if (rng.next() < missingRate) {
        scores[c] = Number.NaN;
        continue;
      }
      const raw = profile.capabilityMeans[c] + quality + rng.normal() * 0.6;
      const clamped = Math.min(5, Math.max(0, raw));
      scores[c] = options.integerScores ? Math.round(clamped) : Math.round(clamped * 100) / 100;
    }
    let styleMask = 0;
    if (rng.next() >= styleLessRate) {
      styleMask |= 1 << pick(profile.styleCdf, rng.next());
      const extra = rng.next();
      // about 25% carry a second style and 5% a third
      if (extra < 0.3) styleMask |= 1 << Math.floor(rng.next() * NUM_STYLES);
      if (extra < 0.05) styleMask |= 1 << Math.floor(rng.next() * NUM_STYLES);
    }
    builder.add({ id: `s${String(i).padStart(width, "0")}`, imageSource: profile.name, styleMask, scores });
  }
  return builder.build();
}
