/**
 * What the curation sink has published, and how a restart picks up from it.
 *
 * Files. DIR/selected/ and DIR/scored/ hold Parquet files named
 * `<kind>-<topic>-p<partition>-<firstOffset>-<lastOffset>-<seq>.parquet`: one file per
 * partition per rotation, so a name states exactly which partition's offsets the file decided
 * (a file mixing partitions would need a list of ranges, which does not fit in a name, and would
 * tie the rotation of a busy partition to that of a quiet one). A rotation writes its scored
 * file and, when it selected anything, its selected file with the same range and seq (a
 * "pair"). The topic is percent-encoded in names (bytes outside [A-Za-z0-9._-]), so that file
 * sources, whose "topic" is a path, make valid names.
 *
 * Manifest (DIR/manifest.jsonl): one JSON line per published file, appended, both lines of a
 * rotation in one write, fsynced. The append is the commit point of a rotation: offsets are
 * committed to Kafka only after it. A crash mid-append leaves a torn last line, which readers
 * skip and recovery cuts off.
 *
 * Publishing order within a rotation: the scored file is renamed into place first, then the
 * selected file, then the manifest lines are appended. So a crash leaves one of:
 *   - only temporary files: removed at start; the records were not committed and are re-read;
 *   - a scored file alone whose rows include selected ones: its selected file never appeared,
 *     so no reader saw the rotation's selected rows: the scored file is DELETED and the records
 *     are decided again;
 *   - a complete pair (or a scored file alone with no selected row): ADOPTED, its manifest
 *     lines rebuilt from the names. Deleting would be unsafe: a training job tailing selected/
 *     may already have read the selected file, and re-deciding the records could publish them
 *     again (or a different choice);
 *   - a selected file without its scored file (only if someone removed it): adopted as well,
 *     to never retract published output; the recovery report lists it as incomplete.
 * Recovery thus never loses a published selected row and never publishes one twice.
 *
 * Reconcile: per partition, the offsets covered by published files at or above the committed
 * offset (exact: a file whose rows fill its range is taken from its name, any other is read),
 * the offset to resume from (the committed offset advanced over published offsets that follow
 * it), and a membership test that the stream uses to skip re-read records whose decisions are
 * already out. A DIR belongs to one curator process at a time.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { partitionKey } from "../../src/stream/offset-ledger.js";
import { ioError } from "../files/atomic-file.js";
import { openParquet, parquetBatches } from "../parquet/parquet-batches.js";

export type FileKind = "selected" | "scored";
export const FILE_KINDS: readonly FileKind[] = ["selected", "scored"];
export const MANIFEST_NAME = "manifest.jsonl";

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
  seq: number;
  /** rebuilt by recovery from a published file the manifest missed */
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
  seq: number;
}

export function fileName(n: FileName): string {
  return `${n.kind}-${encodeTopic(n.topic)}-p${n.partition}-${n.firstOffset}-${n.lastOffset}-${String(n.seq).padStart(6, "0")}.parquet`;
}

const NAME_RE = /^(selected|scored)-(.+)-p(\d+)-(\d+)-(\d+)-(\d+)\.parquet$/;

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
    seq: Number(m[6]),
  };
}

/** A temporary file of AtomicFile: `.<final name>.<hex>.tmp`. */
const TEMP_RE = /^\.(.+)\.[0-9a-f]+\.tmp$/;

// ---------------------------------------------------------------------------------------------
// Offset ranges

/** A set of int64 offsets as sorted, disjoint, non-adjacent inclusive ranges. */
export class OffsetRanges {
  private los: bigint[] = [];
  private his: bigint[] = [];

  get ranges(): [bigint, bigint][] {
    return this.los.map((lo, i) => [lo, this.his[i]]);
  }

  get isEmpty(): boolean {
    return this.los.length === 0;
  }

  /** index of the last range with lo <= x, or -1 */
  private find(x: bigint): number {
    let a = 0;
    let b = this.los.length - 1;
    let r = -1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (this.los[m] <= x) {
        r = m;
        a = m + 1;
      } else b = m - 1;
    }
    return r;
  }

  has(x: bigint): boolean {
    const i = this.find(x);
    return i >= 0 && this.his[i] >= x;
  }

  add(lo: bigint, hi: bigint = lo): void {
    if (hi < lo) return;
    // first range that may touch [lo, hi]: the last with lo' <= lo, if it reaches lo - 1
    let i = this.find(lo);
    if (i < 0 || this.his[i] < lo - 1n) i++;
    let j = i;
    let newLo = lo;
    let newHi = hi;
    while (j < this.los.length && this.los[j] <= hi + 1n) {
      if (this.los[j] < newLo) newLo = this.los[j];
      if (this.his[j] > newHi) newHi = this.his[j];
      j++;
    }
    this.los.splice(i, j - i, newLo);
    this.his.splice(i, j - i, newHi);
  }

  /** From x, the first offset not in the set. */
  advance(x: bigint): bigint {
    const i = this.find(x);
    return i >= 0 && this.his[i] >= x ? this.his[i] + 1n : x;
  }

  /** Forgets offsets below x (committed: they are never read again). */
  pruneBelow(x: bigint): void {
    let k = 0;
    while (k < this.los.length && this.his[k] < x) k++;
    this.los.splice(0, k);
    this.his.splice(0, k);
    if (this.los.length > 0 && this.los[0] < x) this.los[0] = x;
  }
}

// ---------------------------------------------------------------------------------------------
// The manifest file

/** Entries of DIR/manifest.jsonl (none when absent). A torn last line is skipped; `torn` says so. */
export async function readManifest(
  dir: string,
): Promise<{ entries: ManifestEntry[]; torn: boolean; validBytes: number }> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_NAME), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { entries: [], torn: false, validBytes: 0 };
    throw ioError(join(dir, MANIFEST_NAME), err);
  }
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
      throw new MmssrError(
        ERROR_CODES.BAD_ROW,
        `${join(dir, MANIFEST_NAME)}: line ${i + 1} is not a manifest entry`,
      );
    entries.push(entry);
  }
  const validBytes = Buffer.byteLength(complete ? text : text.slice(0, text.lastIndexOf("\n") + 1), "utf8");
  return { entries, torn, validBytes };
}

/** Appends manifest lines durably: one write and one fsync per call. */
export class ManifestWriter {
  private constructor(
    private readonly path: string,
    private readonly fh: import("node:fs/promises").FileHandle,
    private size: number,
  ) {}

  /** Opens DIR/manifest.jsonl for appending, first cutting off a torn last line. */
  static async open(dir: string): Promise<ManifestWriter> {
    const path = join(dir, MANIFEST_NAME);
    const { validBytes } = await readManifest(dir);
    try {
      const fh = await open(path, "a+");
      const { size } = await fh.stat();
      if (size === 0) await syncDir(dir); // a new manifest: make its name durable
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

async function syncDir(dir: string): Promise<void> {
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

async function countSelected(path: string): Promise<number> {
  const { file } = await openParquet(path);
  let n = 0;
  try {
    for await (const batch of parquetBatches(file, 65_536)) {
      const col = batch.getChild("selected");
      if (!col) throw new MmssrError(ERROR_CODES.MISSING_COLUMN, `${path}: no selected column`);
      for (const v of col) if (v === true) n++;
    }
  } finally {
    file.free();
  }
  return n;
}

// ---------------------------------------------------------------------------------------------
// Recovery at start

export interface RecoveryReport {
  /** the manifest after recovery (adopted entries appended) */
  entries: ManifestEntry[];
  /** a torn last manifest line was cut off */
  tornLine: boolean;
  /** temporary files removed (paths relative to DIR) */
  removedTemp: string[];
  /** published files the manifest missed, now recorded */
  adopted: string[];
  /** scored files of a rotation whose selected file never appeared: removed, to be redone */
  deleted: string[];
  /** adopted selected files with no scored file beside them (their rows miss from the scored log) */
  incomplete: string[];
  /** the highest seq in any name: new files continue after it */
  maxSeq: number;
}

/**
 * Brings DIR to a published state after a crash (see the file comment): creates the folders,
 * cuts a torn manifest line, removes temporary files, adopts complete rotations the manifest
 * missed and deletes the scored half of incomplete ones. Run before anything writes to DIR.
 */
export async function recoverSinkDir(dir: string): Promise<RecoveryReport> {
  for (const kind of FILE_KINDS) await mkdir(join(dir, kind), { recursive: true });
  const { entries, torn } = await readManifest(dir);
  const writer = await ManifestWriter.open(dir); // cuts the torn line
  const report: RecoveryReport = {
    entries,
    tornLine: torn,
    removedTemp: [],
    adopted: [],
    deleted: [],
    incomplete: [],
    maxSeq: 0,
  };
  try {
    const known = new Set(entries.map((e) => e.file));
    for (const e of entries) report.maxSeq = Math.max(report.maxSeq, e.seq ?? 0);
    // orphans by pair key (the name without its kind)
    const orphans = new Map<string, Partial<Record<FileKind, FileName>>>();
    for (const kind of FILE_KINDS) {
      for (const name of await readdir(join(dir, kind))) {
        const rel = `${kind}/${name}`;
        if (TEMP_RE.test(name)) {
          await rm(join(dir, rel), { force: true });
          report.removedTemp.push(rel);
          continue;
        }
        const parsed = parseFileName(name);
        if (!parsed || parsed.kind !== kind) continue;
        report.maxSeq = Math.max(report.maxSeq, parsed.seq);
        if (known.has(rel)) continue;
        const key = name.slice(kind.length);
        const pair = orphans.get(key) ?? {};
        pair[kind] = parsed;
        orphans.set(key, pair);
      }
    }
    // also the temporary files in DIR itself (none are written there, but a manifest rewrite could)
    for (const name of await readdir(dir)) {
      if (TEMP_RE.test(name)) {
        await rm(join(dir, name), { force: true });
        report.removedTemp.push(name);
      }
    }
    const adoptedEntries: ManifestEntry[] = [];
    const publishedAt = new Date().toISOString();
    const entryOf = (n: FileName, rows: number, decided: number, bytes: number): ManifestEntry => ({
      file: `${n.kind}/${fileName(n)}`,
      kind: n.kind,
      topic: n.topic,
      partition: n.partition,
      firstOffset: n.firstOffset,
      lastOffset: n.lastOffset,
      rows,
      decided,
      bytes,
      publishedAt,
      seq: n.seq,
      adopted: true,
    });
    for (const pair of [...orphans.values()].sort(
      (a, b) => ((a.scored ?? a.selected)?.seq ?? 0) - ((b.scored ?? b.selected)?.seq ?? 0),
    )) {
      const scored = pair.scored;
      const selected = pair.selected;
      if (scored) {
        const path = join(dir, "scored", fileName(scored));
        const decided = (await readFileOffsets(path)).length;
        const nSelected = await countSelected(path);
        if (nSelected > 0 && !selected) {
          // the rotation's selected file never appeared: nobody saw its output; redo it
          await rm(path, { force: true });
          report.deleted.push(`scored/${fileName(scored)}`);
          continue;
        }
        adoptedEntries.push(entryOf(scored, decided, decided, await fileSize(path)));
        report.adopted.push(`scored/${fileName(scored)}`);
        if (selected) {
          const spath = join(dir, "selected", fileName(selected));
          adoptedEntries.push(
            entryOf(selected, (await readFileOffsets(spath)).length, decided, await fileSize(spath)),
          );
          report.adopted.push(`selected/${fileName(selected)}`);
        }
      } else if (selected) {
        const spath = join(dir, "selected", fileName(selected));
        const rows = (await readFileOffsets(spath)).length;
        // its scored half may be recorded already (an append cut right after the first line)
        const scoredHalf = entries.find(
          (e) => e.kind === "scored" && e.file === `scored/${fileName({ ...selected, kind: "scored" })}`,
        );
        adoptedEntries.push(entryOf(selected, rows, scoredHalf?.rows ?? rows, await fileSize(spath)));
        report.adopted.push(`selected/${fileName(selected)}`);
        if (!scoredHalf) report.incomplete.push(`selected/${fileName(selected)}`);
      }
    }
    await writer.append(adoptedEntries);
    report.entries = [...entries, ...adoptedEntries];
  } finally {
    await writer.close();
  }
  return report;
}

async function fileSize(path: string): Promise<number> {
  const fh = await open(path, "r");
  try {
    return (await fh.stat()).size;
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Reconcile with committed offsets

export interface PartitionResume {
  topic: string;
  partition: number;
  /** the group's committed offset (next to read), when it has one */
  committed?: string;
  /**
   * Where to resume: the committed offset moved past the published offsets that follow it
   * (commit this at once); undefined without a committed offset (the consumer's reset policy
   * decides, and `isPublished` still filters what it reads).
   */
  resumeFrom?: string;
  /** Offsets at or above the committed one whose decisions are already published. */
  published: OffsetRanges;
  /** true when the record at `offset` was decided and published before: skip it, count it decided */
  isPublished(offset: string): boolean;
}

/**
 * Per partition key, what a restart must know (see the file comment). `committed`: the
 * group's committed offsets by partitionKey (absent = none). `dir` locates files whose
 * offsets are not a full range and must be read.
 */
export async function reconcile(
  dir: string,
  entries: readonly ManifestEntry[],
  committed: ReadonlyMap<string, string>,
): Promise<Map<string, PartitionResume>> {
  const out = new Map<string, PartitionResume>();
  const resumeOf = (topic: string, partition: number): PartitionResume => {
    const key = partitionKey(topic, partition);
    let r = out.get(key);
    if (!r) {
      const published = new OffsetRanges();
      const c = committed.get(key);
      r = {
        topic,
        partition,
        committed: c,
        published,
        isPublished: (offset: string) => published.has(BigInt(offset)),
      };
      out.set(key, r);
    }
    return r;
  };
  for (const key of committed.keys()) {
    const at = key.lastIndexOf(":");
    resumeOf(key.slice(0, at), Number(key.slice(at + 1)));
  }
  // a selected file's offsets are inside its rotation's scored file, when that is published
  const scoredRotations = new Set(
    entries.filter((e) => e.kind === "scored").map((e) => `${partitionKey(e.topic, e.partition)}#${e.seq}`),
  );
  for (const e of entries) {
    const r = resumeOf(e.topic, e.partition);
    const first = BigInt(e.firstOffset);
    const last = BigInt(e.lastOffset);
    const floor = r.committed === undefined ? undefined : BigInt(r.committed);
    if (floor !== undefined && last < floor) continue; // already committed: never read again
    if (e.kind === "selected" && scoredRotations.has(`${partitionKey(e.topic, e.partition)}#${e.seq}`))
      continue;
    if (e.kind === "scored" && BigInt(e.rows) === last - first + 1n) {
      r.published.add(first, last); // rows fill the range: every offset in it is decided
      continue;
    }
    for (const o of await readFileOffsets(join(dir, e.file))) r.published.add(o);
  }
  for (const r of out.values()) {
    if (r.committed === undefined) continue;
    const c = BigInt(r.committed);
    r.published.pruneBelow(c);
    r.resumeFrom = r.published.advance(c).toString();
  }
  return out;
}
