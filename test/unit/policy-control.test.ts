/**
 * PolicyControl over a real policy file store: the first policy comes from the flags when the
 * store holds none, the store's policy wins otherwise, changes are validated (the old policy
 * stays), an edit of the file by someone else is followed, and an invalid edit is refused.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPolicyFileStore } from "../../connectors/files/policy-file.js";
import { describeChange, PolicyControl } from "../../src/control/policy-control.js";
import { policyOrThrow } from "../../src/selection/selection-policy.js";
import { waitFor } from "../support/kafka.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-policy-control-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const from = { via: "api" as const, host: "127.0.0.1" };

async function start(path: string, flags = { ratio: 0.2 }, logs: string[] = []) {
  const store = createPolicyFileStore({ path, pollMs: 20, log: (l) => logs.push(l) });
  const control = await PolicyControl.start({
    store,
    initial: policyOrThrow(flags),
    givenFlags: ["--ratio"],
    origin: { host: "h", instance: "i" },
    accept: (p) => (p.budget !== undefined ? [{ path: "budget", message: "not here" }] : []),
    log: (l) => logs.push(l),
  });
  return { store, control, logs };
}

describe("PolicyControl", () => {
  it("writes the flags' policy when the store has none; the store's wins at the next start", async () => {
    const path = join(dir, "first.json");
    const a = await start(path);
    expect(a.control.policy).toMatchObject({ version: 0, ratio: 0.2 });
    expect(JSON.parse(await readFile(path, "utf8"))).toMatchObject({
      policy: { ratio: 0.2 },
      from: { via: "flags" },
    });
    const patched = await a.control.patch({ ratio: 0.05 }, from);
    expect(patched).toMatchObject({ ok: true, policy: { version: 1, ratio: 0.05 } });
    await a.control.close();
    await a.store.close();

    const b = await start(path, { ratio: 0.3 });
    expect(b.control.policy).toMatchObject({ version: 1, ratio: 0.05 });
    expect(b.logs.join("\n")).toMatch(/flags not applied \(the group's policy wins\): --ratio/);
    await b.control.close();
    await b.store.close();
  });

  it("refuses invalid changes with their fields and keeps the policy in force", async () => {
    const { store, control } = await start(join(dir, "invalid.json"));
    const seen: number[] = [];
    const sub = control.policy$.subscribe((p) => seen.push(p.version));
    expect(await control.patch({ ratio: 2 }, from)).toMatchObject({
      ok: false,
      status: 400,
      problems: [{ path: "ratio" }],
    });
    expect(await control.patch({ capabilityWeights: { nope: 1 } }, from)).toMatchObject({
      ok: false,
      status: 400,
    });
    expect(await control.patch({ version: 9 }, from)).toMatchObject({
      ok: false,
      problems: [{ path: "version" }],
    });
    // what this curator cannot run with (here: a budget) is refused too
    expect(await control.patch({ ratio: null, budget: 10 }, from)).toMatchObject({
      ok: false,
      problems: [{ path: "budget" }],
    });
    expect(await control.replace({ ratio: 0.1, version: 7 }, from)).toMatchObject({ ok: false, status: 409 });
    expect(control.policy).toMatchObject({ version: 0, ratio: 0.2 });
    expect(await control.replace({ ratio: 0.1, maxTotal: 5 }, from)).toMatchObject({
      ok: true,
      policy: { version: 1, ratio: 0.1, maxTotal: 5 },
    });
    expect(seen).toEqual([0, 1]);
    sub.unsubscribe();
    await control.close();
    await store.close();
  });

  it("follows an edit of the file and refuses an invalid one", async () => {
    const path = join(dir, "edited.json");
    const { store, control, logs } = await start(path);
    const written = JSON.parse(await readFile(path, "utf8"));
    await writeFile(
      path,
      JSON.stringify({ ...written, policy: { ...written.policy, version: 3, ratio: 0.4 } }),
    );
    await waitFor(async () => control.policy.version === 3, { timeoutMs: 10_000, what: "the edit followed" });
    expect(control.policy.ratio).toBe(0.4);
    expect(logs.join("\n")).toMatch(/policy v0 -> v3 .*ratio 0\.2 -> 0\.4/);
    await writeFile(path, JSON.stringify({ version: 4, ratio: 7 }));
    await waitFor(async () => logs.some((l) => /policy\.ratio: .*the policy in force stays/.test(l)), {
      timeoutMs: 10_000,
      what: "the invalid edit refused",
    });
    expect(control.policy).toMatchObject({ version: 3, ratio: 0.4 });
    // and a curator starting from that file is refused, naming the field
    await expect(createPolicyFileStore({ path }).latest()).rejects.toThrow(/policy\.ratio/);
    await control.close();
    await store.close();
  });

  it("describes a change field by field", () => {
    expect(describeChange(policyOrThrow({ ratio: 0.2 }), policyOrThrow({ budget: 5, maxTotal: 9 }))).toBe(
      "ratio 0.2 -> (none), budget (none) -> 5, maxTotal (none) -> 9",
    );
  });
});
