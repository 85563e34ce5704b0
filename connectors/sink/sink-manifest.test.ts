import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import {
  fileName,
  MANIFEST_NAME,
  type ManifestEntry,
  ManifestWriter,
  OffsetRanges,
  parseFileName,
  readManifest,
  reconcile,
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
  file: `scored/${fileName({ kind: "scored", topic: "t", partition, firstOffset: String(first), lastOffset: String(last), seq })}`,
  kind: "scored",
  topic: "t",
  partition,
  firstOffset: String(first),
  lastOffset: String(last),
  rows,
  publishedAt: "2025-01-01T00:00:00.000Z",
  seq,
});

describe("file names", () => {
  it("round-trip, including topics that look like the name's own parts", () => {
    for (const topic of ["t", "a-p1-2-3-4", "x.y_z", "dir/file name.jsonl", "ünï"]) {
      const n = {
        kind: "selected" as const,
        topic,
        partition: 7,
        firstOffset: "12",
        lastOffset: "9223372036854775807",
        seq: 42,
      };
      expect(parseFileName(fileName(n))).toEqual(n);
    }
    expect(parseFileName("scored-t-p0-1-2.parquet")).toBeUndefined();
    expect(parseFileName(".scored-t-p0-1-2-000001.parquet.abcd.tmp")).toBeUndefined();
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
          for (let x = 0; x <= 70; x++) expect(r.has(BigInt(x))).toBe(s.has(x));
          // disjoint, sorted, not adjacent
          const rs = r.ranges;
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
});

describe("manifest file", () => {
  it("is empty when absent; appends lines; a torn last line is skipped, then cut before the next append", async () => {
    const dir = await freshDir();
    expect(await readManifest(dir)).toEqual({ entries: [], torn: false, validBytes: 0 });
    const w = await ManifestWriter.open(dir);
    await w.append([entry(0, 0, 9, 10, 1)]);
    await w.close();
    // a torn line that even parses (the newline is missing: the write was cut)
    await writeFile(
      join(dir, MANIFEST_NAME),
      `${JSON.stringify(entry(0, 0, 9, 10, 1))}\n${JSON.stringify(entry(0, 10, 19, 10, 2))}`,
    );
    const m = await readManifest(dir);
    expect(m.torn).toBe(true);
    expect(m.entries.map((e) => e.seq)).toEqual([1]);
    const w2 = await ManifestWriter.open(dir);
    await w2.append([entry(0, 10, 12, 3, 3)]);
    await w2.close();
    const m2 = await readManifest(dir);
    expect(m2.torn).toBe(false);
    expect(m2.entries.map((e) => e.seq)).toEqual([1, 3]);
  });

  it("refuses a corrupt line in the middle (not a crash artefact)", async () => {
    const dir = await freshDir();
    await writeFile(join(dir, MANIFEST_NAME), `garbage\n${JSON.stringify(entry(0, 0, 1, 2, 1))}\n`);
    const err = await readManifest(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect((err as MmssrError).code).toBe(ERROR_CODES.BAD_ROW);
    expect((err as MmssrError).message).toContain("line 1");
  });
});

describe("reconcile", () => {
  it("advances the committed offset over contiguous published ranges, ignores committed ones", async () => {
    const dir = await freshDir();
    const entries = [
      entry(0, 0, 9, 10, 1),
      entry(0, 10, 19, 10, 2),
      entry(0, 30, 39, 10, 3),
      entry(1, 0, 4, 5, 4),
    ];
    const r = await reconcile(
      dir,
      entries,
      new Map([
        ["t:0", "10"],
        ["t:2", "7"],
      ]),
    );
    const p0 = r.get("t:0");
    expect(p0?.resumeFrom).toBe("20");
    expect(p0?.published.ranges).toEqual([
      [10n, 19n],
      [30n, 39n],
    ]);
    expect(p0?.isPublished("5")).toBe(false); // committed: never re-read
    expect(p0?.isPublished("35")).toBe(true);
    expect(p0?.isPublished("25")).toBe(false);
    // no committed offset: no resume point, but the published offsets are known
    expect(r.get("t:1")?.resumeFrom).toBeUndefined();
    expect(r.get("t:1")?.isPublished("4")).toBe(true);
    // a committed partition with nothing published resumes where it was
    expect(r.get("t:2")?.resumeFrom).toBe("7");
  });
});
