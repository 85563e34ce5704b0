/**
 * The curation sink: decisions in, Parquet files out (layout and names: sink-manifest.ts;
 * columns: decision-rows.ts). It writes files and reports what it published; what may be
 * published, and when it counts as decided, is the partition owner's (the `gate`).
 *
 * Per partition, decisions gather in memory until a rotation trigger fires: `rotateRows` rows,
 * `rotateBytes` estimated uncompressed bytes, or `rotateMs` since the partition's oldest
 * pending row. A rotation writes the scored file (every decision) and the selected file (the
 * selected ones, when any) under DIR/tmp/<instance>/, fsynced; then the gate runs its commit
 * point: rename both into place and append their manifest lines in one fsynced write. Only
 * then is `onPublish` told. A gate that says "given-up" (the partition moved) drops the rows;
 * "retry" keeps them for the next trigger.
 *
 * Publishing is serialised: write, tick and flush may be called without waiting, but callers
 * should await write for backpressure. Memory: at most rotateBytes (estimated) of pending rows
 * per partition.
 */
import { rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { partitionKey } from "../../src/stream/offset-ledger.js";
import type { CurationSink, Publication, PublishGate } from "../../src/stream/ports.js";
import type { Decision } from "../../src/stream/stream-types.js";
import { ioError } from "../../src/util/atomic-file.js";
import { writeParquetFile } from "../parquet/parquet-writer.js";
import { estimateRowBytes, scoredBatch, selectedBatch } from "./decision-rows.js";
import type { SharedOutput } from "./shared-output.js";
import {
  type FileKind,
  fileName,
  type ManifestEntry,
  ManifestWriter,
  sha256File,
  syncDir,
} from "./sink-manifest.js";

export interface CurationSinkOptions {
  /** the output location (DIR/selected, DIR/scored, DIR/manifests/<instance>.jsonl) */
  output: SharedOutput;
  /** runs each rotation's commit point, or refuses it (the partition owner's gate) */
  gate: PublishGate;
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
  /** called after each rotation's manifest lines are durable */
  onPublish?: (p: Publication) => void;
  /** the manifest entries of each publication (files, rows, bytes), for metrics */
  onPublishedFiles?: (entries: readonly ManifestEntry[]) => void;
  /**
   * Awaited inside the commit point, after the files are in place and before the manifest line
   * (the output topic), with the rotation's selected decisions: it gets what is published, at
   * least once (a crash between the two sends it again after the rotation is redone).
   */
  beforeManifest?: (selected: readonly Decision[]) => Promise<void>;
  /** hash published files into the manifest (default true) */
  sha256?: boolean;
  /** Parquet row group size (default: one row group per file up to 131072 rows) */
  rowGroupSize?: number;
}

export interface SinkStats {
  pendingRows: number;
  publishedFiles: number;
  publishedRows: { selected: number; scored: number };
  /** rows dropped because their partition moved before they were published */
  givenUpRows: number;
  /** rotations whose ownership could not be proved at once (tried again) */
  retries: number;
}

export interface FileSink extends CurationSink {
  /** Publishes the partitions whose time trigger fired (the timer calls it). */
  tick(): Promise<void>;
  stats(): SinkStats;
}

interface Pending {
  topic: string;
  partition: number;
  generation: number;
  decisions: Decision[];
  offsets: Set<string>;
  bytes: number;
  since: number;
}

export async function createCurationSink(options: CurationSinkOptions): Promise<FileSink> {
  const { output, gate } = options;
  const dir = output.dir;
  const rotateRows = options.rotateRows ?? 100_000;
  const rotateBytes = options.rotateBytes ?? 256 * 1024 * 1024;
  const rotateMs = options.rotateMs ?? 60_000;
  if (!(rotateRows >= 1) || !(rotateBytes >= 1) || !(rotateMs > 0))
    throw new MmssrError(ERROR_CODES.BAD_OPTIONS, "rotateRows, rotateBytes and rotateMs must be positive");
  const now = options.now ?? Date.now;
  const hash = options.sha256 ?? true;
  const manifest = await ManifestWriter.open(output.manifestPath);
  let seq = 0;

  const pending = new Map<string, Pending>();
  const stats: SinkStats = {
    pendingRows: 0,
    publishedFiles: 0,
    publishedRows: { selected: 0, scored: 0 },
    givenUpRows: 0,
    retries: 0,
  };
  let chain: Promise<unknown> = Promise.resolve();
  let closed = false;
  let aborted = false;

  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  };

  /** One rotation: files in tmp, then the gate; true when it is done with the group (published or given up). */
  const publish = async (group: Pending): Promise<boolean> => {
    // rows in offset order (one BigInt per row, not per comparison)
    const decisions = group.decisions
      .map((d) => ({ d, o: BigInt(d.record.origin.offset) }))
      .sort((a, b) => (a.o < b.o ? -1 : a.o > b.o ? 1 : 0))
      .map((x) => x.d);
    const firstOffset = decisions[0].record.origin.offset;
    const lastOffset = decisions[decisions.length - 1].record.origin.offset;
    const chosen = decisions.filter((d) => d.selected);
    const files: { kind: FileKind; tmp: string; final: string; entry: ManifestEntry }[] = [];
    const mySeq = seq + 1;
    const publishedAt = new Date(now()).toISOString();
    const put = async (kind: FileKind, rows: readonly Decision[]): Promise<void> => {
      const name = fileName({
        kind,
        topic: group.topic,
        partition: group.partition,
        firstOffset,
        lastOffset,
      });
      const tmp = join(output.tmpDir, name);
      const bytes = await writeParquetFile(
        tmp,
        [kind === "scored" ? scoredBatch(rows) : selectedBatch(rows)],
        {
          plainColumns: ["id"],
          rowGroupSize: options.rowGroupSize,
        },
      );
      files.push({ kind, tmp, final: join(dir, kind, name), entry: {} as ManifestEntry });
      const sha256 = hash ? await sha256File(tmp) : undefined;
      files[files.length - 1].entry = {
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
        instance: output.instanceId,
        generation: group.generation,
      };
    };
    const dropTemps = async (): Promise<void> => {
      for (const f of files) await rm(f.tmp, { force: true }).catch(() => {});
    };
    try {
      await put("scored", decisions);
      if (chosen.length > 0) await put("selected", chosen);
    } catch (err) {
      await dropTemps();
      throw err;
    }
    const verdict = await gate(
      { topic: group.topic, partition: group.partition },
      group.generation,
      async () => {
        const renamed: string[] = [];
        try {
          // scored first: a selected row is never visible without its scored row
          for (const f of files) {
            await rename(f.tmp, f.final);
            renamed.push(f.final);
          }
          for (const kind of new Set(files.map((f) => dirname(f.final)))) await syncDir(kind);
          if (chosen.length > 0) await options.beforeManifest?.(chosen);
          await manifest.append(files.map((f) => f.entry));
        } catch (err) {
          // not published (no manifest line): take the files back while the lock is still held
          for (const p of renamed) await rm(p, { force: true }).catch(() => {});
          throw err instanceof MmssrError ? err : ioError(dir, err);
        }
      },
    ).catch(async (err) => {
      await dropTemps();
      throw err;
    });
    if (verdict !== "published") {
      await dropTemps();
      if (verdict === "retry") {
        stats.retries++;
        return false;
      }
      stats.givenUpRows += decisions.length;
      return true;
    }
    seq = mySeq;
    for (const f of files) {
      stats.publishedFiles++;
      stats.publishedRows[f.kind] += f.entry.rows;
    }
    const publication: Publication = {
      topic: group.topic,
      partition: group.partition,
      generation: group.generation,
      offsets: decisions.map((d) => d.record.origin.offset),
      selected: chosen.length,
      files: files.map((f) => f.entry.file),
    };
    options.onPublish?.(publication);
    options.onPublishedFiles?.(files.map((f) => f.entry));
    return true;
  };

  /** Publishes the given groups (removed from `pending` first; put back when not done). */
  const publishGroups = async (groups: Pending[]): Promise<void> => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      let done: boolean;
      try {
        done = await publish(g);
      } catch (err) {
        for (const rest of groups.slice(i)) restore(rest);
        throw err;
      }
      if (aborted) continue; // abort() forgot every pending row already
      if (done) stats.pendingRows -= g.decisions.length;
      else restore(g);
    }
  };

  const restore = (g: Pending): void => {
    const key = partitionKey(g.topic, g.partition);
    const cur = pending.get(key);
    if (!cur) {
      pending.set(key, g);
      return;
    }
    if (cur.generation !== g.generation) {
      // the partition was given up and assigned again meanwhile: the older rows are not ours
      const [older, newer] = cur.generation < g.generation ? [cur, g] : [g, cur];
      stats.pendingRows -= older.decisions.length;
      stats.givenUpRows += older.decisions.length;
      pending.set(key, newer);
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

  const discardKey = (key: string): void => {
    const g = take(key);
    if (!g) return;
    stats.pendingRows -= g.decisions.length;
    stats.givenUpRows += g.decisions.length;
  };

  const sink: FileSink = {
    dir,

    get pendingRows() {
      return stats.pendingRows;
    },

    write(decisions) {
      if (closed) return Promise.reject(new MmssrError(ERROR_CODES.INTERNAL, "write after close"));
      // Gather synchronously (order of calls = order of rows), publish in the serial chain.
      const ready: Pending[] = [];
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
        const generation = d.record.generation ?? 0;
        const key = partitionKey(origin.topic, origin.partition);
        let g = pending.get(key);
        if (g && g.generation !== generation) {
          if (g.generation > generation) continue; // a stale decision: its partition was given up
          discardKey(key);
          g = undefined;
        }
        if (!g) {
          g = {
            topic: origin.topic,
            partition: origin.partition,
            generation,
            decisions: [],
            offsets: new Set(),
            bytes: 0,
            since: now(),
          };
          pending.set(key, g);
        }
        if (g.offsets.has(origin.offset)) continue; // decided twice within one generation: keep the first
        g.offsets.add(origin.offset);
        g.decisions.push(d);
        g.bytes += estimateRowBytes(d, false) + (d.selected ? estimateRowBytes(d, true) : 0);
        stats.pendingRows++;
        if (g.decisions.length >= rotateRows || g.bytes >= rotateBytes) ready.push(take(key) as Pending);
      }
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

    discard(partitions) {
      for (const key of partitions) discardKey(key);
    },

    stats() {
      return { ...stats, publishedRows: { ...stats.publishedRows } };
    },

    async abort() {
      if (closed) return;
      closed = true;
      aborted = true;
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
        await rm(output.tmpDir, { recursive: true, force: true }).catch(() => {});
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
