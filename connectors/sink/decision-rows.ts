/**
 * Decisions as Arrow record batches, in the two schemas the curation sink writes.
 *
 * Scored log (DIR/scored/): the scored-pool interchange columns of MMSSR.md first (`id`,
 * `image_source`, `styles`, `score_<capability>` float64, null = missing), so that
 * `mmssr select --scores` reads a scored log file as it is; then `selected` (bool), `reason`
 * (why not selected: below-threshold, no-style, budget, cap-total, cap-hour; null when
 * selected or unknown), `window_id`, `policy_version` (int32, the selection policy's version),
 * `model_id`, `flags` (list<utf8>: why a sample was scored with less than it carried),
 * `origin_topic`, `origin_partition` (int32), `origin_offset` (int64), `decided_at`
 * (timestamp ms, UTC).
 *
 * Selected output (DIR/selected/): the same leading interchange columns, `picked_by`,
 * `bucket`, `window_id`, `model_id`, `flags`, the origin and `decided_at`, then the sample itself:
 * `conversations` (list<struct<from, value>>, the LLaVA turns), `system`, `image` (path or URL),
 * `images` (list<utf8>, only for multi-image samples), `image_url`, `image_bytes` (binary: the
 * decoded `image_b64`), and `extra` (JSON text of every other input field, null when none).
 * Nested types rather than JSON text so that DuckDB, pyarrow and HF datasets read the turns as
 * data; exporting LLaVA JSON is a plain projection.
 */

import {
  Binary,
  Bool,
  type Data,
  Field,
  Int32,
  Int64,
  List,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  TimestampMillisecond,
  Utf8,
} from "apache-arrow";
import type { Sample } from "../../src/domain/sample.js";
import { NUM_CAPABILITIES } from "../../src/domain/taxonomy.js";
import type { Decision } from "../../src/stream/stream-types.js";
import {
  binaryColumn,
  boolData,
  float64Column,
  int32Data,
  utf8Column,
  utf8ListColumn,
  utf8StructListColumn,
} from "../parquet/arrow-columns.js";
import { imageSourceData, interchangeFields } from "../parquet/scored-pool-parquet.js";

const utf8List = () => new List(new Field("item", new Utf8(), true));
const turnType = () =>
  new Struct([new Field("from", new Utf8(), false), new Field("value", new Utf8(), false)]);

const LEADING_FIELDS = interchangeFields;

const ORIGIN_FIELDS = (): Field[] => [
  new Field("origin_topic", new Utf8(), false),
  new Field("origin_partition", new Int32(), false),
  new Field("origin_offset", new Int64(), false),
  new Field("decided_at", new TimestampMillisecond("UTC"), false),
];

export const SCORED_SCHEMA = new Schema([
  ...LEADING_FIELDS(),
  new Field("selected", new Bool(), false),
  new Field("reason", new Utf8(), true),
  new Field("window_id", new Utf8(), false),
  new Field("policy_version", new Int32(), true),
  new Field("model_id", new Utf8(), false),
  new Field("flags", utf8List(), false),
  ...ORIGIN_FIELDS(),
]);

export const SELECTED_SCHEMA = new Schema([
  ...LEADING_FIELDS(),
  new Field("picked_by", new Utf8(), true),
  new Field("bucket", new Utf8(), true),
  new Field("window_id", new Utf8(), false),
  new Field("policy_version", new Int32(), true),
  new Field("model_id", new Utf8(), false),
  new Field("flags", utf8List(), false),
  ...ORIGIN_FIELDS(),
  new Field("conversations", new List(new Field("item", turnType(), false)), false),
  new Field("system", new Utf8(), true),
  new Field("image", new Utf8(), true),
  new Field("images", utf8List(), true),
  new Field("image_url", new Utf8(), true),
  new Field("image_bytes", new Binary(), true),
  new Field("extra", new Utf8(), true),
]);

const CONVERSATIONS_FIELD = SELECTED_SCHEMA.fields.findIndex((f) => f.name === "conversations");

/** Sample fields with columns of their own; the rest go to `extra`. */
const SAMPLE_FIELDS = new Set([
  "id",
  "image",
  "images",
  "image_url",
  "image_b64",
  "image_source",
  "system",
  "conversations",
]);

/**
 * The 14 score columns in one pass over the decisions: 4 decimals, as `mmssr score` writes them
 * (the model's float32 output carries noise beyond); NaN (a missing score) is null.
 */
function scoreColumns(decisions: readonly Decision[]): Data[] {
  const length = decisions.length;
  const values = Array.from({ length: NUM_CAPABILITIES }, () => new Float64Array(length));
  let nulls: Uint8Array[] | undefined;
  const nullCounts = new Array<number>(NUM_CAPABILITIES).fill(0);
  for (let k = 0; k < length; k++) {
    const scores = decisions[k].record.score.scores;
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const v = scores[c];
      if (Number.isNaN(v)) {
        nulls ??= Array.from({ length: NUM_CAPABILITIES }, () =>
          new Uint8Array((length + 7) >> 3).fill(0xff),
        );
        nulls[c][k >> 3] &= ~(1 << (k & 7));
        nullCounts[c]++;
      } else values[c][k] = Math.round(v * 1e4) / 1e4;
    }
  }
  return values.map((v, c) => float64Column(v, nullCounts[c] > 0 ? nulls?.[c] : undefined, nullCounts[c]));
}

function leading(decisions: readonly Decision[]): Data[] {
  return [
    utf8Column(decisions.map((d) => d.record.sample.id)),
    imageSourceData(decisions.map((d) => d.record.sample.image_source)),
    utf8ListColumn(decisions.map((d) => d.record.score.styles)),
    ...scoreColumns(decisions),
  ];
}

/** The columns every decision row has after its own: window, policy, model, flags. */
function provenance(decisions: readonly Decision[]): Data[] {
  return [
    utf8Column(decisions.map((d) => d.windowId)),
    int32Data(decisions.length, (k) => decisions[k].policyVersion),
    utf8Column(decisions.map((d) => d.record.modelId)),
    utf8ListColumn(decisions.map((d) => d.record.score.flags)),
  ];
}

function origin(decisions: readonly Decision[]): Data[] {
  const length = decisions.length;
  const partitions = new Int32Array(length);
  const offsets = new BigInt64Array(length);
  const decidedAt = new BigInt64Array(length);
  for (let k = 0; k < length; k++) {
    const d = decisions[k];
    partitions[k] = d.record.origin.partition;
    offsets[k] = BigInt(d.record.origin.offset);
    decidedAt[k] = BigInt(Math.round(d.decidedAt));
  }
  return [
    utf8Column(decisions.map((d) => d.record.origin.topic)),
    makeData({ type: new Int32(), length, data: partitions, nullCount: 0 }),
    makeData({ type: new Int64(), length, data: offsets, nullCount: 0 }),
    makeData({ type: new TimestampMillisecond("UTC"), length, data: decidedAt, nullCount: 0 }),
  ];
}

function batch(schema: Schema, length: number, children: Data[]): RecordBatch {
  return new RecordBatch(
    schema,
    makeData({ type: new Struct(schema.fields), length, children, nullCount: 0 }),
  );
}

/** Rows of the scored log: one per decision, in the given order. */
export function scoredBatch(decisions: readonly Decision[]): RecordBatch {
  return batch(SCORED_SCHEMA, decisions.length, [
    ...leading(decisions),
    boolData(decisions.length, (k) => decisions[k].selected),
    utf8Column(decisions.map((d) => d.reason)),
    ...provenance(decisions),
    ...origin(decisions),
  ]);
}

function extraOf(sample: Sample): string | null {
  let extra: Record<string, unknown> | undefined;
  for (const key of Object.keys(sample)) {
    if (SAMPLE_FIELDS.has(key)) continue;
    extra ??= {};
    Object.defineProperty(extra, key, { value: sample[key], enumerable: true });
  }
  return extra === undefined ? null : JSON.stringify(extra);
}

/** Rows of the selected output: one per decision given (callers pass the selected ones). */
export function selectedBatch(decisions: readonly Decision[]): RecordBatch {
  const samples = decisions.map((d) => d.record.sample);
  return batch(SELECTED_SCHEMA, decisions.length, [
    ...leading(decisions),
    utf8Column(decisions.map((d) => d.pickedBy)),
    utf8Column(decisions.map((d) => d.bucket)),
    ...provenance(decisions),
    ...origin(decisions),
    utf8StructListColumn(
      SELECTED_SCHEMA.fields[CONVERSATIONS_FIELD].type as List<Struct>,
      samples.map((s) => s.conversations),
      [(t) => t.from, (t) => t.value],
    ),
    utf8Column(samples.map((s) => s.system)),
    utf8Column(samples.map((s) => s.image)),
    utf8ListColumn(samples.map((s) => s.images)),
    utf8Column(samples.map((s) => s.image_url)),
    binaryColumn(
      samples.map((s) => (s.image_b64 === undefined ? undefined : Buffer.from(s.image_b64, "base64"))),
    ),
    utf8Column(samples.map(extraOf)),
  ]);
}

/** Fixed per-row cost of the metadata columns (ids, 14 scores, origin, ...), bytes. */
const ROW_OVERHEAD = 14 * 8 + 160;

/**
 * A row's uncompressed size, estimated (bytes): what the rotate-by-bytes trigger counts.
 * The Parquet file is smaller (ZSTD); inline images dominate when present.
 */
export function estimateRowBytes(d: Decision, selected: boolean): number {
  const s = d.record.sample;
  let n = ROW_OVERHEAD + s.id.length + s.image_source.length + d.windowId.length;
  if (!selected) return n;
  for (const t of s.conversations) n += t.value.length + 8;
  if (s.image) n += s.image.length;
  if (s.image_url) n += s.image_url.length;
  if (s.image_b64) n += (s.image_b64.length * 3) >> 2;
  if (s.system) n += s.system.length;
  return n;
}
