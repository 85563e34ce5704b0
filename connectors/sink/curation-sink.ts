/**
 * The curation sink: decisions in, Parquet files out, published atomically and recorded in a
 * manifest (layout, names and crash recovery: sink-manifest.ts; columns: decision-rows.ts).
 *
 * Per partition, decisions gather in memory until a rotation trigger fires: `rotateRows` rows,
 * `rotateBytes` estimated uncompressed bytes, or `rotateMs` since the partition's oldest
 * pending row. A rotation writes the scored file (every decision) and the selected file (the
 * selected ones, when any), each under a temporary name, fsynced and renamed (scored first),
 * then appends their manifest lines in one fsynced write, and only then reports the rotation's
 * origins as decided (to the OffsetLedger given, and to `onPublish`). The Kafka commit that
 * follows can therefore never pass a record whose decision is not durable.
 *
 * The sink is idempotent: a decision for an offset already published (a record re-read after a
 * crash or a rebalance) or already pending is dropped, and reported decided at once when it is
 * published. Publishing is serialised: write, tick and flush may be called without waiting, but
 * callers should await write for backpressure. Memory: at most rotateBytes (estimated) of
 * pending rows per partition.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { type OffsetLedger, partitionKey } from "../../src/stream/offset-ledger.js";
import type { Decision, Origin } from "../../src/stream/stream-types.js";
import { writeParquetFile } from "../parquet/parquet-writer.js";
import { estimateRowBytes, scoredBatch, selectedBatch } from "./decision-rows.js";
import {
  type FileKind,
  fileName,
  type ManifestEntry,
  ManifestWriter,
  OffsetRanges,
  type PartitionResume,
  type RecoveryReport,
  reconcile,
  recoverSinkDir,
  sha256File,
} from "./sink-manifest.js";

export interface CurationSinkOptions {
  /** output directory: DIR/selected, DIR/scored, DIR/manifest.jsonl */
  dir: string;
  /** rotate a partition's files at this many decided rows (default 100_000) */
  rotateRows?: number;
  /** ... or at this many estimated uncompressed bytes (default 256 MiB) */
  rotateBytes?: number;
  /** ... or this long after its oldest pending row (default 60_000 ms) */
  rotateMs?: number;
  /** model id recorded by the caller's decisions; used to check them (optional) */
  modelId?: string;
  /** clock (ms), for tests; default Date.now */
  now?: () => number;
  /** run the time trigger on a timer (default true); otherwise call tick() */
  timer?: boolean;
  /** told of every decided origin once it is published (and of re-read, already published ones) */
  ledger?: OffsetLedger;
  /** called after each rotation's manifest lines are durable */
  onPublish?: (p: Publication) => void;
  /** hash published files into the manifest (default true) */
  sha256?: boolean;
  /** Parquet row group size (default: one row group per file up to 131072 rows) */
  rowGroupSize?: number;
}

export interface PublishedFile {
  /** absolute path */
  path: string;
  /** manifest entry (file relative to dir) */
  entry: ManifestEntry;
}

export interface Publication {
  files: PublishedFile[];
  /** origins whose decisions these files hold (committable once the ledger knows) */
  decided: Origin[];
}

export interface SinkStats {
  pendingRows: number;
  publishedFiles: number;
  publishedRows: { selected: number; scored: number };
  /** decisions dropped because their offset was already published or pending */
  duplicatesDropped: number;
}

export interface CurationSink {
  readonly dir: string;
  /** what recovery found and did when the sink opened */
  readonly recovery: RecoveryReport;
  /**
   * Per partition key: resume offset and already-published offsets, given the group's
   * committed offsets. Also primes the sink's duplicate filter with them.
   */
  reconcile(committed: ReadonlyMap<string, string>): Promise<Map<string, PartitionResume>>;
  /** Adds decisions; publishes the partitions whose rows/bytes/time trigger fired. */
  write(decisions: readonly Decision[]): Promise<PublishedFile[]>;
  /** Publishes the partitions whose time trigger fired (the timer calls it). */
  tick(): Promise<PublishedFile[]>;
  /** Publishes everything pending (or only the given partition keys). */
  flush(partitions?: Iterable<string>): Promise<PublishedFile[]>;
  /** Offsets below these were committed: forget them in the duplicate filter. */
  committed(offsets: ReadonlyMap<string, string>): void;
  /** Partitions revoked: their pending rows are dropped (call flush first to keep them). */
  revoke(partitions: Iterable<string>): void;
  stats(): SinkStats;
  /** Flushes, stops the timer, closes the manifest. */
  close(): Promise<void>;
  /** Stops without publishing what is pending (as a crash would: those records are re-read). */
  abort(): Promise<void>;
}

interface Pending {
  topic: string;
  partition: number;
  decisions: Decision[];
  offsets: Set<string>;
  bytes: number;
  since: number;
}

/** Opens DIR (recovering it after a crash, see sink-manifest.ts) and returns the sink. */
export async function createCurationSink(options: CurationSinkOptions): Promise<CurationSink> {
  const dir = options.dir;
  const rotateRows = options.rotateRows ?? 100_000;
  const rotateBytes = options.rotateBytes ?? 256 * 1024 * 1024;
  const rotateMs = options.rotateMs ?? 60_000;
  if (!(rotateRows >= 1) || !(rotateBytes >= 1) || !(rotateMs > 0))
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, "rotateRows, rotateBytes and rotateMs must be positive");
  const now = options.now ?? Date.now;
  const hash = options.sha256 ?? true;

  const recovery = await recoverSinkDir(dir);
  const manifest = await ManifestWriter.open(dir);
  let seq = recovery.maxSeq;

  const pending = new Map<string, Pending>();
  /** per partition: offsets published and not yet known committed */
  const published = new Map<string, OffsetRanges>();
  const stats: SinkStats = {
    pendingRows: 0,
    publishedFiles: 0,
    publishedRows: { selected: 0, scored: 0 },
    duplicatesDropped: 0,
  };
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;
  /** a rotation whose files are in place but whose manifest lines failed to append */
  let unrecorded: { files: PublishedFile[]; decided: Origin[] } | undefined;

  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  };

  const announce = (p: Publication): void => {
    if (options.ledger) for (const o of p.decided) options.ledger.decided(o);
    options.onPublish?.(p);
  };

  const record = async (p: Publication): Promise<void> => {
    await manifest.append(p.files.map((f) => f.entry));
    for (const f of p.files) {
      stats.publishedFiles++;
      stats.publishedRows[f.entry.kind] += f.entry.rows;
    }
    announce(p);
  };

  const publish = async (group: Pending): Promise<PublishedFile[]> => {
    // rows in offset order (one BigInt per row, not per comparison)
    const decisions = group.decisions
      .map((d) => ({ d, o: BigInt(d.record.origin.offset) }))
      .sort((a, b) => (a.o < b.o ? -1 : a.o > b.o ? 1 : 0))
      .map((x) => x.d);
    const firstOffset = decisions[0].record.origin.offset;
    const lastOffset = decisions[decisions.length - 1].record.origin.offset;
    const mySeq = ++seq;
    const chosen = decisions.filter((d) => d.selected);
    const publishedAt = new Date(now()).toISOString();
    const written: string[] = [];
    const files: PublishedFile[] = [];
    const put = async (kind: FileKind, rows: readonly Decision[]): Promise<void> => {
      const name = fileName({
        kind,
        topic: group.topic,
        partition: group.partition,
        firstOffset,
        lastOffset,
        seq: mySeq,
      });
      const path = join(dir, kind, name);
      const batch = kind === "scored" ? scoredBatch(rows) : selectedBatch(rows);
      const bytes = await writeParquetFile(path, [batch], {
        plainColumns: ["id"],
        rowGroupSize: options.rowGroupSize,
      });
      written.push(path);
      // after the rename nothing may fail (a reader may hold the file): a hash is optional
      const sha256 = hash ? await sha256File(path).catch(() => undefined) : undefined;
      files.push({
        path,
        entry: {
          file: `${kind}/${name}`,
          kind,
          topic: group.topic,
          partition: group.partition,
          firstOffset,
          lastOffset,
          rows: rows.length,
          decided: decisions.length,
          bytes,
          ...(sha256 ? { sha256 } : {}),
          publishedAt,
          seq: mySeq,
        },
      });
    };
    try {
      await put("scored", decisions); // scored first: see the publishing order in sink-manifest.ts
      if (chosen.length > 0) await put("selected", chosen);
    } catch (err) {
      // Nothing of this rotation was recorded: take back what appeared and keep the rows pending.
      // A selected file is the last thing written, so a failure never follows its rename.
      for (const p of written) await rm(p, { force: true }).catch(() => {});
      seq--;
      throw err;
    }
    const decided = decisions.map((d) => d.record.origin);
    const key = partitionKey(group.topic, group.partition);
    let ranges = published.get(key);
    if (!ranges) {
      ranges = new OffsetRanges();
      published.set(key, ranges);
    }
    for (const o of decided) ranges.add(BigInt(o.offset));
    try {
      await record({ files, decided });
    } catch (err) {
      unrecorded = { files, decided };
      throw err;
    }
    return files;
  };

  /** Publishes the given pending groups (removed from `pending` first, restored on failure). */
  const publishGroups = async (groups: Pending[]): Promise<PublishedFile[]> => {
    const out: PublishedFile[] = [];
    if (unrecorded) {
      const u = unrecorded;
      await record(u);
      unrecorded = undefined;
      out.push(...u.files);
    }
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      try {
        out.push(...(await publish(g)));
        stats.pendingRows -= g.decisions.length;
      } catch (err) {
        if (unrecorded === undefined) {
          // put this group and the ones after it back in front of what arrived since
          for (const rest of groups.slice(i)) restore(rest);
        } else {
          stats.pendingRows -= g.decisions.length;
          for (const rest of groups.slice(i + 1)) restore(rest);
        }
        throw err;
      }
    }
    return out;
  };

  const restore = (g: Pending): void => {
    const key = partitionKey(g.topic, g.partition);
    const cur = pending.get(key);
    if (!cur) {
      pending.set(key, g);
      return;
    }
    cur.decisions = [...g.decisions, ...cur.decisions];
    for (const o of g.offsets) cur.offsets.add(o);
    cur.bytes += g.bytes;
    cur.since = Math.min(cur.since, g.since);
  };

  const take = (key: string): Pending | undefined => {
    const g = pending.get(key);
    if (g) pending.delete(key);
    return g;
  };

  const dueByTime = (): Pending[] => {
    const t = now();
    const out: Pending[] = [];
    for (const [key, g] of pending) if (t - g.since >= rotateMs) out.push(take(key) as Pending);
    return out;
  };

  const sink: CurationSink = {
    dir,
    recovery,

    async reconcile(committed) {
      const resume = await reconcile(dir, recovery.entries, committed);
      for (const [key, r] of resume) {
        const ranges = published.get(key) ?? new OffsetRanges();
        for (const [lo, hi] of r.published.ranges) ranges.add(lo, hi);
        published.set(key, ranges);
      }
      return resume;
    },

    write(decisions) {
      if (closed) return Promise.reject(new MmssrError(ERROR_CODES.INTERNAL, "write after close"));
      // Gather synchronously (order of calls = order of rows), publish in the serial chain.
      const ready: Pending[] = [];
      const alreadyOut: Origin[] = [];
      const alien =
        options.modelId === undefined
          ? undefined
          : decisions.find((d) => d.record.modelId !== options.modelId);
      if (alien)
        return Promise.reject(
          new MmssrError(
            ERROR_CODES.INTERNAL,
            `decision scored by ${alien.record.modelId}, sink expects ${options.modelId}`,
          ),
        );
      for (const d of decisions) {
        const origin = d.record.origin;
        const key = partitionKey(origin.topic, origin.partition);
        if (published.get(key)?.has(BigInt(origin.offset))) {
          stats.duplicatesDropped++;
          alreadyOut.push(origin);
          continue;
        }
        let g = pending.get(key);
        if (!g) {
          g = {
            topic: origin.topic,
            partition: origin.partition,
            decisions: [],
            offsets: new Set(),
            bytes: 0,
            since: now(),
          };
          pending.set(key, g);
        }
        if (g.offsets.has(origin.offset)) {
          stats.duplicatesDropped++;
          continue;
        }
        g.offsets.add(origin.offset);
        g.decisions.push(d);
        g.bytes += estimateRowBytes(d, false) + (d.selected ? estimateRowBytes(d, true) : 0);
        stats.pendingRows++;
        if (g.decisions.length >= rotateRows || g.bytes >= rotateBytes) ready.push(take(key) as Pending);
      }
      if (alreadyOut.length > 0) announce({ files: [], decided: alreadyOut });
      return serial(() => publishGroups([...ready, ...dueByTime()]));
    },

    tick() {
      return serial(() => publishGroups(dueByTime()));
    },

    flush(partitions) {
      return serial(() => {
        const keys = partitions ? [...partitions] : [...pending.keys()];
        const groups: Pending[] = [];
        for (const key of keys) {
          const g = take(key);
          if (g) groups.push(g);
        }
        return publishGroups(groups);
      });
    },

    committed(offsets) {
      for (const [key, c] of offsets) published.get(key)?.pruneBelow(BigInt(c));
    },

    revoke(partitions) {
      for (const key of partitions) {
        const g = take(key);
        if (g) stats.pendingRows -= g.decisions.length;
        published.delete(key);
      }
    },

    stats() {
      return { ...stats, publishedRows: { ...stats.publishedRows } };
    },

    async abort() {
      if (closed) return;
      closed = true;
      if (timer) clearInterval(timer);
      pending.clear();
      stats.pendingRows = 0;
      await chain;
      await manifest.close();
    },

    async close() {
      if (closed) return;
      if (timer) clearInterval(timer);
      try {
        await sink.flush();
      } finally {
        closed = true;
        await chain;
        await manifest.close();
      }
    },
  };

  const timer =
    (options.timer ?? true) && Number.isFinite(rotateMs)
      ? setInterval(
          () => {
            sink.tick().catch(() => {
              /* the next write or flush reports the failure; rows stay pending */
            });
          },
          Math.max(10, Math.min(1000, rotateMs / 4)),
        )
      : undefined;
  timer?.unref();

  return sink;
}
