/**
 * An output location shared by every instance of a fleet (one machine or many, over a shared
 * volume): the layout of sink-manifest.ts plus
 *
 *   DIR/locks/<topic>-p<partition>.lock   held while a partition's publication commits or its
 *                                         next owner claims it (created with O_EXCL: one holder)
 *   DIR/tmp/<instance>/                   each process's files before they are published
 *
 * Instances are named `<host>-<pid>-<start>`; a lock or temporary folder left by a process that
 * died is taken over (same host: its pid is gone) or, from another host, once it is older than
 * `lockStaleMs` (a lock is held for one fsynced append, well under a second).
 */

import { mkdir, open, readdir, readFile, rm, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { partitionKey } from "../../src/stream/offset-ledger.js";
import { OffsetRanges } from "../../src/stream/offset-ranges.js";
import type { OutputLocation, TopicPartition } from "../../src/stream/ports.js";
import { ioError } from "../../src/util/atomic-file.js";
import {
  FILE_KINDS,
  LEGACY_MANIFEST_NAME,
  MANIFESTS_DIR,
  type ManifestEntry,
  parseFileName,
  parseManifestText,
  partitionNamePart,
  readFileOffsets,
} from "./sink-manifest.js";

export interface SharedOutputOptions {
  dir: string;
  /** default `<host>-<pid>-<start time base 36>` */
  instanceId?: string;
  /** a lock from another host older than this is taken over (default 60 s) */
  lockStaleMs?: number;
  /** give up waiting for a lock after this long (default 120 s) */
  lockWaitMs?: number;
}

interface Holder {
  instance: string;
  host: string;
  pid: number;
  at: number;
}

const HOST = hostname().replace(/[^A-Za-z0-9._]/g, "_");

export function newInstanceId(): string {
  return `${HOST}-${process.pid}-${Date.now().toString(36)}`;
}

/** Whether a process of this host is alive (EPERM: it is, but not ours). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid in an instance id of this host, or undefined for another host's. */
function localPid(instance: string): number | undefined {
  if (!instance.startsWith(`${HOST}-`)) return undefined;
  const pid = Number(instance.slice(HOST.length + 1).split("-")[0]);
  return Number.isSafeInteger(pid) ? pid : undefined;
}

/**
 * Every manifest of a location, read incrementally: each call reads only what was appended
 * since the last one, up to each file's last newline.
 */
export class ManifestIndex {
  private readonly consumed = new Map<string, { bytes: number; lines: number }>();
  private readonly byPartition = new Map<string, ManifestEntry[]>();
  readonly files = new Set<string>();

  /** refreshes run one after the other: concurrent claims would otherwise read the same new bytes */
  private reading: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string) {}

  /**
   * Reads what was appended to every manifest since the last refresh (started after it was
   * called); resolves with the entries it added, manifest by manifest in line order.
   */
  refresh(): Promise<ManifestEntry[]> {
    const run = this.reading.then(() => this.readAll());
    this.reading = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  private async readAll(): Promise<ManifestEntry[]> {
    let names: string[] = [];
    try {
      names = (await readdir(join(this.dir, MANIFESTS_DIR))).filter((n) => n.endsWith(".jsonl"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(join(this.dir, MANIFESTS_DIR), err);
    }
    const paths = [
      join(this.dir, LEGACY_MANIFEST_NAME),
      ...names.sort().map((n) => join(this.dir, MANIFESTS_DIR, n)),
    ];
    const added: ManifestEntry[] = [];
    for (const path of paths) await this.readNew(path, added);
    return added;
  }

  private async readNew(path: string, added: ManifestEntry[]): Promise<void> {
    const seen = this.consumed.get(path) ?? { bytes: 0, lines: 0 };
    let fh: import("node:fs/promises").FileHandle;
    try {
      fh = await open(path, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw ioError(path, err);
    }
    let buf: Buffer;
    try {
      const { size } = await fh.stat();
      if (size <= seen.bytes) return;
      buf = Buffer.alloc(size - seen.bytes);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, seen.bytes + off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      buf = buf.subarray(0, off);
    } finally {
      await fh.close();
    }
    const end = buf.lastIndexOf(0x0a);
    if (end < 0) return; // nothing complete yet
    const text = buf.subarray(0, end + 1).toString("utf8");
    const { entries } = parseManifestText(text, path, seen.lines + 1);
    for (const e of entries) if (this.add(e)) added.push(e);
    this.consumed.set(path, { bytes: seen.bytes + end + 1, lines: seen.lines + text.split("\n").length - 1 });
  }

  private add(e: ManifestEntry): boolean {
    if (this.files.has(e.file)) return false;
    this.files.add(e.file);
    const key = partitionKey(e.topic, e.partition);
    const list = this.byPartition.get(key) ?? [];
    list.push(e);
    this.byPartition.set(key, list);
    return true;
  }

  entriesOf(tp: TopicPartition): readonly ManifestEntry[] {
    return this.byPartition.get(partitionKey(tp.topic, tp.partition)) ?? [];
  }

  all(): ManifestEntry[] {
    return [...this.byPartition.values()].flat();
  }
}

export class SharedOutput implements OutputLocation {
  readonly instanceId: string;
  /** this process's manifest */
  readonly manifestPath: string;
  /** this process's files before they are published */
  readonly tmpDir: string;
  readonly index: ManifestIndex;
  private readonly lockStaleMs: number;
  private readonly lockWaitMs: number;
  /** in-process queue per partition: one holder of this process waits for the other in memory */
  private readonly local = new Map<string, Promise<void>>();
  /** offsets of published files whose rows do not fill their range (read once, kept as ranges) */
  private readonly fileOffsets = new Map<string, OffsetRanges>();

  private constructor(
    readonly dir: string,
    options: SharedOutputOptions,
  ) {
    this.instanceId = options.instanceId ?? newInstanceId();
    this.manifestPath = join(dir, MANIFESTS_DIR, `${this.instanceId}.jsonl`);
    this.tmpDir = join(dir, "tmp", this.instanceId);
    this.index = new ManifestIndex(dir);
    this.lockStaleMs = options.lockStaleMs ?? 60_000;
    this.lockWaitMs = options.lockWaitMs ?? 120_000;
  }

  /** Creates the layout, removes temporary folders of this host's dead instances. */
  static async open(options: SharedOutputOptions): Promise<SharedOutput> {
    const out = new SharedOutput(options.dir, options);
    const dir = options.dir;
    try {
      for (const sub of [...FILE_KINDS, MANIFESTS_DIR, "locks", "tmp"])
        await mkdir(join(dir, sub), { recursive: true });
      for (const name of await readdir(join(dir, "tmp"))) {
        const pid = localPid(name);
        if (pid !== undefined && name !== out.instanceId && !alive(pid))
          await rm(join(dir, "tmp", name), { recursive: true, force: true });
      }
      await mkdir(out.tmpDir, { recursive: true });
    } catch (err) {
      throw ioError(dir, err);
    }
    await out.index.refresh();
    return out;
  }

  private lockPath(tp: TopicPartition): string {
    return join(this.dir, "locks", `${partitionNamePart(tp.topic, tp.partition).slice(0, -1)}.lock`);
  }

  async lock(tp: TopicPartition): Promise<() => Promise<void>> {
    const key = partitionKey(tp.topic, tp.partition);
    const before = this.local.get(key) ?? Promise.resolve();
    let releaseLocal!: () => void;
    const mine = new Promise<void>((resolve) => (releaseLocal = resolve));
    const chained = before.then(() => mine);
    this.local.set(key, chained);
    await before;
    try {
      await this.acquireFile(tp);
    } catch (err) {
      releaseLocal();
      if (this.local.get(key) === chained) this.local.delete(key);
      throw err;
    }
    const path = this.lockPath(tp);
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      await rm(path, { force: true }).catch(() => {});
      releaseLocal();
      if (this.local.get(key) === chained) this.local.delete(key);
    };
  }

  private async acquireFile(tp: TopicPartition): Promise<void> {
    const path = this.lockPath(tp);
    const me: Holder = { instance: this.instanceId, host: HOST, pid: process.pid, at: Date.now() };
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        const fh = await open(path, "wx");
        try {
          await fh.writeFile(JSON.stringify(me));
        } finally {
          await fh.close();
        }
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(path, err);
      }
      if ((await this.isStale(path)) && (await this.takeOver(path))) continue;
      if (Date.now() - started > this.lockWaitMs)
        throw new MmssrError(
          ERROR_CODES.LOCK_TIMEOUT,
          `${path}: held by another instance for more than ${this.lockWaitMs} ms`,
          { retriable: true },
        );
      await new Promise((resolve) => setTimeout(resolve, Math.min(5 + attempt * 5, 50)));
    }
  }

  /**
   * Removes a stale lock, one taker at a time: two waiters that both saw it stale must not both
   * remove "it" (the second would remove the first one's fresh lock). The takers serialise on
   * `<lock>.steal` (O_EXCL) and look again before removing. True when the caller should retry
   * at once.
   */
  private async takeOver(path: string): Promise<boolean> {
    const guard = `${path}.steal`;
    try {
      await (await open(guard, "wx")).close();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(guard, err);
      // a taker that died mid-take-over leaves its guard: old after a few seconds
      const age = await stat(guard).then(
        (s) => Date.now() - s.mtimeMs,
        () => 0,
      );
      if (age > 10_000) await rm(guard, { force: true }).catch(() => {});
      return false;
    }
    try {
      if (await this.isStale(path)) await rm(path, { force: true });
    } finally {
      await rm(guard, { force: true }).catch(() => {});
    }
    return true;
  }

  /** A lock whose holder died (this host) or that is older than lockStaleMs (another host). */
  private async isStale(path: string): Promise<boolean> {
    let holder: Holder | undefined;
    let mtime: number;
    try {
      const text = await readFile(path, "utf8");
      mtime = (await stat(path)).mtimeMs;
      try {
        holder = JSON.parse(text) as Holder;
      } catch {
        holder = undefined; // being written, or torn by a crash
      }
    } catch {
      return false; // released meanwhile: the next attempt takes it
    }
    if (holder && holder.host === HOST && Number.isSafeInteger(holder.pid)) return !alive(holder.pid);
    return Date.now() - mtime > this.lockStaleMs;
  }

  async claim(tp: TopicPartition, from?: bigint): Promise<OffsetRanges> {
    await this.index.refresh();
    const out = new OffsetRanges();
    const entries = this.index.entriesOf(tp);
    const scoredRotations = new Set(
      entries.filter((e) => e.kind === "scored").map((e) => `${e.firstOffset}-${e.lastOffset}`),
    );
    for (const e of entries) {
      const first = BigInt(e.firstOffset);
      const last = BigInt(e.lastOffset);
      if (from !== undefined && last < from) continue; // committed: never read again
      // a selected file's offsets are inside its rotation's scored file
      if (e.kind === "selected" && scoredRotations.has(`${e.firstOffset}-${e.lastOffset}`)) continue;
      if (e.kind === "scored" && BigInt(e.rows) === last - first + 1n) {
        out.add(first, last);
        continue;
      }
      let ranges = this.fileOffsets.get(e.file);
      if (!ranges) {
        ranges = new OffsetRanges();
        for (const o of await readFileOffsets(join(this.dir, e.file))) ranges.add(o);
        this.fileOffsets.set(e.file, ranges);
      }
      for (const [lo, hi] of ranges.ranges) out.add(lo, hi);
    }
    if (from !== undefined) out.pruneBelow(from);
    await this.removeUnpublished(tp);
    return out;
  }

  /** Files of `tp` that no manifest names: a crash between their rename and their manifest line. */
  private async removeUnpublished(tp: TopicPartition): Promise<string[]> {
    const removed: string[] = [];
    const part = partitionNamePart(tp.topic, tp.partition);
    for (const kind of FILE_KINDS) {
      const names = await readdir(join(this.dir, kind)).catch(() => [] as string[]);
      for (const name of names) {
        if (!name.startsWith(`${kind}-${part}`)) continue;
        const parsed = parseFileName(name);
        if (!parsed || parsed.topic !== tp.topic || parsed.partition !== tp.partition) continue;
        const rel = `${kind}/${name}`;
        if (this.index.files.has(rel)) continue;
        await rm(join(this.dir, rel), { force: true });
        removed.push(rel);
      }
    }
    return removed;
  }
}

/**
 * What a reader of an output location takes as published: the union of every manifest's
 * complete lines (each file once), as a training job or a check would read it.
 */
export async function readPublishedEntries(dir: string): Promise<ManifestEntry[]> {
  const index = new ManifestIndex(dir);
  await index.refresh();
  return index.all();
}

/**
 * The published files of one kind (scored or selected) of an output location, as paths under
 * `dir`, in stream order: by topic, partition, then first offset.
 */
export async function publishedFiles(dir: string, kind: ManifestEntry["kind"]): Promise<string[]> {
  return (await readPublishedEntries(dir))
    .filter((e) => e.kind === kind)
    .sort(
      (a, b) =>
        (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0) ||
        a.partition - b.partition ||
        Number(BigInt(a.firstOffset) - BigInt(b.firstOffset)) ||
        (a.file < b.file ? -1 : a.file > b.file ? 1 : 0),
    )
    .map((e) => join(dir, e.file));
}
