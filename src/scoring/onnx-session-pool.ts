/**
 * A pool of worker_threads, each owning one onnxruntime-node InferenceSession (its run() blocks the
 * thread it runs on; Kafka heartbeats and metric scrapes on the main loop must keep flowing).
 *
 * - dispatch: least busy ready worker, ties broken round-robin;
 * - run() hands the feature buffer to the worker (transferred when the array spans its whole
 *   ArrayBuffer: the caller's array is detached afterwards; copied otherwise); results come back
 *   transferred;
 * - a worker's ONNX Runtime error rejects that call with MmssrError INFERENCE naming the cause;
 *   a crashed worker rejects its in-flight calls and is replaced;
 * - provider: "cpu" by default; "cuda" either loads or fails loudly, or falls back to CPU when
 *   configured; the provider that runs is logged and exposed.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { NUM_CAPABILITIES, NUM_STYLES } from "../domain/taxonomy.js";
import type { LoadedSample } from "./featurize-samples.js";
import type { SessionSignature } from "./model-manifest.js";
import type { MainToWorker, WorkerInit, WorkerToMain, WorkerValueMetadata } from "./onnx-session-worker.js";
import type { ScoreFlag } from "./scoring-types.js";

export type ExecutionProvider = "cpu" | "cuda";

export interface SessionPoolOptions {
  /** the model; one of onnxBytes / onnxPath */
  onnxBytes?: Uint8Array;
  onnxPath?: string;
  /** worker threads, each with its own session (default 1) */
  workers?: number;
  /** ONNX Runtime intra-op threads per session (default 1) */
  intraOpThreads?: number;
  /** default "cpu" */
  executionProvider?: ExecutionProvider;
  /** what to do when executionProvider is "cuda" and the CUDA provider cannot load (default "fail") */
  onCudaUnavailable?: "fail" | "fallback-cpu";
  /** model input / output names (defaults: "features", "scores", "styles") */
  inputName?: string;
  scoresName?: string;
  stylesName?: string;
  /** the model's featurizer, run in each worker for runSamples (plain data: it crosses threads) */
  featurizer?: WorkerInit["featurizer"];
  logger?: (msg: string) => void;
}

export interface PoolResult {
  scores: Float32Array;
  styles: Float32Array;
  /** the worker's own time for the batch (featurizing + inference), seconds */
  seconds?: number;
}

export interface SessionPool {
  /** features: [n * dims] row-major float32. Resolves with scores [n*14] and styles [n*9]. */
  run(features: Float32Array, n: number, dims: number): Promise<PoolResult>;
  /**
   * Featurizes the samples in a worker (pool started with a featurizer) and runs them there:
   * the main thread only clones the items over (image bytes are copied once and transferred).
   */
  runSamples(items: readonly LoadedSample[], dims: number): Promise<PoolResult & { flags: ScoreFlag[][] }>;
  /** the provider the sessions run on */
  readonly provider: ExecutionProvider;
  /** input/output names and declared shapes of the loaded model (for checkSessionMatchesManifest) */
  readonly signature: SessionSignature;
  readonly size: number;
  /** terminates every worker; pending calls reject. Idempotent. */
  close(): Promise<void>;
}

interface Pending {
  resolve: (r: PoolResult & { flags?: ScoreFlag[][] }) => void;
  reject: (e: Error) => void;
  n: number;
}

interface Slot {
  index: number;
  worker: Worker;
  ready: Promise<void>;
  isReady: boolean;
  inFlight: Map<number, Pending>;
}

interface ReadyInfo {
  provider: ExecutionProvider;
  cudaError?: string;
  signature: {
    inputNames: string[];
    outputNames: string[];
    inputMetadata: WorkerValueMetadata[];
    outputMetadata: WorkerValueMetadata[];
  };
}

/**
 * How to start a worker whose entry is `name` (without extension) beside this module: the compiled
 * JS (dist/), or, when running from the TS sources (vitest, tsx), a tiny CommonJS bootstrap that
 * registers tsx's require hook and loads the .ts file. (Node 20 does not apply `--import tsx`
 * loader hooks to a worker's entry module.)
 */
export function resolveWorkerScript(name = "onnx-session-worker"): { script: URL | string; eval: boolean } {
  const jsUrl = new URL(`./${name}.js`, import.meta.url);
  if (existsSync(fileURLToPath(jsUrl))) return { script: jsUrl, eval: false };
  const tsPath = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  if (!existsSync(tsPath)) {
    throw new MmssrError(
      ERROR_CODES.INTERNAL,
      `worker script ${name} not found beside ${fileURLToPath(import.meta.url)} (.js or .ts)`,
    );
  }
  const tsxApi = createRequire(import.meta.url).resolve("tsx/cjs/api");
  return {
    script: `require(${JSON.stringify(tsxApi)}).register();\nrequire(${JSON.stringify(tsPath)});\n`,
    eval: true,
  };
}

function inferenceError(message: string, cause?: unknown): MmssrError {
  return new MmssrError(ERROR_CODES.INFERENCE, message, cause === undefined ? {} : { cause });
}

function positiveInt(v: number | undefined, dflt: number, name: string): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < 1) {
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `session pool: ${name} must be a positive integer, got ${v}`,
    );
  }
  return x;
}

export async function createSessionPool(options: SessionPoolOptions): Promise<SessionPool> {
  const size = positiveInt(options.workers, 1, "workers");
  const intraOpThreads = positiveInt(options.intraOpThreads, 1, "intraOpThreads");
  const requested = options.executionProvider ?? "cpu";
  if (requested !== "cpu" && requested !== "cuda") {
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `session pool: unknown execution provider "${requested}"`);
  }
  const onCuda = options.onCudaUnavailable ?? "fail";
  if (!options.onnxBytes === !options.onnxPath) {
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, "session pool: give exactly one of onnxBytes and onnxPath");
  }
  const log = options.logger ?? (() => {});
  const script = resolveWorkerScript();
  const names = {
    inputName: options.inputName ?? "features",
    scoresName: options.scoresName ?? "scores",
    stylesName: options.stylesName ?? "styles",
  };

  const slots: Slot[] = [];
  let closed = false;
  let nextId = 1;
  let rr = 0;

  function spawn(
    index: number,
    provider: ExecutionProvider,
    fallbackToCpu: boolean,
  ): { slot: Slot; info: Promise<ReadyInfo> } {
    const init: WorkerInit = {
      onnxBytes: options.onnxBytes,
      onnxPath: options.onnxPath,
      intraOpThreads,
      executionProvider: provider,
      fallbackToCpu,
      ...names,
      featurizer: options.featurizer,
    };
    const worker = new Worker(script.script, { workerData: init, eval: script.eval });
    let settleReady: { resolve: (i: ReadyInfo) => void; reject: (e: Error) => void } | undefined;
    const info = new Promise<ReadyInfo>((resolve, reject) => {
      settleReady = { resolve, reject };
    });
    const slot: Slot = { index, worker, ready: info.then(() => {}), isReady: false, inFlight: new Map() };
    slot.ready.catch(() => {}); // observed through `info` or by run()
    let gone = false;

    const fail = (why: string, cause?: unknown) => {
      if (gone) return;
      gone = true;
      const err = inferenceError(`inference worker ${index}: ${why}`, cause);
      settleReady?.reject(err);
      for (const p of slot.inFlight.values()) p.reject(err);
      slot.inFlight.clear();
      if (!closed && slot.isReady) {
        // a worker that had started crashed: replace it with one on the provider already chosen
        log(`inference worker ${index} ${why}; replacing it`);
        const replacement = spawn(index, pool.provider, false);
        slots[index] = replacement.slot;
        replacement.info.catch((e: Error) =>
          log(`replacement of inference worker ${index} failed: ${e.message}`),
        );
      }
    };

    worker.on("message", (msg: WorkerToMain) => {
      switch (msg.type) {
        case "ready":
          slot.isReady = true;
          settleReady?.resolve({
            provider: msg.provider,
            cudaError: msg.cudaError,
            signature: {
              inputNames: msg.inputNames,
              outputNames: msg.outputNames,
              inputMetadata: msg.inputMetadata,
              outputMetadata: msg.outputMetadata,
            },
          });
          break;
        case "init-error":
          settleReady?.reject(
            inferenceError(
              msg.provider === "cuda"
                ? `CUDA execution provider failed to load: ${msg.message}. ` +
                    "Install an onnxruntime-node build with CUDA and its CUDA/cuDNN libraries, " +
                    'or run on the CPU (flag --ep cpu; option executionProvider "cpu") or fall back to it ' +
                    '(flag --cuda-fallback; option onCudaUnavailable "fallback-cpu").'
                : `cannot create ONNX Runtime session (${msg.provider}): ${msg.message}`,
            ),
          );
          gone = true;
          void worker.terminate();
          break;
        case "result": {
          const p = slot.inFlight.get(msg.id);
          if (!p) break;
          slot.inFlight.delete(msg.id);
          if (msg.scores.length !== p.n * NUM_CAPABILITIES || msg.styles.length !== p.n * NUM_STYLES) {
            p.reject(
              inferenceError(
                `model returned scores of ${msg.scores.length} and styles of ${msg.styles.length} values ` +
                  `for ${p.n} rows; expected [${p.n}, ${NUM_CAPABILITIES}] and [${p.n}, ${NUM_STYLES}]`,
              ),
            );
          } else {
            p.resolve({ scores: msg.scores, styles: msg.styles, flags: msg.flags, seconds: msg.seconds });
          }
          break;
        }
        case "error": {
          const p = slot.inFlight.get(msg.id);
          if (!p) break;
          slot.inFlight.delete(msg.id);
          p.reject(inferenceError(`ONNX Runtime run failed: ${msg.message}`));
          break;
        }
      }
    });
    worker.on("error", (err) => fail(`crashed: ${err.message}`, err));
    worker.on("exit", (code) => fail(closed ? "closed" : `exited with code ${code}`));
    return { slot, info };
  }

  const pool = {
    provider: requested as ExecutionProvider,
    signature: undefined as unknown as SessionSignature,
    size,
    run,
    runSamples,
    close,
  };

  /**
   * Asks every worker to finish its run, release its session and exit; terminates the ones
   * that have not within a few seconds (a worker stuck in a run).
   */
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    await Promise.all(
      slots.map(async (s) => {
        const exited = new Promise<void>((resolve) => s.worker.once("exit", () => resolve()));
        try {
          s.worker.postMessage({ type: "close" } satisfies MainToWorker);
        } catch {
          // already gone
        }
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), 5_000);
        });
        const outcome = await Promise.race([exited, late]);
        clearTimeout(timer);
        if (outcome === "late") await s.worker.terminate();
      }),
    );
  }

  // The first worker settles the provider (and the fallback); the others start on that provider.
  const first = spawn(0, requested, requested === "cuda" && onCuda === "fallback-cpu");
  slots.push(first.slot);
  let firstInfo: ReadyInfo;
  try {
    firstInfo = await first.info;
  } catch (err) {
    await close();
    throw err;
  }
  if (firstInfo.cudaError !== undefined) {
    log(`CUDA execution provider failed to load (${firstInfo.cudaError}); falling back to CPU as configured`);
  }
  pool.provider = firstInfo.provider;
  pool.signature = firstInfo.signature;
  for (let i = 1; i < size; i++) slots.push(spawn(i, pool.provider, false).slot);
  try {
    await Promise.all(slots.map((s) => s.ready));
  } catch (err) {
    await close();
    throw err;
  }
  log(
    `inference: ${size} worker${size === 1 ? "" : "s"} on the ${pool.provider} execution provider, ${intraOpThreads} intra-op thread${intraOpThreads === 1 ? "" : "s"} each`,
  );

  function pick(): Slot | undefined {
    let best: Slot | undefined;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[(rr + k) % slots.length];
      if (!s.isReady) continue;
      if (!best || s.inFlight.size < best.inFlight.size) best = s;
    }
    rr = (rr + 1) % slots.length;
    return best;
  }

  async function run(features: Float32Array, n: number, dims: number): Promise<PoolResult> {
    if (closed) throw inferenceError("session pool is closed");
    if (
      !Number.isInteger(n) ||
      n < 0 ||
      !Number.isInteger(dims) ||
      dims < 1 ||
      features.length !== n * dims
    ) {
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `session pool run: features has ${features.length} values, expected n * dims = ${n} * ${dims}`,
      );
    }
    if (n === 0) return { scores: new Float32Array(0), styles: new Float32Array(0) };
    const transferable =
      features.buffer instanceof ArrayBuffer &&
      features.byteOffset === 0 &&
      features.byteLength === features.buffer.byteLength;
    return dispatch(n, (id) => ({
      msg: { type: "run", id, features, n, dims },
      transfer: transferable ? [features.buffer as ArrayBuffer] : [],
    }));
  }

  async function runSamples(
    items: readonly LoadedSample[],
    dims: number,
  ): Promise<PoolResult & { flags: ScoreFlag[][] }> {
    if (closed) throw inferenceError("session pool is closed");
    if (options.featurizer === undefined)
      throw new MmssrError(
        ERROR_CODES.INTERNAL,
        "session pool: runSamples needs a pool started with a featurizer",
      );
    const n = items.length;
    if (n === 0) return { scores: new Float32Array(0), styles: new Float32Array(0), flags: [] };
    // Image bytes are copied into buffers of their own and those are transferred: a loader's
    // Buffer may be a view into a shared pool (or a cache) that must not be detached.
    const transfer: ArrayBuffer[] = [];
    const sent: LoadedSample[] = items.map((it) => {
      if (it.image.kind !== "bytes") return it;
      const bytes = new Uint8Array(it.image.bytes);
      transfer.push(bytes.buffer);
      return { ...it, image: { kind: "bytes", bytes } };
    });
    const out = await dispatch(n, (id) => ({ msg: { type: "score", id, items: sent, dims }, transfer }));
    if (out.flags === undefined || out.flags.length !== n)
      throw inferenceError(`inference worker returned flags for ${out.flags?.length ?? 0} of ${n} samples`);
    return { scores: out.scores, styles: out.styles, flags: out.flags, seconds: out.seconds };
  }

  /** Sends one request (built with its id) to the least busy ready worker; resolves with its result. */
  async function dispatch(
    n: number,
    build: (id: number) => { msg: MainToWorker; transfer: ArrayBuffer[] },
  ): Promise<PoolResult & { flags?: ScoreFlag[][] }> {
    let slot = pick();
    if (!slot) {
      // every worker is being replaced: wait for the first that comes up
      try {
        await Promise.any(slots.map((s) => s.ready));
      } catch (err) {
        throw inferenceError("no inference worker is available", err);
      }
      if (closed) throw inferenceError("session pool is closed");
      slot = pick();
      if (!slot) throw inferenceError("no inference worker is available");
    }
    const id = nextId++;
    const target = slot;
    return new Promise((resolve, reject) => {
      target.inFlight.set(id, { resolve, reject, n });
      const { msg, transfer } = build(id);
      try {
        target.worker.postMessage(msg, transfer.length > 0 ? transfer : undefined);
      } catch (err) {
        target.inFlight.delete(id);
        reject(
          inferenceError(
            `cannot send the batch to inference worker ${target.index}: ${(err as Error).message}`,
            err,
          ),
        );
      }
    });
  }

  slotsOfPool.set(pool, () => slots);
  return pool;
}

const slotsOfPool = new WeakMap<SessionPool, () => Slot[]>();

/** Test aid: makes one worker exit abruptly (as a native crash would). */
export function crashWorkerForTest(pool: SessionPool, index: number): void {
  const slots = slotsOfPool.get(pool)?.();
  if (!slots) throw new MmssrError(ERROR_CODES.INTERNAL, "not a session pool");
  slots[index].worker.postMessage({ type: "crash" } satisfies MainToWorker);
}
