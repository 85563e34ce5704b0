/**
 * `mmssr curate --in FILE`: the stream's graph over a samples file from the command line, and its
 * image rules (untrusted messages: only images inside --image-base, loud about missing ones).
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCli } from "../support/run-cli.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
let dir: string;
let input: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-curate-cli-"));
  await mkdir(join(dir, "images"));
  await copyFile(join(FIXTURES, "mllm_demo_data", "1.jpg"), join(dir, "images", "cat.jpg"));
  await copyFile(join(FIXTURES, "mllm_demo_data", "1.jpg"), join(dir, "secret.jpg"));
  const turns = [
    { from: "human", value: "<image>\nWhat is shown?" },
    { from: "gpt", value: "An animal." },
  ];
  const lines = [
    // text-only samples (no image named)
    ...syntheticSamples(60, 4).map((s) =>
      JSON.stringify({
        id: s.id,
        conversations: s.conversations.map((t) => ({ ...t, value: t.value.replace("<image>\n", "") })),
      }),
    ),
    ...Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({ id: `in-${i}`, image: "cat.jpg", conversations: turns }),
    ),
    // references a message must not be allowed to follow
    ...Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({ id: `out-${i}`, image: "../secret.jpg", conversations: turns }),
    ),
  ];
  input = join(dir, "in.jsonl");
  await writeFile(input, `${lines.join("\n")}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `mmssr curate --in` of the test input at ratio 0.2, images inside DIR/images, no progress lines. */
const curateInput = (out: string, ...flags: string[]) =>
  runCli([
    "curate",
    "--in",
    input,
    "--out",
    out,
    "--ratio",
    "0.2",
    "--image-base",
    join(dir, "images"),
    ...flags,
    "--progress-every",
    "0",
  ]);

describe("mmssr curate --in", () => {
  it("curates a file through the graph; images outside --image-base are refused and counted", async () => {
    const out = join(dir, "out");
    const r = await curateInput(out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/read 100 records: 100 scored/);
    expect(r.stdout).toMatch(/images: 20 of 40 could not be used \(image-refused 20\)/);
    // what was decided, as select's summary shows it: per capability, and why not
    expect(r.stdout).toMatch(/│ capability +│ selected │ share │/);
    expect(r.stdout).toMatch(/│ not selected because │ samples │ share +│\n│ budget +│ 80 +│ 100\.0% +│/);
    expect(r.stderr).toMatch(/WARNING: 20 of 40 images could not be used \(image-refused 20\)/);
    const strict = await curateInput(join(dir, "out2"), "--max-missing-images", "0.1");
    expect(strict.code).toBe(2);
    expect(strict.stderr).toMatch(/20 of 40 images could not be used, more than --max-missing-images 0\.1/);
    const trusted = await curateInput(join(dir, "out3"), "--allow-images-outside-base");
    expect(trusted.code, trusted.stderr).toBe(0);
    expect(trusted.stdout).toMatch(/images: all 40 used/);
    // published as a curate output: one manifest of this run
    expect(await readdir(join(out, "manifests"))).toHaveLength(1);
  }, 120_000);

  it("refuses a mix of sources, a missing --image-base, a policy file without --in", async () => {
    const both = await runCli([
      "curate",
      "--in",
      input,
      "--brokers",
      "127.0.0.1:1",
      "--out",
      join(dir, "x"),
      "--ratio",
      "0.2",
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--in: a file source takes no --brokers/);
    const neither = await runCli(["curate", "--out", join(dir, "x"), "--ratio", "0.2"]);
    expect(neither.code).toBe(2);
    expect(neither.stderr).toMatch(/give --brokers, --topic and --group .*, or --in/);
    const base = await runCli([
      "curate",
      "--in",
      input,
      "--out",
      join(dir, "x"),
      "--ratio",
      "0.2",
      "--image-base",
      join(dir, "nope"),
    ]);
    expect(base.code).toBe(2);
    expect(base.stderr).toMatch(/--image-base: .*nope does not exist/);
    const pf = await runCli([
      "curate",
      "--brokers",
      "b:1",
      "--topic",
      "t",
      "--group",
      "g",
      "--out",
      join(dir, "x"),
      "--ratio",
      "0.2",
      "--policy-file",
      join(dir, "p.json"),
    ]);
    expect(pf.code).toBe(2);
    expect(pf.stderr).toMatch(/--policy-file: only with --in/);
  });

  it("dead-letters a message over --max-message-bytes as too-large", async () => {
    const path = join(dir, "sizes.jsonl");
    const small = JSON.stringify({
      id: "small",
      conversations: [
        { from: "human", value: "q" },
        { from: "gpt", value: "a" },
      ],
    });
    const big = JSON.stringify({
      id: "big",
      conversations: [
        { from: "human", value: "q".repeat(500) },
        { from: "gpt", value: "a" },
      ],
    });
    await writeFile(path, `${small}\n${big}\n`);
    const out = join(dir, "sizes");
    const r = await runCli([
      "curate",
      "--in",
      path,
      "--out",
      out,
      "--ratio",
      "0.5",
      "--max-message-bytes",
      "200",
      "--progress-every",
      "0",
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/read 2 records: 1 scored .* 1 dead-lettered/);
    const letter = JSON.parse((await readFile(join(out, "dead-letters.jsonl"), "utf8")).trim());
    expect(letter).toMatchObject({ code: "too-large", origin: { offset: "1" } });
    expect(letter.reason).toMatch(/over the 200-byte limit/);
  });

  it("takes the scoring flags of mmssr score: --no-images, --image-source, --threads, --ep", async () => {
    const out = join(dir, "flags");
    const r = await curateInput(out, "--no-images", "--image-source", "web-crawl", "--threads", "2");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/images: not loaded \(--no-images\): text-only scores/);
    const { readScoredPool } = await import("../../connectors/scored-pool-io.js");
    const pool = await readScoredPool(out);
    expect(pool.size).toBe(100);
    expect(pool.sources).toEqual(["web-crawl"]);
    for (let i = 0; i < pool.size; i++) expect(pool.extras.get(i)?.flags).toContain("no-image");
    const ep = await runCli([
      "curate",
      "--in",
      input,
      "--out",
      join(dir, "ep"),
      "--ratio",
      "0.2",
      "--ep",
      "tpu",
    ]);
    expect(ep.code).toBe(2);
    expect(ep.stderr).toMatch(/--ep: expected cpu or cuda, got "tpu"/);
  });

  it("--bad-image reject dead-letters the samples whose image cannot be used (image-unusable)", async () => {
    const out = join(dir, "strict-images");
    const r = await curateInput(out, "--bad-image", "reject");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/read 100 records: 80 scored .* 20 dead-lettered/);
    const letters = (await readFile(join(out, "dead-letters.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(letters).toHaveLength(20);
    for (const l of letters)
      expect(l).toMatchObject({ code: "image-unusable", reason: expect.stringMatching(/image-refused/) });
    const { readScoredPool } = await import("../../connectors/scored-pool-io.js");
    expect((await readScoredPool(out)).size).toBe(80);
    const bad = await runCli([
      "curate",
      "--in",
      input,
      "--out",
      join(dir, "bi"),
      "--ratio",
      "0.2",
      "--bad-image",
      "drop",
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--bad-image: expected text-only or reject/);
  });
});
