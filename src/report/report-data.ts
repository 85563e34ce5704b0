/**
 * What `mmssr report` shows, computed in one pass over Arrow record batches of scored files
 * (the scored-pool interchange columns of MMSSR.md, plus the scored log's decision columns when
 * a curate run wrote them). No I/O here: the command opens the files and hands over batches, so
 * tests feed batches of real Parquet files or of the sink's own writers.
 *
 * Memory follows what the page shows, not the pool: each batch's columns are decoded into
 * reused typed arrays (one Float64Array per capability, style masks, codes) and folded into
 * typed-array counters (histogram bins, sums, counts per style, source, reason and window), then
 * dropped. Per-row state exists only when membership comes from separate selected files: the
 * caller's set of selected ids, and which of them were found.
 */
import { type Data, makeVector, type RecordBatch, type Schema, TimeUnit, Type } from "apache-arrow";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITIES,
  NUM_CAPABILITIES,
  NUM_STYLES,
  SCORE_MAX,
  SCORE_MIN,
  STYLES,
  styleIndex,
  UNKNOWN_SOURCE,
} from "../domain/taxonomy.js";
import { describe, missingScoredColumn, SCORE_COLUMNS, scoreError } from "../pool/scored-pool.js";
import { DECISION_REASONS } from "../selection/decision-reason.js";
import { directNumbers, isValidAt, nullsOf } from "../util/arrow-data.js";

/**
 * Histogram bins over the score range of MMSSR.md (0..5): width 0.5, so each integer score of
 * the released scorer (0, 1, ..., 5) lands in a bin of its own (5 in the last, closed one) while
 * continuous scores of our models still show their shape.
 */
export const SCORE_BINS = 10;
const BIN_WIDTH = (SCORE_MAX - SCORE_MIN) / SCORE_BINS;

/** Sources beyond this many (by pool rows) are summed into one "other" bar: a chart of 500 bars says nothing. */
export const MAX_SOURCE_BARS = 24;
/** More windows than this are merged into consecutive groups: a line of 10^5 points only costs the browser. */
export const MAX_TIMELINE_POINTS = 1500;
/** Distinct window ids tracked; past it the timeline is dropped (the column is not a window id). */
const MAX_WINDOWS = 200_000;
/** Distinct model ids and unknown reason strings named; the rest are counted together. */
const MAX_NAMED = 50;

/** Label of the decision chart for rows not selected whose reason the file does not record. */
export const REASON_NOT_RECORDED = "not recorded";
export const REASON_SELECTED = "selected";

/** How a file's rows are known to be selected or not. */
export type Membership = "column" | "ids" | "none";

export interface ReportFile {
  path: string;
  /** scored: counted in the pool; selected: read for its ids only */
  role: "scored" | "selected";
  rows: number;
  /** scored files: where their selected flags came from */
  membership?: Membership;
}

export interface CapabilityStats {
  id: string;
  name: string;
  /** rows per score bin (SCORE_BINS), pool and selected */
  pool: number[];
  selected: number[];
  missingPool: number;
  missingSelected: number;
  /** mean over the rows with a score; null when none has one */
  meanPool: number | null;
  meanSelected: number | null;
}

export interface TimelinePoint {
  /** the window's last decided_at, ms since epoch */
  t: number;
  /** window id, or "first .. last (n windows)" for a merged group */
  window: string;
  rows: number;
  selected: number;
  /** policy version of the window's last decision (null: not recorded) */
  policyVersion: number | null;
}

export interface ReportData {
  generatedAt: string;
  files: ReportFile[];
  poolRows: number;
  selectedRows: number;
  /** where selected membership came from over all scored files */
  selection: "column" | "ids" | "mixed" | "none";
  models: { id: string; rows: number }[];
  timeRange: { from: number; to: number } | null;
  styles: {
    names: string[];
    pool: number[];
    selected: number[];
    noStylePool: number;
    noStyleSelected: number;
  };
  sources: { names: string[]; pool: number[]; selected: number[]; total: number };
  bins: { edges: number[]; labels: string[] };
  capabilities: CapabilityStats[];
  /** decision counts (selected first, then each reason); null when no row's selection is known */
  reasons: { labels: string[]; counts: number[] } | null;
  /** windows in time order; null without decided_at and window_id columns */
  timeline: { points: TimelinePoint[]; windows: number } | null;
  notes: string[];
}

export interface ReportAccumulatorOptions {
  /** ids of the selected rows, for scored files without a `selected` column */
  selectedIds?: ReadonlySet<string>;
}

const decoder = new TextDecoder();

const badRow = (path: string, row: number, text: string): MmssrError =>
  new MmssrError(ERROR_CODES.BAD_ROW, `${path}: row ${row}: ${text}`);

/** Checks that a file has the columns `mmssr report` needs (MISSING_COLUMN names the file and column). */
export function checkScoredSchema(schema: Schema, path: string): void {
  const names = schema.fields.map((f) => f.name);
  const required = missingScoredColumn(names);
  if (required !== undefined)
    throw new MmssrError(
      ERROR_CODES.MISSING_COLUMN,
      `${path}: missing column ${required} (a scored file needs id, styles and ${SCORE_COLUMNS.join(", ")}; found ${names.join(", ") || "no columns"})`,
    );
}

/** Checks that a selected file has an id column. */
export function checkSelectedSchema(schema: Schema, path: string): void {
  if (!schema.fields.some((f) => f.name === "id"))
    throw new MmssrError(
      ERROR_CODES.MISSING_COLUMN,
      `${path}: missing column id (a selected file needs the ids of its rows; found ${schema.fields.map((f) => f.name).join(", ") || "no columns"})`,
    );
}

/** A string column's cell reader (null for null), for utf8, dictionary and anything Arrow can get. */
function stringReader(data: Data): (k: number) => string | null {
  const nulls = nullsOf(data);
  const off = data.offset;
  if (data.type.typeId === Type.Utf8 && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets;
    const bytes = data.values as Uint8Array;
    return (k) =>
      isValidAt(nulls, off + k)
        ? decoder.decode(bytes.subarray(offsets[off + k], offsets[off + k + 1]))
        : null;
  }
  if (data.type.typeId === Type.Dictionary && data.dictionary) {
    const dict = (data.dictionary.toArray() as unknown[]).map((v) =>
      v === null || v === undefined ? null : String(v),
    );
    const idx = data.values as ArrayLike<number | bigint>;
    return (k) => (isValidAt(nulls, off + k) ? dict[Number(idx[off + k])] : null);
  }
  const vec = makeVector(data);
  return (k) => {
    const v = vec.get(k);
    return v === null || v === undefined ? null : String(v);
  };
}

/**
 * A string column as codes into `names` (a growing dictionary shared across batches), -1 for
 * null. Dictionary columns map their dictionary once; utf8 reuses the previous row's code when
 * its bytes repeat (window and model ids come in long runs), so most rows make no string.
 * Returns false when `names` would grow past `limit` (codes are then incomplete).
 */
function stringCodes(
  data: Data,
  len: number,
  lookup: Map<string, number>,
  names: string[],
  codes: Int32Array,
  limit = Number.POSITIVE_INFINITY,
): boolean {
  const codeOf = (s: string): number => {
    let c = lookup.get(s);
    if (c === undefined) {
      if (names.length >= limit) return -2;
      c = names.length;
      names.push(s);
      lookup.set(s, c);
    }
    return c;
  };
  const nulls = nullsOf(data);
  const off = data.offset;
  let full = false;
  if (data.type.typeId === Type.Dictionary && data.dictionary) {
    const dict = data.dictionary.toArray() as unknown[];
    const map = dict.map((v) => (v === null || v === undefined ? -1 : codeOf(String(v))));
    const idx = data.values as ArrayLike<number | bigint>;
    for (let k = 0; k < len; k++) {
      const c = isValidAt(nulls, off + k) ? map[Number(idx[off + k])] : -1;
      if (c === -2) full = true;
      codes[k] = c;
    }
    return !full;
  }
  if (data.type.typeId === Type.Utf8 && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets;
    const bytes = data.values as Uint8Array;
    let prevA = 0;
    let prevB = -1;
    let prevCode = -1;
    for (let k = 0; k < len; k++) {
      if (!isValidAt(nulls, off + k)) {
        codes[k] = -1;
        continue;
      }
      const a = offsets[off + k];
      const b = offsets[off + k + 1];
      let same = b - a === prevB - prevA;
      for (let j = 0; same && j < b - a; j++) same = bytes[a + j] === bytes[prevA + j];
      if (!same) {
        prevCode = codeOf(decoder.decode(bytes.subarray(a, b)));
        prevA = a;
        prevB = b;
      }
      if (prevCode === -2) full = true;
      codes[k] = prevCode;
    }
    return !full;
  }
  const get = stringReader(data);
  for (let k = 0; k < len; k++) {
    const s = get(k);
    const c = s === null ? -1 : codeOf(s);
    if (c === -2) full = true;
    codes[k] = c;
  }
  return !full;
}

/** A numeric column's cell reader: a number, or null for null (int64 and decimals through Arrow). */
function numberReader(data: Data): (k: number) => number | null {
  const nulls = nullsOf(data);
  const off = data.offset;
  const vals = directNumbers(data);
  if (vals) {
    return (k) => (isValidAt(nulls, off + k) ? vals[off + k] : null);
  }
  const vec = makeVector(data);
  return (k) => {
    const v = vec.get(k) as unknown;
    if (v === null || v === undefined) return null;
    return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : Number.NaN;
  };
}

/** decided_at as ms since epoch (null for null); undefined when the column is not a time. */
function timeReader(data: Data): ((k: number) => number | null) | undefined {
  const t = data.type.typeId;
  if (t === Type.Int) return numberReader(data);
  if (t !== Type.Timestamp && t !== Type.Date) return undefined;
  const nulls = nullsOf(data);
  const off = data.offset;
  if (t === Type.Timestamp && data.values instanceof BigInt64Array) {
    const unit = (data.type as unknown as { unit: TimeUnit }).unit;
    const scale =
      unit === TimeUnit.SECOND
        ? 1000
        : unit === TimeUnit.MILLISECOND
          ? 1
          : unit === TimeUnit.MICROSECOND
            ? 1e-3
            : 1e-6;
    const values = data.values;
    return (k) => (isValidAt(nulls, off + k) ? Number(values[off + k]) * scale : null);
  }
  const vec = makeVector(data);
  return (k) => {
    const v = vec.get(k) as unknown;
    if (v === null || v === undefined) return null;
    return v instanceof Date ? v.getTime() : Number(v);
  };
}

/** Validates a score column of a batch and hands each row's value (NaN = missing) to the caller. */
function scoreValues(
  data: Data,
  len: number,
  out: Float64Array,
  where: (k: number) => string,
  column: string,
): void {
  const t = data.type.typeId;
  if (t !== Type.Float && t !== Type.Int && t !== Type.Decimal && t !== Type.Null)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${where(0)}: ${column}: expected a number in 0..5 or null, got a column of type ${data.type}`,
    );
  if (t === Type.Null) {
    out.fill(Number.NaN, 0, len);
    return;
  }
  const get = numberReader(data);
  for (let k = 0; k < len; k++) {
    const v = get(k);
    const err = scoreError(v);
    if (err !== undefined) throw new MmssrError(ERROR_CODES.BAD_ROW, `${where(k)}: ${column}: ${err}`);
    out[k] = v === null ? Number.NaN : v;
  }
}

/** Style masks of a styles column (bit s = STYLES[s]); an unknown name is BAD_ROW. */
function styleMasks(data: Data, len: number, masks: Uint16Array, where: (k: number) => string): void {
  const t = data.type.typeId;
  if (t !== Type.List && t !== Type.LargeList)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${where(0)}: styles: expected a list of style names, got a column of type ${data.type}`,
    );
  const nulls = nullsOf(data);
  const off = data.offset;
  const listOffsets = data.valueOffsets as Int32Array | BigInt64Array;
  const names = stringReader(data.children[0]);
  // a file holds few distinct names: decode each item, but look it up once
  const seen = new Map<string, number>();
  for (let k = 0; k < len; k++) {
    let mask = 0;
    if (isValidAt(nulls, off + k)) {
      const from = Number(listOffsets[off + k]);
      const to = Number(listOffsets[off + k + 1]);
      for (let j = from; j < to; j++) {
        const name = names(j);
        let s = name === null ? -1 : seen.get(name);
        if (s === undefined) {
          s = styleIndex(name as string);
          seen.set(name as string, s);
        }
        if (s < 0)
          throw new MmssrError(
            ERROR_CODES.BAD_ROW,
            `${where(k)}: styles[${j - from}]: unknown style ${JSON.stringify(name)} (known: ${STYLES.join(", ")})`,
          );
        mask |= 1 << s;
      }
    }
    masks[k] = mask;
  }
}

/** The ids of a batch (int ids as decimal text, like the pool readers); a null or empty id is BAD_ROW. */
export function batchIds(batch: RecordBatch, path: string, rowsBefore: number): string[] {
  const data = batch.getChild("id")?.data[0];
  if (data === undefined) throw new MmssrError(ERROR_CODES.MISSING_COLUMN, `${path}: missing column id`);
  const len = batch.numRows;
  const get = data.type.typeId === Type.Int ? numberReader(data) : stringReader(data);
  const ids: string[] = new Array(len);
  for (let k = 0; k < len; k++) {
    const v = get(k);
    const id = typeof v === "number" ? (Number.isSafeInteger(v) ? String(v) : null) : v;
    if (id === null || id.length === 0)
      throw badRow(path, rowsBefore + k + 1, `id: expected a non-empty string, got ${describe(v)}`);
    ids[k] = id;
  }
  return ids;
}

/** Rows and selected rows of one window of the scored log. */
interface WindowStats {
  id: string;
  rows: number;
  selected: number;
  last: number;
  version: number | null;
}

/**
 * Folds scored files, batch by batch, into the numbers of the report page:
 * `startFile(path, schema)`, then `addBatch` for each of its batches, then `build()`.
 */
export class ReportAccumulator {
  private readonly selectedIds: ReadonlySet<string> | undefined;
  private readonly files: ReportFile[] = [];
  private current: { file: ReportFile; columns: Set<string> } | undefined;

  private poolRows = 0;
  private selectedRows = 0;
  private readonly matchedIds = new Set<string>();

  private readonly stylePool = new Float64Array(NUM_STYLES);
  private readonly styleSelected = new Float64Array(NUM_STYLES);
  private noStylePool = 0;
  private noStyleSelected = 0;

  private readonly sourceLookup = new Map<string, number>();
  private readonly sourceNames: string[] = [];
  private sourcePool = new Float64Array(16);
  private sourceSelected = new Float64Array(16);

  private readonly histPool = new Float64Array(NUM_CAPABILITIES * SCORE_BINS);
  private readonly histSelected = new Float64Array(NUM_CAPABILITIES * SCORE_BINS);
  private readonly sumPool = new Float64Array(NUM_CAPABILITIES);
  private readonly sumSelected = new Float64Array(NUM_CAPABILITIES);
  private readonly missingPool = new Float64Array(NUM_CAPABILITIES);
  private readonly missingSelected = new Float64Array(NUM_CAPABILITIES);

  /** rows whose selection is known (column or ids), and those of them not selected, per reason */
  private rowsWithSelection = 0;
  private readonly reasonLookup = new Map<string, number>();
  private readonly reasonNames: string[] = [];
  private reasonCounts = new Float64Array(16);
  private notRecorded = 0;
  private otherReasons = 0;

  private readonly modelLookup = new Map<string, number>();
  private readonly modelNames: string[] = [];
  private modelRows = new Float64Array(16);
  private otherModelRows = 0;

  private timeFrom = Number.POSITIVE_INFINITY;
  private timeTo = Number.NEGATIVE_INFINITY;

  private readonly windowLookup = new Map<string, number>();
  private readonly windowNames: string[] = [];
  private readonly windows: WindowStats[] = [];
  private windowsDropped = false;
  private rowsWithoutTimeline = 0;

  // scratch columns of one batch, grown as needed
  private cap = 0;
  private selectedFlags = new Uint8Array(0);
  private masks = new Uint16Array(0);
  private codes = new Int32Array(0);
  private windowCodes = new Int32Array(0);
  private reasonCodes = new Int32Array(0);
  private modelCodes = new Int32Array(0);
  private scores: Float64Array[] = [];

  constructor(options: ReportAccumulatorOptions = {}) {
    this.selectedIds = options.selectedIds;
    for (const r of DECISION_REASONS) this.reasonCode(r);
  }

  /** A selected file read for its ids (listed in the page; its rows are not pool rows). */
  addSelectedFile(path: string, rows: number): void {
    this.files.push({ path, role: "selected", rows });
  }

  /** Begins a scored file; checks its columns. */
  startFile(path: string, schema: Schema): void {
    checkScoredSchema(schema, path);
    const columns = new Set(schema.fields.map((f) => f.name));
    const membership: Membership = columns.has("selected")
      ? "column"
      : this.selectedIds !== undefined
        ? "ids"
        : "none";
    const file: ReportFile = { path, role: "scored", rows: 0, membership };
    this.files.push(file);
    this.current = { file, columns };
  }

  /**
   * Folds one batch of the current file in. Every column is decoded and checked before any
   * counter moves, so a bad row (MmssrError BAD_ROW naming file, row and field) leaves the
   * totals as they were.
   */
  addBatch(batch: RecordBatch): void {
    const cur = this.current;
    if (cur === undefined)
      throw new MmssrError(ERROR_CODES.INTERNAL, "ReportAccumulator: addBatch before startFile");
    const { file, columns } = cur;
    const len = batch.numRows;
    if (len === 0) return;
    const rowsBefore = file.rows;
    const where = (k: number): string => `${file.path}: row ${rowsBefore + k + 1}`;
    const col = (name: string): Data | undefined =>
      columns.has(name) ? batch.getChild(name)?.data[0] : undefined;
    this.grow(len);

    const matched = this.readSelection(batch, col, len, rowsBefore);
    styleMasks(col("styles") as Data, len, this.masks, where);
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      scoreValues(col(SCORE_COLUMNS[c]) as Data, len, this.scores[c], where, SCORE_COLUMNS[c]);
    const srcData = col("image_source");
    if (srcData === undefined) this.codes.fill(-1, 0, len);
    else stringCodes(srcData, len, this.sourceLookup, this.sourceNames, this.codes);

    for (const id of matched) this.matchedIds.add(id);
    const sel = this.selectedFlags;
    let selectedHere = 0;
    for (let k = 0; k < len; k++) selectedHere += sel[k];
    this.addStyles(len);
    this.addSources(len);
    this.addScores(len);
    if (file.membership !== "none") this.addReasons(col("reason"), len, selectedHere);
    this.addModels(col("model_id") ?? col("model"), len);
    this.addTimeline(col("decided_at"), col("window_id"), col("policy_version"), len);
    this.poolRows += len;
    this.selectedRows += selectedHere;
    file.rows += len;
  }

  /** Fills selectedFlags for the batch; returns the selected ids it matched (ids membership). */
  private readSelection(
    batch: RecordBatch,
    col: (name: string) => Data | undefined,
    len: number,
    rowsBefore: number,
  ): string[] {
    const file = (this.current as { file: ReportFile }).file;
    const flags = this.selectedFlags;
    const matched: string[] = [];
    if (file.membership === "ids") {
      const ids = batchIds(batch, file.path, rowsBefore);
      const chosen = this.selectedIds as ReadonlySet<string>;
      for (let k = 0; k < len; k++) {
        const hit = chosen.has(ids[k]);
        flags[k] = hit ? 1 : 0;
        if (hit) matched.push(ids[k]);
      }
      return matched;
    }
    // ids are not needed here: checked without making strings
    checkIds(col("id") as Data, len, (k) => `${file.path}: row ${rowsBefore + k + 1}`);
    flags.fill(0, 0, len);
    if (file.membership !== "column") return matched;
    const data = col("selected") as Data;
    if (data.type.typeId !== Type.Bool)
      throw new MmssrError(
        ERROR_CODES.BAD_ROW,
        `${file.path}: row ${rowsBefore + 1}: selected: expected a bool column, got a column of type ${data.type}`,
      );
    const bits = data.values as Uint8Array;
    const nulls = nullsOf(data);
    const off = data.offset;
    for (let k = 0; k < len; k++) {
      const i = off + k;
      flags[k] = isValidAt(nulls, i) && (bits[i >> 3] & (1 << (i & 7))) !== 0 ? 1 : 0;
    }
    return matched;
  }

  /** A sample with several styles counts in each (MMSSR.md: multi-label). */
  private addStyles(len: number): void {
    const masks = this.masks;
    const sel = this.selectedFlags;
    for (let k = 0; k < len; k++) {
      const m = masks[k];
      const s = sel[k];
      if (m === 0) {
        this.noStylePool++;
        this.noStyleSelected += s;
        continue;
      }
      for (let b = 0; b < NUM_STYLES; b++)
        if (m & (1 << b)) {
          this.stylePool[b]++;
          this.styleSelected[b] += s;
        }
    }
  }

  /** Null or absent image_source counts as "unknown", as the pool readers have it. */
  private addSources(len: number): void {
    const codes = this.codes;
    const sel = this.selectedFlags;
    if (this.sourceNames.length > this.sourcePool.length) {
      this.sourcePool = grown(this.sourcePool, this.sourceNames.length);
      this.sourceSelected = grown(this.sourceSelected, this.sourceNames.length);
    }
    let unknownPool = 0;
    let unknownSelected = 0;
    for (let k = 0; k < len; k++) {
      const c = codes[k];
      if (c < 0) {
        unknownPool++;
        unknownSelected += sel[k];
      } else {
        this.sourcePool[c]++;
        this.sourceSelected[c] += sel[k];
      }
    }
    if (unknownPool > 0) {
      const c = this.sourceCode(UNKNOWN_SOURCE);
      this.sourcePool[c] += unknownPool;
      this.sourceSelected[c] += unknownSelected;
    }
  }

  private addScores(len: number): void {
    const sel = this.selectedFlags;
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const scores = this.scores[c];
      const base = c * SCORE_BINS;
      for (let k = 0; k < len; k++) {
        const v = scores[k];
        const s = sel[k];
        if (Number.isNaN(v)) {
          this.missingPool[c]++;
          this.missingSelected[c] += s;
          continue;
        }
        const bin = Math.min(Math.floor((v - SCORE_MIN) / BIN_WIDTH), SCORE_BINS - 1);
        this.histPool[base + bin]++;
        this.sumPool[c] += v;
        if (s) {
          this.histSelected[base + bin]++;
          this.sumSelected[c] += v;
        }
      }
    }
  }

  /** Selected rows, and the `reason` of each row not selected (null or no column: not recorded). */
  private addReasons(data: Data | undefined, len: number, selectedHere: number): void {
    this.rowsWithSelection += len;
    if (data === undefined) {
      this.notRecorded += len - selectedHere;
      return;
    }
    const rc = this.reasonCodes;
    const sel = this.selectedFlags;
    stringCodes(data, len, this.reasonLookup, this.reasonNames, rc, MAX_NAMED);
    if (this.reasonNames.length > this.reasonCounts.length)
      this.reasonCounts = grown(this.reasonCounts, this.reasonNames.length);
    for (let k = 0; k < len; k++) {
      if (sel[k]) continue;
      const r = rc[k];
      if (r === -1) this.notRecorded++;
      else if (r === -2) this.otherReasons++;
      else this.reasonCounts[r]++;
    }
  }

  /** The scored log's model_id, or the `model` column that `mmssr score` carries along. */
  private addModels(data: Data | undefined, len: number): void {
    if (data === undefined) return;
    const mc = this.modelCodes;
    stringCodes(data, len, this.modelLookup, this.modelNames, mc, MAX_NAMED);
    if (this.modelNames.length > this.modelRows.length)
      this.modelRows = grown(this.modelRows, this.modelNames.length);
    for (let k = 0; k < len; k++) {
      const m = mc[k];
      if (m >= 0) this.modelRows[m]++;
      else if (m === -2) this.otherModelRows++;
    }
  }

  private addTimeline(
    timeData: Data | undefined,
    windowData: Data | undefined,
    versionData: Data | undefined,
    len: number,
  ): void {
    const time = timeData === undefined ? undefined : timeReader(timeData);
    if (time !== undefined)
      for (let k = 0; k < len; k++) {
        const t = time(k);
        if (t === null || !Number.isFinite(t)) continue;
        if (t < this.timeFrom) this.timeFrom = t;
        if (t > this.timeTo) this.timeTo = t;
      }
    if (time === undefined || windowData === undefined || this.windowsDropped) {
      this.rowsWithoutTimeline += len;
      return;
    }
    const wc = this.windowCodes;
    if (!stringCodes(windowData, len, this.windowLookup, this.windowNames, wc, MAX_WINDOWS)) {
      this.windowsDropped = true;
      this.windows.length = 0;
      return;
    }
    const version = versionData === undefined ? undefined : numberReader(versionData);
    const sel = this.selectedFlags;
    for (let k = 0; k < len; k++) {
      const w = wc[k];
      const t = time(k);
      if (w < 0 || t === null || !Number.isFinite(t)) {
        this.rowsWithoutTimeline++;
        continue;
      }
      let ws = this.windows[w];
      if (ws === undefined) {
        ws = { id: this.windowNames[w], rows: 0, selected: 0, last: Number.NEGATIVE_INFINITY, version: null };
        this.windows[w] = ws;
      }
      ws.rows++;
      ws.selected += sel[k];
      // the policy a window ends under is the one its share answers to
      if (t >= ws.last) {
        ws.last = t;
        ws.version = version === undefined ? null : version(k);
      }
    }
  }

  build(generatedAt: Date = new Date()): ReportData {
    const notes: string[] = [];
    const scored = this.files.filter((f) => f.role === "scored");
    const kinds = new Set(scored.map((f) => f.membership));
    const selection: ReportData["selection"] =
      kinds.size === 0 || (kinds.size === 1 && kinds.has("none"))
        ? "none"
        : kinds.size === 1
          ? (scored[0].membership as "column" | "ids")
          : "mixed";
    if (selection === "none")
      notes.push(
        "Pool only: no scored file has a selected column and no selected files were given (--selected), so nothing is known to be selected.",
      );
    else if (kinds.has("none"))
      notes.push(
        `${scored.filter((f) => f.membership === "none").length} of ${scored.length} scored files carry no selection (no selected column, no selected files): their rows count as not selected.`,
      );
    if (this.selectedIds !== undefined && kinds.has("ids")) {
      const unmatched = this.selectedIds.size - this.matchedIds.size;
      if (unmatched > 0)
        notes.push(
          `${unmatched} of ${this.selectedIds.size} ids of the selected files are not in the scored files.`,
        );
    }
    if (this.poolRows === 0) notes.push("The scored files hold no rows.");

    const capabilities: CapabilityStats[] = CAPABILITIES.map((cap, c) => {
      const pool = Array.from(this.histPool.subarray(c * SCORE_BINS, (c + 1) * SCORE_BINS));
      const selected = Array.from(this.histSelected.subarray(c * SCORE_BINS, (c + 1) * SCORE_BINS));
      const scoredPool = this.poolRows - this.missingPool[c];
      const scoredSelected = this.selectedRows - this.missingSelected[c];
      return {
        id: cap.id,
        name: cap.name,
        pool,
        selected,
        missingPool: this.missingPool[c],
        missingSelected: this.missingSelected[c],
        meanPool: scoredPool > 0 ? this.sumPool[c] / scoredPool : null,
        meanSelected: scoredSelected > 0 ? this.sumSelected[c] / scoredSelected : null,
      };
    });

    const edges = Array.from({ length: SCORE_BINS + 1 }, (_, b) => SCORE_MIN + b * BIN_WIDTH);
    const labels = edges.slice(0, -1).map((e, b) => `${e}–${edges[b + 1]}`);

    // sources by pool rows (then name), the tail summed into one bar
    const order = this.sourceNames
      .map((name, c) => ({ name, pool: this.sourcePool[c], selected: this.sourceSelected[c] }))
      .sort((a, b) => b.pool - a.pool || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const shown = order.length > MAX_SOURCE_BARS ? order.slice(0, MAX_SOURCE_BARS - 1) : order;
    if (shown.length < order.length) {
      const rest = order.slice(shown.length);
      shown.push({
        name: `(${rest.length} other sources)`,
        pool: rest.reduce((n, s) => n + s.pool, 0),
        selected: rest.reduce((n, s) => n + s.selected, 0),
      });
      notes.push(
        `Image sources: the ${MAX_SOURCE_BARS - 1} largest of ${order.length} are shown; the rest are summed into one bar.`,
      );
    }

    let reasons: ReportData["reasons"] = null;
    if (this.rowsWithSelection > 0) {
      const rl = [REASON_SELECTED];
      const rc = [this.selectedRows];
      this.reasonNames.forEach((name, r) => {
        if (r < DECISION_REASONS.length || this.reasonCounts[r] > 0) {
          rl.push(name);
          rc.push(this.reasonCounts[r]);
        }
      });
      if (this.otherReasons > 0) {
        rl.push("(other reasons)");
        rc.push(this.otherReasons);
      }
      if (this.notRecorded > 0) {
        rl.push(REASON_NOT_RECORDED);
        rc.push(this.notRecorded);
      }
      reasons = { labels: rl, counts: rc };
    }

    const models = this.modelNames
      .map((id, m) => ({ id, rows: this.modelRows[m] }))
      .sort((a, b) => b.rows - a.rows || (a.id < b.id ? -1 : 1));
    if (this.otherModelRows > 0) models.push({ id: "(other models)", rows: this.otherModelRows });

    let timeline: ReportData["timeline"] = null;
    const windows = this.windows.filter((w) => w !== undefined);
    if (this.windowsDropped)
      notes.push(
        `Policy over time: more than ${MAX_WINDOWS} distinct window_id values; the timeline is left out.`,
      );
    else if (windows.length > 0) {
      windows.sort((a, b) => a.last - b.last || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      const points = mergeWindows(windows);
      if (points.length < windows.length)
        notes.push(
          `Policy over time: ${windows.length} windows merged into ${points.length} points of consecutive windows.`,
        );
      if (this.rowsWithoutTimeline > 0)
        notes.push(
          `Policy over time: ${this.rowsWithoutTimeline} rows have no decided_at or window_id and are not in the timeline.`,
        );
      timeline = { points, windows: windows.length };
    } else
      notes.push(
        "Policy over time: the scored files have no decided_at and window_id columns (a curate run's scored log has them).",
      );

    return {
      generatedAt: generatedAt.toISOString(),
      files: this.files.map((f) => ({ ...f })),
      poolRows: this.poolRows,
      selectedRows: this.selectedRows,
      selection,
      models,
      timeRange: this.timeFrom <= this.timeTo ? { from: this.timeFrom, to: this.timeTo } : null,
      styles: {
        names: [...STYLES],
        pool: Array.from(this.stylePool),
        selected: Array.from(this.styleSelected),
        noStylePool: this.noStylePool,
        noStyleSelected: this.noStyleSelected,
      },
      sources: {
        names: shown.map((s) => s.name),
        pool: shown.map((s) => s.pool),
        selected: shown.map((s) => s.selected),
        total: order.length,
      },
      bins: { edges, labels },
      capabilities,
      reasons,
      timeline,
      notes,
    };
  }

  private grow(len: number): void {
    if (len <= this.cap) return;
    this.cap = len;
    this.selectedFlags = new Uint8Array(len);
    this.masks = new Uint16Array(len);
    this.codes = new Int32Array(len);
    this.windowCodes = new Int32Array(len);
    this.reasonCodes = new Int32Array(len);
    this.modelCodes = new Int32Array(len);
    this.scores = SCORE_COLUMNS.map(() => new Float64Array(len));
  }

  private sourceCode(name: string): number {
    let c = this.sourceLookup.get(name);
    if (c === undefined) {
      c = this.sourceNames.length;
      this.sourceNames.push(name);
      this.sourceLookup.set(name, c);
      if (c >= this.sourcePool.length) {
        this.sourcePool = grown(this.sourcePool, c + 1);
        this.sourceSelected = grown(this.sourceSelected, c + 1);
      }
    }
    return c;
  }

  private reasonCode(name: string): number {
    let r = this.reasonLookup.get(name);
    if (r === undefined) {
      r = this.reasonNames.length;
      this.reasonNames.push(name);
      this.reasonLookup.set(name, r);
    }
    return r;
  }
}

/** A null or empty id is a bad row, as in every pool reader (without decoding the ids). */
function checkIds(data: Data, len: number, where: (k: number) => string): void {
  const nulls = nullsOf(data);
  const off = data.offset;
  if (data.type.typeId === Type.Utf8 && data.valueOffsets instanceof Int32Array) {
    const offsets = data.valueOffsets;
    for (let k = 0; k < len; k++) {
      if (!isValidAt(nulls, off + k))
        throw new MmssrError(ERROR_CODES.BAD_ROW, `${where(k)}: id: expected a non-empty string, got null`);
      if (offsets[off + k] === offsets[off + k + 1])
        throw new MmssrError(
          ERROR_CODES.BAD_ROW,
          `${where(k)}: id: expected a non-empty string, got ${describe("")}`,
        );
    }
    return;
  }
  const get = data.type.typeId === Type.Int ? numberReader(data) : stringReader(data);
  for (let k = 0; k < len; k++) {
    const v = get(k);
    if (v === null || v === "" || (typeof v === "number" && !Number.isSafeInteger(v)))
      throw new MmssrError(
        ERROR_CODES.BAD_ROW,
        `${where(k)}: id: expected a non-empty string, got ${describe(v)}`,
      );
  }
}

function grown(a: Float64Array, atLeast: number): Float64Array<ArrayBuffer> {
  const b = new Float64Array(Math.max(atLeast, a.length * 2));
  b.set(a);
  return b;
}

/** Windows (in time order) as at most MAX_TIMELINE_POINTS points, merging runs of neighbours. */
function mergeWindows(windows: readonly WindowStats[]): TimelinePoint[] {
  const group = Math.ceil(windows.length / MAX_TIMELINE_POINTS);
  const points: TimelinePoint[] = [];
  for (let i = 0; i < windows.length; i += group) {
    const part = windows.slice(i, i + group);
    const last = part[part.length - 1];
    points.push({
      t: last.last,
      window: part.length === 1 ? last.id : `${part[0].id} .. ${last.id} (${part.length} windows)`,
      rows: part.reduce((n, w) => n + w.rows, 0),
      selected: part.reduce((n, w) => n + w.selected, 0),
      policyVersion: last.version,
    });
  }
  return points;
}
