/**
 * npm run bench:select — the offline selector's speed and memory (issue 2).
 *
 *   node dist/bench/select-bench.js [--sizes 260000,2600000,10000000] [--ratios 0.05,0.1,0.3] [--e2e-n 2600000]
 *
 * 1. In memory: for each pool size, one child process generates the pool (not timed), times
 *    selectMmssr at each ratio, and times a baseline in the same process: one native
 *    Float64Array sort of every selected capability's score column (the bare "one sort per
 *    capability" the method promises). The ratio select/baseline is what to compare across
 *    machines; n log n scaling shows as a flat "ms per n log2 n" column.
 * 2. End to end: a pool of --e2e-n rows written to Parquet (not timed), then the real CLI
 *    `mmssr select --ratio 0.3` from that file to a Parquet result in a child process; wall
 *    time, the CLI's own read/select/write split, and the child's peak RSS.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, freemem, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { writeScoredPoolParquet } from "../connectors/parquet/scored-pool-parquet.js";
import { main as cliMain } from "../src/cli/main.js";
import { generatePool } from "../src/pool/generate-pool.js";
import { selectMmssr } from "../src/selection/select-mmssr.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 ? args[k + 1] : fallback;
};
const self = fileURLToPath(import.meta.url);
const binPath = fileURLToPath(new URL("../../bin/mmssr.js", import.meta.url));

interface MemoryRow {
  n: number;
  ratio: number;
  selectMs: number;
  baselineMs: number;
  selected: number;
  rounds: number;
  maxRssMb: number;
}

function timeBest(runs: number, fn: () => void): number {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

function childInMemory(n: number, ratios: number[]): void {
  const pool = generatePool({ n, seed: 2503 });
  const runs = n >= 5_000_000 ? 1 : 3;
  const baselineMs = timeBest(runs, () => {
    for (const col of pool.scores) col.slice().sort();
  });
  const rows: MemoryRow[] = [];
  for (const ratio of ratios) {
    let selected = 0;
    let rounds = 0;
    const selectMs = timeBest(runs, () => {
      const r = selectMmssr(pool, { ratio });
      selected = r.indices.length;
      rounds = r.rounds;
    });
    rows.push({ n, ratio, selectMs, baselineMs, selected, rounds, maxRssMb: 0 });
  }
  const maxRssMb = process.resourceUsage().maxRSS / 1024;
  for (const r of rows) r.maxRssMb = maxRssMb;
  process.stdout.write(`${JSON.stringify(rows)}\n`);
}

async function childEndToEnd(poolPath: string, outPath: string): Promise<void> {
  // The CLI's own entry point, in this process, so maxRSS is the command's alone.
  const t = performance.now();
  const origWrite = process.stdout.write.bind(process.stdout);
  let printed = "";
  process.stdout.write = ((chunk: string) => {
    printed += chunk;
    return true;
  }) as typeof process.stdout.write;
  const code = await cliMain(["select", "--scores", poolPath, "--ratio", "0.3", "--out", outPath]);
  process.stdout.write = origWrite;
  const wallMs = performance.now() - t;
  const split = /read (\d+) ms, select (\d+) ms, write (\d+) ms/.exec(printed);
  process.stdout.write(
    `${JSON.stringify({ code, wallMs, readMs: Number(split?.[1]), selectMs: Number(split?.[2]), writeMs: Number(split?.[3]), maxRssMb: process.resourceUsage().maxRSS / 1024 })}\n`,
  );
}

function runChild(childArgs: string[]): string {
  const r = spawnSync(process.execPath, ["--max-old-space-size=8192", self, ...childArgs], {
    encoding: "utf8",
    maxBuffer: 1 << 26,
  });
  if (r.status !== 0) throw new Error(`child ${childArgs.join(" ")} failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim().split("\n").at(-1) ?? "";
}

async function parent(): Promise<void> {
  const sizes = flag("--sizes", "260000,2600000,10000000").split(",").map(Number);
  const ratios = flag("--ratios", "0.05,0.1,0.3").split(",").map(Number);
  const e2eN = Number(flag("--e2e-n", "2600000"));
  process.stdout.write(
    `# bench:select  ${new Date().toISOString()}  node ${process.version}  ${cpus().length} x ${cpus()[0]?.model}  ` +
      `${(totalmem() / 2 ** 30).toFixed(1)} GiB (free ${(freemem() / 2 ** 30).toFixed(1)})\n\n`,
  );
  process.stdout.write("## In memory (selectMmssr; best of 3, 1 at >= 5M rows)\n\n");
  process.stdout.write(
    "| pool rows | ratio | selected | rounds | select ms | baseline ms (14 native column sorts) | select / baseline | ms per 1M·log2(n) | peak RSS MB |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
  );
  for (const n of sizes) {
    const rows = JSON.parse(runChild(["--child-memory", String(n), ratios.join(",")])) as MemoryRow[];
    for (const r of rows)
      process.stdout.write(
        `| ${r.n.toLocaleString("en")} | ${r.ratio} | ${r.selected.toLocaleString("en")} | ${r.rounds} | ${r.selectMs.toFixed(0)} | ${r.baselineMs.toFixed(0)} | ${(r.selectMs / r.baselineMs).toFixed(2)} | ${(r.selectMs / (r.n / 1e6) / Math.log2(r.n)).toFixed(2)} | ${r.maxRssMb.toFixed(0)} |\n`,
      );
  }

  const dir = mkdtempSync(join(tmpdir(), "mmssr-bench-"));
  try {
    const poolPath = join(dir, "pool.parquet");
    const outPath = join(dir, "selected.parquet");
    await writeScoredPoolParquet(poolPath, generatePool({ n: e2eN, seed: 2503 }));
    const e2e = JSON.parse(runChild(["--child-e2e", poolPath, outPath]));
    if (e2e.code !== 0) throw new Error(`mmssr select exited ${e2e.code}`);
    process.stdout.write(
      `\n## End to end: \`mmssr select --scores pool.parquet --ratio 0.3 --out selected.parquet\`, ${e2eN.toLocaleString("en")} rows\n\n` +
        `| wall s | read s | select s | write s | peak RSS MB | input MB | output MB |\n|---:|---:|---:|---:|---:|---:|---:|\n` +
        `| ${(e2e.wallMs / 1000).toFixed(2)} | ${(e2e.readMs / 1000).toFixed(2)} | ${(e2e.selectMs / 1000).toFixed(2)} | ${(e2e.writeMs / 1000).toFixed(2)} | ${e2e.maxRssMb.toFixed(0)} | ${(statSync(poolPath).size / 1e6).toFixed(1)} | ${(statSync(outPath).size / 1e6).toFixed(1)} |\n`,
    );
    process.stdout.write(`\n(the same command through the bin script: node ${binPath} select ...)\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args[0] === "--child-memory") childInMemory(Number(args[1]), args[2].split(",").map(Number));
else if (args[0] === "--child-e2e") await childEndToEnd(args[1], args[2]);
else await parent();
