import { extname } from "node:path";
import { ERROR_CODES, MmssrError } from "../src/domain/errors.js";
import type { ScoredPool } from "../src/pool/scored-pool.js";
import { readScoredPoolJsonl, writeScoredPoolJsonl } from "./files/scored-pool-jsonl.js";
import { readScoredPoolParquet, writeScoredPoolParquet } from "./parquet/scored-pool-parquet.js";

/** The two forms of the scored-pool interchange format, told apart by file extension. */
export type PoolFormat = "jsonl" | "parquet";

export function poolFormatOf(path: string): PoolFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".parquet") return "parquet";
  throw new MmssrError(
    ERROR_CODES.UNSUPPORTED_FORMAT,
    `${path}: unknown extension ${JSON.stringify(ext)}; use .jsonl (or .ndjson) or .parquet`,
  );
}

export async function readScoredPool(path: string): Promise<ScoredPool> {
  return poolFormatOf(path) === "jsonl" ? readScoredPoolJsonl(path) : readScoredPoolParquet(path);
}

export interface WriteScoredPoolOptions {
  rows?: Uint32Array;
  extraColumns?: Record<string, readonly (string | null)[]>;
}

export async function writeScoredPool(
  path: string,
  pool: ScoredPool,
  options: WriteScoredPoolOptions = {},
): Promise<{ rows: number }> {
  if (poolFormatOf(path) === "jsonl") return writeScoredPoolJsonl(path, pool, options);
  const { rows } = await writeScoredPoolParquet(path, pool, options);
  return { rows };
}
