/**
 * The one place that knows which Parquet library writes our files (issue 2, BENCHMARKS.md
 * "Parquet writer choice"): parquet-wasm, the Rust reference writer compiled to WebAssembly,
 * fed Apache Arrow record batches. Callers hand over Arrow batches (library-neutral columns);
 * swapping the Parquet library means rewriting this file only.
 *
 * Batches are pulled one at a time (backpressure through a ReadableStream) and the encoded
 * bytes are streamed to disk, so memory holds about one row group, not the whole file.
 * The file is published atomically: written under a temporary name in the target directory,
 * fsynced, then renamed over the target.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type RecordBatch, Table, tableToIPC } from "apache-arrow";
import * as pw from "parquet-wasm";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";

export type ParquetCompression = "zstd" | "snappy" | "gzip" | "uncompressed";

export interface ParquetWriteOptions {
  /** Codec for every column (default zstd). */
  compression?: ParquetCompression;
  /** Most rows per row group (default 131072). */
  rowGroupSize?: number;
}

export const DEFAULT_ROW_GROUP_SIZE = 131_072;

type BatchSource = Iterable<RecordBatch | Table> | AsyncIterable<RecordBatch | Table>;

function codec(c: ParquetCompression): pw.Compression {
  switch (c) {
    case "zstd":
      return pw.Compression.ZSTD;
    case "snappy":
      return pw.Compression.SNAPPY;
    case "gzip":
      return pw.Compression.GZIP;
    case "uncompressed":
      return pw.Compression.UNCOMPRESSED;
  }
}

function toWasmBatches(item: RecordBatch | Table): pw.RecordBatch[] {
  const table = item instanceof Table ? item : new Table(item);
  if (table.numRows === 0) return [];
  const wasmTable = pw.Table.fromIPCStream(tableToIPC(table, "stream"));
  try {
    return wasmTable.recordBatches();
  } finally {
    wasmTable.free();
  }
}

const RETRIABLE_FS_CODES = new Set(["ENOSPC", "EAGAIN", "EIO", "EBUSY", "EMFILE", "ENFILE", "EDQUOT"]);

function ioError(action: string, path: string, err: unknown): MmssrError {
  if (err instanceof MmssrError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const reason = err instanceof Error ? err.message : String(err);
  return new MmssrError(ERROR_CODES.IO, `${action} ${path}: ${reason}`, {
    retriable: code !== undefined && RETRIABLE_FS_CODES.has(code),
    cause: err,
  });
}

/**
 * Writes the batches (all with the same schema) to a Parquet file at `path`, atomically.
 * Resolves with the number of bytes written. On failure the target is left untouched and the
 * temporary file removed. Zero batches (or only empty ones) are an error: Parquet needs a schema,
 * so pass at least one (possibly zero-row) batch.
 */
export async function writeParquetFile(
  path: string,
  batches: BatchSource,
  options: ParquetWriteOptions = {},
): Promise<number> {
  const rowGroupSize = options.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
  const props = new pw.WriterPropertiesBuilder()
    .setCompression(codec(options.compression ?? "zstd"))
    .setMaxRowGroupSize(rowGroupSize)
    .setCreatedBy("mmssr-stream (parquet-wasm)")
    .build();

  const iterator =
    Symbol.asyncIterator in batches
      ? (batches as AsyncIterable<RecordBatch | Table>)[Symbol.asyncIterator]()
      : (batches as Iterable<RecordBatch | Table>)[Symbol.iterator]();
  // A zero-row table still carries the schema: keep the first one in case nothing follows.
  let schemaOnly: Table | undefined;
  let sentAny = false;
  // An error thrown by the batch source crosses the WebAssembly stream as an opaque error: keep it.
  let sourceError: unknown;
  const pending: pw.RecordBatch[] = [];
  const input = new ReadableStream<pw.RecordBatch>({
    async pull(controller) {
      while (pending.length === 0) {
        let next: IteratorResult<RecordBatch | Table>;
        try {
          next = await iterator.next();
        } catch (err) {
          sourceError = err;
          throw err;
        }
        if (next.done) {
          if (!sentAny && schemaOnly) {
            // parquet-wasm needs one batch to learn the schema; an empty slice is enough.
            const wasmTable = pw.Table.fromIPCStream(tableToIPC(schemaOnly, "stream"));
            const empty = wasmTable.recordBatch(0);
            wasmTable.free();
            if (empty) {
              sentAny = true;
              controller.enqueue(empty);
            }
          }
          controller.close();
          return;
        }
        const item = next.value;
        if (item.numRows === 0) {
          schemaOnly ??= item instanceof Table ? item : new Table(item);
          continue;
        }
        pending.push(...toWasmBatches(item));
      }
      sentAny = true;
      controller.enqueue(pending.shift() as pw.RecordBatch);
    },
  });

  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  let fh: FileHandle | undefined;
  let bytes = 0;
  try {
    try {
      fh = await open(tmp, "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        throw new MmssrError(
          ERROR_CODES.FILE_NOT_FOUND,
          `cannot write ${path}: directory ${dir} does not exist`,
        );
      throw ioError("cannot create", tmp, err);
    }
    // transformParquetStream takes ownership of (and frees) the writer properties.
    const output = await pw.transformParquetStream(input, props);
    const reader = (output as ReadableStream<Uint8Array>).getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let off = 0;
      while (off < value.length) {
        const { bytesWritten } = await fh.write(value, off, value.length - off);
        off += bytesWritten;
      }
      bytes += value.length;
    }
    if (!sentAny) throw new MmssrError(ERROR_CODES.INTERNAL, `writeParquetFile(${path}): no batch given`);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (sourceError !== undefined) throw sourceError;
    if (err instanceof MmssrError) throw err;
    throw ioError("cannot write", path, err);
  }
  // Make the rename itself durable (best effort: not every filesystem lets a directory be fsynced).
  try {
    const dh = await open(dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    /* ignore */
  }
  return bytes;
}
