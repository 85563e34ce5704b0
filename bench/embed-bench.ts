/**
 * Cost of the image embedder (src/scoring/vision/image-embedder.ts, MobileNetV2 of nsfwjs as ONNX):
 *
 *   npx tsx bench/embed-bench.ts [--images DIR] [--passes 3] [--batches 1,16] [--threads 1]
 *                                [--sharp-threads 1] [--json OUT]
 *
 * Images: every .jpg/.png/.webp under DIR (default ../shared/data/LLaVA-pr1902/playground/data/
 * LLaVA-Pretrain/images: 216 JPEGs; research-only data, read here and nowhere else, never copied).
 * The bytes are read into memory first; file I/O is not timed.
 *
 * Timed, each over `passes` passes of all images, after a warm-up:
 *   decode+resize  ImageEmbedder.preprocess, one image at a time: sharp metadata + decode (EXIF
 *                  rotate, flatten, sRGB) + our bilinear align-corners resize to 224 x 224
 *                  (the resize alone is also timed on the decoded pixels);
 *   inference      ImageEmbedder.infer on preprocessed pixels (session.run incl. tensor copy) at
 *                  each --batches size (default 1 and 16; full batches only; per image = batch
 *                  time / B);
 *   end to end     embedMany at maxBatch 16 (the chunk's decodes run concurrently, then one run).
 * onnxruntime intraOpNumThreads = --threads (default 1); sharp.concurrency = --sharp-threads
 * (default 1) and sharp's cache off, so the figures are single-core costs.
 */
import { execSync } from "node:child_process";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { ImageEmbedder, resizeBilinearAlignCorners } from "../src/scoring/vision/image-embedder.js";
import { packageRoot } from "../src/util/package-root.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 && k + 1 < args.length ? args[k + 1] : fallback;
};
const root = packageRoot();
const imagesDir = resolve(
  root,
  flag("--images", "../shared/data/LLaVA-pr1902/playground/data/LLaVA-Pretrain/images"),
);
const passes = Number(flag("--passes", "3"));
const threads = Number(flag("--threads", "1"));
const sharpThreads = Number(flag("--sharp-threads", "1"));
const jsonOut = args.includes("--json") ? flag("--json", "") : "";
const batches = flag("--batches", "1,16")
  .split(",")
  .map(Number)
  .filter((b) => Number.isInteger(b) && b > 0);

function listImages(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listImages(p));
    else if (/\.(jpe?g|png|webp)$/i.test(name)) out.push(p);
  }
  return out;
}

interface Summary {
  n: number;
  mean: number;
  p50: number;
  p95: number;
}
function summarise(ms: number[]): Summary {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return { n: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: q(0.5), p95: q(0.95) };
}
const fmt = (s: Summary) =>
  `${s.mean.toFixed(2).padStart(8)} ${s.p50.toFixed(2).padStart(8)} ${s.p95.toFixed(2).padStart(8)}`;

sharp.concurrency(sharpThreads);
sharp.cache(false);
const files = listImages(imagesDir);
if (files.length === 0) {
  console.error(`no images under ${imagesDir}`);
  process.exit(2);
}
const images = files.map((f) => new Uint8Array(readFileSync(f)));
const embedder = await ImageEmbedder.load({ intraOpNumThreads: threads, maxBatch: 16 });
const size = embedder.inputSize;
const per = size * size * 3;

// warm-up
for (const img of images.slice(0, 4)) {
  const p = await embedder.preprocess(img);
  if (p.ok) await embedder.infer(p.pixels, 1);
}

// decode + resize, and the resize alone
const decodeMs: number[] = [];
const resizeMs: number[] = [];
const pixels: Float32Array[] = [];
const dims: [number, number][] = [];
for (let pass = 0; pass < passes; pass++) {
  for (let i = 0; i < images.length; i++) {
    const t0 = performance.now();
    const p = await embedder.preprocess(images[i]);
    decodeMs.push(performance.now() - t0);
    if (!p.ok) throw new Error(`${files[i]}: ${p.reason}`);
    if (pass === 0) pixels.push(p.pixels);
  }
}
for (let i = 0; i < images.length; i++) {
  const { data, info } = await sharp(Buffer.from(images[i]))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  dims.push([info.width, info.height]);
  const rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
  for (let pass = 0; pass < passes; pass++) {
    const t0 = performance.now();
    resizeBilinearAlignCorners(rgb, info.height, info.width, 3, size, size);
    resizeMs.push(performance.now() - t0);
  }
}

// inference at each batch size (full batches only; per image = batch time / B)
const inferPerImage = new Map<number, number[]>();
const inferPerBatch = new Map<number, number[]>();
for (const B of batches) {
  const perImage: number[] = [];
  const perBatch: number[] = [];
  for (let pass = 0; pass < passes; pass++) {
    for (let start = 0; start + B <= pixels.length; start += B) {
      const batch = new Float32Array(B * per);
      for (let j = 0; j < B; j++) batch.set(pixels[start + j], j * per);
      const t0 = performance.now();
      await embedder.infer(batch, B);
      const ms = performance.now() - t0;
      perBatch.push(ms);
      perImage.push(ms / B);
    }
  }
  inferPerImage.set(B, perImage);
  inferPerBatch.set(B, perBatch);
}
// end to end
const e2eStart = performance.now();
for (let pass = 0; pass < passes; pass++) await embedder.embedMany(images);
const e2ePerImage = (performance.now() - e2eStart) / (passes * images.length);
await embedder.close();

let lscpu = "";
try {
  lscpu = execSync("lscpu | head -20", { encoding: "utf8" });
} catch {
  lscpu = `${cpus()[0]?.model ?? "unknown CPU"} x ${cpus().length}`;
}
const nproc = execSync("nproc", { encoding: "utf8" }).trim();
const mp = dims.map(([w, h]) => (w * h) / 1e6);
const result = {
  images: files.length,
  imagesDir,
  megapixels: summarise(mp),
  passes,
  intraOpNumThreads: threads,
  sharpConcurrency: sharp.concurrency(),
  onnxruntime: (
    JSON.parse(readFileSync(join(root, "node_modules", "onnxruntime-node", "package.json"), "utf8")) as {
      version: string;
    }
  ).version,
  sharp: sharp.versions.sharp,
  vips: sharp.versions.vips,
  node: process.version,
  nproc,
  decodeResizeMs: summarise(decodeMs),
  resizeOnlyMs: summarise(resizeMs),
  inferPerImageMs: Object.fromEntries(batches.map((b) => [b, summarise(inferPerImage.get(b) ?? [])])),
  inferPerBatchMs: Object.fromEntries(batches.map((b) => [b, summarise(inferPerBatch.get(b) ?? [])])),
  loadAverage: loadavg(),
  embedManyBatch16PerImageMs: e2ePerImage,
};

console.log(
  `image embedder (${embedder.manifest.id}): ${files.length} images (${result.megapixels.mean.toFixed(3)} MP mean, ` +
    `${Math.min(...mp).toFixed(3)}-${Math.max(...mp).toFixed(3)}), ${passes} passes, intraOpNumThreads ${threads}, ` +
    `sharp concurrency ${result.sharpConcurrency}`,
);
console.log(
  `onnxruntime-node ${result.onnxruntime}, sharp ${result.sharp} (libvips ${result.vips}), node ${result.node}, nproc ${nproc}`,
);
console.log(
  `\n${"ms per image".padEnd(36)}${"mean".padStart(8)} ${"p50".padStart(8)} ${"p95".padStart(8)}      n`,
);
const row = (label: string, s: Summary) =>
  console.log(`${label.padEnd(36)}${fmt(s)} ${String(s.n).padStart(6)}`);
row("decode + resize (preprocess)", result.decodeResizeMs);
row("  of which the JS resize", result.resizeOnlyMs);
for (const b of batches) {
  row(`inference, batch ${b} (per image)`, result.inferPerImageMs[b]);
  if (b > 1) row(`inference, batch ${b} (per batch)`, result.inferPerBatchMs[b]);
}
console.log(
  `${"end to end embedMany, batch 16".padEnd(36)}${e2ePerImage.toFixed(2).padStart(8)}  (mean per image)`,
);
console.log(
  `load average while measuring (1/5/15 min): ${result.loadAverage.map((l) => l.toFixed(2)).join(" ")}`,
);
console.log(`\n$ nproc\n${nproc}\n$ lscpu | head -20\n${lscpu}`);
if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify({ ...result, lscpu }, null, 2)}\n`);
