/**
 * What the curation sink has published: file names, manifest files, and the readers of both.
 *
 * Files. DIR/selected/ and DIR/scored/ hold Parquet files named
 * `<kind>-<topic>-p<partition>-<firstOffset>-<lastOffset>.parquet`: one file per partition per
 * rotation, so a name states exactly which partition's offsets the file decided, and is the same
 * whichever instance of a fleet wrote it (every offset is decided once, so no two rotations
 * share a range). A rotation writes its scored file (every decision) and, when it selected
 * anything, its selected file with the same range (a "pair"). The topic is percent-encoded in
 * names (bytes outside [A-Za-z0-9._-]), so that file sources, whose "topic" is a path, make
 * valid names. Names of the single-instance layout before the fleet (a `-<seq>` suffix) are
 * still read.
 *
 * Manifests. Each curator process appends to a manifest of its own,
 * DIR/manifests/<instance>.jsonl (no two processes ever append to one file): one JSON line per
 * published file, both lines of a rotation in one write, fsynced. A file is published when a
 * complete line (newline included) of some manifest names it, and only then: readers take the
 * union of all manifests (and DIR/manifest.jsonl of the older layout). An unterminated last
 * line was being written (or its writer died): it does not count yet.
 *
 * Publishing order of a rotation (connectors/sink/curation-sink.ts): both files are written
 * and fsynced under DIR/tmp/<instance>/, then, with the partition's lock held and ownership
 * proved (src/stream/partition-owner.ts), renamed into scored/ and selected/ and named by the
 * manifest line. A crash leaves temporary files (removed by the next start on that machine) or
 * renamed files that no manifest names: never published; the partition's next claim removes
 * them and its records are decided again.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { ioError } from "../../src/util/atomic-file.js";
import { openParquet, parquetBatches } from "../parquet/parquet-batches.js";

export type FileKind = "selected" | "scored";
export const FILE_KINDS: readonly FileKind[] = ["selected", "scored"];
/** the manifest of the single-instance layout, still read */
export const LEGACY_MANIFEST_NAME = "manifest.jsonl";
export const MANIFESTS_DIR = "manifests";

export interface ManifestEntry {
  /** path relative to the sink directory, e.g. "scored/scored-t-p0-0-99-000001.parquet" */
  file: string;
  kind: FileKind;
  topic: string;
  partition: number;
  /** lowest and highest origin offset the rotation decided (decimal int64) */
  firstOffset: string;
  lastOffset: string;
  rows: number;
  /** rows of the rotation's scored file: equals rows for a scored entry */
  decided?: number;
  bytes?: number;
  sha256?: string;
  /** ISO 8601 */
  publishedAt: string;
  /** grows by one per rotation within one instance's manifest */
  seq: number;
  /** the curator process that published it (its manifest is manifests/<instance>.jsonl) */
  instance?: string;
  /** the assignment generation of that process under which the rows were decided */
  generation?: number;
  /** older layout: rebuilt by recovery from a published file the manifest missed */
  adopted?: true;
}

// ---------------------------------------------------------------------------------------------
// Names

const encodeTopic = (topic: string): string =>
  Array.from(Buffer.from(topic, "utf8"))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9._-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");

export interface FileName {
  kind: FileKind;
  topic: string;
  partition: number;
  firstOffset: string;
  lastOffset: string;
}

export function fileName(n: FileName): string {
  return `${n.kind}-${encodeTopic(n.topic)}-p${n.partition}-${n.firstOffset}-${n.lastOffset}.parquet`;
}

/** the part of names that says which partition: `<topic>-p<partition>-` */
export function partitionNamePart(topic: string, partition: number): string {
  return `${encodeTopic(topic)}-p${partition}-`;
}

// an optional `-<seq>` suffix: names of the single-instance layout
const NAME_RE = /^(selected|scored)-(.+)-p(\d+)-(\d+)-(\d+)(?:-(\d+))?\.parquet$/;

/** The parts of a published file's name, or undefined for any other name. */
export function parseFileName(name: string): FileName | undefined {
  const m = NAME_RE.exec(name);
  if (!m) return undefined;
  let topic: string;
  try {
    topic = decodeURIComponent(m[2]);
  } catch {
    return undefined;
  }
  return {
    kind: m[1] as FileKind,
    topic,
    partition: Number(m[3]),
    firstOffset: m[4],
    lastOffset: m[5],
  };
}

// ---------------------------------------------------------------------------------------------
// The manifest file

/** Entries of a manifest file (none when absent). A torn last line is skipped; `torn` says so. */
export async function readManifestFile(
  path: string,
): Promise<{ entries: ManifestEntry[]; torn: boolean; validBytes: number }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], torn: false, validBytes: 0 };
    throw ioError(path, err);
  }
  const parsed = parseManifestText(text, path);
  return { ...parsed, validBytes: Buffer.byteLength(parsed.complete, "utf8") };
}

/**
 * The entries of manifest text, up to its last newline (`complete`: that prefix); a line after
 * it is torn (being written, or its writer died). A complete line that is not an entry throws,
 * naming the file and line.
 */
export function parseManifestText(
  text: string,
  path: string,
  firstLine = 1,
): { entries: ManifestEntry[]; torn: boolean; complete: string } {
  const entries: ManifestEntry[] = [];
  const lines = text.split("\n");
  const complete = text.endsWith("\n") || text.length === 0;
  // the text after the last newline is a line only if the file ends without a newline
  const last = lines.length - 1;
  let torn = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.length === 0) continue;
    let entry: ManifestEntry | undefined;
    try {
      entry = JSON.parse(line) as ManifestEntry;
    } catch {
      entry = undefined;
    }
    if (i === last && !complete) {
      // unterminated: written by a crashed append, whether or not it parses
      torn = true;
      break;
    }
    if (entry === undefined || typeof entry.file !== "string")
      throw new MmssrError(ERROR_CODES.BAD_ROW, `${path}: line ${firstLine + i} is not a manifest entry`);
    entries.push(entry);
  }
  return { entries, torn, complete: complete ? text : text.slice(0, text.lastIndexOf("\n") + 1) };
}

/** Appends manifest lines durably: one write and one fsync per call. */
export class ManifestWriter {
  private constructor(
    private readonly path: string,
    private readonly fh: import("node:fs/promises").FileHandle,
    private size: number,
  ) {}

  /** Opens a manifest file for appending, first cutting off a torn last line. */
  static async open(path: string): Promise<ManifestWriter> {
    const { validBytes } = await readManifestFile(path);
    try {
      const fh = await open(path, "a+");
      const { size } = await fh.stat();
      if (size === 0) await syncDir(dirname(path)); // a new manifest: make its name durable
      if (size > validBytes) {
        await fh.truncate(validBytes);
        await fh.sync();
      }
      return new ManifestWriter(path, fh, validBytes);
    } catch (err) {
      throw ioError(path, err);
    }
  }

  async append(entries: readonly ManifestEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const buf = Buffer.from(entries.map((e) => `${JSON.stringify(e)}\n`).join(""), "utf8");
    try {
      let off = 0;
      while (off < buf.length) off += (await this.fh.write(buf, off, buf.length - off)).bytesWritten;
      await this.fh.sync();
      this.size += buf.length;
    } catch (err) {
      // leave no partial line behind for the next append to run into
      await this.fh.truncate(this.size).catch(() => {});
      throw ioError(this.path, err);
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export async function syncDir(dir: string): Promise<void> {
  try {
    const dh = await open(dir, "r");
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    /* not every filesystem fsyncs a directory */
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The origin_offset column of a published file, as int64 values. */
export async function readFileOffsets(path: string): Promise<bigint[]> {
  const { file } = await openParquet(path);
  const out: bigint[] = [];
  try {
    for await (const batch of parquetBatches(file, 65_536)) {
      const col = batch.getChild("origin_offset");
      if (!col) throw new MmssrError(ERROR_CODES.MISSING_COLUMN, `${path}: no origin_offset column`);
      for (const v of col) out.push(BigInt(v as bigint | number));
    }
  } finally {
    file.free();
  }
  return out;
}
