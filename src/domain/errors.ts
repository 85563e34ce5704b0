/**
 * Every error the project raises on purpose carries a stable code (for logs, metrics and
 * dead-letter headers) and says whether retrying the same operation can help.
 */

export const ERROR_CODES = {
  /** A command-line flag is missing, malformed or contradicts another. */
  USAGE: "MMSSR_USAGE",
  /** An input file does not exist or cannot be opened. */
  FILE_NOT_FOUND: "MMSSR_FILE_NOT_FOUND",
  /** A row of an input file breaks the format (the message names line/row and field). */
  BAD_ROW: "MMSSR_BAD_ROW",
  /** A columnar input lacks a required column. */
  MISSING_COLUMN: "MMSSR_MISSING_COLUMN",
  /** A file extension names no format we read or write. */
  UNSUPPORTED_FORMAT: "MMSSR_UNSUPPORTED_FORMAT",
  /** Selection options are invalid (unknown capability, ratio outside (0,1), ...). */
  BAD_OPTIONS: "MMSSR_BAD_OPTIONS",
  /** A sample failed validation. */
  INVALID_SAMPLE: "MMSSR_INVALID_SAMPLE",
  /** An I/O operation failed in a way that may pass on retry (disk full, EAGAIN, ...). */
  IO: "MMSSR_IO",
  /** A model directory breaks the model contract (manifest, sha256, ONNX names or shapes). */
  MODEL_INVALID: "MMSSR_MODEL_INVALID",
  /** Running a model failed (ONNX Runtime error, crashed inference worker, provider failed to load). */
  INFERENCE: "MMSSR_INFERENCE",
  /** A partition lock of a shared output location stayed held past its wait limit. */
  LOCK_TIMEOUT: "MMSSR_LOCK_TIMEOUT",
  /** The Kafka brokers cannot be reached (refused, unknown host, timed out): check --brokers. */
  BROKER_UNREACHABLE: "MMSSR_BROKER_UNREACHABLE",
  /** A port to listen on (metrics, admin API) is taken or not allowed. */
  PORT_UNAVAILABLE: "MMSSR_PORT_UNAVAILABLE",
  /** A bug: an invariant of our own code does not hold. */
  INTERNAL: "MMSSR_INTERNAL",
} as const;

export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

export class MmssrError extends Error {
  readonly code: ErrorCode;
  /** True when the same operation may succeed if tried again unchanged. */
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "MmssrError";
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** Errors a user can fix by changing the command line or the input: the CLI exits with 2 on these. */
const USER_ERROR_CODES: ReadonlySet<ErrorCode> = new Set([
  ERROR_CODES.USAGE,
  ERROR_CODES.FILE_NOT_FOUND,
  ERROR_CODES.BAD_ROW,
  ERROR_CODES.MISSING_COLUMN,
  ERROR_CODES.UNSUPPORTED_FORMAT,
  ERROR_CODES.BAD_OPTIONS,
  ERROR_CODES.INVALID_SAMPLE,
  ERROR_CODES.MODEL_INVALID,
  ERROR_CODES.BROKER_UNREACHABLE,
  ERROR_CODES.PORT_UNAVAILABLE,
]);

const UNREACHABLE = /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|Connection timeout/;

/**
 * A client library's error in our shape where we can say what it means: kafkajs' "could not
 * connect" errors (raw KafkaJSNonRetriableError after its retries) become BROKER_UNREACHABLE.
 */
export function explainError(err: unknown): unknown {
  if (err instanceof MmssrError || !(err instanceof Error)) return err;
  if (err.name.startsWith("KafkaJS")) {
    const chain: string[] = [];
    for (let e: unknown = err; e instanceof Error && chain.length < 5; e = (e as { cause?: unknown }).cause)
      chain.push(e.message);
    const text = chain.join(": ");
    if (UNREACHABLE.test(text))
      return new MmssrError(
        ERROR_CODES.BROKER_UNREACHABLE,
        `cannot reach the Kafka brokers (--brokers): ${chain[chain.length - 1]}; is the broker running and the address right?`,
        { cause: err },
      );
  }
  return err;
}

export function isUserError(err: unknown): err is MmssrError {
  return err instanceof MmssrError && USER_ERROR_CODES.has(err.code);
}
