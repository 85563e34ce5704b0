/**
 * Arrow columns built straight into their buffers, for the writers' hot paths (the scored log of
 * every decision, the selected output, `mmssr score`): apache-arrow's generic builders
 * (vectorFromArray) encode each string with its own TextEncoder call and grow their buffers
 * value by value, which made building a batch cost more than encoding it to Parquet
 * (BENCHMARKS.md, "Stream at the speed of its scorer").
 */
import {
  Binary,
  Bool,
  type Data,
  Field,
  Float64,
  Int32,
  List,
  makeData,
  type Struct,
  Utf8,
} from "apache-arrow";

function validity(length: number): Uint8Array {
  return new Uint8Array((length + 7) >> 3);
}

/**
 * A utf8 column (null/undefined = null). ASCII text (ids, sources, window ids) is encoded with
 * one join and one native encode per column; any other text is measured and written string by
 * string into one buffer.
 */
export function utf8Column(values: readonly (string | null | undefined)[]): Data<Utf8> {
  const length = values.length;
  const offsets = new Int32Array(length + 1);
  const nulls = validity(length);
  let nullCount = 0;
  const joined = values.join("");
  let bytes = Buffer.from(joined, "utf8");
  // Every non-ASCII UTF-16 unit takes 2 or more UTF-8 bytes, so equal lengths mean all ASCII.
  const ascii = bytes.length === joined.length;
  let o = 0;
  for (let k = 0; k < length; k++) {
    const s = values[k];
    if (s === null || s === undefined) nullCount++;
    else {
      nulls[k >> 3] |= 1 << (k & 7);
      o += ascii ? s.length : Buffer.byteLength(s, "utf8");
    }
    offsets[k + 1] = o;
  }
  // Lone surrogates become 3-byte replacement characters either way: the per-string byte
  // lengths add up to the joined encoding, so its bytes are the column's bytes.
  if (o !== bytes.length) {
    bytes = Buffer.allocUnsafe(o);
    for (let k = 0; k < length; k++) {
      const s = values[k];
      if (s !== null && s !== undefined) bytes.write(s, offsets[k], "utf8");
    }
  }
  return makeData({
    type: new Utf8(),
    length,
    valueOffsets: offsets,
    data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length),
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

/** list<utf8 item> (items nullable in the type, never null here); a null list = null row. */
export function utf8ListColumn(lists: readonly (readonly string[] | null | undefined)[]): Data<List<Utf8>> {
  const length = lists.length;
  const listOffsets = new Int32Array(length + 1);
  const nulls = validity(length);
  let nullCount = 0;
  const items: string[] = [];
  for (let k = 0; k < length; k++) {
    const list = lists[k];
    if (list === null || list === undefined) nullCount++;
    else {
      nulls[k >> 3] |= 1 << (k & 7);
      for (const s of list) items.push(s);
    }
    listOffsets[k + 1] = items.length;
  }
  return makeData({
    type: new List(new Field("item", new Utf8(), true)),
    length,
    valueOffsets: listOffsets,
    child: utf8Column(items),
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

/** A nullable float64 column (null, undefined or NaN -> null). */
export function float64Data(length: number, get: (k: number) => number | null | undefined): Data<Float64> {
  const values = new Float64Array(length);
  const nulls = validity(length);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const v = get(k);
    if (v === null || v === undefined || Number.isNaN(v)) nullCount++;
    else {
      values[k] = v;
      nulls[k >> 3] |= 1 << (k & 7);
    }
  }
  return float64Column(values, nullCount > 0 ? nulls : undefined, nullCount);
}

/** A float64 column over `values` as they are, with the given validity (undefined: none null). */
export function float64Column(
  values: Float64Array,
  nullBitmap: Uint8Array | undefined,
  nullCount: number,
): Data<Float64> {
  return makeData({ type: new Float64(), length: values.length, data: values, nullBitmap, nullCount });
}

/** A nullable bool column. */
export function boolData(length: number, get: (k: number) => boolean | null): Data<Bool> {
  const values = validity(length);
  const nulls = validity(length);
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

/** A nullable int32 column (null/undefined -> null). */
export function int32Data(length: number, get: (k: number) => number | null | undefined): Data<Int32> {
  const values = new Int32Array(length);
  const nulls = validity(length);
  let nullCount = 0;
  for (let k = 0; k < length; k++) {
    const v = get(k);
    if (v === null || v === undefined) nullCount++;
    else {
      values[k] = v;
      nulls[k >> 3] |= 1 << (k & 7);
    }
  }
  return makeData({
    type: new Int32(),
    length,
    data: values,
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

/** A nullable binary column. */
export function binaryColumn(values: readonly (Uint8Array | null | undefined)[]): Data<Binary> {
  const length = values.length;
  const offsets = new Int32Array(length + 1);
  const nulls = validity(length);
  let nullCount = 0;
  let total = 0;
  for (let k = 0; k < length; k++) {
    const v = values[k];
    if (v === null || v === undefined) nullCount++;
    else {
      nulls[k >> 3] |= 1 << (k & 7);
      total += v.length;
    }
    offsets[k + 1] = total;
  }
  const data = new Uint8Array(total);
  for (let k = 0; k < length; k++) {
    const v = values[k];
    if (v !== null && v !== undefined) data.set(v, offsets[k]);
  }
  return makeData({
    type: new Binary(),
    length,
    valueOffsets: offsets,
    data,
    nullBitmap: nullCount > 0 ? nulls : undefined,
    nullCount,
  });
}

/**
 * list<struct<...utf8 fields>> with non-null items and fields, e.g. the conversation turns
 * (list<struct<from, value>>): `rows[k]` is row k's items, each giving its fields in `fields` order.
 */
export function utf8StructListColumn<T>(
  type: List<Struct>,
  rows: readonly (readonly T[])[],
  fields: readonly ((item: T) => string)[],
): Data<List<Struct>> {
  const length = rows.length;
  const listOffsets = new Int32Array(length + 1);
  const columns: string[][] = fields.map(() => []);
  let items = 0;
  for (let k = 0; k < length; k++) {
    for (const item of rows[k]) for (let f = 0; f < fields.length; f++) columns[f].push(fields[f](item));
    items += rows[k].length;
    listOffsets[k + 1] = items;
  }
  const structType = type.children[0].type as Struct;
  const child = makeData({
    type: structType,
    length: items,
    children: columns.map((c) => utf8Column(c)),
    nullCount: 0,
  });
  return makeData({ type, length, valueOffsets: listOffsets, child, nullCount: 0 });
}
