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
  type DataType,
  Field,
  type Float64,
  Int32,
  Int64,
  List,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  TimestampMillisecond,
  Utf8,
  vectorFromArray,
} from "apache-arrow";
import type { Sample } from "../../src/domain/sample.js";
import { NUM_CAPABILITIES } from "../../src/domain/taxonomy.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { float64Data, imageSourceData, interchangeFields } from "../parquet/scored-pool-parquet.js";

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

function column(type: DataType, values: readonly unknown[]): Data {
  return vectorFromArray(values as unknown[], type).data[0];
}

/** Scores as `mmssr score` writes them: 4 decimals (the model's float32 output carries noise beyond). */
function scoreColumn(decisions: readonly Decision[], c: number): Data<Float64> {
  return float64Data(decisions.length, (k) => {
    const v = decisions[k].record.score.scores[c];
    return Number.isNaN(v) ? v : Math.round(v * 1e4) / 1e4;
  });
}

function leading(decisions: readonly Decision[]): Data[] {
  const out: Data[] = [
    column(
      new Utf8(),
      decisions.map((d) => d.record.sample.id),
    ),
    imageSourceData(decisions.map((d) => d.record.sample.image_source)),
    column(
      utf8List(),
      decisions.map((d) => d.record.score.styles),
    ),
  ];
  for (let c = 0; c < NUM_CAPABILITIES; c++) out.push(scoreColumn(decisions, c));
  return out;
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
    column(
      new Utf8(),
      decisions.map((d) => d.record.origin.topic),
    ),
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
    column(
      new Bool(),
      decisions.map((d) => d.selected),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.reason ?? null),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.windowId),
    ),
    column(
      new Int32(),
      decisions.map((d) => d.policyVersion ?? null),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.record.modelId),
    ),
    column(
      utf8List(),
      decisions.map((d) => d.record.score.flags),
    ),
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
    column(
      new Utf8(),
      decisions.map((d) => d.pickedBy ?? null),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.bucket ?? null),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.windowId),
    ),
    column(
      new Int32(),
      decisions.map((d) => d.policyVersion ?? null),
    ),
    column(
      new Utf8(),
      decisions.map((d) => d.record.modelId),
    ),
    column(
      utf8List(),
      decisions.map((d) => d.record.score.flags),
    ),
    ...origin(decisions),
    column(
      new List(new Field("item", turnType(), false)),
      samples.map((s) => s.conversations.map((t) => ({ from: t.from, value: t.value }))),
    ),
    column(
      new Utf8(),
      samples.map((s) => s.system ?? null),
    ),
    column(
      new Utf8(),
      samples.map((s) => s.image ?? null),
    ),
    column(
      utf8List(),
      samples.map((s) => s.images ?? null),
    ),
    column(
      new Utf8(),
      samples.map((s) => s.image_url ?? null),
    ),
    column(
      new Binary(),
      samples.map((s) =>
        s.image_b64 === undefined ? null : new Uint8Array(Buffer.from(s.image_b64, "base64")),
      ),
    ),
    column(new Utf8(), samples.map(extraOf)),
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
