/**
 * fit -> export -> load: the ONNX model that fit writes, run by onnxruntime-node in the worker
 * pool, gives what the TypeScript forward pass of the trained weights gives (within 1e-5), and
 * the model folder passes the contract checks.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { syntheticSamples } from "../../../models/synthetic-samples.js";
import { styleIndex } from "../../domain/taxonomy.js";
import { createSampleFeaturizer } from "../featurize-samples.js";
import { loadModel } from "../model-manifest.js";
import { mlpForward } from "../onnx-graph.js";
import { createOnnxScorer } from "../onnx-scorer.js";
import { ruleTeacherLabel } from "../rule-teacher.js";
import type { FeatureSpec } from "../scoring-types.js";
import { fitModel, type LabelledSample } from "./fit-model.js";

const SPEC: FeatureSpec = {
  kind: "mmssr-hashed/v1",
  dims: 256 + 256 + 16 + 32 + 39,
  text: { questionDims: 256, answerDims: 256, ngrams: [1, 2], maxChars: 4000, hashSeed: 3 },
  sourceDims: 16,
  formDims: 32,
  image: { size: 32, dims: 39 },
};

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function labelled(n: number, seed: number): LabelledSample[] {
  return syntheticSamples(n, seed).map((sample) => {
    const label = ruleTeacherLabel(sample);
    let styleMask = 0;
    for (const s of label.styles) styleMask |= 1 << styleIndex(s);
    return { sample, scores: label.scores, styleMask };
  });
}

describe("fitModel", () => {
  it("writes a contract model whose ONNX outputs equal the TypeScript forward pass", async () => {
    const out = await mkdtemp(join(tmpdir(), "mmssr-fit-"));
    dirs.push(out);
    const data = labelled(600, 5);
    const featurizer = createSampleFeaturizer(SPEC);
    const result = await fitModel(data, featurizer, {
      outDir: out,
      id: "fit-test",
      version: "0.0.1",
      teacher: "rule-teacher@1",
      train: { hidden: 16, epochs: 25, learningRate: 5e-3, seed: 1 },
    });
    expect(result.trainSize + result.holdoutSize).toBe(600);
    expect(result.holdoutSize).toBeGreaterThan(60);
    // the teacher is learnable: styles come from answer form, which the form features carry
    const meanF1 =
      result.fidelity.styles.filter((s) => s.support > 0).reduce((a, s) => a + (s.f1 || 0), 0) /
      result.fidelity.styles.filter((s) => s.support > 0).length;
    expect(meanF1).toBeGreaterThan(0.5);

    const loaded = await loadModel(out); // sha256 and schema checked
    expect(loaded.manifest.teacher).toBe("rule-teacher@1");

    const samples = syntheticSamples(50, 99);
    const { features } = await featurizer.featurize(samples);
    const expected = mlpForward(result.weights, features, samples.length);
    const scorer = await createOnnxScorer({ modelDir: out, workers: 2, batchSize: 16 });
    try {
      const got = await scorer.score(samples);
      got.forEach((g, i) => {
        for (let c = 0; c < 14; c++)
          expect(Math.abs(g.scores[c] - expected.scores[i * 14 + c])).toBeLessThan(1e-5);
        for (let s = 0; s < 9; s++)
          expect(Math.abs(g.styleProbabilities[s] - expected.styles[i * 9 + s])).toBeLessThan(1e-5);
      });
    } finally {
      await scorer.close();
    }
  });

  it("refuses a split with nothing held out", async () => {
    const out = await mkdtemp(join(tmpdir(), "mmssr-fit-"));
    dirs.push(out);
    await expect(
      fitModel(labelled(3, 1), createSampleFeaturizer(SPEC), {
        outDir: out,
        id: "x",
        version: "1",
        teacher: "t",
        holdoutModulo: 1000,
      }),
    ).rejects.toThrow(/hold-out split/);
  });
});
