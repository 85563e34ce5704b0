/**
 * Worker thread of the session pool (onnx-session-pool.ts): owns one onnxruntime-node
 * InferenceSession so that its blocking run() never stalls the main event loop.
 *
 * Protocol (main -> worker): { type: "run", id, features, n, dims } | { type: "close" } (finish
 * the run in progress, release the session, exit) | { type: "crash" } (test aid)
 * (worker -> main): "ready" once the session exists, "init-error" if it could not be created,
 * "result" / "error" per run. Result buffers are transferred, not copied.
 *
 * Imports only node built-ins and onnxruntime-node (as a namespace, so it also loads when tsx
 * compiles it to CommonJS for a worker started from the TS sources).
 */
import { parentPort, workerData } from "node:worker_threads";
import * as ort from "onnxruntime-node";

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
  | { type: "result"; id: number; scores: Float32Array; styles: Float32Array }
  | { type: "error"; id: number; message: string };

export type MainToWorker =
  | { type: "run"; id: number; features: Float32Array; n: number; dims: number }
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
  // The runs in progress: a close waits for them, because a thread torn down while ONNX
  // Runtime's own threads still work on its session can bring the whole process down.
  const running = new Set<Promise<void>>();
  port.on("message", (msg: MainToWorker) => {
    if (msg.type === "crash") process.exit(70);
    if (msg.type === "close") {
      Promise.allSettled([...running])
        .then(() => session.release())
        .catch(() => {})
        .finally(() => process.exit(0));
      return;
    }
    if (msg.type !== "run") return;
    const run = runOne(msg);
    running.add(run);
    void run.finally(() => running.delete(run));
  });

  async function runOne(msg: Extract<MainToWorker, { type: "run" }>): Promise<void> {
    const { id, features, n, dims } = msg;
    try {
      const input = new ort.Tensor("float32", features, [n, dims]);
      const out = await session.run({ [inputName]: input }, [scoresName, stylesName]);
      const scores = ownBuffer(asFloat32(out[scoresName]?.data, scoresName));
      const styles = ownBuffer(asFloat32(out[stylesName]?.data, stylesName));
      input.dispose();
      post({ type: "result", id, scores, styles }, [
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
