/**
 * The sample: one multi-modal instruction-tuning record, as it arrives on the input topic or in a
 * file, and its validator.
 *
 * Two input forms are accepted and both come out in the LLaVA form (`Sample`):
 *
 * - LLaVA: `{id, image?, image_url?, image_b64?, image_source?, conversations: [{from, value}], ...}`
 * - LLaMA-Factory `messages`/`images` (../shared/data/LLaMA-Factory/data/mllm_demo.json):
 *   `{messages: [{role, content}], images?: [path, ...], ...}`
 *
 * Validation rules (errors reject the sample; warnings are returned alongside an accepted one).
 * Each error names the exact field path in the INPUT (`conversations[3].value`, `messages[0].role`,
 * `images[1]`, `""` for the whole record) and a reason.
 *
 * 1. The record must be a JSON object (not an array, not null).
 * 2. `id`: a non-empty string, or a safe integer number (converted to its decimal string).
 *    Missing/null: error, unless `options.defaultId` is given (used, with a warning) or
 *    `options.missingId === "content-hash"` (id = "sha256:" + 24 hex digits of a hash of the
 *    normalised conversations and image references, with a warning). mllm_demo records have no id.
 * 3. `conversations` or `messages` (exactly one of them): a non-empty array. Each turn is an object;
 *    the speaker is `from` (LLaVA) or `role` (messages form), the text is `value` or `content` and
 *    must be a string (OpenAI-style content arrays are not accepted).
 *    Speakers: "human" | "gpt", with aliases "user" -> "human" and "assistant" -> "gpt" in both forms.
 *    "system" is allowed only as the very first turn; its text moves to the `system` field (a
 *    top-level `system` string is also accepted; giving both is an error).
 * 4. The non-system turns alternate human, gpt, human, gpt, ... starting with human; the first turn
 *    that breaks this is reported (only the first). The last turn must be a gpt answer (a trailing
 *    unanswered question cannot be scored). Empty or blank texts are a warning.
 * 5. Images. `image`: a non-empty string (path or URL), or an array of them (LLaVA-OneVision style).
 *    `images`: an array of non-empty strings (an empty array means no image). If both are given,
 *    `image` must be a string equal to `images[0]`. Normalised: one image -> `image` only; several
 *    -> `image` = the first AND `images` = all of them. `null` for any optional field = absent.
 * 6. `image_url`: an absolute http(s) URL. `image_b64`: inline image bytes in standard base64
 *    (alphabet A-Z a-z 0-9 + /, length a multiple of 4, `=` padding; no whitespace, no `data:`
 *    prefix), decoding to at most `options.maxImageBytes` (default 20 MiB). Checked by size first,
 *    then by one regular expression; the bytes are not decoded.
 * 7. `<image>` placeholders, counted over all turns: with zero or one image the sample may hold at
 *    most one (single-image LLaVA form); with n > 1 images at most n. The turn where the count goes
 *    over is reported. A placeholder in a sample with no image reference at all (image, images,
 *    image_url, image_b64) is an error. An image without any placeholder, or fewer placeholders than
 *    images, is a warning (LLaVA-style trainers prepend the placeholder themselves).
 * 8. `image_source`: optional non-empty string; missing/null -> "unknown" (UNKNOWN_SOURCE).
 * 9. Every other top-level field is carried through unchanged (own enumerable keys, in input order,
 *    after the known fields; `__proto__` is copied as a plain own property).
 *
 * At most MAX_ERRORS errors are listed; the rest are counted in one last error with path "".
 * `validateSample` never throws: an unexpected exception (a hostile Proxy, say) becomes one error.
 */

import { createHash } from "node:crypto";
import { ERROR_CODES, MmssrError } from "./errors.js";
import { UNKNOWN_SOURCE } from "./taxonomy.js";

export const IMAGE_PLACEHOLDER = "<image>";
/** Default limit on the decoded size of `image_b64` (20 MiB). */
export const DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024;
const MAX_ERRORS = 100;

export interface Turn {
  from: "human" | "gpt";
  value: string;
}

/** A validated, normalised sample (LLaVA form). Unknown input fields are kept as they are. */
export interface Sample {
  id: string;
  /** Image path or URL; with several images, the first of `images`. */
  image?: string;
  /** All images, only when there are more than one (`images[0] === image`). */
  images?: string[];
  image_url?: string;
  /** Inline image bytes, standard base64. */
  image_b64?: string;
  /** Always set: UNKNOWN_SOURCE when the input named none. */
  image_source: string;
  /** Text of a leading system turn or of a top-level `system` string. */
  system?: string;
  conversations: Turn[];
  [field: string]: unknown;
}

export interface SampleValidationError {
  /** Field path in the input record: `conversations[3].value`, `images[0]`, `""` for the record. */
  path: string;
  reason: string;
}

export type SampleValidationResult =
  | { ok: true; sample: Sample; warnings: string[] }
  | { ok: false; errors: SampleValidationError[] };

export interface ValidateSampleOptions {
  /** Largest accepted decoded size of `image_b64`, bytes. Default DEFAULT_MAX_IMAGE_BYTES. */
  maxImageBytes?: number;
  /** Id for a record that has none (for example `file.json#3`); a warning says it was used. */
  defaultId?: string;
  /** What to do when the record has no id and no defaultId: reject (default) or hash the content. */
  missingId?: "error" | "content-hash";
}

type Speaker = "human" | "gpt" | "system";
const SPEAKERS: ReadonlyMap<string, Speaker> = new Map<string, Speaker>([
  ["human", "human"],
  ["user", "human"],
  ["gpt", "gpt"],
  ["assistant", "gpt"],
  ["system", "system"],
]);

const KNOWN_FIELDS: ReadonlySet<string> = new Set([
  "id",
  "image",
  "images",
  "image_url",
  "image_b64",
  "image_source",
  "system",
  "conversations",
  "messages",
]);

const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

class Report {
  readonly errors: SampleValidationError[] = [];
  readonly warnings: string[] = [];
  private dropped = 0;

  error(path: string, reason: string): void {
    if (this.errors.length < MAX_ERRORS) this.errors.push({ path, reason });
    else this.dropped++;
  }

  warn(path: string, reason: string): void {
    this.warnings.push(path === "" ? reason : `${path}: ${reason}`);
  }

  finalErrors(): SampleValidationError[] {
    if (this.dropped > 0)
      return [...this.errors, { path: "", reason: `${this.dropped} more errors not listed` }];
    return this.errors;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function own(rec: Record<string, unknown>, key: string): unknown {
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

function absent(v: unknown): boolean {
  return v === undefined || v === null;
}

/** Short description of a value for error messages. */
function show(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") {
    const s = v.length > 40 ? `${v.slice(0, 40)}...` : v;
    return JSON.stringify(s);
  }
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (typeof v === "object") return "an object";
  return `a ${typeof v}`;
}

function setField(out: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty so that a "__proto__" key stays a plain data property.
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}

function countPlaceholders(text: string): number {
  let n = 0;
  let at = text.indexOf(IMAGE_PLACEHOLDER);
  while (at !== -1) {
    n++;
    at = text.indexOf(IMAGE_PLACEHOLDER, at + IMAGE_PLACEHOLDER.length);
  }
  return n;
}

/** Decoded byte length of a base64 string whose length is a multiple of 4. */
function base64DecodedLength(s: string): number {
  let pad = 0;
  if (s.endsWith("==")) pad = 2;
  else if (s.endsWith("=")) pad = 1;
  return (s.length / 4) * 3 - pad;
}

interface ParsedTurn {
  speaker: Speaker;
  text: string;
  /** Path of the turn in the input, e.g. `messages[2]`. */
  path: string;
}

function readId(rec: Record<string, unknown>, options: ValidateSampleOptions, r: Report): string | undefined {
  const id = own(rec, "id");
  if (typeof id === "string") {
    if (id.length === 0) r.error("id", "must not be empty");
    return id;
  }
  if (typeof id === "number") {
    if (Number.isSafeInteger(id)) return String(id);
    r.error("id", `a number id must be a safe integer (send other ids as strings), got ${show(id)}`);
    return undefined;
  }
  if (!absent(id)) {
    r.error("id", `must be a string or an integer, got ${show(id)}`);
    return undefined;
  }
  if (typeof options.defaultId === "string" && options.defaultId.length > 0) {
    r.warn("id", `missing; using ${JSON.stringify(options.defaultId)}`);
    return options.defaultId;
  }
  if (options.missingId === "content-hash") return undefined; // computed once the rest is valid
  r.error("id", "missing (a non-empty string or an integer is required)");
  return undefined;
}

function readTurns(rec: Record<string, unknown>, r: Report): { turns: ParsedTurn[]; valueField: string } {
  const conversations = own(rec, "conversations");
  const messages = own(rec, "messages");
  const llava = !absent(conversations);
  if (llava && !absent(messages)) {
    r.error("messages", "give either conversations or messages, not both");
    return { turns: [], valueField: "value" };
  }
  const name = llava ? "conversations" : "messages";
  const roleField = llava ? "from" : "role";
  const valueField = llava ? "value" : "content";
  const list = llava ? conversations : messages;
  if (absent(list)) {
    r.error(
      "conversations",
      "missing (expected conversations: [{from, value}] or messages: [{role, content}])",
    );
    return { turns: [], valueField };
  }
  if (!Array.isArray(list)) {
    r.error(name, `must be an array of turns, got ${show(list)}`);
    return { turns: [], valueField };
  }
  if (list.length === 0) {
    r.error(name, "must not be empty");
    return { turns: [], valueField };
  }
  const turns: ParsedTurn[] = [];
  let allParsed = true;
  for (let i = 0; i < list.length; i++) {
    const t: unknown = list[i];
    const path = `${name}[${i}]`;
    if (!isRecord(t)) {
      r.error(path, `must be an object {${roleField}, ${valueField}}, got ${show(t)}`);
      allParsed = false;
      continue;
    }
    const who = own(t, roleField);
    const speaker = typeof who === "string" ? SPEAKERS.get(who) : undefined;
    if (speaker === undefined) {
      r.error(
        `${path}.${roleField}`,
        `must be "human" or "gpt" (aliases "user", "assistant"), or "system" first, got ${show(who)}`,
      );
      allParsed = false;
    } else if (speaker === "system" && i !== 0) {
      r.error(`${path}.${roleField}`, "a system turn is allowed only as the first turn");
      allParsed = false;
    }
    const text = own(t, valueField);
    if (typeof text !== "string") {
      r.error(`${path}.${valueField}`, `must be a string, got ${show(text)}`);
      allParsed = false;
    } else if (speaker !== undefined) {
      if (text.trim().length === 0) r.warn(`${path}.${valueField}`, "empty text");
      turns.push({ speaker, text, path });
    }
  }
  if (!allParsed) return { turns: [], valueField };

  const dialog = turns.filter((t) => t.speaker !== "system");
  if (dialog.length === 0) {
    r.error(name, "has no human or gpt turn");
    return { turns: [], valueField };
  }
  for (let k = 0; k < dialog.length; k++) {
    const expected = k % 2 === 0 ? "human" : "gpt";
    if (dialog[k].speaker !== expected) {
      r.error(
        `${dialog[k].path}.${roleField}`,
        `expected "${expected}": turns alternate human, gpt, human, ... starting with human`,
      );
      return { turns: [], valueField };
    }
  }
  const last = dialog[dialog.length - 1];
  if (last.speaker !== "gpt") {
    r.error(
      `${last.path}.${roleField}`,
      "the conversation ends with a human turn; the last turn must be a gpt answer",
    );
    return { turns: [], valueField };
  }
  return { turns, valueField };
}

function readImageList(value: unknown, name: string, r: Report): string[] | undefined {
  if (typeof value === "string" && name === "image") {
    if (value.length === 0) r.error(name, "must not be empty");
    return [value];
  }
  if (!Array.isArray(value)) {
    r.error(name, `must be ${name === "image" ? "a string or " : ""}an array of strings, got ${show(value)}`);
    return undefined;
  }
  const out: string[] = [];
  for (let i = 0; i < value.length; i++) {
    const v: unknown = value[i];
    if (typeof v !== "string" || v.length === 0)
      r.error(`${name}[${i}]`, `must be a non-empty string, got ${show(v)}`);
    else out.push(v);
  }
  return out.length === value.length ? out : undefined;
}

/** image / images -> the list of image references (empty when none). */
function readImages(rec: Record<string, unknown>, r: Report): string[] {
  const image = own(rec, "image");
  const images = own(rec, "images");
  const a = absent(image) ? [] : readImageList(image, "image", r);
  const b = absent(images) ? [] : readImageList(images, "images", r);
  if (a === undefined || b === undefined) return [];
  if (!absent(image) && Array.isArray(image) && image.length === 0)
    r.error("image", "must not be an empty array");
  if (a.length > 0 && b.length > 0) {
    if (typeof image !== "string" || image !== b[0]) {
      r.error("image", "when images is given, image must be a string equal to images[0]");
    }
    return b;
  }
  return a.length > 0 ? a : b;
}

function readImageUrl(rec: Record<string, unknown>, r: Report): string | undefined {
  const url = own(rec, "image_url");
  if (absent(url)) return undefined;
  if (typeof url !== "string") {
    r.error("image_url", `must be a string, got ${show(url)}`);
    return undefined;
  }
  let protocol = "";
  try {
    protocol = new URL(url).protocol;
  } catch {
    r.error("image_url", `not an absolute URL: ${show(url)}`);
    return undefined;
  }
  if (protocol !== "http:" && protocol !== "https:") {
    r.error("image_url", `must be an http or https URL, got scheme ${JSON.stringify(protocol.slice(0, -1))}`);
    return undefined;
  }
  return url;
}

function readImageB64(rec: Record<string, unknown>, maxBytes: number, r: Report): string | undefined {
  const b64 = own(rec, "image_b64");
  if (absent(b64)) return undefined;
  if (typeof b64 !== "string") {
    r.error("image_b64", `must be a base64 string, got ${show(b64)}`);
    return undefined;
  }
  if (b64.length === 0) {
    r.error("image_b64", "must not be empty");
    return undefined;
  }
  if (b64.startsWith("data:")) {
    r.error("image_b64", "holds a data: URL; give only the base64 text after the comma");
    return undefined;
  }
  if (b64.length % 4 !== 0) {
    r.error("image_b64", `not valid base64: length ${b64.length} is not a multiple of 4`);
    return undefined;
  }
  const bytes = base64DecodedLength(b64);
  if (bytes > maxBytes) {
    r.error("image_b64", `decodes to ${bytes} bytes, more than the limit of ${maxBytes}`);
    return undefined;
  }
  if (!BASE64_RE.test(b64)) {
    r.error("image_b64", "not valid base64: characters outside A-Z a-z 0-9 + / or misplaced = padding");
    return undefined;
  }
  return b64;
}

function readOptionalString(rec: Record<string, unknown>, key: string, r: Report): string | undefined {
  const v = own(rec, key);
  if (absent(v)) return undefined;
  if (typeof v !== "string") {
    r.error(key, `must be a string, got ${show(v)}`);
    return undefined;
  }
  return v;
}

function checkPlaceholders(
  turns: ParsedTurn[],
  valueField: string,
  images: string[],
  hasImage: boolean,
  r: Report,
): void {
  const allowed = Math.max(1, images.length);
  let total = 0;
  let firstWith: ParsedTurn | undefined;
  let overReported = false;
  for (const t of turns) {
    const n = countPlaceholders(t.text);
    if (n === 0) continue;
    firstWith ??= t;
    total += n;
    if (total > allowed && !overReported) {
      overReported = true;
      r.error(
        `${t.path}.${valueField}`,
        images.length > 1
          ? `${total} ${IMAGE_PLACEHOLDER} placeholders so far but the sample has only ${images.length} images`
          : `more than one ${IMAGE_PLACEHOLDER} placeholder; the single-image form allows one (list several images in images: [...])`,
      );
    }
  }
  if (firstWith !== undefined && !hasImage) {
    r.error(
      `${firstWith.path}.${valueField}`,
      `${IMAGE_PLACEHOLDER} placeholder but the sample has no image, images, image_url or image_b64`,
    );
  } else if (hasImage && total === 0) {
    r.warn("", `the sample has an image but no ${IMAGE_PLACEHOLDER} placeholder`);
  } else if (images.length > 1 && total < images.length) {
    r.warn("", `${images.length} images but only ${total} ${IMAGE_PLACEHOLDER} placeholders`);
  }
}

function contentId(sample: Omit<Sample, "id">): string {
  const h = createHash("sha256");
  h.update(
    JSON.stringify([
      sample.system ?? null,
      sample.conversations,
      sample.image ?? null,
      sample.images ?? null,
      sample.image_url ?? null,
      sample.image_b64 ?? null,
    ]),
  );
  return `sha256:${h.digest("hex").slice(0, 24)}`;
}

function validate(input: unknown, options: ValidateSampleOptions): SampleValidationResult {
  const r = new Report();
  if (!isRecord(input)) {
    return {
      ok: false,
      errors: [{ path: "", reason: `a sample must be a JSON object, got ${show(input)}` }],
    };
  }
  const maxBytes =
    typeof options.maxImageBytes === "number" && options.maxImageBytes >= 0
      ? options.maxImageBytes
      : DEFAULT_MAX_IMAGE_BYTES;

  let id = readId(input, options, r);
  const { turns, valueField } = readTurns(input, r);
  const images = readImages(input, r);
  const imageUrl = readImageUrl(input, r);
  const imageB64 = readImageB64(input, maxBytes, r);

  let imageSource = UNKNOWN_SOURCE;
  const src = own(input, "image_source");
  if (typeof src === "string" && src.trim().length > 0) imageSource = src;
  else if (typeof src === "string") r.error("image_source", "must not be empty (leave it out for unknown)");
  else if (!absent(src)) r.error("image_source", `must be a string, got ${show(src)}`);

  let system = readOptionalString(input, "system", r);
  const systemTurn = turns.find((t) => t.speaker === "system");
  if (systemTurn !== undefined) {
    if (system !== undefined)
      r.error(systemTurn.path, "a system turn and a top-level system field: give only one");
    system = systemTurn.text;
  }

  if (turns.length > 0) {
    const hasImage = images.length > 0 || imageUrl !== undefined || imageB64 !== undefined;
    checkPlaceholders(turns, valueField, images, hasImage, r);
  }

  if (r.errors.length > 0) return { ok: false, errors: r.finalErrors() };

  const conversations: Turn[] = [];
  for (const t of turns) if (t.speaker !== "system") conversations.push({ from: t.speaker, value: t.text });
  const body: Omit<Sample, "id"> = { image_source: imageSource, conversations };
  if (images.length > 0) body.image = images[0];
  if (images.length > 1) body.images = images;
  if (imageUrl !== undefined) body.image_url = imageUrl;
  if (imageB64 !== undefined) body.image_b64 = imageB64;
  if (system !== undefined) body.system = system;
  if (id === undefined) {
    id = contentId(body);
    r.warn("id", `missing; using the content hash ${id}`);
  }

  const out: Record<string, unknown> = {};
  setField(out, "id", id);
  for (const key of [
    "image",
    "images",
    "image_url",
    "image_b64",
    "image_source",
    "system",
    "conversations",
  ]) {
    if (body[key] !== undefined) setField(out, key, body[key]);
  }
  for (const key of Object.keys(input)) if (!KNOWN_FIELDS.has(key)) setField(out, key, input[key]);
  return { ok: true, sample: out as Sample, warnings: r.warnings };
}

function describeError(err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err);
  } catch {
    return "unprintable exception";
  }
}

/** Validates and normalises one sample (rules above). Never throws. */
export function validateSample(input: unknown, options: ValidateSampleOptions = {}): SampleValidationResult {
  try {
    return validate(input, options ?? {});
  } catch (err) {
    return {
      ok: false,
      errors: [{ path: "", reason: `the validator failed on this input: ${describeError(err)}` }],
    };
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses one raw message or JSONL line (a string, or UTF-8 bytes such as a Kafka message value) and
 * validates it. Invalid JSON or UTF-8 gives one error with path "" and the parser's reason.
 */
export function parseSampleJson(
  text: string | Uint8Array,
  options: ValidateSampleOptions = {},
): SampleValidationResult {
  let parsed: unknown;
  try {
    const s = typeof text === "string" ? text : utf8.decode(text);
    parsed = JSON.parse(s);
  } catch (err) {
    return { ok: false, errors: [{ path: "", reason: `invalid JSON: ${describeError(err)}` }] };
  }
  return validateSample(parsed, options);
}

/** Renders validation errors as `path: reason; ...` (path "" is left out), at most `limit` of them. */
export function formatSampleErrors(errors: readonly SampleValidationError[], limit = 20): string {
  const shown = errors.slice(0, limit).map((e) => (e.path === "" ? e.reason : `${e.path}: ${e.reason}`));
  if (errors.length > limit) shown.push(`(${errors.length - limit} more)`);
  return shown.join("; ");
}

/**
 * The project error for a rejected sample: code INVALID_SAMPLE, not retriable (the same bytes fail
 * again). `context` (a sample id, `file:line`, topic/partition/offset) goes in front of the message.
 */
export function toMmssrError(errors: readonly SampleValidationError[], context?: string): MmssrError {
  const where = context === undefined || context === "" ? "" : ` (${context})`;
  return new MmssrError(ERROR_CODES.INVALID_SAMPLE, `invalid sample${where}: ${formatSampleErrors(errors)}`, {
    retriable: false,
  });
}
