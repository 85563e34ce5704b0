import type { Consumer, EachBatchPayload } from "kafkajs";
import { Observable, Subject } from "rxjs";
import type { RawRecord } from "../../src/stream/stream-types.js";
import { createKafka, type KafkaConnectionOptions } from "./kafka-client.js";

/**
 * Where records come from. Processing, offset bookkeeping and committing are separate parts
 * (as in kafkajs): the source only reads and, when told, commits; the graph decides what may be
 * committed (the OffsetLedger's low watermark).
 */
export interface Source {
  /** every record read, in partition order; completes when the source stops */
  readonly records$: Observable<RawRecord>;
  /** commits "next offset to read" per "topic:partition" */
  commit(offsets: ReadonlyMap<string, string>): Promise<void>;
  /** stop fetching (backpressure) / fetch again */
  pause(): void;
  resume(): void;
  /** partitions taken away by a rebalance: their undecided records will be read again by their new owner */
  readonly revoked$: Observable<{ topic: string; partition: number }[]>;
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

export interface KafkaSourceOptions extends KafkaConnectionOptions {
  topic: string;
  groupId: string;
  /** a new group starts at the earliest offset (default true) */
  fromBeginning?: boolean;
  /** bytes fetched per partition per request: inline images need room (default 32 MiB) */
  maxBytesPerPartition?: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
}

/**
 * kafkajs consumer with autoCommit off and eachBatch with manual resolve: each message is
 * handed to records$ and resolved (so a rebalance does not re-deliver what this member has
 * already handed on within the batch), heartbeats go out during long batches, and offsets
 * are committed only through commit().
 */
export async function createKafkaSource(options: KafkaSourceOptions): Promise<Source> {
  const kafka = createKafka({ ...options, clientId: options.clientId ?? "mmssr-curate" });
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    maxBytesPerPartition: options.maxBytesPerPartition ?? 32 * 1024 * 1024,
    maxBytes: 2 * (options.maxBytesPerPartition ?? 32 * 1024 * 1024),
    sessionTimeout: options.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: options.heartbeatIntervalMs ?? 3_000,
  });
  const records = new Subject<RawRecord>();
  const revoked = new Subject<{ topic: string; partition: number }[]>();
  let assigned = new Set<number>();
  let ended = false;

  let readyAt: number | undefined;
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    readyAt ??= Date.now();
    const now = new Set<number>(e.payload.memberAssignment[options.topic] ?? []);
    const lost = [...assigned]
      .filter((p) => !now.has(p))
      .map((partition) => ({ topic: options.topic, partition }));
    assigned = now;
    if (lost.length > 0) revoked.next(lost);
  });

  await consumer.connect();
  await consumer.subscribe({ topic: options.topic, fromBeginning: options.fromBeginning ?? true });
  const startRun = (): Promise<void> =>
    consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
        let lastBeat = Date.now();
        for (const m of batch.messages) {
          if (ended || !isRunning() || isStale()) break;
          records.next({
            origin: { topic: batch.topic, partition: batch.partition, offset: m.offset },
            key: m.key ? m.key.toString("utf8") : null,
            value: m.value ? new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength) : null,
            timestamp: Number(m.timestamp),
          });
          resolveOffset(m.offset);
          if (Date.now() - lastBeat > 1_000) {
            await heartbeat();
            lastBeat = Date.now();
          }
        }
        await heartbeat();
      },
    });

  // Nothing is fetched before records$ has a subscriber: a message handed to nobody would be
  // resolved and lost for this run.
  let started = false;
  const records$ = new Observable<RawRecord>((subscriber) => {
    const sub = records.subscribe(subscriber);
    if (!started) {
      started = true;
      startRun().catch((err) => records.error(err));
    }
    return () => sub.unsubscribe();
  });

  let stopped = false;
  return {
    get readyAt() {
      return readyAt;
    },
    end() {
      if (ended) return;
      ended = true;
      safely(() => consumer.pause([{ topic: options.topic }]));
      records.complete();
    },
    records$,
    revoked$: revoked.asObservable(),
    async commit(offsets) {
      const list = [...offsets].map(([key, offset]) => {
        const at = key.lastIndexOf(":");
        return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)), offset };
      });
      if (list.length > 0) await consumer.commitOffsets(list);
    },
    pause() {
      safely(() => consumer.pause([{ topic: options.topic }]));
    },
    resume() {
      safely(() => consumer.resume([{ topic: options.topic }]));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      ended = true;
      await consumer.disconnect();
      records.complete();
      revoked.complete();
    },
  };
}

/**
 * pause/resume throw while kafkajs is rejoining its group ("Consumer group was not
 * initialized"); backpressure is advisory, so they must not take the process down. Fetching
 * stops anyway once end() has completed records$.
 */
function safely(action: () => void): void {
  try {
    action();
  } catch {
    /* the consumer is between group generations; the next tick tries again */
  }
}
