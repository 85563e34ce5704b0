import path from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { TINY_META, tinyInputs, tinyWeights } from "../../test/fixtures/models/tiny-weights.js";
import { ERROR_CODES } from "../domain/errors.js";
import { loadModel } from "./model-manifest.js";
import { buildMlpModel, type MlpWeights, mlpForward } from "./onnx-graph.js";

const { onnx } = onnxProto;

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function runOrt(bytes: Uint8Array, x: Float32Array, n: number, dims: number) {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ features: new ort.Tensor("float32", x, [n, dims]) });
    return { scores: out.scores.data as Float32Array, styles: out.styles.data as Float32Array, out };
  } finally {
    await session.release();
  }
}

/** Random weights of a given shape (seeded, so failures reproduce). */
function randomWeights(inputDims: number, hidden: number, seed: number): MlpWeights {
  let s = seed;
  const r = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return ((s / 2 ** 32) * 2 - 1) * scale;
    });
  return {
    inputDims,
    hidden,
    w1: r(inputDims * hidden, 0.3),
    b1: r(hidden, 0.1),
    wScores: r(hidden * 14, 0.5),
    bScores: r(14, 0.2),
    wStyles: r(hidden * 9, 0.5),
    bStyles: r(9, 0.2),
  };
}

describe("buildMlpModel", () => {
  it("writes an opset 13, IR 8 model with a symbolic batch dimension", () => {
    const bytes = buildMlpModel(tinyWeights(), { producer: "unit test", docString: "doc" });
    const model = onnx.ModelProto.decode(bytes);
    expect(Number(model.irVersion)).toBe(8);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([["", 13]]);
    expect(model.producerName).toBe("unit test");
    const dims = model.graph?.input?.[0].type?.tensorType?.shape?.dim ?? [];
    expect(dims.map((d) => d.dimParam || Number(d.dimValue))).toEqual(["batch", 48]);
    expect(model.graph?.output?.map((o) => o.name)).toEqual(["scores", "styles"]);
  });

  it("is deterministic: equal weights give equal bytes", () => {
    const a = buildMlpModel(tinyWeights(), { producer: "p" });
    const b = buildMlpModel(tinyWeights(), { producer: "p" });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it("rejects weights whose lengths do not match the dimensions", () => {
    const w = { ...tinyWeights(), b1: new Float32Array(3) };
    expect(() => buildMlpModel(w, { producer: "p" })).toThrow(
      expect.objectContaining({
        code: ERROR_CODES.BAD_OPTIONS,
        message: expect.stringMatching(/b1 has 3 values, expected 4/),
      }),
    );
  });

  it.each([
    [48, 4, 1, 1],
    [48, 4, 7, 2],
    [300, 32, 64, 3],
    [1000, 64, 33, 4],
  ])(
    "ORT on the built model equals mlpForward within 1e-5 (inputDims %i, hidden %i, batch %i)",
    async (dims, hidden, n, seed) => {
      const w = dims === 48 && hidden === 4 ? tinyWeights() : randomWeights(dims, hidden, seed);
      const x = new Float32Array(n * dims);
      for (let i = 0; i < x.length; i++) x[i] = i % 5 === 0 ? 0 : Math.sin(i * 0.13 + seed);
      const ref = mlpForward(w, x, n);
      const got = await runOrt(buildMlpModel(w, { producer: "p" }), x, n, dims);
      expect(got.out.scores.dims).toEqual([n, 14]);
      expect(got.out.styles.dims).toEqual([n, 9]);
      expect(maxAbsDiff(got.scores, ref.scores)).toBeLessThan(1e-5);
      expect(maxAbsDiff(got.styles, ref.styles)).toBeLessThan(1e-5);
      for (const v of ref.scores) expect(v >= 0 && v <= 5).toBe(true);
      for (const v of ref.styles) expect(v >= 0 && v <= 1).toBe(true);
    },
  );

  it("mlpForward rejects a feature array of the wrong length", () => {
    expect(() => mlpForward(tinyWeights(), new Float32Array(47), 1)).toThrow(
      /expected n \* inputDims = 1 \* 48/,
    );
  });
});

describe("tiny fixture model (test/fixtures/models/tiny)", () => {
  // Golden outputs of the committed tiny.onnx for row 0 of tinyInputs(): they change only if the
  // fixture is rebuilt with other weights (test/fixtures/models/build-tiny.ts).
  const GOLDEN_SCORES_ROW0 = [3.3656242, 3.3563092, 2.4455633, 1.7062546, 1.55096];
  const GOLDEN_STYLES_ROW0 = [0.23719797, 0.3508014, 0.9036884];

  it("gives its known outputs under ORT and matches mlpForward on the committed weights", async () => {
    const { onnxBytes, manifest } = await loadModel(path.resolve("test/fixtures/models/tiny"));
    const n = 5;
    const x = tinyInputs(n);
    const got = await runOrt(onnxBytes, x, n, manifest.input.dims);
    for (const [i, v] of GOLDEN_SCORES_ROW0.entries()) expect(got.scores[i]).toBeCloseTo(v, 5);
    for (const [i, v] of GOLDEN_STYLES_ROW0.entries()) expect(got.styles[i]).toBeCloseTo(v, 5);
    const ref = mlpForward(tinyWeights(), x, n);
    expect(maxAbsDiff(got.scores, ref.scores)).toBeLessThan(1e-5);
    expect(maxAbsDiff(got.styles, ref.styles)).toBeLessThan(1e-5);
  });

  it("the committed bytes equal a fresh build from the fixed weights", async () => {
    const { onnxBytes } = await loadModel(path.resolve("test/fixtures/models/tiny"));
    const fresh = buildMlpModel(tinyWeights(), TINY_META);
    expect(Buffer.from(onnxBytes).equals(Buffer.from(fresh))).toBe(true);
  });
});
