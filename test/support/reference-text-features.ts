/**
 * FROZEN ORACLE: the text featurizer (mmssr-hashed/v1 and v2) and the conversation layout exactly
 * as they were before they were optimized (src/scoring/text-features.ts, conversation-text.ts and
 * src/util/hash32.ts at commit 5ea12b9). Trained ONNX models index their weights by these
 * features, so the fast code must give the same bytes; test/unit/text-features-exact.test.ts
 * compares it against this copy.
 *
 * DO NOT EDIT. Not to fix style, not to follow a change in the fast code: this file is the
 * definition the fast code is measured against. Only self-contained code (no imports of the
 * modules under test), so that changing them cannot change it.
 */
import type { Turn } from "../../src/domain/sample.js";
import type { FeatureSpec } from "../../src/scoring/scoring-types.js";

// ---- src/util/hash32.ts ----

export function refMixBlock(h: number, block: number): number {
  let k = Math.imul(block, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let x = h ^ k;
  x = (x << 13) | (x >>> 19);
  return (Math.imul(x, 5) + 0xe6546b64) | 0;
}

export function refFmix32(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

export function refMurmur3(text: string, seed = 0): number {
  let h = seed >>> 0;
  const n = text.length;
  let i = 0;
  for (; i + 1 < n; i += 2)
    h = refMixBlock(h, (text.charCodeAt(i) & 0xffff) | ((text.charCodeAt(i + 1) & 0xffff) << 16));
  if (i < n) {
    let k = text.charCodeAt(i) & 0xffff;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return refFmix32(h ^ (n * 2));
}

// ---- src/scoring/conversation-text.ts ----

const IMAGE_PLACEHOLDER = "<image>";
const STRIP_SET: ReadonlySet<string> = new Set("Question: ");

export function refStripQuestionChars(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && STRIP_SET.has(s[start])) start++;
  while (end > start && STRIP_SET.has(s[end - 1])) end--;
  return s.slice(start, end);
}

export function refRemoveImagePlaceholders(s: string): string {
  if (!s.includes(IMAGE_PLACEHOLDER)) return s;
  return s.split(`${IMAGE_PLACEHOLDER}\n`).join("").split(IMAGE_PLACEHOLDER).join("");
}

export function refIsHintTurn(raw: string): boolean {
  return raw.startsWith("Hint:") || raw.startsWith(`${IMAGE_PLACEHOLDER}\nHint:`);
}

export function refLayoutTurns(turns: readonly Turn[]): {
  text: string;
  questions: string[];
  answers: string[];
} {
  const lines: string[] = [];
  const questions: string[] = [];
  const answers: string[] = [];
  for (let i = 0; i < turns.length; i += 2) {
    const q = turns[i]?.value ?? "";
    const a = i + 1 < turns.length ? (turns[i + 1]?.value ?? "") : "";
    lines.push(refIsHintTurn(q) ? `${q} Answer: ${a}` : `Question: ${refStripQuestionChars(q)} Answer: ${a}`);
    questions.push(refRemoveImagePlaceholders(q));
    answers.push(refRemoveImagePlaceholders(a));
  }
  return { text: refRemoveImagePlaceholders(lines.join("\n")), questions, answers };
}

// ---- src/scoring/text-features.ts ----

export function refFeatureLayout(spec: FeatureSpec) {
  const q = spec.text.questionDims;
  const a = q + spec.text.answerDims;
  const s = a + spec.sourceDims;
  const f = s + spec.formDims;
  const i = f + spec.image.dims;
  const v = i + (spec.vision?.textInImage?.dims ?? 0) + (spec.vision?.embedding?.dims ?? 0);
  return { question: [0, q], answer: [q, a], source: [a, s], form: [s, f], image: [f, i], vision: [i, v] };
}

const TOKEN_SPLIT = /[^\p{L}\p{N}]+/u;

export function refTokenize(text: string): string[] {
  return text
    .toLowerCase()
    .split(TOKEN_SPLIT)
    .filter((t) => t.length > 0);
}

let touched = new Int32Array(4096);

function hashedBag(
  texts: readonly string[],
  spec: FeatureSpec["text"],
  out: Float32Array,
  base: number,
  start: number,
  end: number,
): void {
  const dims = end - start;
  if (dims <= 0) return;
  let nTouched = 0;
  for (const text of texts) {
    const tokens = refTokenize(text);
    const th = new Int32Array(tokens.length);
    for (let k = 0; k < tokens.length; k++) th[k] = refMurmur3(tokens[k], spec.hashSeed);
    for (const n of spec.ngrams) {
      for (let k = 0; k + n <= tokens.length; k++) {
        let h = spec.hashSeed + n;
        for (let j = 0; j < n; j++) h = refMixBlock(h, th[k + j]);
        const at = base + start + (refFmix32(h ^ n) % dims);
        if (out[at] === 0) {
          if (nTouched === touched.length) {
            const grown = new Int32Array(touched.length * 2);
            grown.set(touched);
            touched = grown;
          }
          touched[nTouched++] = at;
        }
        out[at] += 1;
      }
    }
  }
  let norm = 0;
  for (let t = 0; t < nTouched; t++) {
    const v = Math.log1p(out[touched[t]]);
    out[touched[t]] = v;
    norm += v * v;
  }
  if (norm > 0) {
    const inv = 1 / Math.sqrt(norm);
    for (let t = 0; t < nTouched; t++) out[touched[t]] *= inv;
  }
}

const OPTION_LINE = /(^|\n)\s*(\(?[A-Ha-h][).:]|\(?[1-9][).])\s+\S/g;
const OPTION_WORDS = /\b(options?|choices?|choose|select)\b/i;
const BOX = /\[\s*-?\d*\.?\d+\s*(,\s*-?\d*\.?\d+\s*){1,3}\]|\(\s*-?\d*\.?\d+\s*,\s*-?\d*\.?\d+\s*\)/g;
const YES_NO = /^\s*(yes|no)\b/i;
const STEP =
  /\b(step \d|first(ly)?,|second(ly)?,|then,|next,|finally,|therefore|thus|so the answer|let's think)\b/gi;
const COMPARE = /\b(compare|comparison|difference|differ|similar|than|both|versus|vs\.?)\b/gi;
const FORMAT = /\b(single word|one word|short phrase|json|format|in \d+ words|briefly|answer with)\b/gi;
const DIGIT = /\d/g;
const SENTENCE = /[.!?](\s|$)/g;

function count(re: RegExp, text: string): number {
  re.lastIndex = 0;
  return (text.match(re) ?? []).length;
}

const squash = (x: number, scale: number): number => Math.log1p(Math.max(0, x)) / scale;

const OPTION_LABELLED_LINE = /(?:^|\n)[ \t]*\(?([A-Ha-h]|[1-9])[).:][ \t]+([^\n]+)/g;
const OPTION_INLINE = /(?:^|\s)\(?([A-H])[).:][ \t]+(.+?)(?=\s+\(?[A-H][).:][ \t]|\n|$)/g;
const OPTION_ANSWER = /^(?:the )?(?:answer|option|choice)?(?: is)?:?\s*\(?([A-Ha-h]|[1-9])\)?[.)]?(?:\s|$)/i;
const NUMERIC_ANSWER = /^[-+$€£]?\s*\d[\d,.]*\s*(?:%|percent|[a-z]{0,3})?\.?$/i;

function optionAnswerFeatures(q: string, lastAnswer: string): [number, number] {
  const labels = new Map<string, string>();
  for (const m of q.matchAll(OPTION_LABELLED_LINE)) labels.set(m[1].toUpperCase(), m[2].trim().toLowerCase());
  if (labels.size < 2) {
    labels.clear();
    for (const m of q.matchAll(OPTION_INLINE)) {
      if (m[1].charCodeAt(0) - 65 !== labels.size) break;
      labels.set(m[1], m[2].trim().toLowerCase());
    }
  }
  if (labels.size < 2) return [0, 0];
  const a = lastAnswer.trim();
  const byLabel = OPTION_ANSWER.exec(a);
  const pickedByLabel = byLabel !== null && labels.has(byLabel[1].toUpperCase()) ? 1 : 0;
  const text = a.toLowerCase().replace(/[.!]$/, "");
  let pickedByText = 0;
  for (const option of labels.values()) if (option.replace(/[.!]$/, "") === text) pickedByText = 1;
  return [pickedByLabel, pickedByText];
}

function formFeatures(
  questions: readonly string[],
  answers: readonly string[],
  hasImage: boolean,
  version: 1 | 2,
): number[] {
  const q = questions.join("\n");
  const a = answers.join("\n");
  const lastAnswer = answers.at(-1) ?? "";
  const lastWords = refTokenize(lastAnswer).length;
  const v2 =
    version === 2
      ? [
          ...optionAnswerFeatures(q, lastAnswer),
          NUMERIC_ANSWER.test(lastAnswer.trim()) ? 1 : 0,
          /(?:^|\n)\s*context:/i.test(q) ? 1 : 0,
        ]
      : [];
  return [
    squash(answers.length, 3),
    squash(a.length, 8),
    squash(lastWords, 6),
    squash(q.length, 8),
    Math.min(count(OPTION_LINE, q), 8) / 8,
    OPTION_WORDS.test(q) ? 1 : 0,
    YES_NO.test(lastAnswer) ? 1 : 0,
    Math.min(count(BOX, a), 8) / 8,
    lastWords > 0 && lastWords <= 4 ? 1 : 0,
    squash(count(SENTENCE, a), 4),
    Math.min(count(STEP, a), 8) / 8,
    a.length > 0 ? count(DIGIT, a) / a.length : 0,
    hasImage ? 1 : 0,
    /(^|\n)\s*hint:/i.test(q) ? 1 : 0,
    Math.min(count(FORMAT, q), 4) / 4,
    Math.min(count(COMPARE, q) + count(COMPARE, a), 8) / 8,
    ...v2,
  ].map((v) => (Number.isFinite(v) ? v : 0));
}

export interface RefTextFeatureInput {
  questions: readonly string[];
  answers: readonly string[];
  imageSource: string;
  hasImage: boolean;
}

export function refWriteTextFeatures(
  input: RefTextFeatureInput,
  spec: FeatureSpec,
  out: Float32Array,
  row: number,
): boolean {
  const layout = refFeatureLayout(spec);
  const base = row * spec.dims;
  let budget = spec.text.maxChars;
  let truncated = false;
  const cut = (texts: readonly string[]): string[] =>
    texts.map((t) => {
      if (budget <= 0) {
        if (t.length > 0) truncated = true;
        return "";
      }
      if (t.length > budget) {
        truncated = true;
        const s = t.slice(0, budget);
        budget = 0;
        return s;
      }
      budget -= t.length;
      return t;
    });
  const questions = cut(input.questions);
  const answers = cut(input.answers);
  hashedBag(questions, spec.text, out, base, layout.question[0], layout.question[1]);
  hashedBag(answers, spec.text, out, base, layout.answer[0], layout.answer[1]);
  const [s0, s1] = layout.source;
  if (s1 > s0)
    out[base + s0 + (refMurmur3(input.imageSource.toLowerCase(), spec.text.hashSeed) % (s1 - s0))] = 1;
  const form = formFeatures(questions, answers, input.hasImage, spec.kind === "mmssr-hashed/v2" ? 2 : 1);
  const [f0, f1] = layout.form;
  for (let k = 0; k < form.length && f0 + k < f1; k++) out[base + f0 + k] = form[k];
  return truncated;
}
