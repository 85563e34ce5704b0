import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../test/support/run-cli.js";
import { readSampleRecords } from "./sample-reader.js";
import { readTextLines } from "./text-lines.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-lines-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sample = (id: string, text: string): string =>
  JSON.stringify({
    id,
    conversations: [
      { from: "human", value: text },
      { from: "gpt", value: "ok" },
    ],
  });

describe("strict UTF-8 lines", () => {
  it("gives each line, CRLF or not, across chunk edges, and names a line that is not UTF-8", async () => {
    const path = join(dir, "mixed.jsonl");
    const bad = Buffer.concat([Buffer.from('{"id":"bad'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    await writeFile(
      path,
      Buffer.concat([
        Buffer.from("héllo\r\n"),
        bad,
        Buffer.from("\n"),
        Buffer.from("x".repeat(3 << 20)),
        Buffer.from("\nlast"),
      ]),
    );
    const lines = [];
    for await (const l of readTextLines(path)) lines.push(l);
    expect(lines.map((l) => l.lineNo)).toEqual([1, 2, 3, 4]);
    expect(lines[0]).toEqual({ lineNo: 1, text: "héllo" });
    expect(lines[1]).toMatchObject({ lineNo: 2, error: "not UTF-8 (byte 0xff at column 11)" });
    expect("text" in lines[2] && lines[2].text.length).toBe(3 << 20);
    expect(lines[3]).toEqual({ lineNo: 4, text: "last" });
  });

  it("a samples file: the bad line is a bad record, never a repaired one", async () => {
    const path = join(dir, "samples.jsonl");
    await writeFile(
      path,
      Buffer.concat([
        Buffer.from(`${sample("good", "fine")}\n`),
        Buffer.from(sample("bad", "bad\u0000").replace("\\u0000", "")),
        Buffer.from([0xff, 0xfe]),
        Buffer.from(`\n${sample("good2", "fine")}\n`),
      ]),
    );
    const recs = [];
    for await (const r of readSampleRecords(path)) recs.push(r);
    expect(recs).toHaveLength(3);
    expect(recs[1]).toMatchObject({
      where: `${path}:2`,
      error: expect.stringMatching(/^not UTF-8 \(byte 0xff/),
    });
    const scored = await runCli(["score", "--in", path, "--out", join(dir, "scored.jsonl"), "--no-progress"]);
    expect(scored.code, scored.stderr).toBe(0);
    expect(scored.stdout).toMatch(/scored 2 samples.*rejected: 1/s);
  });

  it("a scored pool: select refuses the file naming the line", async () => {
    const path = join(dir, "pool.jsonl");
    const row = (id: string) =>
      JSON.stringify({ id, image_source: "s", styles: ["yes/no"], scores: { ocr: 3 } });
    await writeFile(
      path,
      Buffer.concat([Buffer.from(`${row("a")}\n`), Buffer.from([0xc3, 0x28]), Buffer.from("\n")]),
    );
    const r = await runCli(["select", "--scores", path, "--out", join(dir, "sel.jsonl"), "--ratio", "0.5"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pool\.jsonl:2: not UTF-8 \(byte 0xc3 at column 1\)/);
  });
});
