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
 * Failures map to flags:
 *   - no reference at all                                  -> "no-image"
 *   - a path that does not exist (ENOENT, ENOTDIR)          -> "image-missing"
 *   - a path that cannot be read (EACCES, EPERM, EISDIR, not a regular file, EIO, ...), an HTTP
 *     status other than 200, a network error, a timeout, URLs disabled (`allowUrls: false`), an
 *     unsupported URL scheme, the loader closed            -> "image-unreadable" (reason names the
 *                                                            errno, the status or the timeout)
 *   - more than `maxBytes`: stat size for files (and counted while reading, since /proc-like files
 *     report size 0), Content-Length and bytes counted while streaming for URLs, decoded length
 *     for base64                                           -> "image-too-large"
 *   - zero bytes (an empty file, body or base64)           -> "image-corrupt"
 *
 * URL fetches use Node's global fetch with `AbortSignal.timeout(timeoutMs)` (the timeout covers
 * the headers and the whole body) and at most `maxConcurrentFetches` run at once (p-limit; queued
 * fetches start their timeout when they start). Query strings and fragments are left out of the
 * origin and the reasons (signed URLs carry secrets there). `close()` aborts fetches in flight;
 * loads after it fail with "image-unreadable".
 *
 * `load` never throws or rejects for a bad sample. `createImageLoader` throws an MmssrError
 * (BAD_OPTIONS) for invalid options.
 */

import { constants as fsConstants } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import pLimit from "p-limit";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import type { Sample } from "../domain/sample.js";
import type { ScoreFlag } from "./scoring-types.js";

export interface ImageLoaderOptions {
  /** Directory that relative image paths resolve against. Default process.cwd() (at creation). */
  baseDir?: string;
  /** Largest accepted image, bytes. Default 20 MiB. */
  maxBytes?: number;
  /** Time limit of one URL fetch (headers and body), ms. Default 10 s. */
  timeoutMs?: number;
  /** URL fetches running at once, at most. Default 8. */
  maxConcurrentFetches?: number;
  /** Fetch http(s) URLs at all. Default true; false flags URL references "image-unreadable". */
  allowUrls?: boolean;
  /** Try the next reference when one fails. Default true. */
  fallback?: boolean;
}

export const DEFAULT_IMAGE_LOADER_OPTIONS: Readonly<Required<Omit<ImageLoaderOptions, "baseDir">>> = {
  maxBytes: 20 * 1024 * 1024,
  timeoutMs: 10_000,
  maxConcurrentFetches: 8,
  allowUrls: true,
  fallback: true,
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

function describe(err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err);
  } catch {
    return "unprintable error";
  }
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
}

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
  return fail("image-unreadable", `${code ?? "error"}: cannot read ${path}: ${describe(err)}`);
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

async function loadFile(ref: string, baseDir: string, maxBytes: number): Promise<ImageLoadResult> {
  let path: string;
  try {
    path = ref.toLowerCase().startsWith("file://") ? fileURLToPath(ref) : ref;
  } catch (err) {
    return fail("image-unreadable", `invalid file URL ${JSON.stringify(ref)}: ${describe(err)}`);
  }
  path = isAbsolute(path) ? path : resolve(baseDir, path);
  // stat before open: opening a FIFO blocks until a writer comes.
  let size: number;
  try {
    const st = await stat(path);
    if (st.isDirectory()) return fail("image-unreadable", `EISDIR: ${path} is a directory`);
    if (!st.isFile()) return fail("image-unreadable", `${path} is not a regular file`);
    if (st.size > maxBytes)
      return fail("image-too-large", `${path} is ${st.size} bytes, over the limit of ${maxBytes}`);
    size = st.size;
  } catch (err) {
    return fileError(path, err);
  }
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
    return await readAll(fh, size, maxBytes, path);
  } catch (err) {
    return fileError(path, err);
  } finally {
    await fh?.close().catch(() => {});
  }
}

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

async function fetchUrl(
  url: string,
  maxBytes: number,
  timeoutMs: number,
  closing: AbortSignal,
): Promise<ImageLoadResult> {
  const shown = redactUrl(url);
  if (closing.aborted) return fail("image-unreadable", `image loader closed before fetching ${shown}`);
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = AbortSignal.any([timeout, closing]);
  const why = (err: unknown): Failure => {
    if (timeout.aborted)
      return fail("image-unreadable", `timeout: no complete answer in ${timeoutMs} ms from ${shown}`);
    if (closing.aborted) return fail("image-unreadable", `image loader closed while fetching ${shown}`);
    const cause = err instanceof Error ? err.cause : undefined;
    const code = errCode(cause) ?? errCode(err);
    const detail = cause instanceof Error ? cause.message : describe(err);
    return fail("image-unreadable", `network error${code ? ` ${code}` : ""} fetching ${shown}: ${detail}`);
  };
  let res: Response;
  try {
    res = await fetch(url, { signal, redirect: "follow" });
  } catch (err) {
    return why(err);
  }
  const cancel = () => res.body?.cancel().catch(() => {});
  if (res.status !== 200) {
    await cancel();
    return fail(
      "image-unreadable",
      `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""} from ${shown}`,
    );
  }
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await cancel();
    return fail(
      "image-too-large",
      `Content-Length ${declared} over the limit of ${maxBytes} bytes from ${shown}`,
    );
  }
  if (res.body === null) return fail("image-corrupt", `empty body from ${shown}`);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        return fail("image-too-large", `body over the limit of ${maxBytes} bytes from ${shown}`);
      }
      chunks.push(value);
    }
  } catch (err) {
    await reader.cancel().catch(() => {});
    return why(err);
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
  const limit = pLimit(o.maxConcurrentFetches);
  const closer = new AbortController();

  const loadRef = async (ref: Ref): Promise<ImageLoadResult> => {
    if (closer.signal.aborted) return fail("image-unreadable", "image loader is closed");
    switch (ref.kind) {
      case "b64":
        return loadB64(ref.value, o.maxBytes);
      case "path":
        return loadFile(ref.value, o.baseDir, o.maxBytes);
      case "url": {
        let protocol: string;
        try {
          protocol = new URL(ref.value).protocol;
        } catch {
          return fail("image-unreadable", `not a valid URL: ${JSON.stringify(ref.value.slice(0, 200))}`);
        }
        if (protocol !== "http:" && protocol !== "https:")
          return fail("image-unreadable", `unsupported URL scheme ${JSON.stringify(protocol.slice(0, -1))}`);
        if (!o.allowUrls)
          return fail(
            "image-unreadable",
            `URL images are disabled (allowUrls: false): ${redactUrl(ref.value)}`,
          );
        return limit(() => fetchUrl(ref.value, o.maxBytes, o.timeoutMs, closer.signal));
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
        return fail("image-unreadable", `unexpected error while loading the image: ${describe(err)}`);
      }
    },
    async close(): Promise<void> {
      // Queued fetches still run, see the abort at their start and return at once.
      closer.abort();
    },
  };
}
