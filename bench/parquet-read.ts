/**
 * Issue 2, Performance: the Parquet part of "from a Parquet file to a written Parquet result".
 * Generates `generatePool({ n, seed })` once into a temporary Parquet file (the product writer,
 * row groups of 131072), then, in a fresh child process (so peak RSS is that of the read + write
 * alone, as in `mmssr select`), times `readScoredPoolParquet` on it and the write of a fixed
 * pseudo-random 30% subset with the two added utf8 columns of a selected output (picked_by,
 * bucket).
 *
 *   npx tsc -p tsconfig.build.json && node dist/bench/parquet-read.js [--n 2600000] [--seed 7] [--repeat 1]
 *   npx tsx bench/parquet-read.ts --n 2600000      (slower: tsx adds overhead in hot loops)
 *   --file F   keep the generated pool at F (and reuse F when it already exists)
 *
 * Peak RSS is the child's process.resourceUsage().maxRSS.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readScoredPoolParquet, writeScoredPoolParquet } from "../connectors/parquet/scored-pool-parquet.js";
import { bucketName, CAPABILITY_IDS, NUM_CAPABILITIES, styleNamesOfMask } from "../src/domain/taxonomy.js";
import { generatePool } from "../src/pool/generate-pool.js";
import type { ScoredPool } from "../src/pool/scored-pool.js";
import { createRandom } from "../src/util/random.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024);
/** CPU time (user + system, all threads) since `since`, in ms. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
};
const peakMB = () => Math.round(process.resourceUsage().maxRSS / 1024);

/** A fixed pseudo-random `k` of `0..n-1`, in pseudo-random order (as a selection emits them). */
function subset(n: number, k: number, seed: number): Uint32Array {
  const all = new Uint32Array(n);
  for (let i = 0; i < n; i++) all[i] = i;
  const rng = createRandom(seed);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.slice(0, k);
}

interface ChildResult {
  readMs: number[];
  readCpuMs: number[];
  rows: number;
  rssAfterReadMB: number;
  peakAfterReadMB: number;
  writeMs: number[];
  writeCpuMs: number[];
  writtenRows: number;
  outMB: number;
  peakRssMB: number;
}

async function child(path: string, out: string, repeat: number): Promise<void> {
  const readMs: number[] = [];
  const readCpuMs: number[] = [];
  let pool: ScoredPool | undefined;
  for (let r = 0; r < repeat; r++) {
    pool = undefined;
    const t = performance.now();
    const cpu = process.cpuUsage();
    pool = await readScoredPoolParquet(path);
    readMs.push(performance.now() - t);
    readCpuMs.push(cpuMs(cpu));
  }
  if (!pool) throw new Error("--repeat must be at least 1");
  const rssAfterReadMB = mb(process.memoryUsage().rss);
  const peakAfterReadMB = peakMB();

  const k = Math.floor(pool.size * 0.3);
  const rows = subset(pool.size, k, 12345);
  const pickedBy: string[] = new Array(k);
  const bucket: string[] = new Array(k);
  for (let j = 0; j < k; j++) {
    const i = rows[j];
    pickedBy[j] = CAPABILITY_IDS[j % NUM_CAPABILITIES];
    const styles = styleNamesOfMask(pool.styleMask[i]);
    bucket[j] = bucketName(
      styles[j % Math.max(1, styles.length)] ?? "none",
      pool.sources[pool.sourceIndex[i]],
    );
  }
  const writeMs: number[] = [];
  const writeCpuMs: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t = performance.now();
    const cpu = process.cpuUsage();
    await writeScoredPoolParquet(out, pool, { rows, extraColumns: { picked_by: pickedBy, bucket } });
    writeMs.push(performance.now() - t);
    writeCpuMs.push(cpuMs(cpu));
  }
  const result: ChildResult = {
    readMs,
    readCpuMs,
    rows: pool.size,
    rssAfterReadMB,
    peakAfterReadMB,
    writeMs,
    writeCpuMs,
    writtenRows: k,
    outMB: mb((await stat(out)).size),
    peakRssMB: peakMB(),
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

function runChild(path: string, out: string, repeat: number): Promise<ChildResult> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [...process.execArgv, self, "--child", path, "--out", out, "--repeat", String(repeat)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let stdout = "";
    proc.stdout.on("data", (d) => {
      stdout += d;
    });
    proc.on("close", (code) => {
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (code !== 0 || !line) reject(new Error(`child exited with ${code}: ${stdout}`));
      else resolve(JSON.parse(line.slice(7)) as ChildResult);
    });
  });
}

async function main(): Promise<void> {
  const childPath = arg("child");
  const repeat = Number(arg("repeat") ?? 1);
  if (childPath) {
    await child(childPath, arg("out") as string, repeat);
    return;
  }
  const n = Number(arg("n") ?? 2_600_000);
  const seed = Number(arg("seed") ?? 7);
  const dir = await mkdtemp(join(tmpdir(), "bench-parquet-read-"));
  try {
    // --file F: reuse F when it exists, else generate into it and keep it.
    const path = arg("file") ?? join(dir, "pool.parquet");
    const exists = await stat(path).then(
      () => true,
      () => false,
    );
    if (!exists) {
      const t0 = performance.now();
      const pool = generatePool({ n, seed });
      const t1 = performance.now();
      await writeScoredPoolParquet(path, pool);
      const t2 = performance.now();
      console.log(
        `generate ${n} rows: ${(t1 - t0).toFixed(0)} ms; write full pool: ${(t2 - t1).toFixed(0)} ms, ${mb((await stat(path)).size)} MB`,
      );
    }
    const r = await runChild(path, join(dir, "selected.parquet"), repeat);
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(", ");
    console.log(
      `read ${r.rows} rows: ${fmt(r.readMs)} ms, cpu ${fmt(r.readCpuMs)} ms (rss after read ${r.rssAfterReadMB} MB, peak ${r.peakAfterReadMB} MB)`,
    );
    console.log(
      `write ${r.writtenRows}-row subset + picked_by/bucket: ${fmt(r.writeMs)} ms, cpu ${fmt(r.writeCpuMs)} ms, ${r.outMB} MB`,
    );
    console.log(`peak RSS (read + write): ${r.peakRssMB} MB`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
