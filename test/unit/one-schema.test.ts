/**
 * One schema across commands (issue 9, point 12): the columns that `mmssr score`'s Parquet and
 * `mmssr curate`'s scored log share have the same types, as an independent reader (DuckDB)
 * sees them, and scores are written to 4 decimals by both.
 */
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCurate } from "../../src/app/curator.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { runCli } from "../support/run-cli.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
let dir: string;
let duck: Duck;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-schema-"));
  duck = await openDuck();
  await copyFile(join(FIXTURES, "llava_instruct_20.json"), join(dir, "llava.json"));
});
afterAll(async () => {
  duck?.close();
  await rm(dir, { recursive: true, force: true });
});

async function columns(path: string): Promise<Map<string, string>> {
  const rows = await duck.sql(`DESCRIBE SELECT * FROM read_parquet('${path}')`);
  return new Map(rows.map((r) => [String(r.column_name), String(r.column_type)]));
}

describe("one schema for the scored pool and the scored log", () => {
  it("gives the shared columns one type, and scores 4 decimals", async () => {
    const scored = join(dir, "scored.parquet");
    const r = await runCli(["score", "--in", join(dir, "llava.json"), "--out", scored, "--no-progress"]);
    expect(r.code, r.stderr).toBe(0);
    const out = join(dir, "curated");
    await runCurate({
      source: { kind: "file", path: join(dir, "llava.json") },
      out,
      policy: { ratio: 0.3 },
      windowSize: 100,
      windowMs: 10_000,
      log: () => {},
    });
    const logFile = join(out, "scored", (await readdir(join(out, "scored")))[0]);
    const a = await columns(scored);
    const b = await columns(logFile);
    const shared = [...a.keys()].filter((k) => b.has(k));
    expect(shared).toEqual(expect.arrayContaining(["id", "image_source", "styles", "score_ocr", "flags"]));
    for (const name of shared) expect(`${name}: ${b.get(name)}`).toBe(`${name}: ${a.get(name)}`);
    expect(a.get("flags")).toBe("VARCHAR[]");
    for (const file of [scored, logFile]) {
      const [row] = await duck.sql(
        `SELECT max(abs(score_ocr * 10000 - round(score_ocr * 10000))) AS off FROM read_parquet('${file}')`,
      );
      expect(Number(row.off)).toBeLessThan(1e-6);
    }
  });
});
