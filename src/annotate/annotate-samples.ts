/**
 * `mmssr annotate`'s engine: labels validated samples with a teacher behind a chat-completions
 * server, in one of two modes (released-prompts.ts, rubric-prompt.ts), and hands each sample's
 * outcome to a sink as soon as it is complete.
 *
 * - Concurrency: at most `concurrency` HTTP requests in flight over all samples (one p-limit),
 *   and only as many samples open at once as keep that many requests busy (a released sample
 *   issues 15 requests, a rubric sample one), so a killed run loses little finished work.
 * - Image: resolved once per sample (image-part.ts). A sample that names an image that cannot
 *   be used is labelled without it and says so (`annotation.image`), or with `badImage:
 *   "reject"` not labelled at all (no request is sent).
 * - Outcome: "labelled" when at least one capability score came back (the others are null, each
 *   with its reason in `annotation.missing`); "failed" when none did, with the reason. A sample
 *   whose requests were cut by the run stopping yields nothing (it is asked again next run).
 * - An MmssrError from the client (HTTP 401/403/404: every later request would fail alike) or
 *   any error of the sink stops the run: requests in flight are aborted (their samples yield
 *   nothing), nothing more is started, samples that completed are still handed over, and the
 *   first error is rethrown.
 */
import type { LimitFunction } from "p-limit";
import pLimit from "p-limit";
import type { Sample } from "../domain/sample.js";
import { CAPABILITY_IDS, type CapabilityId, type StyleName } from "../domain/taxonomy.js";
import type { ScoreFlag } from "../scoring/scoring-types.js";
import { type ChatCompleter, type ChatReply, type ChatRequestBody, ChatRequestError } from "./chat-client.js";
import type { ImagePart, ImagePartResolver } from "./image-part.js";
import {
  parseReleasedScore,
  parseReleasedStyles,
  type ReleasedModels,
  releasedRequests,
} from "./released-prompts.js";
import { parseRubricAnswer, rubricRequest, rubricRetryRequest } from "./rubric-prompt.js";

export type AnnotateMode = "released" | "rubric";

export type AnnotateConfig =
  | { mode: "released"; models: ReleasedModels }
  | {
      mode: "rubric";
      model: string;
      /** send response_format json_schema */
      jsonSchema: boolean;
      /** times a bad answer is asked again */
      answerRetries: number;
    };

export interface AnnotateContext {
  config: AnnotateConfig;
  client: ChatCompleter;
  /** HTTP requests in flight at most */
  concurrency: number;
  /** undefined: no image is sent (--no-images) */
  images: ImagePartResolver | undefined;
  /** a sample whose image cannot be used: labelled without it, or not labelled */
  badImage: "text-only" | "reject";
  /** aborted by the engine on a fatal error; the client's requests should listen to its signal */
  controller?: AbortController;
}

/** What the sample's image came to. */
export type ImageNote = { sent: true; origin: string } | { sent: false; flag: ScoreFlag; reason: string };

/** `annotation` of an output line. */
export interface Annotation {
  mode: AnnotateMode;
  /** released: {scorer, styler}; rubric: {model} */
  models: Record<string, string>;
  image: ImageNote;
  /** capability id or "styles" -> why it is missing */
  missing: Record<string, string>;
  /** logical requests and HTTP attempts spent on the sample */
  requests: number;
  attempts: number;
  usage: { prompt_tokens: number; completion_tokens: number };
  /** rubric: answers asked for (1 + bad answers asked again) */
  answer_tries?: number;
}

export type SampleOutcome =
  | {
      kind: "labelled";
      sample: Sample;
      where: string;
      /** every capability id; null = missing */
      scores: Record<CapabilityId, number | null>;
      styles: StyleName[];
      annotation: Annotation;
    }
  | {
      kind: "failed";
      sample: Sample;
      where: string;
      reason: string;
      /** true when the sample was not asked because of its image (--bad-image reject) */
      imageRejected: boolean;
      annotation: Annotation;
    };

export interface AnnotateItem {
  sample: Sample;
  /** file:line of the record, for the failed file */
  where: string;
}

/** The `teacher` of the output lines: `released:<model>` (`<scorer>+<styler>` when they differ) or `rubric:<model>`. */
export function teacherName(config: AnnotateConfig): string {
  if (config.mode === "rubric") return `rubric:${config.model}`;
  const { scorer, styler } = config.models;
  return scorer === styler ? `released:${scorer}` : `released:${scorer}+${styler}`;
}

/** Requests per sample (for the number of samples kept open). */
export function requestsPerSample(config: AnnotateConfig): number {
  return config.mode === "released" ? CAPABILITY_IDS.length + 1 : 1;
}

/** The first request bodies of a sample, exactly as they would be sent (--dry-run). */
export function requestBodies(
  sample: Sample,
  image: ImagePart | undefined,
  config: AnnotateConfig,
): ChatRequestBody[] {
  if (config.mode === "released") return releasedRequests(sample, image, config.models).map((r) => r.body);
  return [rubricRequest(sample, image, { model: config.model, jsonSchema: config.jsonSchema })];
}

class Aborted extends Error {}

interface Tally {
  requests: number;
  attempts: number;
  prompt: number;
  completion: number;
}

/** The requests of one run: the shared limiter, and whether a fatal error stopped it. */
interface RunState {
  limit: LimitFunction;
  stopped: boolean;
}

/** One request through the limiter: the reply, or the request's failure (fatal errors thrown). */
async function ask(
  ctx: AnnotateContext,
  run: RunState,
  body: ChatRequestBody,
  tally: Tally,
): Promise<{ reply: ChatReply } | { error: string }> {
  tally.requests++;
  try {
    const reply = await run.limit(() => {
      if (run.stopped) throw new Aborted();
      return ctx.client.complete(body);
    });
    tally.attempts += reply.attempts;
    tally.prompt += reply.usage.promptTokens;
    tally.completion += reply.usage.completionTokens;
    return { reply };
  } catch (err) {
    if (err instanceof ChatRequestError) {
      tally.attempts += err.attempts;
      if (err.kind === "aborted") throw new Aborted();
      return { error: `request failed: ${err.message}` };
    }
    throw err;
  }
}

function modelsOf(config: AnnotateConfig): Record<string, string> {
  return config.mode === "released" ? { ...config.models } : { model: config.model };
}

/** Labels one sample (rules in the header). Rejects only on a fatal error or when aborted. */
async function annotateOne(item: AnnotateItem, ctx: AnnotateContext, run: RunState): Promise<SampleOutcome> {
  const { sample, where } = item;
  const { config } = ctx;
  let image: ImagePart | undefined;
  let imageNote: ImageNote;
  if (ctx.images === undefined) imageNote = { sent: false, flag: "no-image", reason: "--no-images" };
  else {
    const r = await ctx.images.resolve(sample);
    if (r.ok) {
      image = r.part;
      imageNote = { sent: true, origin: r.origin };
    } else imageNote = { sent: false, flag: r.flag, reason: r.reason };
  }
  const tally: Tally = { requests: 0, attempts: 0, prompt: 0, completion: 0 };
  const annotation = (missing: Record<string, string>, extra: Partial<Annotation> = {}): Annotation => ({
    mode: config.mode,
    models: modelsOf(config),
    image: imageNote,
    missing,
    requests: tally.requests,
    attempts: tally.attempts,
    usage: { prompt_tokens: tally.prompt, completion_tokens: tally.completion },
    ...extra,
  });
  if (!imageNote.sent && imageNote.flag !== "no-image" && ctx.badImage === "reject")
    return {
      kind: "failed",
      sample,
      where,
      reason: `image unusable (${imageNote.flag}): ${imageNote.reason}`,
      imageRejected: true,
      annotation: annotation({}),
    };

  const scores = Object.fromEntries(CAPABILITY_IDS.map((id) => [id, null])) as Record<
    CapabilityId,
    number | null
  >;
  const missing: Record<string, string> = {};
  let styles: StyleName[] = [];
  let answerTries: number | undefined;

  if (config.mode === "released") {
    const requests = releasedRequests(sample, image, config.models);
    const settled = await Promise.allSettled(requests.map((r) => ask(ctx, run, r.body, tally)));
    const thrown = settled.find((s) => s.status === "rejected");
    if (thrown !== undefined) throw (thrown as PromiseRejectedResult).reason;
    requests.forEach((req, k) => {
      const got = (settled[k] as PromiseFulfilledResult<Awaited<ReturnType<typeof ask>>>).value;
      const key = req.kind === "capability" ? req.capability : "styles";
      if ("error" in got) {
        missing[key] = got.error;
        return;
      }
      if (req.kind === "capability") {
        const parsed = parseReleasedScore(got.reply.content);
        if ("score" in parsed) scores[req.capability] = parsed.score;
        else missing[key] = parsed.missing;
      } else {
        const parsed = parseReleasedStyles(got.reply.content);
        styles = parsed.styles;
        if (parsed.note !== undefined) missing.styles = parsed.note;
      }
    });
  } else {
    let body = rubricRequest(sample, image, { model: config.model, jsonSchema: config.jsonSchema });
    let problem = "";
    answerTries = 0;
    for (let tryNo = 0; tryNo <= config.answerRetries; tryNo++) {
      answerTries++;
      const got = await ask(ctx, run, body, tally);
      if ("error" in got) {
        problem = got.error;
        break; // transport retries are the client's; a failed request is not asked again here
      }
      const parsed = parseRubricAnswer(got.reply.content);
      if (parsed.ok) {
        problem = "";
        for (const id of CAPABILITY_IDS) scores[id] = parsed.value.scores[id];
        styles = parsed.value.styles;
        break;
      }
      problem = `invalid answer: ${parsed.problem}`;
      body = rubricRetryRequest(body, got.reply.content, parsed.problem);
    }
    if (problem !== "") {
      const why =
        answerTries > 1 && problem.startsWith("invalid")
          ? `${problem} (after ${answerTries} answers)`
          : problem;
      for (const id of CAPABILITY_IDS) missing[id] = why;
      missing.styles = why;
    }
  }

  const extra = answerTries === undefined ? {} : { answer_tries: answerTries };
  if (CAPABILITY_IDS.every((id) => scores[id] === null)) {
    const reasons = [...new Set(CAPABILITY_IDS.map((id) => missing[id]))];
    return {
      kind: "failed",
      sample,
      where,
      reason: `no capability score: ${reasons.slice(0, 3).join("; ")}${reasons.length > 3 ? `; (${reasons.length - 3} more reasons)` : ""}`,
      imageRejected: false,
      annotation: annotation(missing, extra),
    };
  }
  return { kind: "labelled", sample, where, scores, styles, annotation: annotation(missing, extra) };
}

/**
 * Labels every item, handing each outcome to `sink` when the sample is complete (in completion
 * order, one call at a time per outcome; the sink serializes its writes). Rules in the header.
 */
export async function annotateSamples(
  items: AsyncIterable<AnnotateItem>,
  ctx: AnnotateContext,
  sink: (outcome: SampleOutcome) => Promise<void>,
): Promise<void> {
  const run: RunState = { limit: pLimit(ctx.concurrency), stopped: false };
  const open = Math.ceil(ctx.concurrency / requestsPerSample(ctx.config)) + 1;
  const inFlight = new Set<Promise<void>>();
  let fatal: { error: unknown } | undefined;
  const stop = (error: unknown) => {
    if (fatal !== undefined) return;
    fatal = { error };
    run.stopped = true; // queued requests end at once when they start
    ctx.controller?.abort(); // requests in flight end now
  };
  for await (const item of items) {
    if (fatal !== undefined) break;
    const task: Promise<void> = annotateOne(item, ctx, run)
      .then((outcome) => sink(outcome))
      .catch((err: unknown) => {
        if (err instanceof Aborted) return;
        stop(err);
      })
      .finally(() => inFlight.delete(task));
    inFlight.add(task);
    while (inFlight.size >= open) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (fatal !== undefined) throw fatal.error;
}
