import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import {
  bucketName,
  CAPABILITY_IDS,
  NUM_CAPABILITIES,
  STYLES,
  styleNamesOfMask,
} from "../../src/domain/taxonomy.js";
import { generatePool } from "../../src/pool/generate-pool.js";
import { type ScoredPool, ScoredPoolBuilder } from "../../src/pool/scored-pool.js";
import { type Duck, openDuck } from "../../test/support/duckdb.js";
import { writeParquetFile } from "./parquet-writer.js";
import {
  readScoredPoolParquet,
  SCORE_COLUMNS,
  scoredPoolArrowBatches,
  writeScoredPoolParquet,
} from "./scored-pool-parquet.js";

let dir: string;
let duck: Duck;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "scored-pool-parquet-"));
  duck = await openDuck();
});

afterAll(async () => {
  duck.close();
  await rm(dir, { recursive: true, force: true });
});

const sql = (query: string) => duck.sql(query);

const lit = (path: string) => `'${path.replaceAll("'", "''")}'`;

async function expectError(p: Promise<unknown>, code: string, ...parts: string[]): Promise<MmssrError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MmssrError);
  const e = err as MmssrError;
  expect(e.code).toBe(code);
  for (const part of parts) expect(e.message).toContain(part);
  return e;
}

interface SqlRow {
  id: string | null;
  image_source?: string | null;
  styles: string[] | null;
  scores?: Partial<Record<string, number | null>>;
}

/** A DuckDB SELECT producing rows in the interchange columns (scores default to 2.5). */
function rowsSql(rows: SqlRow[]): string {
  const q = (s: string | null | undefined) => (s === null || s === undefined ? "NULL" : lit(s));
  return rows
    .map((r) => {
      const styles = r.styles === null ? "NULL::VARCHAR[]" : `[${r.styles.map(q).join(", ")}]::VARCHAR[]`;
      const scores = CAPABILITY_IDS.map((cap) => {
        const v = r.scores && cap in r.scores ? r.scores[cap] : 2.5;
        return `${v === null || v === undefined ? "NULL" : v}::DOUBLE AS score_${cap}`;
      });
      return `SELECT ${q(r.id)}::VARCHAR AS id, ${q(r.image_source ?? "coco")}::VARCHAR AS image_source, ${styles} AS styles, ${scores.join(", ")}`;
    })
    .join(" UNION ALL ");
}

async function duckFile(name: string, select: string, options = ""): Promise<string> {
  const path = join(dir, name);
  await sql(`COPY (${select}) TO ${lit(path)} (FORMAT parquet${options})`);
  return path;
}

function expectSamePool(actual: ScoredPool, expected: ScoredPool): void {
  expect(actual.size).toBe(expected.size);
  expect(actual.ids).toEqual(expected.ids);
  expect(actual.sources).toEqual(expected.sources);
  expect(actual.sourceIndex).toEqual(expected.sourceIndex);
  expect(actual.styleMask).toEqual(expected.styleMask);
  for (let c = 0; c < NUM_CAPABILITIES; c++) expect(actual.scores[c]).toEqual(expected.scores[c]);
  expect(actual.extras).toEqual(expected.extras);
  expect(actual).toStrictEqual(expected);
}

describe("scored pool Parquet round trip", () => {
  it("writes and reads back a generated pool unchanged (NaN scores, style-less rows, several row groups)", async () => {
    const pool = generatePool({ n: 20_000, seed: 11 });
    let nan = 0;
    let styleLess = 0;
    for (let i = 0; i < pool.size; i++) {
      if (pool.styleMask[i] === 0) styleLess++;
      for (let c = 0; c < NUM_CAPABILITIES; c++) if (Number.isNaN(pool.scores[c][i])) nan++;
    }
    expect(nan).toBeGreaterThan(0);
    expect(styleLess).toBeGreaterThan(0);

    const path = join(dir, "roundtrip.parquet");
    const res = await writeScoredPoolParquet(path, pool, { rowGroupSize: 4096 });
    expect(res.rows).toBe(pool.size);
    // atomic publish leaves no temporary file behind
    expect((await readdir(dir)).filter((f) => f.includes("roundtrip"))).toEqual(["roundtrip.parquet"]);
    const [meta] = await sql(
      `SELECT count(*) AS groups FROM parquet_metadata(${lit(path)}) WHERE column_id = 0`,
    );
    expect(Number(meta.groups)).toBe(Math.ceil(pool.size / 4096));

    const back = await readScoredPoolParquet(path, { batchRows: 3000 });
    expectSamePool(back, pool);
  });

  it("carries extra fields of rows (sparse) and survives an empty pool", async () => {
    const b = new ScoredPoolBuilder(4);
    const s = new Float64Array(NUM_CAPABILITIES).fill(3);
    b.add({
      id: "a",
      imageSource: "coco",
      styleMask: 0b101,
      scores: s,
      extras: { note: "hi", weight: 2, ok: true },
    });
    const s2 = new Float64Array(NUM_CAPABILITIES).fill(Number.NaN);
    b.add({ id: "b", imageSource: "unknown", styleMask: 0, scores: s2 });
    b.add({
      id: "c",
      imageSource: "ocrvqa",
      styleMask: 1 << 8,
      scores: s,
      extras: { note: "x€y", weight: 0.5 },
    });
    const pool = b.build();
    const path = join(dir, "extras.parquet");
    await writeScoredPoolParquet(path, pool);
    expectSamePool(await readScoredPoolParquet(path), pool);

    const empty = new ScoredPoolBuilder().build();
    const emptyPath = join(dir, "empty.parquet");
    await writeScoredPoolParquet(emptyPath, empty);
    const [row] = await sql(`SELECT count(*) AS n FROM ${lit(emptyPath)}`);
    expect(Number(row.n)).toBe(0);
    expectSamePool(await readScoredPoolParquet(emptyPath), empty);
  });
});

describe("non-ASCII text and the columnar builder", () => {
  it("round-trips non-ASCII ids, sources and extra columns", async () => {
    const b = new ScoredPoolBuilder(4);
    const s = new Float64Array(NUM_CAPABILITIES).fill(1.5);
    b.add({ id: "plain", imageSource: "coco", styleMask: 1, scores: s });
    b.add({ id: "ünï-😀", imageSource: "文档", styleMask: 2, scores: s });
    b.add({ id: "x".repeat(40), imageSource: "coco", styleMask: 0, scores: s });
    const pool = b.build();
    const path = join(dir, "unicode.parquet");
    await writeScoredPoolParquet(path, pool, {
      rows: Uint32Array.of(1, 0, 2),
      extraColumns: { picked_by: ["ocr", null, "stem"], bucket: ["yes/no+文档", "a", null] },
    });
    const got = await sql(`SELECT id, image_source, picked_by, bucket FROM ${lit(path)}`);
    expect(got).toEqual([
      { id: "ünï-😀", image_source: "文档", picked_by: "ocr", bucket: "yes/no+文档" },
      { id: "plain", image_source: "coco", picked_by: null, bucket: "a" },
      { id: "x".repeat(40), image_source: "coco", picked_by: "stem", bucket: null },
    ]);
    const back = await readScoredPoolParquet(path, { batchRows: 2 });
    expect(back.ids).toEqual(["ünï-😀", "plain", "x".repeat(40)]);
    expect(back.sources).toEqual(["文档", "coco"]);
    expect(back.extras.get(0)).toEqual({ picked_by: "ocr", bucket: "yes/no+文档" });
  });

  it("appendColumns gives the pool that add gives, and rejects a repeated id", () => {
    const pool = generatePool({ n: 3000, seed: 5 });
    const one = new ScoredPoolBuilder(16, { trackIds: true });
    const bulk = new ScoredPoolBuilder(16, { trackIds: true });
    for (let start = 0; start < pool.size; start += 700) {
      const len = Math.min(700, pool.size - start);
      const rows = Array.from({ length: len }, (_, k) => start + k);
      for (const i of rows)
        one.add({
          id: pool.ids[i],
          imageSource: pool.sources[pool.sourceIndex[i]],
          styleMask: pool.styleMask[i],
          scores: pool.scores.map((col) => col[i]),
        });
      bulk.appendColumns({
        length: len,
        ids: rows.map((i) => pool.ids[i]),
        sources: pool.sources,
        sourceOfRow: pool.sourceIndex.subarray(start, start + len),
        styleMask: pool.styleMask.subarray(start, start + len),
        scores: pool.scores.map((col) => col.slice(start, start + len)),
      });
    }
    expectSamePool(bulk.build(), one.build());
    expect(bulk.rowOfId(pool.ids[2999])).toBe(2999);
    expect(bulk.rowOfId("nope")).toBeUndefined();

    const cols = Array.from({ length: NUM_CAPABILITIES }, () => new Float64Array(3));
    const batch = (ids: string[]) => ({
      length: ids.length,
      ids,
      sources: ["a"],
      sourceOfRow: new Uint32Array(ids.length),
      styleMask: new Uint16Array(ids.length),
      scores: cols,
    });
    const b = new ScoredPoolBuilder(2, { trackIds: true });
    b.appendColumns(batch(["x", "y"]));
    expect(() => b.appendColumns(batch(["z", "x"]), (k) => `here ${k}`)).toThrow(
      /here 1: id "x" repeats the id of row 1/,
    );
    expect(() => b.appendColumns(batch(["p", "q", "p"]))).toThrow(/row 5: id "p" repeats the id of row 3/);
  });
});

describe("selected output (subset + picked_by/bucket)", () => {
  it("writes the given rows in order with the added columns, as DuckDB reads them", async () => {
    const pool = generatePool({ n: 5000, seed: 3 });
    const picked: number[] = [];
    for (let i = pool.size - 1; i >= 0; i -= 7) if (pool.styleMask[i] !== 0) picked.push(i);
    const rows = Uint32Array.from(picked);
    const pickedBy = picked.map((_, k) => CAPABILITY_IDS[k % NUM_CAPABILITIES]);
    const bucket = picked.map((i) =>
      bucketName(styleNamesOfMask(pool.styleMask[i])[0], pool.sources[pool.sourceIndex[i]]),
    );
    const path = join(dir, "selected.parquet");
    await writeScoredPoolParquet(path, pool, {
      rows,
      extraColumns: { picked_by: pickedBy, bucket },
      rowGroupSize: 200,
    });

    const got = await sql(
      `SELECT id, image_source, styles, score_ocr, picked_by, bucket FROM read_parquet(${lit(path)}, file_row_number = true) ORDER BY file_row_number`,
    );
    expect(got.length).toBe(rows.length);
    got.forEach((g, k) => {
      const i = rows[k];
      expect(g.id).toBe(pool.ids[i]);
      expect(g.image_source).toBe(pool.sources[pool.sourceIndex[i]]);
      expect(g.styles).toEqual(styleNamesOfMask(pool.styleMask[i]));
      const ocr = pool.scores[NUM_CAPABILITIES - 1][i];
      expect(g.score_ocr).toBe(Number.isNaN(ocr) ? null : ocr);
      expect(g.picked_by).toBe(pickedBy[k]);
      expect(g.bucket).toBe(bucket[k]);
    });
    const cols = await sql(`DESCRIBE SELECT * FROM ${lit(path)}`);
    expect(cols.map((c) => c.column_name)).toEqual([
      "id",
      "image_source",
      "styles",
      ...SCORE_COLUMNS,
      "picked_by",
      "bucket",
    ]);
    expect(cols.find((c) => c.column_name === "styles")?.column_type).toBe("VARCHAR[]");
    expect(cols.find((c) => c.column_name === "score_spatial")?.column_type).toBe("DOUBLE");

    // and our reader carries the added columns as extras
    const back = await readScoredPoolParquet(path);
    expect(back.size).toBe(rows.length);
    expect(back.extras.get(0)).toEqual({ picked_by: pickedBy[0], bucket: bucket[0] });
    expect(back.ids[5]).toBe(pool.ids[rows[5]]);
  });

  it("rejects an extra column that would replace an interchange column", async () => {
    const pool = generatePool({ n: 10, seed: 1 });
    await expectError(
      writeScoredPoolParquet(join(dir, "clash.parquet"), pool, { extraColumns: { id: Array(10).fill("x") } }),
      ERROR_CODES.BAD_OPTIONS,
      "id",
    );
    expect((await readdir(dir)).some((f) => f.includes("clash"))).toBe(false);
  });
});

describe("reading files written by DuckDB", () => {
  it("reads a DuckDB-written pool with several row groups, null image_source, integer scores and extras", async () => {
    const n = 3000;
    const scoreCols = CAPABILITY_IDS.map((cap, c) =>
      c === NUM_CAPABILITIES - 1
        ? `(i % 6)::INTEGER AS score_${cap}`
        : `CASE WHEN i % 7 = ${c % 7} AND i % 2 = 0 THEN NULL ELSE ((i + ${c}) % 51) / 10.0 END::DOUBLE AS score_${cap}`,
    );
    const path = await duckFile(
      "duck.parquet",
      `SELECT 'r' || i AS id,
              CASE WHEN i % 3 = 0 THEN NULL ELSE 'src' || (i % 4) END AS image_source,
              CASE WHEN i % 5 = 0 THEN []::VARCHAR[] WHEN i % 5 = 1 THEN NULL::VARCHAR[]
                   ELSE ['yes/no', 'chain-of-thought (step-by-step)'] END AS styles,
              ${scoreCols.join(", ")},
              CASE WHEN i % 10 = 0 THEN 'note ' || i END AS note
       FROM range(${n}) t(i) ORDER BY i`,
      ", ROW_GROUP_SIZE 1000",
    );
    const pool = await readScoredPoolParquet(path, { batchRows: 700 });
    expect(pool.size).toBe(n);
    const yesNo = 1 << STYLES.indexOf("yes/no");
    const cot = 1 << STYLES.indexOf("chain-of-thought (step-by-step)");
    for (let i = 0; i < n; i++) {
      expect(pool.ids[i]).toBe(`r${i}`);
      expect(pool.sources[pool.sourceIndex[i]]).toBe(i % 3 === 0 ? "unknown" : `src${i % 4}`);
      expect(pool.styleMask[i]).toBe(i % 5 <= 1 ? 0 : yesNo | cot);
      for (let c = 0; c < NUM_CAPABILITIES - 1; c++) {
        const want = i % 7 === c % 7 && i % 2 === 0 ? Number.NaN : ((i + c) % 51) / 10;
        expect(pool.scores[c][i]).toBe(want);
      }
      expect(pool.scores[NUM_CAPABILITIES - 1][i]).toBe(i % 6);
      expect(pool.extras.get(i)).toEqual(i % 10 === 0 ? { note: `note ${i}` } : undefined);
    }
    expect(pool.extras.size).toBe(n / 10);
  });
});

describe("bad files", () => {
  const good: SqlRow = { id: "a", styles: ["yes/no"] };

  it.each(["id", "styles", "score_spatial", "score_ocr"])(
    "a file without %s fails with MISSING_COLUMN",
    async (col) => {
      const path = await duckFile(`no-${col}.parquet`, `SELECT * EXCLUDE (${col}) FROM (${rowsSql([good])})`);
      await expectError(
        readScoredPoolParquet(path),
        ERROR_CODES.MISSING_COLUMN,
        `missing required column ${col}`,
      );
    },
  );

  it("a file without image_source is fine: every row is 'unknown'", async () => {
    const path = await duckFile(
      "no-source.parquet",
      `SELECT * EXCLUDE (image_source) FROM (${rowsSql([good])})`,
    );
    const pool = await readScoredPoolParquet(path);
    expect(pool.sources).toEqual(["unknown"]);
  });

  it("an unknown style name names the row and the field", async () => {
    const path = await duckFile(
      "bad-style.parquet",
      rowsSql([good, { id: "b", styles: ["yes/no", "haiku"] }]),
    );
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 2", "styles[1]", '"haiku"');
  });

  it("a score outside 0..5 names the row and the column", async () => {
    const path = await duckFile(
      "bad-score.parquet",
      rowsSql([good, { id: "b", styles: [] }, { id: "c", styles: ["comparison"], scores: { stem: 7 } }]),
    );
    await expectError(
      readScoredPoolParquet(path),
      ERROR_CODES.BAD_ROW,
      "row 3",
      "score_stem",
      "outside 0..5",
    );
  });

  it("a negative score fails too", async () => {
    const path = await duckFile(
      "neg-score.parquet",
      rowsSql([{ id: "a", styles: [], scores: { ocr: -0.5 } }]),
    );
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 1", "score_ocr");
  });

  it("a null id names the row", async () => {
    const path = await duckFile("null-id.parquet", rowsSql([good, { id: null, styles: [] }]));
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 2", "id");
  });

  it("an empty id names the row", async () => {
    const path = await duckFile("empty-id.parquet", rowsSql([{ id: "", styles: [] }]));
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 1", "id");
  });

  it("a duplicate id names the row and the first occurrence", async () => {
    const path = await duckFile(
      "dup-id.parquet",
      `SELECT * FROM (${rowsSql([good, { id: "b", styles: [] }, { id: "a", styles: [] }])})`,
    );
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 3", "id", "row 1");
  });

  it("a duplicate id in a later batch names both rows", async () => {
    const rows: SqlRow[] = Array.from({ length: 9 }, (_, i) => ({ id: `r${i}`, styles: [] }));
    rows.push({ id: "r2", styles: [] });
    const path = await duckFile("dup-later.parquet", `SELECT * FROM (${rowsSql(rows)})`);
    for (const batchRows of [1, 4, 100])
      await expectError(
        readScoredPoolParquet(path, { batchRows }),
        ERROR_CODES.BAD_ROW,
        "row 10",
        '"r2"',
        "row 3",
      );
  });

  it("reports the first bad row of a batch, whatever the column (a repeated id counts)", async () => {
    const stylesFirst = await duckFile(
      "order-1.parquet",
      rowsSql([good, { id: "b", styles: ["haiku"] }, { id: "c", styles: [], scores: { ocr: 9 } }]),
    );
    await expectError(readScoredPoolParquet(stylesFirst), ERROR_CODES.BAD_ROW, "row 2", "styles[0]");
    const scoreFirst = await duckFile(
      "order-2.parquet",
      rowsSql([good, { id: "b", styles: [], scores: { ocr: 9 } }, { id: null, styles: ["haiku"] }]),
    );
    await expectError(readScoredPoolParquet(scoreFirst), ERROR_CODES.BAD_ROW, "row 2", "score_ocr");
    const dupFirst = await duckFile(
      "order-3.parquet",
      rowsSql([good, { id: "a", styles: [] }, { id: "c", styles: [], scores: { ocr: 9 } }]),
    );
    await expectError(readScoredPoolParquet(dupFirst), ERROR_CODES.BAD_ROW, "row 2", "row 1", "repeats");
    const sameRow = await duckFile(
      "order-4.parquet",
      rowsSql([good, { id: "b", image_source: "", styles: ["haiku"], scores: { ocr: 9 } }]),
    );
    await expectError(readScoredPoolParquet(sameRow), ERROR_CODES.BAD_ROW, "row 2", "image_source");
  });

  it("a stored NaN or infinite score is an error (only null means missing)", async () => {
    const path = await duckFile(
      "nan-score.parquet",
      `SELECT * REPLACE ('NaN'::DOUBLE AS score_stem) FROM (${rowsSql([good])})`,
    );
    await expectError(readScoredPoolParquet(path), ERROR_CODES.BAD_ROW, "row 1", "score_stem", "NaN");
    const inf = await duckFile(
      "inf-score.parquet",
      `SELECT * REPLACE ('Infinity'::DOUBLE AS score_ocr) FROM (${rowsSql([good])})`,
    );
    await expectError(readScoredPoolParquet(inf), ERROR_CODES.BAD_ROW, "row 1", "score_ocr", "Infinity");
  });

  it("a missing file is FILE_NOT_FOUND and a non-Parquet file UNSUPPORTED_FORMAT", async () => {
    await expectError(
      readScoredPoolParquet(join(dir, "nope.parquet")),
      ERROR_CODES.FILE_NOT_FOUND,
      "nope.parquet",
    );
    const textPath = join(dir, "text.parquet");
    await sql(`COPY (SELECT 'hello' AS x) TO ${lit(textPath)} (FORMAT csv)`);
    await expectError(readScoredPoolParquet(textPath), ERROR_CODES.UNSUPPORTED_FORMAT, "text.parquet");
  });

  it("an error of the batch source reaches the caller as it is, and leaves no file", async () => {
    const pool = generatePool({ n: 50, seed: 1 });
    function* failing() {
      yield* scoredPoolArrowBatches(pool, { batchRows: 20 });
      throw new Error("source broke");
    }
    const target = join(dir, "broken.parquet");
    await expect(writeParquetFile(target, failing(), { rowGroupSize: 20 })).rejects.toThrow("source broke");
    expect((await readdir(dir)).some((f) => f.includes("broken"))).toBe(false);
    await expectError(writeParquetFile(target, []), ERROR_CODES.INTERNAL, "no batch");
    expect((await readdir(dir)).some((f) => f.includes("broken"))).toBe(false);
  });

  it("writing into a missing directory fails with FILE_NOT_FOUND", async () => {
    const pool = generatePool({ n: 5, seed: 1 });
    await expectError(
      writeScoredPoolParquet(join(dir, "no-such-dir", "x.parquet"), pool),
      ERROR_CODES.FILE_NOT_FOUND,
      "no-such-dir",
    );
  });
});
