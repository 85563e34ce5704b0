/**
 * Scored pools as Parquet, in the interchange format of MMSSR.md: columns `id` (utf8),
 * `image_source` (utf8), `styles` (list<utf8>), `score_<capability id>` (float64, null =
 * missing) for the 14 capabilities in contract order, plus any extra columns (selected output
 * adds `picked_by` and `bucket`).
 *
 * Both directions stream: the writer builds one Arrow record batch per row group from the typed
 * columns of the pool; the reader decodes bounded batches (never the whole table) and validates
 * each row as it appends it to a ScoredPoolBuilder.
 */
import { openAsBlob } from "node:fs";
import { stat } from "node:fs/promises";
import {
  Bool,
  type Data,
  type DataType,
  Dictionary,
  Field,
  Float64,
  Int32,
  List,
  makeData,
  makeVector,
  RecordBatch,
  Schema,
  Struct,
  Type,
  tableFromIPC,
  Utf8,
  type Vector,
} from "apache-arrow";
import * as pw from "parquet-wasm";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import {
  CAPABILITY_IDS,
  NUM_CAPABILITIES,
  NUM_STYLES,
  STYLES,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../../src/domain/taxonomy.js";
import {
  addRowChecked,
  describe,
  type ScoredPool,
  ScoredPoolBuilder,
  type ScoredRowValues,
  scoreError,
} from "../../src/pool/scored-pool.js";
import { DEFAULT_ROW_GROUP_SIZE, type ParquetWriteOptions, writeParquetFile } from "./parquet-writer.js";

export const SCORE_COLUMNS: readonly string[] = CAPABILITY_IDS.map((id) => `score_${id}`);
const INTERCHANGE_COLUMNS = new Set(["id", "image_source", "styles", ...SCORE_COLUMNS]);

export interface WriteScoredPoolParquetOptions extends ParquetWriteOptions {
  /** Row numbers of `pool` to write, in output order (default: every row in pool order). */
  rows?: Uint32Array;
  /**
   * Columns added after the interchange ones (e.g. picked_by, bucket): value k belongs to the
   * k-th written row (rows[k] when `rows` is given). Overrides a pool extra of the same name.
   */
  extraColumns?: Record<string, readonly (string | null)[]>;
}

// ---------------------------------------------------------------------------------------------
// Writing

const encoder = new TextEncoder();
const STYLE_BYTES = STYLES.map((s) => encoder.encode(s));

class ByteSink {
  bytes = new Uint8Array(1 << 16);
  length = 0;
  reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    let cap = this.bytes.length * 2;
    while (cap < this.length + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.bytes.subarray(0, this.length));
    this.bytes = next;
  }
  pushString(s: string): void {
    this.reserve(s.length * 3);
    this.length += encoder.encodeInto(s, this.bytes.subarray(this.length)).written;
  }
  pushBytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.bytes.set(b, this.length);
    this.length += b.length;
  }
  take(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }
}

function utf8Data(length: number, get: (k: number) => string | null): Data<Utf8> {
  const sink = new ByteSink();
  const offsets = new Int32Array(length + 1);
  const nulls = new Uint8Array((length + 7) >> 3);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const s = get(k);
    if (s === null) nullCount++;
    else {
      nulls[k >> 3] |= 1 << (k & 7);
      sink.pushString(s);
    }
    offsets[k + 1] = sink.length;
  }
  return makeData({
    type: new Utf8(),
    length,
    valueOffsets: offsets,
    data: sink.take(),
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

function float64Data(length: number, get: (k: number) => number | null): Data<Float64> {
  const values = new Float64Array(length);
  const nulls = new Uint8Array((length + 7) >> 3);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const v = get(k);
    if (v === null || Number.isNaN(v)) nullCount++;
    else {
      values[k] = v;
      nulls[k >> 3] |= 1 << (k & 7);
    }
  }
  return makeData({
    type: new Float64(),
    length,
    data: values,
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

function boolData(length: number, get: (k: number) => boolean | null): Data<Bool> {
  const values = new Uint8Array((length + 7) >> 3);
  const nulls = new Uint8Array((length + 7) >> 3);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const v = get(k);
    if (v === null) nullCount++;
    else {
      nulls[k >> 3] |= 1 << (k & 7);
      if (v) values[k >> 3] |= 1 << (k & 7);
    }
  }
  return makeData({
    type: new Bool(),
    length,
    data: values,
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

type ExtraKind = "float64" | "bool" | "utf8" | "json";

/** The Arrow type an extra field gets: the one type all its non-null values share, else JSON text. */
function extraKinds(pool: ScoredPool): Map<string, ExtraKind> {
  const kinds = new Map<string, ExtraKind>();
  for (const rec of pool.extras.values()) {
    for (const [key, v] of Object.entries(rec)) {
      if (v === null || v === undefined) {
        if (!kinds.has(key)) kinds.set(key, "utf8");
        continue;
      }
      const kind: ExtraKind =
        typeof v === "number"
          ? "float64"
          : typeof v === "boolean"
            ? "bool"
            : typeof v === "string"
              ? "utf8"
              : "json";
      const seen = kinds.get(key);
      if (seen === undefined || seen === kind) kinds.set(key, kind);
      else kinds.set(key, "json");
    }
  }
  // A key seen only with nulls first and a typed value later: first pass may have marked it utf8.
  for (const [key, kind] of kinds) {
    if (kind !== "utf8") continue;
    let found: ExtraKind | undefined;
    for (const rec of pool.extras.values()) {
      const v = rec[key];
      if (v === null || v === undefined) continue;
      const k: ExtraKind =
        typeof v === "number"
          ? "float64"
          : typeof v === "boolean"
            ? "bool"
            : typeof v === "string"
              ? "utf8"
              : "json";
      if (found === undefined) found = k;
      else if (found !== k) found = "json";
    }
    kinds.set(key, found ?? "utf8");
  }
  return kinds;
}

/**
 * The pool (or the rows given, in that order) as Arrow record batches of at most `batchRows`
 * rows in the interchange schema. Lazy: one batch exists at a time if the caller drops it.
 */
export function scoredPoolArrowBatches(
  pool: ScoredPool,
  options: Pick<WriteScoredPoolParquetOptions, "rows" | "extraColumns"> & { batchRows?: number } = {},
): Generator<RecordBatch> {
  // Checked here, eagerly, rather than at the first batch.
  const total = options.rows ? options.rows.length : pool.size;
  const rowAt = options.rows ? (k: number) => (options.rows as Uint32Array)[k] : (k: number) => k;
  if (options.rows)
    for (let k = 0; k < total; k++)
      if (options.rows[k] >= pool.size)
        throw new MmssrError(ERROR_CODES.INTERNAL, `rows[${k}] = ${options.rows[k]} is outside the pool`);
  const added = options.extraColumns ?? {};
  for (const [name, values] of Object.entries(added)) {
    if (INTERCHANGE_COLUMNS.has(name))
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `extra column ${name} would replace an interchange column`,
      );
    if (values.length !== total)
      throw new MmssrError(
        ERROR_CODES.INTERNAL,
        `extra column ${name} has ${values.length} values for ${total} written rows`,
      );
  }
  return batchesOf(pool, options, total, rowAt, added);
}

function* batchesOf(
  pool: ScoredPool,
  options: { batchRows?: number },
  total: number,
  rowAt: (k: number) => number,
  added: Record<string, readonly (string | null)[]>,
): Generator<RecordBatch> {
  const poolExtras = [...extraKinds(pool)].filter(
    ([key]) => !(key in added) && !INTERCHANGE_COLUMNS.has(key),
  );

  const sourceDict = makeVector(utf8Data(pool.sources.length, (k) => pool.sources[k]));
  const dictType = new Dictionary(new Utf8(), new Int32());
  const styleList = new List(new Field("item", new Utf8(), true));
  const extraType = (kind: ExtraKind): DataType =>
    kind === "float64" ? new Float64() : kind === "bool" ? new Bool() : new Utf8();
  const fields = [
    new Field("id", new Utf8(), false),
    new Field("image_source", dictType, false),
    new Field("styles", styleList, false),
    ...SCORE_COLUMNS.map((name) => new Field(name, new Float64(), true)),
    ...poolExtras.map(([name, kind]) => new Field(name, extraType(kind), true)),
    ...Object.keys(added).map((name) => new Field(name, new Utf8(), true)),
  ];
  const schema = new Schema(fields);
  const batchRows = Math.max(1, options.batchRows ?? DEFAULT_ROW_GROUP_SIZE);

  for (let start = 0; start === 0 || start < total; start += batchRows) {
    const len = Math.min(batchRows, total - start);
    const row = (k: number) => rowAt(start + k);
    const children: Data[] = [];
    children.push(utf8Data(len, (k) => pool.ids[row(k)]));

    const indices = new Int32Array(len);
    for (let k = 0; k < len; k++) indices[k] = pool.sourceIndex[row(k)];
    children.push(
      makeData({ type: dictType, length: len, data: indices, dictionary: sourceDict, nullCount: 0 }),
    );

    const listOffsets = new Int32Array(len + 1);
    const itemOffsets: number[] = [0];
    const sink = new ByteSink();
    for (let k = 0; k < len; k++) {
      const mask = pool.styleMask[row(k)];
      let count = 0;
      for (let s = 0; s < NUM_STYLES; s++)
        if (mask & (1 << s)) {
          sink.pushBytes(STYLE_BYTES[s]);
          itemOffsets.push(sink.length);
          count++;
        }
      listOffsets[k + 1] = listOffsets[k] + count;
    }
    const items = makeData({
      type: new Utf8(),
      length: itemOffsets.length - 1,
      valueOffsets: Int32Array.from(itemOffsets),
      data: sink.take(),
      nullCount: 0,
    });
    children.push(
      makeData({ type: styleList, length: len, valueOffsets: listOffsets, child: items, nullCount: 0 }),
    );

    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const col = pool.scores[c];
      children.push(float64Data(len, (k) => col[row(k)]));
    }
    for (const [key, kind] of poolExtras) {
      const value = (k: number): unknown => {
        const v = pool.extras.get(row(k))?.[key];
        return v === undefined ? null : v;
      };
      if (kind === "float64") children.push(float64Data(len, (k) => value(k) as number | null));
      else if (kind === "bool") children.push(boolData(len, (k) => value(k) as boolean | null));
      else if (kind === "utf8") children.push(utf8Data(len, (k) => value(k) as string | null));
      else
        children.push(
          utf8Data(len, (k) => {
            const v = value(k);
            return v === null ? null : JSON.stringify(v);
          }),
        );
    }
    for (const values of Object.values(added)) children.push(utf8Data(len, (k) => values[start + k] ?? null));

    yield new RecordBatch(
      schema,
      makeData({ type: new Struct(fields), length: len, children, nullCount: 0 }),
    );
    if (total === 0) break;
  }
}

/**
 * Writes all rows of `pool`, or `options.rows` in that order, to a Parquet file (atomically,
 * row group by row group). Resolves with the rows and bytes written.
 */
export async function writeScoredPoolParquet(
  path: string,
  pool: ScoredPool,
  options: WriteScoredPoolParquetOptions = {},
): Promise<{ rows: number; bytes: number }> {
  const rowGroupSize = options.rowGroupSize ?? DEFAULT_ROW_GROUP_SIZE;
  const batches = scoredPoolArrowBatches(pool, {
    rows: options.rows,
    extraColumns: options.extraColumns,
    batchRows: rowGroupSize,
  });
  const bytes = await writeParquetFile(path, batches, { compression: options.compression, rowGroupSize });
  return { rows: options.rows ? options.rows.length : pool.size, bytes };
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface ReadScoredPoolParquetOptions {
  /** Rows decoded per step (default 65536): bounds the decoded data held at once. */
  batchRows?: number;
}

const decoder = new TextDecoder();

/** Reads the strings of a Utf8 / LargeUtf8 / Dictionary<Utf8> column; null stays null. */
function stringReader(data: Data): (i: number) => string | null {
  const valid = validity(data);
  const t = data.type.typeId;
  if (t === Type.Utf8 || t === Type.LargeUtf8) {
    const offsets = data.valueOffsets as Int32Array | BigInt64Array;
    const bytes = data.values as Uint8Array;
    const off = data.offset;
    if (offsets instanceof Int32Array)
      return (i) =>
        valid(i) ? decoder.decode(bytes.subarray(offsets[off + i], offsets[off + i + 1])) : null;
    return (i) =>
      valid(i)
        ? decoder.decode(bytes.subarray(Number(offsets[off + i]), Number(offsets[off + i + 1])))
        : null;
  }
  if (t === Type.Dictionary) {
    const dict = (data.dictionary as Vector).toArray() as unknown[];
    const idx = data.values as ArrayLike<number | bigint>;
    const off = data.offset;
    return (i) => {
      if (!valid(i)) return null;
      const v = dict[Number(idx[off + i])];
      return typeof v === "string" ? v : v === null || v === undefined ? null : String(v);
    };
  }
  const vec = makeVector(data);
  return (i) => {
    const v = vec.get(i);
    if (v === null || v === undefined) return null;
    return typeof v === "string" ? v : String(v);
  };
}

function validity(data: Data): (i: number) => boolean {
  const bitmap = data.nullBitmap;
  if (!bitmap || bitmap.length === 0 || data.nullCount === 0) return () => true;
  const off = data.offset;
  return (i) => (bitmap[(off + i) >> 3] & (1 << ((off + i) & 7))) !== 0;
}

/** Numeric reader (NaN for null). Decimal and other non-float types go through Arrow's own get. */
function numberReader(data: Data): (i: number) => unknown {
  const valid = validity(data);
  const t = data.type.typeId;
  if (t === Type.Float || (t === Type.Int && (data.type as unknown as { bitWidth: number }).bitWidth <= 32)) {
    const values = data.values as ArrayLike<number>;
    const off = data.offset;
    return (i) => (valid(i) ? values[off + i] : null);
  }
  const vec = makeVector(data);
  return (i) => (valid(i) ? toPlain(vec.get(i)) : null);
}

/** An Arrow cell as a plain JSON-like value for pool.extras. */
function toPlain(v: unknown): unknown {
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

const STYLE_BYTE_LOOKUP = (() => {
  const byLength = new Map<number, { bytes: Uint8Array; index: number }[]>();
  for (const name of STYLES) {
    const bytes = encoder.encode(name);
    const list = byLength.get(bytes.length) ?? [];
    list.push({ bytes, index: styleIndex(name) });
    byLength.set(bytes.length, list);
  }
  return byLength;
})();

/** Style bit of a utf8 byte range, matching bytes first (no string made); -1 when unknown. */
function styleOfBytes(bytes: Uint8Array, from: number, to: number): number {
  const candidates = STYLE_BYTE_LOOKUP.get(to - from);
  if (candidates)
    outer: for (const cand of candidates) {
      for (let j = 0; j < cand.bytes.length; j++) if (bytes[from + j] !== cand.bytes[j]) continue outer;
      return cand.index;
    }
  return styleIndex(decoder.decode(bytes.subarray(from, to)));
}

/** Reads a styles column chunk into masks; returns an error message per bad row (first problem). */
function stylesReader(data: Data, column: string): (i: number) => number | string {
  const t = data.type.typeId;
  if (t !== Type.List && t !== Type.LargeList)
    return () => `${column}: expected a list of style names, got a column of type ${data.type}`;
  const valid = validity(data);
  const listOffsets = data.valueOffsets as Int32Array | BigInt64Array;
  const off = data.offset;
  const child = data.children[0];
  const ct = child.type.typeId;
  if (ct === Type.Utf8) {
    const itemOffsets = child.valueOffsets as Int32Array;
    const bytes = child.values as Uint8Array;
    const itemValid = validity(child);
    const coff = child.offset;
    return (i) => {
      if (!valid(i)) return 0;
      let mask = 0;
      const from = Number(listOffsets[off + i]);
      const to = Number(listOffsets[off + i + 1]);
      for (let j = from; j < to; j++) {
        const s = itemValid(j) ? styleOfBytes(bytes, itemOffsets[coff + j], itemOffsets[coff + j + 1]) : -1;
        if (s < 0) {
          const name = itemValid(j)
            ? decoder.decode(bytes.subarray(itemOffsets[coff + j], itemOffsets[coff + j + 1]))
            : null;
          return `${column}[${j - from}]: unknown style ${JSON.stringify(name)} (known: ${STYLES.join(", ")})`;
        }
        mask |= 1 << s;
      }
      return mask;
    };
  }
  const names = stringReader(child);
  return (i) => {
    if (!valid(i)) return 0;
    let mask = 0;
    const from = Number(listOffsets[off + i]);
    const to = Number(listOffsets[off + i + 1]);
    for (let j = from; j < to; j++) {
      const name = names(j - 0);
      const s = name === null ? -1 : styleIndex(name);
      if (s < 0)
        return `${column}[${j - from}]: unknown style ${JSON.stringify(name)} (known: ${STYLES.join(", ")})`;
      mask |= 1 << s;
    }
    return mask;
  };
}

function notFound(path: string, err: unknown): MmssrError {
  return new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `cannot read ${path}: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * Reads a scored pool from a Parquet file, batch by batch (at most `batchRows` decoded rows in
 * memory besides the pool being built), validating every row with the rules of the JSONL
 * reader: MISSING_COLUMN names an absent required column (id, styles, score_<cap>); BAD_ROW
 * names the 1-based row number and the field. A null image_source becomes "unknown".
 *
 * Extra columns go to pool.extras, sparse: only non-null cells, one object per row that has
 * any. That costs roughly 100 bytes per carried cell, fine for the occasional extra field and
 * for selected outputs (picked_by, bucket); ScoredPool has no typed-extra slot, and keeping the
 * representation identical to the JSONL reader's lets every writer treat extras alike.
 */
export async function readScoredPoolParquet(
  path: string,
  options: ReadScoredPoolParquetOptions = {},
): Promise<ScoredPool> {
  let blob: Blob;
  try {
    await stat(path);
    blob = await openAsBlob(path);
  } catch (err) {
    throw notFound(path, err);
  }
  let file: pw.ParquetFile;
  try {
    file = await pw.ParquetFile.fromFile(blob);
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.UNSUPPORTED_FORMAT,
      `${path} is not a readable Parquet file: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  try {
    const schema = tableFromIPC(file.schema().intoIPCStream()).schema;
    const names = schema.fields.map((f) => f.name);
    const present = new Set(names);
    for (const required of ["id", "styles", ...SCORE_COLUMNS])
      if (!present.has(required))
        throw new MmssrError(
          ERROR_CODES.MISSING_COLUMN,
          `${path}: missing required column ${required} (a scored pool needs id, styles and ${SCORE_COLUMNS.join(", ")}; found ${names.join(", ") || "no columns"})`,
        );
    const extraNames = names.filter((n) => !INTERCHANGE_COLUMNS.has(n));
    const meta = file.metadata();
    const totalRows = Number(meta.fileMetadata().numRows());
    meta.free();

    const builder = new ScoredPoolBuilder(Math.max(totalRows, 16), { trackIds: true });
    const scores = new Float64Array(NUM_CAPABILITIES);
    const row: ScoredRowValues = { id: "", imageSource: UNKNOWN_SOURCE, styleMask: 0, scores };
    let rowNumber = 0;
    const bad = (field: string, message: string): MmssrError =>
      new MmssrError(ERROR_CODES.BAD_ROW, `${path}: row ${rowNumber}: ${field}: ${message}`);

    const stream = (await file.stream({
      batchSize: options.batchRows ?? 65_536,
    })) as ReadableStream<pw.RecordBatch>;
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      const table = tableFromIPC(value.intoIPCStream());
      for (const batch of table.batches) {
        const col = (name: string): Data => batch.getChild(name)?.data[0] as Data;
        const idData = col("id");
        const idIsInt = idData.type.typeId === Type.Int;
        const idStrings = idIsInt ? undefined : stringReader(idData);
        const idNumbers = idIsInt ? numberReader(idData) : undefined;
        const source = present.has("image_source") ? stringReader(col("image_source")) : () => null;
        const styles = stylesReader(col("styles"), "styles");
        const scoreReaders = SCORE_COLUMNS.map((name) => numberReader(col(name)));
        const extraReaders = extraNames.map((name) => {
          const data = col(name);
          const t = data.type.typeId;
          if (t === Type.Utf8 || t === Type.LargeUtf8 || t === Type.Dictionary) return stringReader(data);
          if (t === Type.Float || t === Type.Int) return numberReader(data);
          const vec = makeVector(data);
          return (i: number) => toPlain(vec.get(i));
        });

        for (let i = 0; i < batch.numRows; i++) {
          rowNumber++;
          let id: unknown;
          if (idStrings) id = idStrings(i);
          else {
            const n = (idNumbers as (i: number) => unknown)(i);
            id = typeof n === "number" && Number.isSafeInteger(n) ? String(n) : n;
          }
          if (typeof id !== "string" || id.length === 0)
            throw bad("id", `expected a non-empty string, got ${describe(id)}`);
          row.id = id;

          const src = source(i);
          if (src === "") throw bad("image_source", `expected a non-empty string, got ${describe(src)}`);
          row.imageSource = src ?? UNKNOWN_SOURCE;

          const mask = styles(i);
          if (typeof mask === "string")
            throw new MmssrError(ERROR_CODES.BAD_ROW, `${path}: row ${rowNumber}: ${mask}`);
          row.styleMask = mask;

          for (let c = 0; c < NUM_CAPABILITIES; c++) {
            const v = scoreReaders[c](i);
            const err = scoreError(v);
            if (err) throw bad(SCORE_COLUMNS[c], err);
            scores[c] = v === null || v === undefined ? Number.NaN : (v as number);
          }

          let extras: Record<string, unknown> | undefined;
          for (let e = 0; e < extraReaders.length; e++) {
            const v = extraReaders[e](i);
            if (v === null || v === undefined) continue;
            extras ??= {};
            extras[extraNames[e]] = v;
          }
          row.extras = extras;
          addRowChecked(builder, row, `${path}: row ${rowNumber}`);
        }
      }
    }
    return builder.build();
  } finally {
    file.free();
  }
}
