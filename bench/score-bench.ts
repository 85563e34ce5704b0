/**
 * npm run bench:score — scoring throughput of mmssr-lite (issue 3, "Benchmarks").
 *
 *   npm run bench:score [-- --ep cuda] [--quick] [--data ../shared/data]
 *   node dist/bench/score-bench.js [--ep cpu|cuda] [--quick] [--data DIR]
 *
 * One child process per (input, worker count) — text-only and with real images, 1 and 2 workers,
 * intraOpThreads 1 — so each child's peak RSS (process.resourceUsage().maxRSS) is its own. In a
 * child, for each batch size (1, 32, 256, 1024): a warm-up, then timed runs of the full path
 * (OnnxScorer.score: images loaded on the main thread, featurizing + session.run in the worker
 * threads), driven like a
 * streaming consumer: one score() call per batch, at most 2 x workers calls in flight. The
 * event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution) is recorded over the
 * timed runs of every cell.
 *
 * Overhead: the text-only 1-worker child also times bare InferenceSession.run (onnxruntime-node
 * directly, on its main thread, the worker's session options) on pre-built feature tensors of the
 * same samples at batch 256, featurize alone, and the full path with featurizeOn "main" (issue 3's
 * design), and reports each path / bare run per sample (the 2-worker row from its own child).
 *
 * Inputs: text-only = models/synthetic-samples.ts (their image paths do not exist; no image loader
 * is given, so no file is touched); with images = the 216 records of
 * <data>/_derived/LLaVA-pr1902_blip_laion_cc_sbu_2k.subset_with_images.json, repeated, images read
 * from <data>/LLaVA-pr1902/playground/data/LLaVA-Pretrain/images and decoded by sharp every time.
 *
 * --ep cuda: the pool is created with executionProvider "cuda", onCudaUnavailable "fail"; when the
 * CUDA provider cannot load the bench says so and exits with code 2.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { syntheticSamples } from "../models/synthetic-samples.js";
import { type Sample, validateSample } from "../src/domain/sample.js";
import { createSampleFeaturizer } from "../src/scoring/featurize-samples.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { loadModel } from "../src/scoring/model-manifest.js";
import { createOnnxScorer, type OnnxScorer } from "../src/scoring/onnx-scorer.js";
import type { ExecutionProvider } from "../src/scoring/onnx-session-pool.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 && k + 1 < args.length ? args[k + 1] : fallback;
};
const has = (name: string): boolean => args.includes(name);

const self = fileURLToPath(import.meta.url);
const repoRoot = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const modelDir = join(repoRoot, "models", "mmssr-lite");
/** The richer model: the same plus the vision block (PP-OCRv4 detection, MobileNetV2). */
const visionModelDir = join(repoRoot, "models", "mmssr-vision");
const dataDir = resolve(flag("--data", join(repoRoot, "..", "shared", "data")));
const RECORDS = join(dataDir, "_derived", "LLaVA-pr1902_blip_laion_cc_sbu_2k.subset_with_images.json");
const IMAGE_BASE = join(dataDir, "LLaVA-pr1902", "playground", "data", "LLaVA-Pretrain", "images");

const BATCHES = [1, 32, 256, 1024];
const WORKERS = [1, 2];
const OVERHEAD_BATCH = 256;
type Input = "text" | "images" | "vision";
/** Vision cells: every image once (the vision block caches by image content, so repeats would be free). */
const VISION_BATCHES = [32, 256];
const inputLabel = (input: Input): string =>
  input === "text" ? "text-only" : input === "images" ? "with images" : "with images, mmssr-vision";

interface Cell {
  input: Input;
  workers: number;
  batch: number;
  samples: number;
  bestMs: number;
  samplesPerSec: number;
  /** monitorEventLoopDelay over the timed runs; count = its samples, wallMs = the timed runs' wall time */
  eld: { p50: number; p99: number; max: number; count: number; wallMs: number; longestGapMs: number };
  flagged: Record<string, number>;
}

interface Overhead {
  batch: number;
  samples: number;
  fullMsPerSample: number;
  /** the same full path with featurizeOn "main" (issue 3's design: featurizing on the main thread) */
  mainFeaturizeMsPerSample: number;
  bareMsPerSample: number;
  featurizeMsPerSample: number;
  ratio: number;
}

interface ChildResult {
  input: Input;
  workers: number;
  provider: ExecutionProvider;
  cells: Cell[];
  overhead?: Overhead;
  maxRssMb: number;
}

function sampleCount(input: Input, batch: number, quick: boolean): number {
  if (input === "vision") return quick ? 108 : 216;
  if (input === "text") {
    if (batch === 1) return quick ? 500 : 3000;
    return quick ? 4096 : 20480;
  }
  if (batch === 1) return quick ? 216 : 648;
  return quick ? 1080 : 3024; // the 216 records x 5 / x 14
}

function realSamples(n: number): Sample[] {
  const raw = JSON.parse(readFileSync(RECORDS, "utf8")) as unknown[];
  const base: Sample[] = raw.map((r, i) => {
    const v = validateSample(r);
    if (!v.ok) throw new Error(`${RECORDS}[${i}]: ${JSON.stringify(v.errors)}`);
    return v.sample;
  });
  const out: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const s = base[i % base.length];
    out.push({ ...s, id: `${s.id}#${Math.floor(i / base.length)}` });
  }
  return out;
}

/** Scores `samples` one batch per score() call, at most `inFlight` calls outstanding. */
async function drive(
  scorer: OnnxScorer,
  samples: readonly Sample[],
  batch: number,
  inFlight: number,
  flagged?: Record<string, number>,
): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < samples.length) {
      const chunk = samples.slice(next, next + batch);
      next += batch;
      const res = await scorer.score(chunk);
      if (flagged) for (const r of res) for (const f of r.flags) flagged[f] = (flagged[f] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return performance.now() - t0;
}

const sessionOptions = (ep: ExecutionProvider): ort.InferenceSession.SessionOptions => ({
  // the options of src/scoring/onnx-session-worker.ts
  executionProviders: [ep],
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
  logSeverityLevel: 3,
});

async function child(input: Input, workers: number, ep: ExecutionProvider, quick: boolean): Promise<void> {
  const repeats = quick ? 1 : 2;
  const log = (m: string) => process.stderr.write(`[${input} w${workers}] ${m}\n`);
  const imageLoader = input !== "text" ? createImageLoader({ baseDir: IMAGE_BASE }) : undefined;
  const batches = input === "vision" ? VISION_BATCHES : BATCHES;
  const cells: Cell[] = [];
  let overhead: Overhead | undefined;
  let provider: ExecutionProvider = ep;
  const maxN = Math.max(...batches.map((b) => sampleCount(input, b, quick)));
  const all = input === "text" ? syntheticSamples(maxN, 3) : realSamples(maxN);

  for (const batch of batches) {
    const scorer = await createOnnxScorer({
      modelDir: input === "vision" ? visionModelDir : modelDir,
      workers,
      intraOpThreads: 1,
      executionProvider: ep,
      onCudaUnavailable: "fail",
      imageLoader,
      batchSize: batch,
    });
    provider = scorer.provider;
    const inFlight = 2 * workers;
    const samples = all.slice(0, sampleCount(input, batch, quick));
    const warm = samples.slice(0, Math.min(samples.length, Math.max(64, 2 * inFlight * batch)));
    // vision: warm the sessions on one image only; more would fill the vision block's cache
    await drive(scorer, input === "vision" ? samples.slice(0, 1) : warm, batch, inFlight);
    const h = monitorEventLoopDelay({ resolution: 1 });
    const flagged: Record<string, number> = {};
    let bestMs = Number.POSITIVE_INFINITY;
    // A 1 ms interval as a second witness: when the loop never turns, the histogram stays empty.
    let longestGapMs = 0;
    let lastTick = performance.now();
    const probe = setInterval(() => {
      const now = performance.now();
      longestGapMs = Math.max(longestGapMs, now - lastTick);
      lastTick = now;
    }, 1);
    const tWall = performance.now();
    h.enable();
    for (let r = 0; r < (input === "vision" ? 1 : repeats); r++) {
      bestMs = Math.min(bestMs, await drive(scorer, samples, batch, inFlight, r === 0 ? flagged : undefined));
    }
    h.disable();
    clearInterval(probe);
    const wallMs = performance.now() - tWall;
    longestGapMs = Math.max(longestGapMs, performance.now() - lastTick);
    const ms = (ns: number) => ns / 1e6;
    const cell: Cell = {
      input,
      workers,
      batch,
      samples: samples.length,
      bestMs,
      samplesPerSec: samples.length / (bestMs / 1000),
      eld: {
        p50: ms(h.percentile(50)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
        count: h.count,
        wallMs,
        longestGapMs,
      },
      flagged,
    };
    cells.push(cell);
    log(`batch ${batch}: ${cell.samplesPerSec.toFixed(0)} samples/s, eld p99 ${cell.eld.p99.toFixed(1)} ms`);

    if (input === "text" && workers === 1 && batch === OVERHEAD_BATCH) {
      const onMain = await createOnnxScorer({
        modelDir,
        workers,
        intraOpThreads: 1,
        executionProvider: ep,
        onCudaUnavailable: "fail",
        batchSize: batch,
        featurizeOn: "main",
      });
      await drive(onMain, warm, batch, inFlight);
      let mainMs = Number.POSITIVE_INFINITY;
      for (let r = 0; r < repeats; r++)
        mainMs = Math.min(mainMs, await drive(onMain, samples, batch, inFlight));
      await onMain.close();
      overhead = await bareRun(samples, ep, repeats, cell.bestMs / samples.length, mainMs / samples.length);
      log(`overhead: full/bare = ${overhead.ratio.toFixed(2)}`);
    }
    await scorer.close();
  }
  await imageLoader?.close();
  const result: ChildResult = {
    input,
    workers,
    provider,
    cells,
    overhead,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Bare session.run on pre-built tensors of the same samples, on this (main) thread. */
async function bareRun(
  samples: readonly Sample[],
  ep: ExecutionProvider,
  repeats: number,
  fullMsPerSample: number,
  mainFeaturizeMsPerSample: number,
): Promise<Overhead> {
  const { manifest, onnxBytes } = await loadModel(modelDir);
  const featurizer = createSampleFeaturizer(manifest.featurizer);
  const dims = manifest.input.dims;
  const chunks: { features: Float32Array; n: number }[] = [];
  let featurizeMs = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeats; r++) {
    chunks.length = 0;
    const t = performance.now();
    for (let k = 0; k < samples.length; k += OVERHEAD_BATCH) {
      const part = samples.slice(k, k + OVERHEAD_BATCH);
      chunks.push({ features: (await featurizer.featurize(part)).features, n: part.length });
    }
    featurizeMs = Math.min(featurizeMs, performance.now() - t);
  }
  const session = await ort.InferenceSession.create(onnxBytes, sessionOptions(ep));
  const feeds = chunks.map((c) => ({
    [manifest.input.name]: new ort.Tensor("float32", c.features, [c.n, dims]),
  }));
  const outs = [manifest.outputs.scores.name, manifest.outputs.styles.name];
  for (let k = 0; k < Math.min(8, feeds.length); k++) await session.run(feeds[k], outs); // warm-up
  let bareMs = Number.POSITIVE_INFINITY;
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    for (const f of feeds) await session.run(f, outs);
    bareMs = Math.min(bareMs, performance.now() - t);
  }
  await session.release();
  const bareMsPerSample = bareMs / samples.length;
  return {
    batch: OVERHEAD_BATCH,
    samples: samples.length,
    fullMsPerSample,
    mainFeaturizeMsPerSample,
    bareMsPerSample,
    featurizeMsPerSample: featurizeMs / samples.length,
    ratio: fullMsPerSample / bareMsPerSample,
  };
}

/** Creates a one-worker CUDA pool with onCudaUnavailable "fail"; on failure explains and exits 2. */
async function probeCuda(): Promise<void> {
  try {
    const scorer = await createOnnxScorer({
      modelDir,
      workers: 1,
      executionProvider: "cuda",
      onCudaUnavailable: "fail",
    });
    await scorer.close();
    process.stderr.write(`CUDA execution provider loaded (${scorer.provider}); measuring on the GPU\n`);
  } catch (err) {
    process.stderr.write(
      [
        "bench:score --ep cuda: the CUDA execution provider cannot be loaded here, so nothing was measured.",
        `  cause: ${(err as Error).message}`,
        "  The onnxruntime-node package installed from npm on Linux x64 is the CPU build unless it is",
        "  given its CUDA files once (`ONNXRUNTIME_NODE_INSTALL=cuda12 node",
        '  node_modules/onnxruntime-node/script/install.js`, README "Installing: onnxruntime-node and',
        '  the GPU"), and it needs an NVIDIA GPU with the CUDA 12 and cuDNN 9 libraries',
        "  on the library path. Run without --ep cuda for the CPU figures.",
        "",
      ].join("\n"),
    );
    process.exit(2);
  }
}

const fmt = (x: number, d = 0) =>
  x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

function runChild(input: Input, workers: number, ep: ExecutionProvider, quick: boolean): ChildResult {
  const childArgs = [self, "--child", input, "--workers", String(workers), "--ep", ep, "--data", dataDir];
  if (quick) childArgs.push("--quick");
  const r = spawnSync(process.execPath, childArgs, {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`child ${input} w${workers} exited with ${r.status ?? r.signal}`);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(line) as ChildResult;
}

async function parent(): Promise<void> {
  const ep = flag("--ep", "cpu") as ExecutionProvider;
  if (ep !== "cpu" && ep !== "cuda") {
    process.stderr.write(`--ep: expected cpu or cuda, got ${ep}\n`);
    process.exit(1);
  }
  const quick = has("--quick");
  if (ep === "cuda") await probeCuda();

  const results: ChildResult[] = [];
  const inputs: Input[] = ["text", "images", ...(existsSync(visionModelDir) ? (["vision"] as const) : [])];
  for (const input of inputs) for (const w of WORKERS) results.push(runChild(input, w, ep, quick));

  const cpu = cpus();
  const out: string[] = [];
  out.push(
    `machine: ${cpu.length} CPUs (${cpu[0]?.model ?? "?"}), ${fmt(totalmem() / 2 ** 30, 1)} GiB RAM; ` +
      `node ${process.version}, onnxruntime-node ${ort.env.versions.node ?? "?"}; provider ${results[0].provider}` +
      `${quick ? "; --quick" : ""}`,
    "",
    "Throughput, samples/s (best of the timed runs; one score() call per batch, 2 x workers calls in flight):",
    "",
    "| input | batch | samples | 1 worker | 2 workers |",
    "|---|---:|---:|---:|---:|",
  );
  const cell = (input: Input, w: number, b: number) =>
    results.find((r) => r.input === input && r.workers === w)?.cells.find((c) => c.batch === b);
  for (const input of inputs) {
    for (const b of input === "vision" ? VISION_BATCHES : BATCHES) {
      const c1 = cell(input, 1, b);
      const c2 = cell(input, 2, b);
      out.push(
        `| ${inputLabel(input)} | ${b} | ${fmt(c1?.samples ?? 0)} | ${fmt(c1?.samplesPerSec ?? 0)} | ${fmt(c2?.samplesPerSec ?? 0)} |`,
      );
    }
  }
  out.push(
    "",
    "Event-loop delay during the timed runs (monitorEventLoopDelay, resolution 1 ms), ms. `samples` is the",
    "histogram's count against the timed wall time: a loop that turns every ~1 ms gives about one sample per",
    "ms; a loop that hardly turns leaves the histogram nearly empty and its percentiles say little, so the",
    "longest gap between ticks of a 1 ms setInterval is shown beside it.",
    "",
    "| input | workers | batch | p50 | p99 | max | samples / wall ms | longest 1 ms-timer gap |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const r of results)
    for (const c of r.cells)
      out.push(
        `| ${inputLabel(c.input)} | ${c.workers} | ${c.batch} | ${fmt(c.eld.p50, 1)} | ${fmt(c.eld.p99, 1)} | ${fmt(c.eld.max, 1)} | ${fmt(c.eld.count)} / ${fmt(c.eld.wallMs)} | ${fmt(c.eld.longestGapMs, 1)} |`,
      );
  out.push(
    "",
    "Peak RSS of each child process:",
    "",
    "| input | workers | peak RSS MB | flags seen (first timed run, batch 256) |",
  );
  out.push("|---|---:|---:|---|");
  for (const r of results) {
    const f = r.cells.find((c) => c.batch === 256)?.flagged ?? {};
    const flags = Object.entries(f)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ");
    out.push(`| ${inputLabel(r.input)} | ${r.workers} | ${fmt(r.maxRssMb)} | ${flags || "none"} |`);
  }
  const o = results.find((r) => r.overhead)?.overhead;
  const w2Cell = cell("text", 2, 256);
  const w2Full = w2Cell ? w2Cell.bestMs / w2Cell.samples : undefined;
  if (o) {
    out.push(
      "",
      `Overhead at batch ${o.batch}, text-only, intra-op threads 1, ${fmt(o.samples)} samples (the 1-worker rows and the bare run in one process; the 2-worker row from its own child):`,
      "",
      "| path | µs per sample (wall) | / bare run |",
      "|---|---:|---:|",
      `| full path, 1 worker: OnnxScorer.score, featurizing in the worker next to the session | ${fmt(o.fullMsPerSample * 1000, 1)} | ${fmt(o.ratio, 2)} |`,
      ...(w2Full === undefined
        ? []
        : [
            `| **full path, 2 workers** (both featurizing) | ${fmt(w2Full * 1000, 1)} | **${fmt(w2Full / o.bareMsPerSample, 2)}** |`,
          ]),
      `| full path, 1 worker, featurizeOn "main" (issue 3's design) | ${fmt(o.mainFeaturizeMsPerSample * 1000, 1)} | ${fmt(o.mainFeaturizeMsPerSample / o.bareMsPerSample, 2)} |`,
      `| bare InferenceSession.run on pre-built tensors, main thread | ${fmt(o.bareMsPerSample * 1000, 1)} | 1.00 |`,
      `| featurize alone (main thread, for reference) | ${fmt(o.featurizeMsPerSample * 1000, 1)} | ${fmt(o.featurizeMsPerSample / o.bareMsPerSample, 2)} |`,
    );
  }
  const t256 = cell("text", 1, 256);
  const t256w2 = cell("text", 2, 256);
  const best256 = Math.max(t256?.samplesPerSec ?? 0, t256w2?.samplesPerSec ?? 0);
  const eldCells = [t256w2, cell("images", 2, 256)];
  const worstP99 = Math.max(...eldCells.map((c) => c?.eld.p99 ?? Number.NaN));
  const worstGap = Math.max(...eldCells.map((c) => c?.eld.longestGapMs ?? Number.NaN));
  // p99 only counts when the loop turned at least once per 20 ms on average
  const thin = eldCells.some((c) => !c || c.eld.count < c.eld.wallMs / 20);
  const eldMet = worstP99 < 20 && !thin;
  out.push(
    "",
    "Goals of issue 3:",
    "",
    "| goal | measured | met |",
    "|---|---|---|",
    `| >= 5,000 samples/s text-only at batch 256 | ${fmt(t256?.samplesPerSec ?? 0)} (1 worker), ${fmt(t256w2?.samplesPerSec ?? 0)} (2 workers) | ${best256 >= 5000 ? "yes" : "no"} |`,
    `| full path <= 1.15 x bare run, batch 256 text-only 1 worker (issue 3) | ${o ? fmt(o.ratio, 2) : "-"} | ${o ? (o.ratio <= 1.15 ? "yes" : "no") : "-"} |`,
    `| full path <= 1.5 x bare run, batch 256 text-only, featurizing off the main thread (issue 11; best of 1 and 2 workers) | ${o ? fmt(Math.min(o.ratio, (w2Full ?? Number.POSITIVE_INFINITY) / o.bareMsPerSample), 2) : "-"} | ${o ? (Math.min(o.ratio, (w2Full ?? Number.POSITIVE_INFINITY) / o.bareMsPerSample) <= 1.5 ? "yes" : "no") : "-"} |`,
    `| event-loop delay p99 < 20 ms at full load (2 workers, batch 256: text-only and with images) | worst p99 ${fmt(worstP99, 1)} ms, longest timer gap ${fmt(worstGap, 1)} ms${thin ? " (histogram nearly empty: the loop hardly turned)" : ""} | ${eldMet ? "yes" : "no"} |`,
  );
  const v = cell("vision", 1, 256);
  const i256 = cell("images", 1, 256);
  if (v && i256 && t256) {
    const us = (c: Cell) => fmt(1e6 / c.samplesPerSec, 0);
    out.push(
      "",
      "What a sample costs (1 worker, batch 256; the teacher rows are requests to a chat-completions server,",
      "each a generation of a 7B VLM in `released` mode, of a general VLM in `rubric` mode):",
      "",
      "| path | requests or passes per sample | µs per sample here |",
      "|---|---:|---:|",
      `| mmssr-lite, text-only | 1/256 of one forward pass | ${us(t256)} |`,
      `| mmssr-lite, with images | 1/256 of one forward pass | ${us(i256)} |`,
      `| mmssr-vision, with images | 1/256 of one pass + 2 vision-model runs per image | ${us(v)} |`,
      "| `mmssr annotate --mode released` | 15 requests (14 capabilities + styles) | (server-bound) |",
      "| `mmssr annotate --mode rubric` | 1 request (+ retries on a bad answer) | (server-bound) |",
    );
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

if (has("--child")) {
  const input = flag("--child", "text") as Input;
  await child(
    input,
    Number(flag("--workers", "1")),
    flag("--ep", "cpu") as ExecutionProvider,
    has("--quick"),
  );
} else {
  await parent();
}
