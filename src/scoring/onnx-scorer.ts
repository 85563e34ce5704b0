import type { Sample } from "../domain/sample.js";
import { NUM_CAPABILITIES, NUM_STYLES, STYLES, type StyleName } from "../domain/taxonomy.js";
import { createSampleFeaturizer } from "./featurize-samples.js";
import type { ImageLoader } from "./image-source.js";
import { checkSessionMatchesManifest, loadModel, type ModelManifest } from "./model-manifest.js";
import { createSessionPool, type ExecutionProvider } from "./onnx-session-pool.js";
import type { SampleScore, Scorer } from "./scoring-types.js";

export interface OnnxScorerOptions {
  modelDir: string;
  /** worker threads, each with a session (default 1) */
  workers?: number;
  intraOpThreads?: number;
  executionProvider?: ExecutionProvider;
  onCudaUnavailable?: "fail" | "fallback-cpu";
  /** loads images; absent = text-only scoring (flag "no-image") */
  imageLoader?: ImageLoader;
  /** rows per session run (default 256, the measured sweet spot in BENCHMARKS.md) */
  batchSize?: number;
  logger?: (msg: string) => void;
}

export interface OnnxScorer extends Scorer {
  readonly manifest: ModelManifest;
  readonly provider: ExecutionProvider;
}

/**
 * A Scorer over any model folder that follows the contract (models/README.md): the manifest
 * is validated, the ONNX file's sha256 checked, the session's inputs and outputs matched
 * against the manifest, and inference runs in worker threads, batches in flight on every
 * worker at once.
 */
export async function createOnnxScorer(options: OnnxScorerOptions): Promise<OnnxScorer> {
  const { manifest, onnxBytes } = await loadModel(options.modelDir);
  const pool = await createSessionPool({
    onnxBytes,
    workers: options.workers,
    intraOpThreads: options.intraOpThreads,
    executionProvider: options.executionProvider,
    onCudaUnavailable: options.onCudaUnavailable,
    inputName: manifest.input.name,
    scoresName: manifest.outputs.scores.name,
    stylesName: manifest.outputs.styles.name,
    logger: options.logger,
  });
  try {
    checkSessionMatchesManifest(pool.signature, manifest, options.modelDir);
  } catch (err) {
    await pool.close();
    throw err;
  }
  const featurizer = createSampleFeaturizer(manifest.featurizer, { imageLoader: options.imageLoader });
  const thresholds = manifest.outputs.styles.thresholds;
  const batchSize = options.batchSize ?? 256;
  const dims = manifest.input.dims;

  async function scoreChunk(samples: readonly Sample[]): Promise<SampleScore[]> {
    const { features, flags } = await featurizer.featurize(samples);
    const { scores, styles } = await pool.run(features, samples.length, dims);
    return samples.map((_, i) => {
      const styleProbabilities = styles.slice(i * NUM_STYLES, (i + 1) * NUM_STYLES);
      const names: StyleName[] = [];
      for (let s = 0; s < NUM_STYLES; s++) if (styleProbabilities[s] >= thresholds[s]) names.push(STYLES[s]);
      return {
        scores: scores.slice(i * NUM_CAPABILITIES, (i + 1) * NUM_CAPABILITIES),
        styles: names,
        styleProbabilities,
        flags: flags[i],
      };
    });
  }

  return {
    id: `${manifest.id}@${manifest.version}`,
    manifest,
    provider: pool.provider,
    async score(samples) {
      const chunks: Sample[][] = [];
      for (let k = 0; k < samples.length; k += batchSize) chunks.push(samples.slice(k, k + batchSize));
      // every chunk is submitted at once: the pool queues them on its least busy worker
      const results = await Promise.all(chunks.map(scoreChunk));
      return results.flat();
    },
    close: () => pool.close(),
  };
}
