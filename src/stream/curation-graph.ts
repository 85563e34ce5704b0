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
import { IMAGE_FAILURE_FLAGS } from "../scoring/image-source.js";
import type { Scorer } from "../scoring/scoring-types.js";
import { type CurationMetrics, countDecisions } from "./curation-metrics.js";
import { groupLag } from "./group-lag.js";
import { scoreWindows } from "./operators/score-windows.js";
import { windowByCountOrTime } from "./operators/window-by-count-or-time.js";
import { writeDecisions } from "./operators/write-decisions.js";
import {
  DEAD_LETTER_CODES,
  deadLetterOf,
  type ParsedRecord,
  type ParseRecordOptions,
  parseRawRecord,
} from "./parse-record.js";
import type { PartitionOwner } from "./partition-owner.js";
import type { CurationSink, DeadLetterSink, Source } from "./ports.js";
import { RecentIds } from "./recent-ids.js";
import type { DeadLetter, Decision, SampleRecord, ScoredRecord } from "./stream-types.js";

/**
 * The curation graph of DESIGN.md as one RxJS pipeline:
 *
 *   source -> admit (partition owner) -> parse + validate --bad--> dead letters (acknowledged, then decided)
 *                                            |
 *                                      window (count or time) -> score (worker pool) -> select -> sink
 *
 * The partition owner alone keeps offsets: it admits each record under the generation it was
 * read in (skipping what published files already decided), holds the sink's commit points, and
 * says what may be committed; a timer commits that. Records and decisions of a generation that
 * is over are dropped wherever they are (their partition's owner decides them).
 */
export interface CurationGraphOptions {
  source: Source;
  scorer: Scorer;
  sink: CurationSink;
  owner: PartitionOwner;
  deadLetters: DeadLetterSink;
  /** counters and gauges for dashboards (optional) */
  metrics?: CurationMetrics;
  /** window of scored records -> one decision per record (window mode: the offline selector) */
  select: OperatorFunction<ScoredRecord[], Decision[]>;
  windowSize: number;
  windowMs: number;
  parse?: ParseRecordOptions;
  /**
   * pause the source above this many undecided records (read, not yet published), resume below
   * half (default 200,000 or 5 windows, whichever is more: records wait for scoring, selection
   * and their rotation, so a limit near one window kept the workers idle between pauses)
   */
  maxInFlight?: number;
  /** ... or above this many bytes of them (message sizes averaged over the run; default 512 MiB) */
  maxInFlightBytes?: number;
  /** commit what may be committed this often (default 2 s) */
  commitIntervalMs?: number;
  /**
   * End (drain, publish, commit) once nothing arrived for this long and the group is caught up:
   * every partition of the source committed to its end, or owned here and read to its end.
   */
  idleMs?: number;
  /**
   * A repeated sample id is decided once: later messages with an id among the last this many
   * are dead-lettered as duplicate-id (default 200,000; 0: no check)
   */
  recentIds?: number;
  /** dead-letter (image-unusable) a sample whose image could not be used instead of deciding it text-only */
  rejectBadImages?: boolean;
  /** aborting ends the run the same way (drain, publish, commit) */
  signal?: AbortSignal;
  /** kept up to date while it runs, for a status endpoint */
  live?: CurationLive;
  log?: (line: string) => void;
}

export interface CurationStats {
  read: number;
  deadLettered: number;
  scored: number;
  selected: number;
  windows: number;
  commits: number;
  /** read again, already decided by a published file: not decided twice */
  skippedPublished: number;
  /** records and decisions of a generation that was over by the time they got somewhere */
  droppedStale: number;
  /** selected samples by the capability that picked them */
  selectedBy: Record<string, number>;
  /** samples decided and not selected, by reason */
  notSelectedBy: Record<string, number>;
}

/** What a running graph holds right now. */
export interface CurationLive {
  /** valid records in the window that is filling (not yet scored) */
  windowFill: number;
  /** the run's counters so far (set by the graph when it starts) */
  stats?: Readonly<CurationStats>;
}

export async function runCurationGraph(options: CurationGraphOptions): Promise<CurationStats> {
  const { source, scorer, sink, owner, deadLetters, select } = options;
  const log = options.log ?? (() => {});
  const maxInFlight = options.maxInFlight ?? Math.max(200_000, 5 * options.windowSize);
  const maxInFlightBytes = options.maxInFlightBytes ?? 512 * 1024 * 1024;
  let bytesRead = 0;
  const m = options.metrics;
  const stats: CurationStats = {
    read: 0,
    deadLettered: 0,
    scored: 0,
    selected: 0,
    windows: 0,
    commits: 0,
    skippedPublished: 0,
    droppedStale: 0,
    selectedBy: {},
    notSelectedBy: {},
  };
  if (options.live) options.live.stats = stats;
  const recentIds = new RecentIds(options.recentIds ?? 200_000);
  let lastArrival = Date.now();
  let paused = false;
  let lastCommitted = "";
  source.onAssignment((change) => {
    m?.assignmentChanges.inc();
    return owner.handleAssignment(change);
  });

  const commit = async (): Promise<void> => {
    const offsets = owner.committable();
    const text = JSON.stringify([...offsets]);
    if (offsets.size === 0 || text === lastCommitted) return;
    await source.commit(offsets);
    owner.committed(offsets);
    lastCommitted = text;
    stats.commits++;
    m?.commits.inc();
  };
  let committing: Promise<void> = Promise.resolve();
  let checking = false;
  let lastWaitLog = 0;
  const checkCaughtUp = async (): Promise<void> => {
    await sink.flush(); // what is decided goes out now: another member may be waiting for it
    const lags = await groupLag(source);
    if (lags === undefined) {
      source.end();
      return;
    }
    const mine = new Map(owner.positions().map((p) => [`${p.tp.topic}:${p.tp.partition}`, p]));
    const waiting: string[] = [];
    for (const { partition, end, lag } of lags) {
      if (lag === 0n) continue;
      const p = mine.get(partition);
      if (p?.ready && (p.next ?? end - lag) >= end) continue; // read to its end here; committed when drained
      waiting.push(`${partition} (lag ${lag}${p ? ", claiming here" : ", held elsewhere"})`);
    }
    if (waiting.length === 0) {
      log("idle and caught up: draining");
      source.end();
    } else if (Date.now() - lastWaitLog > 10_000) {
      lastWaitLog = Date.now();
      log(`idle, but waiting for ${waiting.length} partition(s) to be decided: ${waiting.join(", ")}`);
    }
  };
  /**
   * Backpressure: above maxInFlight undecided records the source pauses, and what is decided is
   * published now rather than at its rotation's time trigger (which may be a minute away:
   * waiting for it kept the source paused with the workers idle); below half it resumes.
   */
  let relieving: Promise<void> | undefined;
  const applyBackpressure = (): void => {
    const inFlight = owner.undecidedTotal;
    // the share of either limit in use (bytes estimated from the mean message size so far)
    const load = Math.max(
      inFlight / maxInFlight,
      (inFlight * (bytesRead / Math.max(1, stats.read))) / maxInFlightBytes,
    );
    if (!paused && load > 1) {
      paused = true;
      source.pause();
      m?.paused.set(1);
      log(`paused: ${inFlight} records undecided`);
    } else if (paused && load < 0.5) {
      paused = false;
      source.resume();
      m?.paused.set(0);
    }
    if (paused && relieving === undefined && sink.pendingRows > 0) {
      relieving = sink
        .flush()
        .catch((err) => log(`publishing under backpressure failed (will retry): ${(err as Error).message}`))
        .finally(() => {
          relieving = undefined;
        });
    }
  };
  const pressure = setInterval(applyBackpressure, 100);
  const timer = setInterval(() => {
    committing = committing
      .then(commit)
      .catch((err) => log(`commit failed (will retry): ${(err as Error).message}`));
    m?.undecided.set(owner.undecidedTotal);
    m?.partitionsOwned.set(owner.positions().filter((p) => p.ready).length);
    m?.paused.set(paused ? 1 : 0);
    // While paused for backpressure nothing arrives by our own choice: that is not idleness.
    if (paused) lastArrival = Date.now();
    // The idle clock starts once the source can deliver (a consumer joining its group takes seconds).
    const ready = source.readyAt;
    if (
      options.idleMs !== undefined &&
      ready !== undefined &&
      !checking &&
      Date.now() - Math.max(lastArrival, ready) > options.idleMs
    ) {
      checking = true;
      checkCaughtUp()
        .catch((err) => log(`idle check failed (will retry): ${(err as Error).message}`))
        .finally(() => {
          checking = false;
        });
    }
  }, options.commitIntervalMs ?? 2_000);

  const parsed$ = source.records$.pipe(
    tap((raw) => {
      stats.read++;
      bytesRead += raw.value?.length ?? 0;
      m?.read.inc();
      lastArrival = Date.now();
      // a fetch delivers tens of thousands of records in one go: check between timer ticks too
      if ((stats.read & 1023) === 0) applyBackpressure();
    }),
    filter((raw) => {
      const verdict = owner.admit(raw.origin, raw.generation);
      if (verdict === "skip") {
        stats.skippedPublished++;
        m?.skippedPublished.inc();
      } else if (verdict === "stale") {
        stats.droppedStale++;
        m?.droppedStale.inc();
      }
      return verdict === "track";
    }),
    map((raw): ParsedRecord => {
      const parsed = parseRawRecord(raw, options.parse);
      if (!parsed.ok) return parsed;
      const { origin } = parsed.record;
      const first = recentIds.repeatOf(
        parsed.record.sample.id,
        `${origin.topic}:${origin.partition}:${origin.offset}`,
      );
      if (first === undefined) return parsed;
      return deadLetterOf(
        raw,
        DEAD_LETTER_CODES.DUPLICATE_ID,
        `sample id ${JSON.stringify(parsed.record.sample.id)} was already decided from ${first}: a stream decides an id once`,
      );
    }),
    share(),
  );

  /** Dead letters are decided once the sink has them (durable), and counted. */
  const sendDeadLetters = async (letters: DeadLetter[]): Promise<void> => {
    await deadLetters.send(letters);
    for (const l of letters) {
      owner.decided(l.origin, l.generation);
      m?.deadLettered.inc({ code: l.code });
    }
    stats.deadLettered += letters.length;
  };
  const dead$ = parsed$.pipe(
    filter((p): p is { ok: false; deadLetter: DeadLetter } => !p.ok),
    map((p) => p.deadLetter),
    bufferTime(250, null, 500),
    filter((letters) => letters.length > 0),
    concatMap(sendDeadLetters),
  );

  const current = (r: SampleRecord): boolean => owner.isCurrent(r.origin, r.generation);
  /** The records still of their generation; the others' partitions moved (their owner decides them). */
  const dropStale = <T extends SampleRecord>(window: T[]): T[] => {
    const kept = window.filter(current);
    stats.droppedStale += window.length - kept.length;
    m?.droppedStale.inc(window.length - kept.length);
    return kept;
  };
  const decided$ = parsed$.pipe(
    filter((p): p is { ok: true; record: SampleRecord } => p.ok),
    map((p) => p.record),
    tap(() => {
      if (options.live) options.live.windowFill++;
    }),
    windowByCountOrTime<SampleRecord>(options.windowSize, options.windowMs),
    tap((window) => {
      if (options.live) options.live.windowFill -= window.length;
    }),
    // a window may hold records of a generation that ended while it filled: not ours to score
    map(dropStale),
    filter((window) => window.length > 0),
    scoreWindows(scorer, (window) => {
      stats.scored += window.length;
      stats.windows++;
      m?.scored.inc(window.length);
      m?.windows.inc();
    }),
    // ... or lose its partition while it was scored
    map(dropStale),
    // --bad-image reject: a sample whose image could not be used is a dead letter, not a decision
    concatMap(async (window: ScoredRecord[]): Promise<ScoredRecord[]> => {
      if (!options.rejectBadImages) return window;
      const kept: ScoredRecord[] = [];
      const letters: DeadLetter[] = [];
      for (const r of window) {
        const failed = r.score.flags.find((f) => IMAGE_FAILURE_FLAGS.has(f));
        if (failed === undefined) kept.push(r);
        else
          letters.push({
            origin: r.origin,
            key: null,
            value: new TextEncoder().encode(JSON.stringify(r.sample)),
            code: DEAD_LETTER_CODES.IMAGE_UNUSABLE,
            reason: `its image could not be used (${failed}) and --bad-image is reject`,
            generation: r.generation,
          });
      }
      if (letters.length > 0) {
        await sendDeadLetters(letters);
        stats.scored -= letters.length;
      }
      return kept;
    }),
    filter((window) => window.length > 0),
    select,
    writeDecisions({
      sink,
      isStale: (d) => !current(d.record),
      onWritten: (kept, dropped) => {
        stats.droppedStale += dropped;
        m?.droppedStale.inc(dropped);
        for (const d of kept) {
          if (d.selected) {
            stats.selected++;
            const c = d.pickedBy ?? "unknown";
            stats.selectedBy[c] = (stats.selectedBy[c] ?? 0) + 1;
          } else {
            const r = d.reason ?? "unknown";
            stats.notSelectedBy[r] = (stats.notSelectedBy[r] ?? 0) + 1;
          }
        }
        if (m) countDecisions(m, kept);
      },
    }),
  );

  const stop = (): void => source.end();
  options.signal?.addEventListener("abort", stop, { once: true });
  if (options.signal?.aborted) stop();
  try {
    await lastValueFrom(merge(dead$, decided$), { defaultValue: undefined });
    await sink.flush();
    await committing;
    await commit();
  } finally {
    clearInterval(timer);
    clearInterval(pressure);
    options.signal?.removeEventListener("abort", stop);
  }
  return stats;
}
