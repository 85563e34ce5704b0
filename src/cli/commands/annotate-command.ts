/**
 * `mmssr annotate`: labels samples with a teacher served behind an OpenAI-compatible
 * `/v1/chat/completions` endpoint and writes labelled JSONL for `mmssr fit --labels`.
 *
 * Order of work: every flag is checked; the whole input is validated first (a bad record or a
 * repeated id is an error naming file:line, exit 2, before any request is sent); the output's
 * existing ids are read (resume); then the samples not yet labelled are sent, appended to --out
 * line by line as each completes; samples that got no score go to the failed file. The run
 * exits non-zero when a non-empty to-do list gave no labelled sample.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { readSampleRecords, sampleFormatOf } from "../../../connectors/files/sample-reader.js";
import {
  type AnnotateConfig,
  type AnnotateItem,
  annotateSamples,
  requestBodies,
  type SampleOutcome,
  teacherName,
} from "../../annotate/annotate-samples.js";
import { ChatClient, chatCompletionsUrl } from "../../annotate/chat-client.js";
import { createImagePartResolver, type ImagePartResolver } from "../../annotate/image-part.js";
import { LabelWriter, readResumeState } from "../../annotate/label-writer.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { formatSampleErrors, validateSample } from "../../domain/sample.js";
import { CAPABILITY_IDS } from "../../domain/taxonomy.js";
import { ImageHealth } from "../../scoring/image-source.js";
import { canonicalPath, refuseOutputOverInput } from "../../util/safe-paths.js";
import { parseIntegerFlag, parseShareFlag, usageError } from "../cli-errors.js";
import { addImageOptions, checkImageBase, parseHostList } from "../image-flags.js";

interface AnnotateFlags {
  in: string;
  out?: string;
  endpoint: string;
  model?: string;
  scorerModel?: string;
  stylerModel?: string;
  apiKeyEnv?: string;
  mode: string;
  concurrency: string;
  timeoutMs: string;
  retries: string;
  backoffMs: string;
  answerRetries: string;
  jsonSchema: boolean;
  limit?: string;
  dryRun?: boolean;
  failed?: string;
  missingId: string;
  images: boolean;
  imageBase?: string;
  allowImagesOutsideBase?: boolean;
  allowImageHosts?: string;
  allowPrivateImageHosts?: boolean;
  badImage: string;
  maxMissingImages?: string;
  progress: boolean;
}

const MAX_REPORTED = 20;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function registerAnnotateCommand(program: Command): void {
  const command = program
    .command("annotate")
    .description(
      "label samples with a teacher behind an OpenAI-compatible /v1/chat/completions server (the released mmSSR scorer/styler, or a general VLM with our rubric), writing labelled JSONL for `mmssr fit --labels`",
    )
    .requiredOption(
      "--in <file>",
      "samples: .jsonl, .json (an array; LLaVA or messages/images form) or .parquet",
    )
    .option(
      "--out <file>",
      "labelled samples (.jsonl), appended to and resumed from (required unless --dry-run)",
    )
    .requiredOption("--endpoint <url>", "the server's OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    .option("--model <name>", "model name on the server (released mode: scorer and styler both)")
    .option("--scorer-model <name>", "released mode: the scorer's model name (default --model)")
    .option("--styler-model <name>", "released mode: the styler's model name (default --model)")
    .option(
      "--api-key-env <VAR>",
      "name of the environment variable that holds the API key (sent as a Bearer token; never give the key itself)",
    )
    .option(
      "--mode <mode>",
      "released (the released scorer/styler prompts: 15 requests per sample) or rubric (one JSON answer per sample from a general VLM)",
      "released",
    )
    .option("--concurrency <n>", "HTTP requests in flight at most", "8")
    .option("--timeout-ms <ms>", "time limit of one HTTP attempt", "120000")
    .option("--retries <n>", "retries of a request after 429, 5xx, a timeout or a dropped connection", "5")
    .option(
      "--backoff-ms <ms>",
      "first wait before a retry, doubled each time (a Retry-After header can lengthen it)",
      "1000",
    )
    .option("--answer-retries <n>", "rubric mode: times an answer that fails validation is asked again", "2")
    .option(
      "--no-json-schema",
      "rubric mode: do not send response_format json_schema (for servers that reject it)",
    )
    .option("--limit <n>", "label at most this many samples in this run (of those not yet in --out)")
    .option(
      "--dry-run",
      "print the exact request bodies (JSON, one per line) of the first sample (or --limit samples) and send nothing",
    )
    .option(
      "--failed <file>",
      "where samples that got no score are listed with the reason (default <out>.failed.jsonl)",
    )
    .option(
      "--missing-id <policy>",
      "a record without id: content-hash (id = sha256 of its content) or reject",
      "content-hash",
    );
  addImageOptions(command, {
    noImages: "send no image: text-only requests",
    imageBase: "relative image paths resolve against this folder (default: the input file's folder)",
    outsideBase: "read local image paths that resolve outside --image-base too (trusted inputs only)",
    allowHosts:
      'pass http(s) image URLs of these hosts on to the server: comma list of names, "*.example.com" or "*" (default: none)',
    allowPrivate: "pass on image URLs whose host is a loopback, link-local or private address too",
    badImage:
      "a sample whose image cannot be used: text-only (labelled without it, noted) or reject (not labelled, listed in the failed file)",
    maxMissing:
      "fail (exit 2, after writing the output) when more than this share (0..1) of the samples naming an image could not use it",
  })
    .option("--no-progress", "no progress bar")
    .action(async (flags: AnnotateFlags) => {
      await runAnnotate(flags);
    });
}

function modeConfig(flags: AnnotateFlags): AnnotateConfig {
  if (flags.mode === "released") {
    const scorer = flags.scorerModel ?? flags.model;
    const styler = flags.stylerModel ?? flags.model;
    if (scorer === undefined || styler === undefined)
      throw usageError("--model is required (or both --scorer-model and --styler-model)");
    return { mode: "released", models: { scorer, styler } };
  }
  if (flags.mode === "rubric") {
    if (flags.scorerModel !== undefined || flags.stylerModel !== undefined)
      throw usageError("--scorer-model / --styler-model: only in --mode released; use --model");
    if (flags.model === undefined) throw usageError("--model is required");
    return {
      mode: "rubric",
      model: flags.model,
      jsonSchema: flags.jsonSchema,
      answerRetries: parseIntegerFlag("--answer-retries", flags.answerRetries, 0),
    };
  }
  throw usageError(`--mode: expected released or rubric, got ${JSON.stringify(flags.mode)}`);
}

function apiKeyOf(flags: AnnotateFlags): string | undefined {
  const name = flags.apiKeyEnv;
  if (name === undefined) return undefined;
  if (!ENV_NAME_RE.test(name))
    throw usageError(
      `--api-key-env: expected the NAME of an environment variable (letters, digits, _), got ${JSON.stringify(name.length > 12 ? `${name.slice(0, 4)}...` : name)}; the key itself is never given as a flag`,
    );
  const value = process.env[name];
  if (value === undefined || value.trim() === "")
    throw usageError(
      `--api-key-env: the environment variable ${name} is ${value === undefined ? "not set" : "empty"}; export it with the API key`,
    );
  return value.trim();
}

interface InputPlan {
  /** ids of the input's valid records, in order */
  ids: string[];
  /** some sample names a relative local image path */
  relativeImages: boolean;
}

function validateOptions(flags: AnnotateFlags) {
  return { missingId: flags.missingId === "reject" ? ("error" as const) : ("content-hash" as const) };
}

/** Validates the whole input: any bad record or repeated id is a BAD_ROW naming where. */
async function planInput(flags: AnnotateFlags): Promise<InputPlan> {
  const ids: string[] = [];
  const seen = new Map<string, string>();
  const errors: string[] = [];
  let relativeImages = false;
  for await (const rec of readSampleRecords(flags.in)) {
    if (errors.length >= MAX_REPORTED) break;
    if ("error" in rec) {
      errors.push(`${rec.where}: ${rec.error}`);
      continue;
    }
    const v = validateSample(rec.value, validateOptions(flags));
    if (!v.ok) {
      errors.push(`${rec.where}: ${formatSampleErrors(v.errors)}`);
      continue;
    }
    const before = seen.get(v.sample.id);
    if (before !== undefined) {
      errors.push(`${rec.where}: id ${JSON.stringify(v.sample.id)} repeats the id of ${before}`);
      continue;
    }
    seen.set(v.sample.id, rec.where);
    ids.push(v.sample.id);
    const img = v.sample.image;
    if (typeof img === "string" && !/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(img) && !isAbsolute(img))
      relativeImages = true;
  }
  if (errors.length > 0)
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${flags.in}: bad record(s); nothing was sent:\n  ${errors.join("\n  ")}`,
    );
  return { ids, relativeImages };
}

/** The valid samples of the input whose ids are in `wanted`, in input order. */
async function* samplesOf(flags: AnnotateFlags, wanted: ReadonlySet<string>): AsyncGenerator<AnnotateItem> {
  let left = wanted.size;
  for await (const rec of readSampleRecords(flags.in)) {
    if (left === 0) return;
    if ("error" in rec) continue;
    const v = validateSample(rec.value, validateOptions(flags));
    if (v.ok && wanted.has(v.sample.id)) {
      left--;
      yield { sample: v.sample, where: rec.where };
    }
  }
}

/**
 * Writes to stdout and waits until the text is handed to the OS: the binary ends with
 * process.exit, and request bodies with inline images are larger than a pipe's buffer.
 */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve) => {
    process.stdout.write(text, () => resolve());
  });
}

function log(line: string): void {
  process.stderr.write(`mmssr annotate: ${line}\n`);
}

export async function runAnnotate(flags: AnnotateFlags): Promise<void> {
  const config = modeConfig(flags);
  const apiKey = apiKeyOf(flags);
  const concurrency = parseIntegerFlag("--concurrency", flags.concurrency, 1);
  const timeoutMs = parseIntegerFlag("--timeout-ms", flags.timeoutMs, 1);
  const retries = parseIntegerFlag("--retries", flags.retries, 0);
  const backoffMs = parseIntegerFlag("--backoff-ms", flags.backoffMs, 0);
  const limit = flags.limit === undefined ? undefined : parseIntegerFlag("--limit", flags.limit, 1);
  chatCompletionsUrl(flags.endpoint);
  if (flags.badImage !== "text-only" && flags.badImage !== "reject")
    throw usageError(`--bad-image: expected text-only or reject, got ${JSON.stringify(flags.badImage)}`);
  if (flags.missingId !== "content-hash" && flags.missingId !== "reject")
    throw usageError(`--missing-id: expected content-hash or reject, got ${JSON.stringify(flags.missingId)}`);
  const maxMissingImages = parseShareFlag("--max-missing-images", flags.maxMissingImages);
  const allowHosts = parseHostList(flags.allowImageHosts);
  sampleFormatOf(flags.in);
  if (flags.out === undefined && !flags.dryRun) throw usageError("--out is required (unless --dry-run)");
  const out = flags.out;
  if (out !== undefined && !out.toLowerCase().endsWith(".jsonl"))
    throw usageError("--out: labelled samples are written as .jsonl");
  const failedPath = flags.failed ?? (out === undefined ? undefined : `${out}.failed.jsonl`);
  refuseOutputOverInput(
    [
      ["--out", out],
      ["--failed", failedPath],
    ],
    [["--in", flags.in]],
  );
  if (out !== undefined && failedPath !== undefined && canonicalPath(out) === canonicalPath(failedPath))
    throw usageError("--failed: must not be the --out file");
  if (flags.imageBase !== undefined) await checkImageBase(flags.imageBase);
  const imageBase = resolve(flags.imageBase ?? dirname(resolve(flags.in)));
  const images: ImagePartResolver | undefined = flags.images
    ? createImagePartResolver({
        baseDir: imageBase,
        allowLocalOutsideBase: flags.allowImagesOutsideBase === true,
        allowHosts,
        allowPrivateAddresses: flags.allowPrivateImageHosts === true,
      })
    : undefined;

  try {
    const plan = await planInput(flags);
    if (flags.dryRun) {
      await dryRun(flags, plan, config, images, limit ?? 1);
      return;
    }
    await annotateRun(flags, plan, config, images, {
      out: out as string,
      failedPath: failedPath as string,
      apiKey,
      concurrency,
      timeoutMs,
      retries,
      backoffMs,
      limit,
      imageBase,
      maxMissingImages,
    });
  } finally {
    await images?.close();
  }
}

async function dryRun(
  flags: AnnotateFlags,
  plan: InputPlan,
  config: AnnotateConfig,
  images: ImagePartResolver | undefined,
  count: number,
): Promise<void> {
  const wanted = new Set(plan.ids.slice(0, count));
  let bodies = 0;
  for await (const { sample } of samplesOf(flags, wanted)) {
    const r = images === undefined ? undefined : await images.resolve(sample);
    if (r !== undefined && !r.ok && r.flag !== "no-image")
      log(`${sample.id}: image not sent (${r.flag}): ${r.reason}`);
    if (r !== undefined && !r.ok && r.flag !== "no-image" && flags.badImage === "reject") {
      log(`${sample.id}: --bad-image reject: no request would be sent`);
      continue;
    }
    for (const body of requestBodies(sample, r?.ok ? r.part : undefined, config)) {
      await writeStdout(`${JSON.stringify(body)}\n`);
      bodies++;
    }
  }
  log(
    `dry run: ${bodies} request bodies for ${wanted.size} sample(s) to ${chatCompletionsUrl(flags.endpoint).href}; nothing was sent`,
  );
}

interface RunSettings {
  out: string;
  failedPath: string;
  apiKey: string | undefined;
  concurrency: number;
  timeoutMs: number;
  retries: number;
  backoffMs: number;
  limit: number | undefined;
  imageBase: string;
  maxMissingImages: number | undefined;
}

async function annotateRun(
  flags: AnnotateFlags,
  plan: InputPlan,
  config: AnnotateConfig,
  images: ImagePartResolver | undefined,
  s: RunSettings,
): Promise<void> {
  const teacher = teacherName(config);
  const resume = await readResumeState(s.out, log);
  if (resume.teacher !== undefined && resume.teacher !== teacher)
    throw usageError(
      `--out: ${s.out} holds labels by ${JSON.stringify(resume.teacher)}, this run's teacher is ${JSON.stringify(teacher)}: one labels file per teacher, give another --out`,
    );
  let todo = plan.ids.filter((id) => !resume.doneIds.has(id));
  const already = plan.ids.length - todo.length;
  if (s.limit !== undefined) todo = todo.slice(0, s.limit);
  if (plan.relativeImages && images !== undefined && dirname(resolve(s.out)) !== s.imageBase)
    log(
      `note: image paths are relative to ${s.imageBase}, but fit resolves them against the labels file's folder (${dirname(resolve(s.out))}); write --out there so fit sees the images`,
    );

  const controller = new AbortController();
  const client = new ChatClient({
    endpoint: flags.endpoint,
    apiKey: s.apiKey,
    timeoutMs: s.timeoutMs,
    retries: s.retries,
    backoffMs: s.backoffMs,
    signal: controller.signal,
  });
  const writer = await LabelWriter.open(s.out, s.failedPath, teacher);
  const counts = { labelled: 0, partial: 0, failed: 0, imageRejected: 0, missingScores: 0, missingStyles: 0 };
  const reasons = new Map<string, number>();
  const imageHealth = new ImageHealth();
  const bar = flags.progress
    ? new SingleBar({
        format: "annotating [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted} | {requests} requests",
        stream: process.stderr,
        noTTYOutput: true,
        notTTYSchedule: 5000,
        etaBuffer: 50,
      })
    : undefined;
  const t0 = performance.now();
  let done = 0;
  bar?.start(todo.length, 0, { rate: "0", requests: 0 });
  const sink = async (outcome: SampleOutcome): Promise<void> => {
    await writer.write(outcome);
    const note = outcome.annotation.image;
    if (images !== undefined) imageHealth.record(note.sent ? [] : [note.flag]);
    if (outcome.kind === "labelled") {
      counts.labelled++;
      const missing = CAPABILITY_IDS.filter((id) => outcome.scores[id] === null).length;
      counts.missingScores += missing;
      if (missing > 0) counts.partial++;
      if (outcome.annotation.missing.styles !== undefined) counts.missingStyles++;
    } else {
      counts.failed++;
      if (outcome.imageRejected) counts.imageRejected++;
      const key = outcome.reason.length > 160 ? `${outcome.reason.slice(0, 160)}...` : outcome.reason;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
    done++;
    const secs = Math.max(1e-3, (performance.now() - t0) / 1000);
    bar?.update(done, { rate: (done / secs).toFixed(2), requests: client.stats.requests });
  };
  let failure: unknown;
  try {
    await annotateSamples(
      samplesOf(flags, new Set(todo)),
      {
        config,
        client,
        concurrency: s.concurrency,
        images,
        badImage: flags.badImage as "text-only" | "reject",
        controller,
      },
      sink,
    );
  } catch (err) {
    failure = err;
  } finally {
    bar?.stop();
    await writer.close();
  }
  if (images !== undefined && imageHealth.warningDue(true))
    process.stderr.write(imageHealth.warning("mmssr annotate", s.imageBase));

  const secs = (performance.now() - t0) / 1000;
  const st = client.stats;
  const lines = [
    `annotated ${done} of ${todo.length} samples (${teacher}) in ${secs.toFixed(1)} s: labelled ${counts.labelled}` +
      ` (${counts.partial} with missing scores), no score ${counts.failed}${counts.failed > 0 ? ` (see ${s.failedPath})` : ""};` +
      ` already in the output: ${already}`,
    `requests: ${st.requests} (HTTP attempts ${st.attempts}, retries ${st.attempts - st.requests}, failed ${st.failed}); ` +
      `tokens: prompt ${st.promptTokens}, completion ${st.completionTokens}, total ${st.promptTokens + st.completionTokens}`,
    `missing in labelled samples: ${counts.missingScores} of ${counts.labelled * CAPABILITY_IDS.length} scores, styles of ${counts.missingStyles} sample(s)`,
  ];
  if (images !== undefined) lines.push(imageHealth.summary());
  lines.push(`-> ${s.out}`);
  process.stdout.write(`${lines.join("\n")}\n`);
  if (failure !== undefined) throw failure;

  if (todo.length > 0 && counts.labelled === 0) {
    const top = [...reasons]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([r, n]) => `${n} x ${r}`)
      .join("; ");
    const hint = /ECONNREFUSED/.test(top) ? " (is the server running and --endpoint right?)" : "";
    throw new MmssrError(
      counts.imageRejected === counts.failed ? ERROR_CODES.BAD_ROW : ERROR_CODES.INFERENCE,
      `nothing was labelled: all ${counts.failed} samples sent got no score${hint}; reasons (all in ${s.failedPath}): ${top}`,
    );
  }
  if (s.maxMissingImages !== undefined && imageHealth.exceeds(s.maxMissingImages))
    throw new MmssrError(
      ERROR_CODES.BAD_ROW,
      `${imageHealth.failed} of ${imageHealth.named} samples naming an image (${(100 * imageHealth.share).toFixed(1)}%) could not use it (${imageHealth.breakdown()}), more than --max-missing-images ${s.maxMissingImages}; check --image-base (relative paths resolve against ${s.imageBase})`,
    );
}
