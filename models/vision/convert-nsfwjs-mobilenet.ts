/**
 * Converts the MobileNetV2 (224 x 224) that ships in the npm package nsfwjs@4.4.0 (MIT) from
 * TF.js layers format to ONNX, once and reproducibly, into models/vision/mobilenet-v2-nsfwjs/:
 *
 *   npx tsx models/vision/convert-nsfwjs-mobilenet.ts [--tarball nsfwjs-4.4.0.tgz] [--out DIR]
 *
 * 1. the tarball: `npm pack nsfwjs@4.4.0` into a temporary folder (or --tarball), its sha512
 *    checked against the pinned npm integrity (nsfwjs-package.ts);
 * 2. from it, in memory: dist/models/mobilenet_v2/model.min.js (a browserify wrapper around
 *    the model.json: a Keras 2.2.4 functional model, TF.js *layers* format) and
 *    group1-shard1of1.min.js (the base64 weight shard: 266 tensors, all uint8-quantized with
 *    per-tensor min/scale), dist/esm/nsfw_classes.js (the class names), dist/esm/core.js
 *    (checked to still preprocess as assumed: x / 255, bilinear resize with align_corners);
 * 3. the weights dequantized exactly as TF.js does, the graph converted by keras-layers-onnx.ts
 *    (BatchNorm folded into the convs, ReLU6 as Clip, ZeroPadding2D merged into explicit Conv
 *    pads), an NHWC float32 input `image` [batch, 224, 224, 3] holding RGB values 0..255 (the
 *    graph divides by 255), outputs `embedding` [batch, 1280] (the average-pooled last feature
 *    map, Keras layer flatten_1) and `probs` [batch, 5] (softmax, nsfwjs class order);
 * 4. written: model.onnx, manifest.json (source, integrity, layout, outputs, labels, sha256),
 *    LICENSE (verbatim from the package) and NOTICE.md (provenance). A smoke run in
 *    onnxruntime checks the shapes and that the probabilities sum to 1.
 *
 * Same tarball -> same bytes (no timestamps anywhere; the manifest's sha256 proves it).
 * Verification against TF.js itself: models/vision/verify-nsfwjs-mobilenet.ts.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { packageRoot } from "../../src/util/package-root.js";
import {
  decodeWeights,
  type KerasModelConfig,
  kerasLayersToOnnx,
  ONNX_OPSET,
  type WeightSpec,
} from "./keras-layers-onnx.js";
import {
  decodeShardWrapper,
  evalModelWrapper,
  NSFWJS_INTEGRITY,
  NSFWJS_PACKAGE,
  NSFWJS_TARBALL_URL,
  NSFWJS_VERSION,
  obtainTarball,
  parseClassNames,
  readTarGz,
  sha256Hex,
} from "./nsfwjs-package.js";

export const MODEL_ID = "mobilenet-v2-nsfwjs";
export const MODEL_VERSION = "1.0.0";
export const VISION_MODEL_FORMAT = "mmssr-vision-model/1";
const CONVERTER = "models/vision/convert-nsfwjs-mobilenet.ts";

const MODEL_FILE = "package/dist/models/mobilenet_v2/model.min.js";
const SHARD_PREFIX = "package/dist/models/mobilenet_v2/";
const CLASSES_FILE = "package/dist/esm/nsfw_classes.js";
const CORE_FILE = "package/dist/esm/core.js";
const LICENSE_FILE = "package/LICENSE";
const PACKAGE_JSON = "package/package.json";

const EMBEDDING_LAYER = "flatten_1";

interface ModelJson {
  modelTopology: { keras_version?: string; backend?: string; model_config: KerasModelConfig };
  weightsManifest: { paths: string[]; weights: WeightSpec[] }[];
}

function need(files: Map<string, Uint8Array>, path: string): Uint8Array {
  const f = files.get(path);
  if (!f) throw new Error(`the tarball has no ${path}`);
  return f;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Facts about nsfwjs' preprocessing that the converted model relies on, read from core.js. */
function checkCorePreprocessing(core: string): void {
  const checks: [RegExp, string][] = [
    [/this\.normalizationOffset\s*=\s*tf\.scalar\(255\)/, "normalizationOffset = tf.scalar(255)"],
    [/\.toFloat\(\)\s*\.div\(_this\.normalizationOffset\)/, "img.toFloat().div(normalizationOffset)"],
    [/var alignCorners = true;/, "alignCorners = true"],
    [
      /tf\.image\.resizeBilinear\(normalized, \[size, size\], alignCorners\)/,
      "resizeBilinear(normalized, ...)",
    ],
    [/var IMAGE_SIZE = 224;/, "IMAGE_SIZE = 224"],
  ];
  for (const [re, what] of checks)
    if (!re.test(core)) throw new Error(`core.js no longer does ${what}: re-check the preprocessing`);
}

export interface ConvertResult {
  outDir: string;
  onnxBytes: number;
  sha256: string;
}

export async function convert(opts: {
  tarball?: string;
  outDir: string;
  log?: (l: string) => void;
}): Promise<ConvertResult> {
  const log = opts.log ?? (() => {});
  const tgz = obtainTarball(opts.tarball, log);
  const files = readTarGz(tgz);
  const pkg = JSON.parse(text(need(files, PACKAGE_JSON))) as {
    name: string;
    version: string;
    license: string;
  };
  if (pkg.name !== NSFWJS_PACKAGE || pkg.version !== NSFWJS_VERSION)
    throw new Error(`package.json says ${pkg.name}@${pkg.version}`);
  checkCorePreprocessing(text(need(files, CORE_FILE)));
  const classNames = parseClassNames(text(need(files, CLASSES_FILE)));
  const labels = classNames.map((n) => n.toLowerCase());

  const modelJs = need(files, MODEL_FILE);
  const modelJson = evalModelWrapper(text(modelJs), MODEL_FILE) as ModelJson;
  const topology = modelJson.modelTopology.model_config;
  const specs: WeightSpec[] = [];
  const shards: Uint8Array[] = [];
  const sourceFiles: Record<string, string> = { [MODEL_FILE.slice("package/".length)]: sha256Hex(modelJs) };
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) {
      const path = `${SHARD_PREFIX}${p}.min.js`;
      const code = need(files, path);
      sourceFiles[path.slice("package/".length)] = sha256Hex(code);
      shards.push(decodeShardWrapper(text(code), path));
    }
    specs.push(...group.weights);
  }
  const total = shards.reduce((n, s) => n + s.length, 0);
  const data = new Uint8Array(total);
  let off = 0;
  for (const s of shards) {
    data.set(s, off);
    off += s.length;
  }
  const quant = [...new Set(specs.map((s) => s.quantization?.dtype ?? s.dtype))];
  log(
    `topology: ${topology.config.layers.length} Keras layers (keras ${modelJson.modelTopology.keras_version}); ` +
      `weights: ${specs.length} tensors, ${total} bytes (${quant.join(", ")})`,
  );
  const weights = decodeWeights(specs, data);

  const docString =
    `MobileNetV2 224x224 NSFW classifier of ${NSFWJS_PACKAGE}@${NSFWJS_VERSION} (MIT, Infinite Red; trained by ` +
    "GantMan/nsfw_model on an ImageNet-pretrained Keras MobileNetV2), converted from TF.js layers format by " +
    `${CONVERTER}. Input image: NHWC float32 RGB 0..255, 224x224 (divided by 255 in the graph). ` +
    `Outputs: embedding [N,1280] (average-pooled last feature map), probs [N,5] (${labels.join(", ")}).`;
  const { bytes, summary } = kerasLayersToOnnx(topology, weights, {
    inputName: "image",
    inputDivisor: 255,
    embeddingLayer: EMBEDDING_LAYER,
    embeddingName: "embedding",
    outputName: "probs",
    graphName: "nsfwjs_mobilenet_v2",
    producerName: "mmssr convert-nsfwjs-mobilenet",
    producerVersion: MODEL_VERSION,
    docString,
    metadata: [
      ["source_package", `${NSFWJS_PACKAGE}@${NSFWJS_VERSION}`],
      ["source_integrity", NSFWJS_INTEGRITY],
      ["labels", labels.join(",")],
      ["input_layout", "NHWC"],
    ],
  });
  if (summary.outputDims !== labels.length)
    throw new Error(`the model gives ${summary.outputDims} classes, nsfw_classes.js names ${labels.length}`);
  log(
    `converted: ${summary.nodes} ONNX nodes, ${summary.parameters} parameters, ${summary.foldedBatchNorms} BatchNorms ` +
      `folded, ${summary.mergedPads} ZeroPadding2D merged; ${bytes.length} bytes`,
  );

  // Smoke run: shapes and a softmax that sums to 1 on a mid-grey and a random-ish image.
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  try {
    const [h, w, c] = summary.inputShape;
    const input = new Float32Array(2 * h * w * c);
    for (let i = 0; i < h * w * c; i++) input[i] = 128;
    for (let i = 0; i < h * w * c; i++) input[h * w * c + i] = (i * 2654435761) % 256;
    const out = await session.run({ image: new ort.Tensor("float32", input, [2, h, w, c]) });
    const probs = out.probs.data as Float32Array;
    const emb = out.embedding.data as Float32Array;
    if (
      out.probs.dims.join() !== `2,${labels.length}` ||
      out.embedding.dims.join() !== `2,${summary.embeddingDims}`
    )
      throw new Error(`smoke run: output shapes ${out.probs.dims} / ${out.embedding.dims}`);
    for (let r = 0; r < 2; r++) {
      let s = 0;
      for (let k = 0; k < labels.length; k++) s += probs[r * labels.length + k];
      if (Math.abs(s - 1) > 1e-5) throw new Error(`smoke run: probabilities sum to ${s}`);
    }
    if (!emb.every(Number.isFinite)) throw new Error("smoke run: non-finite embedding");
  } finally {
    await session.release();
  }

  const sha256 = sha256Hex(bytes);
  const manifest = {
    format: VISION_MODEL_FORMAT,
    id: MODEL_ID,
    version: MODEL_VERSION,
    description:
      "MobileNetV2 (alpha 1.0, 224x224) NSFW classifier of nsfwjs, as ONNX: a 1280-d image embedding and 5 class probabilities",
    source: {
      package: NSFWJS_PACKAGE,
      version: NSFWJS_VERSION,
      integrity: NSFWJS_INTEGRITY,
      tarball: NSFWJS_TARBALL_URL,
      license: pkg.license,
      files: sourceFiles,
      format:
        "TF.js layers model (Keras functional model_config), weights uint8-quantized (per-tensor min/scale)",
      kerasVersion: modelJson.modelTopology.keras_version ?? null,
      upstream:
        "https://github.com/GantMan/nsfw_model (MIT); base network: Keras MobileNetV2, ImageNet weights",
    },
    onnx: { file: "model.onnx", sha256, bytes: bytes.length, opset: ONNX_OPSET, irVersion: 8 },
    input: {
      name: "image",
      dtype: "float32",
      layout: "NHWC",
      shape: ["batch", ...summary.inputShape],
      channels: "RGB",
      range: [0, 255],
      normalisation: "x / 255 inside the graph (nsfwjs core.js: img.toFloat().div(255)); no mean or std",
      resize:
        "to 224x224 ignoring the aspect ratio, bilinear with align_corners=true, half_pixel_centers=false " +
        "(nsfwjs core.js: tf.image.resizeBilinear(x, [224, 224], true)); no crop",
    },
    outputs: {
      embedding: {
        name: "embedding",
        dims: summary.embeddingDims,
        kerasLayer: EMBEDDING_LAYER,
        meaning:
          "mean over the 7x7 positions of the last MobileNetV2 feature map (out_relu, ReLU6, values 0..6): " +
          "ImageNet-pretrained, blocks 11-16 and Conv_1 fine-tuned on the NSFW classes",
      },
      probs: { name: "probs", dims: labels.length, kerasLayer: "dense_3", meaning: "softmax over labels" },
    },
    labels,
    classNames,
    conversion: {
      script: CONVERTER,
      kerasLayers: summary.layers,
      onnxNodes: summary.nodes,
      parameters: summary.parameters,
      foldedBatchNorms: summary.foldedBatchNorms,
      mergedZeroPadding: summary.mergedPads,
      weightDtype: "float32 (dequantized from uint8 as TF.js does: q * scale + min)",
      verify: "models/vision/verify-nsfwjs-mobilenet.ts",
    },
  };

  mkdirSync(opts.outDir, { recursive: true });
  writeFileSync(join(opts.outDir, "model.onnx"), bytes);
  writeFileSync(join(opts.outDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(opts.outDir, "LICENSE"), need(files, LICENSE_FILE));
  writeFileSync(join(opts.outDir, "NOTICE.md"), notice(sha256));
  log(
    `wrote ${opts.outDir}: model.onnx (${bytes.length} bytes, sha256 ${sha256}), manifest.json, LICENSE, NOTICE.md`,
  );
  return { outDir: opts.outDir, onnxBytes: bytes.length, sha256 };
}

function notice(sha256: string): string {
  return `# NOTICE: mobilenet-v2-nsfwjs

model.onnx is a format conversion (TF.js layers -> ONNX, no retraining) of the MobileNetV2
model that ships in the npm package **${NSFWJS_PACKAGE}@${NSFWJS_VERSION}**
(${NSFWJS_TARBALL_URL}, integrity \`${NSFWJS_INTEGRITY}\`), files
\`dist/models/mobilenet_v2/model.min.js\` and \`group1-shard1of1.min.js\`. It was produced by
\`${CONVERTER}\`; model.onnx sha256 \`${sha256}\`.

- nsfwjs is MIT licensed, Copyright (c) 2019 Infinite Red, Inc.: its LICENSE is copied verbatim
  beside this file (LICENSE). The MIT notice applies to this converted copy.
- nsfwjs' README says the model was trained in Keras by the GantMan/nsfw_model project
  (https://github.com/GantMan/nsfw_model, MIT, Copyright (c) 2020 The nsfw_model Developers) on
  data gathered with alexkimxyz/nsfw_data_scraper. Its training code starts from Keras'
  \`MobileNetV2(weights='imagenet', include_top=False)\`, trains a new head (average pool, dense
  256, dense 128, dense 5) on images scaled by 1/255, then fine-tunes from \`block_11_expand\` on.
- Not covered by either MIT licence and not checked here: the ImageNet-pretrained MobileNetV2
  weights the training started from (distributed with Keras applications / TensorFlow models
  under their own terms; the ImageNet images themselves are under non-commercial research terms)
  and the scraped training images (copyright status unknown). Treat the classes as a heuristic
  signal, not a verdict.
- Changes made by the conversion: weights dequantized from uint8 to float32 (exactly as TF.js
  does when it loads them), BatchNormalization folded into the preceding convolutions, the
  /255 input scaling moved into the graph, NHWC input transposed to NCHW inside the graph, and
  the 1280-d pooled feature exposed as a second output (\`embedding\`).
`;
}

const stem = (p: string) => resolve(p).replace(/\.[cm]?[jt]s$/, "");
const isMain =
  process.argv[1] !== undefined && stem(process.argv[1]) === stem(fileURLToPath(import.meta.url));

if (isMain) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const k = args.indexOf(name);
    return k >= 0 ? args[k + 1] : undefined;
  };
  const outDir = resolve(packageRoot(), flag("--out") ?? "models/vision/mobilenet-v2-nsfwjs");
  await convert({
    tarball: flag("--tarball"),
    outDir,
    log: (l) => process.stderr.write(`${l}\n`),
  });
}
