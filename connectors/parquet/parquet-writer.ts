/**
 * The one place that knows which Parquet library writes our files (issue 2, BENCHMARKS.md
 * "Parquet writer choice"): parquet-wasm, the Rust reference writer compiled to WebAssembly,
 * fed Apache Arrow record batches. Callers hand over Arrow batches (library-neutral columns);
 * swapping the Parquet library means rewriting this file only.
 *
 * Batches are pulled one at a time and handed (as Arrow IPC bytes) to a worker thread that runs
 * the parquet-wasm streaming writer, so building the next batch overlaps with encoding the last
 * one; at most two batches wait for the encoder, and the encoded bytes are streamed to disk, so
 * memory holds a few row groups, not the whole file. Encoder threads are reused from file to
 * file (a few kept warm, unref'd); one that failed is terminated.
 * The file is published atomically (AtomicFile: temporary name, fsync, rename, directory fsync).
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import { type RecordBatch, Table, tableToIPC } from "apache-arrow";
import type * as pw from "parquet-wasm";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { AtomicFile, ioError } from "../../src/util/atomic-file.js";

export type ParquetCompression = "zstd" | "snappy" | "gzip" | "uncompressed";

export interface ParquetWriteOptions {
  /** Codec for every column (default zstd). */
  compression?: ParquetCompression;
  /** Most rows per row group (default 131072). */
  rowGroupSize?: number;
  /**
   * Columns whose values are (nearly) all distinct, such as ids: written without dictionary
   * encoding, which for them only costs time (the dictionary overflows and falls back) and
   * bytes. Other columns are dictionary-encoded while their dictionary stays small.
   */
  plainColumns?: readonly string[];
}

export const DEFAULT_ROW_GROUP_SIZE = 131_072;

type BatchSource = Iterable<RecordBatch | Table> | AsyncIterable<RecordBatch | Table>;

const CODEC_NAMES: Record<ParquetCompression, keyof typeof pw.Compression> = {
  zstd: "ZSTD",
  snappy: "SNAPPY",
  gzip: "GZIP",
  uncompressed: "UNCOMPRESSED",
};

/** Settings the encoder thread needs (plain data: WebAssembly objects cannot cross threads). */
interface EncoderSettings {
  codec: keyof typeof pw.Compression;
  rowGroupSize: number;
  plainColumns: readonly string[];
  createdBy: string;
}

/**
 * Main thread -> encoder: a file begins (its settings), one batch as Arrow IPC stream bytes,
 * the schema only, or the file's end.
 */
type ToEncoder =
  | { kind: "begin"; settings: EncoderSettings }
  | { kind: "batch" | "schema"; ipc: Uint8Array }
  | { kind: "end" };
/** Encoder -> main thread. */
type FromEncoder =
  | { kind: "ack" }
  | { kind: "chunk"; bytes: Uint8Array }
  | { kind: "done" }
  | { kind: "error"; message: string };

/**
 * The encoder thread (CommonJS, evaluated from this string so that it runs the same from the
 * TypeScript sources and from dist/). It encodes one file after another: for each, it turns the
 * IPC batches it is sent into Parquet bytes with parquet-wasm's streaming writer and posts them
 * back; it acks each batch once taken, which the main thread uses as backpressure. A thread
 * outlives its file so that the WebAssembly module stays compiled and warm (a fresh thread per
 * file paid the compile and ran cold code: about as much as the encoding itself).
 */
const ENCODER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const pw = require(workerData.parquetWasm);
const inbox = [];
let wake;
parentPort.on("message", (m) => {
  inbox.push(m);
  if (wake) { const w = wake; wake = undefined; w(); }
});
const next = () => inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((r) => { wake = () => r(inbox.shift()); });
async function encodeFile(s) {
  let builder = new pw.WriterPropertiesBuilder()
    .setCompression(pw.Compression[s.codec])
    .setMaxRowGroupSize(s.rowGroupSize)
    .setCreatedBy(s.createdBy);
  for (const column of s.plainColumns) builder = builder.setColumnDictionaryEnabled(column, false);
  const props = builder.build();
  const pending = [];
  const input = new ReadableStream({
    async pull(controller) {
      while (pending.length === 0) {
        const m = await next();
        if (m.kind === "end") { controller.close(); return; }
        const table = pw.Table.fromIPCStream(m.ipc);
        try {
          if (m.kind === "schema") { const empty = table.recordBatch(0); if (empty) pending.push(empty); }
          else pending.push(...table.recordBatches());
        } finally { table.free(); }
        parentPort.postMessage({ kind: "ack" });
      }
      controller.enqueue(pending.shift());
    },
  });
  // transformParquetStream takes ownership of (and frees) the writer properties.
  const reader = (await pw.transformParquetStream(input, props)).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const bytes = value.slice();
    parentPort.postMessage({ kind: "chunk", bytes }, [bytes.buffer]);
  }
}
(async () => {
  for (;;) {
    const m = await next();
    if (m.kind !== "begin") continue;
    try {
      await encodeFile(m.settings);
      parentPort.postMessage({ kind: "done" });
    } catch (err) {
      parentPort.postMessage({ kind: "error", message: err instanceof Error ? err.message : String(err) });
      // the rest of a failed file's messages may still arrive; a thread that failed is not reused
      return;
    }
  }
})();
`;

const requireHere = createRequire(import.meta.url);

/** Batches sent to the encoder and not yet taken: bounds memory to a few batches. */
const MAX_IN_FLIGHT = 2;

/** Encoder threads kept warm between files (more are started while several files are written at once). */
const MAX_IDLE_ENCODERS = 2;
const idleEncoders: Worker[] = [];

function takeEncoder(): Worker {
  const warm = idleEncoders.pop();
  if (warm) {
    warm.ref();
    return warm;
  }
  return new Worker(ENCODER_SOURCE, {
    eval: true,
    workerData: { parquetWasm: requireHere.resolve("parquet-wasm") },
  });
}

/** A thread whose file was encoded goes back to the idle set; it does not keep the process alive. */
function returnEncoder(worker: Worker): void {
  worker.removeAllListeners("message");
  worker.removeAllListeners("error");
  worker.removeAllListeners("exit");
  if (idleEncoders.length >= MAX_IDLE_ENCODERS) {
    void worker.terminate();
    return;
  }
  worker.on("exit", () => {
    const k = idleEncoders.indexOf(worker);
    if (k >= 0) idleEncoders.splice(k, 1);
  });
  worker.on("error", () => {});
  worker.unref();
  idleEncoders.push(worker);
}

/** `bytes` alone in a buffer of its own, so that the buffer can be transferred to the encoder. */
function ownBytes(bytes: Uint8Array): Uint8Array {
  if (
    bytes.byteOffset === 0 &&
    bytes.byteLength === bytes.buffer.byteLength &&
    bytes.buffer instanceof ArrayBuffer
  )
    return bytes;
  return bytes.slice();
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
  const settings: EncoderSettings = {
    codec: CODEC_NAMES[options.compression ?? "zstd"],
    rowGroupSize: options.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE,
    plainColumns: options.plainColumns ?? [],
    createdBy: "mmssr-stream (parquet-wasm)",
  };
  const iterator =
    Symbol.asyncIterator in batches
      ? (batches as AsyncIterable<RecordBatch | Table>)[Symbol.asyncIterator]()
      : (batches as Iterable<RecordBatch | Table>)[Symbol.iterator]();

  const file = new AtomicFile(path);
  await file.open();

  // Arrow batches are built here while a worker thread encodes the previous ones: on two cores
  // the Parquet encoding (ZSTD, dictionaries) runs beside the gathering of rows instead of after.
  const worker = takeEncoder();
  let encoded = false;
  let bytes = 0;
  let inFlight = 0;
  let acked: (() => void) | undefined;
  let writing: Promise<void> = Promise.resolve();
  let writeError: unknown;
  const finished = new Promise<void>((resolve, reject) => {
    worker.on("message", (m: FromEncoder) => {
      if (m.kind === "ack") {
        inFlight--;
        acked?.();
      } else if (m.kind === "chunk") {
        bytes += m.bytes.length;
        writing = writing
          .then(async () => {
            await file.write(m.bytes);
          })
          .catch((err: unknown) => {
            writeError ??= err;
          });
      } else if (m.kind === "done") {
        encoded = true;
        resolve();
      } else reject(new Error(m.message));
    });
    worker.on("error", reject);
    worker.on("exit", (code) => reject(new Error(`the Parquet encoder thread stopped (exit code ${code})`)));
  });
  finished.catch(() => {}); // awaited below; an early failure must not count as unhandled
  worker.postMessage({ kind: "begin", settings } satisfies ToEncoder);
  const send = async (message: Exclude<ToEncoder, { kind: "begin" }>): Promise<void> => {
    while (inFlight >= MAX_IN_FLIGHT) await Promise.race([new Promise<void>((r) => (acked = r)), finished]);
    if (message.kind === "end") worker.postMessage(message);
    else {
      inFlight++;
      const ipc = ownBytes(message.ipc);
      worker.postMessage({ kind: message.kind, ipc }, [ipc.buffer as ArrayBuffer]);
    }
  };

  // A zero-row table still carries the schema: keep the first one in case nothing follows.
  let schemaOnly: Table | undefined;
  let sentAny = false;
  // An error thrown by the batch source is rethrown as it is.
  let sourceError: unknown;
  try {
    for (;;) {
      let next: IteratorResult<RecordBatch | Table>;
      try {
        next = await iterator.next();
      } catch (err) {
        sourceError = err;
        throw err;
      }
      if (next.done) break;
      const item = next.value;
      const table = item instanceof Table ? item : new Table(item);
      if (table.numRows === 0) {
        schemaOnly ??= table;
        continue;
      }
      await send({ kind: "batch", ipc: tableToIPC(table, "stream") });
      sentAny = true;
    }
    if (!sentAny && schemaOnly) {
      // parquet-wasm needs one batch to learn the schema; an empty slice is enough.
      await send({ kind: "schema", ipc: tableToIPC(schemaOnly, "stream") });
      sentAny = true;
    }
    if (!sentAny) throw new MmssrError(ERROR_CODES.INTERNAL, `writeParquetFile(${path}): no batch given`);
    await send({ kind: "end" });
    await finished;
    await writing;
    if (writeError !== undefined) throw writeError;
    await file.commit();
  } catch (err) {
    await file.abort();
    if (sourceError !== undefined) throw sourceError;
    throw ioError(path, err);
  } finally {
    if (encoded) returnEncoder(worker);
    else {
      worker.removeAllListeners("exit");
      await worker.terminate();
    }
  }
  return bytes;
}
