/**
 * Creating the onnxruntime-node sessions of the OCR models (CPU, the options the scoring workers
 * use: sequential execution, full graph optimisation, `intraOpNumThreads` threads, one inter-op
 * thread, warnings off). A missing file or one onnxruntime cannot load is an MmssrError
 * (MODEL_INVALID) naming the path; a failed run is an MmssrError (INFERENCE).
 */

import * as ort from "onnxruntime-node";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { checkModelFile } from "./ocr-models.js";

export interface OcrSessionOptions {
  /** threads for one operator (onnxruntime intraOpNumThreads). Default 1 (one per worker thread). */
  intraOpNumThreads?: number;
}

export function checkThreads(n: number | undefined): number {
  const threads = n ?? 1;
  if (!Number.isInteger(threads) || threads < 1 || threads > 256)
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `intraOpNumThreads must be an integer in 1..256, got ${n}`);
  return threads;
}

export async function createOcrSession(
  path: string,
  what: string,
  options: OcrSessionOptions = {},
): Promise<ort.InferenceSession> {
  const threads = checkThreads(options.intraOpNumThreads);
  checkModelFile(path, what);
  try {
    return await ort.InferenceSession.create(path, {
      executionProviders: ["cpu"],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      logSeverityLevel: 3,
    });
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `OCR ${what} model cannot be loaded by onnxruntime: ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** Runs `session` on one float32 input; returns the first output. */
export async function runOcrSession(
  session: ort.InferenceSession,
  what: string,
  data: Float32Array,
  dims: readonly number[],
): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const input = new ort.Tensor("float32", data, dims);
  let output: ort.Tensor | undefined;
  try {
    const result = await session.run({ [session.inputNames[0]]: input });
    output = result[session.outputNames[0]];
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.INFERENCE,
      `OCR ${what} inference failed on input [${dims.join(", ")}]: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (output === undefined || !(output.data instanceof Float32Array))
    throw new MmssrError(ERROR_CODES.INFERENCE, `OCR ${what} model gave no float32 output`);
  return { data: output.data, dims: output.dims };
}
