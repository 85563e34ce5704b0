import { readdir, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { ERROR_CODES, MmssrError } from "../src/domain/errors.js";
import { type ScoredPool, ScoredPoolBuilder } from "../src/pool/scored-pool.js";
import { readScoredPoolJsonl, writeScoredPoolJsonl } from "./files/scored-pool-jsonl.js";
import { readScoredPoolParquet, writeScoredPoolParquet } from "./parquet/scored-pool-parquet.js";
import { publishedFiles } from "./sink/shared-output.js";
import { LEGACY_MANIFEST_NAME, MANIFESTS_DIR } from "./sink/sink-manifest.js";

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

/**
 * A scored pool from a file (.jsonl or .parquet), or from a folder: a curate output (the scored
 * files its manifests publish, nothing else) or any folder of pool files (every .jsonl and
 * .parquet in it, in name order). The files of a folder form one pool; an id in two of them is
 * a bad row, as within one file.
 */
export async function readScoredPool(path: string): Promise<ScoredPool> {
  const isDir = await stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) return readScoredPoolFile(path);
  const files = await poolFilesOf(path);
  if (files.length === 1) return readScoredPoolFile(files[0]);
  const pools = [];
  for (const f of files) pools.push(await readScoredPoolFile(f));
  const builder = new ScoredPoolBuilder(
    pools.reduce((n, p) => n + p.size, 0),
    { trackIds: true },
  );
  for (const [k, pool] of pools.entries())
    builder.appendColumns(
      {
        length: pool.size,
        ids: pool.ids,
        sources: pool.sources,
        sourceOfRow: pool.sourceIndex,
        styleMask: pool.styleMask,
        scores: pool.scores,
        extras: pool.extras,
      },
      (row) => `${files[k]}: row ${row + 1}`,
    );
  return builder.build();
}

function readScoredPoolFile(path: string): Promise<ScoredPool> {
  return poolFormatOf(path) === "jsonl" ? readScoredPoolJsonl(path) : readScoredPoolParquet(path);
}

/** The pool files a folder holds: what a curate output's manifests publish, else every pool file. */
async function poolFilesOf(dir: string): Promise<string[]> {
  const entries = await readdir(dir);
  let files: string[];
  if (entries.includes(MANIFESTS_DIR) || entries.includes(LEGACY_MANIFEST_NAME)) {
    files = await publishedFiles(dir, "scored");
  } else {
    files = entries
      .filter((name) => /\.(jsonl|ndjson|parquet)$/i.test(name) && !name.startsWith("."))
      .sort()
      .map((name) => join(dir, name));
  }
  if (files.length === 0)
    throw new MmssrError(
      ERROR_CODES.FILE_NOT_FOUND,
      `${dir} is a folder without scored-pool files (.jsonl, .parquet, or a curate output's published scored files)`,
    );
  return files;
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
