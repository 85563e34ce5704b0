/**
 * Cost of the PP-OCRv4 text-in-image signals (src/scoring/vision/text-in-image.ts), per image.
 *
 *   npx tsx bench/ocr-bench.ts [--images DIR] [--n N] [--threads T] [--rec-side S] [--json FILE]
 *
 * Images: every .jpg/.jpeg/.png/.webp under DIR (recursively, sorted by path), the first N (default
 * all); default DIR = ../shared/data/LLaVA-pr1902/playground/data/LLaVA-Pretrain/images (the 216
 * LLaVA-Pretrain images; research-only data, read in place, never copied). The bytes are read into
 * memory first, so file I/O is not timed.
 *
 * One OcrEngine (onnxruntime-node CPU, intraOpNumThreads T, default 1), images one at a time on
 * the main thread, each call timed alone (performance.now): the full textInImage call, i.e. decode
 * (sharp) + pre-processing + session.run + post-processing (+ crops, recognition and decoding).
 * Rows: decode-only (sharp straight to the 640 input size, for reference), detection at maxSide
 * 320 / 480 / 640 / 960, detection + recognition at maxSide S (default 640, the default). One
 * untimed warm-up pass over the first 8 images per row. images/s = 1000 / mean ms (one image at a
 * time, one thread: multiply by workers for a pool). CPU ms/image = process.cpuUsage() (user + system,
 * every thread of the process) per call, mean: on a busy machine wall times grow, CPU times much
 * less. `uptime`'s load average is printed before and after.
 */

import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeRgbResized, imageSize } from "../src/scoring/vision/ocr-image.js";
import { detectorInputSize } from "../src/scoring/vision/text-detector.js";
import { OcrEngine, type TextInImageFeatures } from "../src/scoring/vision/text-in-image.js";

/** The repository root: the nearest folder above this file with a package.json (bench/ or dist/bench/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json")) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const DEFAULT_IMAGES = resolve(
  repoRoot(),
  "../shared/data/LLaVA-pr1902/playground/data/LLaVA-Pretrain/images",
);
const EXT = /\.(jpe?g|png|webp)$/i;

interface Args {
  images: string;
  n: number;
  threads: number;
  recSide: number;
  json?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { images: DEFAULT_IMAGES, n: Number.POSITIVE_INFINITY, threads: 1, recSide: 640 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const need = () => {
      if (value === undefined) throw new Error(`${flag} needs a value`);
      i++;
      return value;
    };
    if (flag === "--images") args.images = resolve(need());
    else if (flag === "--n") args.n = Number(need());
    else if (flag === "--threads") args.threads = Number(need());
    else if (flag === "--rec-side") args.recSide = Number(need());
    else if (flag === "--json") args.json = resolve(need());
    else throw new Error(`unknown flag ${flag} (see the comment at the top of bench/ocr-bench.ts)`);
  }
  if (!(args.n > 0)) throw new Error("--n must be > 0");
  return args;
}

function listImages(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (EXT.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

interface Row {
  name: string;
  images: number;
  failed: number;
  meanMs: number;
  p50Ms: number;
  p95Ms: number;
  imagesPerS: number;
  /** process CPU time per image (all threads: onnxruntime's and sharp's), mean; robust to a busy machine */
  cpuMs: number;
  /** share of images with at least one box (detection rows) or one word read (recognition row) */
  withText: number;
  meanBoxes: number;
  meanTextArea: number;
  meanWords?: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function timeRow(
  name: string,
  images: Buffer[],
  fn: (bytes: Buffer) => Promise<TextInImageFeatures | undefined>,
): Promise<Row> {
  for (const bytes of images.slice(0, 8)) await fn(bytes).catch(() => undefined);
  const ms: number[] = [];
  let cpuUs = 0;
  let failed = 0;
  let withText = 0;
  let boxes = 0;
  let area = 0;
  let words = 0;
  let recognized = false;
  for (const bytes of images) {
    const t = performance.now();
    const cpu = process.cpuUsage();
    let f: TextInImageFeatures | undefined;
    try {
      f = await fn(bytes);
    } catch {
      failed++;
      continue;
    }
    ms.push(performance.now() - t);
    const used = process.cpuUsage(cpu);
    cpuUs += used.user + used.system;
    if (f === undefined) continue;
    recognized = f.recognized;
    boxes += f.boxCount;
    area += f.textAreaShare;
    words += f.wordCount;
    if (f.recognized ? f.wordCount > 0 : f.boxCount > 0) withText++;
  }
  const ok = ms.length;
  const sorted = [...ms].sort((a, b) => a - b);
  const mean = ms.reduce((s, v) => s + v, 0) / Math.max(1, ok);
  return {
    name,
    images: ok,
    failed,
    meanMs: mean,
    p50Ms: quantile(sorted, 0.5),
    p95Ms: quantile(sorted, 0.95),
    imagesPerS: 1000 / mean,
    cpuMs: cpuUs / 1000 / Math.max(1, ok),
    withText: withText / Math.max(1, ok),
    meanBoxes: boxes / Math.max(1, ok),
    meanTextArea: area / Math.max(1, ok),
    ...(recognized ? { meanWords: words / Math.max(1, ok) } : {}),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const files = listImages(args.images).slice(0, args.n);
  if (files.length === 0) throw new Error(`no images under ${args.images}`);
  const images = files.map((f) => readFileSync(f));
  const sizes = await Promise.all(images.map((b) => imageSize(b).catch(() => ({ width: 0, height: 0 }))));
  const longer = sizes.map((s) => Math.max(s.width, s.height)).sort((a, b) => a - b);
  console.log(
    `${images.length} images from ${args.images}; longer side min ${longer[0]} / median ${quantile(longer, 0.5)} / max ${longer.at(-1)} px`,
  );
  console.log(
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model}), intraOpNumThreads ${args.threads}`,
  );

  console.log(
    `load average ${loadavg()
      .map((v) => v.toFixed(2))
      .join(" ")}`,
  );
  const engine = await OcrEngine.create({ intraOpNumThreads: args.threads, loadRecognizer: true });
  const rows: Row[] = [];
  rows.push(
    await timeRow("decode only (sharp to the 640 input)", images, async (bytes) => {
      const { width, height } = await imageSize(bytes);
      const s = detectorInputSize(width, height, 640);
      await decodeRgbResized(bytes, s.width, s.height);
      return undefined;
    }),
  );
  for (const maxSide of [320, 480, 640, 960])
    rows.push(
      await timeRow(`detect, maxSide ${maxSide}`, images, (bytes) => engine.textInImage(bytes, { maxSide })),
    );
  rows.push(
    await timeRow(`detect + recognize, maxSide ${args.recSide}`, images, (bytes) =>
      engine.textInImage(bytes, { maxSide: args.recSide, recognize: true }),
    ),
  );
  await engine.close();
  console.log(
    `load average ${loadavg()
      .map((v) => v.toFixed(2))
      .join(" ")}`,
  );

  const f1 = (v: number) => v.toFixed(1);
  console.log("");
  console.log(
    "| run | images | mean ms | p50 ms | p95 ms | images/s | CPU ms/image | with text | boxes/image | text area | words/image |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows)
    console.log(
      `| ${r.name} | ${r.images}${r.failed ? ` (+${r.failed} failed)` : ""} | ${f1(r.meanMs)} | ${f1(r.p50Ms)} | ${f1(r.p95Ms)} | ${f1(r.imagesPerS)} | ${f1(r.cpuMs)} | ${r.name.startsWith("decode") ? "" : `${(100 * r.withText).toFixed(1)}%`} | ${r.name.startsWith("decode") ? "" : r.meanBoxes.toFixed(2)} | ${r.name.startsWith("decode") ? "" : `${(100 * r.meanTextArea).toFixed(2)}%`} | ${r.meanWords === undefined ? "" : r.meanWords.toFixed(2)} |`,
    );
  console.log(
    "\n(with text: share of images with at least one box; for the recognition row, with at least one word read)",
  );
  if (args.json)
    writeFileSync(args.json, `${JSON.stringify({ args: { ...args, n: images.length }, rows }, null, 2)}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
