/**
 * A client of one OpenAI-compatible `/v1/chat/completions` server (vLLM, SGLang, Ollama, hosted
 * APIs), on Node's built-in fetch (undici), for `mmssr annotate`.
 *
 * One `complete(body)` call is one logical request: it POSTs the JSON body, retries what may pass
 * on retry, and returns the first choice's text with the token usage, or throws:
 *
 * - retried (exponential backoff `backoffMs * 2^k`, capped at `maxBackoffMs`, at most `retries`
 *   times): HTTP 408, 409, 425, 429 and every 5xx; a timeout (`timeoutMs` per attempt, covering
 *   the headers and the whole body); a dropped or refused connection; a 200 whose body is not a
 *   chat-completions answer (a proxy's HTML page, a cut body). A `Retry-After` (seconds or an
 *   HTTP date) or `retry-after-ms` header on the failed answer makes the wait at least that long
 *   (capped at `maxRetryAfterMs`).
 * - not retried, thrown as ChatRequestError (the caller records the request as missing): any
 *   other 4xx (400 context too long, 413, 422 ...), retries exhausted.
 * - fatal for the whole run, thrown as MmssrError(USAGE) (the CLI exits 2): 401 and 403 (the key
 *   of --api-key-env is wrong or missing), 404 (--endpoint or --model names nothing there). Every
 *   later request would fail the same way.
 * - the run's `signal` aborted: ChatRequestError of kind "aborted", never retried.
 *
 * The API key travels only in the Authorization header and appears in no message.
 */
import { setTimeout as delay } from "node:timers/promises";
import pRetry, { AbortError } from "p-retry";
import { z } from "zod";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";

export type ContentPart = { type: "text"; text: string } | { type: "image_url"; image_url: { url: string } };

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string | ContentPart[];
}

/** The body of one chat-completions request (the fields this project sends). */
export interface ChatRequestBody {
  model: string;
  messages: ChatMessage[];
  temperature: number;
  max_tokens?: number;
  response_format?: Record<string, unknown>;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface ChatReply {
  /** the first choice's message text ("" when the server sent null) */
  content: string;
  finishReason?: string;
  usage: TokenUsage;
  /** HTTP attempts this request took (1 = no retry) */
  attempts: number;
}

/** Anything that answers chat requests (the client, or a stand-in in tests). */
export interface ChatCompleter {
  complete(body: ChatRequestBody): Promise<ChatReply>;
}

export type ChatFailureKind = "http" | "timeout" | "network" | "bad-response" | "aborted";

/** A request that failed for good (after its retries, or at once when retrying cannot help). */
export class ChatRequestError extends Error {
  readonly kind: ChatFailureKind;
  readonly status: number | undefined;
  readonly retriable: boolean;
  readonly retryAfterMs: number | undefined;
  /** HTTP attempts made, set when the request is given up */
  attempts = 1;

  constructor(
    kind: ChatFailureKind,
    message: string,
    options: { status?: number; retriable: boolean; retryAfterMs?: number; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ChatRequestError";
    this.kind = kind;
    this.status = options.status;
    this.retriable = options.retriable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface ChatClientOptions {
  /** `http://host:port/v1` (the path `/chat/completions` is appended) or the full URL */
  endpoint: string;
  /** sent as `Authorization: Bearer <key>`; none: no Authorization header */
  apiKey?: string;
  /** limit of one attempt (headers and body), ms */
  timeoutMs: number;
  /** retries after the first attempt, at most */
  retries: number;
  /** first backoff, ms; doubled after each retry */
  backoffMs: number;
  /** largest backoff, ms. Default 60 s. */
  maxBackoffMs?: number;
  /** largest wait a Retry-After header may ask for, ms. Default 120 s. */
  maxRetryAfterMs?: number;
  /** aborts every request (the run is ending) */
  signal?: AbortSignal;
  /** how to wait between attempts (tests record the waits). Default: an abortable timer. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Totals over every request of a client. */
export interface ChatStats {
  /** logical requests (complete() calls) */
  requests: number;
  /** HTTP attempts, retries included */
  attempts: number;
  /** requests that returned a reply */
  succeeded: number;
  /** requests given up (after retries or at once) */
  failed: number;
  promptTokens: number;
  completionTokens: number;
}

/** The URL requests go to: `<endpoint>/chat/completions` unless the endpoint already ends so. */
export function chatCompletionsUrl(endpoint: string): URL {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    throw new MmssrError(
      ERROR_CODES.USAGE,
      `--endpoint: not a URL: ${JSON.stringify(endpoint)} (expected http://host:port/v1)`,
    );
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw new MmssrError(ERROR_CODES.USAGE, `--endpoint: expected an http(s) URL, got ${u.protocol}`);
  if (u.search !== "" || u.hash !== "")
    throw new MmssrError(ERROR_CODES.USAGE, "--endpoint: give the base URL without query or fragment");
  const path = u.pathname.replace(/\/+$/, "");
  if (!path.endsWith("/chat/completions")) u.pathname = `${path}/chat/completions`;
  return u;
}

/** HTTP statuses worth another attempt. */
export function isRetriableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 425 || status === 429 || status >= 500;
}

/**
 * The wait a failed answer asks for, ms: `retry-after-ms` (OpenAI), else `Retry-After` in
 * seconds or as an HTTP date (relative to `now`). Undefined when absent or unreadable.
 */
export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && /^\s*\d+(\.\d+)?\s*$/.test(ms)) return Math.ceil(Number(ms));
  const raw = headers.get("retry-after");
  if (raw === null) return undefined;
  const text = raw.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.ceil(Number(text) * 1000);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

const CompletionSchema = z.object({
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullable().optional() }),
        finish_reason: z.string().nullable().optional(),
      }),
    )
    .min(1),
  usage: z
    .object({
      prompt_tokens: z.number().nonnegative().optional(),
      completion_tokens: z.number().nonnegative().optional(),
    })
    .nullable()
    .optional(),
});

function excerpt(text: string, max = 200): string {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

/** The server's own error message from an OpenAI-style error body, else the body's start. */
function serverMessage(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof parsed.error === "string") return excerpt(parsed.error);
    if (typeof parsed.error?.message === "string") return excerpt(parsed.error.message);
    if (typeof parsed.message === "string") return excerpt(parsed.message);
  } catch {
    /* not JSON */
  }
  return excerpt(text);
}

function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, k = 0; e !== undefined && e !== null && k < 4; k++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function causeMessage(err: unknown): string {
  const cause = (err as { cause?: unknown })?.cause;
  if (cause instanceof Error && cause.message !== "") return cause.message;
  return err instanceof Error ? err.message : String(err);
}

export class ChatClient implements ChatCompleter {
  readonly url: URL;
  readonly stats: ChatStats = {
    requests: 0,
    attempts: 0,
    succeeded: 0,
    failed: 0,
    promptTokens: 0,
    completionTokens: 0,
  };
  private readonly o: Required<Omit<ChatClientOptions, "apiKey" | "signal">> &
    Pick<ChatClientOptions, "apiKey" | "signal">;
  private readonly headers: Record<string, string>;

  constructor(options: ChatClientOptions) {
    this.url = chatCompletionsUrl(options.endpoint);
    this.o = {
      maxBackoffMs: 60_000,
      maxRetryAfterMs: 120_000,
      sleep: (ms, signal) => delay(ms, undefined, { signal }),
      ...options,
    };
    this.headers = { "content-type": "application/json", accept: "application/json" };
    if (options.apiKey !== undefined) this.headers.authorization = `Bearer ${options.apiKey}`;
  }

  /** The body sends as is; the reply of the first choice comes back. Rules in the header. */
  async complete(body: ChatRequestBody): Promise<ChatReply> {
    this.stats.requests++;
    const payload = JSON.stringify(body);
    let attempts = 0;
    try {
      const reply = await pRetry(
        async () => {
          attempts++;
          this.stats.attempts++;
          try {
            return await this.attempt(payload);
          } catch (err) {
            if (err instanceof ChatRequestError) throw err;
            throw new AbortError(err instanceof Error ? err : new Error(String(err)));
          }
        },
        {
          retries: this.o.retries,
          minTimeout: 0, // every wait happens in onFailedAttempt, where Retry-After is known
          factor: 1,
          randomize: false,
          shouldRetry: ({ error }) => error instanceof ChatRequestError && error.retriable,
          onFailedAttempt: async ({ error, retriesLeft, retriesConsumed }) => {
            if (!(error instanceof ChatRequestError) || !error.retriable || retriesLeft <= 0) return;
            const backoff = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** retriesConsumed);
            const asked = Math.min(error.retryAfterMs ?? 0, this.o.maxRetryAfterMs);
            try {
              await this.o.sleep(Math.max(backoff, asked), this.o.signal);
            } catch {
              throw new ChatRequestError("aborted", "the run was stopped", { retriable: false });
            }
          },
        },
      );
      this.stats.succeeded++;
      this.stats.promptTokens += reply.usage.promptTokens;
      this.stats.completionTokens += reply.usage.completionTokens;
      return { ...reply, attempts };
    } catch (err) {
      this.stats.failed++;
      if (err instanceof ChatRequestError) {
        err.attempts = attempts;
        if (attempts > 1) err.message = `${err.message} (${attempts} attempts)`;
      }
      throw err;
    }
  }

  private async attempt(payload: string): Promise<Omit<ChatReply, "attempts">> {
    const run = this.o.signal;
    if (run?.aborted) throw new ChatRequestError("aborted", "the run was stopped", { retriable: false });
    const timeout = AbortSignal.timeout(this.o.timeoutMs);
    const signal = run === undefined ? timeout : AbortSignal.any([timeout, run]);
    const transport = (err: unknown): ChatRequestError => {
      if (run?.aborted) return new ChatRequestError("aborted", "the run was stopped", { retriable: false });
      if (timeout.aborted)
        return new ChatRequestError("timeout", `timeout: no complete answer in ${this.o.timeoutMs} ms`, {
          retriable: true,
        });
      const code = causeCode(err);
      return new ChatRequestError(
        "network",
        `connection failed${code ? ` (${code})` : ""}: ${causeMessage(err)}`,
        { retriable: true, cause: err },
      );
    };
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url, { method: "POST", headers: this.headers, body: payload, signal });
      text = await res.text();
    } catch (err) {
      throw transport(err);
    }
    if (res.status === 401 || res.status === 403)
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `--api-key-env: ${this.url.origin} refused the request with HTTP ${res.status} (${serverMessage(text)}); check the API key`,
      );
    if (res.status === 404)
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `--endpoint/--model: HTTP 404 from ${this.url.href} (${serverMessage(text)}); check the endpoint URL and the model name`,
      );
    if (!res.ok) {
      const retriable = isRetriableStatus(res.status);
      throw new ChatRequestError(
        "http",
        `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}: ${serverMessage(text)}`,
        { status: res.status, retriable, retryAfterMs: retriable ? parseRetryAfter(res.headers) : undefined },
      );
    }
    let parsed: z.infer<typeof CompletionSchema>;
    try {
      parsed = CompletionSchema.parse(JSON.parse(text));
    } catch {
      throw new ChatRequestError(
        "bad-response",
        `HTTP ${res.status} with a body that is not a chat completion: ${JSON.stringify(excerpt(text, 120))}`,
        { status: res.status, retriable: true },
      );
    }
    const choice = parsed.choices[0];
    return {
      content: choice.message.content ?? "",
      finishReason: choice.finish_reason ?? undefined,
      usage: {
        promptTokens: parsed.usage?.prompt_tokens ?? 0,
        completionTokens: parsed.usage?.completion_tokens ?? 0,
      },
    };
  }
}
