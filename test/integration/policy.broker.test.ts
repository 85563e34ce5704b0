/**
 * Budgets that change while curators run (issue 8), against the real broker and the CLI as a
 * user runs it: the admin API refuses what it must and changes nothing then; a PATCH changes
 * the selected share of what comes next; a `mmssr policy set` reaches every curator of the
 * group through the control topic, a curator started later shows it instead of its flags, and a
 * restart keeps it.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readPublishedEntries } from "../../connectors/sink/shared-output.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { type CurateProcess, ensureBuilt, publishedRows, startCurate } from "../support/curate-process.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { brokers, freshGroup, freshTopic, testKafka, waitFor } from "../support/kafka.js";
import { runCli } from "../support/run-cli.js";

const TOKEN = "policy-test-token";
let dir: string;
let duck: Duck;
const running = new Set<CurateProcess>();

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), "mmssr-policy-"));
  duck = await openDuck();
}, 300_000);

afterAll(async () => {
  for (const p of running) await p.kill("SIGKILL");
  duck?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const sql = (query: string) => duck.sql(query);

let batch = 0;
/** Produces n synthetic samples (ids unique across calls) to topic. */
async function produce(topic: string, n: number): Promise<void> {
  const seed = 900 + batch;
  const file = join(dir, `batch-${batch++}.jsonl`);
  const lines = syntheticSamples(n, seed).map((s) => JSON.stringify({ ...s, id: `b${seed}-${s.id}` }));
  await writeFile(file, `${lines.join("\n")}\n`);
  const r = await runCli(["produce", "--brokers", brokers().join(","), "--topic", topic, "--in", file]);
  expect(r.code, r.stderr).toBe(0);
}

interface Curator {
  process: CurateProcess;
  url: string;
}

/** A curator with the admin API on a free port; resolves once it listens. */
async function curator(
  topic: string,
  group: string,
  out: string,
  flags: string[] = [],
  ratio?: number,
): Promise<Curator> {
  const p = startCurate({
    brokers: brokers(),
    topic,
    group,
    out,
    dlqTopic: `${topic}.dlq`,
    ratio,
    windowSize: 500,
    windowMs: 1000,
    untilIdle: 600,
    // publish within a second, so that what was decided can be waited for
    rotateRows: 1000,
    rotateMs: 800,
    env: { MMSSR_ADMIN_TOKEN: TOKEN },
    extraArgs: ["--admin-port", "0", ...flags],
  });
  running.add(p);
  void p.exited.then(() => running.delete(p));
  const url = await waitFor(
    async () => {
      if (p.done) throw new Error(`the curator exited: ${p.output()}`);
      return /admin API on (http:\/\/\S+) /.exec(p.output())?.[1];
    },
    { timeoutMs: 90_000, intervalMs: 100, what: "the admin API listening" },
  );
  return { process: p, url };
}

async function api(
  c: Curator,
  method: string,
  path: string,
  body?: unknown,
  token: string | null = TOKEN,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/merge-patch+json";
  const res = await fetch(`${c.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function policyOf(c: Curator): Promise<Record<string, unknown>> {
  const r = await api(c, "GET", "/v1/policy");
  expect(r.status).toBe(200);
  return r.json;
}

/** Scored rows per policy version (and per instance): decided, selected, and rows without a reason. */
async function byVersion(
  out: string,
): Promise<Map<number, { rows: number; selected: number; unexplained: number; instances: Set<string> }>> {
  const instanceOf = new Map<string, string>();
  for (const e of await readPublishedEntries(out))
    if (e.kind === "scored") instanceOf.set(e.file.split("/").pop() ?? e.file, e.instance ?? "?");
  const rows = await sql(
    `SELECT policy_version AS v, selected, reason, filename FROM read_parquet('${join(out, "scored", "*.parquet")}', filename = true)`,
  );
  const map = new Map<
    number,
    { rows: number; selected: number; unexplained: number; instances: Set<string> }
  >();
  for (const r of rows) {
    const v = Number(r.v);
    const m = map.get(v) ?? { rows: 0, selected: 0, unexplained: 0, instances: new Set<string>() };
    m.rows++;
    if (r.selected === true) m.selected++;
    else if (r.reason === null || r.reason === undefined) m.unexplained++;
    m.instances.add(instanceOf.get(String(r.filename).split("/").pop() ?? "") ?? "?");
    map.set(v, m);
  }
  return map;
}

describe("the selection policy of running curators", () => {
  it("admin API: 401 / 403 / 400 change nothing; a PATCH sets the share of the next samples", async () => {
    const topic = await freshTopic("policy-api", 3);
    const group = freshGroup("policy-api");
    const out = join(dir, "api");
    await produce(topic, 3000);
    const c = await curator(topic, group, out, [], 0.2);
    await waitFor(async () => (await publishedRows(out)) >= 3000, {
      timeoutMs: 120_000,
      what: "the first 3000 samples decided",
    });
    const before = await policyOf(c);
    expect(before).toMatchObject({ ratio: 0.2 });

    const noToken = await api(c, "PATCH", "/v1/policy", { ratio: 0.5 }, null);
    expect(noToken.status).toBe(401);
    const wrongToken = await api(c, "PATCH", "/v1/policy", { ratio: 0.5 }, "not-the-token");
    expect(wrongToken.status).toBe(403);
    const invalid = await api(c, "PATCH", "/v1/policy", { ratio: 1.5 });
    expect(invalid.status).toBe(400);
    expect(JSON.stringify(invalid.json)).toMatch(/"path":"ratio"/);
    expect(await policyOf(c)).toEqual(before);

    const changed = await api(c, "PATCH", "/v1/policy", { ratio: 0.05 });
    expect(changed.status, JSON.stringify(changed.json)).toBe(200);
    expect(changed.json).toMatchObject({ ratio: 0.05, version: (before.version as number) + 1 });
    expect(await policyOf(c)).toEqual(changed.json);

    await produce(topic, 4000);
    await waitFor(async () => (await publishedRows(out)) >= 7000, {
      timeoutMs: 120_000,
      what: "the next 4000 samples decided",
    });
    const status = await api(c, "GET", "/v1/status");
    expect(status.status).toBe(200);
    expect(status.json).toMatchObject({
      policy: changed.json,
      model: { id: expect.stringMatching(/^mmssr-lite@/), executionProvider: "cpu" },
    });
    expect(status.json.partitions).toHaveLength(3);
    const ready = await fetch(`${c.url}/readyz`);
    expect(ready.status).toBe(200);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^mmssr_policy\{setting="ratio"\} 0\.05$/m);

    const exit = await c.process.kill("SIGTERM");
    expect(exit.code, exit.output).toBe(0);
    expect(exit.output).toMatch(/policy v\d+ -> v\d+ \(set via api from [^)]+\): ratio 0\.2 -> 0\.05/);
    const versions = await byVersion(out);
    const old = versions.get(before.version as number);
    const now = versions.get(changed.json.version as number);
    console.log(
      `policy API: selected ${old?.selected}/3000 under v${before.version} (ratio 0.2), ${now?.selected}/4000 under v${changed.json.version} (ratio 0.05)`,
    );
    expect(old?.rows).toBe(3000);
    expect(now?.rows).toBe(4000);
    expect(Math.abs((old?.selected ?? 0) / 3000 - 0.2)).toBeLessThanOrEqual(0.02);
    expect(Math.abs((now?.selected ?? 0) / 4000 - 0.05)).toBeLessThanOrEqual(0.02);
    // every sample not selected says why
    expect(old?.unexplained).toBe(0);
    expect(now?.unexplained).toBe(0);
  }, 300_000);

  it("mmssr policy set reaches every curator of the group; one started later shows it, a restart keeps it", async () => {
    const topic = await freshTopic("policy-fleet", 3);
    const group = freshGroup("policy-fleet");
    const out = join(dir, "fleet");
    await produce(topic, 2000);
    const a = await curator(topic, group, out, [], 0.2);
    await waitFor(async () => (await publishedRows(out)) >= 2000, {
      timeoutMs: 120_000,
      what: "A decided the first samples",
    });
    const first = await policyOf(a);

    // B comes later with other flags: the group's policy wins, and B says which flags it did not apply
    const b = await curator(topic, group, out, ["--max-total", "100000"], 0.3);
    expect(await policyOf(b)).toEqual(first);
    expect(b.process.output()).toMatch(/flags not applied \(the group's policy wins\): --ratio, --max-total/);
    const admin = testKafka("policy-fleet").admin();
    await admin.connect();
    try {
      await waitFor(
        async () => {
          const { groups } = await admin.describeGroups([group]);
          return groups[0]?.state === "Stable" && groups[0].members.length === 2;
        },
        { timeoutMs: 90_000, intervalMs: 200, what: "both curators in the group" },
      );
    } finally {
      await admin.disconnect();
    }

    const set = await runCli([
      "policy",
      "set",
      "--brokers",
      brokers().join(","),
      "--group",
      group,
      "--topic",
      topic,
      "--ratio",
      "0.1",
    ]);
    expect(set.code, set.stderr).toBe(0);
    const written = JSON.parse(set.stdout) as { policy: Record<string, unknown> };
    expect(written.policy).toMatchObject({ ratio: 0.1 });
    expect(written.policy.version as number).toBeGreaterThan(first.version as number);
    for (const c of [a, b])
      await waitFor(async () => (await policyOf(c)).version === written.policy.version, {
        timeoutMs: 30_000,
        what: "the change applied by both curators",
      });
    expect(await policyOf(a)).toEqual(written.policy);
    expect(await policyOf(b)).toEqual(written.policy);

    await produce(topic, 3000);
    await waitFor(async () => (await publishedRows(out)) >= 5000, {
      timeoutMs: 120_000,
      what: "the next samples decided",
    });
    const [ea, eb] = await Promise.all([a.process.kill("SIGTERM"), b.process.kill("SIGTERM")]);
    expect(ea.code, ea.output).toBe(0);
    expect(eb.code, eb.output).toBe(0);
    for (const e of [ea, eb]) expect(e.output).toMatch(/\(set via cli from [^)]+\): ratio 0\.2 -> 0\.1/);
    const now = (await byVersion(out)).get(written.policy.version as number);
    console.log(
      `policy fleet: selected ${now?.selected}/3000 under v${written.policy.version} (ratio 0.1, set by mmssr policy set) by ${now?.instances.size} curators`,
    );
    expect(now?.rows).toBe(3000);
    expect(Math.abs((now?.selected ?? 0) / 3000 - 0.1)).toBeLessThanOrEqual(0.02);
    expect(now?.instances.size, "both curators decided under the new policy").toBe(2);

    // a restart (with the old flags) starts from the group's last policy
    const again = await curator(topic, group, out, [], 0.2);
    expect(await policyOf(again)).toEqual(written.policy);
    expect(again.process.output()).toMatch(/flags not applied \(the group's policy wins\): --ratio/);
    const get = await runCli([
      "policy",
      "get",
      "--brokers",
      brokers().join(","),
      "--group",
      group,
      "--topic",
      topic,
    ]);
    expect(get.code, get.stderr).toBe(0);
    expect(JSON.parse(get.stdout)).toMatchObject({ policy: written.policy, from: { via: "cli" } });
    // SIGHUP (a closed terminal) drains as SIGTERM does
    const last = await again.process.kill("SIGHUP");
    expect(last.code, last.output).toBe(0);
    expect(last.output).toMatch(/SIGHUP: draining \(publish, commit, then exit\)/);
  }, 300_000);
});
