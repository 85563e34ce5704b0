/**
 * `mmssr export`: a selected set (what `mmssr curate` published, or one selected Parquet file)
 * as the JSON a training recipe reads:
 *
 * - llava: `[{id, image, images?, system?, conversations: [{from, value}]}]` (LLaVA-Instruct form);
 * - llama-factory: `[{messages: [{role, content}], images: [...]}]` (sharegpt form of
 *   LLaMA-Factory's data/mllm_demo.json; role user/assistant/system, `<image>` tokens kept in
 *   the content, one per image: missing ones are put in front of the first user turn).
 *
 * Image references: local paths are resolved against --image-base (default: the current folder)
 * and written relative to the folder of --out (the trainer's image folder / media_dir); URLs are
 * kept as they are; inline bytes (image_bytes, the decoded image_b64) are written to
 * `<out without extension>_images/<id>.<png|jpg|webp|gif|bin>` and referenced relatively.
 * Which image a sample has, first match: `images` (several), inline bytes, `image`, `image_url`.
 *
 * With --samples (issue 9 point 11): `mmssr score` + `mmssr select` give selected rows without
 * the sample (ids and scores only). --samples names the samples file the pool was scored from;
 * each selected id is joined to its sample there by id (the sample of --samples always wins,
 * also over the turns of a curate output), in the order of --in. The samples are read as
 * `mmssr score` reads them (readSampleRecords + validateSample, id = content hash when a record
 * has none, the first of duplicate ids wins, records that are no valid sample are skipped: score
 * rejected them, so no selected id names them); relative image paths then resolve against the
 * samples file's folder unless --image-base says otherwise. A selected id that --samples lacks
 * is a BAD_ROW before anything is written.
 *
 * The JSON file appears complete or not at all (temp + fsync + rename), after its images.
 */
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { dirname, extname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { readSampleRecords, sampleFormatOf } from "../../../connectors/files/sample-reader.js";
import { readSelectedRows, type SelectedRow } from "../../../connectors/parquet/selected-rows.js";
import { readScoredPool } from "../../../connectors/scored-pool-io.js";
import { publishedFiles, readPublishedEntries } from "../../../connectors/sink/shared-output.js";
import { LEGACY_MANIFEST_NAME, MANIFESTS_DIR } from "../../../connectors/sink/sink-manifest.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { IMAGE_PLACEHOLDER, type Sample, validateSample } from "../../domain/sample.js";
import { AtomicFile, writeFileAtomic } from "../../util/atomic-file.js";
import { claimOwnedDir, refuseOutputOverInput } from "../../util/safe-paths.js";
import { parseIntegerFlag, usageError } from "../cli-errors.js";
import { checkImageBase } from "../image-flags.js";

export const EXPORT_FORMATS = ["llava", "llama-factory"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportFlags {
  in: string;
  format: string;
  out: string;
  imageBase?: string;
  limit?: string;
  /** the samples file the selected pool was scored from: samples are joined to --in by id */
  samples?: string;
}

export interface ExportSummary {
  samples: number;
  format: ExportFormat;
  out: string;
  /** inline images written, and where (undefined when none) */
  imagesWritten: number;
  imagesDir?: string;
  /** local image paths that do not exist under --image-base */
  missingImages: number;
  /** the folder relative image paths resolved against */
  imageBase: string;
}

/** marker of the images folder this command made (safe-paths.ts claimOwnedDir) */
const IMAGES_MARKER = ".mmssr-export";

export function registerExportCommand(program: Command): void {
  program
    .command("export")
    .description(
      "write a selected set as training JSON: LLaVA conversations or LLaMA-Factory messages/images; " +
        "a pool of mmssr select (ids only) is joined to its samples with --samples",
    )
    .requiredOption(
      "--in <path>",
      "the --out folder of mmssr curate (its published selected files), one selected .parquet file, or (with --samples) the .jsonl/.parquet output of mmssr select",
    )
    .option(
      "--samples <file>",
      "the samples file (.jsonl, .json, .parquet) the pool was scored from: each selected id is joined to its sample there (always an error when one is missing)",
    )
    .requiredOption("--format <name>", `output format: ${EXPORT_FORMATS.join(" or ")}`)
    .requiredOption("--out <file.json>", "the JSON file to write (image paths are relative to its folder)")
    .option(
      "--image-base <dir>",
      "folder that relative image paths of the samples resolve against (default: the folder of --samples, else .)",
    )
    .option("--limit <n>", "export at most this many samples")
    .action(async (flags: ExportFlags) => {
      const s = await runExport(flags);
      process.stdout.write(`${summaryLine(s, flags.out)}\n`);
      if (s.missingImages > 0)
        process.stderr.write(
          `mmssr export: warning: ${s.missingImages} local image path(s) do not exist under ${s.imageBase} (wrong --image-base?)\n`,
        );
    });
}

export function summaryLine(s: ExportSummary, outAsGiven: string): string {
  const images =
    s.imagesWritten > 0 && s.imagesDir !== undefined
      ? ` (${s.imagesWritten} image${s.imagesWritten === 1 ? "" : "s"} written to ${imagesDirFor(outAsGiven)}/)`
      : "";
  return `exported ${s.samples} sample${s.samples === 1 ? "" : "s"} (${s.format}) -> ${outAsGiven}${images}`;
}

/** `<out without extension>_images` */
export function imagesDirFor(out: string): string {
  const ext = extname(out);
  return `${ext === "" ? out : out.slice(0, -ext.length)}_images`;
}

interface ExportInput {
  /** --in is a curate output folder (else one file) */
  dir: boolean;
  /** the selected Parquet files, in order */
  files: string[];
  /** every file read (selected files, manifests): none may be written */
  read: string[];
}

async function statOrNull(path: string): Promise<Awaited<ReturnType<typeof stat>> | null> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${path}: cannot be read (${(err as Error).message})`, {
      cause: err,
    });
  }
}

/** The selected files of a curate output folder (as its manifests list them) or the one file given. */
async function resolveInput(path: string): Promise<ExportInput> {
  const s = await statOrNull(path);
  if (s === null) throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `--in: ${path}: no such file or folder`);
  if (!s.isDirectory()) return { dir: false, files: [path], read: [path] };
  if ((await readPublishedEntries(path)).length === 0)
    throw new MmssrError(
      ERROR_CODES.FILE_NOT_FOUND,
      `--in: ${path} has no manifest listing published files (${MANIFESTS_DIR}/*.jsonl or ${LEGACY_MANIFEST_NAME}): give the --out folder of mmssr curate after it published, or one selected .parquet file`,
    );
  const files = await publishedFiles(path, "selected");
  let manifests: string[] = [];
  try {
    manifests = (await readdir(join(path, MANIFESTS_DIR)))
      .filter((n) => n.endsWith(".jsonl"))
      .map((n) => join(path, MANIFESTS_DIR, n));
  } catch {
    /* the single-instance layout has none */
  }
  return { dir: true, files, read: [path, ...files, join(path, LEGACY_MANIFEST_NAME), ...manifests] };
}

// a scheme followed by `//` (as scoring/image-source.ts reads it), or a data: URI
const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;

/** File extension of image bytes, by their magic number. */
export function imageExtension(bytes: Uint8Array): string {
  const at = (k: number, ...v: number[]): boolean => v.every((b, i) => bytes[k + i] === b);
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "png";
  if (at(0, 0xff, 0xd8, 0xff)) return "jpg";
  if (at(0, 0x47, 0x49, 0x46, 0x38) && (bytes[4] === 0x37 || bytes[4] === 0x39) && bytes[5] === 0x61)
    return "gif";
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return "webp";
  return "bin";
}

const toPosix = (p: string): string => (sep === "/" ? p : p.split(sep).join("/"));

/** Turns sample image references into the references of the exported file. */
class ImageRefs {
  written = 0;
  missing = 0;
  private readonly checked = new Map<string, boolean>();
  /** lower-cased file names used in the images folder (case-insensitive file systems) */
  private readonly names = new Set<string>();
  private claimed = false;

  constructor(
    private readonly base: string,
    private readonly outDir: string,
    readonly imagesDir: string,
  ) {}

  /** a path or URL of the sample, as the output references it */
  ref(ref: string): string {
    if (/^data:/i.test(ref)) return ref;
    const scheme = SCHEME_RE.exec(ref)?.[1]?.toLowerCase();
    if (scheme !== undefined && scheme !== "file") return ref;
    let abs: string;
    try {
      abs = scheme === "file" ? fileURLToPath(ref) : resolve(this.base, ref);
    } catch {
      return ref; // a file: URL of another host: left as it is
    }
    let found = this.checked.get(abs);
    if (found === undefined) {
      found = existsSync(abs);
      this.checked.set(abs, found);
      if (!found) this.missing++;
    }
    return toPosix(relative(this.outDir, abs));
  }

  /** writes inline bytes to the images folder; returns their reference */
  async inline(id: string, bytes: Uint8Array): Promise<string> {
    if (!this.claimed) {
      await claimOwnedDir(this.imagesDir, IMAGES_MARKER, "--out", "mmssr export");
      this.claimed = true;
    }
    const stem = id.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 120) || "image";
    const ext = imageExtension(bytes);
    let name = `${stem}.${ext}`;
    for (let n = 2; this.names.has(name.toLowerCase()); n++) name = `${stem}-${n}.${ext}`;
    this.names.add(name.toLowerCase());
    const path = join(this.imagesDir, name);
    await writeFileAtomic(path, bytes);
    this.written++;
    return toPosix(relative(this.outDir, path));
  }
}

/** The images of a sample, as exported references (see the file comment for which). */
async function imagesOf(row: SelectedRow, refs: ImageRefs): Promise<string[]> {
  if (row.images !== undefined && row.images.length > 1) return row.images.map((r) => refs.ref(r));
  if (row.image_bytes !== undefined) return [await refs.inline(row.id, row.image_bytes)];
  if (row.image !== undefined) return [refs.ref(row.image)];
  if (row.images !== undefined) return row.images.map((r) => refs.ref(r));
  if (row.image_url !== undefined) return [row.image_url];
  return [];
}

const ROLES: ReadonlyMap<string, "user" | "assistant" | "system"> = new Map([
  ["human", "user"],
  ["user", "user"],
  ["gpt", "assistant"],
  ["assistant", "assistant"],
  ["system", "system"],
]);

function badSpeaker(file: string, row: SelectedRow, k: number, from: string): MmssrError {
  return new MmssrError(
    ERROR_CODES.BAD_ROW,
    `${file}: row ${row.row} (id ${JSON.stringify(row.id)}): conversations[${k}].from: ${JSON.stringify(from)} is not a speaker (human, gpt)`,
  );
}

function countPlaceholders(text: string): number {
  let n = 0;
  for (let at = text.indexOf(IMAGE_PLACEHOLDER); at >= 0; at = text.indexOf(IMAGE_PLACEHOLDER, at + 1)) n++;
  return n;
}

function llavaRecord(file: string, row: SelectedRow, images: string[]): Record<string, unknown> {
  const rec: Record<string, unknown> = { id: row.id };
  if (images.length > 0) rec.image = images[0];
  if (images.length > 1) rec.images = images;
  if (row.system !== undefined) rec.system = row.system;
  rec.conversations = row.conversations.map((t, k) => {
    if (!ROLES.has(t.from)) throw badSpeaker(file, row, k, t.from);
    return { from: t.from, value: t.value };
  });
  return rec;
}

function llamaFactoryRecord(file: string, row: SelectedRow, images: string[]): Record<string, unknown> {
  const messages: { role: string; content: string }[] = [];
  if (row.system !== undefined) messages.push({ role: "system", content: row.system });
  row.conversations.forEach((t, k) => {
    const role = ROLES.get(t.from);
    if (role === undefined) throw badSpeaker(file, row, k, t.from);
    messages.push({ role, content: t.value });
  });
  // LLaMA-Factory wants as many <image> tokens as images; LLaVA data may leave them implicit
  const have = messages.reduce((n, m) => n + countPlaceholders(m.content), 0);
  if (images.length > have) {
    const first = messages.find((m) => m.role === "user") ?? messages[0];
    first.content = IMAGE_PLACEHOLDER.repeat(images.length - have) + first.content;
  }
  return { messages, images };
}

/** The ids of the selected rows of --in, in order (for the join with --samples). */
async function selectedIds(inPath: string, input: ExportInput): Promise<readonly string[]> {
  if (!input.dir) return (await readScoredPool(inPath)).ids;
  // a curate output: its selected files (with turns; only the ids are used)
  const ids: string[] = [];
  for (const path of input.files) for await (const row of readSelectedRows(path)) ids.push(row.id);
  return ids;
}

type JoinedSample = Omit<SelectedRow, "row">;

/** The part of a validated sample that export writes (as readSelectedRows gives it). */
function exportedPart(sample: Sample): JoinedSample {
  const out: JoinedSample = {
    id: sample.id,
    conversations: sample.conversations.map((t) => ({ from: t.from, value: t.value })),
  };
  if (sample.system) out.system = sample.system;
  if (sample.image) out.image = sample.image;
  if (sample.images !== undefined && sample.images.length > 0) out.images = sample.images;
  if (sample.image_url) out.image_url = sample.image_url;
  if (sample.image_b64) out.image_bytes = Buffer.from(sample.image_b64, "base64");
  return out;
}

/**
 * The samples of `ids` from the samples file, in the order of `ids`. Reads the samples file as
 * `mmssr score` does. Memory: a Map id -> sample of every wanted sample of the file (decoded
 * inline images included) is held until the export is written; fine for now, a file too large
 * for that needs a sorted or indexed join.
 */
async function joinSamples(
  samplesPath: string,
  inPath: string,
  ids: readonly string[],
): Promise<{ file: string; row: SelectedRow }[]> {
  const wanted = new Set(ids);
  const found = new Map<string, JoinedSample>();
  let skipped = 0;
  for await (const rec of readSampleRecords(samplesPath)) {
    if ("error" in rec) {
      skipped++;
      continue;
    }
    // score's default: a record without id gets the content hash as id
    const v = validateSample(rec.value, { missingId: "content-hash" });
    if (!v.ok) {
      skipped++;
      continue;
    }
    // duplicate ids: the first wins, as score scored the first and rejected the later ones
    if (wanted.has(v.sample.id) && !found.has(v.sample.id)) found.set(v.sample.id, exportedPart(v.sample));
  }
  const missing = ids.filter((id) => !found.has(id));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).map((id) => JSON.stringify(id));
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `--samples: ${missing.length} of ${ids.length} selected id${ids.length === 1 ? "" : "s"} of ${inPath} ${missing.length === 1 ? "is" : "are"} not in ${samplesPath}: ${shown.join(", ")}${missing.length > shown.length ? `, ... (${missing.length - shown.length} more)` : ""}` +
        `${skipped > 0 ? `; ${skipped} record(s) of it are no valid sample and were skipped` : ""} (is it the file the pool was scored from?)`,
    );
  }
  return ids.map((id, k) => ({ file: inPath, row: { ...(found.get(id) as JoinedSample), row: k + 1 } }));
}

/** Rows of the selected files of --in, in order, each with its file. */
async function* selectedRowsOf(files: readonly string[]): AsyncGenerator<{ file: string; row: SelectedRow }> {
  for (const file of files) for await (const row of readSelectedRows(file)) yield { file, row };
}

/** Writes the export; returns what it wrote (the caller prints the summary). */
export async function runExport(flags: ExportFlags): Promise<ExportSummary> {
  if (!(EXPORT_FORMATS as readonly string[]).includes(flags.format))
    throw usageError(
      `--format: expected ${EXPORT_FORMATS.join(" or ")}, got ${JSON.stringify(flags.format)}`,
    );
  const format = flags.format as ExportFormat;
  const limit =
    flags.limit === undefined ? Number.POSITIVE_INFINITY : parseIntegerFlag("--limit", flags.limit, 0);
  const out = resolve(flags.out);
  const imagesDir = imagesDirFor(out);
  if (flags.samples !== undefined) sampleFormatOf(flags.samples);
  const input = await resolveInput(flags.in);
  refuseOutputOverInput(
    [
      ["--out", flags.out],
      ["--out (its images folder)", imagesDir],
    ],
    [...input.read.map((p) => ["--in", p] as const), ["--samples", flags.samples]],
  );
  if (flags.samples === undefined && !input.dir && /\.(jsonl|ndjson)$/i.test(flags.in))
    throw usageError(
      `--in: ${flags.in} is a scored pool (.jsonl) without samples: add --samples <the samples file it was scored from>`,
    );
  if (flags.samples !== undefined && !(await statOrNull(flags.samples))?.isFile())
    throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `--samples: ${flags.samples}: no such file`);
  const outStat = await statOrNull(out);
  if (outStat?.isDirectory()) throw usageError(`--out: ${flags.out} is a folder: give a .json file to write`);
  const outDir = dirname(out);
  if (!(await statOrNull(outDir))?.isDirectory())
    throw new MmssrError(
      ERROR_CODES.FILE_NOT_FOUND,
      `--out: cannot write ${flags.out}: folder ${outDir} does not exist`,
    );
  const base = resolve(
    flags.imageBase ?? (flags.samples === undefined ? "." : dirname(resolve(flags.samples))),
  );
  if (flags.imageBase !== undefined) await checkImageBase(flags.imageBase);

  // with --samples the join happens (and may fail) before anything is written
  let rows: AsyncIterable<{ file: string; row: SelectedRow }> | Iterable<{ file: string; row: SelectedRow }>;
  if (flags.samples === undefined) rows = selectedRowsOf(input.files);
  else {
    const ids = await selectedIds(flags.in, input);
    rows = await joinSamples(flags.samples, flags.in, ids.length > limit ? ids.slice(0, limit) : ids);
  }

  const refs = new ImageRefs(base, outDir, imagesDir);
  const file = new AtomicFile(out);
  let samples = 0;
  try {
    await file.open();
    let chunk = "[";
    const flush = async (): Promise<void> => {
      await file.write(chunk);
      chunk = "";
    };
    for await (const { file: path, row } of rows) {
      if (samples >= limit) break;
      const images = await imagesOf(row, refs);
      const rec = format === "llava" ? llavaRecord(path, row, images) : llamaFactoryRecord(path, row, images);
      chunk += `${samples === 0 ? "\n" : ",\n"}${JSON.stringify(rec)}`;
      samples++;
      if (chunk.length >= 1 << 20) await flush();
    }
    chunk += samples === 0 ? "]\n" : "\n]\n";
    await flush();
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
  return {
    samples,
    format,
    out,
    imagesWritten: refs.written,
    imagesDir: refs.written > 0 ? imagesDir : undefined,
    missingImages: refs.missing,
    imageBase: base,
  };
}
