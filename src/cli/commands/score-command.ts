import { existsSync } from "node:fs";
import { type FileHandle, open, readFile, rm, truncate } from "node:fs/promises";
import { dirname, extname, join, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import {
  countSampleRecords,
  readSampleRecords,
  sampleFormatOf,
} from "../../../connectors/files/sample-reader.js";
import { readScoredPoolJsonl } from "../../../connectors/files/scored-pool-jsonl.js";
import { writeScoredPoolParquet } from "../../../connectors/parquet/scored-pool-parquet.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { formatSampleErrors, type Sample, validateSample } from "../../domain/sample.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { createImageLoader, IMAGE_FAILURE_FLAGS, ImageHealth } from "../../scoring/image-source.js";
import { createOnnxScorer } from "../../scoring/onnx-scorer.js";
import type { SampleScore } from "../../scoring/scoring-types.js";
import { packageRoot } from "../../util/package-root.js";
import { refuseOutputOverInput } from "../../util/safe-paths.js";
import { parseIntegerFlag, parseShareFlag, usageError } from "../cli-errors.js";
import { addImageOptions, checkImageBase, parseHostList } from "../image-flags.js";

interface ScoreFlags {
  in: string;
  model?: string;
  out: string;
  batch: string;
  workers: string;
  threads: string;
  ep: string;
  cudaFallback?: boolean;
  images: boolean;
  imageBase?: string;
  badImage: string;
  rejects?: string;
  progress: boolean;
  missingId: string;
  maxRejectShare?: string;
  imageSource?: string;
  allowImageHosts?: string;
  allowPrivateImageHosts?: boolean;
  allowImagesOutsideBase?: boolean;
  maxMissingImages?: string;
}

export function registerScoreCommand(program: Command): void {
  const command = program
    .command("score")
    .description("score samples with an ONNX model: 14 capability scores and styles, one forward pass each")
    .requiredOption(
      "--in <file>",
      "samples: .jsonl (one per line), .json (an array; LLaVA or messages/images form) or .parquet (one per row)",
    )
    .requiredOption("--out <file>", "scored pool: .jsonl or .parquet (interchange format + model, flags)")
    .option("--model <dir>", "model folder (manifest.json + ONNX); default: the bundled mmssr-lite")
    .option("--batch <n>", "samples per inference batch", "256")
    .option("--workers <n>", "inference worker threads", "1")
    .option("--threads <n>", "ONNX Runtime intra-op threads per worker", "1")
    .option("--ep <provider>", "execution provider: cpu or cuda", "cpu")
    .option("--cuda-fallback", "if CUDA cannot load, run on CPU instead of failing");
  addImageOptions(command, {
    noImages: "do not load images: text-only scoring (flag no-image)",
    imageBase: "relative image paths resolve against this folder (default: the input file's folder)",
    outsideBase: "read local image paths that resolve outside --image-base too (trusted inputs only)",
    allowHosts:
      'fetch http(s) images from these hosts: comma list of names, "*.example.com" or "*" (default: no URL is fetched)',
    allowPrivate: "fetch images from loopback, link-local and private addresses too (default: refused)",
    badImage: "a sample whose image cannot be used: text-only (scored, flagged) or reject",
    maxMissing:
      "fail (exit 2, after writing the output) when more than this share (0..1) of the samples naming an image could not use it",
  })
    .option("--rejects <file>", "where rejected records go (default <out>.rejected.jsonl)")
    .option(
      "--missing-id <policy>",
      "a record without id: content-hash (id = sha256 of its content) or reject",
      "content-hash",
    )
    .option("--image-source <name>", "image_source for records that name none (default: unknown)")
    .option(
      "--max-reject-share <s>",
      "fail (exit 2) when more than this share (0..1) of the records is rejected (default: fail only when all are)",
    )
    .option("--no-progress", "no progress bar")
    .action(async (flags: ScoreFlags) => {
      await runScore(flags);
    });
}

interface ProgressFile {
  path: string;
  doneIds: Set<string>;
}

/** Ids already scored by an earlier run of the same command; a torn last line is cut off. */
async function resumeProgress(path: string): Promise<ProgressFile> {
  const doneIds = new Set<string>();
  if (!existsSync(path)) return { path, doneIds };
  const text = await readFile(path, "utf8");
  let goodEnd = 0;
  let at = 0;
  while (at < text.length) {
    const nl = text.indexOf("\n", at);
    if (nl < 0) break; // a last line without newline: the previous run died while writing it
    const line = text.slice(at, nl);
    try {
      const id = (JSON.parse(line) as { id?: unknown }).id;
      if (typeof id === "string") doneIds.add(id);
    } catch {
      break;
    }
    goodEnd = Buffer.byteLength(text.slice(0, nl + 1), "utf8");
    at = nl + 1;
  }
  if (goodEnd < Buffer.byteLength(text, "utf8")) await truncate(path, goodEnd);
  return { path, doneIds };
}

function scoredRow(sample: Sample, score: SampleScore, modelId: string): string {
  const scores: Record<string, number | null> = {};
  CAPABILITY_IDS.forEach((id, c) => {
    const v = score.scores[c];
    scores[id] = Number.isNaN(v) ? null : Math.round(v * 1e4) / 1e4;
  });
  return `${JSON.stringify({ id: sample.id, image_source: sample.image_source, styles: score.styles, scores, model: modelId, flags: score.flags })}\n`;
}

export async function runScore(flags: ScoreFlags): Promise<void> {
  const batch = parseIntegerFlag("--batch", flags.batch, 1);
  const workers = parseIntegerFlag("--workers", flags.workers, 1);
  const threads = parseIntegerFlag("--threads", flags.threads, 1);
  if (flags.ep !== "cpu" && flags.ep !== "cuda")
    throw usageError(`--ep: expected cpu or cuda, got ${JSON.stringify(flags.ep)}`);
  if (flags.badImage !== "text-only" && flags.badImage !== "reject")
    throw usageError(`--bad-image: expected text-only or reject, got ${JSON.stringify(flags.badImage)}`);
  if (flags.missingId !== "content-hash" && flags.missingId !== "reject")
    throw usageError(`--missing-id: expected content-hash or reject, got ${JSON.stringify(flags.missingId)}`);
  const maxRejectShare = parseShareFlag("--max-reject-share", flags.maxRejectShare);
  const maxMissingImages = parseShareFlag("--max-missing-images", flags.maxMissingImages);
  const allowHosts = parseHostList(flags.allowImageHosts);
  sampleFormatOf(flags.in);
  // the output, its resume file and the rejects file are all written: none may be the input
  refuseOutputOverInput(
    [
      ["--out", flags.out],
      ["--out (its resume file)", `${flags.out}.partial.jsonl`],
      ["--rejects", flags.rejects ?? `${flags.out}.rejected.jsonl`],
    ],
    [["--in", flags.in]],
  );
  const outExt = extname(flags.out).toLowerCase();
  if (outExt !== ".jsonl" && outExt !== ".parquet")
    throw usageError(`--out: unknown extension ${JSON.stringify(outExt)}; use .jsonl or .parquet`);

  if (flags.imageBase !== undefined) await checkImageBase(flags.imageBase);
  const imageBase = resolve(flags.imageBase ?? dirname(resolve(flags.in)));

  const total = await countSampleRecords(flags.in);
  const imageLoader = flags.images
    ? createImageLoader({
        baseDir: imageBase,
        allowLocalOutsideBase: flags.allowImagesOutsideBase === true,
        allowHosts,
        allowPrivateAddresses: flags.allowPrivateImageHosts === true,
      })
    : undefined;
  const scorer = await createOnnxScorer({
    modelDir: flags.model ?? join(packageRoot(), "models", "mmssr-lite"),
    workers,
    intraOpThreads: threads,
    executionProvider: flags.ep,
    onCudaUnavailable: flags.cudaFallback ? "fallback-cpu" : "fail",
    imageLoader,
    batchSize: batch,
    logger: (m) => process.stderr.write(`mmssr score: ${m}\n`),
  });

  // Output is appended as it is produced, so a killed run resumes where it stopped.
  const progress = await resumeProgress(outExt === ".jsonl" ? flags.out : `${flags.out}.partial.jsonl`);
  const rejectsPath = flags.rejects ?? `${flags.out}.rejected.jsonl`;
  let out: FileHandle | undefined;
  let rejects: FileHandle | undefined;
  const counts = { scored: 0, resumed: 0, rejected: 0 };
  const flagCounts = new Map<string, number>();
  // a run that scores most samples text-only because their images are missing must say so
  const imageHealth = new ImageHealth();
  const warnImages = (final: boolean): void => {
    if (!imageHealth.warningDue(final)) return;
    if (bar !== undefined && process.stderr.isTTY) process.stderr.write("\n");
    process.stderr.write(imageHealth.warning("mmssr score", imageBase));
  };
  const bar = flags.progress
    ? new SingleBar({
        format: "scoring [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted}",
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 5000,
        etaBuffer: 2000,
      })
    : undefined;
  const t0 = performance.now();
  let done = 0;
  bar?.start(total, 0, { rate: "0" });
  const tick = (k: number): void => {
    done += k;
    bar?.update(done, { rate: (done / Math.max(1e-3, (performance.now() - t0) / 1000)).toFixed(0) });
  };
  const reject = async (where: string, reason: string, record: unknown): Promise<void> => {
    rejects ??= await open(rejectsPath, "a");
    await rejects.appendFile(`${JSON.stringify({ where, reason, record })}\n`);
    counts.rejected++;
  };

  try {
    out = await open(progress.path, "a");
    const seenThisRun = new Set<string>();
    let pending: { sample: Sample; where: string }[] = [];
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const batchItems = pending;
      pending = [];
      const results = await scorer.score(batchItems.map((p) => p.sample));
      let text = "";
      for (let k = 0; k < batchItems.length; k++) {
        const r = results[k];
        for (const f of r.flags) flagCounts.set(f, (flagCounts.get(f) ?? 0) + 1);
        imageHealth.record(r.flags);
        const failed = r.flags.find((f) => IMAGE_FAILURE_FLAGS.has(f));
        if (failed && flags.badImage === "reject") {
          await reject(batchItems[k].where, `image unusable (${failed})`, batchItems[k].sample);
          continue;
        }
        text += scoredRow(batchItems[k].sample, r, scorer.id);
        counts.scored++;
      }
      await out?.appendFile(text);
      tick(batchItems.length);
      warnImages(false);
    };
    for await (const rec of readSampleRecords(flags.in)) {
      if ("error" in rec) {
        await reject(rec.where, rec.error, null);
        tick(1);
        continue;
      }
      const raw =
        flags.imageSource && isRecord(rec.value) && rec.value.image_source == null
          ? { ...rec.value, image_source: flags.imageSource }
          : rec.value;
      const v = validateSample(raw, { missingId: flags.missingId === "reject" ? "error" : "content-hash" });
      if (!v.ok) {
        await reject(rec.where, formatSampleErrors(v.errors), rec.value);
        tick(1);
        continue;
      }
      if (progress.doneIds.has(v.sample.id)) {
        counts.resumed++;
        tick(1);
        continue;
      }
      if (seenThisRun.has(v.sample.id)) {
        await reject(
          rec.where,
          `duplicate id ${JSON.stringify(v.sample.id)}: an earlier record of this input has it`,
          rec.value,
        );
        tick(1);
        continue;
      }
      seenThisRun.add(v.sample.id);
      pending.push({ sample: v.sample, where: rec.where });
      if (pending.length >= batch * workers * 2) await flush();
    }
    await flush();
    await out.sync();
    warnImages(true);
  } finally {
    bar?.stop();
    await out?.close();
    await rejects?.close();
    await scorer.close();
    await imageLoader?.close();
  }

  if (outExt === ".parquet") {
    const pool = await readScoredPoolJsonl(progress.path);
    await writeScoredPoolParquet(flags.out, pool);
    await rm(progress.path, { force: true });
  }
  const secs = (performance.now() - t0) / 1000;
  const flagText = [...flagCounts].map(([f, c]) => `${f} ${c}`).join(", ") || "none";
  process.stdout.write(
    `scored ${counts.scored} samples with ${scorer.id} on ${scorer.provider} in ${secs.toFixed(1)} s ` +
      `(${(counts.scored / Math.max(secs, 1e-3)).toFixed(0)}/s); already in the output: ${counts.resumed}; ` +
      `rejected: ${counts.rejected}${counts.rejected > 0 ? ` (see ${rejectsPath})` : ""}\nflags: ${flagText}\n` +
      `${imageHealth.summary()}\n-> ${flags.out}\n`,
  );
  // A run that made nothing of a non-empty input, or rejected more than the pipeline allows,
  // must not look like success to the next step.
  const read = counts.scored + counts.resumed + counts.rejected;
  if (read > 0 && counts.scored + counts.resumed === 0)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `all ${read} records of ${flags.in} were rejected (reasons in ${rejectsPath}): nothing was scored`,
    );
  if (maxRejectShare !== undefined && counts.rejected / Math.max(read, 1) > maxRejectShare)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${counts.rejected} of ${read} records of ${flags.in} were rejected (${((100 * counts.rejected) / read).toFixed(1)}%), more than --max-reject-share ${maxRejectShare} (reasons in ${rejectsPath})`,
    );
  if (maxMissingImages !== undefined && imageHealth.exceeds(maxMissingImages))
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${imageHealth.failed} of ${imageHealth.named} samples naming an image (${(100 * imageHealth.share).toFixed(1)}%) could not use it (${imageHealth.breakdown()}), more than --max-missing-images ${maxMissingImages}; check --image-base (relative paths resolve against ${imageBase})`,
    );
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
