/**
 * `mmssr curate` as a child process, for tests that kill it (SIGKILL), restart it, run two of
 * them in one group, or take the broker away under it: what no in-process run can do.
 *
 * - `ensureBuilt()` compiles dist/ (tsconfig.build.json) when a source file is newer than the
 *   compiled CLI; `npm test` builds first, so in CI this is a no-op.
 * - `startCurate(options)` spawns `node bin/mmssr.js curate ...`, with --rotate-rows /
 *   --rotate-ms when given (a test of crash safety needs files published, and offsets
 *   committed, mid-run, not only when the run drains).
 * - `publishedRows(dir)` reads the manifests of DIR: how far the scored log has grown, the
 *   thing to waitFor before a kill.
 */
import { execFile, spawn } from "node:child_process";
import { readdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readPublishedEntries } from "../../connectors/sink/shared-output.js";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = join(REPO, "bin", "mmssr.js");
const COMPILED_CLI = join(REPO, "dist", "src", "cli", "main.js");

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== "node_modules" && e.name !== "lib") newest = Math.max(newest, await newestMtime(p));
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) {
      newest = Math.max(newest, (await stat(p)).mtimeMs);
    }
  }
  return newest;
}

/**
 * Compiles dist/ when it is missing or older than a source of the CLI. A failing type check
 * still emits JavaScript (tsc has no noEmitOnError here): it is reported, and the run goes on
 * with what was emitted (the typecheck step of `npm test` is where type errors fail).
 */
export async function ensureBuilt(): Promise<void> {
  const built = await stat(COMPILED_CLI).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  let newest = 0;
  for (const d of ["src", "connectors", "models", "bench"])
    newest = Math.max(newest, await newestMtime(join(REPO, d)));
  if (built > 0 && built >= newest) return;
  try {
    await promisify(execFile)(
      process.execPath,
      [join(REPO, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"],
      { cwd: REPO, maxBuffer: 16 * 1024 * 1024, timeout: 300_000 },
    );
  } catch (err) {
    const e = err as { stdout?: string; message: string };
    const emitted = await stat(COMPILED_CLI).then(
      (s) => s.mtimeMs > built,
      () => false,
    );
    if (!emitted) throw new Error(`building dist/ failed: ${e.stdout || e.message}`);
    console.warn(`tsc -p tsconfig.build.json reported errors (dist/ was emitted):\n${e.stdout ?? ""}`);
  }
}

export interface CurateProcessOptions {
  brokers: string[];
  topic: string;
  group: string;
  out: string;
  dlqTopic: string;
  ratio?: number;
  windowSize?: number;
  windowMs?: number;
  /** --until-idle, seconds (default 3) */
  untilIdle?: number;
  /** rotate the sink's files at this many rows per partition (spawns runCurate, see above) */
  rotateRows?: number;
  /** ... or this long after a partition's oldest pending row */
  rotateMs?: number;
  env?: NodeJS.ProcessEnv;
  /** more flags, appended as given (e.g. --admin-port 0) */
  extraArgs?: string[];
}

export interface CurateExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr, interleaved as they came */
  output: string;
}

export interface CurateProcess {
  readonly pid: number;
  /** settles when the process has exited (never rejects) */
  readonly exited: Promise<CurateExit>;
  /** whether it has exited */
  readonly done: boolean;
  /** what it has printed so far */
  output(): string;
  /** sends the signal (if still running) and waits for the exit */
  kill(signal?: NodeJS.Signals): Promise<CurateExit>;
}

export function startCurate(o: CurateProcessOptions): CurateProcess {
  const ratio = o.ratio ?? 0.2;
  const windowSize = o.windowSize ?? 1000;
  const windowMs = o.windowMs ?? 1500;
  const untilIdle = o.untilIdle ?? 3;
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  const args = [
    CLI,
    "curate",
    "--brokers",
    o.brokers.join(","),
    "--topic",
    o.topic,
    "--group",
    o.group,
    "--out",
    o.out,
    "--dlq-topic",
    o.dlqTopic,
    "--ratio",
    String(ratio),
    "--window-size",
    String(windowSize),
    "--window-ms",
    String(windowMs),
    "--until-idle",
    String(untilIdle),
  ];
  if (o.rotateRows !== undefined) args.push("--rotate-rows", String(o.rotateRows));
  if (o.rotateMs !== undefined) args.push("--rotate-ms", String(o.rotateMs));
  if (o.extraArgs) args.push(...o.extraArgs);
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  const chunks: string[] = [];
  child.stdout.setEncoding("utf8").on("data", (s: string) => chunks.push(s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => chunks.push(s));
  let done = false;
  const exited = new Promise<CurateExit>((resolveExit) => {
    child.once("close", (code, signal) => {
      done = true;
      resolveExit({ code, signal, output: chunks.join("") });
    });
    child.once("error", (err) => {
      done = true;
      chunks.push(String(err));
      resolveExit({ code: null, signal: null, output: chunks.join("") });
    });
  });
  return {
    pid: child.pid ?? -1,
    exited,
    get done() {
      return done;
    },
    output: () => chunks.join(""),
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      if (!done) child.kill(signal);
      return exited;
    },
  };
}

/** Rows of the scored log the manifests of DIR record (0 before the first publish). */
export async function publishedRows(dir: string): Promise<number> {
  const entries = await readPublishedEntries(dir).catch(() => []);
  return entries.reduce((rows, e) => rows + (e.kind === "scored" ? e.rows : 0), 0);
}

/**
 * Removes every member of a consumer group at once, as the coordinator does when their
 * session times out: for members of SIGKILLed curators, which cannot leave by themselves.
 * Without it each restart of a killed curator waits out the dead member's session timeout
 * (30 s) before the group rebalances; the outcome is the same, only sooner. Sends LeaveGroup
 * v3 (KIP-345, batch of members) to the group coordinator over a plain socket: kafkajs's
 * admin client has no call for it. `members`: member ids (admin.describeGroups).
 */
export async function evictGroupMembers(
  coordinator: string,
  group: string,
  members: string[],
): Promise<number> {
  if (members.length === 0) return 0;
  const { connect } = await import("node:net");
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, "utf8");
    const len = Buffer.alloc(2);
    len.writeInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  const int16 = (v: number): Buffer => {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return b;
  };
  const int32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return b;
  };
  const body = Buffer.concat([
    int16(13), // LeaveGroup
    int16(3),
    int32(7), // correlation id
    str("mmssr-test-evict"),
    str(group),
    int32(members.length),
    ...members.flatMap((m) => [str(m), int16(-1)]), // member id, no group instance id
  ]);
  const [host, port] = [
    coordinator.slice(0, coordinator.lastIndexOf(":")),
    coordinator.slice(coordinator.lastIndexOf(":") + 1),
  ];
  const response = await new Promise<Buffer>((resolveResponse, reject) => {
    const sock = connect({ host, port: Number(port) });
    sock.setTimeout(5_000, () => {
      sock.destroy();
      reject(new Error("LeaveGroup: no answer"));
    });
    sock.on("error", reject);
    sock.on("connect", () => sock.write(Buffer.concat([int32(body.length), body])));
    let buf = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        sock.destroy();
        resolveResponse(buf.subarray(4, 4 + buf.readInt32BE(0)));
      }
    });
  });
  // correlation id, throttle_time_ms, error_code, ...
  const error = response.readInt16BE(8);
  if (error !== 0) throw new Error(`LeaveGroup for ${group}: error code ${error}`);
  return members.length;
}
