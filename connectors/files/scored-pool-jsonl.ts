import { stat } from "node:fs/promises";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { CAPABILITY_IDS, NUM_CAPABILITIES, styleNamesOfMask } from "../../src/domain/taxonomy.js";
import { parseScoredRow, type ScoredPool, ScoredPoolBuilder } from "../../src/pool/scored-pool.js";
import { AtomicFile } from "../../src/util/atomic-file.js";
import { readTextLines } from "./text-lines.js";

/** How many bad rows a read reports before it stops: enough to see a pattern, not a flood. */
const MAX_REPORTED_ERRORS = 20;

/**
 * Reads a scored pool in the JSONL interchange format (MMSSR.md) line by line: memory grows
 * with the typed columns only, never with the file. Blank lines are skipped. Bad rows are
 * reported with their line number and field; after the first few the read stops.
 */
export async function readScoredPoolJsonl(path: string): Promise<ScoredPool> {
  await assertReadable(path);
  const builder = new ScoredPoolBuilder(1024, { trackIds: true });
  const errors: string[] = [];
  // For every line that added no row (blank or bad), the number of rows added before it:
  // the line of 0-based row r is r + 1 + (entries <= r), so a duplicate id can name the line
  // of its first occurrence. Grows with skipped lines only.
  const skippedAt: number[] = [];
  const lineOfRow = (r: number): number => {
    let lo = 0;
    let hi = skippedAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (skippedAt[mid] <= r) lo = mid + 1;
      else hi = mid;
    }
    return r + 1 + lo;
  };
  for await (const read of readTextLines(path)) {
    const where = `${path}:${read.lineNo}`;
    if ("error" in read) {
      skippedAt.push(builder.size);
      errors.push(`${where}: ${read.error}`);
      if (errors.length >= MAX_REPORTED_ERRORS) break;
      continue;
    }
    const line = read.text;
    if (line.trim() === "") {
      skippedAt.push(builder.size);
      continue;
    }
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (err) {
      skippedAt.push(builder.size);
      errors.push(`${where}: invalid JSON: ${(err as Error).message}`);
      if (errors.length >= MAX_REPORTED_ERRORS) break;
      continue;
    }
    const parsed = parseScoredRow(obj);
    if (!parsed.ok) {
      skippedAt.push(builder.size);
      errors.push(`${where}: ${parsed.errors.join("; ")}`);
      if (errors.length >= MAX_REPORTED_ERRORS) break;
      continue;
    }
    const previous = builder.rowOfId(parsed.value.id);
    if (previous !== undefined) {
      skippedAt.push(builder.size);
      errors.push(
        `${where}: id ${JSON.stringify(parsed.value.id)} repeats the id on line ${lineOfRow(previous)}; ids must be unique in a pool`,
      );
      if (errors.length >= MAX_REPORTED_ERRORS) break;
      continue;
    }
    builder.add(parsed.value);
  }
  if (errors.length > 0) throw badRows(path, errors);
  return builder.build();
}

export function badRows(path: string, errors: string[]): MmssrError {
  const more =
    errors.length >= MAX_REPORTED_ERRORS ? `\n(stopped after ${MAX_REPORTED_ERRORS} bad rows)` : "";
  return new MmssrError(
    ERROR_CODES.BAD_ROW,
    `${path}: ${errors.length} bad row(s); nothing was selected:\n  ${errors.join("\n  ")}${more}`,
  );
}

/** Throws MmssrError(FILE_NOT_FOUND) naming the path when it is missing, a folder, or not a file. */
export async function assertReadable(path: string): Promise<void> {
  let s: Awaited<ReturnType<typeof stat>>;
  try {
    s = await stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MmssrError(
      ERROR_CODES.FILE_NOT_FOUND,
      code === "ENOENT" ? `${path}: no such file` : `${path}: cannot be read (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (s.isDirectory()) throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${path} is a folder: give a file`);
  if (!s.isFile()) throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${path}: not a regular file`);
}

export interface WriteScoredPoolJsonlOptions {
  /** Rows of the pool to write, in output order (default: all, in pool order). */
  rows?: Uint32Array;
  /** Columns added to each written row (value k belongs to the k-th written row). */
  extraColumns?: Record<string, readonly (string | null)[]>;
}

/** Writes rows of a pool as interchange-format JSONL, atomically (temp file, fsync, rename). */
export async function writeScoredPoolJsonl(
  path: string,
  pool: ScoredPool,
  options: WriteScoredPoolJsonlOptions = {},
): Promise<{ rows: number }> {
  const count = options.rows ? options.rows.length : pool.size;
  const extraNames = Object.keys(options.extraColumns ?? {});
  const file = new AtomicFile(path);
  try {
    let chunk = "";
    for (let k = 0; k < count; k++) {
      const i = options.rows ? options.rows[k] : k;
      const scores: Record<string, number | null> = {};
      for (let c = 0; c < NUM_CAPABILITIES; c++) {
        const v = pool.scores[c][i];
        scores[CAPABILITY_IDS[c]] = Number.isNaN(v) ? null : v;
      }
      const row: Record<string, unknown> = {
        id: pool.ids[i],
        image_source: pool.sources[pool.sourceIndex[i]],
        styles: styleNamesOfMask(pool.styleMask[i]),
        scores,
        ...pool.extras.get(i),
      };
      for (const name of extraNames) row[name] = options.extraColumns?.[name][k] ?? null;
      chunk += `${JSON.stringify(row)}\n`;
      if (chunk.length > 1 << 20) {
        await file.write(chunk);
        chunk = "";
      }
    }
    await file.write(chunk);
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
  return { rows: count };
}
