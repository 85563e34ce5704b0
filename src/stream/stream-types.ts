/**
 * Records that flow through the curation graph (issue 4). Every record carries its origin, so
 * that offsets can be committed only below the lowest one still undecided, and every output
 * row can say where it came from.
 */
import type { Sample } from "../domain/sample.js";
import type { SampleScore } from "../scoring/scoring-types.js";
import type { DecisionReason } from "../selection/decision-reason.js";

/** Where a record was read: a Kafka topic-partition-offset, or a file and its line/row. */
export interface Origin {
  topic: string;
  partition: number;
  /** Kafka offsets are int64: kept as a decimal string to stay exact; files use the 0-based record number */
  offset: string;
}

/** A message as the source hands it over: raw bytes plus where they came from. */
export interface RawRecord {
  origin: Origin;
  key: string | null;
  value: Uint8Array | null;
  /** ms since epoch when the broker (or the file source) produced it */
  timestamp: number;
  /**
   * ms since epoch when this process received it (the fetch that brought it): the decision
   * latency of a backfill counts from here, its produce timestamp may be hours old
   */
  receivedAt?: number;
  /** the source's assignment generation it was read under (ports.ts AssignmentChange) */
  generation?: number;
}

/** A validated sample with its origin. */
export interface SampleRecord {
  origin: Origin;
  sample: Sample;
  timestamp: number;
  /** when this process received it (RawRecord.receivedAt) */
  receivedAt?: number;
  /** the generation it was read under: a decision of an old one is never published */
  generation?: number;
}

/** A record that cannot be curated: goes to the dead-letter topic/file with its reason; it counts as decided. */
export interface DeadLetter {
  origin: Origin;
  key: string | null;
  value: Uint8Array | null;
  /** stable code, e.g. "invalid-json", "invalid-sample", "too-large" */
  code: string;
  reason: string;
  generation?: number;
}

export interface ScoredRecord extends SampleRecord {
  score: SampleScore;
  modelId: string;
}

/** The selector's verdict on one scored record. */
export interface Decision {
  record: ScoredRecord;
  selected: boolean;
  /** capability id and bucket ("style+image_source") that picked it, when selected */
  pickedBy?: string;
  bucket?: string;
  /** the window (window mode) or decision batch (continuous mode) it was decided in */
  windowId: string;
  /** version of the selection policy it was decided under, where the operator has one */
  policyVersion?: number;
  /** why it was not selected (absent when selected) */
  reason?: DecisionReason;
  decidedAt: number;
}
