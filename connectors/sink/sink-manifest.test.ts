import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { OffsetRanges } from "../../src/stream/offset-ranges.js";
import {
  fileName,
  type ManifestEntry,
  ManifestWriter,
  parseFileName,
  parseManifestText,
  partitionNamePart,
  readManifestFile,
} from "./sink-manifest.js";

let root: string;
let k = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "sink-manifest-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});
const freshDir = async () => {
  const d = join(root, `d${++k}`);
  await mkdir(d, { recursive: true });
  return d;
};

const entry = (partition: number, first: number, last: number, rows: number, seq: number): ManifestEntry => ({
  file: `scored/${fileName({ kind: "scored", topic: "t", partition, firstOffset: String(first), lastOffset: String(last) })}`,
  kind: "scored",
  topic: "t",
  partition,
  firstOffset: String(first),
  lastOffset: String(last),
  rows,
  publishedAt: "2025-01-01T00:00:00.000Z",
  seq,
  instance: "i1",
  generation: 1,
});

const line = (e: ManifestEntry) => `${JSON.stringify(e)}\n`;

describe("file names", () => {
  it("carry no seq: kind, topic, partition and range", () => {
    expect(fileName({ kind: "scored", topic: "t", partition: 0, firstOffset: "0", lastOffset: "2" })).toBe(
      "scored-t-p0-0-2.parquet",
    );
    expect(parseFileName("scored-t-p0-0-2.parquet")).toEqual({
      kind: "scored",
      topic: "t",
      partition: 0,
      firstOffset: "0",
      lastOffset: "2",
    });
  });

  it("round-trip, including topics that look like the name's own parts", () => {
    for (const topic of ["t", "a-p1-2-3-4", "a-p1-2", "x.y_z", "dir/file name.jsonl", "ünï", "50%"]) {
      const n = {
        kind: "selected" as const,
        topic,
        partition: 7,
        firstOffset: "12",
        lastOffset: "9223372036854775807",
      };
      expect(parseFileName(fileName(n))).toEqual(n);
      expect(fileName(n).startsWith(`selected-${partitionNamePart(topic, 7)}`)).toBe(true);
    }
  });

  it("still parse names of the single-instance layout (a -<seq> suffix)", () => {
    expect(parseFileName("scored-t-p0-0-2-000001.parquet")).toEqual({
      kind: "scored",
      topic: "t",
      partition: 0,
      firstOffset: "0",
      lastOffset: "2",
    });
    expect(parseFileName("selected-data%2Fin%20put.jsonl-p2-5-5-000042.parquet")).toEqual({
      kind: "selected",
      topic: "data/in put.jsonl",
      partition: 2,
      firstOffset: "5",
      lastOffset: "5",
    });
  });

  it("reject anything else", () => {
    expect(parseFileName(".scored-t-p0-1-2.parquet.abcd.tmp")).toBeUndefined();
    expect(parseFileName("scored-t-p0-1.parquet")).toBeUndefined();
    expect(parseFileName("other-t-p0-1-2.parquet")).toBeUndefined();
    expect(parseFileName("scored-t-p0-1-2.json")).toBeUndefined();
    expect(parseFileName("scored-%ZZ-p0-1-2.parquet")).toBeUndefined(); // not percent-encoding
  });

  it("partitionNamePart tells partitions apart (p1 is not a prefix of p10)", () => {
    expect(partitionNamePart("t", 1)).toBe("t-p1-");
    expect(
      fileName({ kind: "scored", topic: "t", partition: 10, firstOffset: "0", lastOffset: "0" }),
    ).not.toMatch(new RegExp(`^scored-${partitionNamePart("t", 1)}`));
  });
});

describe("OffsetRanges", () => {
  it("property: agrees with a plain set, and advance/pruneBelow behave", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 5 }))),
        fc.integer({ min: 0, max: 70 }),
        (adds, cut) => {
          const r = new OffsetRanges();
          const s = new Set<number>();
          for (const [lo, len] of adds) {
            r.add(BigInt(lo), BigInt(lo + len));
            for (let x = lo; x <= lo + len; x++) s.add(x);
          }
          expect(r.isEmpty).toBe(s.size === 0);
          for (let x = 0; x <= 70; x++) expect(r.has(BigInt(x))).toBe(s.has(x));
          // disjoint, sorted, not adjacent
          const rs = r.ranges;
          for (const [lo, hi] of rs) expect(lo <= hi).toBe(true);
          for (let i = 1; i < rs.length; i++) expect(rs[i][0] > rs[i - 1][1] + 1n).toBe(true);
          let a = cut;
          while (s.has(a)) a++;
          expect(r.advance(BigInt(cut))).toBe(BigInt(a));
          r.pruneBelow(BigInt(cut));
          for (let x = 0; x <= 70; x++) expect(r.has(BigInt(x))).toBe(x >= cut && s.has(x));
        },
      ),
    );
  });

  it("an empty add (hi < lo) changes nothing; int64 bounds are exact", () => {
    const r = new OffsetRanges();
    r.add(5n, 4n);
    expect(r.isEmpty).toBe(true);
    r.add(9223372036854775806n, 9223372036854775807n);
    expect(r.has(9223372036854775807n)).toBe(true);
    expect(r.advance(9223372036854775806n)).toBe(9223372036854775808n);
  });
});

describe("manifest file", () => {
  it("is empty when absent; appends lines; a torn last line is skipped, then cut before the next append", async () => {
    const dir = await freshDir();
    const path = join(dir, "i1.jsonl");
    expect(await readManifestFile(path)).toEqual({ entries: [], torn: false, validBytes: 0 });
    const w = await ManifestWriter.open(path);
    await w.append([entry(0, 0, 9, 10, 1)]);
    await w.append([]); // nothing to write
    await w.close();
    expect(await readFile(path, "utf8")).toBe(line(entry(0, 0, 9, 10, 1)));
    // a torn line that even parses (the newline is missing: the write was cut)
    await writeFile(path, `${line(entry(0, 0, 9, 10, 1))}${JSON.stringify(entry(0, 10, 19, 10, 2))}`);
    const m = await readManifestFile(path);
    expect(m.torn).toBe(true);
    expect(m.entries.map((e) => e.seq)).toEqual([1]);
    expect(m.validBytes).toBe(Buffer.byteLength(line(entry(0, 0, 9, 10, 1))));
    const w2 = await ManifestWriter.open(path);
    await w2.append([entry(0, 10, 12, 3, 3), entry(0, 13, 14, 2, 4)]); // both lines in one write
    await w2.close();
    const m2 = await readManifestFile(path);
    expect(m2.torn).toBe(false);
    expect(m2.entries.map((e) => e.seq)).toEqual([1, 3, 4]);
    expect(m2.entries[1]).toEqual(entry(0, 10, 12, 3, 3));
  });

  it("a torn line that does not parse is skipped too, not an error", async () => {
    const dir = await freshDir();
    const path = join(dir, "i1.jsonl");
    await writeFile(path, line(entry(0, 0, 1, 2, 1)));
    await appendFile(path, '{"file":"scored/scored-t-p0-2-');
    const m = await readManifestFile(path);
    expect(m).toMatchObject({ torn: true });
    expect(m.entries).toHaveLength(1);
  });

  it("refuses a corrupt line in the middle (not a crash artefact)", async () => {
    const dir = await freshDir();
    const path = join(dir, "i1.jsonl");
    await writeFile(path, `garbage\n${line(entry(0, 0, 1, 2, 1))}`);
    const err = await readManifestFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.BAD_ROW);
    expect((err as MmssrError).message).toContain("line 1");
    // a complete JSON line that is no entry (no file) is refused as well
    await writeFile(path, `${line(entry(0, 0, 1, 2, 1))}{"kind":"scored"}\n`);
    const err2 = await readManifestFile(path).catch((e: unknown) => e);
    expect((err2 as MmssrError).code).toBe(ERROR_CODES.BAD_ROW);
    expect((err2 as MmssrError).message).toContain("line 2");
    // opening it for appending refuses too, rather than appending after garbage
    await expect(ManifestWriter.open(path)).rejects.toBeInstanceOf(MmssrError);
  });

  it("parseManifestText: entries up to the last newline, line numbers from firstLine", () => {
    const text = `${line(entry(0, 0, 1, 2, 1))}\n${line(entry(0, 2, 3, 2, 2))}{"fi`;
    const p = parseManifestText(text, "m.jsonl");
    expect(p.entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(p.torn).toBe(true);
    expect(p.complete).toBe(text.slice(0, text.lastIndexOf("\n") + 1));
    expect(parseManifestText("", "m.jsonl")).toEqual({ entries: [], torn: false, complete: "" });
    const err = (() => {
      try {
        parseManifestText(`${line(entry(0, 0, 1, 2, 1))}oops\n`, "m.jsonl", 41);
      } catch (e) {
        return e;
      }
    })();
    expect((err as MmssrError).message).toBe("m.jsonl: line 42 is not a manifest entry");
  });
});
