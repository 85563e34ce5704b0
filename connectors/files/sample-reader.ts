import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { openParquet, parquetBatches, toPlain } from "../parquet/parquet-batches.js";
import { assertReadable } from "./scored-pool-jsonl.js";
import { readTextLines } from "./text-lines.js";

/** One record of a samples file: its parsed JSON, or why it could not be parsed. */
export type SampleRecord =
  | { where: string; ordinal: number; value: unknown }
  | { where: string; ordinal: number; error: string; raw?: string };

export type SampleFileFormat = "jsonl" | "json" | "parquet";

export function sampleFormatOf(path: string): SampleFileFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".json") return "json";
  if (ext === ".parquet") return "parquet";
  throw new MmssrError(
    ERROR_CODES.UNSUPPORTED_FORMAT,
    `${path}: unknown extension ${JSON.stringify(ext)} for samples; use .jsonl (one sample per line), .json (an array, LLaVA style) or .parquet (one sample per row)`,
  );
}

/**
 * Reads samples from JSONL (streamed line by line; blank lines skipped) or from a JSON array
 * (LLaVA's and LLaMA-Factory's files; parsed whole). A line that is not JSON is yielded as an
 * error with its line number, so the caller can reject it with a reason instead of losing it.
 */
export async function* readSampleRecords(path: string): AsyncGenerator<SampleRecord> {
  await assertReadable(path);
  const format = sampleFormatOf(path);
  if (format === "parquet") {
    yield* readParquetSamples(path);
    return;
  }
  if (format === "json") {
    const parsed = await readJsonArray(path);
    for (let k = 0; k < parsed.length; k++) yield { where: `${path}[${k}]`, ordinal: k, value: parsed[k] };
    return;
  }
  let ordinal = 0;
  for await (const line of readTextLines(path)) {
    const where = `${path}:${line.lineNo}`;
    if ("error" in line) {
      // bytes that are not UTF-8 are a bad row (as the stream dead-letters them), not repaired
      yield { where, ordinal: ordinal++, error: line.error, raw: line.bytes.toString("latin1") };
      continue;
    }
    if (line.text.trim() === "") continue;
    // parse before numbering: the ordinal of a line must not depend on whether it parses
    let value: unknown;
    let error: string | undefined;
    try {
      value = JSON.parse(line.text);
    } catch (err) {
      error = `invalid JSON: ${(err as Error).message}`;
    }
    const n = ordinal++;
    yield error === undefined ? { where, ordinal: n, value } : { where, ordinal: n, error, raw: line.text };
  }
}

/** Number of records a samples file holds (lines that are not blank, or array length), for progress. */
export async function countSampleRecords(path: string): Promise<number> {
  const format = sampleFormatOf(path);
  await assertReadable(path);
  if (format === "parquet") {
    const { file, numRows } = await openParquet(path);
    file.free();
    return numRows;
  }
  if (format === "json") return (await readJsonArray(path)).length;
  let n = 0;
  for await (const line of readTextLines(path)) if ("error" in line || line.text.trim() !== "") n++;
  return n;
}

/** Columns that may hold image bytes: delivered as base64 in `image_b64`, as inline images travel in JSON. */
const IMAGE_BYTE_COLUMNS = new Set(["image_b64", "image_bytes"]);

/**
 * Samples stored one per Parquet row: columns are the sample's fields; `conversations` either a
 * list of {from, value} structs or a JSON string; image bytes in a binary image_b64/image_bytes
 * column. Read in batches, so a large file never sits in memory whole.
 */
async function* readParquetSamples(path: string): AsyncGenerator<SampleRecord> {
  const { file, schema } = await openParquet(path);
  try {
    const names = schema.fields.map((f) => f.name);
    let row = 0;
    for await (const batch of parquetBatches(file, 8192)) {
      const columns = names.map((name) => batch.getChild(name));
      for (let k = 0; k < batch.numRows; k++, row++) {
        const value: Record<string, unknown> = {};
        let error: string | undefined;
        names.forEach((name, c) => {
          const cell = columns[c]?.get(k);
          if (cell === null || cell === undefined) return;
          if (IMAGE_BYTE_COLUMNS.has(name) && cell instanceof Uint8Array) {
            value.image_b64 = Buffer.from(cell).toString("base64");
            return;
          }
          let plain = toPlain(cell);
          if (name === "conversations" && typeof plain === "string") {
            try {
              plain = JSON.parse(plain);
            } catch (err) {
              error = `conversations: not valid JSON: ${(err as Error).message}`;
            }
          }
          value[name] = plain;
        });
        const where = `${path}: row ${row + 1}`;
        yield error ? { where, ordinal: row, error } : { where, ordinal: row, value };
      }
    }
  } finally {
    file.free();
  }
}

/** A .json samples file: one array (LLaVA, LLaMA-Factory); an empty, truncated or other file is a bad row. */
async function readJsonArray(path: string): Promise<unknown[]> {
  const text = await readFile(path, "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      text.trim() === ""
        ? `${path}: the file is empty (expected a JSON array of samples)`
        : `${path}: not valid JSON (truncated?): ${(err as Error).message}`,
    );
  }
  if (!Array.isArray(parsed))
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${path}: expected a JSON array of samples (use .jsonl for one per line)`,
    );
  return parsed;
}
