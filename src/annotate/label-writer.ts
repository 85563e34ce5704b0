/**
 * The files of `mmssr annotate`: the labelled JSONL it appends to (and resumes from) and the file
 * of samples it could not label.
 *
 * Labelled line (what `mmssr fit --labels` reads unchanged): the validated sample's fields (id,
 * image, conversations, extras ...), then `scores` (all 14 capability ids, `null` = missing: fit
 * trains on the present ones only), `styles`, `teacher` and `annotation` (mode, models, image,
 * `missing` with a reason per missing capability or "styles", requests, attempts, token usage).
 * Each line is one append, written as soon as its sample is complete, so a killed run loses at
 * most the samples in flight.
 *
 * Resume (`readResumeState`): the ids already in the output are done. A last line without its
 * newline is a write the previous run did not finish: it is cut off with a warning (its sample
 * is labelled again), unless it is a whole record, which is kept and given its newline. A
 * complete line that is not a labelled record is an error naming the line (the file is not ours
 * to repair). The teacher of the existing lines must be this run's: one labels file, one teacher.
 *
 * Failed line (`<out>.failed.jsonl` unless named): `{id, where, reason, teacher, annotation}`
 * for each sample that got no score; rewritten by each run (they are not in the output, so the
 * next run asks again).
 */
import { createReadStream } from "node:fs";
import { type FileHandle, open, rm, truncate } from "node:fs/promises";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import type { SampleOutcome } from "./annotate-samples.js";

export interface ResumeState {
  doneIds: Set<string>;
  /** records read */
  lines: number;
  /** the `teacher` of the first record that names one */
  teacher: string | undefined;
  /** bytes of a torn last line that were cut off (0: none) */
  tornBytes: number;
}

function parseRecord(text: string): { id: string; teacher: unknown } | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  const rec = parsed as Record<string, unknown>;
  if (typeof rec.id !== "string" || rec.id === "" || typeof rec.scores !== "object") return undefined;
  return { id: rec.id, teacher: rec.teacher };
}

/** Reads what an earlier run wrote to `path` (rules in the header). A missing file is empty. */
export async function readResumeState(path: string, warn: (line: string) => void): Promise<ResumeState> {
  const state: ResumeState = { doneIds: new Set(), lines: 0, teacher: undefined, tornBytes: 0 };
  let total = 0; // bytes read
  let lineNo = 0;
  let carry: Buffer[] = [];
  const take = (bytes: Buffer): void => {
    lineNo++;
    const text = bytes.toString("utf8").replace(/\r$/, "");
    if (text.trim() === "") return;
    const rec = parseRecord(text);
    if (rec === undefined)
      throw new MmssrError(
        ERROR_CODES.BAD_ROW,
        `--out ${path}:${lineNo}: not a labelled record (a JSON object with id and scores); refusing to append to a file that is not an annotate output`,
      );
    state.lines++;
    state.doneIds.add(rec.id);
    if (state.teacher === undefined && typeof rec.teacher === "string") state.teacher = rec.teacher;
  };
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      total += chunk.length;
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
        carry.push(chunk.subarray(start, nl));
        take(Buffer.concat(carry));
        carry = [];
        start = nl + 1;
      }
      if (start < chunk.length) carry.push(chunk.subarray(start));
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return state;
    if (code === "EISDIR") throw new MmssrError(ERROR_CODES.USAGE, `--out: ${path} is a folder, not a file`);
    throw err;
  }
  const tail = Buffer.concat(carry);
  if (tail.length === 0) return state;
  const whole = parseRecord(tail.toString("utf8"));
  if (whole !== undefined) {
    take(tail);
    const fh = await open(path, "a");
    await fh.appendFile("\n");
    await fh.close();
    return state;
  }
  await truncate(path, total - tail.length);
  state.tornBytes = tail.length;
  warn(
    `WARNING: ${path}:${lineNo + 1}: the last line was torn (${tail.length} bytes without a newline: an earlier run was stopped while writing it); cut off, its sample is labelled again`,
  );
  return state;
}

/** The output line of a labelled sample (with its newline). */
export function labelledLine(outcome: Extract<SampleOutcome, { kind: "labelled" }>, teacher: string): string {
  const record: Record<string, unknown> = { ...outcome.sample };
  record.scores = outcome.scores;
  record.styles = outcome.styles;
  record.teacher = teacher;
  record.annotation = outcome.annotation;
  return `${JSON.stringify(record)}\n`;
}

/** The line of a sample that got no score (with its newline). */
export function failedLine(outcome: Extract<SampleOutcome, { kind: "failed" }>, teacher: string): string {
  return `${JSON.stringify({ id: outcome.sample.id, where: outcome.where, reason: outcome.reason, teacher, annotation: outcome.annotation })}\n`;
}

/** Appends outcomes to the output and the failed file, one whole line per write, in call order. */
export class LabelWriter {
  private failed: FileHandle | undefined;
  private chain: Promise<void> = Promise.resolve();

  private constructor(
    private readonly out: FileHandle,
    private readonly failedPath: string,
    private readonly teacher: string,
  ) {}

  /** Opens `outPath` for appending and removes the failed file of an earlier run. */
  static async open(outPath: string, failedPath: string, teacher: string): Promise<LabelWriter> {
    await rm(failedPath, { force: true });
    return new LabelWriter(await open(outPath, "a"), failedPath, teacher);
  }

  /** Writes one outcome: a labelled line to the output, a failed one to the failed file. */
  write(outcome: SampleOutcome): Promise<void> {
    const next = this.chain.then(async () => {
      if (outcome.kind === "labelled") {
        await this.out.appendFile(labelledLine(outcome, this.teacher));
        return;
      }
      this.failed ??= await open(this.failedPath, "a");
      await this.failed.appendFile(failedLine(outcome, this.teacher));
    });
    this.chain = next.catch(() => {});
    return next;
  }

  /** Waits for the writes, flushes them to disk and closes the files. */
  async close(): Promise<void> {
    await this.chain;
    try {
      await this.out.sync();
      await this.failed?.sync();
    } finally {
      await this.out.close();
      await this.failed?.close();
    }
  }
}
