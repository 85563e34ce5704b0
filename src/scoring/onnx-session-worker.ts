/**
 * Worker thread of the session pool (onnx-session-pool.ts): owns one onnxruntime-node
 * InferenceSession so that its blocking run() never stalls the main event loop.
 *
 * Protocol (main -> worker): { type: "run", id, features, n, dims } (a built feature matrix) |
 * { type: "score", id, items, dims } (samples with their images loaded: featurized here, next to
 * inference, by the featurizer the worker was started with) | { type: "close" } (finish the
 * runs in progress, release the session, exit) | { type: "crash" } (test aid)
 * (worker -> main): "ready" once the session exists, "init-error" if it could not be created,
 * "result" / "error" per run. Feature, image and result buffers are transferred, not copied.
 *
 * onnxruntime-node is imported as a namespace, so that it also loads when tsx compiles this file
 * to CommonJS for a worker started from the TS sources (no top-level await either).
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { createSampleFeaturizer, type LoadedSample, type SampleFeaturizer } from "./featurize-samples.js";
import type { FeatureSpec, ScoreFlag } from "./scoring-types.js";
import type { VisionFeaturizerOptions } from "./vision/vision-features.js";

export interface WorkerInit {
  onnxBytes?: Uint8Array;
  onnxPath?: string;
  intraOpThreads: number;
  executionProvider: "cpu" | "cuda";
  /** when the CUDA provider cannot load: create a CPU session instead of failing */
  fallbackToCpu: boolean;
  inputName: string;
  scoresName: string;
  stylesName: string;
  /** the model's featurizer, for "score" messages (vision models run in this thread) */
  featurizer?: { spec: FeatureSpec; vision?: VisionFeaturizerOptions };
}

export interface WorkerValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: (number | string)[];
}

export type WorkerToMain =
  | {
      type: "ready";
      provider: "cpu" | "cuda";
      /** set when CUDA was asked for, failed, and the worker fell back to CPU */
      cudaError?: string;
      inputNames: string[];
      outputNames: string[];
      inputMetadata: WorkerValueMetadata[];
      outputMetadata: WorkerValueMetadata[];
    }
  | { type: "init-error"; provider: "cpu" | "cuda"; message: string }
  | {
      type: "result";
      id: number;
      scores: Float32Array;
      styles: Float32Array;
      flags?: ScoreFlag[][];
      /** this batch's own time here (featurizing + session.run), not its wait in the queue */
      seconds: number;
    }
  | { type: "error"; id: number; message: string };

export type MainToWorker =
  | { type: "run"; id: number; features: Float32Array; n: number; dims: number }
  | { type: "score"; id: number; items: LoadedSample[]; dims: number }
  | { type: "close" }
  | { type: "crash" };

function metadataOf(list: readonly ort.InferenceSession.ValueMetadata[] | undefined): WorkerValueMetadata[] {
  return (list ?? []).map((m) =>
    m.isTensor
      ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] }
      : { name: m.name, isTensor: false },
  );
}

function asFloat32(data: unknown, name: string): Float32Array {
  if (data instanceof Float32Array) return data;
  throw new Error(`output "${name}" is not float32`);
}

/** Transferable copy unless the array already owns its whole (non-shared) buffer. */
function ownBuffer(a: Float32Array): Float32Array {
  if (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength && a.buffer instanceof ArrayBuffer) return a;
  return a.slice();
}

async function createSession(init: WorkerInit, provider: "cpu" | "cuda"): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
  if (init.onnxBytes) return ort.InferenceSession.create(init.onnxBytes, options);
  if (init.onnxPath) return ort.InferenceSession.create(init.onnxPath, options);
  throw new Error("neither onnxBytes nor onnxPath given");
}

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error("onnx-session-worker must run as a worker thread");
  const init = workerData as WorkerInit;
  const post = (msg: WorkerToMain, transfer?: ArrayBuffer[]) => port.postMessage(msg, transfer);

  let session: ort.InferenceSession;
  let provider = init.executionProvider;
  let cudaError: string | undefined;
  try {
    session = await createSession(init, provider);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (provider === "cuda" && init.fallbackToCpu) {
      cudaError = message;
      provider = "cpu";
      try {
        session = await createSession(init, provider);
      } catch (err2) {
        post({ type: "init-error", provider, message: err2 instanceof Error ? err2.message : String(err2) });
        return;
      }
    } else {
      post({ type: "init-error", provider, message });
      return;
    }
  }

  const { inputName, scoresName, stylesName } = init;
  // Vision models (if the spec has any) run in this thread: no worker of their own per worker.
  const featurizer: SampleFeaturizer | undefined =
    init.featurizer === undefined
      ? undefined
      : createSampleFeaturizer(init.featurizer.spec, {
          vision: { ...init.featurizer.vision, inProcess: true },
        });
  // The runs in progress: a close waits for them, because a thread torn down while ONNX
  // Runtime's own threads still work on its session can bring the whole process down.
  const running = new Set<Promise<void>>();
  let queue: Promise<void> = Promise.resolve();
  let scratch = new Float32Array(0);
  port.on("message", (msg: MainToWorker) => {
    if (msg.type === "crash") process.exit(70);
    if (msg.type === "close") {
      Promise.allSettled([...running])
        .then(() => featurizer?.close())
        .then(() => session.release())
        .catch(() => {})
        .finally(() => process.exit(0));
      return;
    }
    if (msg.type !== "run" && msg.type !== "score") return;
    // Featurizing yields to this thread's loop; batches taken one after another keep a single
    // feature matrix alive and finish in the order they came (images of a batch still decode
    // in parallel, in sharp's threads).
    let run: Promise<void>;
    if (msg.type === "run") run = runOne(msg);
    else {
      run = queue.then(() => scoreOne(msg));
      queue = run;
    }
    running.add(run);
    void run.finally(() => running.delete(run));
  });

  async function scoreOne(msg: Extract<MainToWorker, { type: "score" }>): Promise<void> {
    if (featurizer === undefined) {
      post({ type: "error", id: msg.id, message: "this worker was started without a featurizer" });
      return;
    }
    const started = performance.now();
    let built: { features: Float32Array; flags: ScoreFlag[][] };
    try {
      // One matrix per worker, reused: batches run one at a time here, and a fresh 4 MB matrix
      // per batch paid a page fault on the first write of every page (about half of featurizing).
      const need = msg.items.length * msg.dims;
      if (scratch.length < need) scratch = new Float32Array(need);
      built = await featurizer.featurizeLoaded(msg.items, scratch);
    } catch (err) {
      post({
        type: "error",
        id: msg.id,
        message: `featurizing failed: ${err instanceof Error ? err.message : String(err)}`,
      });
      return;
    }
    await runOne(
      { type: "run", id: msg.id, features: built.features, n: msg.items.length, dims: msg.dims },
      built.flags,
      started,
    );
  }

  async function runOne(
    msg: Extract<MainToWorker, { type: "run" }>,
    flags?: ScoreFlag[][],
    started = performance.now(),
  ): Promise<void> {
    const { id, features, n, dims } = msg;
    try {
      const input = new ort.Tensor("float32", features, [n, dims]);
      const out = await session.run({ [inputName]: input }, [scoresName, stylesName]);
      const scores = ownBuffer(asFloat32(out[scoresName]?.data, scoresName));
      const styles = ownBuffer(asFloat32(out[stylesName]?.data, stylesName));
      input.dispose();
      const seconds = (performance.now() - started) / 1000;
      post({ type: "result", id, scores, styles, flags, seconds }, [
        scores.buffer as ArrayBuffer,
        styles.buffer as ArrayBuffer,
      ]);
    } catch (err) {
      post({ type: "error", id, message: err instanceof Error ? err.message : String(err) });
    }
  }

  post({
    type: "ready",
    provider,
    cudaError,
    inputNames: [...session.inputNames],
    outputNames: [...session.outputNames],
    inputMetadata: metadataOf(session.inputMetadata),
    outputMetadata: metadataOf(session.outputMetadata),
  });
}

void main().catch((err) => {
  parentPort?.postMessage({
    type: "init-error",
    provider: (workerData as WorkerInit)?.executionProvider ?? "cpu",
    message: err instanceof Error ? err.message : String(err),
  } satisfies WorkerToMain);
});
