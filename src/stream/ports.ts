/**
 * The curation graph's ports: what it needs from the outside world, as interfaces that
 * connectors/ implements (Kafka, files, the Parquet sink). The graph and the partition owner
 * know only these, so the Kafka client behind a Source can change without touching them.
 */
import type { Observable } from "rxjs";
import type { SelectionPolicy } from "../selection/selection-policy.js";
import type { OffsetRanges } from "./offset-ranges.js";
import type { DeadLetter, Decision, RawRecord } from "./stream-types.js";

export interface TopicPartition {
  topic: string;
  partition: number;
}

/**
 * A change of what this instance owns. `generation` grows by one at every change; every record
 * handed out after it carries it. `revoked` partitions are no longer this instance's (their
 * undecided records are given up: the next owner decides them); `assigned` ones are owned from
 * now on, under this generation. A client with the eager protocol (kafkajs) revokes everything
 * at every rebalance and re-reads kept partitions from the committed offset; a cooperative one
 * revokes only what moves.
 */
export interface AssignmentChange {
  generation: number;
  assigned: TopicPartition[];
  revoked: TopicPartition[];
}

/**
 * Called on every assignment change, synchronously, before any record of the new generation is
 * handed out; the source waits for the returned promise before it hands out records of
 * `assigned` partitions (the new owner first learns what is already decided). A rejection
 * stops the source with that error.
 */
export type AssignmentHandler = (change: AssignmentChange) => Promise<void>;

/**
 * Where records come from. Processing, offset bookkeeping and committing are separate parts
 * (as in kafkajs): the source only reads and, when told, commits; the partition owner decides
 * what may be committed.
 */
export interface Source {
  /** every record read, in partition order, each with the generation it was read under */
  readonly records$: Observable<RawRecord>;
  /** Sets the one assignment handler (the partition owner); call before subscribing to records$. */
  onAssignment(handler: AssignmentHandler): void;
  /** commits "next offset to read" per "topic:partition" */
  commit(offsets: ReadonlyMap<string, string>): Promise<void>;
  /**
   * Proves that this instance still owns `partition` under `generation`, by a commit of
   * `offset` that the broker accepts for the group generation the partition was assigned in.
   * True only then; false when the generation is over, the commit failed or was skipped. The
   * publish that follows a true answer, done before the next owner's claim (the output
   * location's partition lock orders the two), can never duplicate the next owner's work.
   */
  fence(tp: TopicPartition, offset: string, generation: number): Promise<boolean>;
  /** the group's committed offsets (next to read) per "topic:partition"; absent = none */
  committedOffsets(partitions?: readonly TopicPartition[]): Promise<Map<string, string>>;
  /** the end offset (high watermark) of every partition of the source, or undefined when it has none (a file) */
  endOffsets(): Promise<Map<string, string> | undefined>;
  /** stop fetching (backpressure) / fetch again */
  pause(): void;
  resume(): void;
  /**
   * Stops handing out records and completes records$, but stays connected so that the graph
   * can drain and commit; records fetched after this are not handed out (read again next run).
   */
  end(): void;
  /** disconnects (after end) */
  stop(): Promise<void>;
  /** when the source could first deliver (Kafka: joined its group), or undefined before; idle clocks start here */
  readonly readyAt: number | undefined;
}

/** Where undecidable records go (the dead-letter topic or file), with their reasons. */
export interface DeadLetterSink {
  /** durable once resolved: the records count as decided then */
  send(letters: readonly DeadLetter[]): Promise<void>;
  close(): Promise<void>;
}

/** The optional output topic: selected decisions, after the sink published them. */
export interface DecisionOutput {
  send(decisions: readonly Decision[]): Promise<void>;
  close(): Promise<void>;
}

/** What one publication made durable: the origins it decided, per partition. */
export interface Publication {
  topic: string;
  partition: number;
  generation: number;
  /** offsets of the rotation (every decided record, selected or not), ascending */
  offsets: readonly string[];
  selected: number;
  files: readonly string[];
}

/**
 * Holds the commit point of a publication: `commitPoint` (rename into place + manifest line)
 * runs only when the partition is still this instance's under `generation`, with the output
 * location's partition lock held. "published" after it ran; "given-up" when it did not (the
 * rows are dropped: the next owner decides them); "retry" when ownership could not be proved
 * now but is not known lost (a broker error): keep the rows and try again later.
 */
export type PublishGate = (
  tp: TopicPartition,
  generation: number,
  commitPoint: () => Promise<void>,
) => Promise<"published" | "given-up" | "retry">;

/** The sink: decisions in, files out. It knows nothing of offsets beyond its rows' origins. */
export interface CurationSink {
  readonly dir: string;
  /** Adds decisions; publishes the partitions whose rows/bytes/time trigger fired. */
  write(decisions: readonly Decision[]): Promise<void>;
  /** Publishes everything pending (or only the given partition keys). */
  flush(partitions?: Iterable<string>): Promise<void>;
  /** Drops what is pending for these partitions (given up: their next owner decides them). */
  discard(partitions: Iterable<string>): void;
  /** rows waiting for a rotation */
  readonly pendingRows: number;
  /** Flushes, stops the timer, closes the manifest. */
  close(): Promise<void>;
  /** Stops without publishing what is pending (as a crash would: those records are re-read). */
  abort(): Promise<void>;
}

/**
 * The output location as the partition owner sees it: a lock per partition shared by every
 * instance writing there, and the offsets its published manifests (every instance's) decided.
 */
export interface OutputLocation {
  /** Waits for the partition's lock (shared by all instances); resolves to its release. */
  lock(tp: TopicPartition): Promise<() => Promise<void>>;
  /**
   * With the lock held: the offsets of `tp` that published files (any instance's) decided, at
   * or above `from`; removes files of `tp` that no manifest names (left by a crash between
   * rename and manifest line: never published).
   */
  claim(tp: TopicPartition, from?: bigint): Promise<OffsetRanges>;
}

/** Where a policy change came from, as the change log says it. */
export interface PolicyOrigin {
  /** flags: a curator's command line (the group had no policy yet); api: PATCH/PUT /v1/policy; cli: `mmssr policy set`; file: a policy file edited by hand */
  via: "flags" | "api" | "cli" | "file";
  /** the host it came from (the API: the client's address) */
  host: string;
  /** the curator instance that wrote it, when one did */
  instance?: string;
}

/**
 * One entry of a group's policy channel, which is also its change log: the policy in force from
 * now on (its version assigned by the store), when, from where, and the policy it replaced.
 */
export interface PolicyRecord {
  policy: SelectionPolicy;
  /** ISO 8601 time of the change */
  at: string;
  from: PolicyOrigin;
  /** the policy in force before, as its writer saw it (absent for a group's first) */
  previous?: SelectionPolicy;
}

/**
 * The single source of truth of a group's selection policy (DESIGN.md "Budgets and control"): the
 * compacted control topic (key = group id) or, for a file source, a policy file. Every instance
 * of a group follows it, so a fleet changes together, and a restart starts from its latest.
 */
export interface PolicyStore {
  /** what it is, for messages ("control topic T, key G" / a file path) */
  readonly where: string;
  /** Reads to the end: the group's latest policy, or undefined when it has none. Call once, first. */
  latest(): Promise<PolicyRecord | undefined>;
  /** every record written after latest() returned, in the store's order (this instance's too) */
  readonly changes$: Observable<PolicyRecord>;
  /**
   * Writes `policy` as the group's policy (its version is ignored: the store assigns one that is
   * above every earlier one) and resolves to the record as stored.
   */
  write(policy: SelectionPolicy, from: PolicyOrigin, previous?: SelectionPolicy): Promise<PolicyRecord>;
  close(): Promise<void>;
}
