import { appendFile, rm } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Command } from "commander";
import { readSampleRecords } from "../../../connectors/files/sample-reader.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { formatSampleErrors, validateSample } from "../../domain/sample.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { parseScoredRow } from "../../pool/scored-pool.js";
import {
  createSampleFeaturizer,
  DEFAULT_FEATURE_SPEC,
  VISION_FEATURE_SPEC,
} from "../../scoring/featurize-samples.js";
import { fitModel, type LabelledSample } from "../../scoring/fit/fit-model.js";
import { createImageLoader } from "../../scoring/image-source.js";
import { RULE_TEACHER_ID, ruleTeacherLabel } from "../../scoring/rule-teacher.js";
import { refuseOutputOverInput } from "../../util/safe-paths.js";
import { parseIntegerFlag, parseNumberFlag, usageError } from "../cli-errors.js";

const MAX_REPORTED = 20;

/**
 * Labelled JSONL: one sample per line (LLaVA or messages/images form) that also carries its
 * teacher's labels in the interchange format: `scores` keyed by capability id and `styles`.
 */
async function readLabelled(path: string): Promise<{ rows: LabelledSample[]; teacher: string | undefined }> {
  const rows: LabelledSample[] = [];
  const errors: string[] = [];
  let teacher: string | undefined;
  for await (const rec of readSampleRecords(path)) {
    if (errors.length >= MAX_REPORTED) break;
    if ("error" in rec) {
      errors.push(`${rec.where}: ${rec.error}`);
      continue;
    }
    const v = validateSample(rec.value);
    if (!v.ok) {
      errors.push(`${rec.where}: ${formatSampleErrors(v.errors)}`);
      continue;
    }
    const labels = parseScoredRow({ id: v.sample.id, scores: v.sample.scores, styles: v.sample.styles });
    if (!labels.ok) {
      errors.push(`${rec.where}: ${labels.errors.join("; ")}`);
      continue;
    }
    if (v.sample.scores === undefined) {
      errors.push(`${rec.where}: scores: missing (a labelled sample needs its teacher's scores)`);
      continue;
    }
    if (typeof v.sample.teacher === "string") teacher ??= v.sample.teacher;
    rows.push({ sample: v.sample, scores: labels.value.scores, styleMask: labels.value.styleMask });
  }
  if (errors.length > 0)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${path}: bad labelled record(s); nothing was fitted:\n  ${errors.join("\n  ")}`,
    );
  return { rows, teacher };
}

export function registerFitCommand(program: Command): void {
  program
    .command("fit")
    .description("train a single-pass student on labelled samples and export it as an ONNX model folder")
    .requiredOption(
      "--labels <file>",
      "labelled samples (.jsonl): a sample plus its teacher's scores and styles",
    )
    .requiredOption("--out <dir>", "model folder to write, e.g. models/my-student")
    .option("--id <id>", "model id (default: the folder name)")
    .option("--version <v>", "model version", "1.0.0")
    .option(
      "--teacher <name>",
      "what labelled the data (default: the records' `teacher` field, else unknown)",
    )
    .option("--hidden <n>", "hidden units", "64")
    .option("--epochs <n>", "training epochs", "12")
    .option("--lr <x>", "learning rate", "0.002")
    .option("--seed <s>", "training seed", "7")
    .option(
      "--vision",
      "also feed the student vision-model features of each image (PP-OCRv4 text detection, MobileNetV2): " +
        "richer, about 40 ms of CPU per image more when scoring",
    )
    .action(async (flags: Record<string, string>) => {
      const { rows, teacher } = await readLabelled(flags.labels);
      if (rows.length < 10)
        throw usageError(`--labels: ${rows.length} labelled samples; fit needs at least 10`);
      // labelled data is the operator's own (trusted): its images may lie anywhere on disk
      const imageLoader = createImageLoader({
        baseDir: dirname(resolve(flags.labels)),
        allowUrls: false,
        allowLocalOutsideBase: true,
      });
      const featurizer = createSampleFeaturizer(
        (flags.vision as unknown) === true ? VISION_FEATURE_SPEC : DEFAULT_FEATURE_SPEC,
        {
          imageLoader,
        },
      );
      const id = flags.id ?? basename(resolve(flags.out));
      const result = await fitModel(rows, featurizer, {
        outDir: flags.out,
        id,
        version: flags.version,
        teacher: flags.teacher ?? teacher ?? "unknown teacher",
        train: {
          hidden: parseIntegerFlag("--hidden", flags.hidden, 1),
          epochs: parseIntegerFlag("--epochs", flags.epochs, 1),
          learningRate: parseNumberFlag("--lr", flags.lr),
          seed: parseIntegerFlag("--seed", flags.seed),
        },
        log: (line) => process.stderr.write(`mmssr fit: ${line}\n`),
      });
      await featurizer.close();
      await imageLoader.close();
      const worst = [...result.fidelity.capabilities].sort((a, b) => a.spearman - b.spearman)[0];
      process.stdout.write(
        `wrote ${flags.out} (${result.trainSize} train, ${result.holdoutSize} held out); ` +
          `lowest held-out Spearman: ${worst.id} ${worst.spearman.toFixed(3)}; model card: ${flags.out}/MODEL_CARD.md\n`,
      );
    });

  program
    .command("label")
    .description("label samples with a teacher, writing labelled JSONL for `mmssr fit`")
    .requiredOption("--in <file>", "samples: .jsonl or .json")
    .requiredOption("--out <file>", "labelled samples (.jsonl)")
    .option("--teacher <name>", "rule (the transparent rule teacher)", "rule")
    .action(async (flags: { in: string; out: string; teacher: string }) => {
      if (flags.teacher !== "rule")
        throw usageError(`--teacher: only "rule" is built in, got ${JSON.stringify(flags.teacher)}`);
      if (!flags.out.endsWith(".jsonl")) throw usageError("--out: labelled samples are written as .jsonl");
      refuseOutputOverInput([["--out", flags.out]], [["--in", flags.in]]);
      await rm(flags.out, { force: true });
      let n = 0;
      let bad = 0;
      let chunk = "";
      for await (const rec of readSampleRecords(flags.in)) {
        const v = "error" in rec ? undefined : validateSample(rec.value);
        if (!v?.ok) {
          bad++;
          process.stderr.write(
            `mmssr label: skipped ${rec.where}: ${"error" in rec ? rec.error : v && !v.ok ? formatSampleErrors(v.errors) : ""}\n`,
          );
          continue;
        }
        const label = ruleTeacherLabel(v.sample);
        const scores = Object.fromEntries(CAPABILITY_IDS.map((id, c) => [id, label.scores[c]]));
        chunk += `${JSON.stringify({ ...v.sample, scores, styles: label.styles, teacher: RULE_TEACHER_ID })}\n`;
        n++;
        if (chunk.length > 1 << 20) {
          await appendFile(flags.out, chunk);
          chunk = "";
        }
      }
      await appendFile(flags.out, chunk);
      process.stdout.write(
        `labelled ${n} samples with ${RULE_TEACHER_ID} -> ${flags.out}${bad ? `; ${bad} invalid records skipped (listed above)` : ""}\n`,
      );
    });
}
