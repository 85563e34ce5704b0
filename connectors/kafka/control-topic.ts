import { hostname } from "node:os";
import type { Producer } from "kafkajs";
import { Subject } from "rxjs";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import type { SelectionPolicy } from "../../src/selection/selection-policy.js";
import { decodePolicyRecord } from "../../src/stream/policy-record.js";
import type { PolicyOrigin, PolicyRecord, PolicyStore } from "../../src/stream/ports.js";
import { createKafka, ensureTopics, type KafkaConnectionOptions } from "./kafka-client.js";
import { type TopicTail, tailTopic } from "./topic-tail.js";

export interface ControlTopicOptions extends KafkaConnectionOptions {
  /** the control topic (default of the CLI: `<topic>.control`) */
  topic: string;
  /** the consumer group whose policy this is: the key of its records */
  group: string;
  /** names this reader (its own throw-away consumer group); default host-pid-time */
  reader?: string;
  /** give up reading to the end after this long (default 60 s) */
  timeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * A group's selection policy on a compacted Kafka topic (key = group id, value = a PolicyRecord
 * as JSON, see src/stream/policy-record.ts): compaction keeps the latest policy of every group
 * for as long as the topic lives, so a restart (or a new member) starts from it, and every
 * member reads every change, so a fleet changes together.
 *
 * A policy's version is its record's offset + 1: offsets are unique and grow, every reader
 * sees the same ones, and compaction does not change them, so two writers racing can never
 * give two different policies one version (the later offset wins everywhere).
 *
 * kafkajs has no manual assignment, so this reads through a consumer group of its own that
 * commits nothing (a group without offsets leaves nothing behind once it is empty; it is also
 * deleted on close).
 */
export async function createControlTopicStore(options: ControlTopicOptions): Promise<PolicyStore> {
  const { topic, group } = options;
  const log = options.log ?? (() => {});
  const where = `control topic ${topic} (key ${group})`;
  const kafka = createKafka({ ...options, clientId: options.clientId ?? "mmssr-control" });
  const admin = kafka.admin();
  await admin.connect();
  let tail: TopicTail | undefined;
  let producer: Producer | undefined;
  const readerGroup = `mmssr-control-${options.reader ?? `${hostname()}-${process.pid}-${Date.now().toString(36)}`}`;
  try {
    await ensureTopics(admin, [
      {
        topic,
        numPartitions: 1,
        configEntries: [
          { name: "cleanup.policy", value: "compact" },
          // keep superseded policies a while, so the topic doubles as a recent change log
          { name: "min.compaction.lag.ms", value: String(7 * 24 * 3_600_000) },
        ],
      },
    ]);
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
  } catch (err) {
    await admin.disconnect().catch(() => {});
    throw err;
  }
  const changes = new Subject<PolicyRecord>();
  let latest: PolicyRecord | undefined;

  const decode = (value: Buffer | null, offset: string, timestamp: string): PolicyRecord | undefined => {
    if (value === null) return undefined; // a tombstone: the group's policy was deleted
    const r = decodePolicyRecord(value.toString("utf8"), {
      version: Number(BigInt(offset) + 1n),
      from: { via: "cli", host: "unknown" },
      at: new Date(Number(timestamp)).toISOString(),
    });
    if (!r.ok) {
      log(`${where}: record at offset ${offset} ignored: ${r.problem}`);
      return undefined;
    }
    return r.record;
  };

  const store: PolicyStore = {
    where,
    async latest() {
      tail = await tailTopic(kafka, admin, {
        topic,
        groupId: readerGroup,
        timeoutMs: options.timeoutMs,
        what: where,
        onMessage: (m, _partition, caughtUp) => {
          if (m.key?.toString("utf8") !== group) return;
          const record = decode(m.value, m.offset, m.timestamp);
          if (!record) return;
          if (caughtUp) changes.next(record);
          else latest = record;
        },
      });
      await tail.caughtUp;
      return latest;
    },
    changes$: changes.asObservable(),
    async write(policy: SelectionPolicy, from: PolicyOrigin, previous?: SelectionPolicy) {
      const at = new Date().toISOString();
      const { version: _v, ...body } = policy;
      const record = { policy: body, at, from, ...(previous ? { previous } : {}) };
      const [sent] = await (producer as Producer).send({
        topic,
        acks: -1,
        messages: [{ key: group, value: JSON.stringify(record) }],
      });
      if (sent?.baseOffset === undefined)
        throw new MmssrError(ERROR_CODES.IO, `${where}: the broker did not say where the policy was written`);
      const stored: PolicyRecord = {
        policy: { ...policy, version: Number(BigInt(sent.baseOffset) + 1n) },
        at,
        from,
        ...(previous ? { previous } : {}),
      };
      return stored;
    },
    async close() {
      changes.complete();
      await tail?.stop();
      await producer?.disconnect().catch(() => {});
      await admin.disconnect().catch(() => {});
    },
  };
  return store;
}
