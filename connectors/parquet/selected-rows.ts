/**
 * Reading side of the selected output (connectors/sink/decision-rows.ts, SELECTED_SCHEMA): the
 * sample part of each row (id, turns, system, images, inline bytes), streamed batch by batch.
 * Also reads any Parquet file with at least `id` and `conversations` (list<struct<from,value>>);
 * the other sample columns are optional.
 */
import type { Vector } from "apache-arrow";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { openParquet, parquetBatches, toPlain } from "./parquet-batches.js";

export interface SelectedTurn {
  from: string;
  value: string;
}

export interface SelectedRow {
  /** 1-based row number in its file (for error messages) */
  row: number;
  id: string;
  conversations: SelectedTurn[];
  system?: string;
  /** path or URL */
  image?: string;
  /** all images of a multi-image sample */
  images?: string[];
  image_url?: string;
  /** the decoded image_b64 */
  image_bytes?: Uint8Array;
}

const REQUIRED = ["id", "conversations"] as const;

function badRow(path: string, row: number, field: string, reason: string): MmssrError {
  return new MmssrError(ERROR_CODES.BAD_ROW, `${path}: row ${row}: ${field}: ${reason}`);
}

function optionalString(path: string, row: number, field: string, v: unknown): string | undefined {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== "string") throw badRow(path, row, field, `expected text, got ${typeof v}`);
  return v === "" ? undefined : v;
}

function turnsOf(path: string, row: number, v: unknown): SelectedTurn[] {
  if (!Array.isArray(v) || v.length === 0)
    throw badRow(path, row, "conversations", "expected a non-empty list of {from, value} turns");
  return v.map((t, k) => {
    const turn = t as { from?: unknown; value?: unknown } | null;
    if (turn === null || typeof turn !== "object")
      throw badRow(path, row, `conversations[${k}]`, "expected a {from, value} turn");
    if (typeof turn.from !== "string" || turn.from === "")
      throw badRow(path, row, `conversations[${k}].from`, "expected a speaker (human, gpt)");
    if (typeof turn.value !== "string") throw badRow(path, row, `conversations[${k}].value`, "expected text");
    return { from: turn.from, value: turn.value };
  });
}

function imagesOf(path: string, row: number, v: unknown): string[] | undefined {
  if (v === null || v === undefined) return undefined;
  if (!Array.isArray(v)) throw badRow(path, row, "images", "expected a list of paths or URLs");
  const out = v.map((x, k) => {
    if (typeof x !== "string" || x === "")
      throw badRow(path, row, `images[${k}]`, "expected a non-empty path or URL");
    return x;
  });
  return out.length === 0 ? undefined : out;
}

function bytesOf(path: string, row: number, v: unknown): Uint8Array | undefined {
  if (v === null || v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) throw badRow(path, row, "image_bytes", "expected binary");
  return v.length === 0 ? undefined : v;
}

/** Number of rows of a selected Parquet file (from its footer). */
export async function countSelectedRows(path: string): Promise<number> {
  const { file, numRows } = await openParquet(path);
  file.free();
  return numRows;
}

/**
 * The sample part of every row of a selected Parquet file, in file order. MISSING_COLUMN when
 * `id` or `conversations` is absent; BAD_ROW names the file, the 1-based row and the field.
 */
export async function* readSelectedRows(path: string, batchRows = 4096): AsyncGenerator<SelectedRow> {
  const { file, schema } = await openParquet(path);
  try {
    const names = new Set(schema.fields.map((f) => f.name));
    for (const required of REQUIRED)
      if (!names.has(required))
        throw new MmssrError(
          ERROR_CODES.MISSING_COLUMN,
          `${path}: missing column ${required} (a selected output has ${REQUIRED.join(", ")}; found ${[...names].join(", ") || "no columns"}); is it a file of the selected/ folder of mmssr curate? A pool of mmssr score/select has no samples: mmssr export joins it to them with --samples <the samples file it was scored from>`,
        );
    let before = 0;
    for await (const batch of parquetBatches(file, batchRows)) {
      const col = (name: string): Vector | null => batch.getChild(name);
      const ids = col("id");
      const turns = col("conversations");
      const system = col("system");
      const image = col("image");
      const images = col("images");
      const imageUrl = col("image_url");
      const imageBytes = col("image_bytes");
      for (let i = 0; i < batch.numRows; i++) {
        const row = before + i + 1;
        const id = toPlain(ids?.get(i));
        if (typeof id !== "string" || id === "") throw badRow(path, row, "id", "expected a non-empty id");
        const out: SelectedRow = { row, id, conversations: turnsOf(path, row, toPlain(turns?.get(i))) };
        const sys = optionalString(path, row, "system", system?.get(i));
        if (sys !== undefined) out.system = sys;
        const img = optionalString(path, row, "image", image?.get(i));
        if (img !== undefined) out.image = img;
        const imgs = imagesOf(path, row, toPlain(images?.get(i)));
        if (imgs !== undefined) out.images = imgs;
        const url = optionalString(path, row, "image_url", imageUrl?.get(i));
        if (url !== undefined) out.image_url = url;
        const bytes = bytesOf(path, row, imageBytes?.get(i));
        if (bytes !== undefined) out.image_bytes = bytes;
        yield out;
      }
      before += batch.numRows;
    }
  } finally {
    file.free();
  }
}
