/**
 * The admin HTTP server of `mmssr curate` (DESIGN.md "Budgets and control"): reads and changes
 * the selection policy, shows status, starts a drain, and serves the probes and metrics an
 * orchestrator scrapes. It is plain node:http on purpose: a handful of routes does not justify a
 * framework, and the curator must not pull one in just to be steerable.
 *
 * Everything that can change the curator (or tell an outsider how it is configured) sits behind a
 * bearer token; only the probes and the metrics are open, because the tools that read those
 * (kubelet, Prometheus) rarely carry credentials and they reveal nothing a token would protect.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP } from "node:net";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import type { PolicyOrigin } from "../stream/ports.js";
import type { AdminBackend, PolicyChangeResult } from "./admin-types.js";

export interface AdminServerOptions {
  /** 0 = any free port (tests) */
  port: number;
  /** default "127.0.0.1" */
  host?: string;
  /** bearer token; required unless insecure with a loopback host */
  token?: string;
  /** --admin-insecure: allowed only when host is loopback (127.0.0.0/8, ::1, localhost) */
  insecure?: boolean;
  backend: AdminBackend;
  /** put into PolicyOrigin.instance */
  instance?: string;
  log?: (line: string) => void;
}

export interface AdminServer {
  /** http://host:port */
  readonly url: string;
  close(): Promise<void>;
}

/** A policy is a few hundred bytes; anything near this is a mistake or an attack, not a policy. */
export const MAX_BODY_BYTES = 64 * 1024;

/** How long close() lets a request in flight finish before it cuts the connection. */
const CLOSE_GRACE_MS = 1000;

const JSON_TYPE = "application/json";
const MERGE_PATCH_TYPE = "application/merge-patch+json";

/** True for hosts only this machine can reach: where running without a token is a local choice. */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  return mapped !== null && isIP(mapped[1]) === 4 && mapped[1].startsWith("127.");
}

type Reply = { status: number; body?: unknown; text?: string; headers?: Record<string, string> };
/** undefined: no reply (the client went away while sending its body) */
type Handler = (req: IncomingMessage, from: PolicyOrigin) => Promise<Reply | undefined>;
interface Route {
  /** open without a token: the probes and the metrics */
  open: boolean;
  methods: Record<string, Handler>;
}

function errorReply(status: number, code: string, message: string, extra?: Record<string, unknown>): Reply {
  return { status, body: { error: { code, message, ...extra } } };
}

/** The reply to a policy change: the new policy, or every problem with its field path. */
function changeReply(r: PolicyChangeResult): Reply {
  if (r.ok) return { status: 200, body: r.policy };
  const listed = r.problems.map((p) => `${p.path}: ${p.message}`).join("; ");
  const problems = r.problems.map((p) => ({ path: p.path, message: p.message }));
  return r.status === 409
    ? errorReply(409, "version-conflict", `version conflict: ${listed}`, { problems })
    : errorReply(r.status, "invalid-policy", `invalid policy: ${listed}`, { problems });
}

/** The media type without its parameters (`application/json; charset=utf-8` -> `application/json`). */
function mediaType(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
}

type BodyResult = { ok: true; value: unknown } | { ok: false; reply: Reply } | { ok: false; aborted: true };

const tooLarge = (): BodyResult => ({
  ok: false,
  reply: {
    ...errorReply(413, "too-large", `the body exceeds ${MAX_BODY_BYTES} bytes`),
    // Stop reading: the connection closes after the reply instead of swallowing the rest.
    headers: { connection: "close" },
  },
});

/** The body as JSON, buffering at most MAX_BODY_BYTES so a huge upload cannot exhaust memory. */
function readJson(req: IncomingMessage): Promise<BodyResult> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) return Promise.resolve(tooLarge());
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (r: BodyResult) => {
      if (done) return;
      done = true;
      req.off("data", onData);
      resolve(r);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) finish(tooLarge());
      else chunks.push(chunk);
    };
    req.on("data", onData);
    req.on("error", () => finish({ ok: false, aborted: true }));
    req.on("close", () => finish({ ok: false, aborted: true }));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      try {
        finish({ ok: true, value: JSON.parse(text) });
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        finish({ ok: false, reply: errorReply(400, "invalid-json", `the body is not valid JSON: ${why}`) });
      }
    });
  });
}

/** A handler of a JSON body of one of `types`: 415 for another type, then the body checks. */
function withJsonBody(
  types: readonly string[],
  then: (body: unknown, from: PolicyOrigin) => Promise<Reply>,
): Handler {
  return async (req, from) => {
    const type = mediaType(req);
    if (!types.includes(type))
      return errorReply(
        415,
        "unsupported-media-type",
        `content-type must be ${types.join(" or ")}, not ${type === "" ? "(none)" : type}`,
      );
    const body = await readJson(req);
    if (body.ok) return then(body.value, from);
    return "aborted" in body ? undefined : body.reply;
  };
}

function routesOf(backend: AdminBackend): Record<string, Route> {
  return {
    "/healthz": { open: true, methods: { GET: async () => ({ status: 200, body: { ok: true } }) } },
    "/metrics": {
      open: true,
      methods: {
        GET: async () => {
          const m = await backend.metrics();
          return { status: 200, text: m.text, headers: { "content-type": m.contentType } };
        },
      },
    },
    "/readyz": {
      open: true,
      methods: {
        GET: async () => {
          const r = await backend.ready();
          return { status: r.ready ? 200 : 503, body: { ready: r.ready, checks: r.checks } };
        },
      },
    },
    "/v1/policy": {
      open: false,
      methods: {
        GET: async () => ({ status: 200, body: backend.policy() }),
        PATCH: withJsonBody([MERGE_PATCH_TYPE, JSON_TYPE], async (patch, from) =>
          changeReply(await backend.patchPolicy(patch, from)),
        ),
        PUT: withJsonBody([JSON_TYPE], async (body, from) =>
          changeReply(await backend.putPolicy(body, from)),
        ),
      },
    },
    "/v1/status": {
      open: false,
      methods: { GET: async () => ({ status: 200, body: await backend.status() }) },
    },
    "/v1/drain": {
      open: false,
      methods: {
        POST: async () => {
          backend.drain();
          return { status: 202, body: { draining: true } };
        },
      },
    },
  };
}

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest();

/**
 * 401 when the request carries no bearer credential, 403 when it carries the wrong one, undefined
 * when it may pass. Both sides are hashed first so timingSafeEqual compares equal lengths and the
 * comparison time says nothing about the token's length or prefix.
 */
function refusal(req: IncomingMessage, tokenHash: Buffer | undefined): Reply | undefined {
  if (tokenHash === undefined) return undefined;
  const m = /^Bearer[ \t]+(\S.*?)[ \t]*$/i.exec(req.headers.authorization ?? "");
  if (m === null)
    return {
      ...errorReply(401, "unauthorized", "this route needs an Authorization: Bearer <token> header"),
      headers: { "www-authenticate": 'Bearer realm="mmssr"' },
    };
  if (!timingSafeEqual(sha256(m[1]), tokenHash))
    return errorReply(403, "forbidden", "the bearer token is not the admin token");
  return undefined;
}

/** The client's address, IPv4-mapped IPv6 shown as plain IPv4 (what an operator would type). */
function clientOf(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

function writeReply(res: ServerResponse, reply: Reply): void {
  if (reply.text !== undefined) {
    res.writeHead(reply.status, { "cache-control": "no-store", ...reply.headers }).end(reply.text);
    return;
  }
  const payload = reply.body === undefined ? "" : `${JSON.stringify(reply.body)}\n`;
  res
    .writeHead(reply.status, {
      "content-type": JSON_TYPE,
      "cache-control": "no-store",
      "content-length": String(Buffer.byteLength(payload)),
      ...reply.headers,
    })
    .end(payload);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Starts the admin server on host:port. It refuses (MmssrError USAGE) to serve without a token,
 * unless told --admin-insecure on a loopback host, where only this machine can reach it.
 */
export async function startAdminServer(o: AdminServerOptions): Promise<AdminServer> {
  // "[::1]" as in a URL; listen() takes the bare address
  const host = (o.host ?? "127.0.0.1").trim().replace(/^\[(.*)\]$/, "$1");
  const log = o.log ?? (() => {});
  const token = o.token?.trim() || undefined;
  const loopback = isLoopbackHost(host);
  if (o.insecure && !loopback)
    throw new MmssrError(
      ERROR_CODES.USAGE,
      `--admin-insecure is allowed only with a loopback --admin-host (127.0.0.1, ::1, localhost), not ${host}: ` +
        "anyone who can reach it could change the policy; give a token with --admin-token-file or MMSSR_ADMIN_TOKEN",
    );
  if (token === undefined && !o.insecure)
    throw new MmssrError(
      ERROR_CODES.USAGE,
      "the admin API needs a token: give --admin-token-file FILE or set MMSSR_ADMIN_TOKEN " +
        "(or, on a loopback --admin-host only, --admin-insecure to serve it without one)",
    );
  const tokenHash = token === undefined ? undefined : sha256(token);
  const routes = routesOf(o.backend);

  let closing: Promise<void> | undefined;
  /** Once closing, each reply ends its connection, so close() waits for no keep-alive timeout. */
  const send = (res: ServerResponse, reply: Reply): void =>
    writeReply(res, closing ? { ...reply, headers: { ...reply.headers, connection: "close" } } : reply);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0];
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined;
    const client = clientOf(req);
    const changes = path === "/v1/policy" && (method === "PATCH" || method === "PUT");
    if (changes || (path === "/v1/drain" && method === "POST"))
      res.once("finish", () => log(`admin: ${method} ${path} from ${client} -> ${res.statusCode}`));
    // Only the open routes answer before the token is checked, so a stranger learns no route.
    const refused = route?.open ? undefined : refusal(req, tokenHash);
    if (refused) return send(res, refused);
    if (route === undefined) return send(res, errorReply(404, "not-found", `no route ${path}`));
    const handler = Object.hasOwn(route.methods, method) ? route.methods[method] : undefined;
    if (handler === undefined) {
      const allow = Object.keys(route.methods).join(", ");
      return send(res, {
        ...errorReply(405, "method-not-allowed", `${path} takes ${allow}, not ${method}`),
        headers: { allow },
      });
    }
    const from: PolicyOrigin = { via: "api", host: client };
    if (o.instance !== undefined) from.instance = o.instance;
    let reply: Reply | undefined;
    try {
      reply = await handler(req, from);
    } catch (err) {
      log(`admin: ${method} ${path} from ${client} failed: ${messageOf(err)}`);
      reply = errorReply(500, "internal", messageOf(err));
    }
    if (reply !== undefined) send(res, reply);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      // Only a bug of our own lands here (send failing, say): answer if we still can, never crash.
      log(`admin: ${req.method} ${req.url} failed: ${messageOf(err)}`);
      if (!res.headersSent) send(res, errorReply(500, "internal", messageOf(err)));
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new MmssrError(
          ERROR_CODES.PORT_UNAVAILABLE,
          `--admin-port: cannot serve the admin API on ${host}:${o.port}: ${err.code ?? messageOf(err)}` +
            (err.code === "EADDRINUSE" ? " (another process has that port; choose another)" : ""),
          { cause: err },
        ),
      );
    server.once("error", onError);
    server.listen(o.port, host, () => {
      server.off("error", onError);
      resolve();
    });
  });
  // An error after listening (EMFILE on accept, say) must not take the curator down.
  server.on("error", (err) => log(`admin: server error: ${messageOf(err)}`));

  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : o.port;
  const url = `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;

  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        // Idle keep-alive connections would hold close() (and the process) for their timeout;
        // one in flight gets a moment to finish its reply (which then closes it) before it is cut.
        const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
        cut.unref();
        server.close((err) => {
          clearTimeout(cut);
          if (err) reject(err);
          else resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
