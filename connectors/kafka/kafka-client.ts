import { type Admin, Kafka, type KafkaConfig, logLevel, type SASLOptions } from "kafkajs";

/**
 * Connection options shared by every Kafka component (source, dead letters, produce). SSL and
 * SASL pass straight through to kafkajs; kafkajs stays behind this module and the Source
 * interface, so @confluentinc/kafka-javascript could take its place.
 */
export interface KafkaConnectionOptions {
  brokers: string[];
  clientId?: string;
  ssl?: KafkaConfig["ssl"];
  sasl?: SASLOptions;
  /**
   * kafkajs log level (default: MMSSR_KAFKA_LOG_LEVEL, else nothing). kafkajs logs every
   * retried request (a group coordinator still loading, a leader moving) as an ERROR; what
   * cannot be retried reaches the caller as an exception anyway.
   */
  logLevel?: "nothing" | "error" | "warn" | "info" | "debug";
}

const LEVELS = {
  nothing: logLevel.NOTHING,
  error: logLevel.ERROR,
  warn: logLevel.WARN,
  info: logLevel.INFO,
  debug: logLevel.DEBUG,
} as const;

export function createKafka(options: KafkaConnectionOptions & { retry?: KafkaConfig["retry"] }): Kafka {
  return new Kafka({
    clientId: options.clientId ?? "mmssr",
    brokers: options.brokers,
    ssl: options.ssl,
    sasl: options.sasl,
    logLevel: LEVELS[options.logLevel ?? envLevel()],
    retry: options.retry ?? { retries: 8, initialRetryTime: 200, maxRetryTime: 10_000 },
  });
}

/** "host:port,host:port" -> list, rejecting empty entries. */
export function parseBrokers(raw: string): string[] {
  return raw
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}

function envLevel(): keyof typeof LEVELS {
  const v = (process.env.MMSSR_KAFKA_LOG_LEVEL ?? "nothing").toLowerCase();
  return v in LEVELS ? (v as keyof typeof LEVELS) : "nothing";
}

/**
 * SSL and SASL from the environment, so that secrets stay out of command lines and shell
 * history: MMSSR_KAFKA_SSL=1 turns TLS on (system CAs); MMSSR_KAFKA_SASL_MECHANISM
 * (plain | scram-sha-256 | scram-sha-512) with MMSSR_KAFKA_SASL_USERNAME / _PASSWORD.
 */
export function securityFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Pick<KafkaConnectionOptions, "ssl" | "sasl"> {
  const ssl = env.MMSSR_KAFKA_SSL === "1" || env.MMSSR_KAFKA_SSL === "true" ? true : undefined;
  const mechanism = env.MMSSR_KAFKA_SASL_MECHANISM?.toLowerCase();
  if (!mechanism) return { ssl };
  if (mechanism !== "plain" && mechanism !== "scram-sha-256" && mechanism !== "scram-sha-512")
    throw new Error(
      `MMSSR_KAFKA_SASL_MECHANISM: expected plain, scram-sha-256 or scram-sha-512, got ${JSON.stringify(mechanism)}`,
    );
  const username = env.MMSSR_KAFKA_SASL_USERNAME ?? "";
  const password = env.MMSSR_KAFKA_SASL_PASSWORD ?? "";
  return { ssl, sasl: { mechanism, username, password } as SASLOptions };
}

/** Creates the topics that do not exist yet (topic auto-creation is off on our brokers); returns those created. */
export async function ensureTopics(
  admin: Admin,
  topics: readonly {
    topic: string;
    numPartitions: number;
    configEntries?: { name: string; value: string }[];
  }[],
): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length > 0) await admin.createTopics({ topics: [...missing], waitForLeaders: true });
  return missing.map((t) => t.topic);
}

/**
 * Retry settings for a command's first contact with the brokers: a wrong --brokers or a broker
 * that is down is said within seconds (kafkajs' defaults here retry for half a minute), while
 * the long-running clients keep the patient settings of createKafka.
 */
export const FIRST_CONTACT_RETRY = { retries: 2, initialRetryTime: 300, maxRetryTime: 2_000 } as const;
