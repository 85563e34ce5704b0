/**
 * The settings of `mmssr curate` as one schema, shared by its flags, a config file (YAML or
 * JSON) and environment variables, so that all three are checked by the same rules and give
 * the same errors.
 *
 * Keys are the flags in camelCase (`--window-size` is `windowSize`), the environment variable
 * of a key is MMSSR_ + its UPPER_SNAKE form (`windowSize` is MMSSR_WINDOW_SIZE), and the
 * selection policy is the `policy` section of the file (the schema of the admin API and the
 * control topic; its flags are `--ratio`, `--budget`, ...). Precedence, lowest first: the
 * schema's defaults, the file, the environment, the flags. Secrets stay out of files: the
 * admin token comes from MMSSR_ADMIN_TOKEN or --admin-token-file only.
 */
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { parseDocument } from "yaml";
import { z } from "zod";
import { isLoopbackHost } from "../control/admin-server.js";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  parsePolicy,
  type SelectionPolicy,
  type SelectionPolicyInput,
} from "../selection/selection-policy.js";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../stream/parse-record.js";

const int = (min: number) => z.number().int().min(min);
const port = z.number().int().min(0).max(65_535);
const name = z.string().min(1);
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export const CurateConfigSchema = z.strictObject({
  /** bootstrap brokers of a Kafka source */
  brokers: z.array(name).min(1).optional(),
  topic: name.optional(),
  group: name.optional(),
  /** instead of Kafka: a samples file */
  in: name.optional(),
  /** with `in`: where the selection policy lives */
  policyFile: name.optional(),
  out: name,
  mode: z.enum(["window", "continuous"]).default("window"),
  windowSize: int(1).default(20_000),
  windowMs: int(1).default(60_000),
  /** seconds without new records (and lag 0) after which the run drains and exits */
  untilIdle: z.number().positive().optional(),
  model: name.optional(),
  workers: int(1).default(1),
  threads: int(1).default(1),
  ep: z.enum(["cpu", "cuda"]).default("cpu"),
  cudaFallback: z.boolean().default(false),
  images: z.boolean().default(true),
  imageSource: name.optional(),
  badImage: z.enum(["text-only", "reject"]).default("text-only"),
  dlqTopic: name.optional(),
  outputTopic: name.optional(),
  controlTopic: name.optional(),
  imageBase: name.optional(),
  allowImagesOutsideBase: z.boolean().default(false),
  allowImageHosts: z.array(name).min(1).optional(),
  allowPrivateImageHosts: z.boolean().default(false),
  maxMissingImages: z.number().min(0).max(1).optional(),
  metricsPort: port.min(1).optional(),
  metricsHost: name.default("127.0.0.1"),
  adminPort: port.optional(),
  adminHost: name.default("127.0.0.1"),
  adminTokenFile: name.optional(),
  adminInsecure: z.boolean().default(false),
  rotateRows: int(1).default(100_000),
  rotateMs: int(1).default(60_000),
  /** seconds between progress lines; 0: none */
  progressEvery: z.number().min(0).default(10),
  maxMessageBytes: int(1).default(DEFAULT_MAX_MESSAGE_BYTES),
  /** the Kafka group session: a member silent this long is dropped (the broker's group.min/max.session.timeout.ms bound it) */
  sessionTimeoutMs: int(6_000).max(300_000).default(30_000),
  heartbeatIntervalMs: int(100).default(3_000),
  logLevel: z.enum(LOG_LEVELS).default("info"),
  /** text: one line per event for people; json: pino's JSON lines for log shippers */
  logFormat: z.enum(["text", "json"]).default("text"),
  /** the selection policy (checked by the policy schema: ratio or budget, caps, weights, ...) */
  policy: z.record(z.string(), z.unknown()).optional(),
});

export type CurateConfig = z.output<typeof CurateConfigSchema> & { policy: SelectionPolicy };
export type ConfigKey = Exclude<keyof z.output<typeof CurateConfigSchema>, "policy">;

/** Where a value came from: the schema's default, the file, an environment variable or a flag. */
export type ConfigOrigin =
  | { kind: "default" }
  | { kind: "file"; path: string }
  | { kind: "env"; name: string }
  | { kind: "flag"; flag: string };

export interface ConfigProblem {
  /** the key as it is spelled where it came from: "windowSize (curate.yaml)", "MMSSR_WORKERS", "--ratio" */
  where: string;
  message: string;
}

const KEYS = Object.keys(CurateConfigSchema.shape).filter((k) => k !== "policy") as ConfigKey[];

export const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
export const envOf = (key: string): string => `MMSSR_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;

type LeafKind = "number" | "boolean" | "string" | "list";

/** What kind of value a key holds, read off the schema (text from flags and env is converted by it). */
function leafKind(key: ConfigKey): LeafKind {
  // zod 4 keeps each wrapper's inner type in its def: optional/default wrap the leaf
  let def = (CurateConfigSchema.shape[key] as unknown as { _zod: { def: ZodDef } })._zod.def;
  while (def.innerType) def = def.innerType._zod.def;
  if (def.type === "number") return "number";
  if (def.type === "boolean") return "boolean";
  if (def.type === "array") return "list";
  return "string";
}
interface ZodDef {
  type: string;
  innerType?: { _zod: { def: ZodDef } };
}

/** The default of a key, for help texts (undefined: none). */
export function defaultOf(key: ConfigKey): unknown {
  const def = (CurateConfigSchema.shape[key] as unknown as { _zod: { def: { defaultValue?: unknown } } })._zod
    .def;
  return typeof def.defaultValue === "function" ? (def.defaultValue as () => unknown)() : def.defaultValue;
}

/** Marks text that is not of its key's kind (its problem is listed already: the schema need not see it). */
const UNREADABLE = Symbol("unreadable");

/** Text (a flag's argument, an environment variable) as the key's kind; UNREADABLE + a problem when it is not. */
function fromText(key: ConfigKey, raw: string, where: string, problems: ConfigProblem[]): unknown {
  const kind = leafKind(key);
  if (kind === "number") {
    const v = raw.trim() === "" ? Number.NaN : Number(raw);
    if (Number.isFinite(v)) return v;
    problems.push({ where, message: `expected a number, got ${JSON.stringify(raw)}` });
    return UNREADABLE;
  }
  if (kind === "boolean") {
    const t = raw.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(t)) return true;
    if (["0", "false", "no", "off"].includes(t)) return false;
    problems.push({ where, message: `expected true or false, got ${JSON.stringify(raw)}` });
    return UNREADABLE;
  }
  if (kind === "list")
    return raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  return raw;
}

export interface ConfigLayers {
  /** a parsed config file */
  file?: { path: string; data: unknown };
  /** environment variables (process.env); only MMSSR_<KEY> names of the schema are read */
  env?: Record<string, string | undefined>;
  /** values given on the command line, as commander hands them (text, or true/false for switches) */
  flags?: Partial<Record<ConfigKey, string | boolean>>;
  /** policy fields given as flags, already parsed (src/cli/policy-flags.ts), with their flags */
  policyFlags?: {
    input: SelectionPolicyInput;
    given: readonly string[];
    /** the flag of a policy field ("ratio" -> "--ratio") */
    flagOf: (field: string) => string | undefined;
  };
}

export interface ResolvedConfig {
  config: CurateConfig;
  /** where each key's value came from */
  origins: Record<string, ConfigOrigin>;
  /** the policy fields set by the file or the flags ("--ratio", "policy.ratio (curate.yaml)") */
  givenPolicy: string[];
}

/**
 * Merges the layers, checks every value against the schema and the rules between keys, and
 * returns the effective settings; all problems at once otherwise (each naming its origin).
 */
export function resolveCurateConfig(layers: ConfigLayers): ResolvedConfig {
  const problems: ConfigProblem[] = [];
  const merged: Record<string, unknown> = {};
  const origins: Record<string, ConfigOrigin> = {};
  const whereOf = (key: string): string => {
    const o = origins[key];
    if (!o || o.kind === "default") return key;
    if (o.kind === "file") return `${key} (${o.path})`;
    if (o.kind === "env") return o.name;
    return o.flag;
  };

  let filePolicy: Record<string, unknown> = {};
  if (layers.file) {
    const { path, data } = layers.file;
    if (data === null || data === undefined) {
      // an empty file sets nothing
    } else if (typeof data !== "object" || Array.isArray(data))
      problems.push({ where: path, message: "expected a mapping of settings (key: value)" });
    else
      for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
        if (key === "policy") {
          if (value !== null && (typeof value !== "object" || Array.isArray(value)))
            problems.push({ where: `policy (${path})`, message: "expected a mapping of policy fields" });
          else filePolicy = (value ?? {}) as Record<string, unknown>;
          continue;
        }
        if (!(KEYS as string[]).includes(key)) {
          const camel = key.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
          const hint = (KEYS as string[]).includes(camel) ? ` (did you mean ${camel}?)` : "";
          problems.push({ where: `${key} (${path})`, message: `unknown setting${hint}` });
          continue;
        }
        // brokers may be written as "a:9092,b:9092" as on the command line
        merged[key] =
          typeof value === "string" && leafKind(key as ConfigKey) === "list"
            ? fromText(key as ConfigKey, value, `${key} (${path})`, problems)
            : value;
        origins[key] = { kind: "file", path };
      }
  }
  problems.push(...misspeltVariables(layers.env));
  for (const key of KEYS) {
    const name = envOf(key);
    const raw = layers.env?.[name];
    if (raw === undefined || raw === "") continue;
    merged[key] = fromText(key, raw, name, problems);
    origins[key] = { kind: "env", name };
  }
  for (const key of KEYS) {
    const raw = layers.flags?.[key];
    if (raw === undefined) continue;
    merged[key] = typeof raw === "boolean" ? raw : fromText(key, raw, flagOf(key), problems);
    origins[key] = { kind: "flag", flag: flagOf(key) };
  }

  for (const [key, v] of Object.entries(merged)) if (v === UNREADABLE) delete merged[key];
  const parsed = CurateConfigSchema.safeParse(merged, { reportInput: true });
  if (!parsed.success)
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? "");
      const rest = issue.path.slice(1).join(".");
      problems.push({ where: `${whereOf(key)}${rest ? ` ${rest}` : ""}`, message: issueText(issue) });
    }

  // The policy: the file's section under the flags given (the flags' fields replace the file's;
  // ratio and budget exclude each other, so a flag of one removes the other from the file's).
  const flagPolicy = layers.policyFlags?.input ?? {};
  const policyInput: Record<string, unknown> = { ...filePolicy };
  if ("ratio" in flagPolicy) delete policyInput.budget;
  if ("budget" in flagPolicy) delete policyInput.ratio;
  Object.assign(policyInput, flagPolicy);
  const givenPolicy = [
    ...(layers.policyFlags?.given ?? []),
    ...Object.keys(filePolicy)
      .filter((k) => !(k in flagPolicy))
      .map((k) => `policy.${k} (${layers.file?.path})`),
  ];
  let policy: SelectionPolicy | undefined;
  const p = parsePolicy(policyInput as SelectionPolicyInput);
  if (p.ok) policy = p.policy;
  else
    for (const problem of p.problems) {
      const field = problem.path.split(".")[0];
      const flag = field in flagPolicy ? layers.policyFlags?.flagOf(field) : undefined;
      const rest = problem.path.slice(field.length + 1);
      problems.push({
        where: flag
          ? `${flag}${rest ? ` ${rest}` : ""}`
          : `policy.${problem.path}${field in filePolicy && layers.file ? ` (${layers.file.path})` : ""}`,
        message: problem.message,
      });
    }

  if (problems.length === 0 && parsed.success && policy) {
    const config = { ...parsed.data, policy } as CurateConfig;
    problems.push(...crossFieldProblems(config, whereOf, layers.env));
    for (const key of KEYS) origins[key] ??= { kind: "default" };
    if (problems.length === 0) return { config, origins, givenPolicy };
  }
  throw configError(problems);
}

/** zod's issue in the words of the CLI's flag errors ("expected cpu or cuda, got \"tpu\""). */
function issueText(issue: z.core.$ZodIssue): string {
  const got = "input" in issue && issue.input !== undefined ? `, got ${JSON.stringify(issue.input)}` : "";
  switch (issue.code) {
    case "invalid_value":
      return `expected ${issue.values.map(String).join(" or ")}${got}`;
    case "invalid_type":
      return `expected ${issue.expected === "array" ? "a list" : `a ${issue.expected}`}${got}`;
    case "too_small":
    case "too_big": {
      const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
      const op = issue.code === "too_small" ? (issue.inclusive ? ">=" : ">") : issue.inclusive ? "<=" : "<";
      if (issue.origin === "array") return `expected at least ${String(bound)} entries`;
      if (issue.origin === "string") return "expected a non-empty text";
      return `expected a number ${op} ${String(bound)}${got}`;
    }
    default:
      return issue.message;
  }
}

/**
 * MMSSR_* variables a letter or two away from a setting's (MMSSR_WORKER for MMSSR_WORKERS):
 * a typo there would otherwise be ignored in silence. Other MMSSR_* variables (the Kafka
 * security settings, the admin token) are far from every setting's name and pass.
 */
function misspeltVariables(env: Record<string, string | undefined> | undefined): ConfigProblem[] {
  if (!env) return [];
  const names = KEYS.map(envOf);
  const out: ConfigProblem[] = [];
  for (const name of Object.keys(env)) {
    if (!name.startsWith("MMSSR_") || names.includes(name) || env[name] === undefined) continue;
    // short names (MMSSR_IN, MMSSR_EP) are too near too much to guess at
    const near = names.find((n) => {
      const len = n.length - "MMSSR_".length;
      return len > 3 && editDistance(n, name) <= (len >= 8 ? 2 : 1);
    });
    if (near) out.push({ where: name, message: `not a setting (did you mean ${near}?)` });
  }
  return out;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** One usage error listing every problem (the CLI prints it and exits 2). */
function configError(problems: readonly ConfigProblem[]): MmssrError {
  return new MmssrError(
    ERROR_CODES.USAGE,
    problems.length === 1
      ? `${problems[0].where}: ${problems[0].message}`
      : `${problems.length} problems in the settings:\n${problems.map((p) => `  ${p.where}: ${p.message}`).join("\n")}`,
  );
}

/**
 * Rules between keys, each naming the keys it relates. The window's wait is not held against
 * the session timeout: this source heartbeats while a window fills and while it is paused
 * (connectors/kafka/kafka-source.ts), so a long window costs latency, not membership.
 */
function crossFieldProblems(
  c: CurateConfig,
  whereOf: (key: string) => string,
  env: Record<string, string | undefined> | undefined,
): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const kafkaKeys = (["brokers", "topic", "group"] as const).filter((k) => c[k] !== undefined);
  if (c.in !== undefined) {
    const kafkaOnly = ([...kafkaKeys, "dlqTopic", "outputTopic", "controlTopic"] as const).filter(
      (k) => c[k] !== undefined,
    );
    if (kafkaOnly.length > 0)
      out.push({
        where: whereOf("in"),
        message: `a file source takes no ${kafkaOnly.map((k) => whereOf(k)).join(", ")}`,
      });
  } else {
    if (kafkaKeys.length < 3)
      out.push({
        where: "source",
        message: `give --brokers, --topic and --group (a Kafka topic; brokers, topic, group in a config file), or --in (a samples file); missing: ${(["brokers", "topic", "group"] as const).filter((k) => c[k] === undefined).join(", ")}`,
      });
    if (c.policyFile !== undefined)
      out.push({
        where: whereOf("policyFile"),
        message: "only with --in (a samples file); a Kafka group's policy lives on its control topic",
      });
  }
  if (c.mode === "continuous" && c.policy.ratio === undefined)
    out.push({
      where: `${whereOf("mode")} continuous`,
      message:
        "needs --ratio (policy.ratio in a config file): the share of incoming samples to admit; --budget is per window",
    });
  // Kafka's own guidance: a heartbeat at most every third of the session, so that two can be lost
  if (c.heartbeatIntervalMs * 3 > c.sessionTimeoutMs)
    out.push({
      where: whereOf("heartbeatIntervalMs"),
      message: `must be at most a third of ${whereOf("sessionTimeoutMs")} (${c.sessionTimeoutMs} ms): ${c.heartbeatIntervalMs} ms given`,
    });
  if (c.adminPort !== undefined) {
    if (c.adminInsecure && !isLoopbackHost(c.adminHost))
      out.push({
        where: whereOf("adminInsecure"),
        message: `only on a loopback --admin-host, not ${c.adminHost}`,
      });
    const token = c.adminTokenFile !== undefined || (env?.MMSSR_ADMIN_TOKEN ?? "").trim() !== "";
    if (!token && !c.adminInsecure)
      out.push({
        where: whereOf("adminPort"),
        message:
          "the admin API needs a bearer token: set MMSSR_ADMIN_TOKEN or --admin-token-file (adminTokenFile in a config file), or --admin-insecure on a loopback --admin-host",
      });
    if (c.metricsPort !== undefined && c.metricsPort === c.adminPort)
      out.push({
        where: whereOf("adminPort"),
        message: `the same port as ${whereOf("metricsPort")} (${c.metricsPort}): give each its own`,
      });
  }
  return out;
}

/**
 * Reads a config file: YAML (.yaml, .yml) or JSON (.json; YAML is a superset, but a JSON
 * file gets JSON's errors). A syntax error names the line and column.
 */
export async function loadConfigFile(path: string): Promise<{ path: string; data: unknown }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MmssrError(
      code === "ENOENT" ? ERROR_CODES.FILE_NOT_FOUND : ERROR_CODES.USAGE,
      `--config: cannot read ${path} (${code === "ENOENT" ? "no such file" : (err as Error).message})`,
    );
  }
  const ext = extname(path).toLowerCase();
  if (ext === ".json") {
    try {
      return { path, data: JSON.parse(text) };
    } catch (err) {
      throw new MmssrError(ERROR_CODES.USAGE, `${path}: not valid JSON: ${(err as Error).message}`);
    }
  }
  if (ext !== ".yaml" && ext !== ".yml")
    throw new MmssrError(
      ERROR_CODES.UNSUPPORTED_FORMAT,
      `${path}: a config file is .yaml, .yml or .json, not ${ext === "" ? "a name without extension" : ext}`,
    );
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const at = e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "";
    throw new MmssrError(
      ERROR_CODES.USAGE,
      `${path}: not valid YAML${at ? ` at ${at}` : ""}: ${e.message.split("\n")[0]}`,
    );
  }
  return { path, data: doc.toJS() };
}

/** The effective settings as a plain object (the policy with its defaults), for `mmssr config check`. */
export function describeConfig(r: ResolvedConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of KEYS) {
    const v = r.config[key];
    if (v !== undefined) out[key] = v;
  }
  out.policy = r.config.policy;
  return out;
}
