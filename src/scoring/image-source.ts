/**
 * Image loading for the featurizer (issue 3, "Featurization"): turns a sample's image reference into
 * bytes, or into a ScoreFlag with a reason. Decoding is not done here (see image-features.ts).
 *
 * References, in order of preference:
 *   1. `image_b64`: inline bytes (standard base64, as validated by domain/sample.ts).
 *   2. `image`: a local path (relative paths resolve against `baseDir`), a `file:` URL, or an
 *      http(s) URL. With several images (`images`) only the first one (`image`) is used.
 *   3. `image_url`: an http(s) URL.
 * With `fallback` (the default) a reference that fails is followed by the next one present, and the
 * first success wins; when all fail, the failure of the most preferred reference is returned (its
 * reason also names how many other references failed). Without `fallback` only the most preferred
 * reference is tried.
 *
 * References come from untrusted input (anyone who can produce to a topic writes them), so by
 * default (issue 9, point 4):
 *   - a local path (relative, absolute or `file:`) is read only when it lies inside `baseDir` after
 *     `..` is resolved and, when the target exists, after symbolic links are resolved (realpath of
 *     the target against realpath of `baseDir`); `allowLocalOutsideBase: true` reads any path (the
 *     old behaviour, for trusted batch inputs). The file opened is the realpath that was checked.
 *   - a URL is fetched only from a host in `allowHosts` (exact names such as "images.example.com"
 *     or "203.0.113.7", "*.example.com" for any subdomain of example.com but not example.com
 *     itself, "*" for any host); the default list is empty, so every URL is refused.
 *   - never from a loopback (127/8, ::1), link-local (169.254/16, fe80::/10), private (10/8,
 *     172.16/12, 192.168/16, fc00::/7, fec0::/10), unspecified (0/8, ::), shared (100.64/10),
 *     multicast or reserved (224/3, ff00::/8) address, IPv4 embedded in IPv6 (::ffff:0:0/96,
 *     64:ff9b::/96, 2002::/16) judged as IPv4, unless `allowPrivateAddresses: true`. The check runs
 *     on every address the name resolves to (dns.lookup, all addresses; any refused one refuses the
 *     name) inside the connection's own lookup, so the address checked is the address connected
 *     to (no DNS-rebinding window); an IP literal is checked before connecting.
 *   - redirects are followed by hand, at most MAX_IMAGE_REDIRECTS (3) hops, each Location checked
 *     again as above, so a redirect cannot reach a refused host or address.
 *
 * Failures map to flags:
 *   - no reference at all                                  -> "no-image"
 *   - a path that does not exist (ENOENT, ENOTDIR)          -> "image-missing"
 *   - a path that cannot be read (EACCES, EPERM, EISDIR, not a regular file, EIO, ...), an HTTP
 *     status other than 200, a network error, a timeout, too many redirects, URLs disabled
 *     (`allowUrls: false`), an unsupported URL scheme, the loader closed
 *                                                          -> "image-unreadable" (reason names the
 *                                                            errno, the status or the timeout)
 *   - a reference the rules above forbid                   -> "image-refused", the reason starting
 *     with "outside --image-base:", "host not allowed:" or "private address:"
 *   - more than `maxBytes`: stat size for files (and counted while reading, since /proc-like files
 *     report size 0), Content-Length and bytes counted while streaming for URLs, decoded length
 *     for base64                                           -> "image-too-large"
 *   - zero bytes (an empty file, body or base64)           -> "image-corrupt"
 *
 * URL fetches use node:http / node:https with one keep-alive agent per loader and
 * `AbortSignal.timeout(timeoutMs)` (the timeout covers every redirect hop, the headers and the
 * whole body); at most `maxConcurrentFetches` run at once (p-limit; queued fetches start their
 * timeout when they start). Query strings and fragments are left out of the origin and the
 * reasons (signed URLs carry secrets there). `close()` aborts fetches in flight; loads after it
 * fail with "image-unreadable".
 *
 * `ImageHealth` counts the image failures of a run for the CLI (issue 9, point 10): a loud
 * warning once the first `warnAfter` (200) samples naming an image show more than `warnShare`
 * (5%) failures, a summary, and a threshold (`--max-missing-images`).
 *
 * `load` never throws or rejects for a bad sample. `createImageLoader` throws an MmssrError
 * (BAD_OPTIONS) for invalid options.
 */

import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { constants as fsConstants } from "node:fs";
import { type FileHandle, open, realpath, stat } from "node:fs/promises";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { isIP, isIPv6, type LookupFunction } from "node:net";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import pLimit from "p-limit";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import type { Sample } from "../domain/sample.js";
import { describeError } from "../util/describe-error.js";
import type { ScoreFlag } from "./scoring-types.js";

export interface ImageLoaderOptions {
  /** Directory that relative image paths resolve against, and that local paths must lie in.
   * Default process.cwd() (at creation). */
  baseDir?: string;
  /** Largest accepted image, bytes. Default 20 MiB. */
  maxBytes?: number;
  /** Time limit of one URL fetch (redirects, headers and body), ms. Default 10 s. */
  timeoutMs?: number;
  /** URL fetches running at once, at most. Default 8. */
  maxConcurrentFetches?: number;
  /** Fetch http(s) URLs at all. Default true; false flags URL references "image-unreadable". */
  allowUrls?: boolean;
  /** Try the next reference when one fails. Default true. */
  fallback?: boolean;
  /** Read local paths that resolve outside `baseDir` too (trusted inputs only). Default false. */
  allowLocalOutsideBase?: boolean;
  /** Hosts URLs may be fetched from: "images.example.com", "203.0.113.7", "[2001:db8::1]",
   * "*.example.com" (subdomains only) or "*" (any host). Default none: every URL is refused. */
  allowHosts?: readonly string[];
  /** Fetch from loopback, link-local, private, unspecified and other non-public addresses too.
   * Default false. */
  allowPrivateAddresses?: boolean;
}

/** Redirect hops followed at most for one URL. */
export const MAX_IMAGE_REDIRECTS = 3;

export const DEFAULT_IMAGE_LOADER_OPTIONS: Readonly<Required<Omit<ImageLoaderOptions, "baseDir">>> = {
  maxBytes: 20 * 1024 * 1024,
  timeoutMs: 10_000,
  maxConcurrentFetches: 8,
  allowUrls: true,
  fallback: true,
  allowLocalOutsideBase: false,
  allowHosts: Object.freeze([]),
  allowPrivateAddresses: false,
};

export type ImageLoadResult =
  | {
      ok: true;
      bytes: Uint8Array;
      /** where the bytes came from: "image_b64", "file:<absolute path>" or the URL without query */
      origin: string;
    }
  | { ok: false; flag: ScoreFlag; reason: string };

export interface ImageLoader {
  /** Loads the sample's image. Never rejects. */
  load(sample: Sample): Promise<ImageLoadResult>;
  /** Aborts fetches in flight; later loads fail with "image-unreadable". Idempotent. */
  close(): Promise<void>;
}

type Failure = Extract<ImageLoadResult, { ok: false }>;

function fail(flag: ScoreFlag, reason: string): Failure {
  return { ok: false, flag, reason };
}

function errCode(err: unknown): string | undefined {
  if (typeof err === "object" && err !== null && "code" in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/** The URL without its query string and fragment, for origins and reasons. */
export function redactUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    const hidden = u.search !== "" || u.hash !== "";
    u.search = "";
    u.hash = "";
    u.username = "";
    u.password = "";
    return hidden ? `${u.href}?...` : u.href;
  } catch {
    return "(invalid URL)";
  }
}

function checkOptions(o: Required<ImageLoaderOptions>): void {
  const bad = (what: string) => {
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `image loader: ${what}`);
  };
  if (typeof o.baseDir !== "string" || o.baseDir.length === 0) bad("baseDir must be a non-empty string");
  if (!Number.isSafeInteger(o.maxBytes) || o.maxBytes < 1)
    bad(`maxBytes must be a positive integer, got ${o.maxBytes}`);
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0)
    bad(`timeoutMs must be a positive number, got ${o.timeoutMs}`);
  if (!Number.isSafeInteger(o.maxConcurrentFetches) || o.maxConcurrentFetches < 1)
    bad(`maxConcurrentFetches must be a positive integer, got ${o.maxConcurrentFetches}`);
  if (typeof o.allowUrls !== "boolean") bad("allowUrls must be a boolean");
  if (typeof o.fallback !== "boolean") bad("fallback must be a boolean");
  if (typeof o.allowLocalOutsideBase !== "boolean") bad("allowLocalOutsideBase must be a boolean");
  if (typeof o.allowPrivateAddresses !== "boolean") bad("allowPrivateAddresses must be a boolean");
  if (!Array.isArray(o.allowHosts)) bad("allowHosts must be an array of host names or patterns");
}

// ---- host allow-list -------------------------------------------------------------------------

const HOST_NAME_RE = /^[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?$/;

/**
 * A host allow-list entry in the form it is matched in: lower case, no trailing dot, IPv6
 * without brackets. Throws an MmssrError (BAD_OPTIONS) naming the entry when it is not a host
 * name, an IP address, "*.<host name>" or "*".
 */
export function normalizeHostPattern(pattern: string): string {
  const bad = (why: string): never => {
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      `image host ${JSON.stringify(pattern)}: ${why}; expected a host name ("images.example.com"), an IP address, "*.example.com" or "*"`,
    );
  };
  if (typeof pattern !== "string") return bad("not a string");
  let p = pattern.trim().toLowerCase();
  if (p === "*") return p;
  if (p.startsWith("[") && p.endsWith("]")) p = p.slice(1, -1);
  if (isIPv6(p)) return canonicalIPv6(p);
  if (p.endsWith(".")) p = p.slice(0, -1);
  const wild = p.startsWith("*.");
  const name = wild ? p.slice(2) : p;
  if (name.includes("://") || name.includes("/")) bad("a host name only, without scheme or path");
  if (name.includes(":")) bad("a host name only, without port");
  if (!HOST_NAME_RE.test(name) || name.includes("..")) bad("not a host name");
  if (wild && isIP(name) !== 0) bad('"*." patterns take a host name, not an address');
  return wild ? `*.${name}` : name;
}

function canonicalIPv6(ip: string): string {
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  } catch {
    return ip;
  }
}

/** The host of a URL as matched against the allow-list and classified. */
function hostOf(u: URL): string {
  let h = u.hostname.toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

/** Whether `host` (lower case, IPv6 without brackets) matches one of the normalized patterns. */
export function imageHostAllowed(host: string, patterns: readonly string[]): boolean {
  const ip = isIP(host) !== 0;
  for (const p of patterns) {
    if (p === "*" || p === host) return true;
    if (!ip && p.startsWith("*.") && host.endsWith(p.slice(1))) return true;
  }
  return false;
}

// ---- address classes -------------------------------------------------------------------------

function ipv4Kind(a: number, b: number): string | undefined {
  if (a === 0) return "unspecified";
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return "private";
  if (a === 169 && b === 254) return "link-local";
  if (a === 100 && b >= 64 && b <= 127) return "shared (carrier-grade NAT)";
  if (a >= 224 && a < 240) return "multicast";
  if (a >= 240) return "reserved";
  return undefined;
}

/** The 8 hextets of an IPv6 address (zone id dropped), or undefined when it does not parse. */
function ipv6Hextets(ip: string): number[] | undefined {
  let s = ip.split("%")[0].toLowerCase();
  const lastColon = s.lastIndexOf(":");
  const last = s.slice(lastColon + 1);
  if (last.includes(".")) {
    // a dotted IPv4 tail ("::ffff:10.0.0.1") becomes two hextets
    const q = last.split(".").map((x) => (/^\d{1,3}$/.test(x) ? Number(x) : Number.NaN));
    if (q.length !== 4 || q.some((x) => !(x >= 0 && x <= 255))) return undefined;
    s = `${s.slice(0, lastColon + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const parse = (part: string): number[] =>
    part === ""
      ? []
      : part.split(":").map((h) => (/^[0-9a-f]{1,4}$/.test(h) ? Number.parseInt(h, 16) : Number.NaN));
  let all: number[];
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    const left = parse(s.slice(0, dbl));
    const right = parse(s.slice(dbl + 2));
    const zeros = 8 - left.length - right.length;
    if (zeros < 0) return undefined;
    all = [...left, ...new Array<number>(zeros).fill(0), ...right];
  } else all = parse(s);
  if (all.length !== 8 || all.some((x) => Number.isNaN(x))) return undefined;
  return all;
}

/**
 * Why an IP address may not be fetched from by default ("loopback", "private", "link-local",
 * "unspecified", ...), or undefined for a public address. Not an address: "not an IP address".
 */
export function nonPublicAddressKind(ip: string): string | undefined {
  const v = isIP(ip);
  if (v === 4) {
    const [a, b] = ip.split(".").map(Number);
    return ipv4Kind(a, b);
  }
  if (v !== 6) return "not an IP address";
  const h = ipv6Hextets(ip);
  if (h === undefined) return "not an IP address";
  const v4 = (hi: number) => ipv4Kind(hi >> 8, hi & 0xff); // only the first two octets matter
  if (h.every((x) => x === 0)) return "unspecified";
  if (h.slice(0, 7).every((x) => x === 0) && h[7] === 1) return "loopback";
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d)
  if (h.slice(0, 5).every((x) => x === 0) && (h[5] === 0xffff || h[5] === 0)) return v4(h[6]);
  if (h[0] === 0x64 && h[1] === 0xff9b && h.slice(2, 6).every((x) => x === 0)) return v4(h[6]);
  if (h[0] === 0x2002) return v4(h[1]); // 6to4
  if ((h[0] & 0xffc0) === 0xfe80) return "link-local";
  if ((h[0] & 0xfe00) === 0xfc00 || (h[0] & 0xffc0) === 0xfec0) return "private";
  if ((h[0] & 0xff00) === 0xff00) return "multicast";
  return undefined;
}

/** A name resolved to a refused address: raised inside the connection's lookup. */
class RefusedAddressError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = "RefusedAddressError";
  }
}

function privateAddressReason(host: string, address: string, kind: string): string {
  const what = host === address ? `${host} (${kind})` : `${host} resolves to ${address} (${kind})`;
  return `private address: ${what}; refused without allowPrivateAddresses (--allow-private-image-hosts)`;
}

/** dns.lookup that refuses names with any non-public address, for the sockets of image fetches. */
function checkedLookup(allowPrivate: boolean): LookupFunction {
  return (hostname: string, options: LookupOptions, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, "", 0);
      if (!allowPrivate) {
        for (const a of addresses) {
          const kind = nonPublicAddressKind(a.address);
          if (kind !== undefined)
            return callback(new RefusedAddressError(privateAddressReason(hostname, a.address, kind)), "", 0);
        }
      }
      if (addresses.length === 0)
        return callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "", 0);
      if (options.all) return callback(null, addresses);
      return callback(null, addresses[0].address, addresses[0].family);
    });
  };
}

// ---- local files -----------------------------------------------------------------------------

type Ref = { kind: "b64"; value: string } | { kind: "path"; value: string } | { kind: "url"; value: string };

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;

/** The sample's image references in order of preference. */
function references(sample: Sample): Ref[] {
  const refs: Ref[] = [];
  if (typeof sample.image_b64 === "string" && sample.image_b64.length > 0)
    refs.push({ kind: "b64", value: sample.image_b64 });
  if (typeof sample.image === "string" && sample.image.length > 0) {
    const scheme = SCHEME_RE.exec(sample.image)?.[1]?.toLowerCase();
    if (scheme === undefined || scheme === "file") refs.push({ kind: "path", value: sample.image });
    else refs.push({ kind: "url", value: sample.image });
  }
  if (typeof sample.image_url === "string" && sample.image_url.length > 0)
    refs.push({ kind: "url", value: sample.image_url });
  return refs;
}

function loadB64(b64: string, maxBytes: number): ImageLoadResult {
  // Decoded length from the text first, so an oversized string is refused without decoding it.
  const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
  const approx = Math.floor((b64.length * 3) / 4) - pad;
  if (approx > maxBytes)
    return fail("image-too-large", `image_b64 decodes to ${approx} bytes, over the limit of ${maxBytes}`);
  const buf = Buffer.from(b64, "base64");
  if (buf.length === 0) return fail("image-corrupt", "image_b64 decodes to no bytes");
  if (buf.length > maxBytes)
    return fail("image-too-large", `image_b64 decodes to ${buf.length} bytes, over the limit of ${maxBytes}`);
  return { ok: true, bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), origin: "image_b64" };
}

function fileError(path: string, err: unknown): Failure {
  const code = errCode(err);
  if (code === "ENOENT" || code === "ENOTDIR") return fail("image-missing", `${code}: no such file ${path}`);
  return fail("image-unreadable", `${code ?? "error"}: cannot read ${path}: ${describeError(err)}`);
}

async function readAll(fh: FileHandle, sizeHint: number, maxBytes: number, path: string) {
  // Read until EOF whatever stat said (files in /proc report size 0), never past maxBytes + 1.
  let buf = Buffer.allocUnsafe(Math.min(Math.max(sizeHint, 64 * 1024), maxBytes + 1));
  let total = 0;
  for (;;) {
    if (total === buf.length) {
      if (total > maxBytes) break;
      const next = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
      buf.copy(next, 0, 0, total);
      buf = next;
    }
    const { bytesRead } = await fh.read(buf, total, buf.length - total, total);
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  if (total > maxBytes)
    return fail("image-too-large", `${path} holds more than ${maxBytes} bytes, the limit`);
  if (total === 0) return fail("image-corrupt", `${path} is empty`);
  return {
    ok: true as const,
    bytes: new Uint8Array(buf.buffer, buf.byteOffset, total),
    origin: `file:${path}`,
  };
}

/** `child` is `parent` or lies below it (both absolute, normalized). */
function within(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === "" || (!isAbsolute(rel) && rel !== ".." && !rel.startsWith(`..${sep}`));
}

interface FileRules {
  baseDir: string;
  /** realpath of baseDir (or baseDir itself when it cannot be resolved) */
  realBase: () => Promise<string>;
  allowOutside: boolean;
  maxBytes: number;
}

async function loadFile(ref: string, rules: FileRules): Promise<ImageLoadResult> {
  let path: string;
  try {
    path = ref.toLowerCase().startsWith("file://") ? fileURLToPath(ref) : ref;
  } catch (err) {
    return fail("image-unreadable", `invalid file URL ${JSON.stringify(ref)}: ${describeError(err)}`);
  }
  path = resolve(rules.baseDir, path); // absolute paths stay, `..` is resolved
  let target = path;
  if (!rules.allowOutside) {
    const realBase = await rules.realBase();
    const real = await realpath(path).catch(() => undefined);
    const inside =
      real !== undefined ? within(realBase, real) : within(rules.baseDir, path) || within(realBase, path);
    if (!inside) {
      const viaLink = real !== undefined && (within(rules.baseDir, path) || within(realBase, path));
      return fail(
        "image-refused",
        `outside --image-base: ${path}${viaLink ? " (through a symbolic link)" : ""} is not inside ${rules.baseDir}; allowLocalOutsideBase (--allow-images-outside-base) reads it`,
      );
    }
    if (real !== undefined) target = real; // open what was checked
  }
  // stat before open: opening a FIFO blocks until a writer comes.
  let size: number;
  try {
    const st = await stat(target);
    if (st.isDirectory()) return fail("image-unreadable", `EISDIR: ${path} is a directory`);
    if (!st.isFile()) return fail("image-unreadable", `${path} is not a regular file`);
    if (st.size > rules.maxBytes)
      return fail("image-too-large", `${path} is ${st.size} bytes, over the limit of ${rules.maxBytes}`);
    size = st.size;
  } catch (err) {
    return fileError(path, err);
  }
  let fh: FileHandle | undefined;
  try {
    fh = await open(target, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
    return await readAll(fh, size, rules.maxBytes, path);
  } catch (err) {
    return fileError(path, err);
  } finally {
    await fh?.close().catch(() => {});
  }
}

// ---- URLs ------------------------------------------------------------------------------------

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

interface FetchContext {
  maxBytes: number;
  timeoutMs: number;
  closing: AbortSignal;
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
  lookup: LookupFunction;
  /** a failure when the URL may not be fetched (scheme, host, address literal) */
  check: (u: URL) => Failure | undefined;
}

/** One GET; resolves with the response (headers read), rejects on connection errors. */
function get(u: URL, signal: AbortSignal, ctx: FetchContext): Promise<IncomingMessage> {
  return new Promise((ok, ko) => {
    const https = u.protocol === "https:";
    const req = (https ? httpsRequest : httpRequest)(
      u,
      {
        method: "GET",
        agent: https ? ctx.httpsAgent : ctx.httpAgent,
        lookup: ctx.lookup,
        signal,
        headers: { accept: "image/*,*/*;q=0.5", "user-agent": "mmssr-stream" },
      },
      (res) => {
        res.on("error", () => {}); // errors are seen where the body is read
        ok(res);
      },
    );
    req.on("error", ko);
    req.end();
  });
}

async function fetchUrl(url: string, ctx: FetchContext): Promise<ImageLoadResult> {
  const shown = redactUrl(url);
  if (ctx.closing.aborted) return fail("image-unreadable", `image loader closed before fetching ${shown}`);
  const timeout = AbortSignal.timeout(ctx.timeoutMs);
  const signal = AbortSignal.any([timeout, ctx.closing]);
  const why = (err: unknown): Failure => {
    if (timeout.aborted)
      return fail("image-unreadable", `timeout: no complete answer in ${ctx.timeoutMs} ms from ${shown}`);
    if (ctx.closing.aborted) return fail("image-unreadable", `image loader closed while fetching ${shown}`);
    const cause = err instanceof Error ? err.cause : undefined;
    const code = errCode(err) ?? errCode(cause);
    const detail = describeError(err);
    return fail("image-unreadable", `network error${code ? ` ${code}` : ""} fetching ${shown}: ${detail}`);
  };
  let current = new URL(url);
  let res: IncomingMessage;
  for (let hop = 0; ; hop++) {
    const via = hop === 0 ? "" : ` (redirected from ${shown})`;
    try {
      res = await get(current, signal, ctx);
    } catch (err) {
      if (err instanceof RefusedAddressError) return fail("image-refused", `${err.reason}${via}`);
      return why(err);
    }
    const status = res.statusCode ?? 0;
    if (!REDIRECT_STATUSES.has(status)) break;
    const location = res.headers.location;
    res.destroy();
    if (location === undefined || location === "")
      return fail("image-unreadable", `HTTP ${status} without a Location from ${redactUrl(current)}${via}`);
    if (hop >= MAX_IMAGE_REDIRECTS)
      return fail("image-unreadable", `more than ${MAX_IMAGE_REDIRECTS} redirects from ${shown}`);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      return fail(
        "image-unreadable",
        `HTTP ${status} with an invalid Location from ${redactUrl(current)}${via}`,
      );
    }
    const refused = ctx.check(next);
    if (refused) return { ...refused, reason: `${refused.reason} (redirected from ${shown})` };
    current = next;
  }
  const status = res.statusCode ?? 0;
  if (status !== 200) {
    res.destroy();
    return fail(
      "image-unreadable",
      `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""} from ${shown}`,
    );
  }
  const declared = Number(res.headers["content-length"] ?? Number.NaN);
  if (Number.isFinite(declared) && declared > ctx.maxBytes) {
    res.destroy();
    return fail(
      "image-too-large",
      `Content-Length ${declared} over the limit of ${ctx.maxBytes} bytes from ${shown}`,
    );
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const onAbort = () => res.destroy(new Error("aborted"));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal.aborted) throw new Error("aborted");
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > ctx.maxBytes) {
        res.destroy();
        return fail("image-too-large", `body over the limit of ${ctx.maxBytes} bytes from ${shown}`);
      }
      chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
    }
  } catch (err) {
    res.destroy();
    return why(err);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (total === 0) return fail("image-corrupt", `empty body from ${shown}`);
  return { ok: true, bytes: concat(chunks, total), origin: shown };
}

export function createImageLoader(options: ImageLoaderOptions = {}): ImageLoader {
  const given = Object.fromEntries(
    Object.entries(options ?? {}).filter(([, v]) => v !== undefined),
  ) as ImageLoaderOptions;
  const o: Required<ImageLoaderOptions> = {
    ...DEFAULT_IMAGE_LOADER_OPTIONS,
    baseDir: process.cwd(),
    ...given,
  };
  checkOptions(o);
  const allowHosts = o.allowHosts.map(normalizeHostPattern);
  const baseDir = resolve(o.baseDir);
  let realBase: string | undefined;
  const rules: FileRules = {
    baseDir,
    realBase: async () => {
      if (realBase !== undefined) return realBase;
      try {
        realBase = await realpath(baseDir); // cached once it resolves
        return realBase;
      } catch {
        return baseDir;
      }
    },
    allowOutside: o.allowLocalOutsideBase,
    maxBytes: o.maxBytes,
  };
  const limit = pLimit(o.maxConcurrentFetches);
  const closer = new AbortController();
  const lookup = checkedLookup(o.allowPrivateAddresses);
  const check = (u: URL): Failure | undefined => {
    if (u.protocol !== "http:" && u.protocol !== "https:")
      return fail("image-unreadable", `unsupported URL scheme ${JSON.stringify(u.protocol.slice(0, -1))}`);
    const host = hostOf(u);
    if (!imageHostAllowed(host, allowHosts))
      return fail(
        "image-refused",
        allowHosts.length === 0
          ? `host not allowed: ${host} (${redactUrl(u)}); no image hosts are allowed (allowHosts, --allow-image-hosts)`
          : `host not allowed: ${host} (${redactUrl(u)}) is not in the image host allow-list (allowHosts, --allow-image-hosts)`,
      );
    if (!o.allowPrivateAddresses && isIP(host) !== 0) {
      const kind = nonPublicAddressKind(host);
      if (kind !== undefined) return fail("image-refused", privateAddressReason(host, host, kind));
    }
    return undefined;
  };
  const ctx: FetchContext = {
    maxBytes: o.maxBytes,
    timeoutMs: o.timeoutMs,
    closing: closer.signal,
    httpAgent: new HttpAgent({ keepAlive: true, lookup }),
    httpsAgent: new HttpsAgent({ keepAlive: true, lookup }),
    lookup,
    check,
  };

  const loadRef = async (ref: Ref): Promise<ImageLoadResult> => {
    if (closer.signal.aborted) return fail("image-unreadable", "image loader is closed");
    switch (ref.kind) {
      case "b64":
        return loadB64(ref.value, o.maxBytes);
      case "path":
        return loadFile(ref.value, rules);
      case "url": {
        let u: URL;
        try {
          u = new URL(ref.value);
        } catch {
          return fail("image-unreadable", `not a valid URL: ${JSON.stringify(ref.value.slice(0, 200))}`);
        }
        if (u.protocol !== "http:" && u.protocol !== "https:")
          return fail(
            "image-unreadable",
            `unsupported URL scheme ${JSON.stringify(u.protocol.slice(0, -1))}`,
          );
        if (!o.allowUrls)
          return fail(
            "image-unreadable",
            `URL images are disabled (allowUrls: false): ${redactUrl(ref.value)}`,
          );
        const refused = check(u);
        if (refused) return refused;
        return limit(() => fetchUrl(ref.value, ctx));
      }
    }
  };

  return {
    async load(sample: Sample): Promise<ImageLoadResult> {
      try {
        const refs = references(sample);
        if (refs.length === 0) return fail("no-image", "the sample names no image");
        const tries = o.fallback ? refs : refs.slice(0, 1);
        let first: Failure | undefined;
        for (const ref of tries) {
          const r = await loadRef(ref);
          if (r.ok) return r;
          first ??= r;
        }
        if (first === undefined) return fail("image-unreadable", "no reference could be tried");
        if (tries.length > 1)
          return { ...first, reason: `${first.reason} (and ${tries.length - 1} other reference(s) failed)` };
        return first;
      } catch (err) {
        return fail("image-unreadable", `unexpected error while loading the image: ${describeError(err)}`);
      }
    },
    async close(): Promise<void> {
      // Queued fetches still run, see the abort at their start and return at once.
      closer.abort();
      ctx.httpAgent.destroy();
      ctx.httpsAgent.destroy();
    },
  };
}

// ---- image health of a run -------------------------------------------------------------------

/** Flags that mean "the sample named an image we could not use" (not "it named none"). */
export const IMAGE_FAILURE_FLAGS: ReadonlySet<ScoreFlag> = new Set<ScoreFlag>([
  "image-missing",
  "image-unreadable",
  "image-corrupt",
  "image-too-large",
  "image-refused",
]);

export interface ImageHealthOptions {
  /** Samples naming an image seen before the failure share is first judged. Default 200. */
  warnAfter?: number;
  /** Failure share above which the warning is due. Default 0.05. */
  warnShare?: number;
}

/**
 * Counts, over the samples of a run that name an image (flags without "no-image"), those whose
 * image could not be used (a flag of IMAGE_FAILURE_FLAGS), so a run that silently scores
 * thousands of samples text-only is loud about it:
 *
 *   const health = new ImageHealth();
 *   for (const r of results) health.record(r.flags);
 *   if (health.warningDue()) stderr.write(health.warning("mmssr score", baseDir));   // after each batch
 *   ...
 *   if (health.warningDue(true)) stderr.write(health.warning("mmssr score", baseDir)); // at the end
 *   stdout.write(`${health.summary()}\n`);
 *   if (max !== undefined && health.exceeds(max)) throw ... // --max-missing-images
 */
export class ImageHealth {
  /** samples that named an image */
  named = 0;
  /** of those, samples whose image could not be used */
  failed = 0;
  /** failures by flag, in order of first appearance */
  readonly byFlag = new Map<ScoreFlag, number>();
  private warned = false;
  /** the run had ended when the warning became due */
  private warnedAtEnd = false;
  private readonly warnAfter: number;
  private readonly warnShare: number;

  constructor(options: ImageHealthOptions = {}) {
    this.warnAfter = options.warnAfter ?? 200;
    this.warnShare = options.warnShare ?? 0.05;
  }

  /** Records one scored sample's flags. */
  record(flags: readonly ScoreFlag[]): void {
    if (flags.includes("no-image")) return;
    this.named++;
    const f = flags.find((x) => IMAGE_FAILURE_FLAGS.has(x));
    if (f === undefined) return;
    this.failed++;
    this.byFlag.set(f, (this.byFlag.get(f) ?? 0) + 1);
  }

  /** failed / named (0 when no sample named an image) */
  get share(): number {
    return this.named === 0 ? 0 : this.failed / this.named;
  }

  /**
   * True once per run: when at least `warnAfter` samples named an image (or, with `final`, at
   * the end of a run that saw fewer) and more than `warnShare` of them failed.
   */
  warningDue(final = false): boolean {
    if (this.warned || this.named === 0) return false;
    if (!final && this.named < this.warnAfter) return false;
    if (!(this.share > this.warnShare)) return false;
    this.warned = true;
    this.warnedAtEnd = final;
    return true;
  }

  /** "image-missing 170, image-refused 10" */
  breakdown(): string {
    return [...this.byFlag].map(([f, c]) => `${f} ${c}`).join(", ");
  }

  /**
   * The loud stderr warning, one line with its newline ("so far" unless it became due at the
   * end). `baseDir`: where relative paths resolve.
   */
  warning(command: string, baseDir?: string): string {
    const hints: string[] = [
      `check --image-base${baseDir === undefined ? "" : ` (relative paths resolve against ${baseDir})`}`,
    ];
    if (this.byFlag.has("image-refused"))
      hints.push("image-refused: see --allow-images-outside-base, --allow-image-hosts");
    return (
      `${command}: WARNING: ${this.failed} of ${this.named} images${this.warnedAtEnd ? "" : " so far"} could not be used ` +
      `(${this.breakdown()}); scores without images differ, ${hints.join("; ")}\n`
    );
  }

  /** For the run's summary: "images: 180 of 200 could not be used (image-missing 170, ...)". */
  summary(): string {
    if (this.named === 0) return "images: no sample named an image";
    if (this.failed === 0) return `images: all ${this.named} used`;
    return `images: ${this.failed} of ${this.named} could not be used (${this.breakdown()})`;
  }

  /** True when the failure share is over `maxShare` (never when no sample named an image). */
  exceeds(maxShare: number): boolean {
    return this.named > 0 && this.share > maxShare;
  }
}
