/**
 * Builds the student's ONNX graph in TypeScript with the onnx-proto protobuf classes, and runs the
 * same computation in TypeScript (mlpForward) so tests can check the export against ORT.
 *
 *   h      = Relu(features · W1 + b1)              [N, hidden]
 *   scores = Sigmoid(h · Ws + bs) * 5              [N, 14]   (CAPABILITIES order, 0..5)
 *   styles = Sigmoid(h · Wt + bt)                  [N, 9]    (STYLES order, probabilities)
 *
 * Opset 13, IR version 8; the batch dimension is symbolic ("batch").
 */
import onnxProto from "onnx-proto";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { NUM_CAPABILITIES, NUM_STYLES, SCORE_MAX } from "../domain/taxonomy.js";

const { onnx } = onnxProto;

export interface MlpWeights {
  inputDims: number;
  hidden: number;
  /** [inputDims * hidden], row-major (row = input dim) */
  w1: Float32Array;
  /** [hidden] */
  b1: Float32Array;
  /** [hidden * 14], row-major */
  wScores: Float32Array;
  /** [14] */
  bScores: Float32Array;
  /** [hidden * 9], row-major */
  wStyles: Float32Array;
  /** [9] */
  bStyles: Float32Array;
}

export interface MlpModelMeta {
  producer: string;
  producerVersion?: string;
  docString?: string;
}

export const MLP_INPUT_NAME = "features";
export const MLP_SCORES_NAME = "scores";
export const MLP_STYLES_NAME = "styles";
export const MLP_OPSET = 13;
export const MLP_IR_VERSION = 8;

/** Throws BAD_OPTIONS when an array's length does not match the declared dimensions. */
export function checkMlpWeights(w: MlpWeights): void {
  const want: [string, Float32Array, number][] = [
    ["w1", w.w1, w.inputDims * w.hidden],
    ["b1", w.b1, w.hidden],
    ["wScores", w.wScores, w.hidden * NUM_CAPABILITIES],
    ["bScores", w.bScores, NUM_CAPABILITIES],
    ["wStyles", w.wStyles, w.hidden * NUM_STYLES],
    ["bStyles", w.bStyles, NUM_STYLES],
  ];
  if (!Number.isInteger(w.inputDims) || w.inputDims < 1 || !Number.isInteger(w.hidden) || w.hidden < 1) {
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `MLP weights: inputDims (${w.inputDims}) and hidden (${w.hidden}) must be positive integers`,
    );
  }
  for (const [name, arr, len] of want) {
    if (arr.length !== len) {
      throw new MmssrError(
        ERROR_CODES.BAD_OPTIONS,
        `MLP weights: ${name} has ${arr.length} values, expected ${len}`,
      );
    }
  }
}

function floatTensor(name: string, dims: number[], data: Float32Array): onnxProto.onnx.TensorProto {
  // raw_data is little-endian; copy so the proto does not alias the caller's buffer.
  const raw = new Uint8Array(data.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return onnx.TensorProto.create({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw });
}

function floatValueInfo(name: string, dims: (number | string)[]): onnxProto.onnx.ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) =>
            typeof d === "string"
              ? onnx.TensorShapeProto.Dimension.create({ dimParam: d })
              : onnx.TensorShapeProto.Dimension.create({ dimValue: d }),
          ),
        }),
      }),
    }),
  });
}

function node(opType: string, inputs: string[], outputs: string[]): onnxProto.onnx.NodeProto {
  return onnx.NodeProto.create({ opType, input: inputs, output: outputs, name: `${opType}_${outputs[0]}` });
}

/** Serialises the MLP as an ONNX ModelProto. Deterministic: equal weights give equal bytes. */
export function buildMlpModel(weights: MlpWeights, meta: MlpModelMeta): Uint8Array {
  checkMlpWeights(weights);
  const { inputDims, hidden } = weights;
  const graph = onnx.GraphProto.create({
    name: "mmssr_mlp",
    initializer: [
      floatTensor("W1", [inputDims, hidden], weights.w1),
      floatTensor("b1", [hidden], weights.b1),
      floatTensor("Ws", [hidden, NUM_CAPABILITIES], weights.wScores),
      floatTensor("bs", [NUM_CAPABILITIES], weights.bScores),
      floatTensor("Wt", [hidden, NUM_STYLES], weights.wStyles),
      floatTensor("bt", [NUM_STYLES], weights.bStyles),
      floatTensor("score_max", [], new Float32Array([SCORE_MAX])),
    ],
    node: [
      node("MatMul", [MLP_INPUT_NAME, "W1"], ["h_mm"]),
      node("Add", ["h_mm", "b1"], ["h_pre"]),
      node("Relu", ["h_pre"], ["h"]),
      node("MatMul", ["h", "Ws"], ["s_mm"]),
      node("Add", ["s_mm", "bs"], ["s_pre"]),
      node("Sigmoid", ["s_pre"], ["s_prob"]),
      node("Mul", ["s_prob", "score_max"], [MLP_SCORES_NAME]),
      node("MatMul", ["h", "Wt"], ["t_mm"]),
      node("Add", ["t_mm", "bt"], ["t_pre"]),
      node("Sigmoid", ["t_pre"], [MLP_STYLES_NAME]),
    ],
    input: [floatValueInfo(MLP_INPUT_NAME, ["batch", inputDims])],
    output: [
      floatValueInfo(MLP_SCORES_NAME, ["batch", NUM_CAPABILITIES]),
      floatValueInfo(MLP_STYLES_NAME, ["batch", NUM_STYLES]),
    ],
  });
  const model = onnx.ModelProto.create({
    irVersion: MLP_IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: MLP_OPSET })],
    producerName: meta.producer,
    producerVersion: meta.producerVersion ?? "",
    docString: meta.docString ?? "",
    graph,
  });
  return onnx.ModelProto.encode(model).finish();
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/**
 * The MLP's forward pass in TypeScript. Each layer's sums are taken in float64 and rounded to
 * float32 where ONNX would hold a float32 tensor, so results match ORT to ~1e-6.
 * features: [n * inputDims] row-major.
 */
export function mlpForward(
  weights: MlpWeights,
  features: Float32Array,
  n: number,
): { scores: Float32Array; styles: Float32Array } {
  checkMlpWeights(weights);
  const { inputDims, hidden, w1, b1, wScores, bScores, wStyles, bStyles } = weights;
  if (features.length !== n * inputDims) {
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `mlpForward: features has ${features.length} values, expected n * inputDims = ${n} * ${inputDims}`,
    );
  }
  const f = Math.fround;
  const scores = new Float32Array(n * NUM_CAPABILITIES);
  const styles = new Float32Array(n * NUM_STYLES);
  const h = new Float64Array(hidden);
  for (let r = 0; r < n; r++) {
    const row = r * inputDims;
    h.fill(0);
    for (let i = 0; i < inputDims; i++) {
      const x = features[row + i];
      if (x === 0) continue;
      const wrow = i * hidden;
      for (let j = 0; j < hidden; j++) h[j] += x * w1[wrow + j];
    }
    for (let j = 0; j < hidden; j++) {
      const v = f(f(h[j]) + b1[j]);
      h[j] = Math.max(v, 0);
    }
    for (let k = 0; k < NUM_CAPABILITIES; k++) {
      let s = 0;
      for (let j = 0; j < hidden; j++) s += h[j] * wScores[j * NUM_CAPABILITIES + k];
      scores[r * NUM_CAPABILITIES + k] = f(f(sigmoid(f(f(s) + bScores[k]))) * SCORE_MAX);
    }
    for (let k = 0; k < NUM_STYLES; k++) {
      let s = 0;
      for (let j = 0; j < hidden; j++) s += h[j] * wStyles[j * NUM_STYLES + k];
      styles[r * NUM_STYLES + k] = f(sigmoid(f(f(s) + bStyles[k])));
    }
  }
  return { scores, styles };
}
