/**
 * A small real HTTP server (node:http, 127.0.0.1) that speaks the OpenAI chat-completions
 * protocol with scripted answers, for the tests of `mmssr annotate`. It records every request
 * (headers and parsed body) and answers each one as the script says:
 *
 * - `{content}`: a 200 chat completion with that message text (and `usage`);
 * - `{status, body?, headers?}`: any other answer (429 with Retry-After, 500, 401, an HTML page);
 * - `{drop: true}`: the socket is destroyed without an answer (a dropped connection);
 * - `{hang: true}`: no answer at all, slower than any timeout (the request stays open until the
 *   client gives up or the server closes);
 * - `{delayMs, reply}`: `reply`, after a delay.
 *
 * `teacherScript()` plays a well-behaved teacher: released capability queries get a score that
 * is a hash of the question (0..5), the style query a style list, rubric requests a valid JSON
 * object; `override` replaces the answer of chosen requests.
 */
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface RecordedRequest {
  /** arrival order, 0-based */
  n: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  raw: string;
  // biome-ignore lint/suspicious/noExplicitAny: a test reads the body's fields freely
  body: any;
  /** how many times this exact body arrived before (0 = the first time) */
  repeat: number;
}

export type ScriptedReply =
  | { content: string; usage?: { prompt_tokens: number; completion_tokens: number } }
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | { drop: true }
  | { hang: true }
  | { delayMs: number; reply: ScriptedReply };

export type Script = (req: RecordedRequest) => ScriptedReply | Promise<ScriptedReply>;

export interface ChatServer {
  /** base URL to give as --endpoint: http://127.0.0.1:PORT/v1 */
  url: string;
  requests: RecordedRequest[];
  /** the most requests that were open (arrived, not yet answered or dropped) at one time */
  readonly maxInFlight: number;
  /** sets maxInFlight back to the requests open now */
  resetMaxInFlight(): void;
  setScript(script: Script): void;
  /** resolves once at least `n` requests have arrived */
  waitForRequests(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startChatServer(script: Script = teacherScript()): Promise<ChatServer> {
  let current = script;
  const requests: RecordedRequest[] = [];
  const seen = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters: { n: number; resolve: () => void }[] = [];
  let open = 0;
  let maxOpen = 0;

  const send = async (res: ServerResponse, reply: ScriptedReply): Promise<void> => {
    if ("delayMs" in reply) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, reply.delayMs);
        timers.add(t);
      });
      if (!res.destroyed) await send(res, reply.reply);
      return;
    }
    if ("drop" in reply) {
      res.socket?.destroy();
      return;
    }
    if ("hang" in reply) return;
    if ("content" in reply) {
      const body = {
        id: `chatcmpl-${requests.length}`,
        object: "chat.completion",
        created: 0,
        model: "scripted",
        choices: [
          { index: 0, message: { role: "assistant", content: reply.content }, finish_reason: "stop" },
        ],
        usage: { ...(reply.usage ?? { prompt_tokens: 10, completion_tokens: 2 }), total_tokens: 0 },
      };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      return;
    }
    const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? { error: {} });
    res.writeHead(reply.status, { "content-type": "application/json", ...reply.headers }).end(text);
  };

  const server = createServer((req, res) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    res.once("close", () => open--);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let body: unknown;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const repeat = seen.get(raw) ?? 0;
      seen.set(raw, repeat + 1);
      const rec: RecordedRequest = {
        n: requests.length,
        method: req.method ?? "",
        path: req.url ?? "",
        headers: req.headers,
        raw,
        body,
        repeat,
      };
      requests.push(rec);
      for (const w of [...waiters])
        if (requests.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      Promise.resolve()
        .then(() => current(rec))
        .then((reply) => send(res, reply))
        .catch((err: unknown) => {
          if (!res.headersSent) res.writeHead(599).end(String(err));
        });
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    get maxInFlight() {
      return maxOpen;
    },
    resetMaxInFlight() {
      maxOpen = open;
    },
    setScript(s: Script) {
      current = s;
    },
    waitForRequests(n: number): Promise<void> {
      if (requests.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The text of the last user message of a request body (text parts joined). */
export function lastUserText(body: { messages?: { role: string; content: unknown }[] }): string {
  const users = (body.messages ?? []).filter((m) => m.role === "user");
  const c = users[users.length - 1]?.content;
  if (typeof c === "string") return c;
  if (Array.isArray(c))
    return c
      .filter((p: { type?: string }) => p.type === "text")
      .map((p: { text?: string }) => p.text ?? "")
      .join("");
  return "";
}

const CAPABILITY_QUERY_RE =
  /On a scale of 0 to 5, how do you rate the helpfulness of the VQA instance in training a Multimodal Large Language Model for (.+)\?$/;

export type QueryKind =
  | { kind: "capability"; name: string }
  | { kind: "styles" }
  | { kind: "rubric" }
  | { kind: "other" };

/** What a request asks (released capability / style query, or our rubric). */
export function queryOf(body: RecordedRequest["body"]): QueryKind {
  if (body?.response_format !== undefined) return { kind: "rubric" };
  const sys = body?.messages?.[0]?.content;
  if (typeof sys === "string" && sys.startsWith("You are an expert annotator")) return { kind: "rubric" };
  const text = lastUserText(body ?? {});
  const m = CAPABILITY_QUERY_RE.exec(text);
  if (m) return { kind: "capability", name: m[1] };
  if (text.endsWith("\nStyles: ")) return { kind: "styles" };
  return { kind: "other" };
}

/** A small deterministic hash of a string (FNV-1a). */
export function hashText(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

const ALL_IDS = [
  "spatial",
  "attribute",
  "logical",
  "scene",
  "finegrained",
  "language",
  "incontext",
  "comparative",
  "activity",
  "causal",
  "humanities",
  "stem",
  "data",
  "ocr",
];

/** A well-behaved teacher; `override` may answer a request differently (return undefined to keep). */
export function teacherScript(
  override?: (req: RecordedRequest, q: QueryKind) => ScriptedReply | undefined,
): (req: RecordedRequest) => ScriptedReply {
  return (req) => {
    const q = queryOf(req.body);
    const o = override?.(req, q);
    if (o !== undefined) return o;
    const text = lastUserText(req.body ?? {});
    if (q.kind === "capability") return { content: String(hashText(text) % 6) };
    if (q.kind === "styles")
      return { content: hashText(text) % 2 === 0 ? "short description, yes/no" : "detailed description" };
    if (q.kind === "rubric") {
      const scores = Object.fromEntries(ALL_IDS.map((id) => [id, hashText(text + id) % 6]));
      return { content: JSON.stringify({ scores, styles: ["short description"] }) };
    }
    return { status: 400, body: { error: { message: "unexpected request" } } };
  };
}
