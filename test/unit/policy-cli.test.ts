/**
 * `mmssr policy get|set` on a policy file, and the admin flags of `mmssr curate` refused before
 * anything connects: exit codes and messages that name the flag.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/run-cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-policy-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("mmssr policy", () => {
  it("sets a first policy, merges later flags into it, prints it", async () => {
    const file = join(dir, "policy.json");
    const first = await runCli([
      "policy",
      "set",
      "--policy-file",
      file,
      "--ratio",
      "0.2",
      "--max-total",
      "1000",
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).policy).toEqual({
      version: 0,
      ratio: 0.2,
      maxTotal: 1000,
      threshold: 0,
      maxDelayMs: 1000,
    });
    // --budget replaces the ratio; none removes the cap
    const second = await runCli([
      "policy",
      "set",
      "--policy-file",
      file,
      "--budget",
      "50",
      "--max-total",
      "none",
    ]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(
      /v0 -> v1 .*ratio 0\.2 -> \(none\), maxTotal 1000 -> \(none\), budget \(none\) -> 50/,
    );
    const got = await runCli(["policy", "get", "--policy-file", file]);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({
      policy: { version: 1, budget: 50 },
      from: { via: "cli" },
      previous: { version: 0, ratio: 0.2 },
    });
    expect(JSON.parse(await readFile(file, "utf8")).policy.version).toBe(1);
  });

  it("refuses bad values naming the flag, and changes nothing", async () => {
    const file = join(dir, "refused.json");
    expect((await runCli(["policy", "set", "--policy-file", file, "--ratio", "0.3"])).code).toBe(0);
    const bad = await runCli(["policy", "set", "--policy-file", file, "--ratio", "1.5"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--ratio: Too big/);
    const caps = await runCli(["policy", "set", "--policy-file", file, "--caps", "ocr,nope"]);
    expect(caps.code).toBe(2);
    expect(caps.stderr).toMatch(/--caps 1: /);
    const nothing = await runCli(["policy", "set", "--policy-file", file]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to set/);
    expect(JSON.parse(await readFile(file, "utf8")).policy).toMatchObject({ version: 0, ratio: 0.3 });
  });

  it("says where to look when there is no policy or no target", async () => {
    const none = await runCli(["policy", "get", "--policy-file", join(dir, "absent.json")]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no policy in the policy file .*absent\.json yet/);
    const noTarget = await runCli(["policy", "get"]);
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toMatch(/--brokers and --group .* or --policy-file/);
    const noTopic = await runCli(["policy", "get", "--brokers", "127.0.0.1:1", "--group", "g"]);
    expect(noTopic.code).toBe(2);
    expect(noTopic.stderr).toMatch(/--topic .* or --control-topic/);
  });
});

describe("mmssr curate: the admin API's flags", () => {
  const base = ["curate", "--brokers", "127.0.0.1:1", "--topic", "t", "--group", "g", "--out", "unused"];
  it("refuses an admin API without a token, and --admin-insecure off loopback, before connecting", async () => {
    const saved = process.env.MMSSR_ADMIN_TOKEN;
    delete process.env.MMSSR_ADMIN_TOKEN;
    try {
      const noToken = await runCli([...base, "--ratio", "0.2", "--admin-port", "0"]);
      expect(noToken.code).toBe(2);
      expect(noToken.stderr).toMatch(/MMSSR_ADMIN_TOKEN or --admin-token-file/);
      const open = await runCli([
        ...base,
        "--ratio",
        "0.2",
        "--admin-port",
        "0",
        "--admin-insecure",
        "--admin-host",
        "0.0.0.0",
      ]);
      expect(open.code).toBe(2);
      expect(open.stderr).toMatch(/--admin-insecure: only on a loopback --admin-host/);
      const empty = await runCli([
        ...base,
        "--ratio",
        "0.2",
        "--admin-port",
        "0",
        "--admin-token-file",
        join(dir, "missing"),
      ]);
      expect(empty.code).toBe(2);
      expect(empty.stderr).toMatch(/--admin-token-file: cannot read/);
    } finally {
      if (saved !== undefined) process.env.MMSSR_ADMIN_TOKEN = saved;
    }
  });

  it("checks the policy flags through the schema before connecting", async () => {
    const both = await runCli([...base, "--ratio", "0.2", "--budget", "5"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/ratio and budget exclude each other/);
    const cont = await runCli([...base, "--budget", "5", "--mode", "continuous"]);
    expect(cont.code).toBe(2);
    expect(cont.stderr).toMatch(/--mode continuous: needs --ratio/);
  });
});
