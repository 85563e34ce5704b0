import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITY_IDS,
  capabilityIndex,
  NUM_CAPABILITIES,
  STYLES,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../domain/taxonomy.js";
import { fmix32 } from "../util/hash32.js";

/**
 * A scored pool held column by column: one Float64Array per capability (NaN = missing),
 * style tags as a 9-bit mask, image sources dictionary-encoded. Millions of rows fit in a
 * few hundred MB and the selector reads each capability as one contiguous column.
 */
export interface ScoredPool {
  readonly size: number;
  readonly ids: readonly string[];
  /** Distinct image_source values; sourceIndex[i] points into it. */
  readonly sources: readonly string[];
  readonly sourceIndex: Uint32Array;
  /** Bit s set = the sample carries STYLES[s]. */
  readonly styleMask: Uint16Array;
  /** scores[c][i] = score of row i on CAPABILITIES[c]; NaN when missing. */
  readonly scores: readonly Float64Array[];
  /** Fields of a row beyond the interchange format, carried through to outputs (sparse). */
  readonly extras: ReadonlyMap<number, Record<string, unknown>>;
}

/** One row of the interchange format after validation. */
export interface ScoredRowValues {
  id: string;
  imageSource: string;
  styleMask: number;
  /** length NUM_CAPABILITIES, NaN = missing */
  scores: ArrayLike<number>;
  extras?: Record<string, unknown>;
}

/**
 * A batch of validated rows, column by column, for ScoredPoolBuilder.appendColumns: the bulk
 * counterpart of `add`, for readers that decode columnar data (Parquet).
 */
export interface ScoredColumnsBatch {
  /** Rows in the batch; every column below has at least this many entries. */
  length: number;
  ids: readonly string[];
  /** Batch-local dictionary of image_source values ... */
  sources: readonly string[];
  /** ... and, per row, an index into it. */
  sourceOfRow: ArrayLike<number>;
  styleMask: ArrayLike<number>;
  /** One column per capability in contract order; NaN = missing. */
  scores: readonly Float64Array[];
  /** Extra fields by batch row (0-based), sparse. */
  extras?: ReadonlyMap<number, Record<string, unknown>>;
}

/**
 * id -> row for the duplicate check: open addressing over typed arrays (a 32-bit hash per row
 * and a power-of-two slot table at most half full), about 12-20 bytes per row where a
 * Map<string, number> of millions of entries costs ~80 and most of a read's time.
 */
class IdIndex {
  private slots: Int32Array; // row + 1; 0 = empty
  private mask: number;
  private hashes: Uint32Array; // hash of the id of each row
  private count = 0;

  constructor(expectedRows: number) {
    let size = 1024;
    while (size < expectedRows * 2) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    this.hashes = new Uint32Array(Math.max(16, expectedRows));
  }

  /** Row of `id` (hash `h`) among `ids`, or -1. */
  find(id: string, h: number, ids: readonly string[]): number {
    const slots = this.slots;
    const mask = this.mask;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const r = slots[s] - 1;
      if (r < 0) return -1;
      if (this.hashes[r] === h && ids[r] === id) return r;
    }
  }

  /** Records that row `row` (the next row, rows are added in order) has an id hashing to `h`. */
  insert(row: number, h: number): void {
    this.reserve(row + 1);
    this.hashes[row] = h;
    if (++this.count * 2 > this.slots.length) this.rehash();
    else this.place(row, h);
  }

  /**
   * Adds rows first.. for the ids `batch[0..length)` (all earlier rows are in `ids`): returns -1,
   * or the batch position of the first id already seen, with its earlier row in `previous[0]`;
   * rows from that position on are then not added.
   */
  insertBatch(
    batch: readonly string[],
    length: number,
    first: number,
    ids: readonly string[],
    previous: Int32Array,
  ): number {
    this.reserve(first + length);
    if ((this.count + length) * 2 > this.slots.length) {
      let size = this.slots.length;
      while ((this.count + length) * 2 > size) size *= 2;
      this.resize(size);
    }
    const slots = this.slots;
    const mask = this.mask;
    const hashes = this.hashes;
    for (let k = 0; k < length; k++) {
      const id = batch[k];
      const h = hashId(id);
      let s = h & mask;
      for (;;) {
        const r = slots[s] - 1;
        if (r < 0) break;
        if (hashes[r] === h && (r < first ? ids[r] : batch[r - first]) === id) {
          previous[0] = r;
          return k;
        }
        s = (s + 1) & mask;
      }
      slots[s] = first + k + 1;
      hashes[first + k] = h;
      this.count++;
    }
    return -1;
  }

  private reserve(rows: number): void {
    if (rows <= this.hashes.length) return;
    const next = new Uint32Array(Math.max(rows, this.hashes.length * 2));
    next.set(this.hashes);
    this.hashes = next;
  }

  private place(row: number, h: number): void {
    const slots = this.slots;
    const mask = this.mask;
    let s = h & mask;
    while (slots[s] !== 0) s = (s + 1) & mask;
    slots[s] = row + 1;
  }

  private rehash(): void {
    this.resize(this.slots.length * 2);
  }

  private resize(size: number): void {
    this.slots = new Int32Array(size);
    this.mask = size - 1;
    for (let r = 0; r < this.count; r++) this.place(r, this.hashes[r]);
  }
}

/** 32-bit hash of a string's UTF-16 code units (FNV-1a, then a murmur3 finalizer for the low bits). */
export function hashId(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

/** Appends validated rows into growing typed columns. */
export class ScoredPoolBuilder {
  private n = 0;
  private capacity: number;
  private ids: string[] = [];
  private sources: string[] = [];
  private sourceLookup = new Map<string, number>();
  private sourceIndex: Uint32Array;
  private styleMask: Uint16Array;
  private scores: Float64Array[];
  private extras = new Map<number, Record<string, unknown>>();
  /** id -> row, kept only when asked for. */
  private idIndex: IdIndex | undefined;

  constructor(initialCapacity = 1024, options: { trackIds?: boolean } = {}) {
    this.capacity = Math.max(16, initialCapacity);
    if (options.trackIds) this.idIndex = new IdIndex(this.capacity);
    this.sourceIndex = new Uint32Array(this.capacity);
    this.styleMask = new Uint16Array(this.capacity);
    this.scores = Array.from({ length: NUM_CAPABILITIES }, () => new Float64Array(this.capacity));
  }

  get size(): number {
    return this.n;
  }

  /** Row number (0-based) of an id already added, or undefined. */
  rowOfId(id: string): number | undefined {
    if (!this.idIndex)
      throw new MmssrError(ERROR_CODES.INTERNAL, "rowOfId needs a builder made with trackIds");
    const r = this.idIndex.find(id, hashId(id), this.ids);
    return r < 0 ? undefined : r;
  }

  add(row: ScoredRowValues): number {
    if (this.n === this.capacity) this.grow(this.n + 1);
    const i = this.n++;
    this.ids.push(row.id);
    this.idIndex?.insert(i, hashId(row.id));
    this.sourceIndex[i] = this.sourceOf(row.imageSource);
    this.styleMask[i] = row.styleMask;
    for (let c = 0; c < NUM_CAPABILITIES; c++) this.scores[c][i] = row.scores[c];
    if (row.extras && Object.keys(row.extras).length > 0) this.extras.set(i, row.extras);
    return i;
  }

  /**
   * Appends a batch of validated rows at once (typed columns copied with `set`); returns the row
   * number of its first row. On a builder made with trackIds, an id that repeats an earlier one
   * (in this batch or before) throws BAD_ROW naming both rows, `where(k)` locating batch row k
   * as addRowChecked's `where` does, and nothing of the batch is added.
   */
  appendColumns(
    batch: ScoredColumnsBatch,
    where: (k: number) => string = (k) => `row ${this.n + k + 1}`,
  ): number {
    const len = batch.length;
    const first = this.n;
    if (first + len > this.capacity) this.grow(first + len);
    const ids = this.ids;
    if (this.idIndex) {
      const previous = new Int32Array(1);
      const k = this.idIndex.insertBatch(batch.ids, len, first, ids, previous);
      if (k >= 0) throw duplicateIdError(where(k), batch.ids[k], previous[0]);
    }
    for (let k = 0; k < len; k++) ids.push(batch.ids[k]);
    // Batch sources get pool codes in order of first use, as row-by-row `add` gives them.
    const codes = new Int32Array(batch.sources.length).fill(-1);
    const sourceIndex = this.sourceIndex;
    const styleMask = this.styleMask;
    for (let k = 0; k < len; k++) {
      const local = batch.sourceOfRow[k];
      let code = codes[local];
      if (code < 0) code = codes[local] = this.sourceOf(batch.sources[local]);
      sourceIndex[first + k] = code;
      styleMask[first + k] = batch.styleMask[k];
    }
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const col = batch.scores[c];
      this.scores[c].set(col.length === len ? col : col.subarray(0, len), first);
    }
    if (batch.extras)
      for (const [k, rec] of batch.extras)
        if (k < len && Object.keys(rec).length > 0) this.extras.set(first + k, rec);
    this.n = first + len;
    return first;
  }

  /** The pool. Columns are handed over without a copy when the builder is exactly full. */
  build(): ScoredPool {
    const n = this.n;
    const trimmed = <T extends Uint32Array | Uint16Array | Float64Array>(col: T): T =>
      col.length === n ? col : (col.slice(0, n) as T);
    return {
      size: n,
      ids: this.ids,
      sources: this.sources,
      sourceIndex: trimmed(this.sourceIndex),
      styleMask: trimmed(this.styleMask),
      scores: this.scores.map(trimmed),
      extras: this.extras,
    };
  }

  private sourceOf(imageSource: string): number {
    let src = this.sourceLookup.get(imageSource);
    if (src === undefined) {
      src = this.sources.length;
      this.sources.push(imageSource);
      this.sourceLookup.set(imageSource, src);
    }
    return src;
  }

  private grow(atLeast: number): void {
    while (this.capacity < atLeast) this.capacity *= 2;
    const si = new Uint32Array(this.capacity);
    si.set(this.sourceIndex);
    this.sourceIndex = si;
    const sm = new Uint16Array(this.capacity);
    sm.set(this.styleMask);
    this.styleMask = sm;
    this.scores = this.scores.map((col) => {
      const next = new Float64Array(this.capacity);
      next.set(col);
      return next;
    });
  }
}

/** Fields of the interchange format; anything else on a row is an extra, carried through. */
export const INTERCHANGE_FIELDS = new Set(["id", "image_source", "styles", "scores"]);

/** The score columns of the columnar (Parquet) form of the interchange format, in CAPABILITIES order. */
export const SCORE_COLUMNS: readonly string[] = CAPABILITY_IDS.map((id) => `score_${id}`);

/** The first column a columnar scored pool must have and `names` lacks (id, styles, every score), if any. */
export function missingScoredColumn(names: readonly string[]): string | undefined {
  const present = new Set(names);
  return ["id", "styles", ...SCORE_COLUMNS].find((c) => !present.has(c));
}

export type FieldErrors = string[];

/**
 * Validates one JSON object of the interchange format (MMSSR.md). Never throws on bad data:
 * returns the parsed values or every problem found, each naming its field.
 */
export function parseScoredRow(
  obj: unknown,
): { ok: true; value: ScoredRowValues } | { ok: false; errors: FieldErrors } {
  const errors: FieldErrors = [];
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return { ok: false, errors: ["row: expected a JSON object"] };
  }
  const rec = obj as Record<string, unknown>;

  let id = "";
  if (typeof rec.id === "string" && rec.id.length > 0) id = rec.id;
  else if (typeof rec.id === "number" && Number.isSafeInteger(rec.id)) id = String(rec.id);
  else if (rec.id === undefined) errors.push("id: missing");
  else errors.push(`id: expected a non-empty string, got ${describe(rec.id)}`);

  let imageSource = UNKNOWN_SOURCE;
  if (rec.image_source !== undefined && rec.image_source !== null) {
    if (typeof rec.image_source === "string" && rec.image_source.length > 0) imageSource = rec.image_source;
    else errors.push(`image_source: expected a non-empty string, got ${describe(rec.image_source)}`);
  }

  let styleMask = 0;
  if (rec.styles !== undefined && rec.styles !== null) {
    if (!Array.isArray(rec.styles))
      errors.push(`styles: expected an array of style names, got ${describe(rec.styles)}`);
    else
      rec.styles.forEach((s, k) => {
        const idx = typeof s === "string" ? styleIndex(s) : -1;
        if (idx < 0)
          errors.push(`styles[${k}]: unknown style ${JSON.stringify(s)} (known: ${STYLES.join(", ")})`);
        else styleMask |= 1 << idx;
      });
  }

  const scores = new Float64Array(NUM_CAPABILITIES).fill(Number.NaN);
  if (rec.scores !== undefined && rec.scores !== null) {
    if (typeof rec.scores !== "object" || Array.isArray(rec.scores))
      errors.push(`scores: expected an object keyed by capability id, got ${describe(rec.scores)}`);
    else
      for (const [key, v] of Object.entries(rec.scores as Record<string, unknown>)) {
        const c = capabilityIndex(key);
        if (c < 0) {
          errors.push(`scores.${key}: unknown capability (known: ${CAPABILITY_IDS.join(", ")})`);
          continue;
        }
        const err = scoreError(v);
        if (err) errors.push(`scores.${key}: ${err}`);
        else if (v !== null) scores[c] = v as number;
      }
  }

  if (errors.length > 0) return { ok: false, errors };
  let extras: Record<string, unknown> | undefined;
  for (const key of Object.keys(rec)) {
    if (INTERCHANGE_FIELDS.has(key)) continue;
    extras ??= {};
    extras[key] = rec[key];
  }
  return { ok: true, value: { id, imageSource, styleMask, scores, extras } };
}

/** Why a score value is unacceptable, or undefined when it is fine (null = missing is fine). */
export function scoreError(v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v))
    return `expected a number in 0..5 or null, got ${describe(v)}`;
  if (v < 0 || v > 5) return `score ${v} is outside 0..5`;
  return undefined;
}

export function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${String(v)}`;
}

/** Adds a row, rejecting a repeated id (two rows with one id would make selection ambiguous). */
export function addRowChecked(builder: ScoredPoolBuilder, row: ScoredRowValues, where: string): void {
  const previous = builder.rowOfId(row.id);
  if (previous !== undefined) throw duplicateIdError(where, row.id, previous);
  builder.add(row);
}

/** The BAD_ROW error of an id at `where` that repeats the id of 0-based row `previous`. */
export function duplicateIdError(where: string, id: string, previous: number): MmssrError {
  return new MmssrError(
    ERROR_CODES.BAD_ROW,
    `${where}: id ${JSON.stringify(id)} repeats the id of row ${previous + 1}; ids must be unique in a pool`,
  );
}
