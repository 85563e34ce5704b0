/**
 * Reading Arrow chunks (Data) without a Vector per cell: their null bitmaps and, for numeric
 * columns, their value buffers. Shared by the readers of scored pools and the report.
 */
import { type Data, Type } from "apache-arrow";

/** Is row i valid (not null)? A chunk without a bitmap has no nulls. */
export const isValidAt = (bitmap: Uint8Array | undefined, i: number): boolean =>
  bitmap === undefined || (bitmap[i >> 3] & (1 << (i & 7))) !== 0;

/** The null bitmap of a chunk, or undefined when it has no nulls. */
export function nullsOf(data: Data): Uint8Array | undefined {
  const bitmap = data.nullBitmap;
  return bitmap && bitmap.length > 0 && data.nullCount !== 0 ? bitmap : undefined;
}

/**
 * The values of a float or 32-bit-or-narrower integer chunk as numbers, indexed from
 * data.offset; undefined for the other types (int64, decimals: read them through a Vector).
 */
export type NumericArray =
  | Float64Array
  | Float32Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint32Array
  | Uint16Array
  | Uint8Array;

export function directNumbers(data: Data): NumericArray | undefined {
  const values = data.values as unknown;
  const direct =
    values instanceof Float64Array ||
    values instanceof Float32Array ||
    (data.type.typeId === Type.Int &&
      (values instanceof Int32Array ||
        values instanceof Int16Array ||
        values instanceof Int8Array ||
        values instanceof Uint32Array ||
        values instanceof Uint16Array ||
        values instanceof Uint8Array));
  return direct ? (values as NumericArray) : undefined;
}
