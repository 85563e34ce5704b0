/**
 * Commands never destroy what they did not make (issue 9, points 1-3 and 7): a demo folder of
 * the user's is refused, an output that resolves to an input is refused before anything is
 * touched, a score run that made nothing fails, and a reader that closes the pipe leaves no
 * temporary file behind. The pipe test runs the real `mmssr` binary.
 */
import { spawn } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPool } from "../../connectors/scored-pool-io.js";
import { ensureBuilt, REPO } from "../support/curate-process.js";
import { runCli } from "../support/run-cli.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
let dir: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), "mmssr-safe-"));
  await copyFile(join(FIXTURES, "llava_instruct_20.json"), join(dir, "llava.json"));
  const r = await runCli(["gen-pool", "--n", "2000", "--out", join(dir, "pool.parquet")]);
  expect(r.code, r.stderr).toBe(0);
}, 300_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("mmssr demo --out-dir", () => {
  it("refuses a non-empty folder it did not make, and keeps its files", async () => {
    const mine = join(dir, "my-folder");
    await mkdir(mine);
    await writeFile(join(mine, "thesis.tex"), "precious");
    const r = await runCli(["demo", "--out-dir", mine, "--synthetic", "10"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--out-dir: .*my-folder is not empty and was not made by mmssr demo/);
    expect(await readdir(mine)).toEqual(["thesis.tex"]);
    expect(await readFile(join(mine, "thesis.tex"), "utf8")).toBe("precious");
  });

  it("runs in a new folder, and again in the folder it made (replacing only its own output)", async () => {
    const out = join(dir, "demo-out");
    const first = await runCli(["demo", "--out-dir", out, "--synthetic", "10"]);
    expect(first.code, first.stderr).toBe(0);
    const again = await runCli(["demo", "--out-dir", out, "--synthetic", "10"]);
    expect(again.code, again.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual([".mmssr-demo", "curated", "input.jsonl"]);
  }, 120_000);
});

describe("an output that is an input", () => {
  it("select --out equal to --scores (also through ./ and a link) is refused; the pool is intact", async () => {
    const pool = join(dir, "pool.parquet");
    await symlink(pool, join(dir, "pool-link.parquet"));
    for (const out of [pool, join(dir, ".", "pool.parquet"), join(dir, "pool-link.parquet")]) {
      const r = await runCli(["select", "--scores", pool, "--out", out, "--ratio", "0.3"]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--out: .* is the same file as --scores .*refusing to overwrite an input/);
    }
    const summary = await runCli([
      "select",
      "--scores",
      pool,
      "--out",
      join(dir, "sel.parquet"),
      "--ratio",
      "0.3",
      "--summary-json",
      pool,
    ]);
    expect(summary.code).toBe(2);
    expect(summary.stderr).toMatch(/--summary-json: /);
    expect((await readScoredPool(pool)).size).toBe(2000);
  });

  it("score --out equal to --in, and label --out equal to --in, are refused; the input is intact", async () => {
    const input = join(dir, "samples.jsonl");
    const text = `${JSON.stringify({
      id: "a",
      conversations: [
        { from: "human", value: "hi" },
        { from: "gpt", value: "hello" },
      ],
    })}\n`;
    await writeFile(input, text);
    const score = await runCli(["score", "--in", input, "--out", input, "--no-progress"]);
    expect(score.code).toBe(2);
    expect(score.stderr).toMatch(/--out: .* is the same file as --in/);
    const rejects = await runCli([
      "score",
      "--in",
      input,
      "--out",
      join(dir, "s.jsonl"),
      "--rejects",
      input,
      "--no-progress",
    ]);
    expect(rejects.code).toBe(2);
    expect(rejects.stderr).toMatch(/--rejects: .* is the same file as --in/);
    const label = await runCli(["label", "--in", input, "--out", input]);
    expect(label.code).toBe(2);
    expect(await readFile(input, "utf8")).toBe(text);
  });
});

describe("mmssr score: a run that made nothing, or rejected too much, fails", () => {
  it("exits 2 when every record was rejected, naming where the reasons are", async () => {
    const input = join(dir, "all-bad.jsonl");
    await writeFile(input, '{"id": "x"}\n{broken\n');
    const r = await runCli([
      "score",
      "--in",
      input,
      "--out",
      join(dir, "all-bad.scored.jsonl"),
      "--no-progress",
    ]);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/rejected: 2/);
    expect(r.stderr).toMatch(
      /all 2 records of .*all-bad\.jsonl were rejected \(reasons in .*rejected\.jsonl\)/,
    );
  });

  it("--max-reject-share fails a run above it and passes one below", async () => {
    const input = join(dir, "half-bad.jsonl");
    const good = (id: string) =>
      JSON.stringify({
        id,
        conversations: [
          { from: "human", value: "what is this" },
          { from: "gpt", value: "a cat" },
        ],
      });
    await writeFile(input, `${good("g1")}\n{broken\n${good("g2")}\n{broken\n`);
    const strict = await runCli([
      "score",
      "--in",
      input,
      "--out",
      join(dir, "hb1.jsonl"),
      "--max-reject-share",
      "0.2",
      "--no-progress",
    ]);
    expect(strict.code).toBe(2);
    expect(strict.stderr).toMatch(
      /2 of 4 records .* were rejected \(50\.0%\), more than --max-reject-share 0\.2/,
    );
    const lenient = await runCli([
      "score",
      "--in",
      input,
      "--out",
      join(dir, "hb2.jsonl"),
      "--max-reject-share",
      "0.5",
      "--no-progress",
    ]);
    expect(lenient.code, lenient.stderr).toBe(0);
    const bad = await runCli([
      "score",
      "--in",
      input,
      "--out",
      join(dir, "hb3.jsonl"),
      "--max-reject-share",
      "2",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-reject-share: expected a share in 0\.\.1/);
  });
});

describe("a reader that closes the pipe", () => {
  it("select 2>&1 | head -1: the output is complete, no temporary file is left, exit 0", async () => {
    const outDir = join(dir, "piped");
    await mkdir(outDir);
    const out = join(outDir, "sel.parquet");
    const child = spawn(
      process.execPath,
      [
        join(REPO, "bin", "mmssr.js"),
        "select",
        "--scores",
        join(dir, "pool.parquet"),
        "--out",
        out,
        "--ratio",
        "0.3",
        "--summary-json",
        join(outDir, "summary.json"),
      ],
      { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
    );
    // as `head -1` does once it has its line (here: before the command has written anything)
    child.stdout.destroy();
    child.stderr.destroy();
    const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
    expect(code).toBe(0);
    expect((await readdir(outDir)).sort()).toEqual(["sel.parquet", "summary.json"]);
    expect((await readScoredPool(out)).size).toBe(600);
  });

  it("a process that exits mid-write (an error, process.exit) leaves no temporary file", async () => {
    const where = join(dir, "exit-mid-write");
    await mkdir(where);
    const script = `
      const { AtomicFile } = await import(${JSON.stringify(join(REPO, "dist", "src", "util", "atomic-file.js"))});
      const f = new AtomicFile(${JSON.stringify(join(where, "out.parquet"))});
      await f.write("half a file");
      process.exit(3);
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
    const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
    expect(code).toBe(3);
    expect(await readdir(where)).toEqual([]);
  });
});
