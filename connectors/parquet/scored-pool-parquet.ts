/**
 * Scored pools as Parquet, in the interchange format of MMSSR.md: columns `id` (utf8),
 * `image_source` (utf8), `styles` (list<utf8>), `score_<capability id>` (float64, null =
 * missing) for the 14 capabilities in contract order, plus any extra columns (selected output
 * adds `picked_by` and `bucket`).
 *
 * Both directions stream: the writer builds one Arrow record batch per row group from the typed
 * columns of the pool; the reader decodes bounded batches (never the whole table), validates and
 * converts each column of a batch in one tight loop over its Arrow buffers, and appends the batch
 * to a ScoredPoolBuilder at once (appendColumns). Errors are those of a row-by-row read: the
 * first bad row, with its 1-based number and field.
 */
import { isAscii } from "node:buffer";
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
  Utf8,
  type Vector,
  vectorFromArray,
} from "apache-arrow";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import {
  NUM_CAPABILITIES,
  NUM_STYLES,
  STYLES,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../../src/domain/taxonomy.js";
import {
  describe,
  missingScoredColumn,
  SCORE_COLUMNS,
  type ScoredPool,
  ScoredPoolBuilder,
  scoreError,
} from "../../src/pool/scored-pool.js";
import { directNumbers, isValidAt, nullsOf } from "../../src/util/arrow-data.js";
import { boolData, float64Column, float64Data, utf8Column } from "./arrow-columns.js";
import { openParquet, parquetBatches, toPlain } from "./parquet-batches.js";
import { DEFAULT_ROW_GROUP_SIZE, type ParquetWriteOptions, writeParquetFile } from "./parquet-writer.js";

/** the score columns (src/pool/scored-pool.ts), re-exported for the Parquet readers and writers */
export { SCORE_COLUMNS };

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

/**
 * `image_source` as every writer stores it: dictionary<int32, utf8> (few distinct sources, many
 * rows), so that the scored pool of `mmssr score` and the scored log of `mmssr curate` have one type.
 */
export const IMAGE_SOURCE_TYPE = () => new Dictionary(new Utf8(), new Int32());

/**
 * The leading columns of every scored-pool file (MMSSR.md interchange format), whichever
 * command writes it: `id`, `image_source` (IMAGE_SOURCE_TYPE), `styles` list<utf8>, and
 * `score_<capability>` float64 (null = missing) in contract order. The one definition that
 * `mmssr score`, `mmssr select` and the curate sink's scored log and selected output share.
 */
export function interchangeFields(): Field[] {
  return [
    new Field("id", new Utf8(), false),
    new Field("image_source", IMAGE_SOURCE_TYPE(), false),
    new Field("styles", new List(new Field("item", new Utf8(), true)), false),
    ...SCORE_COLUMNS.map((name) => new Field(name, new Float64(), true)),
  ];
}

/** An image_source column of these values, dictionary-encoded (IMAGE_SOURCE_TYPE). */
export function imageSourceData(values: readonly string[]): Data {
  const codes = new Map<string, number>();
  const indices = new Int32Array(values.length);
  values.forEach((v, k) => {
    let c = codes.get(v);
    if (c === undefined) {
      c = codes.size;
      codes.set(v, c);
    }
    indices[k] = c;
  });
  const dict = makeVector(utf8Column([...codes.keys()]));
  return makeData({
    type: IMAGE_SOURCE_TYPE(),
    length: values.length,
    data: indices,
    dictionary: dict,
    nullCount: 0,
  });
}

/** col[rows[k]] for each k as a nullable float64 column (NaN = null). */
function float64Gather(col: Float64Array, rows: Uint32Array): Data<Float64> {
  const length = rows.length;
  const values = new Float64Array(length);
  const nulls = new Uint8Array((length + 7) >> 3).fill(0xff);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const v = col[rows[k]];
    if (Number.isNaN(v)) {
      nullCount++;
      nulls[k >> 3] &= ~(1 << (k & 7));
    } else values[k] = v;
  }
  return float64Column(values, nullCount > 0 ? nulls : undefined, nullCount);
}

let identity = new Uint32Array(0);
/** start, start+1, ... as a view of one reused buffer (valid until the next call). */
function identityRows(start: number, length: number): Uint32Array {
  if (identity.length < length) identity = new Uint32Array(length);
  const view = identity.subarray(0, length);
  for (let k = 0; k < length; k++) view[k] = start + k;
  return view;
}

/** Per style mask: its style names' utf8 bytes back to back, the number of names, their byte ends. */
const MASK_STYLES = Array.from({ length: 1 << NUM_STYLES }, (_, mask) => {
  const parts: Uint8Array[] = [];
  for (let s = 0; s < NUM_STYLES; s++) if (mask & (1 << s)) parts.push(STYLE_BYTES[s]);
  const ends: number[] = [];
  let total = 0;
  for (const p of parts) {
    total += p.length;
    ends.push(total);
  }
  const bytes = new Uint8Array(total);
  for (let i = 0; i < parts.length; i++) bytes.set(parts[i], i === 0 ? 0 : ends[i - 1]);
  return { bytes, count: parts.length, ends };
});

/** The styles list<utf8> column of the given pool rows. */
function stylesData(type: List, styleMask: Uint16Array, rows: Uint32Array): Data<List> {
  const length = rows.length;
  const listOffsets = new Int32Array(length + 1);
  let items = 0;
  let byteCount = 0;
  for (let k = 0; k < length; k++) {
    const m = MASK_STYLES[styleMask[rows[k]]];
    items += m.count;
    byteCount += m.bytes.length;
    listOffsets[k + 1] = items;
  }
  const itemOffsets = new Int32Array(items + 1);
  const bytes = new Uint8Array(byteCount);
  let item = 0;
  let at = 0;
  for (let k = 0; k < length; k++) {
    const m = MASK_STYLES[styleMask[rows[k]]];
    if (m.count === 0) continue;
    bytes.set(m.bytes, at);
    for (let j = 0; j < m.count; j++) itemOffsets[++item] = at + m.ends[j];
    at += m.bytes.length;
  }
  const child = makeData({
    type: new Utf8(),
    length: items,
    valueOffsets: itemOffsets,
    data: bytes,
    nullCount: 0,
  });
  return makeData({ type, length, valueOffsets: listOffsets, child, nullCount: 0 });
}

type ExtraKind = "float64" | "bool" | "utf8" | "strings" | "json";

/** The kind of one extra value: a list of strings (e.g. `flags`) is list<utf8>, as in the scored log. */
function kindOf(v: unknown): ExtraKind {
  if (typeof v === "number") return "float64";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "string") return "utf8";
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return "strings";
  return "json";
}

/** The Arrow type an extra field gets: the one type all its non-null values share, else JSON text. */
function extraKinds(pool: ScoredPool): Map<string, ExtraKind> {
  const kinds = new Map<string, ExtraKind>();
  for (const rec of pool.extras.values()) {
    for (const [key, v] of Object.entries(rec)) {
      if (v === null || v === undefined) {
        if (!kinds.has(key)) kinds.set(key, "utf8");
        continue;
      }
      const kind = kindOf(v);
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
      const k = kindOf(v);
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
  return batchesOf(pool, options, total, options.rows, added);
}

function* batchesOf(
  pool: ScoredPool,
  options: { batchRows?: number },
  total: number,
  rows: Uint32Array | undefined,
  added: Record<string, readonly (string | null)[]>,
): Generator<RecordBatch> {
  const poolExtras = [...extraKinds(pool)].filter(
    ([key]) => !(key in added) && !INTERCHANGE_COLUMNS.has(key),
  );

  const sourceDict = makeVector(utf8Column(pool.sources));
  const dictType = IMAGE_SOURCE_TYPE();
  const styleList = new List(new Field("item", new Utf8(), true));
  const stringsType = new List(new Field("item", new Utf8(), true));
  const extraType = (kind: ExtraKind): DataType =>
    kind === "float64"
      ? new Float64()
      : kind === "bool"
        ? new Bool()
        : kind === "strings"
          ? stringsType
          : new Utf8();
  const fields = [
    ...interchangeFields(),
    ...poolExtras.map(([name, kind]) => new Field(name, extraType(kind), true)),
    ...Object.keys(added).map((name) => new Field(name, new Utf8(), true)),
  ];
  const schema = new Schema(fields);
  const perBatch = Math.max(1, options.batchRows ?? DEFAULT_ROW_GROUP_SIZE);

  for (let start = 0; start === 0 || start < total; start += perBatch) {
    const len = Math.min(perBatch, total - start);
    // Pool row of each written row of this batch.
    const batchRows = rows ? rows.subarray(start, start + len) : identityRows(start, len);
    const row = (k: number) => batchRows[k];
    const children: Data[] = [];
    const ids: string[] = new Array(len);
    for (let k = 0; k < len; k++) ids[k] = pool.ids[batchRows[k]];
    children.push(utf8Column(ids));

    const indices = new Int32Array(len);
    for (let k = 0; k < len; k++) indices[k] = pool.sourceIndex[batchRows[k]];
    children.push(
      makeData({ type: dictType, length: len, data: indices, dictionary: sourceDict, nullCount: 0 }),
    );
    children.push(stylesData(styleList, pool.styleMask, batchRows));
    for (let c = 0; c < NUM_CAPABILITIES; c++) children.push(float64Gather(pool.scores[c], batchRows));
    for (const [key, kind] of poolExtras) {
      const value = (k: number): unknown => {
        const v = pool.extras.get(row(k))?.[key];
        return v === undefined ? null : v;
      };
      if (kind === "float64") children.push(float64Data(len, (k) => value(k) as number | null));
      else if (kind === "bool") children.push(boolData(len, (k) => value(k) as boolean | null));
      else if (kind === "utf8")
        children.push(utf8Column(Array.from({ length: len }, (_, k) => value(k) as string | null)));
      else if (kind === "strings")
        children.push(
          vectorFromArray(
            Array.from({ length: len }, (_, k) => value(k)),
            stringsType,
          ).data[0],
        );
      else
        children.push(
          utf8Column(
            Array.from({ length: len }, (_, k) => {
              const v = value(k);
              return v === null ? null : JSON.stringify(v);
            }),
          ),
        );
    }
    for (const values of Object.values(added)) children.push(utf8Column(values.slice(start, start + len)));

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
  const bytes = await writeParquetFile(path, batches, {
    compression: options.compression,
    rowGroupSize,
    // ids are unique: a dictionary for them is pure overhead (measured: -10% time, -6% bytes).
    plainColumns: ["id", ...(options.plainColumns ?? [])],
  });
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

/**
 * Style candidates by (byte length, third byte): every style name gets its own slot, so a utf8
 * item is matched by one array load and one byte comparison, without making a string.
 */
const STYLE_KEYED: ({ bytes: Uint8Array; index: number }[] | undefined)[] = (() => {
  const table: ({ bytes: Uint8Array; index: number }[] | undefined)[] = new Array(64 * 256);
  for (const name of STYLES) {
    const bytes = encoder.encode(name);
    const key = styleKey(bytes, 0, bytes.length);
    if (key < 0) throw new Error(`style ${name} cannot be keyed`);
    table[key] ??= [];
    table[key].push({ bytes, index: styleIndex(name) });
  }
  return table;
})();

function styleKey(bytes: Uint8Array, from: number, to: number): number {
  const len = to - from;
  return len >= 3 && len < 64 ? (len << 8) | bytes[from + 2] : -1;
}

/** Style bit of a utf8 byte range, matching bytes (no string made); -1 when unknown. */
function styleOfBytes(bytes: Uint8Array, from: number, to: number): number {
  const key = styleKey(bytes, from, to);
  const candidates = key < 0 ? undefined : STYLE_KEYED[key];
  if (candidates)
    outer: for (const cand of candidates) {
      const b = cand.bytes;
      for (let j = 0; j < b.length; j++) if (bytes[from + j] !== b[j]) continue outer;
      return cand.index;
    }
  return -1;
}

const unknownStyle = (column: string, k: number, name: string | null): string =>
  `${column}[${k}]: unknown style ${JSON.stringify(name)} (known: ${STYLES.join(", ")})`;

/** Reads a styles column chunk into masks; returns an error message per bad row (first problem). */
function stylesReader(data: Data, column: string): (i: number) => number | string {
  const t = data.type.typeId;
  if (t !== Type.List && t !== Type.LargeList)
    return () => `${column}: expected a list of style names, got a column of type ${data.type}`;
  const valid = validity(data);
  const listOffsets = data.valueOffsets as Int32Array | BigInt64Array;
  const off = data.offset;
  const names = stringReader(data.children[0]);
  return (i) => {
    if (!valid(i)) return 0;
    let mask = 0;
    const from = Number(listOffsets[off + i]);
    const to = Number(listOffsets[off + i + 1]);
    for (let j = from; j < to; j++) {
      const name = names(j);
      const s = name === null ? -1 : styleIndex(name);
      if (s < 0) return unknownStyle(column, j - from, name);
      mask |= 1 << s;
    }
    return mask;
  };
}

// Columnar reading: each column of a decoded batch is validated and converted in one tight loop
// over its Arrow buffers. A column reports its first bad row; the batch's first bad row (ties go
// to the column that comes first in a row: id, image_source, styles, score columns) is the
// error, and the rows before it are still appended, so errors come out exactly as a row-by-row
// read would give them (including a repeated id before that row).

/** First bad row of a column in a batch: batch row `k`, and "field: reason". */
interface BadCell {
  k: number;
  text: string;
}

function readIds(data: Data, len: number, ids: string[]): BadCell | undefined {
  const nonEmpty = (k: number, v: unknown): BadCell => ({
    k,
    text: `id: expected a non-empty string, got ${describe(v)}`,
  });
  if (data.type.typeId === Type.Utf8 && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets;
    const off = data.offset;
    const bytes = data.values as Uint8Array;
    const nulls = nullsOf(data);
    const b0 = offsets[off];
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset + b0, offsets[off + len] - b0);
    // ASCII ids (the usual case): decode the batch's bytes once and cut the ids out of it.
    const all = isAscii(buf) ? buf.toString("latin1") : undefined;
    for (let k = 0; k < len; k++) {
      if (nulls && !isValidAt(nulls, off + k)) return nonEmpty(k, null);
      const a = offsets[off + k];
      const b = offsets[off + k + 1];
      if (a === b) return nonEmpty(k, "");
      ids[k] = all !== undefined ? all.slice(a - b0, b - b0) : decoder.decode(bytes.subarray(a, b));
    }
    return undefined;
  }
  if (data.type.typeId === Type.Int) {
    const get = numberReader(data);
    for (let k = 0; k < len; k++) {
      const n = get(k);
      const id = typeof n === "number" && Number.isSafeInteger(n) ? String(n) : n;
      if (typeof id !== "string") return nonEmpty(k, id);
      ids[k] = id;
    }
    return undefined;
  }
  const get = stringReader(data);
  for (let k = 0; k < len; k++) {
    const id = get(k);
    if (id === null || id.length === 0) return nonEmpty(k, id);
    ids[k] = id;
  }
  return undefined;
}

/**
 * image_source per row as a batch-local dictionary (null = "unknown") and a code per row.
 * A Dictionary column maps its (small) dictionary once; plain utf8 reuses the previous row's
 * code when the bytes repeat and looks a decoded string up otherwise.
 */
function readSources(
  data: Data | undefined,
  len: number,
  codes: Uint32Array,
): { sources: string[]; bad?: BadCell } {
  const sources: string[] = [UNKNOWN_SOURCE];
  const lookup = new Map<string, number>([[UNKNOWN_SOURCE, 0]]);
  const codeOf = (s: string): number => {
    let c = lookup.get(s);
    if (c === undefined) {
      c = sources.length;
      sources.push(s);
      lookup.set(s, c);
    }
    return c;
  };
  const empty = (k: number): { sources: string[]; bad: BadCell } => ({
    sources,
    bad: { k, text: `image_source: expected a non-empty string, got ${describe("")}` },
  });
  if (data === undefined) {
    codes.fill(0, 0, len);
    return { sources };
  }
  const t = data.type.typeId;
  const nulls = nullsOf(data);
  const off = data.offset;
  if (t === Type.Dictionary && data.dictionary) {
    const dict = data.dictionary.toArray() as unknown[];
    const map = new Int32Array(dict.length);
    for (let d = 0; d < dict.length; d++) {
      const v = dict[d];
      map[d] =
        v === null || v === undefined ? 0 : v === "" ? -1 : codeOf(typeof v === "string" ? v : String(v));
    }
    const idx = data.values as ArrayLike<number | bigint>;
    const wide = idx instanceof BigInt64Array || idx instanceof BigUint64Array;
    for (let k = 0; k < len; k++) {
      if (nulls && !isValidAt(nulls, off + k)) {
        codes[k] = 0;
        continue;
      }
      const c = map[wide ? Number(idx[off + k]) : (idx[off + k] as number)];
      if (c < 0) return empty(k);
      codes[k] = c;
    }
    return { sources };
  }
  if (t === Type.Utf8 && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets;
    const bytes = data.values as Uint8Array;
    let prevA = 0;
    let prevB = -1;
    let prevCode = 0;
    for (let k = 0; k < len; k++) {
      if (nulls && !isValidAt(nulls, off + k)) {
        codes[k] = 0;
        continue;
      }
      const a = offsets[off + k];
      const b = offsets[off + k + 1];
      if (a === b) return empty(k);
      let same = b - a === prevB - prevA;
      for (let j = 0; same && j < b - a; j++) same = bytes[a + j] === bytes[prevA + j];
      if (!same) {
        prevCode = codeOf(decoder.decode(bytes.subarray(a, b)));
        prevA = a;
        prevB = b;
      }
      codes[k] = prevCode;
    }
    return { sources };
  }
  const get = stringReader(data);
  for (let k = 0; k < len; k++) {
    const s = get(k);
    if (s === "") return empty(k);
    codes[k] = s === null ? 0 : codeOf(s);
  }
  return { sources };
}

function readStyles(data: Data, len: number, masks: Uint16Array): BadCell | undefined {
  const t = data.type.typeId;
  const child = data.children[0];
  if (
    t === Type.List &&
    data.valueOffsets instanceof Int32Array &&
    child.type.typeId === Type.Utf8 &&
    child.valueOffsets instanceof Int32Array
  ) {
    const listOffsets = data.valueOffsets;
    const off = data.offset;
    const nulls = nullsOf(data);
    const itemOffsets = child.valueOffsets;
    const coff = child.offset;
    const bytes = child.values as Uint8Array;
    const itemNulls = nullsOf(child);
    for (let k = 0; k < len; k++) {
      let mask = 0;
      if (!nulls || isValidAt(nulls, off + k)) {
        const from = listOffsets[off + k];
        const to = listOffsets[off + k + 1];
        for (let j = from; j < to; j++) {
          const valid = !itemNulls || isValidAt(itemNulls, coff + j);
          const a = itemOffsets[coff + j];
          const b = itemOffsets[coff + j + 1];
          const s = valid ? styleOfBytes(bytes, a, b) : -1;
          if (s < 0)
            return {
              k,
              text: unknownStyle("styles", j - from, valid ? decoder.decode(bytes.subarray(a, b)) : null),
            };
          mask |= 1 << s;
        }
      }
      masks[k] = mask;
    }
    return undefined;
  }
  const get = stylesReader(data, "styles");
  for (let k = 0; k < len; k++) {
    const m = get(k);
    if (typeof m === "string") return { k, text: m };
    masks[k] = m;
  }
  return undefined;
}

/** A score column into `out` (NaN = null), checking 0..5 in one pass over the values. */
function readScores(data: Data, len: number, out: Float64Array, column: string): BadCell | undefined {
  const off = data.offset;
  const nulls = nullsOf(data);
  const bad = (k: number, v: unknown): BadCell => ({ k, text: `${column}: ${scoreError(v)}` });
  const vals = directNumbers(data);
  if (vals) {
    for (let k = 0; k < len; k++) {
      const v = vals[off + k];
      // NaN, infinities and out-of-range values fail this one test; a null slot may hold anything.
      if (!(v >= 0 && v <= 5) && (!nulls || isValidAt(nulls, off + k))) return bad(k, v);
    }
    out.set(off === 0 && vals.length === len ? vals : vals.subarray(off, off + len));
    if (nulls) for (let k = 0; k < len; k++) if (!isValidAt(nulls, off + k)) out[k] = Number.NaN;
    return undefined;
  }
  const get = numberReader(data);
  for (let k = 0; k < len; k++) {
    const v = get(k);
    const err = scoreError(v);
    if (err) return bad(k, v);
    out[k] = v === null || v === undefined ? Number.NaN : (v as number);
  }
  return undefined;
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
  const { file, schema, numRows: totalRows } = await openParquet(path);
  try {
    const names = schema.fields.map((f) => f.name);
    const required = missingScoredColumn(names);
    const hasSource = names.includes("image_source");
    if (required !== undefined)
      throw new MmssrError(
        ERROR_CODES.MISSING_COLUMN,
        `${path}: missing required column ${required} (a scored pool needs id, styles and ${SCORE_COLUMNS.join(", ")}; found ${names.join(", ") || "no columns"})`,
      );
    const extraNames = names.filter((n) => !INTERCHANGE_COLUMNS.has(n));

    const builder = new ScoredPoolBuilder(Math.max(totalRows, 16), { trackIds: true });
    const batchRows = Math.max(1, options.batchRows ?? 65_536);
    // Scratch columns of one batch, reused (grown if the decoder hands over a larger batch).
    let cap = 0;
    let sourceCodes = new Uint32Array(0);
    let styleMask = new Uint16Array(0);
    let scores: Float64Array[] = [];
    let rowsBefore = 0;

    for await (const batch of parquetBatches(file, batchRows)) {
      const len = batch.numRows;
      if (len > cap) {
        cap = Math.max(len, batchRows);
        sourceCodes = new Uint32Array(cap);
        styleMask = new Uint16Array(cap);
        scores = SCORE_COLUMNS.map(() => new Float64Array(cap));
      }
      const col = (name: string): Data => batch.getChild(name)?.data[0] as Data;
      const first = (a: BadCell | undefined, b: BadCell | undefined): BadCell | undefined =>
        a === undefined || (b !== undefined && b.k < a.k) ? b : a;

      const ids: string[] = new Array(len);
      let bad = readIds(col("id"), len, ids);
      const src = readSources(hasSource ? col("image_source") : undefined, len, sourceCodes);
      bad = first(bad, src.bad);
      bad = first(bad, readStyles(col("styles"), len, styleMask));
      for (let c = 0; c < NUM_CAPABILITIES; c++)
        bad = first(bad, readScores(col(SCORE_COLUMNS[c]), len, scores[c], SCORE_COLUMNS[c]));
      const good = bad === undefined ? len : bad.k;

      let extras: Map<number, Record<string, unknown>> | undefined;
      for (const name of extraNames) {
        const data = col(name);
        const t = data.type.typeId;
        let get: (i: number) => unknown;
        if (t === Type.Utf8 || t === Type.LargeUtf8 || t === Type.Dictionary) get = stringReader(data);
        else if (t === Type.Float || t === Type.Int) get = numberReader(data);
        else {
          const vec = makeVector(data);
          get = (i: number) => toPlain(vec.get(i));
        }
        for (let k = 0; k < good; k++) {
          const v = get(k);
          if (v === null || v === undefined) continue;
          extras ??= new Map();
          let rec = extras.get(k);
          if (!rec) {
            rec = {};
            extras.set(k, rec);
          }
          rec[name] = v;
        }
      }

      builder.appendColumns(
        {
          length: good,
          ids,
          sources: src.sources,
          sourceOfRow: sourceCodes,
          styleMask,
          scores,
          extras,
        },
        (k) => `${path}: row ${rowsBefore + k + 1}`,
      );
      if (bad !== undefined)
        throw new MmssrError(ERROR_CODES.BAD_ROW, `${path}: row ${rowsBefore + bad.k + 1}: ${bad.text}`);
      rowsBefore += len;
    }
    return builder.build();
  } finally {
    file.free();
  }
}
