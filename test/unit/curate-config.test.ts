/**
 * One schema for `mmssr curate`'s flags, config files and MMSSR_* environment variables: the
 * precedence of the layers, errors that name where the bad value came from, the rules between
 * keys, `mmssr config check`, and a curate run driven by a config file.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import {
  defaultOf,
  envOf,
  flagOf,
  loadConfigFile,
  resolveCurateConfig,
} from "../../src/app/curate-config.js";
import { buildProgram } from "../../src/cli/main.js";
import { POLICY_FLAGS, policyFlagOf } from "../../src/cli/policy-flags.js";
import { createLogger } from "../../src/util/logger.js";
import { runCli } from "../support/run-cli.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-config-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const kafka = { brokers: ["b:9092"], topic: "t", group: "g", out: "/data/out", policy: { ratio: 0.3 } };
const fileOf = (data: unknown) => ({ path: "curate.yaml", data });
const noPolicyFlags = { input: {}, given: [], flagOf: policyFlagOf };

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect((err as { code?: string }).code).toBe("MMSSR_USAGE");
    return (err as Error).message;
  }
  throw new Error("expected the settings to be refused");
}

describe("layers", () => {
  it("default < file < environment < flag, and each value says where it came from", () => {
    const r = resolveCurateConfig({
      file: fileOf({ ...kafka, windowSize: 500, workers: 2, rotateMs: 1000 }),
      env: { MMSSR_WORKERS: "3", MMSSR_ROTATE_MS: "2000", MMSSR_KAFKA_BROKERS: "ignored:1" },
      flags: { rotateMs: "3000" },
      policyFlags: noPolicyFlags,
    });
    expect(r.config.windowMs).toBe(defaultOf("windowMs"));
    expect(r.origins.windowMs).toEqual({ kind: "default" });
    expect(r.config.windowSize).toBe(500);
    expect(r.origins.windowSize).toEqual({ kind: "file", path: "curate.yaml" });
    expect(r.config.workers).toBe(3);
    expect(r.origins.workers).toEqual({ kind: "env", name: "MMSSR_WORKERS" });
    expect(r.config.rotateMs).toBe(3000);
    expect(r.origins.rotateMs).toEqual({ kind: "flag", flag: "--rotate-ms" });
    expect(r.config.brokers).toEqual(["b:9092"]);
    expect(r.config.policy.ratio).toBe(0.3);
  });

  it("names keys, variables and flags by one rule", () => {
    expect(flagOf("heartbeatIntervalMs")).toBe("--heartbeat-interval-ms");
    expect(envOf("heartbeatIntervalMs")).toBe("MMSSR_HEARTBEAT_INTERVAL_MS");
    expect(envOf("in")).toBe("MMSSR_IN");
  });

  it("reads text from the environment and flags as the key's kind", () => {
    const r = resolveCurateConfig({
      file: fileOf({ ...kafka, brokers: "a:1, b:2" }),
      env: { MMSSR_CUDA_FALLBACK: "yes", MMSSR_MAX_MISSING_IMAGES: "0.25" },
      flags: { allowImageHosts: "x.example.com,y.example.com", images: false },
      policyFlags: noPolicyFlags,
    });
    expect(r.config.brokers).toEqual(["a:1", "b:2"]);
    expect(r.config.cudaFallback).toBe(true);
    expect(r.config.maxMissingImages).toBe(0.25);
    expect(r.config.allowImageHosts).toEqual(["x.example.com", "y.example.com"]);
    expect(r.config.images).toBe(false);
  });

  it("policy: the file's section under the flags; a --ratio flag replaces the file's budget", () => {
    const r = resolveCurateConfig({
      file: fileOf({ ...kafka, policy: { budget: 100, threshold: 1 } }),
      policyFlags: { input: { ratio: 0.1 }, given: ["--ratio"], flagOf: policyFlagOf },
    });
    expect(r.config.policy.ratio).toBe(0.1);
    expect(r.config.policy.budget).toBeUndefined();
    expect(r.config.policy.threshold).toBe(1);
    expect(r.givenPolicy).toEqual([
      "--ratio",
      "policy.budget (curate.yaml)",
      "policy.threshold (curate.yaml)",
    ]);
  });
});

describe("errors name where the value came from, all at once", () => {
  it("a file key, an environment variable, a flag and a policy field", () => {
    const message = problemsOf(() =>
      resolveCurateConfig({
        file: fileOf({ ...kafka, windowSize: 0, "rotate-ms": 5, ep: "tpu", policy: { ratio: 2 } }),
        env: { MMSSR_WORKERS: "two" },
        flags: { threads: "-1" },
        policyFlags: noPolicyFlags,
      }),
    );
    expect(message).toMatch(/^6 problems in the settings:/);
    expect(message).toContain("windowSize (curate.yaml): expected a number >= 1, got 0");
    expect(message).toContain("rotate-ms (curate.yaml): unknown setting (did you mean rotateMs?)");
    expect(message).toContain('ep (curate.yaml): expected cpu or cuda, got "tpu"');
    expect(message).toContain('MMSSR_WORKERS: expected a number, got "two"');
    expect(message).toContain("--threads: expected a number >= 1, got -1");
    expect(message).toContain("policy.ratio (curate.yaml): ");
  });

  it("a misspelt MMSSR_ variable is named; other MMSSR_ variables pass", () => {
    const message = problemsOf(() =>
      resolveCurateConfig({ file: fileOf(kafka), env: { MMSSR_WORKER: "2", MMSSR_WINDOWSIZE: "5" } }),
    );
    expect(message).toContain("MMSSR_WORKER: not a setting (did you mean MMSSR_WORKERS?)");
    expect(message).toContain("MMSSR_WINDOWSIZE: not a setting (did you mean MMSSR_WINDOW_SIZE?)");
    const env = {
      MMSSR_KAFKA_SSL: "1",
      MMSSR_ADMIN_TOKEN: "t",
      MMSSR_KAFKA_LOG_LEVEL: "warn",
      MMSSR_ID: "x",
    };
    expect(() => resolveCurateConfig({ file: fileOf(kafka), env })).not.toThrow();
  });

  it("a bad policy flag is named as the flag", () => {
    const message = problemsOf(() =>
      resolveCurateConfig({
        file: fileOf({ ...kafka, policy: {} }),
        policyFlags: { input: { ratio: 1.5 }, given: ["--ratio"], flagOf: policyFlagOf },
      }),
    );
    expect(message).toMatch(/^--ratio: /);
  });

  it("a file that is not a mapping", () => {
    expect(problemsOf(() => resolveCurateConfig({ file: fileOf([1, 2]) }))).toContain(
      "curate.yaml: expected a mapping of settings",
    );
  });
});

describe("rules between keys", () => {
  const check = (data: Record<string, unknown>, env: Record<string, string> = {}) =>
    problemsOf(() => resolveCurateConfig({ file: fileOf({ ...kafka, ...data }), env }));

  it("a heartbeat at most a third of the session", () => {
    expect(check({ sessionTimeoutMs: 10_000, heartbeatIntervalMs: 4_000 })).toBe(
      "heartbeatIntervalMs (curate.yaml): must be at most a third of sessionTimeoutMs (curate.yaml) (10000 ms): 4000 ms given",
    );
    expect(() =>
      resolveCurateConfig({
        file: fileOf({ ...kafka, sessionTimeoutMs: 12_000, heartbeatIntervalMs: 4_000 }),
      }),
    ).not.toThrow();
  });

  it("one source: Kafka (all of brokers, topic, group) or a file, not both", () => {
    expect(check({ in: "samples.jsonl" })).toMatch(
      /^in \(curate\.yaml\): a file source takes no brokers \(curate\.yaml\), topic \(curate\.yaml\), group \(curate\.yaml\)$/,
    );
    expect(
      problemsOf(() =>
        resolveCurateConfig({ file: fileOf({ topic: "t", out: "o", policy: { ratio: 0.1 } }) }),
      ),
    ).toMatch(/^source: give --brokers, --topic and --group .*missing: brokers, group$/);
  });

  it("continuous mode needs a ratio", () => {
    expect(check({ mode: "continuous", policy: { budget: 10 } })).toMatch(
      /^mode \(curate\.yaml\) continuous: needs --ratio/,
    );
  });

  it("the admin API: a token, its own port, insecure only on loopback", () => {
    expect(check({ adminPort: 8080 })).toMatch(
      /^adminPort \(curate\.yaml\): the admin API needs a bearer token/,
    );
    const token = { MMSSR_ADMIN_TOKEN: "s3cret" };
    expect(() =>
      resolveCurateConfig({ file: fileOf({ ...kafka, adminPort: 8080 }), env: token }),
    ).not.toThrow();
    expect(check({ adminPort: 9464, metricsPort: 9464 }, token)).toMatch(
      /^adminPort \(curate\.yaml\): the same port as metricsPort \(curate\.yaml\) \(9464\)/,
    );
    expect(check({ adminPort: 8080, adminInsecure: true, adminHost: "0.0.0.0" })).toMatch(
      /^adminInsecure \(curate\.yaml\): only on a loopback --admin-host, not 0\.0\.0\.0/,
    );
  });
});

describe("config files", () => {
  it("YAML and JSON; a syntax error names the line; other extensions are refused", async () => {
    const yml = join(dir, "ok.yaml");
    await writeFile(yml, "topic: t\nwindowSize: 500\npolicy:\n  ratio: 0.2\n");
    expect((await loadConfigFile(yml)).data).toEqual({ topic: "t", windowSize: 500, policy: { ratio: 0.2 } });
    const json = join(dir, "ok.json");
    await writeFile(json, JSON.stringify({ topic: "t" }));
    expect((await loadConfigFile(json)).data).toEqual({ topic: "t" });
    const bad = join(dir, "bad.yaml");
    await writeFile(bad, "topic: t\nwindowSize: [1,\n");
    await expect(loadConfigFile(bad)).rejects.toThrow(/bad\.yaml: not valid YAML at line \d+, column \d+/);
    const twice = join(dir, "twice.yaml");
    await writeFile(twice, "topic: a\ntopic: b\n");
    await expect(loadConfigFile(twice)).rejects.toThrow(/twice\.yaml: not valid YAML at line 2/);
    const badJson = join(dir, "bad.json");
    await writeFile(badJson, "{ topic: t }");
    await expect(loadConfigFile(badJson)).rejects.toThrow(/bad\.json: not valid JSON/);
    await expect(loadConfigFile(join(dir, "x.toml"))).rejects.toThrow(/cannot read|\.toml/);
    await writeFile(join(dir, "x.toml"), "a = 1");
    await expect(loadConfigFile(join(dir, "x.toml"))).rejects.toThrow(
      /is \.yaml, \.yml or \.json, not \.toml/,
    );
    await expect(loadConfigFile(join(dir, "missing.yaml"))).rejects.toThrow(
      /--config: cannot read .*no such file/,
    );
  });
});

describe("mmssr config check", () => {
  it("prints the effective settings as YAML that checks again to the same, each origin as a comment", async () => {
    const path = join(dir, "curate.yaml");
    await writeFile(
      path,
      "brokers: k:9092\ntopic: t\ngroup: g\nout: /data/out\nwindowSize: 500\npolicy:\n  ratio: 0.25\n",
    );
    process.env.MMSSR_WORKERS = "2";
    let first: Awaited<ReturnType<typeof runCli>>;
    try {
      first = await runCli(["config", "check", path]);
    } finally {
      delete process.env.MMSSR_WORKERS;
    }
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^windowSize: 500 # from .*curate\.yaml$/m);
    expect(first.stdout).toMatch(/^workers: 2 # from MMSSR_WORKERS$/m);
    expect(first.stdout).toMatch(/^windowMs: 60000 # default$/m);
    const printed = parseYaml(first.stdout) as Record<string, unknown>;
    expect(printed.policy).toMatchObject({ ratio: 0.25, threshold: 0 });
    const again = join(dir, "again.yaml");
    await writeFile(again, first.stdout);
    const second = await runCli(["config", "check", again, "--json"]);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual(printed);
  });

  it("exits 2 with every problem", async () => {
    const path = join(dir, "wrong.yaml");
    await writeFile(path, "topic: t\nout: o\nwindowSise: 5\npolicy:\n  ratio: 0.2\n");
    const r = await runCli(["config", "check", path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("windowSise");
    expect(r.stderr).toContain("unknown setting");
    expect(r.stdout).toBe("");
  });
});

describe("mmssr curate --config", () => {
  it("runs from a file; a flag overrides it; help shows the schema's defaults", async () => {
    const input = join(dir, "in.jsonl");
    await writeFile(
      input,
      `${syntheticSamples(300, 3)
        .map((s) => JSON.stringify(s))
        .join("\n")}\n`,
    );
    const out = join(dir, "out");
    const path = join(dir, "run.yaml");
    await writeFile(
      path,
      `in: ${input}\nout: ${out}\nwindowSize: 50\nwindowMs: 1000\nrotateMs: 200\nprogressEvery: 0\nno-images: true\npolicy:\n  ratio: 0.2\n`,
    );
    const refused = await runCli(["curate", "--config", path]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("no-images (");
    await writeFile(
      path,
      `in: ${input}\nout: ${out}\nwindowSize: 50\nwindowMs: 1000\nrotateMs: 200\nprogressEvery: 0\nimages: false\npolicy:\n  ratio: 0.2\n`,
    );
    const r = await runCli(["curate", "--config", path, "--window-size", "100"]);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    // 300 samples in windows of 100 (the flag), not 50 (the file): 3 windows, 20% of each
    expect(r.stdout).toMatch(/300 scored with \S+ in 3 window\(s\), 60 selected/);
    expect((await readdir(join(out, "selected"))).length).toBeGreaterThan(0);

    const curate = buildProgram().commands.find((c) => c.name() === "curate");
    const help = curate?.helpInformation() ?? "";
    expect(help).toContain(`(default: ${defaultOf("windowSize")})`);
    expect(help).toContain("--config <file>");
    for (const f of POLICY_FLAGS) expect(help).toContain(f.flag);
  });
});

describe("logs", () => {
  it("a curate run logs JSON through the logger it is given, progress with its figures as fields", async () => {
    const { runCurate } = await import("../../src/app/curator.js");
    const input = join(dir, "logged.jsonl");
    await writeFile(
      input,
      `${syntheticSamples(2000, 8)
        .map((s) => JSON.stringify(s))
        .join("\n")}\n`,
    );
    const lines: string[] = [];
    const logger = createLogger({ format: "json", name: "mmssr curate", write: (l) => lines.push(l) });
    const stats = await runCurate({
      source: { kind: "file", path: input },
      out: join(dir, "logged"),
      policy: { ratio: 0.2 },
      windowSize: 100,
      windowMs: 10_000,
      loadImages: false,
      progressMs: 10,
      logger,
    });
    const events = lines
      .join("")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { level: number; msg: string; progress?: Record<string, number> });
    expect(events.some((e) => e.level === 30 && /^instance \S+ writing to /.test(e.msg))).toBe(true);
    const progress = events.filter((e) => e.progress !== undefined);
    expect(progress.length).toBeGreaterThan(0);
    for (const p of progress) {
      expect(p.msg).toMatch(/^progress: read \d+, scored \d+/);
      expect(p.progress?.read).toBeLessThanOrEqual(stats.read);
      expect(Object.keys(p.progress ?? {})).toEqual(
        expect.arrayContaining(["read", "scored", "selected", "deadLettered", "ratePerSecond"]),
      );
    }
  });

  it("json: one pino JSON line per event with its level; text: the CLI's lines, warnings named", () => {
    const lines: string[] = [];
    const json = createLogger({ format: "json", name: "mmssr curate", write: (l) => lines.push(l) });
    json.info({ partition: 3 }, "claimed");
    json.warn("slow");
    json.debug("not shown at info");
    const events = lines
      .join("")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ level: 30, msg: "claimed", partition: 3, name: "mmssr curate" });
    expect(events[1]).toMatchObject({ level: 40, msg: "slow" });
    const text: string[] = [];
    const human = createLogger({ name: "mmssr curate", level: "debug", write: (l) => text.push(l) });
    human.info("claimed");
    human.warn("3 of 10 images could not be used");
    human.debug("detail");
    expect(text.join("")).toBe(
      "mmssr curate: claimed\nmmssr curate: WARNING: 3 of 10 images could not be used\nmmssr curate: detail\n",
    );
  });
});
