/**
 * Offset bookkeeping, apart from processing and from committing (the kafkajs split). The data
 * structure of the partition owner (partition-owner.ts), which alone uses it: the owner tells
 * the ledger when a record enters (`track`) and when its decision is published
 * (`decided`, after the sink's files and manifest line are durable); the committer asks
 * `committable()` and commits what it returns. The ledger never talks to Kafka.
 *
 * Kafka semantics: the offset committed for a partition is the next one to read, so the ledger
 * reports the lowest tracked offset still undecided, or the last tracked offset + 1 when every
 * tracked offset is decided. Decisions may come in any order (windows and reservoirs hold some
 * records back); offsets need not be contiguous (compacted topics, transaction markers).
 *
 * Per partition: a binary min-heap of undecided offsets (bigint: Kafka offsets are int64) with
 * lazy deletion, and a set of the undecided ones. track is O(log n), decided amortized O(log n)
 * (the heap is rebuilt when stale entries pass 3/4 of it), committable amortized O(log n) per
 * partition (every heap entry is popped at most once).
 */
import type { Origin } from "./stream-types.js";

/** "topic:partition" (Kafka topic names cannot contain ':'). */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

/** The topic and partition of a partitionKey. */
export function parsePartitionKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf(":");
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

/** An int64 offset from its decimal string; throws on anything else. */
export function parseOffset(offset: string): bigint {
  if (!/^-?\d+$/.test(offset))
    throw new RangeError(`offset must be a decimal integer, got ${JSON.stringify(offset)}`);
  return BigInt(offset);
}

class MinHeap {
  private items: bigint[] = [];
  /** Replaces the content by `values` (heapified in O(n)). */
  rebuild(values: Iterable<bigint>): void {
    const a = [...values].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    this.items = a;
  }
  get size(): number {
    return this.items.length;
  }
  peek(): bigint | undefined {
    return this.items[0];
  }
  push(v: bigint): void {
    const a = this.items;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= v) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = v;
  }
  pop(): bigint | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && a[r] < a[l] ? r : l;
      if (a[c] >= last) break;
      a[i] = a[c];
      i = c;
    }
    a[i] = last;
    return top;
  }
}

class PartitionBook {
  readonly heap = new MinHeap();
  /** undecided offsets */
  readonly undecided = new Set<bigint>();
  /** highest offset tracked (or assigned start - 1) */
  maxSeen: bigint | undefined;

  lowestUndecided(): bigint | undefined {
    for (;;) {
      const top = this.heap.peek();
      if (top === undefined) return undefined;
      if (this.undecided.has(top)) return top;
      this.heap.pop();
    }
  }
}

export class OffsetLedger {
  private readonly books = new Map<string, PartitionBook>();

  private book(topic: string, partition: number): PartitionBook {
    const key = partitionKey(topic, partition);
    let b = this.books.get(key);
    if (!b) {
      b = new PartitionBook();
      this.books.set(key, b);
    }
    return b;
  }

  /**
   * Declares where reading of a partition starts (after a claim: the resume offset), so that
   * committable() reports it even before a record arrives. Offsets below it are taken as
   * decided.
   */
  assign(topic: string, partition: number, nextOffset: string): void {
    const b = this.book(topic, partition);
    const start = parseOffset(nextOffset);
    if (b.maxSeen === undefined || b.maxSeen < start - 1n) b.maxSeen = start - 1n;
  }

  /** A record entered the graph: it is undecided until `decided`. Tracking it twice is a no-op. */
  track(origin: Origin): void {
    const b = this.book(origin.topic, origin.partition);
    const o = parseOffset(origin.offset);
    if (!b.undecided.has(o)) {
      b.undecided.add(o);
      b.heap.push(o);
    }
    if (b.maxSeen === undefined || o > b.maxSeen) b.maxSeen = o;
  }

  /**
   * The record's decision is published. Returns false (and changes nothing) when the offset is
   * not undecided here: never tracked, already decided, or its partition was revoked.
   */
  decided(origin: Origin): boolean {
    const b = this.books.get(partitionKey(origin.topic, origin.partition));
    if (!b) return false;
    if (!b.undecided.delete(parseOffset(origin.offset))) return false;
    // Decided entries leave the heap lazily, from the top; when a low offset stays undecided
    // long (a reservoir), the ones above it would pile up: rebuild once they are most of it.
    if (b.heap.size > 1024 && b.heap.size > 4 * b.undecided.size) b.heap.rebuild(b.undecided);
    return true;
  }

  /** Partitions taken away by a rebalance: their bookkeeping is dropped (nothing of them is committed). */
  revoke(topic: string, partitions: readonly number[]): void {
    for (const p of partitions) this.books.delete(partitionKey(topic, p));
  }

  /** committable() of one partition key (undefined when nothing is tracked or assigned there). */
  committableOf(key: string): string | undefined {
    const b = this.books.get(key);
    if (!b) return undefined;
    const low = b.lowestUndecided();
    if (low !== undefined) return low.toString();
    return b.maxSeen === undefined ? undefined : (b.maxSeen + 1n).toString();
  }

  /** The next offset after the highest tracked (or assigned start) of a partition key. */
  nextOffset(key: string): bigint | undefined {
    const m = this.books.get(key)?.maxSeen;
    return m === undefined ? undefined : m + 1n;
  }

  /** Records of one partition key tracked and not yet decided. */
  undecidedOf(key: string): number {
    return this.books.get(key)?.undecided.size ?? 0;
  }

  /**
   * Per partition key, the offset to commit (next to read): the lowest undecided offset, or
   * the highest tracked + 1 when none is undecided. Partitions with nothing tracked or assigned
   * are absent.
   */
  committable(): Map<string, string> {
    const out = new Map<string, string>();
    for (const key of this.books.keys()) {
      const c = this.committableOf(key);
      if (c !== undefined) out.set(key, c);
    }
    return out;
  }

  /** How many records of each partition are tracked and not yet decided. */
  undecidedCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [key, b] of this.books) out.set(key, b.undecided.size);
    return out;
  }

  /** Records tracked and not yet decided, over all partitions. */
  get undecidedTotal(): number {
    let n = 0;
    for (const b of this.books.values()) n += b.undecided.size;
    return n;
  }
}
