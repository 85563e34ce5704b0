import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
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
  IMAGE_FAILURE_FLAGS,
  ImageHealth,
  type ImageLoaderOptions,
  type ImageLoadResult,
  imageHostAllowed,
  nonPublicAddressKind,
  normalizeHostPattern,
  redactUrl,
} from "./image-source.js";
import type { ScoreFlag } from "./scoring-types.js";

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
      allowLocalOutsideBase: false,
      allowHosts: [],
      allowPrivateAddresses: false,
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
    const r = await createImageLoader({ baseDir: dir }).load(sample({ image: p }));
    expectFail(r, "image-unreadable", /EACCES|EPERM/);
  });

  it("a file that fails on read (EIO, works as root) -> image-unreadable naming the errno", async (ctx) => {
    // /proc/self/mem is a regular file of size 0 whose read at offset 0 fails with EIO.
    if (process.platform !== "linux") ctx.skip();
    const r = await createImageLoader({ allowLocalOutsideBase: true }).load(
      sample({ image: "/proc/self/mem" }),
    );
    expectFail(r, "image-unreadable", /EIO/);
  });

  it("not a regular file (a device) -> image-unreadable", async (ctx) => {
    if (process.platform === "win32") ctx.skip();
    const r = await createImageLoader({ allowLocalOutsideBase: true }).load(sample({ image: "/dev/null" }));
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

  /** the test server listens on 127.0.0.1: allowed explicitly, loopback included */
  const web = (o: ImageLoaderOptions = {}) =>
    createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true, ...o });

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
    const r = await web().load(sample({ image_url: `${base}/ok.jpg?token=secret` }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Buffer.from(r.bytes).equals(jpeg)).toBe(true);
    expect(r.origin).toBe(`${base}/ok.jpg?...`);
    expect(r.origin).not.toMatch(/secret/);
  });

  it("an http URL in `image` is fetched too, following redirects", async () => {
    const r = await web().load(sample({ image: `${base}/redirect.jpg` }));
    expect(r.ok).toBe(true);
  });

  it("404 -> image-unreadable naming the status", async () => {
    const r = await web().load(sample({ image_url: `${base}/404.jpg?sig=abc` }));
    expectFail(r, "image-unreadable", /HTTP 404/);
    expect(r.ok || r.reason).not.toMatch(/abc/);
  });

  it("a server that never answers -> timeout -> image-unreadable", async () => {
    const t0 = Date.now();
    const r = await web({ timeoutMs: 150 }).load(sample({ image_url: `${base}/hang.jpg` }));
    expectFail(r, "image-unreadable", /timeout.*150 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("a body that stalls -> timeout -> image-unreadable", async () => {
    const r = await web({ timeoutMs: 150 }).load(sample({ image_url: `${base}/hang-body.jpg` }));
    expectFail(r, "image-unreadable", /timeout/);
  });

  it("Content-Length over maxBytes -> image-too-large", async () => {
    const r = await web({ maxBytes: 1000 }).load(sample({ image_url: `${base}/big-cl.jpg` }));
    expectFail(r, "image-too-large", /Content-Length 5000/);
  });

  it("a chunked body over maxBytes -> image-too-large (counted while streaming)", async () => {
    const r = await web({ maxBytes: 10_000 }).load(sample({ image_url: `${base}/big-chunked.jpg` }));
    expectFail(r, "image-too-large", /body over the limit of 10000/);
  });

  it("an empty body -> image-corrupt", async () => {
    const r = await web().load(sample({ image_url: `${base}/empty.jpg` }));
    expectFail(r, "image-corrupt", /empty body/);
  });

  it("a refused connection -> image-unreadable naming the error code", async () => {
    const probe = createServer();
    await new Promise<void>((ok) => probe.listen(0, "127.0.0.1", ok));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((ok) => probe.close(() => ok()));
    const r = await web().load(sample({ image_url: `http://127.0.0.1:${port}/x.jpg` }));
    expectFail(r, "image-unreadable", /network error ECONNREFUSED/);
  });

  it("falls back from a missing path to image_url; fallback: false does not", async () => {
    const s = sample({ image: "missing.jpg", image_url: `${base}/ok.jpg` });
    const r = await web({ baseDir: dir }).load(s);
    expect(r.ok && r.origin).toBe(`${base}/ok.jpg`);
    const strict = await web({ baseDir: dir, fallback: false }).load(s);
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
    const loader = web({ maxConcurrentFetches: 3 });
    const results = await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        loader.load(sample({ id: `s${i}`, image_url: `${base}/slow.jpg?i=${i}` })),
      ),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(maxInFlight).toBe(3);
  });

  it("close aborts a fetch in flight", async () => {
    const loader = web({ timeoutMs: 60_000 });
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

describe("image loader: local paths stay inside baseDir (untrusted references)", () => {
  let root: string;
  let base: string;
  let outside: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "mmssr-image-base-"));
    base = join(root, "base");
    outside = join(root, "outside.jpg");
    await mkdir(join(base, "sub"), { recursive: true });
    await writeFile(join(base, "in.jpg"), jpeg);
    await writeFile(outside, jpeg);
    await mkdir(join(root, "elsewhere"));
    await writeFile(join(root, "elsewhere", "x.jpg"), jpeg);
    await symlink(outside, join(base, "link-out.jpg"));
    await symlink(join(base, "in.jpg"), join(base, "sub", "link-in.jpg"));
    await symlink(join(root, "elsewhere"), join(base, "dir-out"));
    await symlink(base, join(root, "base-link"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("reads a relative path, an absolute path and a file: URL inside baseDir", async () => {
    const loader = createImageLoader({ baseDir: base });
    for (const image of [
      "in.jpg",
      "sub/../in.jpg",
      join(base, "in.jpg"),
      pathToFileURL(join(base, "in.jpg")).href,
    ]) {
      const r = await loader.load(sample({ image }));
      expect(r.ok, image).toBe(true);
      expect(r.ok && r.origin).toBe(`file:${join(base, "in.jpg")}`);
    }
  });

  it("`../` escaping baseDir -> image-refused, naming why", async () => {
    const loader = createImageLoader({ baseDir: base });
    for (const image of ["../outside.jpg", "sub/../../outside.jpg", "../elsewhere/x.jpg"]) {
      const r = await loader.load(sample({ image }));
      expectFail(r, "image-refused", /^outside --image-base: .* is not inside .*base; allowLocalOutsideBase/);
    }
  });

  it("an absolute path or file: URL outside baseDir -> image-refused", async () => {
    const loader = createImageLoader({ baseDir: base });
    for (const image of [outside, pathToFileURL(outside).href, "/etc/passwd"]) {
      const r = await loader.load(sample({ image }));
      expectFail(r, "image-refused", /outside --image-base/);
      expect(r.ok || r.reason).not.toMatch(/ENOENT/);
    }
  });

  it("a path outside that does not exist is refused too (no probing for files)", async () => {
    const r = await createImageLoader({ baseDir: base }).load(sample({ image: "../no-such.jpg" }));
    expectFail(r, "image-refused", /outside --image-base/);
  });

  it("a symlink inside baseDir pointing outside -> image-refused; one pointing inside is read", async () => {
    const loader = createImageLoader({ baseDir: base });
    expectFail(
      await loader.load(sample({ image: "link-out.jpg" })),
      "image-refused",
      /link-out\.jpg \(through a symbolic link\) is not inside/,
    );
    expectFail(await loader.load(sample({ image: "dir-out/x.jpg" })), "image-refused", /symbolic link/);
    const r = await loader.load(sample({ image: "sub/link-in.jpg" }));
    expect(r.ok).toBe(true);
  });

  it("a baseDir that is itself a symlink still reads what lies inside it", async () => {
    const linked = join(root, "base-link");
    const loader = createImageLoader({ baseDir: linked });
    expect((await loader.load(sample({ image: "in.jpg" }))).ok).toBe(true);
    expect((await loader.load(sample({ image: join(linked, "in.jpg") }))).ok).toBe(true);
    expectFail(await loader.load(sample({ image: "../outside.jpg" })), "image-refused");
  });

  it("a missing file inside baseDir is still image-missing", async () => {
    const r = await createImageLoader({ baseDir: base }).load(sample({ image: "sub/none.jpg" }));
    expectFail(r, "image-missing", /ENOENT/);
  });

  it("allowLocalOutsideBase: true restores reading any path", async () => {
    const loader = createImageLoader({ baseDir: base, allowLocalOutsideBase: true });
    for (const image of [
      "../outside.jpg",
      outside,
      pathToFileURL(outside).href,
      "link-out.jpg",
      "dir-out/x.jpg",
    ]) {
      const r = await loader.load(sample({ image }));
      expect(r.ok, image).toBe(true);
      if (r.ok) expect(Buffer.from(r.bytes).equals(jpeg)).toBe(true);
    }
  });

  it("every image failure flag, image-refused included, is an image failure", () => {
    expect([...IMAGE_FAILURE_FLAGS].sort()).toEqual(
      ["image-corrupt", "image-missing", "image-refused", "image-too-large", "image-unreadable"].sort(),
    );
  });
});

describe("image loader: URL hosts and addresses (untrusted references)", () => {
  let server: Server;
  let port: number;
  let base: string;
  let requests: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      requests.push(req.url ?? "");
      const url = new URL(req.url ?? "/", "http://x");
      switch (url.pathname) {
        case "/ok.jpg":
          res.writeHead(200, { "content-type": "image/jpeg", "content-length": jpeg.length });
          res.end(jpeg);
          return;
        case "/to-metadata.jpg":
          res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" });
          res.end();
          return;
        case "/to-localhost.jpg":
          res.writeHead(301, { location: `http://localhost:${port}/ok.jpg` });
          res.end();
          return;
        case "/to-file.jpg":
          res.writeHead(302, { location: "file:///etc/passwd" });
          res.end();
          return;
        case "/hop.jpg": {
          const n = Number(url.searchParams.get("n") ?? "0");
          res.writeHead(307, { location: n > 0 ? `/hop.jpg?n=${n - 1}` : "/ok.jpg" });
          res.end();
          return;
        }
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  });

  it("by default no host is allowed: every URL -> image-refused, without a request", async () => {
    requests = [];
    const r = await createImageLoader().load(sample({ image_url: `${base}/ok.jpg?sig=secret` }));
    expectFail(r, "image-refused", /^host not allowed: 127\.0\.0\.1 .*no image hosts are allowed/);
    expect(r.ok || r.reason).not.toMatch(/secret/);
    const r2 = await createImageLoader().load(sample({ image: "https://images.example.com/a.jpg" }));
    expectFail(r2, "image-refused", /host not allowed: images\.example\.com/);
    expect(requests).toEqual([]);
  });

  it("a host not in allowHosts -> image-refused", async () => {
    const loader = createImageLoader({ allowHosts: ["images.example.com", "*.cdn.example.org"] });
    for (const url of [
      `${base}/ok.jpg`,
      "http://example.com/a.jpg",
      "http://evil-images.example.com/a.jpg",
      "http://cdn.example.org/a.jpg", // "*." matches subdomains only
      "http://images.example.com.evil.net/a.jpg",
    ])
      expectFail(
        await loader.load(sample({ image_url: url })),
        "image-refused",
        /host not allowed.*allow-list/,
      );
  });

  it("host patterns: exact names, *.suffix, * and IPv6; bad patterns are BAD_OPTIONS", () => {
    const pats = ["Images.Example.COM.", "*.cdn.example.org", "[::1]", "203.0.113.7"].map(
      normalizeHostPattern,
    );
    expect(pats).toEqual(["images.example.com", "*.cdn.example.org", "::1", "203.0.113.7"]);
    expect(imageHostAllowed("images.example.com", pats)).toBe(true);
    expect(imageHostAllowed("a.cdn.example.org", pats)).toBe(true);
    expect(imageHostAllowed("a.b.cdn.example.org", pats)).toBe(true);
    expect(imageHostAllowed("cdn.example.org", pats)).toBe(false);
    expect(imageHostAllowed("xcdn.example.org", pats)).toBe(false);
    expect(imageHostAllowed("::1", pats)).toBe(true);
    expect(imageHostAllowed("203.0.113.7", pats)).toBe(true);
    expect(imageHostAllowed("anything.net", ["*"])).toBe(true);
    for (const bad of ["a.com:8080", "http://a.com", "a.com/x", "", "a..b", "*.1.2.3.4"])
      expect(() => createImageLoader({ allowHosts: [bad] }), bad).toThrow(MmssrError);
  });

  it("an allowed host on 127.0.0.1 is refused as a private address unless allowPrivateAddresses", async () => {
    requests = [];
    const refused = await createImageLoader({ allowHosts: ["127.0.0.1"] }).load(
      sample({ image_url: `${base}/ok.jpg` }),
    );
    expectFail(
      refused,
      "image-refused",
      /^private address: 127\.0\.0\.1 \(loopback\).*--allow-private-image-hosts/,
    );
    expect(requests).toEqual([]);
    const ok = await createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true }).load(
      sample({ image_url: `${base}/ok.jpg` }),
    );
    expect(ok.ok).toBe(true);
    if (ok.ok) expect(Buffer.from(ok.bytes).equals(jpeg)).toBe(true);
    expect(requests).toEqual(["/ok.jpg"]);
  });

  it("a host name is checked on the addresses it resolves to (localhost -> loopback)", async () => {
    requests = [];
    const r = await createImageLoader({ allowHosts: ["localhost"] }).load(
      sample({ image_url: `http://localhost:${port}/ok.jpg` }),
    );
    expectFail(r, "image-refused", /^private address: localhost resolves to (127\.0\.0\.1|::1) \(loopback\)/);
    expect(requests).toEqual([]);
  });

  it("IPv6 and IPv4-mapped literals are judged by their address", async () => {
    const loader = createImageLoader({ allowHosts: ["*"] });
    for (const [url, kind] of [
      ["http://[::1]/a.jpg", "loopback"],
      ["http://[::ffff:10.0.0.1]/a.jpg", "private"],
      ["http://[fe80::1]/a.jpg", "link-local"],
      ["http://[fd00::1]/a.jpg", "private"],
      ["http://0.0.0.0/a.jpg", "unspecified"],
      ["http://169.254.169.254/latest/meta-data/", "link-local"],
      ["http://2130706433/a.jpg", "loopback"], // 127.0.0.1 as one number
    ])
      expectFail(await loader.load(sample({ image_url: url })), "image-refused", new RegExp(`\\(${kind}\\)`));
  });

  it("nonPublicAddressKind classifies addresses", () => {
    const cases: [string, string | undefined][] = [
      ["127.0.0.1", "loopback"],
      ["127.255.0.9", "loopback"],
      ["10.1.2.3", "private"],
      ["172.16.0.1", "private"],
      ["172.31.255.255", "private"],
      ["172.32.0.1", undefined],
      ["192.168.0.1", "private"],
      ["169.254.1.1", "link-local"],
      ["0.0.0.0", "unspecified"],
      ["8.8.8.8", undefined],
      ["::", "unspecified"],
      ["::1", "loopback"],
      ["fe80::1%eth0", "link-local"],
      ["febf::1", "link-local"],
      ["fc00::1", "private"],
      ["fdff::1", "private"],
      ["::ffff:127.0.0.1", "loopback"],
      ["::ffff:7f00:1", "loopback"],
      ["::ffff:8.8.8.8", undefined],
      ["2001:4860:4860::8888", undefined],
    ];
    for (const [ip, kind] of cases) expect(nonPublicAddressKind(ip), ip).toBe(kind);
  });

  it("a redirect to a host not allowed -> image-refused, naming the redirect", async () => {
    requests = [];
    const loader = createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true });
    const r = await loader.load(sample({ image_url: `${base}/to-metadata.jpg` }));
    expectFail(
      r,
      "image-refused",
      /host not allowed: 169\.254\.169\.254 .*\(redirected from .*to-metadata\.jpg\)/,
    );
    expect(requests).toEqual(["/to-metadata.jpg"]);
  });

  it("a redirect to another host is followed only when that host is allowed too", async () => {
    const url = `${base}/to-localhost.jpg`;
    const only127 = createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true });
    expectFail(
      await only127.load(sample({ image_url: url })),
      "image-refused",
      /host not allowed: localhost .*\(redirected from .*to-localhost\.jpg\)/,
    );
    const both = createImageLoader({ allowHosts: ["127.0.0.1", "localhost"], allowPrivateAddresses: true });
    const r = await both.load(sample({ image_url: url }));
    expect(r.ok).toBe(true);
    expect(r.ok && r.origin).toBe(url); // the origin is the URL the sample named
  });

  it("a redirect to another scheme is not followed", async () => {
    const loader = createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true });
    const r = await loader.load(sample({ image_url: `${base}/to-file.jpg` }));
    expectFail(r, "image-unreadable", /unsupported URL scheme "file".*redirected from/);
  });

  it("follows at most 3 redirects", async () => {
    const loader = createImageLoader({ allowHosts: ["127.0.0.1"], allowPrivateAddresses: true });
    expect((await loader.load(sample({ image_url: `${base}/hop.jpg?n=2` }))).ok).toBe(true); // 3 hops
    requests = [];
    const r = await loader.load(sample({ image_url: `${base}/hop.jpg?n=3` })); // 4 hops
    expectFail(r, "image-unreadable", /more than 3 redirects/);
    expect(requests).toHaveLength(4);
  });

  it("allowUrls: false still wins over allowHosts", async () => {
    const r = await createImageLoader({ allowUrls: false, allowHosts: ["*"] }).load(
      sample({ image_url: `${base}/ok.jpg` }),
    );
    expectFail(r, "image-unreadable", /allowUrls: false/);
  });
});

describe("ImageHealth", () => {
  const missing: ScoreFlag[] = ["image-missing"];

  it("counts samples naming an image and those whose image failed; no-image is not counted", () => {
    const h = new ImageHealth();
    h.record([]);
    h.record(["no-image"]);
    h.record(missing);
    h.record(["image-refused", "text-truncated"]);
    h.record(["text-truncated"]);
    expect(h.named).toBe(4);
    expect(h.failed).toBe(2);
    expect(h.share).toBe(0.5);
    expect(h.summary()).toBe("images: 2 of 4 could not be used (image-missing 1, image-refused 1)");
  });

  it("warns once, after the first 200 samples naming an image, when more than 5% failed", () => {
    const h = new ImageHealth();
    for (let i = 0; i < 199; i++) h.record(i < 180 ? missing : []);
    expect(h.warningDue()).toBe(false); // not yet 200
    h.record([]);
    expect(h.warningDue()).toBe(true);
    expect(h.warningDue()).toBe(false);
    expect(h.warningDue(true)).toBe(false);
    expect(h.warning("mmssr score", "/data")).toBe(
      "mmssr score: WARNING: 180 of 200 images so far could not be used (image-missing 180); scores without images differ, check --image-base (relative paths resolve against /data)\n",
    );
  });

  it("does not warn at 5% or less; warns at the end of a short run", () => {
    const fine = new ImageHealth();
    for (let i = 0; i < 200; i++) fine.record(i < 10 ? missing : []);
    expect(fine.warningDue()).toBe(false);
    expect(fine.warningDue(true)).toBe(false);
    expect(fine.exceeds(0.05)).toBe(false);
    expect(fine.exceeds(0.01)).toBe(true);
    const short = new ImageHealth();
    for (let i = 0; i < 20; i++) short.record(missing);
    expect(short.warningDue()).toBe(false);
    expect(short.warningDue(true)).toBe(true);
    expect(short.warning("mmssr curate")).toMatch(
      /^mmssr curate: WARNING: 20 of 20 images could not be used/,
    );
  });

  it("names the refusal flags in the warning when references were refused; empty runs say so", () => {
    const h = new ImageHealth({ warnAfter: 1 });
    h.record(["image-refused"]);
    expect(h.warningDue()).toBe(true);
    expect(h.warning("mmssr score", "/d")).toMatch(/--allow-images-outside-base, --allow-image-hosts/);
    const none = new ImageHealth();
    none.record(["no-image"]);
    expect(none.summary()).toBe("images: no sample named an image");
    expect(none.exceeds(0)).toBe(false);
    expect(none.warningDue(true)).toBe(false);
  });
});
