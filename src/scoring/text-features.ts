import { fmix32, mixBlock, murmur3, murmur3Range } from "../util/hash32.js";
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

/*
 * The featurizer splits text as tokenize does, without building the token strings: a token is a
 * maximal run of \p{L} / \p{N} code points of the lowercased text, hashed in place. Lowercasing
 * stays whole-text (toLowerCase) wherever the text is not ASCII, since per-character lowercasing
 * differs there (final sigma; 'İ' becomes "i" plus a combining dot, which is no letter and so
 * splits the token).
 */

/** The lowercase of each ASCII letter and digit, 0 for the other ASCII characters. */
const ASCII_TOKEN = new Uint8Array(128);
for (let c = 0; c < 128; c++)
  if (/[\p{L}\p{N}]/u.test(String.fromCharCode(c)))
    ASCII_TOKEN[c] = String.fromCharCode(c).toLowerCase().charCodeAt(0);

const TOKEN_CHAR = /^[\p{L}\p{N}]$/u;
/** Whether a BMP code point is a letter or digit, filled on first sight: 0 unknown, 1 yes, 2 no. */
const BMP_TOKEN = new Uint8Array(0x10000);
/** The same for the code points above 0xFFFF met so far. */
const ASTRAL_TOKEN = new Map<number, boolean>();

/**
 * How many code units the letter or digit at s[i] (c = s.charCodeAt(i) >= 0x80) takes: 1, 2 for
 * one above 0xFFFF, 0 when the code point there is neither. A lone surrogate is a code point of
 * its own to the u flag, and not a letter.
 */
function wideTokenUnits(s: string, i: number, c: number): number {
  if (c < 0xd800 || c > 0xdfff) {
    let w = BMP_TOKEN[c];
    if (w === 0) {
      w = TOKEN_CHAR.test(String.fromCharCode(c)) ? 1 : 2;
      BMP_TOKEN[c] = w;
    }
    return w === 1 ? 1 : 0;
  }
  if (c > 0xdbff || i + 1 >= s.length) return 0;
  const lo = s.charCodeAt(i + 1);
  if (lo < 0xdc00 || lo > 0xdfff) return 0;
  const cp = ((c - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
  let word = ASTRAL_TOKEN.get(cp);
  if (word === undefined) {
    word = TOKEN_CHAR.test(String.fromCodePoint(cp));
    ASTRAL_TOKEN.set(cp, word);
  }
  return word ? 2 : 0;
}

/** murmur3Range of the lowercase of text[start, end), a run of ASCII letters and digits. */
function asciiTokenHash(text: string, start: number, end: number, seed: number): number {
  let h = seed >>> 0;
  let i = start;
  for (; i + 1 < end; i += 2)
    h = mixBlock(h, ASCII_TOKEN[text.charCodeAt(i)] | (ASCII_TOKEN[text.charCodeAt(i + 1)] << 16));
  if (i < end) {
    let k = ASCII_TOKEN[text.charCodeAt(i)];
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return fmix32(h ^ ((end - start) * 2));
}

/** The murmur3 hashes of the last text's tokens: grown, never shrunk, reused by every text. */
let tokenHashes = new Int32Array(1024);

/** Room for the tokens of a text of n code units (they are at least one apart), keeping the first `kept`. */
function reserveTokens(n: number, kept: number): void {
  const most = (n + 1) >> 1;
  if (tokenHashes.length >= most) return;
  const grown = new Int32Array(Math.max(most, tokenHashes.length * 2));
  grown.set(tokenHashes.subarray(0, kept));
  tokenHashes = grown;
}

/**
 * Hashes the tokens of `text` (those of tokenize(text), in order) into tokenHashes and returns
 * how many; scans the text for the form features on the way (scanText's part, see there).
 */
function hashTokens(text: string, seed: number): number {
  let n = text.length;
  reserveTokens(n, 0);
  let th = tokenHashes;
  let count = 0;
  let start = -1;
  let i = 0;
  // ASCII lowercases character by character: no lowercased copy of the text is needed. The
  // scan's findings are kept only if the whole text is ASCII.
  const gates = seededGates(seed);
  let flags = 0;
  let digits = 0;
  let sentences = 0;
  let bracket = false;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) break;
    if (ASCII_TOKEN[c] !== 0) {
      if (start < 0) start = i;
      if (c <= 0x39) digits++; // the letters are above the digits
      continue;
    }
    if (start >= 0) {
      const h = asciiTokenHash(text, start, i, seed);
      th[count++] = h;
      flags |= tokenGate(gates, text, start, i - start, h, c);
      start = -1;
    }
    if (c === 0x2e || c === 0x21 || c === 0x3f) {
      if (i + 1 === n || isRegExpSpace(text.charCodeAt(i + 1))) sentences++;
    } else if (c === 0x5b || c === 0x28) bracket = true;
  }
  if (i === n) {
    if (start >= 0) {
      const h = asciiTokenHash(text, start, n, seed);
      th[count++] = h;
      flags |= tokenGate(gates, text, start, n - start, h, -1);
    }
    scanFlags |= flags;
    scanDigits += digits;
    scanSentences += sentences;
    if (bracket) scanBracket = true;
    return count;
  }
  scanText(text);
  // From the first other character on, the whole-text lowercase. Its first i code units are
  // those ASCII ones lowercased, so the token in progress and the index carry over.
  const s = text.toLowerCase();
  n = s.length;
  reserveTokens(n, count);
  th = tokenHashes;
  while (i < n) {
    const c = s.charCodeAt(i);
    const w = c < 0x80 ? (ASCII_TOKEN[c] !== 0 ? 1 : 0) : wideTokenUnits(s, i, c);
    if (w !== 0) {
      if (start < 0) start = i;
      i += w;
    } else {
      if (start >= 0) {
        th[count++] = murmur3Range(s, start, i, seed);
        start = -1;
      }
      i++;
    }
  }
  if (start >= 0) th[count++] = murmur3Range(s, start, n, seed);
  return count;
}

/** Scratch list of the positions a bag touched, so scaling skips the zeros of a 2048-wide block. */
let touched = new Int32Array(4096);

function growTouched(): void {
  const grown = new Int32Array(touched.length * 2);
  grown.set(touched);
  touched = grown;
}

/**
 * A bag's counts, by position in its block: float32 as the block's own cells, and zero again
 * after each bag (reset through `touched`).
 */
let counts = new Float32Array(4096);
/** Set while a bag runs: a bag cut short by an exception leaves counts to clear. */
let countsInUse = false;

/** log1p of the small counts, from Math.log1p itself (so the same doubles): most n-grams occur a few times. */
const LOG1P = new Float64Array(256);
for (let c = 0; c < LOG1P.length; c++) LOG1P[c] = Math.log1p(c);

/**
 * Adds the hashed n-gram counts of `texts` into out[start, end), then scales them to
 * log1p(count) and the block to unit L2 norm, so that long conversations do not dominate.
 * An n-gram's hash folds its tokens' murmur3 hashes with murmur3's block step (seeded by
 * hashSeed + n): no n-gram string is ever built. Returns the number of tokens of the last text
 * (0 for none), or -1 when the block is empty and nothing was read (nor scanned).
 *
 * The block must be zero (a fresh matrix): the counts are kept aside and each cell that has any
 * is written once and never read, so that a fresh page faults once (a read first would map the
 * zero page, and the write then fault again to copy it).
 */
function hashedBag(
  texts: readonly string[],
  spec: FeatureSpec["text"],
  out: Float32Array,
  base: number,
  start: number,
  end: number,
): number {
  const dims = end - start;
  if (dims <= 0) return -1;
  // For a power of two the low bits are the remainder of the unsigned hash; any other size
  // keeps the double remainder.
  const mask = Number.isInteger(dims) && dims <= 0x40000000 && (dims & (dims - 1)) === 0 ? dims - 1 : -1;
  if (counts.length < dims) counts = new Float32Array(dims);
  else if (countsInUse) counts.fill(0);
  countsInUse = true;
  const cs = counts;
  const at0 = base + start;
  // cells outside `out` take nothing (as a typed array's), so they count nowhere
  const lo = Math.max(0, -at0);
  const hi = Math.min(dims, out.length - at0);
  const seed = spec.hashSeed;
  const ngrams = spec.ngrams;
  let nTouched = 0;
  let lastTokens = 0;
  for (let t = 0; t < texts.length; t++) {
    const nTokens = hashTokens(texts[t], seed);
    lastTokens = nTokens;
    const th = tokenHashes;
    // The order of first touches is the order of the norm's sum: n-gram sizes outer, as ever.
    for (let g = 0; g < ngrams.length; g++) {
      const n = ngrams[g];
      // mixBlock reads its seed as int32, so (seed + n) | 0 folds the same
      const seedN = (seed + n) | 0;
      for (let k = 0; k + n <= nTokens; k++) {
        let h: number;
        if (n === 1) h = mixBlock(seedN, th[k]);
        else if (n === 2) h = mixBlock(mixBlock(seedN, th[k]), th[k + 1]);
        else {
          h = seedN;
          for (let j = 0; j < n; j++) h = mixBlock(h, th[k + j]);
        }
        const x = fmix32(h ^ n);
        const r = mask >= 0 ? x & mask : x % dims;
        if (r < lo || r >= hi) continue;
        const c = cs[r];
        if (c === 0) {
          if (nTouched === touched.length) growTouched();
          touched[nTouched++] = r;
        }
        cs[r] = c + 1;
      }
    }
  }
  let norm = 0;
  for (let t = 0; t < nTouched; t++) {
    const r = touched[t];
    const c = cs[r];
    // c is a whole count (>= 1): index by int, a double index takes the slow path
    const v = c < LOG1P.length ? LOG1P[c | 0] : Math.log1p(c);
    cs[r] = v;
    norm += v * v;
  }
  // the float32 log, times inv, rounded again: as when the block held the log and was scaled
  const inv = norm > 0 ? 1 / Math.sqrt(norm) : 1;
  for (let t = 0; t < nTouched; t++) {
    const r = touched[t];
    out[at0 + r] = cs[r] * inv;
    cs[r] = 0;
  }
  countsInUse = false;
  return lastTokens;
}

const OPTION_LINE = /(^|\n)\s*(\(?[A-Ha-h][).:]|\(?[1-9][).])\s+\S/g;
const OPTION_WORDS = /\b(options?|choices?|choose|select)\b/i;
const BOX = /\[\s*-?\d*\.?\d+\s*(,\s*-?\d*\.?\d+\s*){1,3}\]|\(\s*-?\d*\.?\d+\s*,\s*-?\d*\.?\d+\s*\)/g;
const YES_NO = /^\s*(yes|no)\b/i;
const STEP =
  /\b(step \d|first(ly)?,|second(ly)?,|then,|next,|finally,|therefore|thus|so the answer|let's think)\b/gi;
const COMPARE = /\b(compare|comparison|difference|differ|similar|than|both|versus|vs\.?)\b/gi;
const FORMAT = /\b(single word|one word|short phrase|json|format|in \d+ words|briefly|answer with)\b/gi;
const HINT = /(^|\n)\s*hint:/i;
const CONTEXT = /(?:^|\n)\s*context:/i;
const TRAILING_STOP = /[.!]$/;

/*
 * Most texts match none of the form regexes, and each regex costs a scan of its text, so the
 * scan of each question and answer (hashTokens, scanText) first says which regexes CAN match;
 * only those run, as ever, so the gates change no value. They rest on this: without the u flag,
 * \b and \w are ASCII [A-Za-z0-9_], and /i matches no other character to an ASCII letter; so
 * every match of these patterns holds each gate word below as a whole run of \w, in any case,
 * followed by the character given (if one is). In an ASCII text such a run is also a whole
 * token, so the tokenizer gates by its token hashes.
 */
const CAN_OPTION_WORDS = 1;
const CAN_FORMAT = 2;
const CAN_COMPARE = 4;
const CAN_STEP = 8;
/** "so" and "answer": STEP's "so the answer" needs both */
const CAN_STEP_SO = 16;
const CAN_STEP_ANSWER = 32;
const CAN_HINT = 64;
const CAN_CONTEXT = 128;
/** A one-character run [A-Ha-h1-9] right before [).:]: what every option label is (OPTION_LINE, OPTION_LABELLED_LINE, OPTION_INLINE). */
const CAN_OPTIONS = 256;
/** '[' or '(', and a digit (BOX). */
const CAN_BOX = 512;

const QUESTION_REGEXES = CAN_OPTIONS | CAN_OPTION_WORDS | CAN_HINT | CAN_FORMAT | CAN_COMPARE | CAN_CONTEXT;
const ANSWER_REGEXES = CAN_BOX | CAN_STEP | CAN_COMPARE;

/** [flag, the character that must follow the run ("" for any), words] */
const GATE_WORDS: [number, string, string[]][] = [
  [CAN_OPTION_WORDS, "", ["option", "options", "choice", "choices", "choose", "select"]],
  // the one-word alternatives, and the last word of each phrase
  [CAN_FORMAT, "", ["json", "format", "briefly", "word", "phrase", "words", "with"]],
  [
    CAN_COMPARE,
    "",
    ["compare", "comparison", "difference", "differ", "similar", "than", "both", "versus", "vs"],
  ],
  [CAN_STEP, " ", ["step"]],
  [CAN_STEP, ",", ["first", "firstly", "second", "secondly", "then", "next", "finally"]],
  [CAN_STEP, "", ["therefore", "thus"]],
  [CAN_STEP, "'", ["let"]],
  [CAN_STEP_SO, " ", ["so"]],
  [CAN_STEP_ANSWER, "", ["answer"]],
  [CAN_HINT, ":", ["hint"]],
  [CAN_CONTEXT, ":", ["context"]],
];
const GATE_MAX_LENGTH = 10;

/**
 * The gate words by a hash of their runs, open addressing. A collision with another run only
 * runs a regex that finds nothing, so a hash is all a lookup needs; two gate words of one hash
 * share a slot that asks for no following character.
 */
class GateTable {
  private readonly hash = new Int32Array(256);
  private readonly flags = new Uint16Array(256);
  /** the character that must follow, or -1 for any */
  private readonly next = new Int32Array(256);

  constructor(hashOf: (word: string) => number) {
    for (const [flag, next, words] of GATE_WORDS)
      for (const word of words) {
        const h = hashOf(word) | 0;
        let slot = GateTable.slot(h);
        while (this.flags[slot] !== 0 && this.hash[slot] !== h) slot = (slot + 1) & 255;
        const follow = next === "" ? -1 : next.charCodeAt(0);
        this.next[slot] = this.flags[slot] === 0 ? follow : -1;
        this.hash[slot] = h;
        this.flags[slot] |= flag;
      }
  }

  private static slot(h: number): number {
    return (h ^ (h >>> 8) ^ (h >>> 16)) & 255;
  }

  /** The CAN_ flags of a run of hash h followed by `next` (-1 at the end of the text), or 0. */
  get(hash: number, next: number): number {
    const h = hash | 0;
    let slot = GateTable.slot(h);
    while (this.flags[slot] !== 0) {
      if (this.hash[slot] === h)
        return this.next[slot] === -1 || this.next[slot] === next ? this.flags[slot] : 0;
      slot = (slot + 1) & 255;
    }
    return 0;
  }
}

/** \w folded to lower case: the ASCII letters lowered, digits and '_' as they are, 0 for the rest. */
const WORD_FOLD = new Uint8Array(128);
for (let c = 0; c < 128; c++)
  if (/\w/.test(String.fromCharCode(c))) WORD_FOLD[c] = /[A-Z]/.test(String.fromCharCode(c)) ? c | 0x20 : c;

const foldHash = (h: number, f: number): number => (Math.imul(h, 31) + f) | 0;

const FOLDED_GATES = new GateTable((word) => {
  let h = 0;
  for (let k = 0; k < word.length; k++) h = foldHash(h, word.charCodeAt(k));
  return h;
});

/** The gates by token hash under one seed (murmur3 reads the seed as uint32). */
let tokenGates: GateTable | undefined;
let tokenGatesSeed = 0;

function seededGates(seed: number): GateTable {
  const key = seed >>> 0;
  if (tokenGates === undefined || tokenGatesSeed !== key) {
    tokenGates = new GateTable((word) => murmur3(word, key));
    tokenGatesSeed = key;
  }
  return tokenGates;
}

/** CAN_OPTIONS when c (a one-character run) is a label [A-Ha-h1-9] and next is [).:]. */
function labelGate(c: number, next: number): number {
  return (next === 0x29 || next === 0x2e || next === 0x3a) &&
    ((c >= 0x41 && c <= 0x48) || (c >= 0x61 && c <= 0x68) || (c >= 0x31 && c <= 0x39))
    ? CAN_OPTIONS
    : 0;
}

/** The gates of an ASCII token text[start, start + len) of murmur3 hash h, followed by `next`. */
function tokenGate(
  gates: GateTable,
  text: string,
  start: number,
  len: number,
  h: number,
  next: number,
): number {
  if (len === 1) return labelGate(text.charCodeAt(start), next);
  return len <= GATE_MAX_LENGTH ? gates.get(h, next) : 0;
}

/** Whether c is in \s (ECMAScript WhiteSpace and LineTerminator). */
function isRegExpSpace(c: number): boolean {
  if (c < 0x80) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/*
 * What the scans of one side's texts (questions, or answers) found, as of texts.join("\n"):
 * the CAN_ flags, the ASCII digits (/\d/g), the matches of /[.!?](\s|$)/g, whether there is a
 * '[' or '('. A text's end reads as the "\n" after it would: a non-word character, \s, none of
 * [).:] [ ( and no gate's following character. A sentence end is counted at each [.!?] followed
 * by \s or the end: a match takes the \s after it, which no match starts with, so the global
 * regex counts exactly these.
 */
let scanFlags = 0;
let scanDigits = 0;
let scanSentences = 0;
let scanBracket = false;

function startScan(): void {
  scanFlags = 0;
  scanDigits = 0;
  scanSentences = 0;
  scanBracket = false;
}

/** The side's CAN_ flags, with those that need two findings. */
function scannedFlags(): number {
  let flags = scanFlags;
  if (scanBracket && scanDigits > 0) flags |= CAN_BOX;
  if ((flags & (CAN_STEP_SO | CAN_STEP_ANSWER)) === (CAN_STEP_SO | CAN_STEP_ANSWER)) flags |= CAN_STEP;
  return flags;
}

/** Scans one text (runs of \w of the text itself), for texts that the tokenizer did not scan. */
function scanText(text: string): void {
  const n = text.length;
  let flags = 0;
  let digits = 0;
  let sentences = 0;
  let h = 0;
  let len = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    const f = c < 0x80 ? WORD_FOLD[c] : 0;
    if (f !== 0) {
      h = foldHash(h, f);
      len++;
      if (c <= 0x39) digits++; // '_' and the letters are above the digits
      continue;
    }
    if (len === 1) flags |= labelGate(text.charCodeAt(i - 1), c);
    else if (len > 1 && len <= GATE_MAX_LENGTH) flags |= FOLDED_GATES.get(h, c);
    h = 0;
    len = 0;
    if (c === 0x2e || c === 0x21 || c === 0x3f) {
      if (i + 1 === n || isRegExpSpace(text.charCodeAt(i + 1))) sentences++;
    } else if (c === 0x5b || c === 0x28) scanBracket = true;
  }
  if (len > 1 && len <= GATE_MAX_LENGTH) flags |= FOLDED_GATES.get(h, -1);
  scanFlags |= flags;
  scanDigits += digits;
  scanSentences += sentences;
}

function totalLength(texts: readonly string[]): number {
  let n = 0;
  for (let k = 0; k < texts.length; k++) n += texts[k].length;
  return n;
}

/** texts.join("\n").length */
const joinedLength = (texts: readonly string[]): number =>
  totalLength(texts) + (texts.length > 0 ? texts.length - 1 : 0);

/**
 * Matches of a global regex in `text`, counted up to `cap`: test() builds no match array, and
 * none of these patterns matches the empty string, so test() steps exactly as match() does.
 */
function count(re: RegExp, text: string, cap = Number.POSITIVE_INFINITY): number {
  re.lastIndex = 0;
  let n = 0;
  while (n < cap && re.test(text)) n++;
  re.lastIndex = 0;
  return n;
}

const squash = (x: number, scale: number): number => Math.log1p(Math.max(0, x)) / scale;
/** squash of a count (a whole number >= 0), by table where it is small. */
const squashCount = (x: number, scale: number): number =>
  (x < LOG1P.length ? LOG1P[x] : Math.log1p(x)) / scale;

/** Number of form features filled by mmssr-hashed/v1; the rest of the form block stays 0. */
export const FORM_FEATURES_USED = 16;
/** mmssr-hashed/v2 adds the answer-to-options features after v1's. */
export const FORM_FEATURES_USED_V2 = 20;

const OPTION_LABELLED_LINE = /(?:^|\n)[ \t]*\(?([A-Ha-h]|[1-9])[).:][ \t]+([^\n]+)/g;
/** Options on one line: "A. larva B. pupa C. adult" or "(A) red (B) blue", upper-case labels in order. */
const OPTION_INLINE = /(?:^|\s)\(?([A-H])[).:][ \t]+(.+?)(?=\s+\(?[A-H][).:][ \t]|\n|$)/g;
const OPTION_ANSWER = /^(?:the )?(?:answer|option|choice)?(?: is)?:?\s*\(?([A-Ha-h]|[1-9])\)?[.)]?(?:\s|$)/i;
const NUMERIC_ANSWER = /^[-+$€£]?\s*\d[\d,.]*\s*(?:%|percent|[a-z]{0,3})?\.?$/i;

/** The form features of one row, before they are written (so that no array is built per row). */
const form = new Float64Array(FORM_FEATURES_USED_V2);
const labels = new Map<string, string>();

/**
 * Whether the last answer picks one of the question's labelled options, by its label ("B",
 * "(B) ...") or by its text: the mark of a multiple-choice item however the question words it,
 * which n-grams alone learn only from the exact phrasings seen in training. Into form[at],
 * form[at + 1].
 */
function optionAnswerFeatures(q: string, lastAnswer: string, at: number): void {
  form[at] = 0;
  form[at + 1] = 0;
  // exec loops rather than matchAll, which copies the regex per call; the matches are never empty
  labels.clear();
  OPTION_LABELLED_LINE.lastIndex = 0;
  for (let m = OPTION_LABELLED_LINE.exec(q); m !== null; m = OPTION_LABELLED_LINE.exec(q))
    labels.set(m[1].toUpperCase(), m[2].trim().toLowerCase());
  OPTION_LABELLED_LINE.lastIndex = 0;
  if (labels.size < 2) {
    labels.clear();
    // inline options count only as a run A, B, ... from the first label on
    OPTION_INLINE.lastIndex = 0;
    for (let m = OPTION_INLINE.exec(q); m !== null; m = OPTION_INLINE.exec(q)) {
      if (m[1].charCodeAt(0) - 65 !== labels.size) break;
      labels.set(m[1], m[2].trim().toLowerCase());
    }
    OPTION_INLINE.lastIndex = 0;
  }
  if (labels.size < 2) {
    labels.clear();
    return;
  }
  const a = lastAnswer.trim();
  const byLabel = OPTION_ANSWER.exec(a);
  form[at] = byLabel !== null && labels.has(byLabel[1].toUpperCase()) ? 1 : 0;
  const text = a.toLowerCase().replace(TRAILING_STOP, "");
  for (const option of labels.values()) if (option.replace(TRAILING_STOP, "") === text) form[at + 1] = 1;
  labels.clear();
}

/** What the scans found of one side's texts. */
interface Scanned {
  can: number;
  digits: number;
  sentences: number;
}

const scannedQuestions: Scanned = { can: 0, digits: 0, sentences: 0 };
const scannedAnswers: Scanned = { can: 0, digits: 0, sentences: 0 };

function keepScan(into: Scanned): void {
  into.can = scannedFlags();
  into.digits = scanDigits;
  into.sentences = scanSentences;
}

/** Fills `form` and returns how many of its entries the version uses. */
function formFeatures(
  questions: readonly string[],
  answers: readonly string[],
  lastWords: number,
  hasImage: boolean,
  version: 1 | 2,
): number {
  const qCan = scannedQuestions.can;
  const aCan = scannedAnswers.can;
  const qLength = joinedLength(questions);
  const aLength = joinedLength(answers);
  // the joined texts only where a regex is to read them
  const q = qCan & QUESTION_REGEXES ? questions.join("\n") : "";
  const a = aCan & ANSWER_REGEXES ? answers.join("\n") : "";
  const lastAnswer = answers.at(-1) ?? "";
  // Counts that are capped stop at the cap: only whether they reach it matters.
  form[0] = squashCount(answers.length, 3);
  form[1] = squash(aLength, 8);
  form[2] = squashCount(lastWords, 6);
  form[3] = squash(qLength, 8);
  form[4] = qCan & CAN_OPTIONS ? count(OPTION_LINE, q, 8) / 8 : 0;
  form[5] = qCan & CAN_OPTION_WORDS && OPTION_WORDS.test(q) ? 1 : 0;
  form[6] = YES_NO.test(lastAnswer) ? 1 : 0;
  form[7] = aCan & CAN_BOX ? count(BOX, a, 8) / 8 : 0;
  form[8] = lastWords > 0 && lastWords <= 4 ? 1 : 0;
  form[9] = squashCount(scannedAnswers.sentences, 4);
  form[10] = aCan & CAN_STEP ? count(STEP, a, 8) / 8 : 0;
  form[11] = aLength > 0 ? scannedAnswers.digits / aLength : 0;
  form[12] = hasImage ? 1 : 0;
  form[13] = qCan & CAN_HINT && HINT.test(q) ? 1 : 0;
  form[14] = qCan & CAN_FORMAT ? count(FORMAT, q, 4) / 4 : 0;
  const compareQ = qCan & CAN_COMPARE ? count(COMPARE, q, 8) : 0;
  form[15] = (compareQ + (aCan & CAN_COMPARE ? count(COMPARE, a, 8 - compareQ) : 0)) / 8;
  if (version !== 2) return FORM_FEATURES_USED;
  if (qCan & CAN_OPTIONS) optionAnswerFeatures(q, lastAnswer, 16);
  else {
    form[16] = 0;
    form[17] = 0;
  }
  form[18] = NUMERIC_ANSWER.test(lastAnswer.trim()) ? 1 : 0;
  form[19] = qCan & CAN_CONTEXT && CONTEXT.test(q) ? 1 : 0;
  return FORM_FEATURES_USED_V2;
}

export interface TextFeatureInput {
  questions: readonly string[];
  answers: readonly string[];
  imageSource: string;
  hasImage: boolean;
}

/** What cut has left of spec.text.maxChars, and whether it has cut anything. */
let budget = 0;
let truncated = false;

/** The texts within the budget; the first over it is cut, the rest emptied. */
function cut(texts: readonly string[]): string[] {
  const out: string[] = [];
  for (const t of texts) {
    if (budget <= 0) {
      if (t.length > 0) truncated = true;
      out.push("");
    } else if (t.length > budget) {
      truncated = true;
      out.push(t.slice(0, budget));
      budget = 0;
    } else {
      budget -= t.length;
      out.push(t);
    }
  }
  return out;
}

/**
 * Fills the text, source and form blocks of row `row` of `out` (a [n, spec.dims] matrix), whose
 * question and answer blocks must be zero, as in a fresh matrix (they are written, not read).
 * Returns true when the text was cut at spec.text.maxChars.
 */
export function writeTextFeatures(
  input: TextFeatureInput,
  spec: FeatureSpec,
  out: Float32Array,
  row: number,
): boolean {
  // featureLayout's bounds, without its arrays
  const q1 = spec.text.questionDims;
  const a1 = q1 + spec.text.answerDims;
  const s1 = a1 + spec.sourceDims;
  const f1 = s1 + spec.formDims;
  const base = row * spec.dims;
  // Cut from the end: the first turns carry the task, later turns repeat its vocabulary.
  // Within the budget the cut changes nothing, so the texts are used as they are, uncopied.
  budget = spec.text.maxChars;
  truncated = false;
  const fits = totalLength(input.questions) + totalLength(input.answers) <= budget;
  const questions = fits ? input.questions : cut(input.questions);
  const answers = fits ? input.answers : cut(input.answers);
  const cutSome = truncated;
  startScan();
  if (hashedBag(questions, spec.text, out, base, 0, q1) < 0) for (const t of questions) scanText(t);
  keepScan(scannedQuestions);
  startScan();
  let lastWords = hashedBag(answers, spec.text, out, base, q1, a1);
  if (lastWords < 0) for (const t of answers) scanText(t);
  keepScan(scannedAnswers);
  if (lastWords < 0) lastWords = answers.length > 0 ? hashTokens(answers[answers.length - 1], 0) : 0;
  if (s1 > a1)
    out[base + a1 + (murmur3(input.imageSource.toLowerCase(), spec.text.hashSeed) % (s1 - a1))] = 1;
  const used = formFeatures(
    questions,
    answers,
    lastWords,
    input.hasImage,
    spec.kind === "mmssr-hashed/v2" ? 2 : 1,
  );
  for (let k = 0; k < used && s1 + k < f1; k++) {
    const v = form[k];
    out[base + s1 + k] = Number.isFinite(v) ? v : 0;
  }
  return cutSome;
}
