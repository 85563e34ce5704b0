/**
 * `mmssr score` end to end on real fixture records with the committed default model, and its
 * promises: interchange-format output that `mmssr select` reads, resumability after a torn
 * write, rejected records kept with their reason, the bad-image policy, clear errors.
 */
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPoolJsonl } from "../../connectors/files/scored-pool-jsonl.js";
import { readScoredPoolParquet } from "../../connectors/parquet/scored-pool-parquet.js";
import { runCli } from "../support/run-cli.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
const MODEL = new URL("../../models/mmssr-lite", import.meta.url).pathname;
let dir: string;

const lines = async (path: string): Promise<Record<string, unknown>[]> =>
  (await readFile(path, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-score-"));
  await copyFile(join(FIXTURES, "llava_instruct_20.json"), join(dir, "llava.json"));
  await copyFile(join(FIXTURES, "mllm_demo.json"), join(dir, "demo.json"));
  await cp(join(FIXTURES, "mllm_demo_data"), join(dir, "mllm_demo_data"), { recursive: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("mmssr score", () => {
  it("scores real records into the interchange format that select reads", async () => {
    const out = join(dir, "llava-scored.jsonl");
    const r = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      MODEL,
      "--out",
      out,
      "--no-progress",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/scored 20 samples with mmssr-lite@2\.0\.0 on cpu/);
    // every image is missing: still exit 0 (no --max-missing-images), but loud about it
    expect(r.stdout).toMatch(/images: 20 of 20 could not be used \(image-missing 20\)/);
    expect(r.stderr).toMatch(/mmssr score: WARNING: 20 of 20 images could not be used/);
    const rows = await lines(out);
    expect(rows).toHaveLength(20);
    for (const row of rows) {
      expect(row.model).toBe("mmssr-lite@2.0.0");
      // the COCO images these records name are not in the fixtures
      expect(row.flags).toContain("image-missing");
      for (const v of Object.values(row.scores as Record<string, number>))
        expect(v).toBeGreaterThanOrEqual(0);
    }
    const pool = await readScoredPoolJsonl(out);
    expect(pool.size).toBe(20);
    const sel = await runCli(["select", "--scores", out, "--ratio", "0.5", "--out", join(dir, "sel.jsonl")]);
    expect(sel.code, sel.stderr).toBe(0);
    expect(await lines(join(dir, "sel.jsonl"))).toHaveLength(10);
  });

  it("loads real images (messages/images form, paths relative to the input) and writes Parquet", async () => {
    const out = join(dir, "demo-scored.parquet");
    const r = await runCli([
      "score",
      "--in",
      join(dir, "demo.json"),
      "--model",
      MODEL,
      "--out",
      out,
      "--no-progress",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const pool = await readScoredPoolParquet(out);
    expect(pool.size).toBe(6);
    // ids were missing: content hashes, stable across runs
    expect(pool.ids.every((id) => id.startsWith("sha256:"))).toBe(true);
    const flags = [...pool.extras.values()].map((e) => String(e.flags));
    expect(flags.some((f) => f.includes("image"))).toBe(false);
    expect(r.stdout).toMatch(/images: all 6 used/);
    expect(r.stderr).not.toMatch(/WARNING/);
  });

  it("--image-source names the source of records that have none", async () => {
    const out = join(dir, "sourced.jsonl");
    const r = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--image-source",
      "coco",
      "--out",
      out,
      "--no-progress",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rows = await lines(out);
    expect(new Set(rows.map((x) => x.image_source))).toEqual(new Set(["coco"]));
    for (const row of rows) expect((row.styles as string[]).length).toBeGreaterThan(0);
  });

  it("resumes after a torn write: nothing scored twice, nothing lost", async () => {
    const out = join(dir, "resume.jsonl");
    await runCli(["score", "--in", join(dir, "llava.json"), "--model", MODEL, "--out", out, "--no-progress"]);
    const full = await lines(out);
    // keep 7 complete rows and half of the 8th, as a kill -9 mid-write leaves it
    const text = await readFile(out, "utf8");
    const rowsText = text.split("\n");
    await writeFile(out, `${rowsText.slice(0, 7).join("\n")}\n${rowsText[7].slice(0, 40)}`);
    const r = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      MODEL,
      "--out",
      out,
      "--no-progress",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/scored 13 samples/);
    expect(r.stdout).toMatch(/already in the output: 7/);
    const after = await lines(out);
    expect(after.map((x) => x.id).sort()).toEqual(full.map((x) => x.id).sort());
    expect(new Set(after.map((x) => x.id)).size).toBe(20);
  });

  it("keeps bad records in the rejects file with where and why; duplicates too", async () => {
    const input = join(dir, "mixed.jsonl");
    const good = JSON.parse(await readFile(join(dir, "llava.json"), "utf8")) as unknown[];
    await writeFile(
      input,
      [
        JSON.stringify(good[0]),
        "{not json",
        JSON.stringify({ id: "x", conversations: [] }),
        JSON.stringify(good[1]),
        JSON.stringify(good[0]),
      ].join("\n"),
    );
    const out = join(dir, "mixed-scored.jsonl");
    const r = await runCli(["score", "--in", input, "--model", MODEL, "--out", out, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/rejected: 3/);
    expect(await lines(out)).toHaveLength(2);
    const rejects = await lines(`${out}.rejected.jsonl`);
    expect(rejects.map((x) => x.where)).toEqual([`${input}:2`, `${input}:3`, `${input}:5`]);
    expect(String(rejects[0].reason)).toMatch(/invalid JSON/);
    expect(String(rejects[1].reason)).toMatch(/conversations/);
    expect(String(rejects[2].reason)).toMatch(/duplicate id/);
  });

  it("--bad-image reject moves samples whose image cannot be used to the rejects file", async () => {
    const out = join(dir, "strict.jsonl");
    const r = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      MODEL,
      "--out",
      out,
      "--bad-image",
      "reject",
      "--no-progress",
    ]);
    // every record rejected: nothing to train on, so the run fails (exit 2) and says where the reasons are
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toMatch(/scored 0 samples/);
    expect(r.stderr).toMatch(
      /all 20 records of .* were rejected \(reasons in .*strict\.jsonl\.rejected\.jsonl\)/,
    );
    const rejects = await lines(`${out}.rejected.jsonl`);
    expect(rejects).toHaveLength(20);
    expect(String(rejects[0].reason)).toMatch(/image-missing/);
  });

  it("names the problem for a bad model folder, a bad flag or a bad input", async () => {
    const noModel = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      join(dir, "nope"),
      "--out",
      join(dir, "a.jsonl"),
    ]);
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toMatch(/manifest/);
    const badEp = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--ep",
      "tpu",
      "--out",
      join(dir, "a.jsonl"),
    ]);
    expect(badEp.code).toBe(2);
    expect(badEp.stderr).toMatch(/--ep/);
    const badExt = await runCli(["score", "--in", join(dir, "llava.csv"), "--out", join(dir, "a.jsonl")]);
    expect(badExt.code).toBe(2);
    const cuda = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      MODEL,
      "--ep",
      "cuda",
      "--out",
      join(dir, "c.jsonl"),
      "--no-progress",
    ]);
    expect(cuda.code).toBe(1);
    expect(cuda.stderr).toMatch(/CUDA/);
  });
});

describe("mmssr score on Parquet samples", () => {
  async function duckCopy(query: string): Promise<void> {
    const duck = await DuckDBInstance.create(":memory:");
    const conn = await duck.connect();
    try {
      await conn.run(query);
    } finally {
      conn.closeSync();
      duck.closeSync();
    }
  }

  it("reads samples stored one per row with list<struct> conversations", async () => {
    const input = join(dir, "samples.parquet");
    await duckCopy(
      `COPY (SELECT id, image, conversations FROM read_json('${join(dir, "llava.json")}') LIMIT 3) TO '${input}' (FORMAT parquet)`,
    );
    const out = join(dir, "from-parquet.jsonl");
    const r = await runCli(["score", "--in", input, "--model", MODEL, "--out", out, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/scored 3 samples/);
    expect((await lines(out)).map((x) => x.id)).toHaveLength(3);
  });

  it("takes JSON-string conversations and image bytes from a binary column; bad rows are rejected by row", async () => {
    const input = join(dir, "inline.parquet");
    const jpeg = join(dir, "mllm_demo_data", "1.jpg");
    const conv = JSON.stringify([
      { from: "human", value: "<image>\nWhat is in the picture?" },
      { from: "gpt", value: "Two people." },
    ]);
    await duckCopy(`
      COPY (
        SELECT 'inline-1' AS id, '${conv}' AS conversations, content AS image_bytes FROM read_blob('${jpeg}')
        UNION ALL SELECT 'broken', '[{"from":', NULL
      ) TO '${input}' (FORMAT parquet)`);
    const out = join(dir, "inline-scored.jsonl");
    const r = await runCli(["score", "--in", input, "--model", MODEL, "--out", out, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/scored 1 samples/);
    const [row] = await lines(out);
    expect(row.id).toBe("inline-1");
    expect(row.flags).toEqual([]); // the inline image decoded
    const rejects = await lines(`${out}.rejected.jsonl`);
    expect(rejects[0].where).toBe(`${input}: row 2`);
    expect(String(rejects[0].reason)).toMatch(/conversations: not valid JSON/);
  });
});

describe("mmssr label + fit", () => {
  it("labels with the rule teacher, fits a student and scores with it", async () => {
    const labels = join(dir, "labels.jsonl");
    const l = await runCli(["label", "--in", join(dir, "llava.json"), "--out", labels]);
    expect(l.code, l.stderr).toBe(0);
    const f = await runCli([
      "fit",
      "--labels",
      labels,
      "--out",
      join(dir, "student"),
      "--epochs",
      "2",
      "--hidden",
      "8",
    ]);
    expect(f.code, f.stderr).toBe(0);
    const card = await readFile(join(dir, "student", "MODEL_CARD.md"), "utf8");
    expect(card).toMatch(/rule-teacher@1/);
    const s = await runCli([
      "score",
      "--in",
      join(dir, "llava.json"),
      "--model",
      join(dir, "student"),
      "--out",
      join(dir, "st.jsonl"),
      "--no-progress",
    ]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toMatch(/scored 20 samples with student@1\.0\.0/);
  });

  it("rejects a labels file whose records lack scores, naming the line", async () => {
    const labels = join(dir, "bad-labels.jsonl");
    const good = JSON.parse(await readFile(join(dir, "llava.json"), "utf8")) as unknown[];
    await writeFile(labels, `${good.map((g) => JSON.stringify(g)).join("\n")}\n`);
    const f = await runCli(["fit", "--labels", labels, "--out", join(dir, "nope-model")]);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/bad-labels\.jsonl:1: scores: missing/);
  });
});
