/**
 * Helpers for tests against a real Kafka broker (the one vitest's global setup ensures, see
 * kafka-global-setup.ts): where it is, a fresh topic and group per test, and waitFor in
 * place of sleeps.
 */

import { randomBytes } from "node:crypto";
import { Kafka, type KafkaConfig, type logCreator, logLevel } from "kafkajs";

/** Set by the global setup (or by whoever runs the tests against a broker of their own). */
export const BROKERS_ENV = "MMSSR_KAFKA_BROKERS";
export const DEFAULT_BROKERS = "127.0.0.1:19092";

/** The bootstrap addresses: MMSSR_KAFKA_BROKERS (comma-separated), else 127.0.0.1:19092. */
export function brokers(): string[] {
  const raw = process.env[BROKERS_ENV]?.trim() || DEFAULT_BROKERS;
  return raw
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

// Errors kafkajs logs and then retries by itself, expected on a fresh broker (the offsets
// and transaction topics load on first use) and on every rebalance.
const RETRIED = /coordinator is (loading|not available)|rebalanc|not the leader|leader(ship)? not available/i;

const quietRetries: logCreator =
  () =>
  ({ namespace, label, log }) => {
    if (RETRIED.test(String(log.error ?? ""))) return;
    const { message, ...rest } = log;
    console.error(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(rest)}`);
  };

/**
 * A kafkajs client for the test broker. Logs errors only, leaving out the ones kafkajs
 * retries by itself; MMSSR_KAFKA_LOG_LEVEL=debug|info|warn shows more, with retries.
 */
export function testKafka(clientId = "mmssr-test", config: Partial<KafkaConfig> = {}): Kafka {
  const levels: Record<string, logLevel> = {
    nothing: logLevel.NOTHING,
    error: logLevel.ERROR,
    warn: logLevel.WARN,
    info: logLevel.INFO,
    debug: logLevel.DEBUG,
  };
  const level = levels[(process.env.MMSSR_KAFKA_LOG_LEVEL ?? "error").toLowerCase()] ?? logLevel.ERROR;
  return new Kafka({
    clientId,
    brokers: brokers(),
    logLevel: level,
    ...(level <= logLevel.ERROR ? { logCreator: quietRetries } : {}),
    retry: { retries: 5, initialRetryTime: 100 },
    ...config,
  });
}

/** prefix-<time>-<random>, reduced to the characters Kafka allows in topic and group names. */
export function uniqueName(prefix: string): string {
  const clean = prefix.replace(/[^a-zA-Z0-9._-]/g, "-").slice(0, 120) || "t";
  return `${clean}-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

/**
 * Creates a topic no other test uses and returns its name, once every partition has a
 * leader (so producing to it right away works).
 */
export async function freshTopic(
  prefix: string,
  partitions = 1,
  configEntries: { name: string; value: string }[] = [],
): Promise<string> {
  const topic = uniqueName(prefix);
  const admin = testKafka("mmssr-test-admin").admin();
  await admin.connect();
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1, configEntries }],
      waitForLeaders: true,
    });
    if (!created) throw new Error(`topic ${topic} already existed`);
  } finally {
    await admin.disconnect();
  }
  return topic;
}

/** A consumer group name no other test uses. */
export function freshGroup(prefix: string): string {
  return uniqueName(`${prefix}-group`);
}

export interface WaitForOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Poll this often (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the error message. */
  what?: string;
}

/**
 * Polls `predicate` until it returns a truthy value and returns that value; throws after
 * `timeoutMs` with `what` and the predicate's last error, if it threw. The way to wait in
 * these tests: never a bare sleep.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  { timeoutMs = 20_000, intervalMs = 50, what = "a condition" }: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) {
      const why = lastError === undefined ? "" : `; last error: ${String(lastError)}`;
      throw new Error(`waitFor: timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
