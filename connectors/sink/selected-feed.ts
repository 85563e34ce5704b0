/**
 * The trainer's side of the output: the selected shards of a curate output folder as a feed
 * that follows new publications, resumes from a saved position without repeats or gaps, and
 * splits across data-parallel ranks. The same contract as the Python reader
 * (clients/python/README.md, "The feed contract"); in short:
 *
 * - Shards: the `selected` entries of complete manifest lines (DIR/manifests/*.jsonl and the
 *   legacy DIR/manifest.jsonl, instance ""); a file is sealed and never changes once named.
 * - Order: per manifest, line order (seq grows); manifests merge by the (publishedAt, instance,
 *   seq) of their next line; lines seen by a later poll follow everything before them; a
 *   resumed feed starts with the shard its position stopped in.
 * - Ranks: a shard belongs to rank fnv1a32(utf-8 of entry.file) % worldSize, so ranks never
 *   read the same file and together read every one.
 * - Position: { v: 1, rank, world_size, done: { instance: highest seq finished or passed },
 *   shard: file in progress or null, row: rows of it already yielded }.
 */
import { join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import { openParquet, parquetBatches, toPlain } from "../parquet/parquet-batches.js";
import { ManifestIndex } from "./shared-output.js";
import type { ManifestEntry } from "./sink-manifest.js";

export interface FeedPosition {
  v: 1;
  rank: number;
  world_size: number;
  done: Record<string, number>;
  shard: string | null;
  row: number;
}

export interface SelectedFeedOptions {
  rank?: number;
  worldSize?: number;
  /** a position() token of an earlier feed with the same rank and world size */
  start?: FeedPosition;
  /** how often a following feed looks for new manifest lines (default 1,000 ms) */
  pollMs?: number;
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text` (the rank of a shard; same in Python). */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, "utf8")) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

const keyOf = (e: ManifestEntry): [number, string, number] => [
  Date.parse(e.publishedAt),
  e.instance ?? "",
  e.seq,
];
const before = (a: ManifestEntry, b: ManifestEntry): boolean => {
  const [ta, ia, sa] = keyOf(a);
  const [tb, ib, sb] = keyOf(b);
  return ta !== tb ? ta < tb : ia !== ib ? ia < ib : sa < sb;
};

/**
 * Entries in feed order: each manifest keeps its line order (a writer whose clock stepped back
 * still publishes in seq order), and manifests merge by the (publishedAt, instance, seq) of
 * their next entry.
 */
export function feedOrder(entries: readonly ManifestEntry[]): ManifestEntry[] {
  const lanes = new Map<string, ManifestEntry[]>();
  for (const e of entries) {
    const lane = lanes.get(e.instance ?? "") ?? [];
    lane.push(e);
    lanes.set(e.instance ?? "", lane);
  }
  const heads = [...lanes.values()].map((lane) => ({ lane, at: 0 }));
  const out: ManifestEntry[] = [];
  for (;;) {
    let best: (typeof heads)[number] | undefined;
    for (const h of heads)
      if (h.at < h.lane.length && (!best || before(h.lane[h.at], best.lane[best.at]))) best = h;
    if (!best) return out;
    out.push(best.lane[best.at++]);
  }
}

export class SelectedFeed {
  readonly rank: number;
  readonly worldSize: number;
  private readonly index: ManifestIndex;
  private readonly pollMs: number;
  private readonly done: Record<string, number>;
  private shard: string | null;
  private row: number;

  constructor(
    readonly outDir: string,
    options: SelectedFeedOptions = {},
  ) {
    this.rank = options.rank ?? 0;
    this.worldSize = options.worldSize ?? 1;
    if (!Number.isSafeInteger(this.worldSize) || this.worldSize < 1)
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `world size: expected a whole number >= 1, got ${this.worldSize}`,
      );
    if (!Number.isSafeInteger(this.rank) || this.rank < 0 || this.rank >= this.worldSize)
      throw new MmssrError(ERROR_CODES.USAGE, `rank: expected 0..${this.worldSize - 1}, got ${this.rank}`);
    const start = options.start;
    if (start !== undefined) {
      if (start.v !== 1 || typeof start.done !== "object" || start.done === null)
        throw new MmssrError(ERROR_CODES.USAGE, "position: not a feed position token (v 1)");
      if (start.rank !== this.rank || start.world_size !== this.worldSize)
        throw new MmssrError(
          ERROR_CODES.USAGE,
          `position: taken by rank ${start.rank} of ${start.world_size}, not rank ${this.rank} of ${this.worldSize}`,
        );
    }
    this.done = { ...(start?.done ?? {}) };
    this.shard = start?.shard ?? null;
    this.row = start?.row ?? 0;
    this.pollMs = options.pollMs ?? 1_000;
    this.index = new ManifestIndex(outDir);
  }

  /** Where this feed stands: after the last row (or shard) it handed out. JSON-serializable. */
  position(): FeedPosition {
    return {
      v: 1,
      rank: this.rank,
      world_size: this.worldSize,
      done: { ...this.done },
      shard: this.shard,
      row: this.row,
    };
  }

  /** Is this shard this rank's? */
  owns(entry: ManifestEntry): boolean {
    return fnv1a32(entry.file) % this.worldSize === this.rank;
  }

  /**
   * This rank's shards not yet finished, in feed order; with `follow`, waits for new ones
   * until `signal` aborts. A shard handed out stays "in progress" until the next one is asked
   * for (or `finish` is called), so a position taken meanwhile resumes at its start.
   */
  async *shards(options: { follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<ManifestEntry> {
    let first = true;
    for (;;) {
      let fresh = feedOrder((await this.index.refresh()).filter((e) => e.kind === "selected"));
      if (first && this.shard !== null) {
        // the shard a position stopped in comes first, whatever was published around it since
        const k = fresh.findIndex((e) => e.file === this.shard);
        if (k < 0)
          throw new MmssrError(
            ERROR_CODES.USAGE,
            `position: shard ${this.shard} is not published in ${this.outDir} (another output folder?)`,
          );
        fresh = [fresh[k], ...fresh.slice(0, k), ...fresh.slice(k + 1)];
      }
      first = false;
      for (const entry of fresh) {
        const instance = entry.instance ?? "";
        if (entry.seq <= (this.done[instance] ?? -1)) continue;
        if (!this.owns(entry)) {
          this.pass(entry);
          continue;
        }
        if (this.shard !== entry.file) {
          this.shard = entry.file;
          this.row = 0;
        }
        yield entry;
        this.pass(entry);
      }
      if (!options.follow || options.signal?.aborted) return;
      await sleep(this.pollMs, options.signal);
      if (options.signal?.aborted) return;
    }
  }

  /** The selected rows of this rank, as plain objects (the columns of the selected files). */
  async *rows(
    options: { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<Record<string, unknown>> {
    for await (const entry of this.shards(options)) {
      const skip = this.row;
      const path = join(this.outDir, entry.file);
      const { file } = await openParquet(path);
      let seen = 0;
      try {
        for await (const batch of parquetBatches(file, 1024)) {
          const names = batch.schema.fields.map((f) => f.name);
          for (let i = 0; i < batch.numRows; i++, seen++) {
            if (seen < skip) continue;
            const row: Record<string, unknown> = {};
            for (let c = 0; c < names.length; c++) {
              const v = batch.getChildAt(c)?.get(i);
              // image bytes stay bytes (toPlain would make a list of numbers of them)
              row[names[c]] = v instanceof Uint8Array ? v : toPlain(v);
            }
            this.row = seen + 1;
            yield row;
          }
        }
      } finally {
        file.free();
      }
      if (seen !== entry.rows)
        throw new MmssrError(
          ERROR_CODES.BAD_ROW,
          `${path}: ${seen} rows, but its manifest line says ${entry.rows}: the shard is not the one published`,
        );
    }
  }

  /** Marks a shard handed out by `shards()` as done: a position taken now resumes after it. */
  finish(entry: ManifestEntry): void {
    this.pass(entry);
  }

  private pass(entry: ManifestEntry): void {
    const instance = entry.instance ?? "";
    this.done[instance] = Math.max(this.done[instance] ?? -1, entry.seq);
    if (this.shard === entry.file) {
      this.shard = null;
      this.row = 0;
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
