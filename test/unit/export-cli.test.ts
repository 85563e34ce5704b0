/**
 * `mmssr export`: a curate output (built here by runCurate from a file source) as LLaVA and
 * LLaMA-Factory JSON. What was exported is checked against the selected Parquet files as DuckDB
 * (an independent reader) sees them; image references must resolve from the output's folder.
 * With --samples: a pool of `mmssr score` + `mmssr select` (ids only) joined to its samples.
 */
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCurate } from "../../src/app/curator.js";
import { validateSample } from "../../src/domain/sample.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { runCli } from "../support/run-cli.js";

const FIXTURES = resolve(import.meta.dirname, "../fixtures/samples");
const JPG = join(FIXTURES, "mllm_demo_data/1.jpg");

let dir: string;
let base: string;
let curated: string;
let duck: Duck;
let selectedRows: {
  id: string;
  conversations: { from: string; value: string }[];
  system: string | null;
  image: string | null;
  images: string[] | null;
  image_url: string | null;
  has_bytes: boolean;
}[];

interface Special {
  kind: "b64-jpg" | "b64-png" | "relative" | "url" | "multi" | "system";
  sample: Record<string, unknown>;
}
const specials: Special[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-export-"));
  base = join(dir, "data");
  await mkdir(join(base, "synthetic"), { recursive: true });
  await mkdir(join(base, "photos"), { recursive: true });
  const synth = syntheticSamples(40, 11) as unknown as Record<string, unknown>[];
  for (const s of synth) await copyFile(JPG, join(base, s.image as string));
  await copyFile(JPG, join(base, "photos/a.jpg"));
  await copyFile(join(FIXTURES, "mllm_demo_data/2.jpg"), join(base, "photos/b.jpg"));
  const jpgB64 = (await readFile(JPG)).toString("base64");
  const png = await sharp({ create: { width: 4, height: 3, channels: 3, background: "#c04020" } })
    .png()
    .toBuffer();
  const turns = (q: string) => [
    { from: "human", value: q },
    { from: "gpt", value: "The picture shows a person standing next to a red car on a sunny street." },
  ];
  for (let k = 0; k < 3; k++) {
    specials.push({
      kind: "b64-jpg",
      sample: { id: `inline/jpg ${k}`, image_b64: jpgB64, conversations: turns("<image>\nWhat is shown?") },
    });
    specials.push({
      kind: "b64-png",
      sample: {
        id: `inline-png-${k}`,
        image_b64: png.toString("base64"),
        conversations: turns("Describe it."),
      },
    });
    specials.push({
      kind: "relative",
      sample: { id: `rel-${k}`, image: "photos/a.jpg", conversations: turns("<image>\nWho is this?") },
    });
    specials.push({
      kind: "url",
      sample: {
        id: `url-${k}`,
        image_url: `https://images.example.com/cat-${k}.jpg`,
        conversations: turns("<image>\nWhat animal is it?"),
      },
    });
    specials.push({
      kind: "multi",
      sample: {
        id: `multi-${k}`,
        images: ["photos/a.jpg", "photos/b.jpg"],
        conversations: turns("<image>\n<image>\nCompare the two pictures."),
      },
    });
    specials.push({
      kind: "system",
      sample: {
        id: `sys-${k}`,
        image: "photos/b.jpg",
        system: "You are a careful assistant.",
        conversations: turns("What is in the photo?"),
      },
    });
  }
  const all = [...synth];
  specials.forEach((s, k) => {
    all.splice(2 + k * 3, 0, s.sample);
  });
  const input = join(base, "in.jsonl");
  await writeFile(input, `${all.map((s) => JSON.stringify(s)).join("\n")}\n`);
  curated = join(dir, "curated");
  const stats = await runCurate({
    source: { kind: "file", path: input },
    out: curated,
    // a budget of a whole window selects every sample, so every kind below reaches the export
    // whatever the model thinks of it
    policy: { budget: 500 },
    windowSize: 500,
    windowMs: 10_000,
    imageBase: base,
    log: () => {},
  });
  expect(stats.scored).toBe(all.length);
  duck = await openDuck();
  selectedRows = (await duck.sql(
    `SELECT id, conversations, system, image, images, image_url, image_bytes IS NOT NULL AS has_bytes
     FROM read_parquet('${join(curated, "selected", "*.parquet")}')`,
  )) as typeof selectedRows;
  expect(selectedRows.length).toBe(stats.selected);
});

afterAll(async () => {
  duck?.close();
  await rm(dir, { recursive: true, force: true });
});

const byId = () => new Map(selectedRows.map((r) => [r.id, r]));
const kindOf = (id: string) => specials.find((s) => s.sample.id === id)?.kind;

async function exportTo(format: string, name: string, extra: string[] = []) {
  const out = join(dir, "train", name);
  await mkdir(dirname(out), { recursive: true });
  const run = await runCli(["export", "--in", curated, "--format", format, "--out", out, ...extra]);
  return { out, run };
}

function expectResolvable(out: string, ref: string): void {
  expect(isAbsolute(ref)).toBe(false);
  expect(existsSync(resolve(dirname(out), ref))).toBe(true);
}

describe("mmssr export --format llava", () => {
  it("writes every selected row with its turns and resolvable images", async () => {
    const { out, run } = await exportTo("llava", "llava.json", ["--image-base", base]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const records = JSON.parse(await readFile(out, "utf8")) as Record<string, unknown>[];
    expect(records).toHaveLength(selectedRows.length);
    expect(run.stdout).toMatch(
      new RegExp(
        `^exported ${records.length} samples \\(llava\\) -> .*llava\\.json \\(\\d+ images? written to .*llava_images/\\)\\n$`,
      ),
    );
    const rows = byId();
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(rows.keys()));
    const seen = new Set<string>();
    for (const rec of records) {
      const row = rows.get(rec.id as string);
      if (!row) throw new Error(`unknown id ${String(rec.id)}`);
      expect(rec.conversations).toEqual(row.conversations);
      expect(rec.system).toBe(row.system ?? undefined);
      const kind = kindOf(rec.id as string);
      if (kind !== undefined) seen.add(kind);
      if (kind === "url") {
        expect(rec.image).toBe(row.image_url);
        continue;
      }
      expectResolvable(out, rec.image as string);
      if (kind === "multi") {
        expect(rec.images).toEqual(["../data/photos/a.jpg", "../data/photos/b.jpg"]);
        for (const ref of rec.images as string[]) expectResolvable(out, ref);
      } else expect(rec.images).toBeUndefined();
      if (kind === "relative") expect(rec.image).toBe("../data/photos/a.jpg");
      if (kind === "b64-jpg" || kind === "b64-png") {
        expect(row.has_bytes).toBe(true);
        const ext = kind === "b64-jpg" ? "jpg" : "png";
        expect(rec.image).toMatch(new RegExp(`^llava_images/[A-Za-z0-9_-]+\\.${ext}$`));
        const written = await readFile(resolve(dirname(out), rec.image as string));
        const original = specials.find((s) => s.sample.id === rec.id)?.sample.image_b64 as string;
        expect(written.equals(Buffer.from(original, "base64"))).toBe(true);
      }
      if (kind === undefined) expect(rec.image).toMatch(/^\.\.\/data\/synthetic\/[a-z]+-\d+\.jpg$/);
    }
    // every sample is selected: every kind is there
    expect([...seen].sort()).toEqual(["b64-jpg", "b64-png", "multi", "relative", "system", "url"]);
    // the ids are made file names: "inline/jpg 0" -> inline_jpg_0.jpg
    const names = await readdir(join(dir, "train", "llava_images"));
    expect(names.filter((n) => n.startsWith("inline_jpg_")).length).toBeGreaterThan(0);
  });

  it("--limit exports the first N, and a missing image base is reported", async () => {
    const { out, run } = await exportTo("llava", "limited.json", ["--limit", "3"]);
    expect(run.code).toBe(0);
    expect(JSON.parse(await readFile(out, "utf8"))).toHaveLength(3);
    expect(run.stdout).toMatch(/^exported 3 samples \(llava\)/);
    // the default image base is the current folder, where the sample images are not
    expect(run.stderr).toMatch(/warning: \d+ local image path\(s\) do not exist/);
  });

  it("reads one selected Parquet file as well", async () => {
    const [file] = await readdir(join(curated, "selected"));
    const out = join(dir, "train", "one-file.json");
    const run = await runCli([
      "export",
      "--in",
      join(curated, "selected", file),
      "--format",
      "llava",
      "--out",
      out,
      "--image-base",
      base,
    ]);
    expect(run.code).toBe(0);
    expect(JSON.parse(await readFile(out, "utf8"))).toHaveLength(selectedRows.length);
  });
});

describe("mmssr export --format llama-factory", () => {
  it("writes the messages/images shape of mllm_demo.json with one <image> per image", async () => {
    const demo = JSON.parse(await readFile(join(FIXTURES, "mllm_demo.json"), "utf8")) as Record<
      string,
      unknown
    >[];
    const { out, run } = await exportTo("llama-factory", "lf.json", ["--image-base", base]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(
      /^exported \d+ samples \(llama-factory\) -> .*lf\.json \(\d+ images? written to/,
    );
    const records = JSON.parse(await readFile(out, "utf8")) as {
      messages: { role: string; content: string }[];
      images: string[];
    }[];
    expect(records).toHaveLength(selectedRows.length);
    const shape = (r: object) => Object.keys(r).sort();
    const roles = new Set(["user", "assistant", "system"]);
    for (const rec of records) {
      expect(shape(rec)).toEqual(shape(demo[0]));
      for (const m of rec.messages) {
        expect(shape(m)).toEqual(shape((demo[0].messages as object[])[0]));
        expect(roles.has(m.role)).toBe(true);
      }
      const tokens = rec.messages.reduce((n, m) => n + m.content.split("<image>").length - 1, 0);
      expect(tokens).toBe(rec.images.length);
      for (const ref of rec.images) if (!ref.startsWith("https://")) expectResolvable(out, ref);
    }
    // turns in order, human -> user, gpt -> assistant, system first; texts unchanged but for
    // the <image> tokens LLaVA data left implicit
    const llavaRun = await exportTo("llava", "lf-twin.json", ["--image-base", base]);
    expect(llavaRun.run.code).toBe(0);
    const selectedInOrder = JSON.parse(await readFile(llavaRun.out, "utf8")) as {
      id: string;
      system?: string;
      conversations: { from: string; value: string }[];
    }[];
    expect(selectedInOrder).toHaveLength(records.length);
    selectedInOrder.forEach((llava, k) => {
      const expected = [
        ...(llava.system === undefined ? [] : [{ role: "system", content: llava.system }]),
        ...llava.conversations.map((t) => ({
          role: t.from === "human" ? "user" : "assistant",
          content: t.value,
        })),
      ];
      const got = records[k].messages.map((m) => ({ ...m, content: m.content.replace(/^(<image>)+/, "") }));
      expect(got).toEqual(expected.map((m) => ({ ...m, content: m.content.replace(/^(<image>)+/, "") })));
      if (kindOf(llava.id) === "system") {
        expect(records[k].messages[0]).toEqual({ role: "system", content: "You are a careful assistant." });
        expect(records[k].messages[1].content).toBe("<image>What is in the photo?");
      }
      if (kindOf(llava.id) === "b64-png") expect(records[k].messages[0].content).toBe("<image>Describe it.");
    });
  });
});

describe("refusals", () => {
  it("an --out that is an input is refused (exit 2) and left unchanged", async () => {
    const [file] = await readdir(join(curated, "selected"));
    const input = join(curated, "selected", file);
    const before = await readFile(input);
    for (const inArg of [input, curated]) {
      const run = await runCli(["export", "--in", inArg, "--format", "llava", "--out", input]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/MMSSR_USAGE.*refusing to overwrite an input/);
    }
    const [manifest] = await readdir(join(curated, "manifests"));
    const run = await runCli([
      "export",
      "--in",
      curated,
      "--format",
      "llava",
      "--out",
      join(curated, "manifests", manifest),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/refusing to overwrite an input/);
    expect((await readFile(input)).equals(before)).toBe(true);
  });

  it("a folder without manifests is refused (exit 2) with a clear message", async () => {
    const empty = join(dir, "not-curated");
    await mkdir(join(empty, "selected"), { recursive: true });
    const [file] = await readdir(join(curated, "selected"));
    await copyFile(join(curated, "selected", file), join(empty, "selected", file));
    const out = join(dir, "train", "none.json");
    const run = await runCli(["export", "--in", empty, "--format", "llava", "--out", out]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/MMSSR_FILE_NOT_FOUND.*has no manifest listing published files/);
    expect(existsSync(out)).toBe(false);
  });

  it("bad flags and a missing input are usage errors", async () => {
    const out = join(dir, "train", "x.json");
    const bad = await runCli(["export", "--in", curated, "--format", "alpaca", "--out", out]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/MMSSR_USAGE.*--format: expected llava or llama-factory/);
    const limit = await runCli([
      "export",
      "--in",
      curated,
      "--format",
      "llava",
      "--out",
      out,
      "--limit",
      "x",
    ]);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toMatch(/--limit/);
    const missing = await runCli(["export", "--in", join(dir, "nope"), "--format", "llava", "--out", out]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/MMSSR_FILE_NOT_FOUND.*nope/);
    expect(existsSync(out)).toBe(false);
  });

  it("a row with an unknown speaker is a BAD_ROW naming the file and the row", async () => {
    const bad = join(dir, "bad.parquet");
    await duck.sql(
      `COPY (SELECT * FROM (VALUES ('a', [{'from': 'human', 'value': 'hi'}, {'from': 'gpt', 'value': 'yo'}]),
                                   ('b', [{'from': 'robot', 'value': 'beep'}])) t(id, conversations))
       TO '${bad}' (FORMAT parquet)`,
    );
    const out = join(dir, "train", "bad.json");
    const run = await runCli(["export", "--in", bad, "--format", "llama-factory", "--out", out]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/MMSSR_BAD_ROW.*bad\.parquet: row 2 .*conversations\[0\]\.from: "robot"/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("mmssr export --samples (a pool of mmssr score + select joined to its samples)", () => {
  let pool: string;
  let samplesFile: string;
  /** the samples by id as score sees them: a record without id gets its content hash, first wins */
  const originals = new Map<string, { conversations: unknown; image?: string; system?: string }>();
  const selected: Record<string, string> = {};

  const lines = async (path: string): Promise<Record<string, unknown>[]> =>
    (await readFile(path, "utf8"))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  beforeAll(async () => {
    pool = join(dir, "pool");
    await mkdir(join(pool, "synthetic"), { recursive: true });
    const records = syntheticSamples(30, 23) as unknown as Record<string, unknown>[];
    for (const [k, s] of records.entries()) {
      if (k < 20) {
        // real image files, referenced relatively to the samples file's folder
        await copyFile(join(FIXTURES, `mllm_demo_data/${(k % 3) + 1}.jpg`), join(pool, s.image as string));
      } else {
        // text-only
        delete s.image;
        s.conversations = (s.conversations as { from: string; value: string }[]).map((t) => ({
          ...t,
          value: t.value.replace("<image>\n", ""),
        }));
      }
    }
    // records without id (one in the messages form): score and export both give them the content hash
    for (const s of syntheticSamples(8, 29) as unknown as Record<string, unknown>[]) {
      delete s.id;
      await copyFile(JPG, join(pool, s.image as string));
      records.push(s);
    }
    const last = records[records.length - 1];
    last.messages = (last.conversations as { from: string; value: string }[]).map((t) => ({
      role: t.from === "human" ? "user" : "assistant",
      content: t.value,
    }));
    delete last.conversations;
    // later duplicates of an id lose (score rejects them)
    for (const s of records.slice(0, 10))
      records.push({
        ...s,
        conversations: [
          { from: "human", value: "dup?" },
          { from: "gpt", value: "DUPLICATE" },
        ],
      });
    for (const r of records) {
      const v = validateSample(r, { missingId: "content-hash" });
      if (!v.ok) throw new Error(JSON.stringify(v.errors));
      if (!originals.has(v.sample.id))
        originals.set(v.sample.id, {
          conversations: v.sample.conversations,
          image: v.sample.image,
          system: v.sample.system,
        });
    }
    samplesFile = join(pool, "samples.jsonl");
    await writeFile(samplesFile, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const scored = join(pool, "scored.parquet");
    const score = await runCli(["score", "--in", samplesFile, "--out", scored, "--no-progress"]);
    expect(score.code, score.stderr).toBe(0);
    expect(score.stdout).toMatch(/scored 38 samples/);
    for (const ext of ["parquet", "jsonl"]) {
      selected[ext] = join(pool, `selected.${ext}`);
      const sel = await runCli(["select", "--scores", scored, "--ratio", "0.7", "--out", selected[ext]]);
      expect(sel.code, sel.stderr).toBe(0);
    }
  });

  const selectedIds = async (ext: string): Promise<string[]> =>
    ext === "jsonl"
      ? (await lines(selected.jsonl)).map((r) => r.id as string)
      : ((await duck.sql(`SELECT id FROM read_parquet('${selected.parquet}')`)) as { id: string }[]).map(
          (r) => r.id,
        );

  for (const ext of ["parquet", "jsonl"])
    it(`joins a selected .${ext} to its samples: selected order, their turns, resolvable images`, async () => {
      const ids = await selectedIds(ext);
      expect(ids).toHaveLength(Math.floor(38 * 0.7));
      // some selected ids are content hashes (records without id), which the join must recompute
      expect(ids.some((id) => id.startsWith("sha256:"))).toBe(true);
      const out = join(dir, "train", `joined-${ext}.json`);
      const run = await runCli([
        "export",
        "--in",
        selected[ext],
        "--samples",
        samplesFile,
        "--format",
        "llava",
        "--out",
        out,
      ]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toMatch(new RegExp(`^exported ${ids.length} samples \\(llava\\) -> `));
      const records = JSON.parse(await readFile(out, "utf8")) as Record<string, unknown>[];
      expect(records.map((r) => r.id)).toEqual(ids);
      let withImage = 0;
      for (const rec of records) {
        const original = originals.get(rec.id as string);
        if (!original) throw new Error(`unknown id ${String(rec.id)}`);
        expect(rec.conversations).toEqual(original.conversations);
        expect(JSON.stringify(rec)).not.toContain("DUPLICATE");
        if (original.image === undefined) expect(rec.image).toBeUndefined();
        else {
          // relative to the samples file's folder, written relative to the output's
          expect(rec.image).toBe(`../pool/${original.image}`);
          expectResolvable(out, rec.image as string);
          withImage++;
        }
      }
      expect(withImage).toBeGreaterThan(0);
      expect(withImage).toBeLessThan(records.length);
    });

  it("exports a curate output with --samples as it does without (the samples' own copy)", async () => {
    const input = join(base, "in.jsonl");
    const a = join(dir, "train", "a", "x.json");
    const b = join(dir, "train", "b", "x.json");
    await mkdir(dirname(a), { recursive: true });
    await mkdir(dirname(b), { recursive: true });
    const plain = await runCli([
      "export",
      "--in",
      curated,
      "--format",
      "llava",
      "--out",
      a,
      "--image-base",
      base,
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    // the image base defaults to the folder of --samples (base)
    const joined = await runCli([
      "export",
      "--in",
      curated,
      "--samples",
      input,
      "--format",
      "llava",
      "--out",
      b,
    ]);
    expect(joined.code, joined.stderr).toBe(0);
    expect(joined.stderr).toBe("");
    expect(JSON.parse(await readFile(b, "utf8"))).toEqual(JSON.parse(await readFile(a, "utf8")));
    // one selected file of curate is read as a pool (its interchange columns give the ids)
    const [file] = await readdir(join(curated, "selected"));
    const c = join(dir, "train", "c", "x.json");
    await mkdir(dirname(c), { recursive: true });
    const one = await runCli([
      "export",
      "--in",
      join(curated, "selected", file),
      "--samples",
      input,
      "--format",
      "llava",
      "--out",
      c,
    ]);
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(await readFile(c, "utf8"))).toEqual(JSON.parse(await readFile(a, "utf8")));
  });

  it("a selected id missing from --samples is a BAD_ROW (exit 2) naming it; nothing is written", async () => {
    const ids = await selectedIds("parquet");
    const gone = ids[3];
    const partial = join(pool, "partial.jsonl");
    const kept = (await lines(samplesFile)).filter((r) => r.id !== gone);
    await writeFile(partial, `${kept.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const out = join(dir, "train", "missing.json");
    const run = await runCli([
      "export",
      "--in",
      selected.parquet,
      "--samples",
      partial,
      "--format",
      "llava",
      "--out",
      out,
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      new RegExp(
        `MMSSR_BAD_ROW.*--samples: 1 of ${ids.length} selected ids .* not in .*partial\\.jsonl: "${gone}"`,
      ),
    );
    expect(existsSync(out)).toBe(false);
  });

  it("refuses an --out equal to --samples (exit 2), and a pool without --samples says to add it", async () => {
    const before = await readFile(samplesFile);
    const over = await runCli([
      "export",
      "--in",
      selected.jsonl,
      "--samples",
      samplesFile,
      "--format",
      "llava",
      "--out",
      samplesFile,
    ]);
    expect(over.code).toBe(2);
    expect(over.stderr).toMatch(/MMSSR_USAGE.*--out: .*samples\.jsonl is the same file as --samples/);
    expect((await readFile(samplesFile)).equals(before)).toBe(true);
    const out = join(dir, "train", "no-samples.json");
    const jsonl = await runCli(["export", "--in", selected.jsonl, "--format", "llava", "--out", out]);
    expect(jsonl.code).toBe(2);
    expect(jsonl.stderr).toMatch(/MMSSR_USAGE.*add --samples/);
    const parquet = await runCli(["export", "--in", selected.parquet, "--format", "llava", "--out", out]);
    expect(parquet.code).toBe(2);
    expect(parquet.stderr).toMatch(/MMSSR_MISSING_COLUMN.*missing column conversations.*--samples/);
    expect(existsSync(out)).toBe(false);
  });
});
