/**
 * Which message first carried a sample id, for the last `capacity` ids this curator decided
 * (DESIGN.md: a stream decides a repeated id once). A later message with an id already seen
 * is dead-lettered as `duplicate-id` naming the first one's origin; the same message read
 * again (a replay after a rebalance or a restart) is not a duplicate, since it has the same
 * origin. Memory is bounded: the oldest ids are forgotten first (about 100 bytes an id).
 */
export class RecentIds {
  private readonly firstOrigin = new Map<string, string>();
  /**
   * The ids in the order they were recorded, as a ring: the oldest is evicted by position.
   * (Taking the Map's first key instead costs a walk over every slot deleted before it until
   * V8 compacts the table: at capacity, each record paid for all earlier evictions, measured
   * at ~80 µs a record once 200,000 ids were held.)
   */
  private readonly ring: (string | undefined)[];
  private next = 0;

  constructor(readonly capacity: number = 200_000) {
    if (!(Number.isSafeInteger(capacity) && capacity >= 0))
      throw new RangeError(`capacity: must be a whole number >= 0, got ${capacity}`);
    this.ring = new Array(capacity);
  }

  /** The origin that first carried `id` when it is not `origin`; else records `id` and returns undefined. */
  repeatOf(id: string, origin: string): string | undefined {
    const first = this.firstOrigin.get(id);
    if (first !== undefined) return first === origin ? undefined : first;
    if (this.capacity === 0) return undefined;
    const oldest = this.ring[this.next];
    if (oldest !== undefined) this.firstOrigin.delete(oldest);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.capacity;
    this.firstOrigin.set(id, origin);
    return undefined;
  }

  get size(): number {
    return this.firstOrigin.size;
  }
}
