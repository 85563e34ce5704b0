import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITY_IDS,
  capabilityIndex,
  NUM_CAPABILITIES,
  STYLES,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../domain/taxonomy.js";

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
  /** id -> row, kept only when asked for: the map costs more than all score columns together. */
  private idRow: Map<string, number> | undefined;

  constructor(initialCapacity = 1024, options: { trackIds?: boolean } = {}) {
    if (options.trackIds) this.idRow = new Map();
    this.capacity = Math.max(16, initialCapacity);
    this.sourceIndex = new Uint32Array(this.capacity);
    this.styleMask = new Uint16Array(this.capacity);
    this.scores = Array.from({ length: NUM_CAPABILITIES }, () => new Float64Array(this.capacity));
  }

  get size(): number {
    return this.n;
  }

  /** Row number (0-based) of an id already added, or undefined. */
  rowOfId(id: string): number | undefined {
    if (!this.idRow) throw new MmssrError(ERROR_CODES.INTERNAL, "rowOfId needs a builder made with trackIds");
    return this.idRow.get(id);
  }

  add(row: ScoredRowValues): number {
    if (this.n === this.capacity) this.grow();
    const i = this.n++;
    this.ids.push(row.id);
    this.idRow?.set(row.id, i);
    let src = this.sourceLookup.get(row.imageSource);
    if (src === undefined) {
      src = this.sources.length;
      this.sources.push(row.imageSource);
      this.sourceLookup.set(row.imageSource, src);
    }
    this.sourceIndex[i] = src;
    this.styleMask[i] = row.styleMask;
    for (let c = 0; c < NUM_CAPABILITIES; c++) this.scores[c][i] = row.scores[c];
    if (row.extras && Object.keys(row.extras).length > 0) this.extras.set(i, row.extras);
    return i;
  }

  build(): ScoredPool {
    const n = this.n;
    return {
      size: n,
      ids: this.ids,
      sources: this.sources,
      sourceIndex: this.sourceIndex.slice(0, n),
      styleMask: this.styleMask.slice(0, n),
      scores: this.scores.map((col) => col.slice(0, n)),
      extras: this.extras,
    };
  }

  private grow(): void {
    this.capacity *= 2;
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
  if (previous !== undefined)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${where}: id ${JSON.stringify(row.id)} repeats the id of row ${previous + 1}; ids must be unique in a pool`,
    );
  builder.add(row);
}
