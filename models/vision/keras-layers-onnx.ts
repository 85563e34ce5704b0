/**
 * A small, strict converter from a TF.js *layers* model (the Keras functional `model_config` of a
 * model.json plus its weightsManifest and binary weights) to an ONNX model (opset 13), written
 * with the onnx-proto protobuf classes like src/scoring/onnx-graph.ts.
 *
 * It covers the layers of Keras' MobileNetV2 with a dense head, and refuses anything else by
 * name (an unknown layer class, an activation, a data format or an option it does not map
 * exactly), so a converted graph is either faithful or not written:
 *
 *   InputLayer          graph input, NHWC float32 [batch, H, W, C] (values 0..255), then
 *                       Transpose to NCHW and Div by `inputDivisor` (nsfwjs: x / 255)
 *   ZeroPadding2D       merged into the explicit `pads` of the Conv that consumes it (its only
 *                       consumer, 'valid' padding), otherwise an ONNX Pad
 *   Conv2D              Conv (kernel [kh, kw, in, out] -> [out, in, kh, kw]); 'same' padding
 *                       as TF computes it (total = max((ceil(n/s) - 1) s + (k - 1) d + 1 - n, 0),
 *                       the smaller half before, the larger after), always as explicit pads
 *   DepthwiseConv2D     Conv with group = in channels (kernel [kh, kw, in, m] -> [in m, 1, kh, kw],
 *                       output channel c m + j as TF orders it)
 *   BatchNormalization  folded into the preceding Conv when that Conv is linear and the BN is its
 *                       only consumer (w' = w g / sqrt(v + eps), b' = (b - mean) g / sqrt(v + eps)
 *                       + beta, in float64, rounded once to float32); otherwise ONNX
 *                       BatchNormalization
 *   ReLU                Relu, or Clip(0, max_value) (ReLU6); negative_slope / threshold must be 0
 *   Add                 Add
 *   AveragePooling2D    GlobalAveragePool when the 'valid' window covers the whole map, else
 *                       AveragePool
 *   Flatten             Flatten (through an NHWC Transpose when H x W > 1, so the order is
 *                       Keras' channels_last order)
 *   Dropout             nothing (inference)
 *   Dense               Gemm, then Relu / Softmax(axis -1) / nothing for linear
 *
 * Deterministic: the same topology and weights give the same bytes (no timestamps, nodes and
 * initializers in layer order).
 */
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;
type TensorProto = onnxProto.onnx.TensorProto;
type NodeProto = onnxProto.onnx.NodeProto;
type AttributeProto = onnxProto.onnx.AttributeProto;

export const ONNX_OPSET = 13;
export const ONNX_IR_VERSION = 8;

export interface KerasLayer {
  name: string;
  class_name: string;
  config: Record<string, unknown>;
  inbound_nodes: unknown[];
}

export interface KerasModelConfig {
  class_name: string;
  config: {
    name: string;
    layers: KerasLayer[];
    input_layers: unknown[];
    output_layers: unknown[];
  };
}

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; min?: number; scale?: number };
}

export interface Weight {
  shape: number[];
  values: Float32Array;
}

export class ConversionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConversionError";
  }
}

function fail(message: string): never {
  throw new ConversionError(message);
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** IEEE 754 half -> float (exact). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

/**
 * Decodes the concatenated weight shards as TF.js does (tfjs-core io_utils decodeWeight):
 * specs in manifest order, each `prod(shape)` values; uint8 / uint16 quantization dequantized as
 * `q * scale + min` (float64, stored as float32), float16 quantization converted exactly, plain
 * float32 read little-endian. Every byte must be consumed.
 */
export function decodeWeights(specs: readonly WeightSpec[], data: Uint8Array): Map<string, Weight> {
  const out = new Map<string, Weight>();
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let offset = 0;
  for (const spec of specs) {
    if (spec.dtype !== "float32") fail(`weight ${spec.name}: dtype ${spec.dtype} is not supported`);
    const n = product(spec.shape);
    const values = new Float32Array(n);
    const q = spec.quantization;
    let bytes: number;
    if (q === undefined) {
      bytes = 4;
      if (offset + n * bytes > data.length) fail(`weight ${spec.name}: runs past the end of the shards`);
      for (let i = 0; i < n; i++) values[i] = view.getFloat32(offset + 4 * i, true);
    } else if (q.dtype === "uint8" || q.dtype === "uint16") {
      if (typeof q.min !== "number" || typeof q.scale !== "number")
        fail(`weight ${spec.name}: ${q.dtype} quantization without min and scale`);
      bytes = q.dtype === "uint8" ? 1 : 2;
      if (offset + n * bytes > data.length) fail(`weight ${spec.name}: runs past the end of the shards`);
      for (let i = 0; i < n; i++) {
        const v = bytes === 1 ? data[offset + i] : view.getUint16(offset + 2 * i, true);
        values[i] = v * q.scale + q.min;
      }
    } else if (q.dtype === "float16") {
      bytes = 2;
      if (offset + n * bytes > data.length) fail(`weight ${spec.name}: runs past the end of the shards`);
      for (let i = 0; i < n; i++) values[i] = halfToFloat(view.getUint16(offset + 2 * i, true));
    } else {
      fail(`weight ${spec.name}: unknown quantization dtype ${q.dtype}`);
    }
    if (out.has(spec.name)) fail(`weight ${spec.name} appears twice in the manifest`);
    out.set(spec.name, { shape: [...spec.shape], values });
    offset += n * bytes;
  }
  if (offset !== data.length)
    fail(`the weight shards hold ${data.length} bytes but the manifest describes ${offset}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// ONNX helpers

function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  const raw = new Uint8Array(data.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return onnx.TensorProto.create({ name, dims, dataType: onnx.TensorProto.DataType.FLOAT, rawData: raw });
}

function int64Tensor(name: string, values: number[]): TensorProto {
  const raw = new Uint8Array(values.length * 8);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) view.setBigInt64(i * 8, BigInt(values[i]), true);
  return onnx.TensorProto.create({
    name,
    dims: [values.length],
    dataType: onnx.TensorProto.DataType.INT64,
    rawData: raw,
  });
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

const A = onnx.AttributeProto.AttributeType;

function attrInts(name: string, ints: number[]): AttributeProto {
  return onnx.AttributeProto.create({ name, type: A.INTS, ints });
}
function attrInt(name: string, i: number): AttributeProto {
  return onnx.AttributeProto.create({ name, type: A.INT, i });
}
function attrFloat(name: string, f: number): AttributeProto {
  return onnx.AttributeProto.create({ name, type: A.FLOAT, f });
}

// ---------------------------------------------------------------------------------------------
// Conversion

/** NCHW shape without the batch: [C, H, W] for maps, [F] after Flatten / Dense. */
type Shape = number[];

interface Value {
  /** ONNX tensor name */
  name: string;
  shape: Shape;
}

export interface ConvertOptions {
  /** graph input name (NHWC float32, values 0..255) */
  inputName: string;
  /** the input is divided by this before the first layer (nsfwjs: 255) */
  inputDivisor: number;
  /** Keras layer whose output becomes the graph output `embeddingName` */
  embeddingLayer: string;
  embeddingName: string;
  /** name of the graph output of the model's (single) output layer */
  outputName: string;
  graphName: string;
  producerName: string;
  producerVersion: string;
  docString: string;
  /** written to ModelProto.metadata_props in the given order */
  metadata: [string, string][];
}

export interface ConversionSummary {
  layers: number;
  nodes: number;
  initializers: number;
  parameters: number;
  foldedBatchNorms: number;
  mergedPads: number;
  inputShape: number[];
  embeddingDims: number;
  outputDims: number;
  /** weights in the manifest that no layer used (should be empty) */
  unusedWeights: string[];
}

function str(cfg: Record<string, unknown>, key: string, layer: string): string {
  const v = cfg[key];
  if (typeof v !== "string") fail(`layer ${layer}: config.${key} is not a string`);
  return v;
}
function pair(cfg: Record<string, unknown>, key: string, layer: string): [number, number] {
  const v = cfg[key];
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isInteger(x)))
    fail(`layer ${layer}: config.${key} is not a pair of integers`);
  return [v[0] as number, v[1] as number];
}

function inboundNames(layer: KerasLayer): string[] {
  if (layer.inbound_nodes.length === 0) return [];
  if (layer.inbound_nodes.length !== 1)
    fail(`layer ${layer.name}: called ${layer.inbound_nodes.length} times (shared layers are not supported)`);
  const node = layer.inbound_nodes[0];
  if (!Array.isArray(node)) fail(`layer ${layer.name}: malformed inbound_nodes`);
  return node.map((entry) => {
    if (!Array.isArray(entry) || typeof entry[0] !== "string" || entry[1] !== 0 || entry[2] !== 0)
      fail(`layer ${layer.name}: inbound ${JSON.stringify(entry)} is not [layer, 0, 0, ...]`);
    return entry[0] as string;
  });
}

/** TF 'same' padding for one spatial dim: [before, after]. */
export function samePadding(
  size: number,
  kernel: number,
  stride: number,
  dilation: number,
): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

/** Converts the functional Keras model to ONNX bytes. */
export function kerasLayersToOnnx(
  model: KerasModelConfig,
  weights: Map<string, Weight>,
  options: ConvertOptions,
): { bytes: Uint8Array; summary: ConversionSummary } {
  if (model.class_name !== "Model" && model.class_name !== "Functional")
    fail(`model class ${model.class_name} is not a functional Keras model`);
  const layers = model.config.layers;
  const byName = new Map<string, KerasLayer>();
  for (const l of layers) {
    if (byName.has(l.name)) fail(`duplicate layer name ${l.name}`);
    byName.set(l.name, l);
  }
  const inputsOf = new Map<string, string[]>();
  const consumers = new Map<string, string[]>();
  for (const l of layers) {
    const ins = inboundNames(l);
    inputsOf.set(l.name, ins);
    for (const i of ins) {
      if (!byName.has(i)) fail(`layer ${l.name}: input ${i} does not exist`);
      const list = consumers.get(i) ?? [];
      list.push(l.name);
      consumers.set(i, list);
    }
  }
  const outLayers = model.config.output_layers;
  if (outLayers.length !== 1 || !Array.isArray(outLayers[0]) || typeof outLayers[0][0] !== "string")
    fail("the model must have exactly one output layer");
  const outputLayer = outLayers[0][0] as string;
  if (!byName.has(options.embeddingLayer)) fail(`embedding layer ${options.embeddingLayer} does not exist`);

  const used = new Set<string>();
  function weight(name: string, shape: number[]): Float32Array {
    const w = weights.get(name);
    if (!w) fail(`weight ${name} is missing from the manifest`);
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]))
      fail(`weight ${name} has shape [${w.shape}], expected [${shape}]`);
    used.add(name);
    return w.values;
  }

  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  let parameters = 0;
  function init(name: string, dims: number[], data: Float32Array): string {
    initializers.push(floatTensor(name, dims, data));
    parameters += data.length;
    return name;
  }
  function node(opType: string, inputs: string[], outputs: string[], attribute: AttributeProto[] = []) {
    nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: outputs,
        name: `${opType}_${outputs[0]}`,
        attribute,
      }),
    );
  }
  const shared = new Map<string, string>();
  function scalar(name: string, v: number): string {
    const have = shared.get(name);
    if (have) return have;
    initializers.push(floatTensor(name, [], new Float32Array([v])));
    shared.set(name, name);
    return name;
  }

  /** the value each Keras layer's output is (an alias for Dropout / folded BN / merged pad) */
  const values = new Map<string, Value>();
  /** ZeroPadding2D layers merged into their consumer: name -> [top, bottom, left, right] */
  const pendingPads = new Map<string, { input: Value; pads: [number, number, number, number] }>();
  /** BN layers folded into a conv: bn name -> conv name */
  const foldedInto = new Map<string, string>();
  let mergedPads = 0;
  let inputShape: number[] = [];

  const tensorName = (layer: string) =>
    layer === options.embeddingLayer
      ? options.embeddingName
      : layer === outputLayer
        ? options.outputName
        : layer;

  function only(list: string[] | undefined): string | undefined {
    return list && list.length === 1 ? list[0] : undefined;
  }

  function inputValue(layer: KerasLayer, index = 0): Value {
    const ins = inputsOf.get(layer.name) ?? [];
    const src = ins[index];
    const v = src === undefined ? undefined : values.get(src);
    if (!v) fail(`layer ${layer.name}: input ${src} has not been converted (layers out of order?)`);
    return v;
  }

  function activation(layer: KerasLayer, preName: string, outName: string): void {
    const act = str(layer.config, "activation", layer.name);
    if (act === "linear") {
      if (preName !== outName) fail(`internal: linear activation with a renamed output in ${layer.name}`);
    } else if (act === "relu") node("Relu", [preName], [outName]);
    else if (act === "softmax") node("Softmax", [preName], [outName], [attrInt("axis", -1)]);
    else fail(`layer ${layer.name}: activation ${act} is not supported`);
  }

  for (const layer of layers) {
    const cfg = layer.config;
    const cls = layer.class_name;
    const name = layer.name;
    if ("data_format" in cfg && cfg.data_format !== "channels_last")
      fail(`layer ${name}: data_format ${String(cfg.data_format)} is not supported`);
    switch (cls) {
      case "InputLayer": {
        const shape = cfg.batch_input_shape;
        if (
          !Array.isArray(shape) ||
          shape.length !== 4 ||
          shape[0] !== null ||
          !shape.slice(1).every((d) => Number.isInteger(d))
        )
          fail(`input ${name}: batch_input_shape ${JSON.stringify(shape)} is not [null, H, W, C]`);
        const [h, w, c] = shape.slice(1) as number[];
        inputShape = [h, w, c];
        node("Transpose", [options.inputName], ["input_nchw"], [attrInts("perm", [0, 3, 1, 2])]);
        node("Div", ["input_nchw", scalar("input_divisor", options.inputDivisor)], [tensorName(name)]);
        values.set(name, { name: tensorName(name), shape: [c, h, w] });
        break;
      }
      case "ZeroPadding2D": {
        const p = cfg.padding;
        if (
          !Array.isArray(p) ||
          p.length !== 2 ||
          !p.every((q) => Array.isArray(q) && q.length === 2 && q.every((x) => Number.isInteger(x) && x >= 0))
        )
          fail(`layer ${name}: padding ${JSON.stringify(p)} is not [[top, bottom], [left, right]]`);
        const [[t, b], [l, r]] = p as number[][];
        const input = inputValue(layer);
        const next = only(consumers.get(name));
        const nextLayer = next === undefined ? undefined : byName.get(next);
        if (
          nextLayer &&
          (nextLayer.class_name === "Conv2D" || nextLayer.class_name === "DepthwiseConv2D") &&
          nextLayer.config.padding === "valid"
        ) {
          pendingPads.set(name, { input, pads: [t, b, l, r] });
          mergedPads++;
          break;
        }
        const [c, h, w] = input.shape;
        const padsName = `${name}.pads`;
        initializers.push(int64Tensor(padsName, [0, 0, t, l, 0, 0, b, r]));
        node("Pad", [input.name, padsName], [tensorName(name)], []);
        values.set(name, { name: tensorName(name), shape: [c, h + t + b, w + l + r] });
        break;
      }
      case "Conv2D":
      case "DepthwiseConv2D": {
        const depthwise = cls === "DepthwiseConv2D";
        const src = (inputsOf.get(name) ?? [])[0];
        const pending = src === undefined ? undefined : pendingPads.get(src);
        const input = pending ? pending.input : inputValue(layer);
        const [cin, hin, win] = input.shape;
        const [kh, kw] = pair(cfg, "kernel_size", name);
        const [sh, sw] = pair(cfg, "strides", name);
        const [dh, dw] = pair(cfg, "dilation_rate", name);
        const padding = str(cfg, "padding", name);
        let [pt, pb, pl, pr] = pending ? pending.pads : [0, 0, 0, 0];
        const hp = hin + pt + pb;
        const wp = win + pl + pr;
        if (padding === "same") {
          if (pending) fail(`layer ${name}: explicit padding before a 'same' conv is not merged`);
          [pt, pb] = samePadding(hin, kh, sh, dh);
          [pl, pr] = samePadding(win, kw, sw, dw);
        } else if (padding !== "valid") fail(`layer ${name}: padding ${padding} is not supported`);
        const hout =
          padding === "same" ? Math.ceil(hin / sh) : Math.floor((hp - ((kh - 1) * dh + 1)) / sh) + 1;
        const wout =
          padding === "same" ? Math.ceil(win / sw) : Math.floor((wp - ((kw - 1) * dw + 1)) / sw) + 1;
        if (hout < 1 || wout < 1) fail(`layer ${name}: empty output`);

        let cout: number;
        let onnxKernel: Float32Array;
        let kernelDims: number[];
        if (depthwise) {
          const mult = cfg.depth_multiplier;
          if (!Number.isInteger(mult) || (mult as number) < 1)
            fail(`layer ${name}: depth_multiplier ${String(mult)}`);
          const m = mult as number;
          const k = weight(`${name}/depthwise_kernel`, [kh, kw, cin, m]);
          cout = cin * m;
          kernelDims = [cout, 1, kh, kw];
          onnxKernel = new Float32Array(cout * kh * kw);
          for (let y = 0; y < kh; y++)
            for (let x = 0; x < kw; x++)
              for (let c = 0; c < cin; c++)
                for (let j = 0; j < m; j++)
                  onnxKernel[(c * m + j) * kh * kw + y * kw + x] = k[((y * kw + x) * cin + c) * m + j];
        } else {
          const filters = cfg.filters;
          if (!Number.isInteger(filters)) fail(`layer ${name}: filters ${String(filters)}`);
          cout = filters as number;
          if (cfg.groups !== undefined && cfg.groups !== 1) fail(`layer ${name}: grouped Conv2D`);
          const k = weight(`${name}/kernel`, [kh, kw, cin, cout]);
          kernelDims = [cout, cin, kh, kw];
          onnxKernel = new Float32Array(cout * cin * kh * kw);
          for (let y = 0; y < kh; y++)
            for (let x = 0; x < kw; x++)
              for (let i = 0; i < cin; i++)
                for (let o = 0; o < cout; o++)
                  onnxKernel[((o * cin + i) * kh + y) * kw + x] = k[((y * kw + x) * cin + i) * cout + o];
        }
        const useBias = cfg.use_bias === true;
        const bias = new Float64Array(cout);
        if (useBias) {
          const b = weight(`${name}/bias`, [cout]);
          for (let o = 0; o < cout; o++) bias[o] = b[o];
        }
        // Fold a following BatchNormalization (only consumer, linear conv) into kernel and bias.
        const next = only(consumers.get(name));
        const bn = next === undefined ? undefined : byName.get(next);
        const act = str(cfg, "activation", name);
        let outLayer = name;
        let kernel: Float32Array = onnxKernel;
        let biasOut: Float32Array | undefined = useBias ? Float32Array.from(bias) : undefined;
        if (bn && bn.class_name === "BatchNormalization" && act === "linear") {
          const { gamma, beta, mean, variance, eps } = bnParams(bn, cout, weight);
          const perOut = kernel.length / cout;
          kernel = new Float32Array(kernel.length);
          biasOut = new Float32Array(cout);
          for (let o = 0; o < cout; o++) {
            const s = gamma[o] / Math.sqrt(variance[o] + eps);
            for (let i = 0; i < perOut; i++) kernel[o * perOut + i] = onnxKernel[o * perOut + i] * s;
            biasOut[o] = (bias[o] - mean[o]) * s + beta[o];
          }
          foldedInto.set(bn.name, name);
          outLayer = bn.name;
        }
        const out = tensorName(outLayer);
        const convOut = act === "linear" ? out : `${name}.pre`;
        const inputs = [input.name, init(`${name}.weight`, kernelDims, kernel)];
        if (biasOut) inputs.push(init(`${name}.bias`, [cout], biasOut));
        const attrs = [
          attrInts("kernel_shape", [kh, kw]),
          attrInts("strides", [sh, sw]),
          attrInts("dilations", [dh, dw]),
          attrInts("pads", [pt, pl, pb, pr]),
        ];
        if (depthwise) attrs.push(attrInt("group", cin));
        node("Conv", inputs, [convOut], attrs);
        if (act !== "linear") activation(layer, convOut, out);
        values.set(outLayer, { name: out, shape: [cout, hout, wout] });
        break;
      }
      case "BatchNormalization": {
        if (foldedInto.has(name)) break; // already emitted with its conv
        const input = inputValue(layer);
        if (cfg.axis !== -1 && cfg.axis !== 3) fail(`layer ${name}: axis ${String(cfg.axis)}`);
        const c = input.shape[0];
        if (input.shape.length !== 3) fail(`layer ${name}: BatchNormalization on a flat tensor`);
        const { gamma, beta, mean, variance, eps } = bnParams(layer, c, weight);
        node(
          "BatchNormalization",
          [
            input.name,
            init(`${name}.scale`, [c], Float32Array.from(gamma)),
            init(`${name}.bias`, [c], Float32Array.from(beta)),
            init(`${name}.mean`, [c], Float32Array.from(mean)),
            init(`${name}.var`, [c], Float32Array.from(variance)),
          ],
          [tensorName(name)],
          [attrFloat("epsilon", eps)],
        );
        values.set(name, { name: tensorName(name), shape: input.shape });
        break;
      }
      case "ReLU": {
        const input = inputValue(layer);
        if ((cfg.negative_slope ?? 0) !== 0 || (cfg.threshold ?? 0) !== 0)
          fail(`layer ${name}: ReLU with negative_slope/threshold is not supported`);
        const max = cfg.max_value;
        if (max === null || max === undefined) node("Relu", [input.name], [tensorName(name)]);
        else if (typeof max === "number")
          node(
            "Clip",
            [input.name, scalar("clip_min_0", 0), scalar(`clip_max_${max}`, max)],
            [tensorName(name)],
          );
        else fail(`layer ${name}: max_value ${String(max)}`);
        values.set(name, { name: tensorName(name), shape: input.shape });
        break;
      }
      case "Add": {
        const ins = inputsOf.get(name) ?? [];
        if (ins.length < 2) fail(`layer ${name}: Add of ${ins.length} inputs`);
        const first = inputValue(layer, 0);
        let acc = first.name;
        for (let i = 1; i < ins.length; i++) {
          const v = inputValue(layer, i);
          if (v.shape.join() !== first.shape.join()) fail(`layer ${name}: Add of different shapes`);
          const out = i === ins.length - 1 ? tensorName(name) : `${name}.${i}`;
          node("Add", [acc, v.name], [out]);
          acc = out;
        }
        values.set(name, { name: tensorName(name), shape: first.shape });
        break;
      }
      case "AveragePooling2D": {
        const input = inputValue(layer);
        const [c, h, w] = input.shape;
        const [ph, pw] = pair(cfg, "pool_size", name);
        const [sh, sw] = pair(cfg, "strides", name);
        if (cfg.padding !== "valid") fail(`layer ${name}: padding ${String(cfg.padding)} is not supported`);
        const hout = Math.floor((h - ph) / sh) + 1;
        const wout = Math.floor((w - pw) / sw) + 1;
        if (ph === h && pw === w) node("GlobalAveragePool", [input.name], [tensorName(name)]);
        else
          node(
            "AveragePool",
            [input.name],
            [tensorName(name)],
            [attrInts("kernel_shape", [ph, pw]), attrInts("strides", [sh, sw])],
          );
        values.set(name, { name: tensorName(name), shape: [c, hout, wout] });
        break;
      }
      case "Flatten": {
        const input = inputValue(layer);
        let src = input.name;
        if (input.shape.length === 3 && input.shape[1] * input.shape[2] > 1) {
          node("Transpose", [src], [`${name}.nhwc`], [attrInts("perm", [0, 2, 3, 1])]);
          src = `${name}.nhwc`;
        }
        node("Flatten", [src], [tensorName(name)], [attrInt("axis", 1)]);
        values.set(name, { name: tensorName(name), shape: [product(input.shape)] });
        break;
      }
      case "Dropout": {
        values.set(name, inputValue(layer));
        break;
      }
      case "Dense": {
        const input = inputValue(layer);
        if (input.shape.length !== 1) fail(`layer ${name}: Dense on a map (flatten first)`);
        const units = cfg.units;
        if (!Number.isInteger(units)) fail(`layer ${name}: units ${String(units)}`);
        const u = units as number;
        const fin = input.shape[0];
        const ins = [input.name, init(`${name}.weight`, [fin, u], weight(`${name}/kernel`, [fin, u]))];
        if (cfg.use_bias !== false) ins.push(init(`${name}.bias`, [u], weight(`${name}/bias`, [u])));
        const act = str(cfg, "activation", name);
        const out = tensorName(name);
        const pre = act === "linear" ? out : `${name}.pre`;
        node("Gemm", ins, [pre]);
        activation(layer, pre, out);
        values.set(name, { name: out, shape: [u] });
        break;
      }
      default:
        fail(`layer ${name}: class ${cls} is not supported`);
    }
  }

  const embedding = values.get(options.embeddingLayer);
  const output = values.get(outputLayer);
  if (!embedding || embedding.name !== options.embeddingName)
    fail(`embedding layer ${options.embeddingLayer} did not produce a tensor of its own`);
  if (!output || output.name !== options.outputName) fail(`output layer ${outputLayer} is not a Dense layer`);
  if (embedding.shape.length !== 1) fail(`embedding layer ${options.embeddingLayer} is not flat`);
  const unusedWeights = [...weights.keys()].filter((k) => !used.has(k));
  if (unusedWeights.length > 0) fail(`weights not used by any layer: ${unusedWeights.join(", ")}`);

  const graph = onnx.GraphProto.create({
    name: options.graphName,
    node: nodes,
    initializer: initializers,
    input: [floatValueInfo(options.inputName, ["batch", ...inputShape])],
    output: [
      floatValueInfo(options.embeddingName, ["batch", embedding.shape[0]]),
      floatValueInfo(options.outputName, ["batch", output.shape[0]]),
    ],
  });
  const modelProto = onnx.ModelProto.create({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [onnx.OperatorSetIdProto.create({ domain: "", version: ONNX_OPSET })],
    producerName: options.producerName,
    producerVersion: options.producerVersion,
    docString: options.docString,
    graph,
    metadataProps: options.metadata.map(([key, value]) => onnx.StringStringEntryProto.create({ key, value })),
  });
  const bytes = onnx.ModelProto.encode(modelProto).finish();
  return {
    bytes,
    summary: {
      layers: layers.length,
      nodes: nodes.length,
      initializers: initializers.length,
      parameters,
      foldedBatchNorms: foldedInto.size,
      mergedPads,
      inputShape,
      embeddingDims: embedding.shape[0],
      outputDims: output.shape[0],
      unusedWeights,
    },
  };
}

function bnParams(
  bn: KerasLayer,
  c: number,
  weight: (name: string, shape: number[]) => Float32Array,
): { gamma: Float64Array; beta: Float64Array; mean: Float64Array; variance: Float64Array; eps: number } {
  const cfg = bn.config;
  if (cfg.axis !== -1 && cfg.axis !== 3) fail(`layer ${bn.name}: axis ${String(cfg.axis)}`);
  const eps = cfg.epsilon;
  if (typeof eps !== "number") fail(`layer ${bn.name}: epsilon ${String(eps)}`);
  const ones = new Float64Array(c).fill(1);
  const zeros = new Float64Array(c);
  const gamma = cfg.scale === false ? ones : Float64Array.from(weight(`${bn.name}/gamma`, [c]));
  const beta = cfg.center === false ? zeros : Float64Array.from(weight(`${bn.name}/beta`, [c]));
  const mean = Float64Array.from(weight(`${bn.name}/moving_mean`, [c]));
  const variance = Float64Array.from(weight(`${bn.name}/moving_variance`, [c]));
  return { gamma, beta, mean, variance, eps };
}
