/**
 * Obtaining and reading the pinned nsfwjs npm package for the conversion: `npm pack` into a
 * temporary folder (or a local tarball), sha512 checked against the pinned npm integrity, a
 * minimal tar reader (ustar + pax/GNU long names; no extraction to disk), and the decoding of
 * the package's `.min.js` model wrappers (UMD/browserify bundles whose module.exports is the
 * model.json object, or the base64 text of one weight shard).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import vm from "node:vm";
import { gunzipSync } from "node:zlib";

export const NSFWJS_PACKAGE = "nsfwjs";
export const NSFWJS_VERSION = "4.4.0";
/** dist.integrity of nsfwjs@4.4.0 on registry.npmjs.org (`npm view nsfwjs@4.4.0 dist.integrity`) */
export const NSFWJS_INTEGRITY =
  "sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA==";
export const NSFWJS_TARBALL_URL = "https://registry.npmjs.org/nsfwjs/-/nsfwjs-4.4.0.tgz";

export function sha512Integrity(bytes: Uint8Array): string {
  return `sha512-${createHash("sha512").update(bytes).digest("base64")}`;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * The pinned tarball's bytes: read from `localTarball` when given, else `npm pack
 * nsfwjs@4.4.0` into a fresh temporary folder (removed afterwards). Throws unless the sha512
 * matches NSFWJS_INTEGRITY.
 */
export function obtainTarball(localTarball?: string, log: (line: string) => void = () => {}): Uint8Array {
  let bytes: Uint8Array;
  if (localTarball) {
    bytes = readFileSync(localTarball);
    log(`using the local tarball ${localTarball}`);
  } else {
    const dir = mkdtempSync(join(tmpdir(), "nsfwjs-pack-"));
    try {
      log(`npm pack ${NSFWJS_PACKAGE}@${NSFWJS_VERSION} into ${dir}`);
      execFileSync(
        "npm",
        [
          "pack",
          `${NSFWJS_PACKAGE}@${NSFWJS_VERSION}`,
          "--pack-destination",
          dir,
          "--ignore-scripts",
          "--silent",
          "--no-audit",
          "--no-fund",
        ],
        { cwd: dir, stdio: ["ignore", "ignore", "inherit"] },
      );
      const files = readdirSync(dir).filter((f) => f.endsWith(".tgz"));
      if (files.length !== 1) throw new Error(`npm pack left ${files.length} tarballs in ${dir}`);
      bytes = readFileSync(join(dir, files[0]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const got = sha512Integrity(bytes);
  if (got !== NSFWJS_INTEGRITY)
    throw new Error(
      `the ${NSFWJS_PACKAGE}@${NSFWJS_VERSION} tarball has integrity ${got}, expected the pinned ${NSFWJS_INTEGRITY}`,
    );
  log(`integrity ok (${got.slice(0, 27)}...)`);
  return bytes;
}

function cString(buf: Uint8Array, start: number, len: number): string {
  let end = start;
  while (end < start + len && buf[end] !== 0) end++;
  return new TextDecoder().decode(buf.subarray(start, end));
}

/** The regular files of a .tgz (gzip + ustar), path -> bytes. */
export function readTarGz(tgz: Uint8Array): Map<string, Uint8Array> {
  const tar = gunzipSync(tgz);
  const files = new Map<string, Uint8Array>();
  let offset = 0;
  let longName: string | undefined;
  while (offset + 512 <= tar.length) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const sizeText = cString(header, 124, 12).trim();
    const size = Number.parseInt(sizeText || "0", 8);
    if (!Number.isFinite(size) || size < 0) throw new Error(`tar: bad size field "${sizeText}"`);
    const type = String.fromCharCode(header[156] || 0x30);
    const body = tar.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      // pax extended header: "len key=value\n" records; only path matters here
      const text = new TextDecoder().decode(body);
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(text);
      if (m) longName = m[1];
      continue;
    }
    if (type === "L") {
      longName = cString(body, 0, body.length);
      continue;
    }
    if (type === "g") continue;
    let name = cString(header, 0, 100);
    const magic = cString(header, 257, 6);
    const prefix = magic.startsWith("ustar") ? cString(header, 345, 155) : "";
    if (prefix) name = `${prefix}/${name}`;
    if (longName !== undefined) {
      name = longName;
      longName = undefined;
    }
    if (type === "0" || type === "\0") files.set(name, Uint8Array.from(body));
  }
  return files;
}

/**
 * Evaluates one of nsfwjs' UMD/browserify `.min.js` model wrappers in an empty V8 context and
 * returns its module.exports as plain data (JSON round trip). The code runs without Node's
 * globals (no require, process or fs); the tarball it comes from is integrity-checked first.
 */
export function evalModelWrapper(code: string, file: string): unknown {
  const sandbox: { module: { exports: unknown }; exports: Record<string, unknown> } = {
    module: { exports: {} },
    exports: {},
  };
  sandbox.module.exports = sandbox.exports;
  vm.runInNewContext(code, sandbox, { filename: file, timeout: 20_000 });
  const value = sandbox.module.exports;
  if (typeof value === "string") return value;
  return JSON.parse(JSON.stringify(value));
}

/** The base64 text of a weight shard wrapper, decoded (checked to round-trip). */
export function decodeShardWrapper(code: string, file: string): Uint8Array {
  const text = evalModelWrapper(code, file);
  if (typeof text !== "string") throw new Error(`${file}: module.exports is not a base64 string`);
  const bytes = Buffer.from(text, "base64");
  if (bytes.toString("base64") !== text) throw new Error(`${file}: module.exports is not canonical base64`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Class names of dist/esm/nsfw_classes.js (`export var NSFW_CLASSES = {0: 'Drawing', ...}`), in index order. */
export function parseClassNames(code: string): string[] {
  const entries = [...code.matchAll(/(\d+)\s*:\s*['"]([^'"]+)['"]/g)].map(
    (m) => [Number(m[1]), m[2]] as const,
  );
  if (entries.length === 0) throw new Error("nsfw_classes.js: no class names found");
  const names: string[] = [];
  for (const [i, n] of entries) names[i] = n;
  if (names.length !== entries.length || names.some((n) => n === undefined))
    throw new Error("nsfw_classes.js: class indices are not 0..n-1");
  return names;
}
