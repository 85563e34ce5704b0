/**
 * Reading side of our Parquet use, shared by every reader: open a file through parquet-wasm
 * without loading it whole (a Blob over the file), stream it as Apache Arrow record batches of
 * bounded size, and turn Arrow cell values into plain JSON-like values.
 */
import { openAsBlob } from "node:fs";
import { type RecordBatch, type Schema, tableFromIPC } from "apache-arrow";
import * as pw from "parquet-wasm";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { assertReadable } from "../files/scored-pool-jsonl.js";

export interface OpenParquet {
  file: pw.ParquetFile;
  schema: Schema;
  numRows: number;
}

/** Opens a Parquet file for streaming; FILE_NOT_FOUND or UNSUPPORTED_FORMAT name the path. Call file.free() when done. */
export async function openParquet(path: string): Promise<OpenParquet> {
  await assertReadable(path);
  let blob: Blob;
  try {
    blob = await openAsBlob(path);
  } catch (err) {
    throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let file: pw.ParquetFile;
  try {
    file = await pw.ParquetFile.fromFile(blob);
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.UNSUPPORTED_FORMAT,
      `${path} is not a readable Parquet file (${blob.size} bytes; truncated, still being written, or another format?): ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const schema = tableFromIPC(file.schema().intoIPCStream()).schema;
  const meta = file.metadata();
  const numRows = Number(meta.fileMetadata().numRows());
  meta.free();
  return { file, schema, numRows };
}

/** The file's rows as Arrow record batches of at most `batchRows` rows each. */
export async function* parquetBatches(file: pw.ParquetFile, batchRows: number): AsyncGenerator<RecordBatch> {
  const stream = (await file.stream({ batchSize: Math.max(1, batchRows) })) as ReadableStream<pw.RecordBatch>;
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      for (const batch of tableFromIPC(value.intoIPCStream()).batches) yield batch;
    }
  } finally {
    reader.releaseLock();
  }
}

/** An Arrow cell value as plain JSON-like data: lists as arrays, structs as objects, int64 as number. */
export function toPlain(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (typeof v === "object") {
    if (v instanceof Date) return v.toISOString();
    if (ArrayBuffer.isView(v) && !(v instanceof DataView))
      return Array.from(v as unknown as ArrayLike<number>);
    const json = (v as { toJSON?: () => unknown }).toJSON;
    if (typeof json === "function") return plainDeep(json.call(v));
    if (Array.isArray(v)) return v.map(toPlain);
    // Decimal and other big numbers convert through their primitive value.
    const prim = (v as { [Symbol.toPrimitive]?: (hint: string) => unknown })[Symbol.toPrimitive];
    if (typeof prim === "function") return toPlain(prim.call(v, "number"));
  }
  return v;
}

function plainDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toPlain);
  if (v !== null && typeof v === "object" && !(v instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlain(x);
    return out;
  }
  return toPlain(v);
}
