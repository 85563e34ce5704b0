import { readdir, stat } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import type { Command } from "commander";
import { openParquet, parquetBatches } from "../../../connectors/parquet/parquet-batches.js";
import { publishedFiles } from "../../../connectors/sink/shared-output.js";
import {
  type FileKind,
  LEGACY_MANIFEST_NAME,
  MANIFESTS_DIR,
} from "../../../connectors/sink/sink-manifest.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import {
  batchIds,
  checkSelectedSchema,
  ReportAccumulator,
  type ReportData,
} from "../../report/report-data.js";
import { readChartJs, renderReportHtml } from "../../report/report-html.js";
import { writeFileAtomic } from "../../util/atomic-file.js";
import { canonicalPath, refuseOutputOverInput } from "../../util/safe-paths.js";
import { usageError } from "../cli-errors.js";

interface ReportFlags {
  scores: string[];
  selected?: string[];
  out: string;
}

/** Rows decoded at a time: scored files carry small rows; selected ones may carry image bytes. */
const SCORED_BATCH_ROWS = 65_536;
const SELECTED_BATCH_ROWS = 1024;

export function registerReportCommand(program: Command): void {
  program
    .command("report")
    .description(
      "write one self-contained HTML page of charts: style and source shares, score histograms, means, decision reasons and policy over time of a scored pool or a curate run",
    )
    .requiredOption(
      "--scores <paths...>",
      "scored Parquet files or folders: a curate output folder (its published scored/ files, and selected/ unless --selected is given), or a folder of .parquet files",
    )
    .option(
      "--selected <paths...>",
      "selected Parquet files or folders, for scored files without a selected column: a row is selected when its id is in them",
    )
    .requiredOption("--out <file>", "the HTML page to write (.html)")
    .action(async (flags: ReportFlags) => {
      await runReport(flags);
    });
}

export interface RunReportOptions {
  scores: readonly string[];
  selected?: readonly string[];
  out: string;
  /** the page's "generated" time (tests pin it) */
  now?: Date;
}

/** Builds the report page and writes it atomically; prints a one-line summary to stderr. */
export async function runReport(options: RunReportOptions): Promise<{ data: ReportData; bytes: number }> {
  const t0 = performance.now();
  const ext = extname(options.out).toLowerCase();
  if (ext !== ".html" && ext !== ".htm")
    throw usageError(`--out: ${options.out}: expected an .html file, got extension ${JSON.stringify(ext)}`);
  if (options.scores.length === 0) throw usageError("--scores: give at least one file or folder");

  const inputs = await resolveInputs(options.scores, options.selected);
  refuseOutputOverInput(
    [["--out", options.out]],
    [
      ...options.scores.map((p) => ["--scores", p] as const),
      ...(options.selected ?? []).map((p) => ["--selected", p] as const),
      ...inputs.scored.map((p) => ["--scores", p] as const),
      ...inputs.selected.map((p) => ["--selected", p] as const),
    ],
  );

  // Separate selected files are read only when some scored file lacks the selected column.
  let needIds = false;
  for (const path of inputs.scored) {
    const { file, schema } = await openParquet(path);
    file.free();
    if (!schema.fields.some((f) => f.name === "selected")) needIds = true;
  }
  const selectedIds = needIds && inputs.selected.length > 0 ? new Set<string>() : undefined;
  const selectedRows: [string, number][] = [];
  if (selectedIds !== undefined)
    for (const path of inputs.selected) selectedRows.push([path, await readIds(path, selectedIds)]);

  const acc = new ReportAccumulator({ selectedIds });
  for (const [path, rows] of selectedRows) acc.addSelectedFile(path, rows);
  for (const path of inputs.scored) {
    const { file, schema } = await openParquet(path);
    try {
      acc.startFile(path, schema);
      for await (const batch of parquetBatches(file, SCORED_BATCH_ROWS)) acc.addBatch(batch);
    } finally {
      file.free();
    }
  }
  const data = acc.build(options.now);
  if (options.selected !== undefined && selectedIds === undefined)
    data.notes.push(
      "The --selected files were not read: every scored file has a selected column, which says which rows were selected.",
    );

  const html = renderReportHtml(data, readChartJs());
  await writeFileAtomic(options.out, html);
  const bytes = Buffer.byteLength(html, "utf8");
  const secs = (performance.now() - t0) / 1000;
  const selectedText =
    data.selection === "none"
      ? "selection unknown (pool only)"
      : `${data.selectedRows} selected (${((100 * data.selectedRows) / Math.max(data.poolRows, 1)).toFixed(1)}%)`;
  const scoredFiles = inputs.scored.length;
  process.stderr.write(
    `mmssr report: ${data.poolRows} rows from ${scoredFiles} scored file${scoredFiles === 1 ? "" : "s"}, ${selectedText} in ${secs.toFixed(1)} s -> ${options.out} (${(bytes / 1024).toFixed(0)} KiB)\n`,
  );
  return { data, bytes };
}

/** Adds the ids of a selected file to `into`; returns its row count. */
async function readIds(path: string, into: Set<string>): Promise<number> {
  const { file, schema } = await openParquet(path);
  let rows = 0;
  try {
    checkSelectedSchema(schema, path);
    for await (const batch of parquetBatches(file, SELECTED_BATCH_ROWS)) {
      for (const id of batchIds(batch, path, rows)) into.add(id);
      rows += batch.numRows;
    }
  } finally {
    file.free();
  }
  return rows;
}

interface Inputs {
  scored: string[];
  selected: string[];
}

const isDir = (path: string): Promise<boolean> =>
  stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );

const hasManifests = async (dir: string): Promise<boolean> => {
  const entries = await readdir(dir).catch(() => [] as string[]);
  return entries.includes(MANIFESTS_DIR) || entries.includes(LEGACY_MANIFEST_NAME);
};

/** A curate output folder: it has scored/ (and manifests, selected/ beside it). */
const isCurateOutput = async (dir: string): Promise<boolean> =>
  (await isDir(join(dir, "scored"))) && ((await hasManifests(dir)) || (await isDir(join(dir, "selected"))));

/**
 * The Parquet files of one kind in a folder: what the manifests publish where the folder (or,
 * for DIR/scored/ and DIR/selected/, its parent) has manifests, since a file no manifest names
 * is not published (a crash left it, or it is being written); else every *.parquet in it.
 */
async function folderFiles(dir: string, kind: FileKind, flag: string): Promise<string[]> {
  let files: string[];
  const parent = dirname(resolve(dir));
  if (basename(resolve(dir)) === kind && (await hasManifests(parent))) {
    files = await publishedFiles(parent, kind);
  } else {
    const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${flag}: cannot read folder ${dir}: ${err.message}`);
    });
    files = entries
      .filter((n) => n.toLowerCase().endsWith(".parquet") && !n.startsWith("."))
      .sort()
      .map((n) => join(dir, n));
  }
  return files;
}

async function curateFiles(dir: string, kind: FileKind, flag: string): Promise<string[]> {
  return (await hasManifests(dir)) ? publishedFiles(dir, kind) : folderFiles(join(dir, kind), kind, flag);
}

async function resolvePaths(
  paths: readonly string[],
  kind: FileKind,
  flag: string,
  into: string[],
): Promise<void> {
  for (const path of paths) {
    const st = await stat(path).catch(() => undefined);
    if (st === undefined) throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${flag}: ${path} does not exist`);
    if (!st.isDirectory()) {
      if (extname(path).toLowerCase() !== ".parquet")
        throw new MmssrError(
          ERROR_CODES.UNSUPPORTED_FORMAT,
          `${flag}: ${path}: mmssr report reads Parquet files (.parquet); convert a JSONL pool with mmssr select or score --out x.parquet`,
        );
      into.push(path);
      continue;
    }
    const files = (await isCurateOutput(path))
      ? await curateFiles(path, kind, flag)
      : await folderFiles(path, kind, flag);
    if (files.length === 0)
      throw new MmssrError(
        ERROR_CODES.FILE_NOT_FOUND,
        `${flag}: ${path} holds no ${kind === "scored" ? "scored" : "selected"} Parquet files${(await hasManifests(path)) ? " that its manifests publish" : ""}`,
      );
    into.push(...files);
  }
}

/** The scored and selected files the arguments name, each once, in the order given. */
async function resolveInputs(
  scores: readonly string[],
  selected: readonly string[] | undefined,
): Promise<Inputs> {
  const scored: string[] = [];
  await resolvePaths(scores, "scored", "--scores", scored);
  const sel: string[] = [];
  if (selected !== undefined) await resolvePaths(selected, "selected", "--selected", sel);
  else
    for (const path of scores)
      if ((await isDir(path)) && (await isCurateOutput(path)) && (await isDir(join(path, "selected"))))
        sel.push(...(await curateFiles(path, "selected", "--scores")));
  return { scored: unique(scored), selected: unique(sel) };
}

function unique(paths: string[]): string[] {
  const seen = new Set<string>();
  return paths.filter((p) => {
    const real = canonicalPath(p);
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}
