import type { Consumer, EachBatchPayload } from "kafkajs";
import { Observable, Subject } from "rxjs";
import { parsePartitionKey, partitionKey } from "../../src/stream/offset-ledger.js";
import type { AssignmentHandler, Source, TopicPartition } from "../../src/stream/ports.js";
import type { RawRecord } from "../../src/stream/stream-types.js";
import { createKafka, type KafkaConnectionOptions } from "./kafka-client.js";

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

/** A successful commit as kafkajs reported it, with the local generation in force when it did. */
interface CommitSeen {
  seq: number;
  generation: number;
  /** "topic:partition:offset" */
  keys: Set<string>;
}

/**
 * The Source port over kafkajs (eager rebalancing only: kafkajs 2.2.4 has neither a hook before
 * partitions move nor the cooperative protocol; BENCHMARKS.md "Kafka client choice").
 *
 * Generations: every GROUP_JOIN (an assignment), and every REBALANCING or CRASH event (the member
 * is about to rejoin, so it owns nothing meanwhile), starts a new local generation, reported to
 * the assignment handler synchronously. kafkajs re-reads every partition it keeps from the
 * committed offset after a rejoin (a new OffsetManager per sync), which is why a change revokes
 * everything held before. A batch is handed out only once the handler's claim of its generation
 * is done, and only while that generation lasts.
 *
 * Fencing: kafkajs commits with the generation id of its last completed sync, and the broker
 * accepts a commit only from the group's current generation. A commit that kafkajs reports
 * (COMMIT_OFFSETS event) while our local generation is still the one asked about was therefore
 * accepted before any later generation existed: that is `fence`. A commit kafkajs skipped (not
 * running) or retried into a new generation is not reported under the old one, so it fails.
 */
export async function createKafkaSource(options: KafkaSourceOptions): Promise<Source> {
  const kafka = createKafka({ ...options, clientId: options.clientId ?? "mmssr-curate" });
  const { topic } = options;
  const consumer: Consumer = kafka.consumer({
    groupId: options.groupId,
    maxBytesPerPartition: options.maxBytesPerPartition ?? 32 * 1024 * 1024,
    maxBytes: 2 * (options.maxBytesPerPartition ?? 32 * 1024 * 1024),
    sessionTimeout: options.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: options.heartbeatIntervalMs ?? 3_000,
  });
  const admin = kafka.admin();
  const records = new Subject<RawRecord>();
  let handler: AssignmentHandler | undefined;
  let generation = 0;
  let owned: TopicPartition[] = [];
  /** the claim of the current generation */
  let claimed: Promise<void> = Promise.resolve();
  let ended = false;
  let paused = false;
  let readyAt: number | undefined;
  let commitSeq = 0;
  const commits: CommitSeen[] = [];

  const change = (assigned: number[]): void => {
    generation++;
    const revoked = owned;
    owned = assigned.map((partition) => ({ topic, partition }));
    const claim = handler ? handler({ generation, assigned: owned, revoked }) : Promise.resolve();
    claimed = claim;
    claim.catch((err) => records.error(err));
  };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    readyAt ??= Date.now();
    change(e.payload.memberAssignment[topic] ?? []);
  });
  const leaving = (): void => {
    if (owned.length > 0) change([]);
  };
  consumer.on(consumer.events.REBALANCING, leaving);
  consumer.on(consumer.events.CRASH, leaving);
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    const keys = new Set<string>();
    for (const t of e.payload.topics)
      for (const p of t.partitions) keys.add(`${t.topic}:${p.partition}:${String(p.offset)}`);
    commits.push({ seq: ++commitSeq, generation, keys });
    if (commits.length > 256) commits.splice(0, commits.length - 256);
  });

  await admin.connect();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: options.fromBeginning ?? true });

  const startRun = (): Promise<void> =>
    consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload) => {
        const gen = generation;
        // Wait for the claim of this generation (heartbeating: a lock can take a while).
        let waiting = true;
        const claim = claimed.finally(() => {
          waiting = false;
        });
        claim.catch(() => {});
        while (waiting) {
          await Promise.race([claim.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1_000))]);
          if (waiting) await heartbeat();
        }
        if (gen !== generation || !owned.some((tp) => tp.partition === batch.partition)) return;
        let lastBeat = Date.now();
        const receivedAt = lastBeat;
        for (const m of batch.messages) {
          // Paused for backpressure: the rest of the batch is left unresolved, so kafkajs fetches
          // it again from there after resume (a fetch holds up to 32 MiB a partition: 100,000
          // small samples, far past the graph's limit, if handed out anyway).
          if (ended || paused || !isRunning() || isStale() || gen !== generation) break;
          records.next({
            origin: { topic: batch.topic, partition: batch.partition, offset: m.offset },
            key: m.key ? m.key.toString("utf8") : null,
            value: m.value ? new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength) : null,
            timestamp: Number(m.timestamp),
            receivedAt,
            generation: gen,
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
    records$,
    onAssignment(h) {
      handler = h;
    },
    end() {
      if (ended) return;
      ended = true;
      safely(() => consumer.pause([{ topic }]));
      records.complete();
    },
    async commit(offsets) {
      const list = [...offsets].map(([key, offset]) => ({ ...parsePartitionKey(key), offset }));
      if (list.length > 0) await consumer.commitOffsets(list);
    },
    async fence(tp, offset, gen) {
      if (gen !== generation || stopped) return false;
      const mark = commitSeq;
      try {
        await consumer.commitOffsets([{ topic: tp.topic, partition: tp.partition, offset }]);
      } catch {
        return false;
      }
      if (gen !== generation) return false;
      const key = `${tp.topic}:${tp.partition}:${offset}`;
      return commits.some((c) => c.seq > mark && c.generation === gen && c.keys.has(key));
    },
    async committedOffsets(partitions) {
      const fetched = await admin.fetchOffsets({ groupId: options.groupId, topics: [topic] });
      const want = partitions
        ? new Set(partitions.map((p) => partitionKey(p.topic, p.partition)))
        : undefined;
      const out = new Map<string, string>();
      for (const t of fetched)
        for (const p of t.partitions) {
          const key = partitionKey(t.topic, p.partition);
          if (Number(p.offset) >= 0 && (!want || want.has(key))) out.set(key, p.offset);
        }
      return out;
    },
    async endOffsets() {
      const out = new Map<string, string>();
      for (const p of await admin.fetchTopicOffsets(topic)) out.set(partitionKey(topic, p.partition), p.high);
      return out;
    },
    pause() {
      paused = true;
      safely(() => consumer.pause([{ topic }]));
    },
    resume() {
      paused = false;
      safely(() => consumer.resume([{ topic }]));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      ended = true;
      await consumer.disconnect();
      await admin.disconnect().catch(() => {});
      records.complete();
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
