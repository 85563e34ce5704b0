import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { createInterface } from "node:readline";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { assertReadable } from "./scored-pool-jsonl.js";

/** One record of a samples file: its parsed JSON, or why it could not be parsed. */
export type SampleRecord =
  | { where: string; ordinal: number; value: unknown }
  | { where: string; ordinal: number; error: string };

export type SampleFileFormat = "jsonl" | "json";

export function sampleFormatOf(path: string): SampleFileFormat {
  const ext = extname(path).toLowerCase();
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  if (ext === ".json") return "json";
  throw new MmssrError(
    ERROR_CODES.UNSUPPORTED_FORMAT,
    `${path}: unknown extension ${JSON.stringify(ext)} for samples; use .jsonl (one sample per line) or .json (an array, LLaVA style)`,
  );
}

/**
 * Reads samples from JSONL (streamed line by line; blank lines skipped) or from a JSON array
 * (LLaVA's and LLaMA-Factory's files; parsed whole). A line that is not JSON is yielded as an
 * error with its line number, so the caller can reject it with a reason instead of losing it.
 */
export async function* readSampleRecords(path: string): AsyncGenerator<SampleRecord> {
  await assertReadable(path);
  if (sampleFormatOf(path) === "json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, "utf8"));
    } catch (err) {
      throw new MmssrError(ERROR_CODES.BAD_ROW, `${path}: not valid JSON: ${(err as Error).message}`);
    }
    if (!Array.isArray(parsed))
      throw new MmssrError(
        ERROR_CODES.BAD_ROW,
        `${path}: expected a JSON array of samples (use .jsonl for one per line)`,
      );
    for (let k = 0; k < parsed.length; k++) yield { where: `${path}[${k}]`, ordinal: k, value: parsed[k] };
    return;
  }
  const lines = createInterface({
    input: createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 20 }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let lineNo = 0;
  let ordinal = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === "") continue;
    const where = `${path}:${lineNo}`;
    try {
      yield { where, ordinal: ordinal++, value: JSON.parse(line) };
    } catch (err) {
      yield { where, ordinal: ordinal++, error: `invalid JSON: ${(err as Error).message}` };
    }
  }
}

/** Number of records a samples file holds (lines that are not blank, or array length), for progress. */
export async function countSampleRecords(path: string): Promise<number> {
  if (sampleFormatOf(path) === "json") {
    const parsed = JSON.parse(await readFile(path, "utf8"));
    return Array.isArray(parsed) ? parsed.length : 0;
  }
  let n = 0;
  const lines = createInterface({
    input: createReadStream(path, { encoding: "utf8", highWaterMark: 1 << 20 }),
  });
  for await (const line of lines) if (line.trim() !== "") n++;
  return n;
}
