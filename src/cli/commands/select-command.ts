import { stat } from "node:fs/promises";
import type { Command } from "commander";
import { poolFormatOf, readScoredPool, writeScoredPool } from "../../../connectors/scored-pool-io.js";
import { MmssrError } from "../../domain/errors.js";
import { bucketName, CAPABILITY_IDS, type CapabilityId, STYLES } from "../../domain/taxonomy.js";
import { resolveSelectOptions } from "../../selection/resolve-select-options.js";
import { selectMmssr } from "../../selection/select-mmssr.js";
import type { SelectOptions } from "../../selection/select-options.js";
import { summarizeSelection } from "../../selection/selection-summary.js";
import { writeFileAtomic } from "../../util/atomic-file.js";
import { refuseOutputInsideInput, refuseOutputOverInput } from "../../util/safe-paths.js";
import { parseIntegerFlag, parseNumberFlag, parseWeightsFlag, usageError } from "../cli-errors.js";
import { formatSummary } from "../format-summary.js";

interface SelectFlags {
  scores: string;
  out: string;
  ratio?: string;
  budget?: string;
  caps: string;
  thr: string;
  capWeights?: string;
  styleWeights?: string;
  summaryJson?: string;
}

/** Flag names as the user typed them, for messages that come from the selector's checks. */
const FLAG_OF_OPTION: Record<string, string> = {
  "ratio and budget": "--ratio and --budget",
  "ratio or budget": "--ratio or --budget",
  ratio: "--ratio",
  budget: "--budget",
  capabilities: "--caps",
  threshold: "--thr",
  capabilityWeights: "--cap-weights",
  styleWeights: "--style-weights",
};

/** The selection options of a command's flags, checked (flags named in errors) before any file is read. */
export function parseSelectFlags(
  flags: Pick<SelectFlags, "ratio" | "budget" | "caps" | "thr" | "capWeights" | "styleWeights">,
): SelectOptions {
  const options: SelectOptions = {};
  if (flags.ratio !== undefined) options.ratio = parseNumberFlag("--ratio", flags.ratio);
  if (flags.budget !== undefined) options.budget = parseIntegerFlag("--budget", flags.budget);
  const caps = flags.caps.trim();
  if (caps !== "all")
    options.capabilities = caps
      .split(",")
      .map((c) => c.trim())
      .filter((c) => c !== "") as CapabilityId[];
  options.threshold = parseNumberFlag("--thr", flags.thr);
  if (flags.capWeights) options.capabilityWeights = parseWeightsFlag("--cap-weights", flags.capWeights);
  if (flags.styleWeights) options.styleWeights = parseWeightsFlag("--style-weights", flags.styleWeights);
  try {
    // Check everything before reading a possibly huge file.
    resolveSelectOptions(0, options);
  } catch (err) {
    if (err instanceof MmssrError) {
      const m = /^([A-Za-z ]+):/.exec(err.message);
      const flag = m ? FLAG_OF_OPTION[m[1]] : undefined;
      throw usageError(flag ? `${flag}:${err.message.slice(m?.[0].length)}` : err.message);
    }
    throw err;
  }
  return options;
}

export function registerSelectCommand(program: Command): void {
  program
    .command("select")
    .description("select the best and most diverse share of a scored pool (offline mmSSR, exact)")
    .requiredOption(
      "--scores <path>",
      "scored pool: .jsonl or .parquet in the interchange format, or a folder of them (a curate output: its published scored files)",
    )
    .requiredOption(
      "--out <file>",
      "selected rows (+ picked_by, bucket); format by extension: .jsonl or .parquet",
    )
    .option("--ratio <r>", "select floor(pool size x r) rows, 0 < r < 1")
    .option("--budget <n>", "select at most n rows")
    .option(
      "--caps <list>",
      `capabilities, in order: all or a comma list of ${CAPABILITY_IDS.join(",")}`,
      "all",
    )
    .option("--thr <t>", "a score must be above t (0..5) to count", "0")
    .option("--cap-weights <list>", "budget shares per capability, e.g. ocr=2,data=2 (default equal)")
    .option("--style-weights <list>", `quota weights per style, e.g. "yes/no=0.5" (0 excludes a style)`)
    .option("--summary-json <file>", "also write the full summary (every bucket) as JSON")
    .action(async (flags: SelectFlags) => {
      const options = parseSelectFlags(flags);
      refuseOutputOverInput(
        [
          ["--out", flags.out],
          ["--summary-json", flags.summaryJson],
        ],
        [["--scores", flags.scores]],
      );
      const folder = await stat(flags.scores).then(
        (st) => st.isDirectory(),
        () => false,
      );
      if (folder)
        refuseOutputInsideInput(
          [
            ["--out", flags.out],
            ["--summary-json", flags.summaryJson],
          ],
          ["--scores", flags.scores],
        );
      else poolFormatOf(flags.scores);
      poolFormatOf(flags.out);
      await runSelect({ scores: flags.scores, out: flags.out, summaryJson: flags.summaryJson, ...options });
    });
}

export interface RunSelectOptions extends SelectOptions {
  scores: string;
  out: string;
  summaryJson?: string;
}

/** Reads a pool, selects, writes the picked rows with picked_by and bucket, prints the summary. */
export async function runSelect(run: RunSelectOptions): Promise<void> {
  const { scores, out, summaryJson, ...options } = run;
  const t0 = performance.now();
  const pool = await readScoredPool(scores);
  const t1 = performance.now();
  const result = selectMmssr(pool, options);
  const t2 = performance.now();
  const pickedBy = Array.from(result.pickedBy, (c) => CAPABILITY_IDS[c]);
  // one string per (style, source), shared by every row of that bucket
  const names = STYLES.map((style) => pool.sources.map((source) => bucketName(style, source)));
  const bucket = Array.from(result.indices, (i, k) => names[result.pickedStyle[k]][pool.sourceIndex[i]]);
  await writeScoredPool(out, pool, { rows: result.indices, extraColumns: { picked_by: pickedBy, bucket } });
  const t3 = performance.now();
  const summary = summarizeSelection(pool, result);
  process.stdout.write(`${formatSummary(summary)}\n`);
  process.stdout.write(
    `read ${(t1 - t0).toFixed(0)} ms, select ${(t2 - t1).toFixed(0)} ms, write ${(t3 - t2).toFixed(0)} ms -> ${out}\n`,
  );
  if (summaryJson) await writeFileAtomic(summaryJson, `${JSON.stringify(summary, null, 2)}\n`);
}
