/**
 * The chat-completions client of `mmssr annotate` against a real local server: what is retried
 * (429 honouring Retry-After, 5xx, timeouts, dropped connections, a 200 that is no completion),
 * what is not (400), what stops the run (401, 404), and the usage totals.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ChatClient,
  ChatRequestError,
  chatCompletionsUrl,
  parseRetryAfter,
} from "../../src/annotate/chat-client.js";
import { MmssrError } from "../../src/domain/errors.js";
import { type ChatServer, type ScriptedReply, startChatServer } from "../support/chat-completions-server.js";

let server: ChatServer;
beforeAll(async () => {
  server = await startChatServer();
});
afterAll(async () => {
  await server.close();
});

const BODY = { model: "m", messages: [{ role: "user" as const, content: "hi" }], temperature: 0 };

/** A client whose waits are recorded (and short), against the server with `replies` in order. */
function clientFor(
  replies: ScriptedReply[],
  options: { timeoutMs?: number; retries?: number; apiKey?: string } = {},
) {
  server.requests.length = 0;
  let k = 0;
  server.setScript(() => replies[Math.min(k++, replies.length - 1)]);
  const waits: number[] = [];
  const client = new ChatClient({
    endpoint: server.url,
    apiKey: options.apiKey,
    timeoutMs: options.timeoutMs ?? 10_000,
    retries: options.retries ?? 5,
    backoffMs: 1,
    sleep: async (ms) => {
      waits.push(ms);
    },
  });
  return { client, waits };
}

const ok: ScriptedReply = { content: "4", usage: { prompt_tokens: 100, completion_tokens: 1 } };

describe("ChatClient", () => {
  it("posts the body to <endpoint>/chat/completions with the key as a Bearer token", async () => {
    const { client } = clientFor([ok], { apiKey: "sk-test-123" });
    const reply = await client.complete(BODY);
    expect(reply.content).toBe("4");
    expect(reply.attempts).toBe(1);
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0].path).toBe("/v1/chat/completions");
    expect(server.requests[0].method).toBe("POST");
    expect(server.requests[0].headers.authorization).toBe("Bearer sk-test-123");
    expect(server.requests[0].body).toEqual(BODY);
  });

  it("retries a 429 and waits as long as its Retry-After asks", async () => {
    const { client, waits } = clientFor([{ status: 429, headers: { "retry-after": "2" } }, ok]);
    const reply = await client.complete(BODY);
    expect(reply.content).toBe("4");
    expect(reply.attempts).toBe(2);
    expect(server.requests).toHaveLength(2);
    expect(waits).toEqual([2000]);
  });

  it("reads retry-after-ms and HTTP dates", () => {
    expect(parseRetryAfter(new Headers({ "retry-after-ms": "1500" }))).toBe(1500);
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(parseRetryAfter(new Headers({ "retry-after": "Wed, 01 Jan 2025 00:00:07 GMT" }), now)).toBe(7000);
    expect(parseRetryAfter(new Headers({ "retry-after": "soon" }))).toBeUndefined();
    expect(parseRetryAfter(new Headers())).toBeUndefined();
  });

  it("retries 5xx with exponential backoff", async () => {
    const { client, waits } = clientFor([{ status: 500 }, { status: 502 }, { status: 503 }, ok]);
    const reply = await client.complete(BODY);
    expect(reply.attempts).toBe(4);
    expect(waits).toEqual([1, 2, 4]);
  });

  it("retries an attempt that runs past the timeout", async () => {
    const { client } = clientFor([{ hang: true }, ok], { timeoutMs: 300 });
    const reply = await client.complete(BODY);
    expect(reply.content).toBe("4");
    expect(reply.attempts).toBe(2);
    expect(server.requests).toHaveLength(2);
  });

  it("gives up on a server that never answers in time, saying so", async () => {
    const { client } = clientFor([{ hang: true }], { timeoutMs: 100, retries: 1 });
    const err = await client.complete(BODY).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChatRequestError);
    expect((err as ChatRequestError).kind).toBe("timeout");
    expect((err as ChatRequestError).attempts).toBe(2);
    expect((err as Error).message).toMatch(/timeout: no complete answer in 100 ms \(2 attempts\)/);
  });

  it("retries a dropped connection", async () => {
    const { client } = clientFor([{ drop: true }, ok]);
    const reply = await client.complete(BODY);
    expect(reply.content).toBe("4");
    expect(reply.attempts).toBe(2);
  });

  it("retries a 200 whose body is not a chat completion", async () => {
    const { client } = clientFor([{ status: 200, body: "<html>gateway</html>" }, ok]);
    expect((await client.complete(BODY)).attempts).toBe(2);
  });

  it("gives up after --retries, with the status", async () => {
    const { client } = clientFor([{ status: 503, body: { error: { message: "overloaded" } } }], {
      retries: 2,
    });
    const err = (await client.complete(BODY).catch((e: unknown) => e)) as ChatRequestError;
    expect(err).toBeInstanceOf(ChatRequestError);
    expect(err.status).toBe(503);
    expect(err.attempts).toBe(3);
    expect(err.message).toMatch(/HTTP 503.*overloaded \(3 attempts\)/);
    expect(server.requests).toHaveLength(3);
  });

  it("does not retry a 400", async () => {
    const { client } = clientFor([{ status: 400, body: { error: { message: "context too long" } } }, ok]);
    const err = (await client.complete(BODY).catch((e: unknown) => e)) as ChatRequestError;
    expect(err.retriable).toBe(false);
    expect(err.message).toMatch(/HTTP 400.*context too long/);
    expect(server.requests).toHaveLength(1);
  });

  it("stops the run on 401 and 404 (usage errors), without retrying", async () => {
    const a = clientFor([{ status: 401, body: { error: { message: "bad key" } } }, ok]);
    const e401 = await a.client.complete(BODY).catch((e: unknown) => e);
    expect(e401).toBeInstanceOf(MmssrError);
    expect((e401 as MmssrError).code).toBe("MMSSR_USAGE");
    expect((e401 as Error).message).toMatch(/--api-key-env.*HTTP 401/);
    expect(server.requests).toHaveLength(1);
    const b = clientFor([{ status: 404, body: { error: { message: "model not found" } } }, ok]);
    const e404 = await b.client.complete(BODY).catch((e: unknown) => e);
    expect((e404 as MmssrError).code).toBe("MMSSR_USAGE");
    expect((e404 as Error).message).toMatch(/--endpoint\/--model: HTTP 404.*model not found/);
  });

  it("a refused connection is retried, then reported with its code", async () => {
    const closed = await startChatServer();
    const url = closed.url;
    await closed.close();
    const client = new ChatClient({
      endpoint: url,
      timeoutMs: 2000,
      retries: 1,
      backoffMs: 0,
      sleep: async () => {},
    });
    const err = (await client.complete(BODY).catch((e: unknown) => e)) as ChatRequestError;
    expect(err.kind).toBe("network");
    expect(err.attempts).toBe(2);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });

  it("sums token usage and counts requests and attempts", async () => {
    const { client } = clientFor([{ status: 429 }, ok, ok]);
    await client.complete(BODY);
    await client.complete(BODY);
    expect(client.stats).toEqual({
      requests: 2,
      attempts: 3,
      succeeded: 2,
      failed: 0,
      promptTokens: 200,
      completionTokens: 2,
    });
  });

  it("builds the request URL from the endpoint", () => {
    expect(chatCompletionsUrl("http://h:8000/v1").href).toBe("http://h:8000/v1/chat/completions");
    expect(chatCompletionsUrl("http://h:8000/v1/").href).toBe("http://h:8000/v1/chat/completions");
    expect(chatCompletionsUrl("https://api.example.com/v1/chat/completions").href).toBe(
      "https://api.example.com/v1/chat/completions",
    );
    expect(() => chatCompletionsUrl("ftp://h/v1")).toThrow(/--endpoint/);
    expect(() => chatCompletionsUrl("not a url")).toThrow(/--endpoint/);
  });
});
