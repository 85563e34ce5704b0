/**
 * `mmssr select --scores DIR`: a curate output (only the scored files its manifests publish) or
 * a folder of pool files is one pool; an output inside the folder is refused.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPool } from "../../connectors/scored-pool-io.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCurate } from "../../src/app/curator.js";
import { runCli } from "../support/run-cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-select-folder-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("select --scores DIR", () => {
  it("reads a curate output's published scored files as one pool, and nothing else there", async () => {
    const input = join(dir, "in.jsonl");
    await writeFile(
      input,
      `${syntheticSamples(1200, 3)
        .map((s) => JSON.stringify(s))
        .join("\n")}\n`,
    );
    const out = join(dir, "curated");
    // small rotations: several scored files
    await runCurate({
      source: { kind: "file", path: input },
      out,
      policy: { ratio: 0.2 },
      windowSize: 300,
      windowMs: 10_000,
      rotateRows: 400,
      log: () => {},
    });
    // a file no manifest names is not part of the output
    await copyFile(join(dir, "in.jsonl"), join(out, "scored", "stray.jsonl"));
    const pool = await readScoredPool(out);
    expect(pool.size).toBe(1200);
    expect(new Set(pool.ids).size).toBe(1200);
    const r = await runCli(["select", "--scores", out, "--out", join(dir, "sel.parquet"), "--ratio", "0.1"]);
    expect(r.code, r.stderr).toBe(0);
    expect((await readScoredPool(join(dir, "sel.parquet"))).size).toBe(120);
    const inside = await runCli([
      "select",
      "--scores",
      out,
      "--out",
      join(out, "sel.parquet"),
      "--ratio",
      "0.1",
    ]);
    expect(inside.code).toBe(2);
    expect(inside.stderr).toMatch(/--out: .* is inside --scores/);
  });

  it("reads a folder of pool files; an id in two of them is a bad row naming both", async () => {
    const folder = join(dir, "pools");
    await mkdir(folder);
    const a = await runCli(["gen-pool", "--n", "100", "--out", join(folder, "a.parquet")]);
    expect(a.code, a.stderr).toBe(0);
    const rows = Array.from({ length: 100 }, (_, i) =>
      JSON.stringify({ id: `b-${i}`, image_source: "web", styles: ["yes/no"], scores: { ocr: 1 + (i % 4) } }),
    );
    await writeFile(join(folder, "b.jsonl"), `${rows.join("\n")}\n`);
    const both = await readScoredPool(folder);
    expect(both.size).toBe(200);
    await writeFile(join(folder, "c.jsonl"), `${rows[0]}\n`); // b.jsonl's first id again
    const dup = await runCli([
      "select",
      "--scores",
      folder,
      "--out",
      join(dir, "x.parquet"),
      "--ratio",
      "0.5",
    ]);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/c\.jsonl: row 1: id "b-0" repeats/);
  });
});
