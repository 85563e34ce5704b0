import type { Sample } from "../domain/sample.js";
import { NUM_CAPABILITIES, NUM_STYLES, STYLES, type StyleName } from "../domain/taxonomy.js";
import { createSampleFeaturizer, loadSamples } from "./featurize-samples.js";
import type { ImageLoader } from "./image-source.js";
import { createMicroBatcher, type MicroBatcher } from "./micro-batcher.js";
import { checkSessionMatchesManifest, loadModel, type ModelManifest } from "./model-manifest.js";
import { createSessionPool, type ExecutionProvider, type PoolResult } from "./onnx-session-pool.js";
import type { SampleScore, ScoreFlag, Scorer } from "./scoring-types.js";

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
  /** scoreOne: longest wait for a batch to fill before it runs anyway (default 10 ms) */
  maxWaitMs?: number;
  /**
   * Where samples become feature rows: "workers" (default), in each inference worker next to
   * its session, so that the main thread only loads images and routes batches; "main", on this
   * thread, overlapped with inference (what issue 3 shipped; kept for the benchmarks' comparison).
   */
  featurizeOn?: "workers" | "main";
  /** each batch's size and its time in a worker (featurizing there + inference), for metrics */
  onBatch?: (samples: number, seconds: number) => void;
  logger?: (msg: string) => void;
}

export interface OnnxScorer extends Scorer {
  readonly manifest: ModelManifest;
  readonly provider: ExecutionProvider;
  /**
   * Scores one sample, batched with others submitted around the same time: a batch runs when it
   * holds batchSize samples or maxWaitMs after its first, whichever comes first (for streams).
   */
  scoreOne(sample: Sample): Promise<SampleScore>;
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
    featurizer: { spec: manifest.featurizer },
    logger: options.logger,
  });
  try {
    checkSessionMatchesManifest(pool.signature, manifest, options.modelDir);
  } catch (err) {
    await pool.close();
    throw err;
  }
  // On this thread only for featurizeOn "main"; otherwise it checks the spec here, where an
  // unknown kind fails at once with its name rather than in a worker.
  const featurizer = createSampleFeaturizer(manifest.featurizer, { imageLoader: options.imageLoader });
  const inWorkers = (options.featurizeOn ?? "workers") === "workers";
  const thresholds = manifest.outputs.styles.thresholds;
  const batchSize = options.batchSize ?? 256;
  const dims = manifest.input.dims;

  function toScores(
    out: { scores: Float32Array; styles: Float32Array },
    flags: ScoreFlag[][],
  ): SampleScore[] {
    return flags.map((rowFlags, i) => {
      const styleProbabilities = out.styles.slice(i * NUM_STYLES, (i + 1) * NUM_STYLES);
      const names: StyleName[] = [];
      let best = 0;
      for (let s = 0; s < NUM_STYLES; s++) {
        if (styleProbabilities[s] >= thresholds[s]) names.push(STYLES[s]);
        if (styleProbabilities[s] > styleProbabilities[best]) best = s;
      }
      // Every answered sample has some interaction form (the teachers tag at least one), and a
      // style-less sample can never be selected: fall back to the most probable style.
      if (names.length === 0) names.push(STYLES[best]);
      return {
        scores: out.scores.slice(i * NUM_CAPABILITIES, (i + 1) * NUM_CAPABILITIES),
        styles: names,
        styleProbabilities,
        flags: rowFlags,
      };
    });
  }

  // Chunks in flight at once, over every score() call: enough queued per worker that it stays
  // busy while this thread is held by other work (selecting, encoding a window: tens of ms),
  // few enough to bound the images held. A worker featurizes its queue one batch at a time.
  const maxInFlight = (inWorkers ? 8 : 2) * pool.size;
  let inFlight = 0;
  const waiting: (() => void)[] = [];
  const acquire = async (): Promise<void> => {
    while (inFlight >= maxInFlight) await new Promise<void>((resolve) => waiting.push(resolve));
    inFlight++;
  };
  const release = (): void => {
    inFlight--;
    waiting.shift()?.();
  };

  const observed = <T extends PoolResult>(out: T, n: number): T => {
    if (out.seconds !== undefined) options.onBatch?.(n, out.seconds);
    return out;
  };

  let dispatching: Promise<void> = Promise.resolve();
  async function dispatchChunks(samples: readonly Sample[], runs: Promise<SampleScore[]>[]): Promise<void> {
    for (let k = 0; k < samples.length; k += batchSize) {
      const chunk = samples.slice(k, k + batchSize);
      await acquire();
      let run: Promise<SampleScore[]>;
      try {
        if (inWorkers) {
          const items = await loadSamples(chunk, options.imageLoader);
          run = pool.runSamples(items, dims).then((out) => toScores(observed(out, chunk.length), out.flags));
        } else {
          const { features, flags } = await featurizer.featurize(chunk);
          run = pool
            .run(features, chunk.length, dims)
            .then((out) => toScores(observed(out, chunk.length), flags));
        }
      } catch (err) {
        release();
        throw err;
      }
      run = run.finally(release);
      run.catch(() => {}); // awaited below; a failure must not count as unhandled meanwhile
      runs.push(run);
    }
  }

  let batcher: MicroBatcher<Sample, SampleScore> | undefined;
  const scorer: OnnxScorer = {
    id: `${manifest.id}@${manifest.version}`,
    manifest,
    provider: pool.provider,
    async score(samples) {
      // Chunk by chunk: images load here (I/O) while the workers featurize and run the chunks
      // already sent, every worker busy at once; in "main" mode featurizing happens here,
      // overlapped with inference, and throughput is set by the slower of the two.
      // Calls dispatch in the order they were made: a call's chunks all take their slots before
      // the next call's first does, so that the first of several windows scored at once is done
      // first instead of all of them finishing together.
      const turn = dispatching;
      let done = (): void => {};
      dispatching = new Promise<void>((resolve) => {
        done = resolve;
      });
      await turn;
      const runs: Promise<SampleScore[]>[] = [];
      try {
        await dispatchChunks(samples, runs);
      } finally {
        done();
      }
      return (await Promise.all(runs)).flat();
    },
    scoreOne(sample) {
      batcher ??= createMicroBatcher({
        maxBatch: batchSize,
        maxWaitMs: options.maxWaitMs ?? 10,
        process: (samples) => scorer.score(samples),
      });
      return batcher.submit(sample);
    },
    async close() {
      await batcher?.close();
      await pool.close();
      await featurizer.close();
    },
  };
  return scorer;
}
