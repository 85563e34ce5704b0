import { describe, expect, it } from "vitest";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { CAPABILITY_IDS } from "../domain/taxonomy.js";
import { parsePolicy, patchPolicy, type SelectionPolicy } from "../selection/selection-policy.js";
import type { PolicyOrigin } from "../stream/ports.js";
import {
  type AdminServer,
  type AdminServerOptions,
  isLoopbackHost,
  startAdminServer,
} from "./admin-server.js";
import type { AdminBackend, PolicyChangeResult } from "./admin-types.js";

const TOKEN = "s3cret-admin-token";
const auth = { authorization: `Bearer ${TOKEN}` };
const patchHeaders = { ...auth, "content-type": "application/merge-patch+json" };

/**
 * A curator in miniature: a real policy changed by the real patchPolicy/parsePolicy, with every
 * call recorded so a test can tell that a refused request never reached it.
 */
function testBackend() {
  const first = parsePolicy({ ratio: 0.1 });
  if (!first.ok) throw new Error("bad test policy");
  const state = {
    policy: first.policy as SelectionPolicy,
    calls: [] as string[],
    origins: [] as PolicyOrigin[],
    ready: true,
    drains: 0,
    throwing: false,
    /** when set, status() waits for it: a request still in flight */
    gate: undefined as Promise<void> | undefined,
  };
  const enter = (name: string) => {
    state.calls.push(name);
    if (state.throwing) throw new Error(`${name} broke`);
  };
  const backend: AdminBackend = {
    policy() {
      enter("policy");
      return state.policy;
    },
    async patchPolicy(patch, from): Promise<PolicyChangeResult> {
      enter("patchPolicy");
      state.origins.push(from);
      const r = patchPolicy(state.policy, patch);
      if (!r.ok) return { ok: false, status: 400, problems: r.problems };
      state.policy = r.policy;
      return r;
    },
    async putPolicy(body, from): Promise<PolicyChangeResult> {
      enter("putPolicy");
      state.origins.push(from);
      const given = (body as { version?: unknown } | null)?.version;
      if (given !== undefined && given !== state.policy.version)
        return {
          ok: false,
          status: 409,
          problems: [{ path: "version", message: `is ${state.policy.version}, not ${String(given)}` }],
        };
      const r = parsePolicy({ ...(body as object), version: state.policy.version + 1 });
      if (!r.ok) return { ok: false, status: 400, problems: r.problems };
      state.policy = r.policy;
      return r;
    },
    async status() {
      enter("status");
      await state.gate;
      return { partitions: [{ topic: "t", partition: 0, lag: 3 }], policy: state.policy };
    },
    async ready() {
      enter("ready");
      return { ready: state.ready, checks: { broker: true, model: state.ready } };
    },
    drain() {
      enter("drain");
      state.drains++;
    },
    async metrics() {
      enter("metrics");
      return { contentType: "text/plain; version=0.0.4; charset=utf-8", text: "mmssr_up 1\n" };
    },
  };
  return { backend, state };
}

async function withServer(
  options: Partial<AdminServerOptions>,
  test: (s: AdminServer, b: ReturnType<typeof testBackend>, logged: string[]) => Promise<void>,
): Promise<void> {
  const b = testBackend();
  const logged: string[] = [];
  const server = await startAdminServer({
    port: 0,
    token: TOKEN,
    backend: b.backend,
    instance: "curator-1",
    log: (line) => logged.push(line),
    ...options,
  });
  try {
    await test(server, b, logged);
  } finally {
    await server.close();
  }
}

/** What the tests read of a JSON body: an error's fields, or anything else by name. */
interface Body {
  error: { code: string; message: string; problems: { path: string; message: string }[] };
  [field: string]: unknown;
}

/** The JSON body of a response, checking the content type and the trailing newline on the way. */
async function json(res: Response): Promise<Body> {
  expect(res.headers.get("content-type")).toBe("application/json");
  const text = await res.text();
  expect(text.endsWith("\n")).toBe(true);
  return JSON.parse(text);
}

async function startError(
  options: Partial<AdminServerOptions>,
  code: string = ERROR_CODES.USAGE,
): Promise<MmssrError> {
  const err = await startAdminServer({ port: 0, backend: testBackend().backend, ...options }).then(
    async (s) => {
      await s.close();
      throw new Error("the server started");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MmssrError);
  expect((err as MmssrError).code).toBe(code);
  return err as MmssrError;
}

describe("startAdminServer: refuses to serve unprotected", () => {
  it("refuses without a token, and an empty or blank token counts as none", async () => {
    for (const token of [undefined, "", "  \n"]) {
      const err = await startError({ token });
      expect(err.message).toMatch(/--admin-token-file/);
      expect(err.message).toMatch(/MMSSR_ADMIN_TOKEN/);
      expect(err.message).toMatch(/--admin-insecure/);
      expect(err.message).toMatch(/--admin-host/);
    }
  });

  it("refuses --admin-insecure on a host other machines can reach, token or not", async () => {
    for (const token of [undefined, TOKEN]) {
      const err = await startError({ host: "0.0.0.0", insecure: true, token });
      expect(err.message).toMatch(/--admin-insecure/);
      expect(err.message).toMatch(/0\.0\.0\.0/);
    }
  });

  it("names host:port when it cannot listen", async () => {
    await withServer({}, async (s) => {
      const port = Number(new URL(s.url).port);
      const err = await startError({ token: TOKEN, port }, ERROR_CODES.PORT_UNAVAILABLE);
      expect(err.message).toContain(`127.0.0.1:${port}`);
      expect(err.message).toMatch(/EADDRINUSE/);
    });
  });

  it("knows loopback hosts", () => {
    for (const h of ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "example.com", "127.example.com"])
      expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe("admin server: --admin-insecure on loopback", () => {
  it("serves without a token", async () => {
    await withServer({ token: undefined, insecure: true }, async (s, b) => {
      expect(s.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${s.url}/v1/policy`);
      expect(res.status).toBe(200);
      expect(await json(res)).toEqual(b.state.policy);
    });
  });

  it("still asks for the token when one is given", async () => {
    await withServer({ insecure: true }, async (s) => {
      expect((await fetch(`${s.url}/v1/policy`)).status).toBe(401);
      expect((await fetch(`${s.url}/v1/policy`, { headers: auth })).status).toBe(200);
    });
  });
});

describe("admin server: authentication", () => {
  it("401 without a bearer credential, with WWW-Authenticate, and the backend is never called", async () => {
    await withServer({}, async (s, b) => {
      const before = b.state.policy;
      for (const authorization of [
        undefined,
        `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}`,
        "Bearer",
      ]) {
        const headers: Record<string, string> = { "content-type": "application/merge-patch+json" };
        if (authorization !== undefined) headers.authorization = authorization;
        const res = await fetch(`${s.url}/v1/policy`, {
          method: "PATCH",
          headers,
          body: JSON.stringify({ ratio: 0.05 }),
        });
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe('Bearer realm="mmssr"');
        expect((await json(res)).error.code).toBe("unauthorized");
      }
      for (const path of ["/v1/policy", "/v1/status", "/nowhere"])
        expect((await fetch(`${s.url}${path}`)).status).toBe(401);
      expect((await fetch(`${s.url}/v1/drain`, { method: "POST" })).status).toBe(401);
      expect(b.state.calls).toEqual([]);
      expect(b.state.policy).toBe(before);
      expect(b.state.drains).toBe(0);
    });
  });

  it("403 for a wrong token, of any length, and nothing changes", async () => {
    await withServer({}, async (s, b) => {
      const before = b.state.policy;
      for (const wrong of ["nope", `${TOKEN}x`, TOKEN.toUpperCase()]) {
        const res = await fetch(`${s.url}/v1/policy`, {
          method: "PATCH",
          headers: { authorization: `Bearer ${wrong}`, "content-type": "application/json" },
          body: JSON.stringify({ ratio: 0.05 }),
        });
        expect(res.status).toBe(403);
        expect((await json(res)).error.code).toBe("forbidden");
      }
      expect(b.state.calls).toEqual([]);
      expect(b.state.policy).toBe(before);
    });
  });

  it("takes the scheme in any case", async () => {
    await withServer({}, async (s) => {
      const res = await fetch(`${s.url}/v1/policy`, { headers: { authorization: `bearer ${TOKEN}` } });
      expect(res.status).toBe(200);
    });
  });
});

describe("admin server: policy", () => {
  it("PATCH changes the policy (version + 1), GET shows it, and the change is logged with its origin", async () => {
    await withServer({}, async (s, b, logged) => {
      const res = await fetch(`${s.url}/v1/policy`, {
        method: "PATCH",
        headers: patchHeaders,
        body: JSON.stringify({ ratio: 0.05 }),
      });
      expect(res.status).toBe(200);
      const changed = await json(res);
      expect(changed).toMatchObject({ ratio: 0.05, version: 1 });
      expect(b.state.policy.ratio).toBe(0.05);
      expect(await json(await fetch(`${s.url}/v1/policy`, { headers: auth }))).toEqual(changed);
      expect(b.state.origins).toEqual([{ via: "api", host: "127.0.0.1", instance: "curator-1" }]);
      expect(
        logged.some((l) => /PATCH \/v1\/policy/.test(l) && l.includes("127.0.0.1") && l.includes("200")),
      ).toBe(true);
    });
  });

  it("takes application/json for a patch too", async () => {
    await withServer({}, async (s, b) => {
      const res = await fetch(`${s.url}/v1/policy`, {
        method: "PATCH",
        headers: { ...auth, "content-type": "application/json; charset=utf-8" },
        body: JSON.stringify({ threshold: 2 }),
      });
      expect(res.status).toBe(200);
      expect(b.state.policy).toMatchObject({ threshold: 2, version: 1 });
    });
  });

  it("400 invalid-policy for an invalid patch, naming the field, and the old policy stays", async () => {
    await withServer({}, async (s, b, logged) => {
      const before = b.state.policy;
      const res = await fetch(`${s.url}/v1/policy`, {
        method: "PATCH",
        headers: patchHeaders,
        body: JSON.stringify({ ratio: 1.5 }),
      });
      expect(res.status).toBe(400);
      const { error } = await json(res);
      expect(error.code).toBe("invalid-policy");
      expect(error.problems.map((p) => p.path)).toEqual(["ratio"]);
      expect(error.message).toContain("ratio: ");
      expect(b.state.policy).toBe(before);
      expect(logged.some((l) => l.includes("PATCH /v1/policy") && l.includes("400"))).toBe(true);
    });
  });

  it("lists every problem in the message", async () => {
    await withServer({}, async (s) => {
      const res = await fetch(`${s.url}/v1/policy`, {
        method: "PATCH",
        headers: patchHeaders,
        body: JSON.stringify({ threshold: -99, maxDelayMs: 0 }),
      });
      expect(res.status).toBe(400);
      const { error } = await json(res);
      expect(error.problems.map((p) => p.path).sort()).toEqual(["maxDelayMs", "threshold"]);
      expect(error.message).toContain("threshold: ");
      expect(error.message).toContain("maxDelayMs: ");
    });
  });

  it("400 invalid-json for a body that is not JSON, naming the parse error", async () => {
    await withServer({}, async (s, b) => {
      for (const body of ["{ratio: 0.05", ""]) {
        const res = await fetch(`${s.url}/v1/policy`, { method: "PATCH", headers: patchHeaders, body });
        expect(res.status).toBe(400);
        const { error } = await json(res);
        expect(error.code).toBe("invalid-json");
        expect(error.message).toMatch(/JSON/);
        expect(error.message.length).toBeGreaterThan("the body is not valid JSON: ".length);
      }
      expect(b.state.calls).toEqual([]);
    });
  });

  it("415 for another content type, before reading the body", async () => {
    await withServer({}, async (s, b) => {
      for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {
        const res = await fetch(`${s.url}/v1/policy`, {
          method: "PATCH",
          headers: { ...auth, "content-type": type },
          body: JSON.stringify({ ratio: 0.05 }),
        });
        expect(res.status).toBe(415);
        expect((await json(res)).error.code).toBe("unsupported-media-type");
      }
      const put = await fetch(`${s.url}/v1/policy`, {
        method: "PUT",
        headers: { ...auth, "content-type": "text/plain" },
        body: JSON.stringify({ ratio: 0.05 }),
      });
      expect(put.status).toBe(415);
      expect(b.state.calls).toEqual([]);
    });
  });

  it("413 for a body over 64 KiB, sized or streamed, and it keeps serving", async () => {
    await withServer({}, async (s, b) => {
      const big = JSON.stringify({ ratio: 0.05, pad: "x".repeat(100 * 1024) });
      const sized = await fetch(`${s.url}/v1/policy`, { method: "PATCH", headers: patchHeaders, body: big });
      expect(sized.status).toBe(413);
      expect((await json(sized)).error.code).toBe("too-large");

      const chunk = new TextEncoder().encode(`"${"y".repeat(16 * 1024)}`);
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ < 8) controller.enqueue(chunk);
          else controller.close();
        },
      });
      const streamed = await fetch(`${s.url}/v1/policy`, {
        method: "PATCH",
        headers: patchHeaders,
        body: stream,
        duplex: "half",
      } as RequestInit);
      expect(streamed.status).toBe(413);
      await streamed.text();

      expect(b.state.calls).toEqual([]);
      expect((await fetch(`${s.url}/v1/policy`, { headers: auth })).status).toBe(200);
    });
  });

  it("PUT replaces the whole policy; a stale version is a 409 version-conflict", async () => {
    await withServer({}, async (s, b) => {
      const whole = { budget: 50, threshold: 1, maxDelayMs: 500, capabilities: CAPABILITY_IDS.slice(0, 2) };
      const res = await fetch(`${s.url}/v1/policy`, {
        method: "PUT",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ ...whole, version: 0 }),
      });
      expect(res.status).toBe(200);
      expect(await json(res)).toEqual({ ...whole, version: 1 });
      expect(b.state.policy.ratio).toBeUndefined();

      const stale = await fetch(`${s.url}/v1/policy`, {
        method: "PUT",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ ratio: 0.3, version: 0 }),
      });
      expect(stale.status).toBe(409);
      const { error } = await json(stale);
      expect(error.code).toBe("version-conflict");
      expect(error.problems[0].path).toBe("version");
      expect(error.message).toContain("version: ");
      expect(b.state.policy.version).toBe(1);
    });
  });
});

describe("admin server: routes", () => {
  it("404 not-found for an unknown path, 405 with Allow for a wrong method", async () => {
    await withServer({}, async (s, b) => {
      const missing = await fetch(`${s.url}/v1/nothing`, { headers: auth });
      expect(missing.status).toBe(404);
      expect((await json(missing)).error.code).toBe("not-found");

      const wrong = await fetch(`${s.url}/v1/policy`, { method: "DELETE", headers: auth });
      expect(wrong.status).toBe(405);
      expect(wrong.headers.get("allow")).toBe("GET, PATCH, PUT");
      expect((await json(wrong)).error.code).toBe("method-not-allowed");

      const drainGet = await fetch(`${s.url}/v1/drain`, { headers: auth });
      expect(drainGet.status).toBe(405);
      expect(drainGet.headers.get("allow")).toBe("POST");

      const health = await fetch(`${s.url}/healthz`, { method: "POST" });
      expect(health.status).toBe(405);
      expect(health.headers.get("allow")).toBe("GET");
      expect(b.state.calls).toEqual([]);
    });
  });

  it("ignores a query string", async () => {
    await withServer({}, async (s) => {
      expect((await fetch(`${s.url}/v1/policy?pretty=1`, { headers: auth })).status).toBe(200);
    });
  });

  it("/healthz, /metrics and /readyz answer without a token; /readyz is 503 when not ready", async () => {
    await withServer({}, async (s, b) => {
      const health = await fetch(`${s.url}/healthz`);
      expect(health.status).toBe(200);
      expect(await json(health)).toEqual({ ok: true });

      const metrics = await fetch(`${s.url}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(await metrics.text()).toBe("mmssr_up 1\n");

      const ready = await fetch(`${s.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await json(ready)).toEqual({ ready: true, checks: { broker: true, model: true } });

      b.state.ready = false;
      const unready = await fetch(`${s.url}/readyz`);
      expect(unready.status).toBe(503);
      expect(await json(unready)).toEqual({ ready: false, checks: { broker: true, model: false } });
    });
  });

  it("GET /v1/status is the backend's status", async () => {
    await withServer({}, async (s, b) => {
      const res = await fetch(`${s.url}/v1/status`, { headers: auth });
      expect(res.status).toBe(200);
      expect(await json(res)).toEqual({
        partitions: [{ topic: "t", partition: 0, lag: 3 }],
        policy: b.state.policy,
      });
    });
  });

  it("POST /v1/drain starts a drain: 202", async () => {
    await withServer({}, async (s, b, logged) => {
      const res = await fetch(`${s.url}/v1/drain`, { method: "POST", headers: auth });
      expect(res.status).toBe(202);
      expect(await json(res)).toEqual({ draining: true });
      expect(b.state.drains).toBe(1);
      expect(logged.some((l) => l.includes("POST /v1/drain") && l.includes("202"))).toBe(true);
    });
  });

  it("500 internal when the backend throws, logged, and it keeps serving", async () => {
    await withServer({}, async (s, b, logged) => {
      b.state.throwing = true;
      for (const [path, init] of [
        ["/v1/policy", { headers: auth }],
        ["/v1/status", { headers: auth }],
        ["/readyz", {}],
        ["/v1/policy", { method: "PATCH", headers: patchHeaders, body: JSON.stringify({ ratio: 0.2 }) }],
      ] as const) {
        const res = await fetch(`${s.url}${path}`, init);
        expect(res.status, path).toBe(500);
        const { error } = await json(res);
        expect(error.code).toBe("internal");
        expect(error.message).toMatch(/broke/);
      }
      expect(logged.filter((l) => l.includes("broke")).length).toBeGreaterThanOrEqual(4);
      b.state.throwing = false;
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${s.url}/v1/policy`, { headers: auth })).status).toBe(200);
    });
  });

  it("close() returns promptly although a keep-alive connection is open", async () => {
    const b = testBackend();
    const s = await startAdminServer({ port: 0, token: TOKEN, backend: b.backend });
    const res = await fetch(`${s.url}/healthz`, { headers: { connection: "keep-alive" } });
    await res.text();
    const t0 = Date.now();
    await s.close();
    expect(Date.now() - t0).toBeLessThan(500);
    await expect(fetch(`${s.url}/healthz`)).rejects.toThrow();
  });

  it("close() lets a request in flight finish its reply", async () => {
    await withServer({}, async (s, b) => {
      let open = () => {};
      b.state.gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      const pending = fetch(`${s.url}/v1/status`, { headers: auth });
      while (!b.state.calls.includes("status")) await new Promise((r) => setTimeout(r, 5));
      const t0 = Date.now();
      const closed = s.close();
      setTimeout(open, 50);
      const res = await pending;
      expect(res.status).toBe(200);
      expect(res.headers.get("connection")).toBe("close");
      await closed;
      expect(Date.now() - t0).toBeLessThan(800);
    });
  });
});
