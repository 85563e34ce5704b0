import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MmssrError } from "../domain/errors.js";
import type { Sample } from "../domain/sample.js";
import {
  createImageLoader,
  DEFAULT_IMAGE_LOADER_OPTIONS,
  type ImageLoadResult,
  redactUrl,
} from "./image-source.js";

const FIXTURES = resolve(import.meta.dirname, "../../test/fixtures/samples");
const JPEG_PATH = join(FIXTURES, "mllm_demo_data/1.jpg");

function sample(fields: Partial<Sample>): Sample {
  return {
    id: "s1",
    image_source: "unknown",
    conversations: [
      { from: "human", value: "<image>\nWhat is this?" },
      { from: "gpt", value: "A picture." },
    ],
    ...fields,
  };
}

function expectFail(r: ImageLoadResult, flag: string, reason?: RegExp) {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.flag).toBe(flag);
  if (reason) expect(r.reason).toMatch(reason);
}

let dir: string;
let jpeg: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-image-source-"));
  jpeg = await readFile(JPEG_PATH);
  await writeFile(join(dir, "a.jpg"), jpeg);
  await writeFile(join(dir, "empty.jpg"), new Uint8Array(0));
  await mkdir(join(dir, "folder.jpg"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("createImageLoader: options", () => {
  it("has the documented defaults", () => {
    expect(DEFAULT_IMAGE_LOADER_OPTIONS).toEqual({
      maxBytes: 20 * 1024 * 1024,
      timeoutMs: 10_000,
      maxConcurrentFetches: 8,
      allowUrls: true,
      fallback: true,
    });
  });

  it("rejects invalid options with BAD_OPTIONS", () => {
    expect(() => createImageLoader({ maxBytes: 0 })).toThrow(MmssrError);
    expect(() => createImageLoader({ maxConcurrentFetches: 0 })).toThrow(/maxConcurrentFetches/);
    expect(() => createImageLoader({ timeoutMs: -1 })).toThrow(/timeoutMs/);
  });
});

describe("image loader: local files and inline bytes", () => {
  it("a sample without any reference -> no-image", async () => {
    const r = await createImageLoader().load(sample({}));
    expectFail(r, "no-image");
  });

  it("reads an absolute path, a relative path against baseDir and a file: URL", async () => {
    const loader = createImageLoader({ baseDir: dir });
    for (const image of [join(dir, "a.jpg"), "a.jpg", pathToFileURL(join(dir, "a.jpg")).href]) {
      const r = await loader.load(sample({ image }));
      expect(r.ok, image).toBe(true);
      if (!r.ok) continue;
      expect(Buffer.from(r.bytes).equals(jpeg)).toBe(true);
      expect(r.origin).toBe(`file:${join(dir, "a.jpg")}`);
    }
  });

  it("missing file -> image-missing, naming the path", async () => {
    const r = await createImageLoader({ baseDir: dir }).load(sample({ image: "nope/b.jpg" }));
    expectFail(r, "image-missing", /ENOENT.*nope\/b\.jpg/);
  });

  it("a path through a file (ENOTDIR) -> image-missing", async () => {
    const r = await createImageLoader({ baseDir: dir }).load(sample({ image: "a.jpg/inner.jpg" }));
    expectFail(r, "image-missing", /ENOTDIR/);
  });

  it("a directory -> image-unreadable (EISDIR)", async () => {
    const r = await createImageLoader({ baseDir: dir }).load(sample({ image: "folder.jpg" }));
    expectFail(r, "image-unreadable", /EISDIR/);
  });

  it("no read permission -> image-unreadable (EACCES)", async (ctx) => {
    // root ignores file modes, so this case cannot be produced as root (the CI user here).
    if (process.getuid?.() === 0) ctx.skip();
    const p = join(dir, "secret.jpg");
    await writeFile(p, jpeg);
    await chmod(p, 0o000);
    const r = await createImageLoader().load(sample({ image: p }));
    expectFail(r, "image-unreadable", /EACCES|EPERM/);
  });

  it("a file that fails on read (EIO, works as root) -> image-unreadable naming the errno", async (ctx) => {
    // /proc/self/mem is a regular file of size 0 whose read at offset 0 fails with EIO.
    if (process.platform !== "linux") ctx.skip();
    const r = await createImageLoader().load(sample({ image: "/proc/self/mem" }));
    expectFail(r, "image-unreadable", /EIO/);
  });

  it("not a regular file (a device) -> image-unreadable", async (ctx) => {
    if (process.platform === "win32") ctx.skip();
    const r = await createImageLoader().load(sample({ image: "/dev/null" }));
    expectFail(r, "image-unreadable", /not a regular file/);
  });

  it("an empty file -> image-corrupt", async () => {
    const r = await createImageLoader({ baseDir: dir }).load(sample({ image: "empty.jpg" }));
    expectFail(r, "image-corrupt", /empty/);
  });

  it("a file over maxBytes -> image-too-large (by stat size)", async () => {
    const r = await createImageLoader({ baseDir: dir, maxBytes: 1000 }).load(sample({ image: "a.jpg" }));
    expectFail(r, "image-too-large", new RegExp(`${jpeg.length} bytes, over the limit of 1000`));
  });

  it("a file exactly at maxBytes is read", async () => {
    const r = await createImageLoader({ baseDir: dir, maxBytes: jpeg.length }).load(
      sample({ image: "a.jpg" }),
    );
    expect(r.ok).toBe(true);
  });

  it("inline base64 of a real JPEG gives its bytes", async () => {
    const r = await createImageLoader().load(sample({ image_b64: jpeg.toString("base64") }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Buffer.from(r.bytes).equals(jpeg)).toBe(true);
    expect(r.origin).toBe("image_b64");
  });

  it("inline base64 over maxBytes -> image-too-large", async () => {
    const r = await createImageLoader({ maxBytes: 100 }).load(sample({ image_b64: jpeg.toString("base64") }));
    expectFail(r, "image-too-large", /over the limit of 100/);
  });

  it("prefers image_b64 over image, and image over image_url", async () => {
    const loader = createImageLoader({ baseDir: dir, allowUrls: false });
    const tiny = Buffer.from([1, 2, 3]);
    const r1 = await loader.load(sample({ image_b64: tiny.toString("base64"), image: "a.jpg" }));
    expect(r1.ok && r1.origin).toBe("image_b64");
    const r2 = await loader.load(sample({ image: "a.jpg", image_url: "http://127.0.0.1:9/x.jpg" }));
    expect(r2.ok && r2.origin).toBe(`file:${join(dir, "a.jpg")}`);
  });

  it("when every reference fails, reports the most preferred failure and counts the others", async () => {
    const r = await createImageLoader({ baseDir: dir, allowUrls: false }).load(
      sample({ image: "missing.jpg", image_url: "http://127.0.0.1:9/x.jpg" }),
    );
    expectFail(r, "image-missing", /ENOENT.*and 1 other reference/);
  });

  it("an unsupported scheme -> image-unreadable", async () => {
    const r = await createImageLoader().load(sample({ image: "s3://bucket/key.jpg" }));
    expectFail(r, "image-unreadable", /unsupported URL scheme "s3"/);
  });

  it("after close, loads fail with image-unreadable", async () => {
    const loader = createImageLoader({ baseDir: dir });
    await loader.close();
    await loader.close();
    expectFail(await loader.load(sample({ image: "a.jpg" })), "image-unreadable", /closed/);
  });

  it("never rejects on a hostile sample", async () => {
    const hostile = new Proxy(sample({}), {
      get() {
        throw new Error("boom");
      },
    });
    expectFail(await createImageLoader().load(hostile), "image-unreadable", /boom/);
  });
});

describe("image loader: http(s) URLs", () => {
  let server: Server;
  let base: string;
  let inFlight = 0;
  let maxInFlight = 0;
  const hanging = new Set<ServerResponse>();

  function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", "http://x");
    switch (url.pathname) {
      case "/ok.jpg":
        res.writeHead(200, { "content-type": "image/jpeg", "content-length": jpeg.length });
        res.end(jpeg);
        return;
      case "/404.jpg":
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not here");
        return;
      case "/redirect.jpg":
        res.writeHead(302, { location: "/ok.jpg" });
        res.end();
        return;
      case "/hang.jpg":
        hanging.add(res); // never answers
        return;
      case "/hang-body.jpg":
        res.writeHead(200, { "content-type": "image/jpeg" });
        res.write(jpeg.subarray(0, 100)); // headers and a first chunk, then nothing
        hanging.add(res);
        return;
      case "/big-cl.jpg":
        res.writeHead(200, { "content-type": "image/jpeg", "content-length": 5000 });
        res.end(Buffer.alloc(5000, 7));
        return;
      case "/big-chunked.jpg": {
        res.writeHead(200, { "content-type": "image/jpeg" }); // no length: chunked
        let sent = 0;
        const tick = () => {
          if (res.destroyed || sent >= 100_000) return res.end();
          res.write(Buffer.alloc(1000, 1));
          sent += 1000;
          setImmediate(tick);
        };
        tick();
        return;
      }
      case "/empty.jpg":
        res.writeHead(200, { "content-length": 0 });
        res.end();
        return;
      case "/slow.jpg": {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        setTimeout(() => {
          inFlight--;
          res.writeHead(200, { "content-type": "image/jpeg" });
          res.end(jpeg);
        }, 40);
        return;
      }
      default:
        res.writeHead(500);
        res.end();
    }
  }

  beforeAll(async () => {
    server = createServer(handle);
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  });

  it("200 gives the body; origin is the URL without its query", async () => {
    const r = await createImageLoader().load(sample({ image_url: `${base}/ok.jpg?token=secret` }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Buffer.from(r.bytes).equals(jpeg)).toBe(true);
    expect(r.origin).toBe(`${base}/ok.jpg?...`);
    expect(r.origin).not.toMatch(/secret/);
  });

  it("an http URL in `image` is fetched too, following redirects", async () => {
    const r = await createImageLoader().load(sample({ image: `${base}/redirect.jpg` }));
    expect(r.ok).toBe(true);
  });

  it("404 -> image-unreadable naming the status", async () => {
    const r = await createImageLoader().load(sample({ image_url: `${base}/404.jpg?sig=abc` }));
    expectFail(r, "image-unreadable", /HTTP 404/);
    expect(r.ok || r.reason).not.toMatch(/abc/);
  });

  it("a server that never answers -> timeout -> image-unreadable", async () => {
    const t0 = Date.now();
    const r = await createImageLoader({ timeoutMs: 150 }).load(sample({ image_url: `${base}/hang.jpg` }));
    expectFail(r, "image-unreadable", /timeout.*150 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("a body that stalls -> timeout -> image-unreadable", async () => {
    const r = await createImageLoader({ timeoutMs: 150 }).load(
      sample({ image_url: `${base}/hang-body.jpg` }),
    );
    expectFail(r, "image-unreadable", /timeout/);
  });

  it("Content-Length over maxBytes -> image-too-large", async () => {
    const r = await createImageLoader({ maxBytes: 1000 }).load(sample({ image_url: `${base}/big-cl.jpg` }));
    expectFail(r, "image-too-large", /Content-Length 5000/);
  });

  it("a chunked body over maxBytes -> image-too-large (counted while streaming)", async () => {
    const r = await createImageLoader({ maxBytes: 10_000 }).load(
      sample({ image_url: `${base}/big-chunked.jpg` }),
    );
    expectFail(r, "image-too-large", /body over the limit of 10000/);
  });

  it("an empty body -> image-corrupt", async () => {
    const r = await createImageLoader().load(sample({ image_url: `${base}/empty.jpg` }));
    expectFail(r, "image-corrupt", /empty body/);
  });

  it("a refused connection -> image-unreadable naming the error code", async () => {
    const probe = createServer();
    await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((ok) => probe.close(() => ok()));
    const r = await createImageLoader().load(sample({ image_url: `http://127.0.0.1:${port}/x.jpg` }));
    expectFail(r, "image-unreadable", /network error ECONNREFUSED/);
  });

  it("falls back from a missing path to image_url; fallback: false does not", async () => {
    const s = sample({ image: "missing.jpg", image_url: `${base}/ok.jpg` });
    const r = await createImageLoader({ baseDir: dir }).load(s);
    expect(r.ok && r.origin).toBe(`${base}/ok.jpg`);
    const strict = await createImageLoader({ baseDir: dir, fallback: false }).load(s);
    expectFail(strict, "image-missing");
    expect(strict.ok || strict.reason).not.toMatch(/other reference/);
  });

  it("allowUrls false -> image-unreadable without a request", async () => {
    const r = await createImageLoader({ allowUrls: false }).load(sample({ image_url: `${base}/ok.jpg` }));
    expectFail(r, "image-unreadable", /allowUrls: false/);
  });

  it("at most maxConcurrentFetches requests run at once", async () => {
    inFlight = 0;
    maxInFlight = 0;
    const loader = createImageLoader({ maxConcurrentFetches: 3 });
    const results = await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        loader.load(sample({ id: `s${i}`, image_url: `${base}/slow.jpg?i=${i}` })),
      ),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(maxInFlight).toBe(3);
  });

  it("close aborts a fetch in flight", async () => {
    const loader = createImageLoader({ timeoutMs: 60_000 });
    const pending = loader.load(sample({ image_url: `${base}/hang.jpg` }));
    await new Promise((ok) => setTimeout(ok, 50));
    await loader.close();
    expectFail(await pending, "image-unreadable", /closed/);
  });

  it("redactUrl drops query, fragment and credentials", () => {
    expect(redactUrl("https://u:p@h.example/a.jpg?x=1#f")).toBe("https://h.example/a.jpg?...");
    expect(redactUrl("https://h.example/a.jpg")).toBe("https://h.example/a.jpg");
  });
});
