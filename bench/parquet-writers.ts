/**
 * Issue 2, "Parquet writer: decide by measurement". Writes the same generated scored pool with
 * each candidate library, one child process per candidate (so peak RSS is per candidate), and
 * checks every file with an independent reader (DuckDB).
 *
 *   npx tsx bench/parquet-writers.ts [--n 1000000] [--only <candidate>] [--timeout-s 300]
 *
 * @dsnp/parquetjs is not a dependency of the project (its @zenfs packages want Node >= 22 and
 * made every `npm ci` warn EBADENGINE): `npm run bench:parquet-writers` installs it (--no-save)
 * first; it is loaded with require() at run time, so the typecheck does not need it.
 *
 * Peak RSS is process.resourceUsage().maxRSS of the child, which includes the generated pool
 * (reported separately as "RSS after generate").
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DuckDBInstance } from "@duckdb/node-api";
import { Table, tableToIPC } from "apache-arrow";
import * as pw from "parquet-wasm";
import { scoredPoolArrowBatches, writeScoredPoolParquet } from "../connectors/parquet/scored-pool-parquet.js";
import { CAPABILITY_IDS, NUM_CAPABILITIES, styleNamesOfMask } from "../src/domain/taxonomy.js";
import { generatePool } from "../src/pool/generate-pool.js";
import type { ScoredPool } from "../src/pool/scored-pool.js";

const ROW_GROUP = 131_072;
const SEED = 7;

interface Candidate {
  name: string;
  library: string;
  codec: string;
  write(pool: ScoredPool, path: string): Promise<void>;
}

async function writeWasmOneShot(pool: ScoredPool, path: string, compression: pw.Compression): Promise<void> {
  const table = new Table([...scoredPoolArrowBatches(pool, { batchRows: pool.size })]);
  const wasmTable = pw.Table.fromIPCStream(tableToIPC(table, "stream"));
  const props = new pw.WriterPropertiesBuilder()
    .setCompression(compression)
    .setMaxRowGroupSize(ROW_GROUP)
    .build();
  const bytes = pw.writeParquet(wasmTable, props);
  await writeFile(path, bytes);
}

interface ParquetJsLike {
  ParquetSchema: new (fields: Record<string, unknown>) => unknown;
  ParquetWriter: {
    openFile(
      schema: unknown,
      path: string,
      opts?: Record<string, unknown>,
    ): Promise<{
      appendRow(row: Record<string, unknown>): Promise<void>;
      setRowGroupSize(n: number): void;
      close(): Promise<void>;
    }>;
  };
}

async function writeParquetJs(
  lib: ParquetJsLike,
  pool: ScoredPool,
  path: string,
  codec: string,
): Promise<void> {
  const col = (spec: Record<string, unknown>) => spec;
  const fields: Record<string, unknown> = {
    id: col({ type: "UTF8", compression: codec }),
    image_source: col({ type: "UTF8", compression: codec }),
    styles: col({ type: "UTF8", repeated: true, compression: codec }),
  };
  for (const cap of CAPABILITY_IDS)
    fields[`score_${cap}`] = col({ type: "DOUBLE", optional: true, compression: codec });
  const schema = new lib.ParquetSchema(fields);
  const writer = await lib.ParquetWriter.openFile(schema, path);
  writer.setRowGroupSize(ROW_GROUP);
  for (let i = 0; i < pool.size; i++) {
    const row: Record<string, unknown> = {
      id: pool.ids[i],
      image_source: pool.sources[pool.sourceIndex[i]],
      styles: styleNamesOfMask(pool.styleMask[i]),
    };
    for (let c = 0; c < NUM_CAPABILITIES; c++) {
      const v = pool.scores[c][i];
      if (!Number.isNaN(v)) row[`score_${CAPABILITY_IDS[c]}`] = v;
    }
    await writer.appendRow(row);
  }
  await writer.close();
}

const require = createRequire(import.meta.url);
/**
 * As installed, @dsnp/parquetjs 1.8.8 cannot close a file: it nests node-int64 0.4.0 while the
 * hoisted thrift 0.23 checks `instanceof` against the hoisted node-int64 0.3.3, so every i64
 * field (num_values, null_count) fails with "TProtocolException: Expected Int64 or Number".
 * For the measurement we alias the hoisted module to the nested one in the require cache
 * before thrift loads; a product would need an npm override/dedupe to use this library.
 */
const dsnp = (): ParquetJsLike => {
  const nested = createRequire(require.resolve("@dsnp/parquetjs")).resolve("node-int64");
  const hoisted = createRequire(require.resolve("thrift")).resolve("node-int64");
  if (nested !== hoisted) {
    require(nested);
    require.cache[hoisted] = require.cache[nested];
  }
  return require("@dsnp/parquetjs") as ParquetJsLike;
};
const lite = (): ParquetJsLike => require("parquetjs-lite") as ParquetJsLike;

const CANDIDATES: Candidate[] = [
  {
    name: "wasm-zstd",
    library: "parquet-wasm 0.8 + apache-arrow 21 (one shot: whole Table -> writeParquet)",
    codec: "ZSTD",
    write: (pool, path) => writeWasmOneShot(pool, path, pw.Compression.ZSTD),
  },
  {
    name: "wasm-snappy",
    library: "parquet-wasm 0.8 + apache-arrow 21 (one shot: whole Table -> writeParquet)",
    codec: "SNAPPY",
    write: (pool, path) => writeWasmOneShot(pool, path, pw.Compression.SNAPPY),
  },
  {
    name: "wasm-stream-zstd",
    library: "parquet-wasm 0.8 streamed per row group (product: writeScoredPoolParquet)",
    codec: "ZSTD",
    write: async (pool, path) => {
      await writeScoredPoolParquet(path, pool, { compression: "zstd", rowGroupSize: ROW_GROUP });
    },
  },
  {
    name: "dsnp-snappy",
    library: "@dsnp/parquetjs 1.8.8 (node-int64 aliased, see note)",
    codec: "SNAPPY",
    write: (pool, path) => writeParquetJs(dsnp(), pool, path, "SNAPPY"),
  },
  {
    name: "dsnp-gzip",
    library: "@dsnp/parquetjs 1.8.8 (node-int64 aliased, see note)",
    codec: "GZIP",
    write: (pool, path) => writeParquetJs(dsnp(), pool, path, "GZIP"),
  },
  {
    name: "lite-snappy",
    library: "parquetjs-lite 0.8.7",
    codec: "SNAPPY",
    write: (pool, path) => writeParquetJs(lite(), pool, path, "SNAPPY"),
  },
  {
    name: "lite-gzip",
    library: "parquetjs-lite 0.8.7",
    codec: "GZIP",
    write: (pool, path) => writeParquetJs(lite(), pool, path, "GZIP"),
  },
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface ChildResult {
  generateMs: number;
  writeMs: number;
  rssAfterGenerateMB: number;
  peakRssMB: number;
}

/** Child mode: generate, write with one candidate, print one JSON line. */
async function runOne(name: string, n: number, out: string): Promise<void> {
  const cand = CANDIDATES.find((c) => c.name === name);
  if (!cand) throw new Error(`unknown candidate ${name}`);
  const t0 = performance.now();
  const pool = generatePool({ n, seed: SEED });
  const generateMs = performance.now() - t0;
  const rssAfterGenerateMB = process.resourceUsage().maxRSS / 1024;
  const t1 = performance.now();
  await cand.write(pool, out);
  const writeMs = performance.now() - t1;
  const result: ChildResult = {
    generateMs,
    writeMs,
    rssAfterGenerateMB,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
}

function runChild(name: string, n: number, out: string, timeoutS: number): Promise<ChildResult | string> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", self, "--only", name, "--n", String(n), "--out", out],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutS * 1000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (line) resolve(JSON.parse(line.slice(7)) as ChildResult);
      else if (signal === "SIGKILL") resolve(`did not finish within ${timeoutS} s`);
      else
        resolve(
          `exit ${code}${signal ? ` ${signal}` : ""}: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
    });
  });
}

/** Independent read-back with DuckDB; returns the problems found (empty = passed). */
async function verify(path: string, pool: ScoredPool): Promise<string[]> {
  const problems: string[] = [];
  const instance = await DuckDBInstance.create(":memory:");
  const con = await instance.connect();
  try {
    const q = (sql: string) => con.runAndReadAll(sql).then((r) => r.getRowObjectsJS());
    const file = `read_parquet('${path.replaceAll("'", "''")}', file_row_number = true)`;
    const [agg] = await q(
      `SELECT count(*) AS n, sum(score_spatial) AS s, count(*) - count(score_ocr) AS ocr_nulls FROM ${file}`,
    );
    let sum = 0;
    let nulls = 0;
    for (let i = 0; i < pool.size; i++) {
      if (!Number.isNaN(pool.scores[0][i])) sum += pool.scores[0][i];
      if (Number.isNaN(pool.scores[NUM_CAPABILITIES - 1][i])) nulls++;
    }
    if (Number(agg.n) !== pool.size) problems.push(`row count ${agg.n} != ${pool.size}`);
    if (Math.abs(Number(agg.s) - sum) > 1e-6 * Math.max(1, Math.abs(sum)))
      problems.push(`sum(score_spatial) ${agg.s} != ${sum}`);
    if (Number(agg.ocr_nulls) !== nulls) problems.push(`null score_ocr ${agg.ocr_nulls} != ${nulls}`);
    // A few rows, including style-less ones and ones with missing scores.
    const rows = new Set<number>([0, 1, Math.floor(pool.size / 2), pool.size - 1]);
    for (let i = 0, styleLess = 0, missing = 0; i < pool.size && (styleLess < 3 || missing < 3); i++) {
      if (pool.styleMask[i] === 0 && styleLess < 3) {
        rows.add(i);
        styleLess++;
      }
      if (Number.isNaN(pool.scores[0][i]) && missing < 3) {
        rows.add(i);
        missing++;
      }
    }
    const got = await q(
      `SELECT file_row_number AS r, id, image_source, styles, score_spatial FROM ${file} WHERE file_row_number IN (${[...rows].join(",")})`,
    );
    if (got.length !== rows.size) problems.push(`spot check returned ${got.length} of ${rows.size} rows`);
    for (const g of got) {
      const i = Number(g.r);
      const styles = (g.styles ?? []) as string[];
      const want = styleNamesOfMask(pool.styleMask[i]);
      const spatial = pool.scores[0][i];
      if (g.id !== pool.ids[i]) problems.push(`row ${i}: id ${g.id} != ${pool.ids[i]}`);
      if (g.image_source !== pool.sources[pool.sourceIndex[i]])
        problems.push(`row ${i}: image_source ${g.image_source}`);
      if (JSON.stringify(styles) !== JSON.stringify(want))
        problems.push(`row ${i}: styles ${JSON.stringify(g.styles)} != ${JSON.stringify(want)}`);
      if (Number.isNaN(spatial) ? g.score_spatial !== null : g.score_spatial !== spatial)
        problems.push(`row ${i}: score_spatial ${g.score_spatial} != ${spatial}`);
    }
  } catch (err) {
    problems.push(`DuckDB could not read it: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    con.closeSync();
    instance.closeSync();
  }
  return problems;
}

async function main(): Promise<void> {
  const n = Number(arg("n") ?? 1_000_000);
  const only = arg("only");
  const out = arg("out");
  if (only && out) return runOne(only, n, out);
  const timeoutS = Number(arg("timeout-s") ?? 300);
  const names = only ? [only] : CANDIDATES.map((c) => c.name);

  const dir = await mkdtemp(join(tmpdir(), "parquet-writers-"));
  const pool = generatePool({ n, seed: SEED });
  const lines = [
    `n = ${n} rows, generatePool seed ${SEED}, row groups of ${ROW_GROUP} rows, one child process per candidate`,
    "",
    "| candidate | library | codec | write s | file MB | peak RSS MB | RSS after generate MB | DuckDB read-back |",
    "|---|---|---|---:|---:|---:|---:|---|",
  ];
  try {
    for (const name of names) {
      const cand = CANDIDATES.find((c) => c.name === name);
      if (!cand) throw new Error(`unknown candidate ${name}`);
      const path = join(dir, `${name}.parquet`);
      process.stderr.write(`${name} ...\n`);
      const res = await runChild(name, n, path, timeoutS);
      if (typeof res === "string") {
        lines.push(`| ${name} | ${cand.library} | ${cand.codec} | - | - | - | - | FAILED: ${res} |`);
      } else {
        const size = (await stat(path)).size;
        const problems = await verify(path, pool);
        const check = problems.length === 0 ? "ok" : `FAILED: ${problems.slice(0, 3).join("; ")}`;
        lines.push(
          `| ${name} | ${cand.library} | ${cand.codec} | ${(res.writeMs / 1000).toFixed(2)} | ${(size / 1e6).toFixed(1)} | ${res.peakRssMB.toFixed(0)} | ${res.rssAfterGenerateMB.toFixed(0)} | ${check} |`,
        );
      }
      process.stderr.write(`${lines[lines.length - 1]}\n`);
      await rm(path, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

await main();
