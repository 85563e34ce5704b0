import {
  bufferTime,
  concatMap,
  filter,
  lastValueFrom,
  map,
  merge,
  type OperatorFunction,
  share,
  tap,
} from "rxjs";
import type { DeadLetterSink } from "../../connectors/kafka/dead-letter-topic.js";
import type { Source } from "../../connectors/kafka/kafka-source.js";
import type { CurationSink } from "../../connectors/sink/curation-sink.js";
import type { Scorer } from "../scoring/scoring-types.js";
import type { CurationMetrics } from "./curation-metrics.js";
import type { OffsetLedger } from "./offset-ledger.js";
import { partitionKey } from "./offset-ledger.js";
import { scoreWindows } from "./operators/score-windows.js";
import { windowByCountOrTime } from "./operators/window-by-count-or-time.js";
import { writeDecisions } from "./operators/write-decisions.js";
import { type ParsedRecord, type ParseRecordOptions, parseRawRecord } from "./parse-record.js";
import type { DeadLetter, Decision, SampleRecord, ScoredRecord } from "./stream-types.js";

/**
 * The curation graph of DESIGN.md as one RxJS pipeline:
 *
 *   source -> track in the ledger -> parse + validate --bad--> dead letters (acknowledged, then decided)
 *                                        |
 *                                  window (count or time) -> score (worker pool) -> select -> sink
 *
 * The sink tells the ledger which origins its published files decided; a timer commits the
 * ledger's low watermark (never past an undecided offset), so a crash anywhere re-reads only
 * undecided records, and the sink's offset ranges drop what was already published.
 */
export interface CurationGraphOptions {
  source: Source;
  scorer: Scorer;
  sink: CurationSink;
  ledger: OffsetLedger;
  deadLetters: DeadLetterSink;
  /** counters and gauges for dashboards (optional) */
  metrics?: CurationMetrics;
  /** optional: selected decisions also go here (the output topic), after the sink took them */
  output?: { send(decisions: readonly Decision[]): Promise<void> };
  /** window of scored records -> one decision per record (window mode: the offline selector) */
  select: OperatorFunction<ScoredRecord[], Decision[]>;
  windowSize: number;
  windowMs: number;
  parse?: ParseRecordOptions;
  /** pause the source above this many undecided records, resume below half (default 50,000) */
  maxInFlight?: number;
  /** commit the low watermark this often (default 2 s) */
  commitIntervalMs?: number;
  /** end (drain, publish, commit) once no record has arrived for this long */
  idleMs?: number;
  log?: (line: string) => void;
}

export interface CurationStats {
  read: number;
  deadLettered: number;
  scored: number;
  selected: number;
  windows: number;
  commits: number;
  droppedRevoked: number;
}

export async function runCurationGraph(options: CurationGraphOptions): Promise<CurationStats> {
  const { source, scorer, sink, ledger, deadLetters, select } = options;
  const log = options.log ?? (() => {});
  const maxInFlight = options.maxInFlight ?? 50_000;
  const m = options.metrics;
  const stats: CurationStats = {
    read: 0,
    deadLettered: 0,
    scored: 0,
    selected: 0,
    windows: 0,
    commits: 0,
    droppedRevoked: 0,
  };
  const revoked = new Set<string>();
  let lastArrival = Date.now();
  let paused = false;
  let lastCommitted = "";

  const commit = async (): Promise<void> => {
    const offsets = ledger.committable();
    const text = JSON.stringify([...offsets]);
    if (offsets.size === 0 || text === lastCommitted) return;
    await source.commit(offsets);
    sink.committed(offsets);
    lastCommitted = text;
    stats.commits++;
    m?.commits.inc();
  };
  let committing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    committing = committing
      .then(commit)
      .catch((err) => log(`commit failed (will retry): ${(err as Error).message}`));
    const inFlight = ledger.undecidedTotal;
    m?.undecided.set(inFlight);
    m?.paused.set(paused ? 1 : 0);
    if (!paused && inFlight > maxInFlight) {
      paused = true;
      source.pause();
      log(`paused: ${inFlight} records undecided`);
    } else if (paused && inFlight < maxInFlight / 2) {
      paused = false;
      source.resume();
    }
    // While paused for backpressure nothing arrives by our own choice: that is not idleness.
    if (paused) lastArrival = Date.now();
    // The idle clock starts once the source can deliver (a consumer joining its group takes seconds).
    const ready = source.readyAt;
    if (
      options.idleMs !== undefined &&
      ready !== undefined &&
      Date.now() - Math.max(lastArrival, ready) > options.idleMs
    )
      source.end();
  }, options.commitIntervalMs ?? 2_000);
  const revokedSub = source.revoked$.subscribe((parts) => {
    const keys = parts.map((p) => partitionKey(p.topic, p.partition));
    for (const k of keys) revoked.add(k);
    for (const p of parts) ledger.revoke(p.topic, [p.partition]);
    sink.revoke(keys);
    log(`partitions revoked: ${keys.join(", ")}`);
  });

  const parsed$ = source.records$.pipe(
    tap((raw) => {
      ledger.track(raw.origin);
      stats.read++;
      m?.read.inc();
      lastArrival = Date.now();
    }),
    map((raw): ParsedRecord => parseRawRecord(raw, options.parse)),
    share(),
  );

  const dead$ = parsed$.pipe(
    filter((p): p is { ok: false; deadLetter: DeadLetter } => !p.ok),
    map((p) => p.deadLetter),
    bufferTime(250, null, 500),
    filter((letters) => letters.length > 0),
    concatMap(async (letters) => {
      await deadLetters.send(letters);
      for (const l of letters) {
        ledger.decided(l.origin);
        m?.deadLettered.inc({ code: l.code });
      }
      stats.deadLettered += letters.length;
    }),
  );

  const decided$ = parsed$.pipe(
    filter((p): p is { ok: true; record: SampleRecord } => p.ok),
    map((p) => p.record),
    windowByCountOrTime<SampleRecord>(options.windowSize, options.windowMs),
    scoreWindows(scorer, (window) => {
      stats.scored += window.length;
      stats.windows++;
      m?.scored.inc(window.length);
      m?.windows.inc();
    }),
    select,
    writeDecisions({
      sink,
      output: options.output,
      isRevoked: (d) => revoked.has(partitionKey(d.record.origin.topic, d.record.origin.partition)),
      onWritten: (kept, dropped) => {
        stats.droppedRevoked += dropped;
        stats.selected += kept.filter((d) => d.selected).length;
        if (!m) return;
        const now = Date.now();
        for (const d of kept) {
          if (d.selected) m.selected.inc({ capability: d.pickedBy ?? "unknown" });
          m.decisionLatency.observe(Math.max(0, now - d.record.timestamp) / 1000);
        }
      },
    }),
  );

  const stop = (): void => source.end();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  try {
    await lastValueFrom(merge(dead$, decided$), { defaultValue: undefined });
    await sink.flush();
    await committing;
    await commit();
  } finally {
    clearInterval(timer);
    revokedSub.unsubscribe();
    process.removeListener("SIGTERM", stop);
    process.removeListener("SIGINT", stop);
  }
  return stats;
}
