/**
 * `mmssr score` and untrusted or missing images (issue 9, points 4 and 10): a `--image-base`
 * that does not exist is a usage error before the model loads; a run whose images are mostly
 * missing warns loudly on stderr, counts them in its summary and, with `--max-missing-images`,
 * fails after writing its output; local paths outside the image base and URLs are refused
 * unless the flags allow them.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/run-cli.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
const MODEL = new URL("../../models/mmssr-lite", import.meta.url).pathname;
let dir: string;
let jpeg: Buffer;

const lines = async (path: string): Promise<Record<string, unknown>[]> =>
  (await readFile(path, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

const record = (id: string, image: string) => ({
  id,
  image,
  conversations: [
    { from: "human", value: "<image>\nWhat is in the picture?" },
    { from: "gpt", value: "Two people standing near a lake." },
  ],
});

async function writeJsonl(path: string, records: unknown[]): Promise<string> {
  await writeFile(path, `${records.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return path;
}

const score = (input: string, out: string, ...extra: string[]) =>
  runCli(["score", "--in", input, "--model", MODEL, "--out", out, "--no-progress", ...extra]);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-image-safety-"));
  jpeg = await readFile(join(FIXTURES, "mllm_demo_data", "1.jpg"));
  await mkdir(join(dir, "images"));
  await copyFile(join(FIXTURES, "mllm_demo_data", "1.jpg"), join(dir, "images", "present.jpg"));
  // 1 image that exists, 9 that do not (the LLaVA layout without --image-base)
  await writeJsonl(join(dir, "mostly-missing.jsonl"), [
    record("ok", "images/present.jpg"),
    ...Array.from({ length: 9 }, (_, i) => record(`m${i}`, `COCO_train2014_${i}.jpg`)),
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("mmssr score: --image-base", () => {
  it("a --image-base that does not exist exits 2 naming the flag, before the model loads", async () => {
    const nope = join(dir, "no-such-folder");
    const r = await runCli([
      "score",
      "--in",
      join(dir, "mostly-missing.jsonl"),
      "--model",
      join(dir, "no-such-model"), // would fail with a manifest error if the model loaded first
      "--out",
      join(dir, "x.jsonl"),
      "--image-base",
      nope,
      "--no-progress",
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--image-base: ${nope} does not exist`);
    expect(r.stderr).not.toMatch(/manifest/);
  });

  it("a --image-base that is a file exits 2", async () => {
    const file = join(dir, "images", "present.jpg");
    const r = await score(join(dir, "mostly-missing.jsonl"), join(dir, "y.jsonl"), "--image-base", file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--image-base: ${file} is not a folder`);
  });
});

describe("mmssr score: missing images are loud", () => {
  it("warns on stderr when most images are missing, and the summary counts them (exit 0)", async () => {
    const out = join(dir, "missing.jsonl");
    const r = await score(join(dir, "mostly-missing.jsonl"), out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `mmssr score: WARNING: 9 of 10 images could not be used (image-missing 9); scores without images differ, check --image-base (relative paths resolve against ${dir})`,
    );
    expect(r.stderr.match(/WARNING/g)).toHaveLength(1);
    expect(r.stdout).toMatch(/images: 9 of 10 could not be used \(image-missing 9\)/);
    const rows = await lines(out);
    expect(rows).toHaveLength(10);
    expect(rows.find((x) => x.id === "ok")?.flags).toEqual([]);
  });

  it("--max-missing-images 0.1 exits 2 after writing the output and the summary", async () => {
    const out = join(dir, "strict-missing.jsonl");
    const r = await score(join(dir, "mostly-missing.jsonl"), out, "--max-missing-images", "0.1");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /9 of 10 samples naming an image \(90\.0%\) could not use it \(image-missing 9\), more than --max-missing-images 0\.1/,
    );
    expect(r.stdout).toMatch(/scored 10 samples/);
    expect(r.stdout).toMatch(/images: 9 of 10 could not be used/);
    expect(await lines(out)).toHaveLength(10);
  });

  it("--max-missing-images above the share passes; outside 0..1 is a usage error", async () => {
    const ok = await score(
      join(dir, "mostly-missing.jsonl"),
      join(dir, "lax.jsonl"),
      "--max-missing-images",
      "0.95",
    );
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await score(
      join(dir, "mostly-missing.jsonl"),
      join(dir, "bad.jsonl"),
      "--max-missing-images",
      "2",
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-missing-images: expected a share in 0\.\.1/);
  });

  it("on a long run the warning comes once, after the first 200 samples naming an image", async () => {
    const input = await writeJsonl(
      join(dir, "long.jsonl"),
      Array.from({ length: 300 }, (_, i) =>
        record(`l${i}`, i % 10 === 0 ? "images/present.jpg" : `gone/${i}.jpg`),
      ),
    );
    const r = await score(input, join(dir, "long-scored.jsonl"), "--batch", "50");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/WARNING/g)).toHaveLength(1);
    expect(r.stderr).toMatch(/WARNING: 180 of 200 images so far could not be used \(image-missing 180\)/);
    expect(r.stdout).toMatch(/images: 270 of 300 could not be used \(image-missing 270\)/);
  });

  it("no warning when the images are there; --no-images counts none", async () => {
    const input = await writeJsonl(join(dir, "fine.jsonl"), [
      record("a", "images/present.jpg"),
      record("b", "images/present.jpg"),
    ]);
    const r = await score(input, join(dir, "fine-scored.jsonl"), "--max-missing-images", "0");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/WARNING/);
    expect(r.stdout).toMatch(/images: all 2 used/);
    const t = await score(join(dir, "mostly-missing.jsonl"), join(dir, "text.jsonl"), "--no-images");
    expect(t.code, t.stderr).toBe(0);
    expect(t.stderr).not.toMatch(/WARNING/);
    expect(t.stdout).toMatch(/images: no sample named an image/);
  });
});

describe("mmssr score: untrusted image references", () => {
  let server: Server;
  let url: string;
  let hits = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits++;
      res.writeHead(200, { "content-type": "image/jpeg", "content-length": jpeg.length });
      res.end(jpeg);
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/a.jpg`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  });

  it("a local path outside the image base is refused unless --allow-images-outside-base", async () => {
    const sub = join(dir, "sub");
    await mkdir(sub, { recursive: true });
    const input = await writeJsonl(join(sub, "escape.jsonl"), [
      record("up", "../images/present.jpg"),
      record("abs", join(dir, "images", "present.jpg")),
    ]);
    const out = join(dir, "escape-scored.jsonl");
    const r = await score(input, out);
    expect(r.code, r.stderr).toBe(0);
    for (const row of await lines(out)) expect(row.flags).toEqual(["image-refused"]);
    expect(r.stderr).toMatch(/WARNING: 2 of 2 images could not be used \(image-refused 2\)/);
    expect(r.stderr).toMatch(/--allow-images-outside-base/);
    const out2 = join(dir, "escape-allowed.jsonl");
    const ok = await score(input, out2, "--allow-images-outside-base");
    expect(ok.code, ok.stderr).toBe(0);
    for (const row of await lines(out2)) expect(row.flags).toEqual([]);
  });

  it("URLs are fetched only from --allow-image-hosts, and loopback only with --allow-private-image-hosts", async () => {
    const input = await writeJsonl(join(dir, "urls.jsonl"), [{ ...record("u", ""), image: url }]);
    hits = 0;
    const flagsOf = async (name: string, ...extra: string[]) => {
      const out = join(dir, `${name}.jsonl`);
      const r = await score(input, out, ...extra);
      expect(r.code, r.stderr).toBe(0);
      return (await lines(out))[0].flags;
    };
    expect(await flagsOf("url-default")).toEqual(["image-refused"]);
    expect(await flagsOf("url-other-host", "--allow-image-hosts", "images.example.com")).toEqual([
      "image-refused",
    ]);
    expect(await flagsOf("url-loopback", "--allow-image-hosts", "127.0.0.1")).toEqual(["image-refused"]);
    expect(hits).toBe(0);
    expect(
      await flagsOf("url-ok", "--allow-image-hosts", "127.0.0.1", "--allow-private-image-hosts"),
    ).toEqual([]);
    expect(hits).toBe(1);
  });

  it("a malformed --allow-image-hosts entry exits 2 naming the flag", async () => {
    const r = await score(
      join(dir, "mostly-missing.jsonl"),
      join(dir, "h.jsonl"),
      "--allow-image-hosts",
      "a.com:8080",
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--allow-image-hosts: image host "a\.com:8080": a host name only, without port/);
  });
});
