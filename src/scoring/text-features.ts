import { fmix32, mixBlock, murmur3 } from "../util/hash32.js";
import type { FeatureSpec } from "./scoring-types.js";

/**
 * The text part of the mmssr-hashed/v1 feature vector: hashed bags of n-grams of the
 * questions and of the answers, a hashed image_source token, and dense "form" features of
 * the answer (length, options, boxes, steps, ...). Form features are what the answer looks
 * like, which is what interaction styles are about; the bags carry the topic, which is what
 * capabilities are about.
 */

/** Where each block of the feature vector starts and ends (end exclusive). */
export interface FeatureLayout {
  question: [number, number];
  answer: [number, number];
  source: [number, number];
  form: [number, number];
  image: [number, number];
  /** the vision-model block (empty when the spec has none) */
  vision: [number, number];
}

export function featureLayout(spec: FeatureSpec): FeatureLayout {
  const q = spec.text.questionDims;
  const a = q + spec.text.answerDims;
  const s = a + spec.sourceDims;
  const f = s + spec.formDims;
  const i = f + spec.image.dims;
  const v = i + (spec.vision?.textInImage?.dims ?? 0) + (spec.vision?.embedding?.dims ?? 0);
  return { question: [0, q], answer: [q, a], source: [a, s], form: [s, f], image: [f, i], vision: [i, v] };
}

const TOKEN_SPLIT = /[^\p{L}\p{N}]+/u;

export function tokenize(text: string): string[] {
  return text
    .toLowerCase()
    .split(TOKEN_SPLIT)
    .filter((t) => t.length > 0);
}

/** Scratch list of the positions a bag touched, so scaling skips the zeros of a 2048-wide block. */
let touched = new Int32Array(4096);

/**
 * Adds the hashed n-gram counts of `texts` into out[start, end), then scales them to
 * log1p(count) and the block to unit L2 norm, so that long conversations do not dominate.
 * An n-gram's hash folds its tokens' murmur3 hashes with murmur3's block step (seeded by
 * hashSeed + n): no n-gram string is ever built.
 */
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
    const tokens = tokenize(text);
    const th = new Int32Array(tokens.length);
    for (let k = 0; k < tokens.length; k++) th[k] = murmur3(tokens[k], spec.hashSeed);
    for (const n of spec.ngrams) {
      for (let k = 0; k + n <= tokens.length; k++) {
        let h = spec.hashSeed + n;
        for (let j = 0; j < n; j++) h = mixBlock(h, th[k + j]);
        const at = base + start + (fmix32(h ^ n) % dims);
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

/** Number of form features filled by mmssr-hashed/v1; the rest of the form block stays 0. */
export const FORM_FEATURES_USED = 16;
/** mmssr-hashed/v2 adds the answer-to-options features after v1's. */
export const FORM_FEATURES_USED_V2 = 20;

const OPTION_LABELLED_LINE = /(?:^|\n)[ \t]*\(?([A-Ha-h]|[1-9])[).:][ \t]+([^\n]+)/g;
/** Options on one line: "A. larva B. pupa C. adult" or "(A) red (B) blue", upper-case labels in order. */
const OPTION_INLINE = /(?:^|\s)\(?([A-H])[).:][ \t]+(.+?)(?=\s+\(?[A-H][).:][ \t]|\n|$)/g;
const OPTION_ANSWER = /^(?:the )?(?:answer|option|choice)?(?: is)?:?\s*\(?([A-Ha-h]|[1-9])\)?[.)]?(?:\s|$)/i;
const NUMERIC_ANSWER = /^[-+$€£]?\s*\d[\d,.]*\s*(?:%|percent|[a-z]{0,3})?\.?$/i;

/**
 * Whether the last answer picks one of the question's labelled options, by its label ("B",
 * "(B) ...") or by its text: the mark of a multiple-choice item however the question words it,
 * which n-grams alone learn only from the exact phrasings seen in training.
 */
function optionAnswerFeatures(q: string, lastAnswer: string): [number, number] {
  const labels = new Map<string, string>();
  for (const m of q.matchAll(OPTION_LABELLED_LINE)) labels.set(m[1].toUpperCase(), m[2].trim().toLowerCase());
  if (labels.size < 2) {
    labels.clear();
    // inline options count only as a run A, B, ... from the first label on
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
  const lastWords = tokenize(lastAnswer).length;
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

export interface TextFeatureInput {
  questions: readonly string[];
  answers: readonly string[];
  imageSource: string;
  hasImage: boolean;
}

/**
 * Fills the text, source and form blocks of row `row` of `out` (a [n, spec.dims] matrix).
 * Returns true when the text was cut at spec.text.maxChars.
 */
export function writeTextFeatures(
  input: TextFeatureInput,
  spec: FeatureSpec,
  out: Float32Array,
  row: number,
): boolean {
  const layout = featureLayout(spec);
  const base = row * spec.dims;
  // Cut from the end: the first turns carry the task, later turns repeat its vocabulary.
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
    out[base + s0 + (murmur3(input.imageSource.toLowerCase(), spec.text.hashSeed) % (s1 - s0))] = 1;
  const form = formFeatures(questions, answers, input.hasImage, spec.kind === "mmssr-hashed/v2" ? 2 : 1);
  const [f0, f1] = layout.form;
  for (let k = 0; k < form.length && f0 + k < f1; k++) out[base + f0 + k] = form[k];
  return truncated;
}
