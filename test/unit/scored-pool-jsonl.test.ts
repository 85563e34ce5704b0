import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPoolJsonl, writeScoredPoolJsonl } from "../../connectors/files/scored-pool-jsonl.js";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { CAPABILITY_IDS, capabilityIndex, NUM_CAPABILITIES, STYLES } from "../../src/domain/taxonomy.js";
import { generatePool } from "../../src/pool/generate-pool.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-jsonl-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCounter = 0;
async function jsonlFile(text: string): Promise<string> {
  const path = join(dir, `pool-${++fileCounter}.jsonl`);
  await writeFile(path, text);
  return path;
}

async function readError(path: string): Promise<MmssrError> {
  const err = await readScoredPoolJsonl(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MmssrError);
  return err as MmssrError;
}

const score = (cap: string) => capabilityIndex(cap);

describe("readScoredPoolJsonl", () => {
  it("skips blank and whitespace-only lines", async () => {
    const path = await jsonlFile(
      `\n{"id":"a","styles":["yes/no"],"scores":{"ocr":1}}\n\n   \n\t\n{"id":"b","styles":["yes/no"],"scores":{"ocr":2}}\n\n`,
    );
    const pool = await readScoredPoolJsonl(path);
    expect(pool.ids).toEqual(["a", "b"]);
    expect(Array.from(pool.scores[score("ocr")])).toEqual([1, 2]);
  });

  it("reads null scores, missing keys and a missing scores object as NaN", async () => {
    const path = await jsonlFile(
      [
        `{"id":"a","styles":["yes/no"],"scores":{"ocr":null,"stem":4.5}}`,
        `{"id":"b","styles":["yes/no"],"scores":{}}`,
        `{"id":"c","styles":["yes/no"]}`,
        `{"id":"d","styles":["yes/no"],"scores":null}`,
      ].join("\n"),
    );
    const pool = await readScoredPoolJsonl(path);
    expect(pool.size).toBe(4);
    for (let c = 0; c < NUM_CAPABILITIES; c++)
      for (let i = 0; i < 4; i++) {
        if (i === 0 && c === score("stem")) expect(pool.scores[c][i]).toBe(4.5);
        else expect(pool.scores[c][i]).toBeNaN();
      }
  });

  it("gives a row without image_source (or with null) the source 'unknown'", async () => {
    const path = await jsonlFile(
      [
        `{"id":"a","styles":["yes/no"],"scores":{"ocr":1}}`,
        `{"id":"b","image_source":null,"styles":["yes/no"],"scores":{"ocr":1}}`,
        `{"id":"c","image_source":"coco","styles":["yes/no"],"scores":{"ocr":1}}`,
      ].join("\n"),
    );
    const pool = await readScoredPoolJsonl(path);
    expect(Array.from(pool.sourceIndex, (s) => pool.sources[s])).toEqual(["unknown", "unknown", "coco"]);
  });

  it("reads styles null, missing or empty as no style, and several styles as a mask", async () => {
    const path = await jsonlFile(
      [
        `{"id":"a","styles":null,"scores":{"ocr":1}}`,
        `{"id":"b","scores":{"ocr":1}}`,
        `{"id":"c","styles":[],"scores":{"ocr":1}}`,
        `{"id":"d","styles":["comparison","multi-choice"],"scores":{"ocr":1}}`,
      ].join("\n"),
    );
    const pool = await readScoredPoolJsonl(path);
    expect(Array.from(pool.styleMask)).toEqual([
      0,
      0,
      0,
      (1 << STYLES.indexOf("comparison")) | (1 << STYLES.indexOf("multi-choice")),
    ]);
  });

  it("reads CRLF line endings (and a last line without a newline)", async () => {
    const path = await jsonlFile(
      `{"id":"a","image_source":"coco","styles":["yes/no"],"scores":{"ocr":1}}\r\n\r\n` +
        `{"id":"b","image_source":"vsr","styles":["yes/no"],"scores":{"ocr":2}}\r\n` +
        `{"id":"c","image_source":"gqa","styles":["yes/no"],"scores":{"ocr":3}}`,
    );
    const pool = await readScoredPoolJsonl(path);
    expect(pool.ids).toEqual(["a", "b", "c"]);
    expect(pool.sources).toEqual(["coco", "vsr", "gqa"]);
    expect(Array.from(pool.scores[score("ocr")])).toEqual([1, 2, 3]);
    expect(pool.extras.size).toBe(0);
  });

  it("a CRLF file with a bad row still names the right line", async () => {
    const path = await jsonlFile(
      `{"id":"a","styles":["yes/no"]}\r\n{"id":"b","styles":["yes/no"]}\r\n{"id":"c","styles":["haiku"]}\r\n`,
    );
    const err = await readError(path);
    expect(err.code).toBe(ERROR_CODES.BAD_ROW);
    expect(err.message).toContain(`${path}:3:`);
    expect(err.message).toContain('"haiku"');
  });

  it("carries fields outside the format as extras, by row", async () => {
    const path = await jsonlFile(
      [
        `{"id":"a","styles":["yes/no"],"note":"hi","meta":{"k":[1,2]}}`,
        `{"id":"b","styles":["yes/no"]}`,
        `{"id":"c","styles":["yes/no"],"flag":false}`,
      ].join("\n"),
    );
    const pool = await readScoredPoolJsonl(path);
    expect(pool.extras.get(0)).toEqual({ note: "hi", meta: { k: [1, 2] } });
    expect(pool.extras.has(1)).toBe(false);
    expect(pool.extras.get(2)).toEqual({ flag: false });
  });

  it("reports every bad row with its line, and stops after 20 with a note", async () => {
    const lines: string[] = [];
    for (let i = 0; i < 40; i++)
      lines.push(i % 2 === 0 ? `{"id":"ok${i}","styles":["yes/no"]}` : `{"id":"bad${i}","scores":{"ocr":9}}`);
    const path = await jsonlFile(`${lines.join("\n")}\n`);
    const err = await readError(path);
    expect(err.code).toBe(ERROR_CODES.BAD_ROW);
    // bad rows are on the even lines 2, 4, ..., 40; the first 20 of them are reported
    const reported = [...err.message.matchAll(new RegExp(`${path.replaceAll(".", "\\.")}:(\\d+):`, "g"))].map(
      (m) => Number(m[1]),
    );
    expect(reported).toEqual(Array.from({ length: 20 }, (_, k) => 2 * (k + 1)));
    expect(err.message).toContain("stopped after 20 bad rows");
    expect(err.message).toContain("scores.ocr");
  });

  it("a few bad rows: all of them reported, no 'stopped' note", async () => {
    const path = await jsonlFile(
      [`{"id":"a","styles":["yes/no"]}`, `nope`, `{"id":"c","styles":["bogus"]}`, `[1,2]`].join("\n"),
    );
    const err = await readError(path);
    expect(err.message).toContain(`${path}:2: invalid JSON`);
    expect(err.message).toContain(`${path}:3:`);
    expect(err.message).toContain(`${path}:4: row: expected a JSON object`);
    expect(err.message).toContain("3 bad row(s)");
    expect(err.message).not.toContain("stopped after");
  });

  it("a missing file is FILE_NOT_FOUND naming the path; a directory is refused", async () => {
    const missing = join(dir, "nope.jsonl");
    const err = await readError(missing);
    expect(err.code).toBe(ERROR_CODES.FILE_NOT_FOUND);
    expect(err.message).toContain(missing);
    const err2 = await readError(dir);
    expect(err2.code).toBe(ERROR_CODES.FILE_NOT_FOUND);
  });

  it("an empty file is an empty pool", async () => {
    const pool = await readScoredPoolJsonl(await jsonlFile(""));
    expect(pool.size).toBe(0);
  });
});

describe("writeScoredPoolJsonl", () => {
  it("round-trips a generated pool (NaN -> null -> NaN, style-less rows, sources)", async () => {
    const pool = generatePool({ n: 3000, seed: 9 });
    const path = join(dir, "roundtrip.jsonl");
    const res = await writeScoredPoolJsonl(path, pool);
    expect(res.rows).toBe(pool.size);
    const text = await readFile(path, "utf8");
    expect(text).toContain('"ocr":null');
    const first = JSON.parse(text.slice(0, text.indexOf("\n")));
    expect(Object.keys(first)).toEqual(["id", "image_source", "styles", "scores"]);
    expect(Object.keys(first.scores)).toEqual([...CAPABILITY_IDS]);
    const back = await readScoredPoolJsonl(path);
    expect(back.ids).toEqual(pool.ids);
    expect(Array.from(back.sourceIndex, (s) => back.sources[s])).toEqual(
      Array.from(pool.sourceIndex, (s) => pool.sources[s]),
    );
    expect(back.styleMask).toEqual(pool.styleMask);
    for (let c = 0; c < NUM_CAPABILITIES; c++) expect(back.scores[c]).toEqual(pool.scores[c]);
  });

  it("writes the given rows in order with the added columns", async () => {
    const pool = generatePool({ n: 50, seed: 2 });
    const path = join(dir, "subset.jsonl");
    await writeScoredPoolJsonl(path, pool, {
      rows: Uint32Array.from([7, 3, 40]),
      extraColumns: { picked_by: ["ocr", "stem", null], bucket: ["x", "y", "z"] },
    });
    const rows = (await readFile(path, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual([pool.ids[7], pool.ids[3], pool.ids[40]]);
    expect(rows.map((r) => r.picked_by)).toEqual(["ocr", "stem", null]);
    expect(rows.map((r) => r.bucket)).toEqual(["x", "y", "z"]);
  });

  it("leaves no temporary file behind after success, small or large (several chunks)", async () => {
    const sub = await mkdtemp(join(dir, "atomic-ok-"));
    await writeScoredPoolJsonl(join(sub, "small.jsonl"), generatePool({ n: 10, seed: 1 }));
    await writeScoredPoolJsonl(join(sub, "large.jsonl"), generatePool({ n: 12_000, seed: 1 }));
    expect((await readdir(sub)).sort()).toEqual(["large.jsonl", "small.jsonl"]);
    expect((await readScoredPoolJsonl(join(sub, "large.jsonl"))).size).toBe(12_000);
  });

  it("replaces an existing file only when the new one is complete", async () => {
    const sub = await mkdtemp(join(dir, "atomic-replace-"));
    const path = join(sub, "pool.jsonl");
    await writeFile(path, "old\n");
    await writeScoredPoolJsonl(path, generatePool({ n: 5, seed: 1 }));
    expect((await readScoredPoolJsonl(path)).size).toBe(5);
    expect(await readdir(sub)).toEqual(["pool.jsonl"]);
  });

  it.each([
    ["small", 10],
    ["large (more than one write chunk)", 12_000],
  ])("fails with an MmssrError, leaving nothing, when the directory does not exist: %s", async (_, n) => {
    const sub = await mkdtemp(join(dir, "atomic-fail-"));
    const target = join(sub, "missing", "pool.jsonl");
    const err = await writeScoredPoolJsonl(target, generatePool({ n, seed: 1 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.FILE_NOT_FOUND);
    expect((err as MmssrError).message).toContain(join(sub, "missing"));
    expect(await readdir(sub)).toEqual([]);
  });

  it("fails with an MmssrError, leaving nothing, when the target is a directory", async () => {
    const sub = await mkdtemp(join(dir, "atomic-isdir-"));
    const target = join(sub, "taken.jsonl");
    await mkdir(target);
    const err = await writeScoredPoolJsonl(target, generatePool({ n: 10, seed: 1 })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.IO);
    expect(await readdir(sub)).toEqual(["taken.jsonl"]);
    expect(await readdir(target)).toEqual([]);
  });
});
