/**
 * The fast text featurizer against its frozen pre-optimization copy
 * (test/support/reference-text-features.ts): trained models index their weights by these
 * features, so every byte of every row must stay the same, for both featurizer kinds and for
 * text that the synthetic corpora never produce.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { syntheticTaskQuestions } from "../../models/synthetic-task-questions.js";
import { type Sample, type Turn, validateSample } from "../../src/domain/sample.js";
import { layoutTurns, removeImagePlaceholders } from "../../src/scoring/conversation-text.js";
import { DEFAULT_FEATURE_SPEC } from "../../src/scoring/featurize-samples.js";
import type { FeatureSpec } from "../../src/scoring/scoring-types.js";
import { tokenize, writeTextFeatures } from "../../src/scoring/text-features.js";
import { murmur3 } from "../../src/util/hash32.js";
import {
  refLayoutTurns,
  refMurmur3,
  refRemoveImagePlaceholders,
  refTokenize,
  refWriteTextFeatures,
} from "../support/reference-text-features.js";

const V2 = DEFAULT_FEATURE_SPEC;
const V1: FeatureSpec = { ...DEFAULT_FEATURE_SPEC, kind: "mmssr-hashed/v1" };

/** Spec with the given text, source and form sizes (no image block to speak of). */
function spec(
  kind: FeatureSpec["kind"],
  questionDims: number,
  answerDims: number,
  sourceDims: number,
  formDims: number,
  text: Partial<FeatureSpec["text"]> = {},
): FeatureSpec {
  return {
    kind,
    dims: questionDims + answerDims + sourceDims + formDims + 3,
    text: { questionDims, answerDims, ngrams: [1, 2], maxChars: 8000, hashSeed: 17, ...text },
    sourceDims,
    formDims,
    image: { size: 8, dims: 3 },
  };
}

const SPECS: [string, FeatureSpec][] = [
  ["v2 (DEFAULT_FEATURE_SPEC)", V2],
  ["v1", V1],
  // sizes that are no power of two take the remainder path; n = 3 and a short cut
  [
    "v2, odd sizes, trigrams, maxChars 300",
    spec("mmssr-hashed/v2", 1000, 777, 7, 18, { ngrams: [3, 1, 2], maxChars: 300, hashSeed: 123456789 }),
  ],
  // form block narrower than the features; answer and source blocks empty (tokens still counted)
  ["v1, no answer or source block, form 8", spec("mmssr-hashed/v1", 64, 0, 0, 8, { hashSeed: 0 })],
  // seeds outside int32, negative and fractional; a 1-wide block
  ["v2, seed 2^32 + 5, 1-wide blocks", spec("mmssr-hashed/v2", 1, 1, 1, 32, { hashSeed: 2 ** 32 + 5 })],
  ["v2, seed -7.5", spec("mmssr-hashed/v2", 512, 256, 3, 20, { hashSeed: -7.5, ngrams: [2] })],
  // wide blocks and long n-grams: more than 4096 positions touched in one bag
  [
    "v2, 2^16-wide blocks, 1..4-grams",
    spec("mmssr-hashed/v2", 65536, 65536, 64, 32, { ngrams: [1, 2, 3, 4] }),
  ],
];

interface Row {
  questions: string[];
  answers: string[];
  imageSource: string;
  hasImage: boolean;
}

function bytes(x: Float32Array): Buffer {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
}

/** Featurizes the rows into matrices with both writers; compares matrices and truncation flags. */
function expectSameFeatures(rows: readonly Row[], s: FeatureSpec): void {
  // a few MiB of matrix at a time, whatever the width
  const chunk = Math.max(1, Math.floor(2 ** 20 / s.dims));
  for (let k = 0; k < rows.length; k += chunk) expectSameMatrix(rows.slice(k, k + chunk), s);
}

function expectSameMatrix(rows: readonly Row[], s: FeatureSpec): void {
  const fast = new Float32Array(rows.length * s.dims);
  const ref = new Float32Array(rows.length * s.dims);
  const fastCut: boolean[] = [];
  const refCut: boolean[] = [];
  rows.forEach((r, k) => {
    fastCut.push(writeTextFeatures(r, s, fast, k));
    refCut.push(refWriteTextFeatures(r, s, ref, k));
  });
  expect(fastCut).toEqual(refCut);
  if (!bytes(fast).equals(bytes(ref))) {
    // name the first row that differs, for the failure message
    for (let k = 0; k < rows.length; k++) {
      const a = bytes(fast.subarray(k * s.dims, (k + 1) * s.dims));
      const b = bytes(ref.subarray(k * s.dims, (k + 1) * s.dims));
      if (!a.equals(b))
        expect({ row: k, input: rows[k], bytes: Array.from(a) }).toEqual({
          row: k,
          input: rows[k],
          bytes: Array.from(b),
        });
    }
  }
  expect(bytes(fast).equals(bytes(ref))).toBe(true);
}

/** The rows the featurizer writes for these samples (laid out by the fast code; a test compares the layouts). */
function rowsOf(samples: readonly Sample[]): Row[] {
  return samples.map((sample, k) => {
    const layout = layoutTurns(sample.conversations);
    return {
      questions: layout.questions,
      answers: layout.answers,
      imageSource: sample.image_source,
      hasImage: k % 3 !== 0,
    };
  });
}

function fixtureSamples(path: string): Sample[] {
  const text = readFileSync(new URL(path, import.meta.url), "utf8");
  const records: unknown[] = path.endsWith(".jsonl")
    ? text
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l))
    : JSON.parse(text);
  const out: Sample[] = [];
  for (const [k, r] of records.entries()) {
    // LLaMA-Factory's records carry no id
    const v = validateSample({ id: `fixture-${k}`, ...(r as object) });
    if (v.ok) out.push(v.sample);
  }
  expect(out.length).toBeGreaterThan(0);
  return out;
}

const turns = (...texts: string[]): Turn[] =>
  texts.map((value, i) => ({ from: i % 2 === 0 ? "human" : "gpt", value }));

const LONG = "The quick brown fox, jumps over 13 lazy dogs. ".repeat(400);
const ADVERSARIAL: string[][] = [
  [],
  [""],
  ["", ""],
  ["", "", "", ""],
  ["?!...", "---"],
  ["   \n\t  ", " "],
  ["<image>", "<image>\n"],
  ["<image>\n<image>\n<image>", "<image><image>"],
  ["<ima<image>\nge>\nWhat is it?", "<image<image>\n>\n"],
  ["What is this?\n<image>", "a <image> b <image>\nc"],
  ["<IMAGE>\nupper case is no placeholder", "<image >"],
  ["Hint: count the items.\nQuestion: how many?", "3"],
  ["<image>\nHint: the sky\nWhich is blue?\nA. grass\nB. sky", "B"],
  ["Question: What is it", "Question: "],
  ["QQQ Question:", "Answer: Question"],
  // Greek: final sigma depends on the whole word; Σ alone, at the end, between letters
  ["ΟΔΥΣΣΕΥΣ ΣΟΦΟΣ Σ ΑΣ.", "ΣΑΣ ΜΑΣ! Σ"],
  ["Όσο ΚΟΣΜΟΣ, σίσυφος", "ΑΣ1 Σ2Σ"],
  // Turkish İ lowercases to i + U+0307 (no letter), and dotless ı / I
  ["İSTANBUL İzmir ıIiİ", "DİYARBAKIR"],
  ["Kelvin \u212a and \u212b angstrom", "ﬁne ǅemal ß ẞ"],
  // CJK, Hangul, kana, RTL, Devanagari with combining marks
  ["日本語のテキスト、中文文本。한국어", "これは猫です"],
  ["مرحبا بالعالم ١٢٣", "नमस्ते दुनिया १२३"],
  // digits of other scripts, fullwidth, superscripts, roman numerals
  ["٠١٢٣ ۴۵۶ ௧௨ ０１２ ²³ Ⅻ ⅷ ½", "١٢ apples"],
  // astral letters and digits, emoji, ZWJ sequences, flags, lone surrogates
  ["𝐀𝐁𝐂 𝐚𝐛 𝟎𝟏𝟐 𐐀𐐨 𠀀𠀁", "😀👍🏽 👨‍👩‍👧 🇩🇪 a😀b"],
  ["\ud800 lone \udc00 surrogates \ud83d", "x\ud83dy \udfff\ud800"],
  ["\ud83d\ude00\ud835\udc00\ud83d", "𝐀😀𝐀"],
  // invisible and odd separators
  ["zero\u200bwidth\u00a0nbsp\u2028line\u2029para\ufeffbom", "soft\u00adhyphen tab\tx"],
  ["a\u0301 e\u0308 combining n\u0303", "Ǆ ǅ ǆ"],
  // option lists, inline options, numbers, boxes
  ["Which is it?\nA. cat\nB. dog\nC. cow\nD. The cat.", "The answer is (B)."],
  ["Which is a producer? A. hawk B. grass C. frog", "grass."],
  ["Pick one: (A) red (B) blue (C) green", "(C) green"],
  ["Choose:\n1) one\n2) two\n3) three", "2"],
  ["a. lower\nb. case\n\tc. tabbed", "b."],
  ["Pick:\nA: red\nB: blue", "B"],
  ["Which?\na: one\nb: two", "b: two"],
  ["1: first\n2: second", "2"],
  ["Options A: red B: blue", "A"],
  ["x_A. y\n_B) z\nA_: w", "A"],
  ["H. hydrogen", "h) lower"],
  ["(9) nine", "I. no label"],
  ["Is it A)  or\n\n  h:  x", "0) zero"],
  ["Context: A food web.\nWhich is a producer?\nA. hawk\nB. grass", "E"],
  ["Where is it? Options: left, right", "[0.10, 0.20, 0.30, 0.40] and (1, 2) and [1,2,3,4,5]"],
  ["What is the total?", "$12.50"],
  ["What share?", "42%"],
  ["Value?", "-3,200.5 kg."],
  ["Is it red?", "Yes, it is."],
  ["Is it red?", "  no"],
  [
    "How many?",
    "Step 1 count. First, add. Then, sum. Next, check. Finally, thus therefore so the answer is 3. Let's think.",
  ],
  ["Compare A versus B vs. C, both differ; similar than", "The difference: comparison vs"],
  ["Answer with a single word. In 3 words, briefly, JSON format, one word, short phrase.", "Cat"],
  ["Sentences. End! Really? Yes.\nNew line.", "One. Two! Three?\tFour.Five"],
  ["x".repeat(9000), "y"],
  [LONG, LONG],
  [LONG.slice(0, 7990), "0123456789abcdefghij"],
  ["a".repeat(8000), ""],
  ["a".repeat(7999), "bc"],
  ["word ".repeat(5000), "word ".repeat(5000)],
  ["1 2 3 4 5 6 7 8 9 0 ".repeat(300), "9".repeat(500)],
  ["A. x\nB. y\n".repeat(50), "B"],
  ["ÀÉÎÕÜ àéîõü Ñ ñ Ç ç Ø ø Å å Æ æ Œ œ", "ĳ Ĳ ŉ ſ"],
];

describe("writeTextFeatures equals its frozen pre-optimization copy", () => {
  const samples = {
    synthetic: syntheticSamples(3000, 3),
    tasks: syntheticTaskQuestions(2000, 11).map((t) => t.sample),
    fixtures: [
      ...fixtureSamples("../fixtures/samples/llava_instruct_20.json"),
      ...fixtureSamples("../fixtures/samples/mllm_demo.json"),
      ...fixtureSamples("../../src/demo/demo-samples.jsonl"),
    ],
    adversarial: ADVERSARIAL.map(
      (texts, k): Sample => ({
        id: `adv-${k}`,
        image: "x.jpg",
        image_source: k % 2 === 0 ? "COCO" : "ΣΟΦΟΣ-İ",
        conversations: turns(...texts),
      }),
    ),
  };
  const synthetic = rowsOf(samples.synthetic);
  const tasks = rowsOf(samples.tasks);
  const fixtures = rowsOf(samples.fixtures);
  const adversarial = rowsOf(samples.adversarial);

  it("lays out every sample as the reference does (text, questions, answers)", () => {
    for (const list of Object.values(samples))
      for (const sample of list)
        expect(layoutTurns(sample.conversations)).toEqual(refLayoutTurns(sample.conversations));
  });
  // the same texts as bare questions and answers, without the layout in between
  const raw: Row[] = ADVERSARIAL.flatMap((texts, k) => [
    { questions: texts, answers: [...texts].reverse(), imageSource: "", hasImage: k % 2 === 0 },
    { questions: texts.slice(0, 1), answers: texts.slice(1), imageSource: "unknown", hasImage: false },
  ]);

  for (const [name, s] of SPECS) {
    describe(name, () => {
      it("syntheticSamples(3000, 3)", () => expectSameFeatures(synthetic, s));
      it("syntheticTaskQuestions(2000, 11)", () => expectSameFeatures(tasks, s));
      it("the sample fixtures", () => expectSameFeatures(fixtures, s));
      it("adversarial conversations", () => expectSameFeatures(adversarial, s));
      it("adversarial bare texts", () => expectSameFeatures(raw, s));
    });
  }

  // Characters where lowercasing, \p{L} / \p{N} or the placeholder rules are easy to get wrong.
  const alphabet = fc.constantFrom(
    ..."aZ09 .,!?:;()[]-\n\t\u00a0",
    "Σ",
    "σ",
    "ς",
    "İ",
    "ı",
    "\u0307",
    "\u212a",
    "ß",
    "日",
    "٣",
    "²",
    "Ⅻ",
    "𝐀",
    "😀",
    "\u200d",
    "\ud83d",
    "\ude00",
    "<image>",
    "<image>\n",
    "<ima",
    "ge>",
    "Hint:",
    "Question: ",
    "Context:",
    "A. ",
    "(B) ",
    "\nC) ",
    "[0.1, 2]",
    "yes",
    "No",
    "answer is ",
    // the words and shapes of every form regex, and near misses
    ..."_'$%,",
    "Step 2",
    "step 12",
    "first,",
    "Firstly,",
    "second,",
    "then,",
    "NEXT,",
    "finally,",
    "therefore",
    "thus",
    "so the answer",
    "let's think",
    "than",
    "THAN",
    "Both",
    "compare",
    "comparison",
    "differ",
    "difference",
    "similar",
    "versus",
    "vs.",
    "vs",
    "single word",
    "one word",
    "short phrase",
    "json",
    "Format",
    "in 3 words",
    "in 12 words",
    "briefly",
    "answer with",
    "options",
    "Choice",
    "choose",
    "select",
    "hint:",
    "HINT:",
    "context:",
    "Context:",
    "a)",
    "\nA: ",
    "\nH. ",
    "\n(h) ",
    "b:",
    "H.",
    "I.",
    "1)",
    "9.",
    "(D)",
    "[",
    "]",
    "(1, 2)",
    "[0.1, 0.2, 0.3, 0.4]",
    "-3.5",
  );
  const text = fc.string({ unit: alphabet, maxLength: 40 });
  it("random texts over an adversarial alphabet, both kinds", () => {
    const texts = fc.array(text, { maxLength: 6 });
    fc.assert(
      fc.property(texts, fc.boolean(), (ts, hasImage) => {
        const sample = turns(...ts);
        const layout = layoutTurns(sample);
        expect(layout).toEqual(refLayoutTurns(sample));
        const rows = [
          { questions: layout.questions, answers: layout.answers, imageSource: ts[0] ?? "", hasImage },
          { questions: ts, answers: ts.slice(1), imageSource: "x", hasImage },
        ];
        for (const [, s] of SPECS.slice(0, 4)) expectSameFeatures(rows, s);
      }),
      { numRuns: 1500, seed: 20240601 },
    );
  });

  it("random texts over all of UTF-16", () => {
    const any = fc.string({ unit: "binary", maxLength: 60 });
    fc.assert(
      fc.property(fc.array(any, { maxLength: 4 }), (ts) => {
        for (const t of ts) {
          expect(tokenize(t)).toEqual(refTokenize(t));
          expect(removeImagePlaceholders(t)).toBe(refRemoveImagePlaceholders(t));
          expect(murmur3(t, 17)).toBe(refMurmur3(t, 17));
        }
        expectSameFeatures([{ questions: ts, answers: ts, imageSource: ts[0] ?? "", hasImage: true }], V2);
      }),
      { numRuns: 1500, seed: 7 },
    );
  });

  it("every code point, alone and inside a word", () => {
    // classifies each BMP and a sample of astral code points the way the regex does
    const chunk: string[] = [];
    const flush = () => {
      expectSameFeatures(
        [{ questions: [chunk.join(" ")], answers: [chunk.join("x")], imageSource: "", hasImage: false }],
        V2,
      );
      chunk.length = 0;
    };
    for (let cp = 0; cp <= 0x10ffff; cp += cp < 0x10000 ? 1 : 97) {
      chunk.push(`a${String.fromCodePoint(cp)}b`);
      if (chunk.length === 512) flush();
    }
    flush();
  });

  it("rows that run past the end of the matrix, or start before it", () => {
    const row: Row = {
      questions: [LONG.slice(0, 3000)],
      answers: [LONG.slice(100, 2000)],
      imageSource: "x",
      hasImage: true,
    };
    for (const s of [V2, SPECS[2][1]]) {
      const q = s.text.questionDims;
      // the matrix ends inside the question block, inside the answer block, inside the form block
      for (const length of [q >> 1, q + (s.text.answerDims >> 1), s.dims - 5]) {
        for (const at of [0, -1]) {
          const fast = new Float32Array(length);
          const ref = new Float32Array(length);
          expect(writeTextFeatures(row, s, fast, at)).toBe(refWriteTextFeatures(row, s, ref, at));
          expect(bytes(fast).equals(bytes(ref))).toBe(true);
        }
      }
    }
  });

  it("a row that throws halfway leaves nothing behind for the next", () => {
    const bad = {
      questions: ["a b c d"],
      answers: ["e f", 5 as unknown as string],
      imageSource: "",
      hasImage: false,
    };
    expect(() => writeTextFeatures(bad, V2, new Float32Array(V2.dims), 0)).toThrow();
    expect(() => refWriteTextFeatures(bad, V2, new Float32Array(V2.dims), 0)).toThrow();
    expectSameFeatures(synthetic.slice(0, 50), V2);
  });

  it("every BMP code point after a sentence end, before a word, inside a word", () => {
    // \s, \w and \b of the form regexes: few characters per row, so that no miscount hides in a sum
    const rows: Row[] = [];
    for (let cp = 0; cp < 0x10000; cp += 4) {
      const cs = [0, 1, 2, 3].map((k) => String.fromCharCode(cp + k));
      rows.push({
        questions: [cs.map((c) => `x${c}than A${c}. hint${c}: ${c}context:`).join("\n")],
        answers: cs.map((c) => `Done.${c}both${c}vs. [1${c}, 2] first,${c}then`),
        imageSource: "",
        hasImage: false,
      });
    }
    expectSameFeatures(rows, V2);
  });
});
