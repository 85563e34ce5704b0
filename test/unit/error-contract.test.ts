/**
 * Mistakes a new user makes get exit 2, a stable code and the file or flag named (issue 9,
 * points 8 and 9): missing files, folders given as files, empty or truncated inputs, an
 * unreachable broker, a port in use.
 */

import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/run-cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-errors-"));
  const r = await runCli(["gen-pool", "--n", "200", "--out", join(dir, "pool.parquet")]);
  expect(r.code, r.stderr).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const score = (input: string) =>
  runCli(["score", "--in", input, "--out", join(dir, "out.jsonl"), "--no-progress"]);

describe("bad inputs: exit 2 with the path", () => {
  it("score: a missing file, a folder, an empty or truncated .json", async () => {
    const missing = await score(join(dir, "missing.jsonl"));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/\[MMSSR_FILE_NOT_FOUND\]: .*missing\.jsonl: no such file/);
    await mkdir(join(dir, "folder.jsonl"));
    const folder = await score(join(dir, "folder.jsonl"));
    expect(folder.code).toBe(2);
    expect(folder.stderr).toMatch(/folder\.jsonl is a folder: give a file/);
    await writeFile(join(dir, "empty.json"), "");
    const empty = await score(join(dir, "empty.json"));
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/\[MMSSR_BAD_ROW\]: .*empty\.json: the file is empty/);
    await writeFile(join(dir, "cut.json"), '[{"id": "a", "conversations": [');
    const cut = await score(join(dir, "cut.json"));
    expect(cut.code).toBe(2);
    expect(cut.stderr).toMatch(/cut\.json: not valid JSON \(truncated\?\)/);
    for (const r of [missing, folder, empty, cut]) expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /);
  });

  it("select: a folder, a truncated Parquet file", async () => {
    await mkdir(join(dir, "dir.parquet"));
    const folder = await runCli([
      "select",
      "--scores",
      join(dir, "dir.parquet"),
      "--out",
      join(dir, "s.jsonl"),
      "--ratio",
      "0.3",
    ]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toMatch(/dir\.parquet is a folder without scored-pool files/);
    const bytes = await readFile(join(dir, "pool.parquet"));
    await writeFile(join(dir, "cut.parquet"), bytes.subarray(0, Math.floor(bytes.length / 2)));
    const cut = await runCli([
      "select",
      "--scores",
      join(dir, "cut.parquet"),
      "--out",
      join(dir, "s.jsonl"),
      "--ratio",
      "0.3",
    ]);
    expect(cut.code).toBe(2);
    expect(cut.stderr).toMatch(/cut\.parquet is not a readable Parquet file \(\d+ bytes; truncated/);
  });
});

describe("the outside world: exit 2 naming what to check", () => {
  it("an unreachable broker is named as such (produce, curate)", async () => {
    const input = join(dir, "one.jsonl");
    await writeFile(
      input,
      `${JSON.stringify({
        id: "a",
        conversations: [
          { from: "human", value: "q" },
          { from: "gpt", value: "a" },
        ],
      })}\n`,
    );
    const produce = await runCli(["produce", "--brokers", "127.0.0.1:1", "--topic", "t", "--in", input]);
    expect(produce.code).toBe(2);
    expect(produce.stderr).toMatch(
      /\[MMSSR_BROKER_UNREACHABLE\]: cannot reach the Kafka brokers \(--brokers\): .*ECONNREFUSED 127\.0\.0\.1:1/,
    );
    const curate = await runCli([
      "curate",
      "--brokers",
      "127.0.0.1:1",
      "--topic",
      "t",
      "--group",
      "g",
      "--out",
      join(dir, "c"),
      "--ratio",
      "0.2",
    ]);
    expect(curate.code).toBe(2);
    expect(curate.stderr).toMatch(/MMSSR_BROKER_UNREACHABLE/);
  }, 90_000);

  it("a metrics port in use names the flag", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", () => resolve()));
    const port = (taken.address() as { port: number }).port;
    try {
      const { createCurationMetrics, serveMetrics } = await import("../../src/stream/curation-metrics.js");
      const { Registry } = await import("prom-client");
      const registry = new Registry();
      createCurationMetrics(registry);
      await expect(serveMetrics(registry, port)).rejects.toMatchObject({
        code: "MMSSR_PORT_UNAVAILABLE",
        message: expect.stringMatching(
          /--metrics-port: cannot listen on 127\.0\.0\.1:\d+ \(in use by another process\)/,
        ),
      });
    } finally {
      taken.close();
    }
  });
});
