import { describe, expect, it } from "vitest";
import { auc, measure } from "../../models/eval-weak-labels.js";
import { WEAK_SOURCES, type WeakRecord } from "../../models/weak-labelled-corpus.js";
import { capabilityIndex, NUM_CAPABILITIES, NUM_STYLES, type StyleName } from "../../src/domain/taxonomy.js";
import type { SampleScore } from "../../src/scoring/scoring-types.js";

describe("auc", () => {
  it("is the chance that a positive outscores a negative, ties counting half", () => {
    expect(auc([3, 4], [1, 2])).toBe(1);
    expect(auc([1, 2], [3, 4])).toBe(0);
    expect(auc([1, 1], [1, 1])).toBe(0.5);
    expect(auc([2, 3], [1, 2])).toBe(0.875);
    expect(Number.isNaN(auc([], [1]))).toBe(true);
  });
});

describe("measure", () => {
  const rec = (source: string, expected: StyleName[], contradicting: StyleName[]): WeakRecord => ({
    sample: { id: source, image_source: "unknown", conversations: [] },
    source: WEAK_SOURCES[source],
    expectedStyles: expected,
    contradictingStyles: contradicting,
  });
  const score = (ocr: number, styles: StyleName[]): SampleScore => {
    const scores = new Float32Array(NUM_CAPABILITIES).fill(1);
    scores[capabilityIndex("ocr")] = ocr;
    return { scores, styles, styleProbabilities: new Float32Array(NUM_STYLES), flags: [] };
  };

  it("counts expected and contradicting styles per record and ranks documents against photos on ocr", () => {
    const records = [
      rec("docvqa", ["word/short-phrase"], ["multi-choice"]),
      rec("sroie", ["word/short-phrase"], ["multi-choice"]),
      rec("gqa", ["yes/no"], ["multi-choice"]),
      rec("vsr", ["yes/no"], ["multi-choice"]),
    ];
    const m = measure(records, [
      score(4, ["word/short-phrase"]),
      score(2, ["multi-choice"]),
      score(3, ["yes/no"]),
      score(1, ["yes/no"]),
    ]);
    expect(m.expectedStyleTagged).toBe(0.75);
    expect(m.contradictingStyleTagged).toBe(0.25);
    expect(m.aucOcrDocumentVsPhoto).toBe(0.75);
    expect(Number.isNaN(m.aucDataChartVsPhoto)).toBe(true); // no chart records
  });
});
