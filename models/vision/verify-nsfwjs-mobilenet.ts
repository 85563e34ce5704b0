/**
 * Checks models/vision/mobilenet-v2-nsfwjs/model.onnx against the original TF.js model run by
 * nsfwjs itself (pure-JS CPU backend of @tensorflow/tfjs), on real images and two drawn ones.
 * TF.js and nsfwjs are NOT dependencies of this project: install them into a temporary folder
 * first (never into the repository):
 *
 *   npm install --prefix /tmp/tfjs-verify @tensorflow/tfjs@4.22.0 nsfwjs@4.4.0
 *   npx tsx models/vision/verify-nsfwjs-mobilenet.ts [--tfjs-dir /tmp/tfjs-verify] [--json OUT] [IMAGE ...]
 *
 * Two comparisons per image:
 *   model     the same 224 x 224 pixels (our preprocessing) into both: TF.js nsfwjs.infer(x)
 *             and infer(x, "flatten_1") vs ONNX probs / embedding: the conversion alone;
 *   pipeline  the decoded full-size image into nsfwjs.infer (its own /255 and resizeBilinear
 *             with align_corners) vs ImageEmbedder.embed(bytes): conversion + our resize.
 * Also compares our resize with tf.image.resizeBilinear(x, [224, 224], true) pixel by pixel.
 * Reports max |dprobs|, the embedding's cosine similarity and max |dembedding|, top-1 agreement;
 * exits 1 when the probs differ by more than 1e-4 or a cosine is below 0.99999. --json writes the
 * per-image figures and the TF.js pipeline outputs (probs, embedding L2 norm and sum), which the
 * golden values of src/scoring/vision/image-embedder.test.ts come from.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { ImageEmbedder } from "../../src/scoring/vision/image-embedder.js";
import { packageRoot } from "../../src/util/package-root.js";
import { NSFWJS_INTEGRITY, NSFWJS_VERSION } from "./nsfwjs-package.js";

const PROBS_TOL = 1e-4;
const COSINE_MIN = 0.99999;

// Minimal shapes of the parts of TF.js / nsfwjs used here (they are loaded at run time).
interface TfTensor {
  shape: number[];
  data(): Promise<Float32Array>;
  dispose(): void;
}
interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  getBackend(): string;
  version: Record<string, string>;
  tensor3d(values: Float32Array | Int32Array, shape: [number, number, number], dtype?: string): TfTensor;
  enableProdMode(): void;
  image: { resizeBilinear(t: TfTensor, size: [number, number], alignCorners: boolean): TfTensor };
  cast(t: TfTensor, dtype: string): TfTensor;
}
interface NsfwModel {
  infer(img: TfTensor, endpoint?: string): TfTensor;
  dispose(): void;
}
interface Nsfwjs {
  load(name: string): Promise<NsfwModel>;
}

const args = process.argv.slice(2);
const flags = new Map<string, string>();
const explicit: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--tfjs-dir" || args[i] === "--json") flags.set(args[i], args[++i]);
  else explicit.push(args[i]);
}
const tfjsDir = resolve(flags.get("--tfjs-dir") ?? "/tmp/tfjs-verify");
const jsonOut = flags.get("--json");

const req = createRequire(join(tfjsDir, "package.json"));
let tf: Tf;
let nsfwjs: Nsfwjs;
try {
  tf = req("@tensorflow/tfjs") as Tf;
  nsfwjs = req("nsfwjs") as Nsfwjs;
} catch (err) {
  console.error(
    `cannot load @tensorflow/tfjs and nsfwjs from ${tfjsDir} (${(err as Error).message}).\n` +
      `Install them there first: npm install --prefix ${tfjsDir} @tensorflow/tfjs@4.22.0 nsfwjs@${NSFWJS_VERSION}`,
  );
  process.exit(2);
}
const nsfwPkg = JSON.parse(readFileSync(join(tfjsDir, "node_modules", "nsfwjs", "package.json"), "utf8")) as {
  version: string;
};
if (nsfwPkg.version !== NSFWJS_VERSION) {
  console.error(`${tfjsDir} has nsfwjs@${nsfwPkg.version}, expected ${NSFWJS_VERSION}`);
  process.exit(2);
}
try {
  const lock = JSON.parse(readFileSync(join(tfjsDir, "package-lock.json"), "utf8")) as {
    packages?: Record<string, { integrity?: string }>;
  };
  const integrity = lock.packages?.["node_modules/nsfwjs"]?.integrity;
  if (integrity !== undefined && integrity !== NSFWJS_INTEGRITY) {
    console.error(`${tfjsDir}: nsfwjs integrity ${integrity} is not the pinned ${NSFWJS_INTEGRITY}`);
    process.exit(2);
  }
} catch {
  // no lock file: the version check above is all we have
}

const root = packageRoot();
function defaultImages(): string[] {
  const dirs = ["test/fixtures/samples/llava_serve_examples", "test/fixtures/samples/mllm_demo_data"];
  return dirs.flatMap((d) =>
    readdirSync(join(root, d))
      .filter((f) => /\.(jpe?g|png|webp)$/i.test(f))
      .sort()
      .map((f) => join(root, d, f)),
  );
}

/** A bar chart and a line diagram drawn with SVG: drawing-like inputs without any licence question. */
async function drawnImages(): Promise<[string, Uint8Array][]> {
  const bars = [120, 200, 80, 260, 170, 230]
    .map(
      (h, i) =>
        `<rect x="${60 + i * 70}" y="${340 - h}" width="44" height="${h}" fill="#${["4e79a7", "f28e2b", "e15759", "76b7b2", "59a14f", "edc948"][i]}"/>`,
    )
    .join("");
  const chart =
    `<svg xmlns="http://www.w3.org/2000/svg" width="520" height="400"><rect width="520" height="400" fill="white"/>` +
    `<line x1="40" y1="20" x2="40" y2="340" stroke="black" stroke-width="3"/>` +
    `<line x1="40" y1="340" x2="500" y2="340" stroke="black" stroke-width="3"/>${bars}</svg>`;
  const diagram =
    `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="360"><rect width="480" height="360" fill="#fafafa"/>` +
    `<rect x="30" y="40" width="140" height="80" rx="12" fill="none" stroke="#222" stroke-width="4"/>` +
    `<rect x="300" y="40" width="140" height="80" rx="12" fill="none" stroke="#222" stroke-width="4"/>` +
    `<circle cx="240" cy="260" r="60" fill="none" stroke="#c33" stroke-width="4"/>` +
    `<line x1="170" y1="80" x2="300" y2="80" stroke="#222" stroke-width="4"/>` +
    `<line x1="100" y1="120" x2="200" y2="215" stroke="#222" stroke-width="4"/>` +
    `<line x1="370" y1="120" x2="280" y2="215" stroke="#222" stroke-width="4"/></svg>`;
  return [
    ["svg:bar-chart", new Uint8Array(await sharp(Buffer.from(chart)).png().toBuffer())],
    ["svg:diagram", new Uint8Array(await sharp(Buffer.from(diagram)).png().toBuffer())],
  ];
}

/** The decode of ImageEmbedder.preprocess without the resize: full-size RGB. */
async function decodeFull(bytes: Uint8Array): Promise<{ data: Int32Array; width: number; height: number }> {
  const { data, info } = await sharp(Buffer.from(bytes), { failOn: "warning" })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .toColourspace("srgb")
    .removeAlpha()
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  return { data: Int32Array.from(data), width: info.width, height: info.height };
}

function compare(a: Float32Array, b: Float32Array): { maxAbs: number; cosine: number } {
  let maxAbs = 0;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - b[i]));
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return { maxAbs, cosine: dot / Math.sqrt(na * nb) };
}

const argmax = (p: Float32Array) => p.reduce((best, v, i) => (v > p[best] ? i : best), 0);

await tf.setBackend("cpu");
await tf.ready();
tf.enableProdMode();
const tfModel = await nsfwjs.load("MobileNetV2");
const embedder = await ImageEmbedder.load({ intraOpNumThreads: 1 });
const size = embedder.inputSize;

const inputs: [string, Uint8Array][] = [
  ...(explicit.length > 0 ? explicit : defaultImages()).map(
    (f) => [f, new Uint8Array(readFileSync(f))] as [string, Uint8Array],
  ),
  ...(explicit.length > 0 ? [] : await drawnImages()),
];

console.log(
  `TF.js ${tf.version["tfjs-core"]} (backend ${tf.getBackend()}), nsfwjs ${nsfwPkg.version} MobileNetV2 vs ` +
    `${embedder.manifest.id} (onnx sha256 ${embedder.manifest.onnx.sha256.slice(0, 12)}...)`,
);
console.log(`labels: ${embedder.labels.join(", ")}\n`);
const rows: string[] = [];
const report: Record<string, unknown>[] = [];
const stats = (e: Float32Array) => {
  let sum = 0;
  let sq = 0;
  for (const v of e) {
    sum += v;
    sq += v * v;
  }
  return { sum, norm: Math.sqrt(sq) };
};
let worstProbs = 0;
let worstCos = 1;
let worstEmb = 0;
let topAgree = 0;
let worstResize = 0;
for (const [name, bytes] of inputs) {
  const short = name.startsWith(root) ? name.slice(root.length + 1) : name;
  // model: identical 224x224 pixels into both
  const pre = await embedder.preprocess(bytes);
  if (!pre.ok) throw new Error(`${short}: ${pre.reason}`);
  const x = tf.tensor3d(pre.pixels, [size, size, 3], "float32");
  const tfProbsT = tfModel.infer(x);
  const tfEmbT = tfModel.infer(x, "flatten_1");
  const tfProbs = await tfProbsT.data();
  const tfEmb = await tfEmbT.data();
  for (const t of [x, tfProbsT, tfEmbT]) t.dispose();
  const ox = await embedder.infer(pre.pixels, 1);
  const m1 = compare(tfProbs, ox.probs);
  const e1 = compare(tfEmb, ox.embedding);
  // pipeline: nsfwjs' own resize of the full-size decode vs ImageEmbedder.embed
  const full = await decodeFull(bytes);
  const fx = tf.tensor3d(full.data, [full.height, full.width, 3], "int32");
  const fxf = tf.cast(fx, "float32");
  const resizedT = tf.image.resizeBilinear(fxf, [size, size], true);
  const resize = compare(await resizedT.data(), pre.pixels);
  for (const t of [fxf, resizedT]) t.dispose();
  worstResize = Math.max(worstResize, resize.maxAbs);
  const tfProbs2T = tfModel.infer(fx);
  const tfEmb2T = tfModel.infer(fx, "flatten_1");
  const tfProbs2 = await tfProbs2T.data();
  const tfEmb2 = await tfEmb2T.data();
  for (const t of [fx, tfProbs2T, tfEmb2T]) t.dispose();
  const oe = await embedder.embed(bytes);
  const m2 = compare(tfProbs2, oe.probs);
  const e2 = compare(tfEmb2, oe.embedding);
  worstProbs = Math.max(worstProbs, m1.maxAbs, m2.maxAbs);
  worstCos = Math.min(worstCos, e1.cosine, e2.cosine);
  worstEmb = Math.max(worstEmb, e1.maxAbs, e2.maxAbs);
  const agree = argmax(tfProbs2) === argmax(oe.probs);
  report.push({
    image: short,
    width: full.width,
    height: full.height,
    resize: { maxAbsPixels: resize.maxAbs },
    model: { maxAbsProbs: m1.maxAbs, cosine: e1.cosine, maxAbsEmbedding: e1.maxAbs },
    pipeline: { maxAbsProbs: m2.maxAbs, cosine: e2.cosine, maxAbsEmbedding: e2.maxAbs, sameTop1: agree },
    tfjs: { probs: Array.from(tfProbs2), embedding: stats(tfEmb2) },
    onnx: { probs: Array.from(oe.probs), embedding: stats(oe.embedding) },
  });
  if (agree) topAgree++;
  rows.push(
    [
      short.padEnd(52),
      `${full.width}x${full.height}`.padStart(9),
      m1.maxAbs.toExponential(2).padStart(9),
      (1 - e1.cosine).toExponential(2).padStart(9),
      m2.maxAbs.toExponential(2).padStart(9),
      (1 - e2.cosine).toExponential(2).padStart(9),
      e2.maxAbs.toExponential(2).padStart(9),
      `${embedder.labels[argmax(oe.probs)]} ${Math.max(...oe.probs).toFixed(3)}`.padStart(15),
      agree ? "yes" : "NO",
    ].join("  "),
  );
}
console.log(
  [
    "image".padEnd(52),
    "size".padStart(9),
    "model|dp|".padStart(9),
    "m 1-cos".padStart(9),
    "pipe|dp|".padStart(9),
    "p 1-cos".padStart(9),
    "pipe|de|".padStart(9),
    "onnx top-1".padStart(15),
    "same top-1",
  ].join("  "),
);
for (const r of rows) console.log(r);
console.log(
  `\n${inputs.length} images: max |probs diff| ${worstProbs.toExponential(3)}, min embedding cosine ` +
    `${worstCos.toFixed(9)} (1 - cos = ${(1 - worstCos).toExponential(2)}), max |embedding diff| ` +
    `${worstEmb.toExponential(3)}, top-1 agreement ${topAgree}/${inputs.length}; our resize vs ` +
    `tf.image.resizeBilinear(align_corners): max |d| ${worstResize.toExponential(2)} (0..255 scale)`,
);
// (no tfModel.dispose(): nsfwjs 4.4.0 disposes the shared layers twice once an endpoint model exists)
await embedder.close();
if (jsonOut)
  writeFileSync(
    jsonOut,
    `${JSON.stringify({ tfjs: tf.version["tfjs-core"], nsfwjs: nsfwPkg.version, worstProbs, worstCos, worstEmb, worstResize, topAgree, images: report }, null, 2)}\n`,
  );
const ok = worstProbs <= PROBS_TOL && worstCos >= COSINE_MIN && topAgree === inputs.length;
console.log(ok ? "PASS" : `FAIL (tolerances: |dprobs| <= ${PROBS_TOL}, cosine >= ${COSINE_MIN}, same top-1)`);
process.exit(ok ? 0 : 1);
