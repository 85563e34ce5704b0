/**
 * The one owner of offset state (DESIGN.md "Delivery guarantees"). Per partition this instance
 * owns: the generation it was assigned under, what is tracked and undecided (OffsetLedger), what
 * the output location's manifests say is already decided (any instance's), and so what may be
 * committed. Nothing else in the process keeps offsets.
 *
 * Life of a partition here:
 *   assigned (generation g)  -> claim: under the output's partition lock, read every manifest
 *                               and remove files no manifest names; resume past what they
 *                               decided. Records of g flow only after the claim.
 *   record read under g      -> admit: already published? counted decided at once (skipped).
 *                               Else tracked.
 *   decisions of g published -> only through `gate`: the lock, then a commit the broker must
 *                               accept for g (Source.fence), then the commit point (rename +
 *                               manifest line). Then decided, committable.
 *   revoked                  -> everything undecided of g is given up (the sink drops its pending
 *                               rows): the next owner decides it. A decision of an old
 *                               generation is never published nor committed.
 *
 * Why this cannot duplicate across instances: the next owner's claim and this instance's
 * commit point take the same lock; a commit point runs only after the broker accepted a commit
 * of the generation the partition was assigned in, i.e. before any later generation (the one
 * that moved the partition) existed, hence before the next owner could claim. So the next
 * owner either sees the manifest line and skips those offsets, or this instance sees that its
 * generation is over and gives up.
 */
import { OffsetLedger, partitionKey } from "./offset-ledger.js";
import { OffsetRanges } from "./offset-ranges.js";
import type {
  AssignmentChange,
  OutputLocation,
  Publication,
  PublishGate,
  Source,
  TopicPartition,
} from "./ports.js";
import type { Origin } from "./stream-types.js";

export interface PartitionOwnerOptions {
  source: Pick<Source, "fence" | "committedOffsets">;
  output: OutputLocation;
  /** partitions given up: the sink drops what it holds of them */
  onRevoke?: (keys: string[]) => void;
  log?: (line: string) => void;
}

export interface OwnerStats {
  /** records read again whose decision was already published (by anyone): decided at once */
  skippedPublished: number;
  /** undecided records dropped at a revocation: their next owner decides them */
  givenUp: number;
  assignments: number;
  revocations: number;
}

interface Owned {
  tp: TopicPartition;
  generation: number;
  /** the claim is done: records of this generation may be admitted */
  ready: boolean;
  /** offsets at or above the committed one that published files already decided */
  published: OffsetRanges;
  /**
   * Offsets below this are decided: the claim's resume point, raised by every commit. The
   * consumer may still hand out records below it (it re-reads from the offset committed when
   * the generation began), which are skipped.
   */
  floor: bigint;
}

export interface PartitionPosition {
  tp: TopicPartition;
  generation: number;
  ready: boolean;
  /** next offset after the highest read (or the resume offset), when known */
  next?: bigint;
  undecided: number;
}

export class PartitionOwner {
  private readonly owned = new Map<string, Owned>();
  private readonly ledger = new OffsetLedger();
  private readonly log: (line: string) => void;
  readonly stats: OwnerStats = { skippedPublished: 0, givenUp: 0, assignments: 0, revocations: 0 };

  constructor(private readonly options: PartitionOwnerOptions) {
    this.log = options.log ?? (() => {});
  }

  /** The Source's assignment handler: revocations at once, then the claims of what is assigned. */
  readonly handleAssignment = async (change: AssignmentChange): Promise<void> => {
    const revokedKeys = change.revoked.filter((tp) => this.giveUp(tp));
    if (revokedKeys.length > 0) {
      this.stats.revocations++;
      this.log(
        `generation ${change.generation}: gave up ${revokedKeys.map((tp) => `${tp.topic}:${tp.partition}`).join(", ")}`,
      );
    }
    for (const tp of change.assigned) {
      const key = partitionKey(tp.topic, tp.partition);
      // a cooperative client may hand a partition we hold: drop the old generation's state first
      this.giveUp(tp);
      this.owned.set(key, {
        tp,
        generation: change.generation,
        ready: false,
        published: new OffsetRanges(),
        floor: 0n,
      });
    }
    if (change.assigned.length === 0) return;
    this.stats.assignments++;
    await Promise.all(change.assigned.map((tp) => this.claim(tp, change.generation)));
    const ready = change.assigned.filter((tp) =>
      this.isOwned(partitionKey(tp.topic, tp.partition), change.generation),
    );
    if (ready.length > 0)
      this.log(
        `generation ${change.generation}: own ${ready.map((tp) => `${tp.topic}:${tp.partition}`).join(", ")}`,
      );
  };

  /** Drops what this instance holds of `tp` (its undecided records are the next owner's); false when it held nothing. */
  private giveUp(tp: TopicPartition): boolean {
    const key = partitionKey(tp.topic, tp.partition);
    if (!this.owned.has(key)) return false;
    this.stats.givenUp += this.ledger.undecidedOf(key);
    this.ledger.revoke(tp.topic, [tp.partition]);
    this.owned.delete(key);
    this.options.onRevoke?.([key]);
    return true;
  }

  private async claim(tp: TopicPartition, generation: number): Promise<void> {
    const key = partitionKey(tp.topic, tp.partition);
    const committed = (await this.options.source.committedOffsets([tp])).get(key);
    const release = await this.options.output.lock(tp);
    let published: OffsetRanges;
    try {
      published = await this.options.output.claim(
        tp,
        committed === undefined ? undefined : BigInt(committed),
      );
    } finally {
      await release();
    }
    const o = this.owned.get(key);
    if (!o || o.generation !== generation) return; // moved on while claiming
    o.published = published;
    // Resume past what is published right after the committed offset: commits move on at once.
    if (committed !== undefined) {
      o.floor = published.advance(BigInt(committed));
      this.ledger.assign(tp.topic, tp.partition, o.floor.toString());
    }
    o.ready = true;
  }

  private isOwned(key: string, generation: number | undefined): boolean {
    const o = this.owned.get(key);
    return o?.ready === true && o.generation === generation;
  }

  /** Whether a record read under `generation` is still this instance's to decide. */
  isCurrent(origin: Origin, generation: number | undefined): boolean {
    return this.isOwned(partitionKey(origin.topic, origin.partition), generation);
  }

  /**
   * A record entered the graph. "track": undecided until published; "skip": its decision is
   * already published (counted decided now, nothing more to do); "stale": not ours under that
   * generation (drop it: whoever owns the partition reads it).
   */
  admit(origin: Origin, generation: number | undefined): "track" | "skip" | "stale" {
    const o = this.owned.get(partitionKey(origin.topic, origin.partition));
    if (!o?.ready || o.generation !== generation) return "stale";
    this.ledger.track(origin);
    const offset = BigInt(origin.offset);
    if (offset < o.floor || o.published.has(offset)) {
      // decided already: tracked and decided at once, so that the read position (and with it
      // the commit) moves past it
      this.ledger.decided(origin);
      this.stats.skippedPublished++;
      return "skip";
    }
    return "track";
  }

  /** A record's decision is durable elsewhere (the dead-letter topic). False when it is not ours any more. */
  decided(origin: Origin, generation: number | undefined): boolean {
    if (!this.isCurrent(origin, generation)) return false;
    return this.ledger.decided(origin);
  }

  /** The sink's publish gate (see the file comment). */
  readonly gate: PublishGate = async (tp, generation, commitPoint) => {
    const key = partitionKey(tp.topic, tp.partition);
    if (!this.isOwned(key, generation)) return "given-up";
    const release = await this.options.output.lock(tp);
    try {
      if (!this.isOwned(key, generation)) return "given-up";
      const offset = this.ledger.committableOf(key);
      const proved = offset !== undefined && (await this.options.source.fence(tp, offset, generation));
      if (!this.isOwned(key, generation)) return "given-up";
      if (!proved) return "retry";
      await commitPoint();
      return "published";
    } finally {
      await release();
    }
  };

  /** The sink published a rotation: its records are decided (when still ours). */
  published(p: Publication): void {
    const key = partitionKey(p.topic, p.partition);
    if (!this.isOwned(key, p.generation)) return;
    for (const offset of p.offsets) this.ledger.decided({ topic: p.topic, partition: p.partition, offset });
  }

  /** Per owned partition key, the offset that may be committed (next to read). */
  committable(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [key, o] of this.owned) {
      if (!o.ready) continue;
      const c = this.ledger.committableOf(key);
      if (c !== undefined) out.set(key, c);
    }
    return out;
  }

  /** Offsets below these are committed: forget what the manifests said below them. */
  committed(offsets: ReadonlyMap<string, string>): void {
    for (const [key, c] of offsets) {
      const o = this.owned.get(key);
      if (!o) continue;
      const at = BigInt(c);
      if (at > o.floor) o.floor = at;
      o.published.pruneBelow(at);
    }
  }

  /** What this instance holds now, per partition. */
  positions(): PartitionPosition[] {
    return [...this.owned.entries()].map(([key, o]) => ({
      tp: o.tp,
      generation: o.generation,
      ready: o.ready,
      next: this.ledger.nextOffset(key),
      undecided: this.ledger.undecidedOf(key),
    }));
  }

  /** Records tracked and not yet decided, over all owned partitions. */
  get undecidedTotal(): number {
    return this.ledger.undecidedTotal;
  }
}
