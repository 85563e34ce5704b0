/** Golden and property tests of the text half of the mmssr-hashed featurizers (v1 and v2). */
import { describe, expect, it } from "vitest";
import { murmur3 } from "../util/hash32.js";
import { DEFAULT_FEATURE_SPEC } from "./featurize-samples.js";
import {
  FORM_FEATURES_USED,
  FORM_FEATURES_USED_V2,
  featureLayout,
  tokenize,
  writeTextFeatures,
} from "./text-features.js";

const spec = DEFAULT_FEATURE_SPEC;
const row = (questions: string[], answers: string[], imageSource = "coco", hasImage = true) => {
  const out = new Float32Array(spec.dims);
  const truncated = writeTextFeatures({ questions, answers, imageSource, hasImage }, spec, out, 0);
  return { out, truncated };
};
const block = (out: Float32Array, [a, b]: [number, number]) => out.subarray(a, b);
const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));

describe("murmur3", () => {
  it("is pinned: trained models index their weights by it", () => {
    expect(murmur3("", 0)).toBe(0);
    expect(murmur3("cat", 0)).toBe(974185772);
    expect(murmur3("dog", 0)).toBe(3925312010);
    expect(murmur3("what color", 1)).toBe(3586530735);
    expect(murmur3("日本", 17)).toBe(1845727501);
  });
});

describe("writeTextFeatures", () => {
  const layout = featureLayout(spec);

  it("lays the blocks out in manifest order and fills only its own blocks", () => {
    expect(layout.image[1]).toBe(spec.dims);
    const { out } = row(["What color is the bus?"], ["Red"]);
    expect(norm(block(out, layout.question))).toBeCloseTo(1, 5);
    expect(norm(block(out, layout.answer))).toBeCloseTo(1, 5);
    expect(block(out, layout.source).reduce((a, v) => a + v, 0)).toBe(1);
    expect(block(out, layout.image).every((v) => v === 0)).toBe(true);
    expect(
      block(out, layout.form)
        .subarray(FORM_FEATURES_USED_V2)
        .every((v) => v === 0),
    ).toBe(true);
  });

  it("v2 says whether the answer picks one of the question's labelled options, by label or by text", () => {
    const f = (q: string, a: string, kind: "mmssr-hashed/v1" | "mmssr-hashed/v2" = "mmssr-hashed/v2") => {
      const out = new Float32Array(spec.dims);
      writeTextFeatures(
        { questions: [q], answers: [a], imageSource: "x", hasImage: false },
        { ...spec, kind },
        out,
        0,
      );
      return Array.from(block(out, layout.form).subarray(FORM_FEATURES_USED, FORM_FEATURES_USED_V2));
    };
    const q = "Context: A food web.\nWhich is a producer?\nA. hawk\nB. grass\nC. frog";
    expect(f(q, "B")).toEqual([1, 0, 0, 1]);
    expect(f(q, "The answer is (B).")).toEqual([1, 0, 0, 1]);
    expect(f(q, "grass")).toEqual([0, 1, 0, 1]);
    expect(f(q, "E")).toEqual([0, 0, 0, 1]); // not one of the labels
    expect(f("What is the total?", "$12.50")).toEqual([0, 0, 1, 0]);
    expect(f("What is the value in 2019?", "42%")).toEqual([0, 0, 1, 0]);
    expect(f("What color is the bus?", "B")).toEqual([0, 0, 0, 0]); // a letter without options
    // options on one line
    expect(f("Which is a producer? A. hawk B. grass C. frog", "B")).toEqual([1, 0, 0, 0]);
    expect(f("Which is a producer? (A) hawk (B) grass", "grass")).toEqual([0, 1, 0, 0]);
    expect(f("Is it in Area B. near the gate?", "B")).toEqual([0, 0, 0, 0]); // no A first: not options
    // v1 models were trained without these: their inputs must not change.
    expect(f(q, "B", "mmssr-hashed/v1")).toEqual([0, 0, 0, 0]);
  });

  it("is deterministic and case-insensitive", () => {
    const a = row(["What COLOR is the bus?"], ["Red"]).out;
    const b = row(["what color is the bus?"], ["red"]).out;
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it("separates questions from answers", () => {
    const a = row(["red"], ["blue"]).out;
    const b = row(["blue"], ["red"]).out;
    expect(Array.from(a)).not.toEqual(Array.from(b));
  });

  it("describes the answer's form", () => {
    const f = (q: string, a: string) => block(row([q], [a]).out, layout.form);
    const options = f("Which is it?\nA. cat\nB. dog\nC. cow", "B");
    expect(options[4]).toBeGreaterThan(0); // option lines in the question
    expect(options[8]).toBe(1); // short answer
    expect(f("Is it a cat?", "Yes, it is.")[6]).toBe(1); // yes/no
    expect(f("Where is the cat?", "[0.10, 0.20, 0.30, 0.40]")[7]).toBeGreaterThan(0); // box
    expect(f("How many?", "First, count the cats. Then add. Therefore 3.")[10]).toBeGreaterThan(0); // steps
    expect(f("Answer with a single word.", "Cat")[14]).toBeGreaterThan(0); // format instruction
    expect(row(["q"], ["a"], "coco", false).out[layout.form[0] + 12]).toBe(0); // no image
  });

  it("flags text cut at maxChars and stays finite on any text", () => {
    const long = "word ".repeat(5000);
    const { out, truncated } = row([long], [long]);
    expect(truncated).toBe(true);
    expect(out.every(Number.isFinite)).toBe(true);
    const empty = row([""], [""]);
    expect(empty.truncated).toBe(false);
    expect(empty.out.every(Number.isFinite)).toBe(true);
  });

  it("tokenizes letters and digits of any script", () => {
    expect(tokenize("Hello, 世界! x2 — ok")).toEqual(["hello", "世界", "x2", "ok"]);
  });
});

describe("the featurizer behind the committed model", () => {
  it("is pinned: a change here needs `npm run build:model` and this hash updated together", async () => {
    const { readFileSync } = await import("node:fs");
    const { createHash } = await import("node:crypto");
    const { createSampleFeaturizer } = await import("./featurize-samples.js");
    const { validateSample } = await import("../domain/sample.js");
    const path = new URL("../../test/fixtures/samples/llava_instruct_20.json", import.meta.url);
    const samples = (JSON.parse(readFileSync(path, "utf8")) as unknown[]).map((r) => {
      const v = validateSample(r);
      if (!v.ok) throw new Error("fixture record invalid");
      return v.sample;
    });
    const { features } = await createSampleFeaturizer(spec).featurize(samples);
    const digest = createHash("sha256").update(Buffer.from(features.buffer)).digest("hex");
    expect(digest).toBe("973da21b99ffb7358750ccfe5691fa9b84e3236d14c6e9ab5096e42fb3a079fd");
  });
});
