/**
 * A sample's image as a chat-completions image content part (`{type: "image_url", image_url:
 * {url}}`), for `mmssr annotate`.
 *
 * References, in the order of preference of the scoring loader (scoring/image-source.ts):
 * `image_b64`, `image` (a local path, a `file://` URL or an http(s) URL), `image_url`; the first
 * that can be used wins. With several images (`images`) only the first (`image`) is sent: the
 * released scorer and styler take one image per instance.
 *
 * - inline bytes and local files become a `data:<mime>;base64,...` URL. Files are read by the
 *   scoring image loader with its rules (inside the image base unless allowed outside, size
 *   limit, flags). The MIME type comes from the bytes (JPEG, PNG, GIF, WebP, BMP); other bytes
 *   are `image-corrupt`, since no server could read them.
 * - an http(s) URL is passed through for the server to fetch, never fetched here, and only when
 *   its host is in the allow-list (`allowHosts`, as --allow-image-hosts) and, for an IP literal,
 *   the address is public unless `allowPrivateAddresses`. Otherwise it is `image-refused`. (A host
 *   name is not resolved: the server, not this process, connects to it.)
 */
import type { Sample } from "../domain/sample.js";
import {
  createImageLoader,
  imageHostAllowed,
  nonPublicAddressKind,
  normalizeHostPattern,
  redactUrl,
} from "../scoring/image-source.js";
import type { ScoreFlag } from "../scoring/scoring-types.js";
import type { ContentPart } from "./chat-client.js";

export type ImagePart = Extract<ContentPart, { type: "image_url" }>;

export type ImagePartResult =
  | {
      ok: true;
      part: ImagePart;
      /** "image_b64", "file:<absolute path>" or the URL (query hidden) */
      origin: string;
    }
  | { ok: false; flag: ScoreFlag; reason: string };

export interface ImagePartOptions {
  /** folder relative paths resolve against and local paths must lie in */
  baseDir: string;
  allowLocalOutsideBase?: boolean;
  /** hosts whose http(s) image URLs are passed through (normalized or raw patterns) */
  allowHosts?: readonly string[];
  allowPrivateAddresses?: boolean;
  /** largest image read from a file or inline, bytes (default: the loader's 20 MiB) */
  maxBytes?: number;
}

export interface ImagePartResolver {
  /** Never rejects. */
  resolve(sample: Sample): Promise<ImagePartResult>;
  close(): Promise<void>;
}

/** The MIME type of image bytes by their signature, or undefined. */
export function sniffImageMime(b: Uint8Array): string | undefined {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "image/png";
  const ascii = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  if (b.length >= 6 && (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a")) return "image/gif";
  if (b.length >= 12 && ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return "image/bmp";
  return undefined;
}

type Ref = { kind: "b64" | "path" | "url"; value: string };

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//;

function references(sample: Sample): Ref[] {
  const refs: Ref[] = [];
  if (typeof sample.image_b64 === "string" && sample.image_b64 !== "")
    refs.push({ kind: "b64", value: sample.image_b64 });
  if (typeof sample.image === "string" && sample.image !== "") {
    const scheme = SCHEME_RE.exec(sample.image)?.[1]?.toLowerCase();
    refs.push({ kind: scheme === undefined || scheme === "file" ? "path" : "url", value: sample.image });
  }
  if (typeof sample.image_url === "string" && sample.image_url !== "")
    refs.push({ kind: "url", value: sample.image_url });
  return refs;
}

type Failure = Extract<ImagePartResult, { ok: false }>;

export function createImagePartResolver(options: ImagePartOptions): ImagePartResolver {
  const allowHosts = (options.allowHosts ?? []).map(normalizeHostPattern);
  const loader = createImageLoader({
    baseDir: options.baseDir,
    allowUrls: false,
    fallback: false,
    allowLocalOutsideBase: options.allowLocalOutsideBase === true,
    maxBytes: options.maxBytes,
  });

  const passThrough = (raw: string): ImagePartResult => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      return {
        ok: false,
        flag: "image-unreadable",
        reason: `not a valid URL: ${JSON.stringify(raw.slice(0, 200))}`,
      };
    }
    if (u.protocol !== "http:" && u.protocol !== "https:")
      return {
        ok: false,
        flag: "image-unreadable",
        reason: `unsupported URL scheme ${JSON.stringify(u.protocol.slice(0, -1))}`,
      };
    let host = u.hostname.toLowerCase();
    if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
    if (host.endsWith(".")) host = host.slice(0, -1);
    if (!imageHostAllowed(host, allowHosts))
      return {
        ok: false,
        flag: "image-refused",
        reason: `host not allowed: ${host} (${redactUrl(u)}) is not in --allow-image-hosts`,
      };
    if (options.allowPrivateAddresses !== true) {
      const kind = nonPublicAddressKind(host);
      if (kind !== undefined && kind !== "not an IP address")
        return {
          ok: false,
          flag: "image-refused",
          reason: `private address: ${host} (${kind}); see --allow-private-image-hosts`,
        };
    }
    return { ok: true, part: { type: "image_url", image_url: { url: raw } }, origin: redactUrl(u) };
  };

  const inline = async (ref: Ref): Promise<ImagePartResult> => {
    const probe = { id: "image", image_source: "unknown", conversations: [] } as unknown as Sample;
    if (ref.kind === "b64") probe.image_b64 = ref.value;
    else probe.image = ref.value;
    const loaded = await loader.load(probe);
    if (!loaded.ok) return loaded;
    const mime = sniffImageMime(loaded.bytes);
    if (mime === undefined)
      return {
        ok: false,
        flag: "image-corrupt",
        reason: `${loaded.origin}: not a JPEG, PNG, GIF, WebP or BMP image`,
      };
    const b64 = ref.kind === "b64" ? ref.value : Buffer.from(loaded.bytes).toString("base64");
    return {
      ok: true,
      part: { type: "image_url", image_url: { url: `data:${mime};base64,${b64}` } },
      origin: loaded.origin,
    };
  };

  return {
    async resolve(sample: Sample): Promise<ImagePartResult> {
      try {
        const refs = references(sample);
        if (refs.length === 0) return { ok: false, flag: "no-image", reason: "the sample names no image" };
        let first: Failure | undefined;
        for (const ref of refs) {
          const r = ref.kind === "url" ? passThrough(ref.value) : await inline(ref);
          if (r.ok) return r;
          first ??= r;
        }
        const failed = first as Failure;
        return refs.length > 1
          ? { ...failed, reason: `${failed.reason} (and ${refs.length - 1} other reference(s) failed)` }
          : failed;
      } catch (err) {
        return {
          ok: false,
          flag: "image-unreadable",
          reason: `unexpected error while reading the image: ${err instanceof Error ? err.message : String(err)}`,
        };
      }
    },
    close: () => loader.close(),
  };
}
