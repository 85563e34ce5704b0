/**
 * `mmssr annotate` as the real binary (`node bin/mmssr.js annotate ...`, a child process) against
 * the scripted chat-completions server: usage errors, --dry-run, resuming after SIGKILL (each id
 * labelled exactly once), a run that labels nothing, rubric mode with --limit, and the chain
 * annotate -> fit -> score on real records.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChatServer,
  hashText,
  startChatServer,
  teacherScript,
} from "../support/chat-completions-server.js";
import { ensureBuilt, REPO } from "../support/curate-process.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;
const KEY_VAR = "MMSSR_TEST_ANNOTATE_KEY";
const KEY = "sk-test-do-not-print-7c1f";

interface BinExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI binary (asynchronously: the server answers from this process). */
function startBin(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [join(REPO, "bin", "mmssr.js"), ...args], {
    cwd: dir,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out: string[] = [];
  const err: string[] = [];
  child.stdout.setEncoding("utf8").on("data", (s: string) => out.push(s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => err.push(s));
  const exited = new Promise<BinExit>((resolve) => {
    child.once("close", (code, signal) =>
      resolve({ code, signal, stdout: out.join(""), stderr: err.join("") }),
    );
  });
  return { child, exited };
}

const runBin = (args: string[], env?: Record<string, string>) => startBin(args, env).exited;

/** Polls `cond` until it holds (the condition, not the time, ends the wait). */
async function waitFor(cond: () => Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > limitMs) throw new Error(`waited too long for ${what}`);
    await delay(10);
  }
}

async function jsonl(path: string): Promise<Record<string, unknown>[]> {
  if (!existsSync(path)) return [];
  return (await readFile(path, "utf8"))
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Complete lines of a file (a torn tail is not counted). */
async function completeLines(path: string): Promise<number> {
  if (!existsSync(path)) return 0;
  return (await readFile(path, "utf8")).split("\n").length - 1;
}

let dir: string;
let server: ChatServer;
let llavaIds: string[];

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), "mmssr-annotate-"));
  await copyFile(join(FIXTURES, "llava_instruct_20.json"), join(dir, "llava.json"));
  await copyFile(join(FIXTURES, "mllm_demo.json"), join(dir, "demo.json"));
  await cp(join(FIXTURES, "mllm_demo_data"), join(dir, "mllm_demo_data"), { recursive: true });
  llavaIds = (JSON.parse(await readFile(join(dir, "llava.json"), "utf8")) as { id: string }[]).map(
    (r) => r.id,
  );
  server = await startChatServer();
}, 300_000);
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const base = (out: string, input = "llava.json") => [
  "annotate",
  "--in",
  input,
  "--endpoint",
  server.url,
  "--model",
  "mmssr-7b",
  "--out",
  out,
  "--backoff-ms",
  "1",
  "--no-progress",
];

describe("mmssr annotate (binary)", () => {
  it("a missing --api-key-env variable is a usage error (exit 2) and sends nothing", async () => {
    server.requests.length = 0;
    const r = await runBin([...base("nokey.jsonl"), "--api-key-env", "MMSSR_TEST_UNSET_VAR"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /\[MMSSR_USAGE\]: --api-key-env: the environment variable MMSSR_TEST_UNSET_VAR is not set/,
    );
    expect(server.requests).toHaveLength(0);
    expect(existsSync(join(dir, "nokey.jsonl"))).toBe(false);
  });

  it("a bad input record is exit 2 naming file and line, before any request", async () => {
    server.requests.length = 0;
    const good = JSON.parse(await readFile(join(dir, "llava.json"), "utf8")) as unknown[];
    await writeFile(
      join(dir, "bad.jsonl"),
      `${JSON.stringify(good[0])}\n{"id": "x", "conversations": [{"from": "gpt", "value": "hi"}]}\n`,
    );
    const r = await runBin(base("bad-out.jsonl", "bad.jsonl"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /\[MMSSR_BAD_ROW\]: bad\.jsonl: bad record\(s\); nothing was sent:\n {2}bad\.jsonl:2: conversations\[0\]\.from/,
    );
    expect(server.requests).toHaveLength(0);
  });

  it("--dry-run prints the exact request bodies of the first sample and sends nothing", async () => {
    server.requests.length = 0;
    const r = await runBin([
      "annotate",
      "--in",
      "demo.json",
      "--endpoint",
      server.url,
      "--model",
      "m",
      "--dry-run",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const bodies = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(bodies).toHaveLength(15);
    const jpeg = (await readFile(join(dir, "mllm_demo_data", "1.jpg"))).toString("base64");
    expect(bodies[0].messages[1].content[0]).toEqual({
      type: "image_url",
      image_url: { url: `data:image/jpeg;base64,${jpeg}` },
    });
    expect(bodies[14].messages[1].content[1].text).toMatch(/\nStyles: $/);
    expect(r.stderr).toMatch(/dry run: 15 request bodies for 1 sample\(s\).*nothing was sent/);
    expect(server.requests).toHaveLength(0);
    const two = await runBin([
      "annotate",
      "--in",
      "demo.json",
      "--endpoint",
      server.url,
      "--mode",
      "rubric",
      "--model",
      "m",
      "--dry-run",
      "--limit",
      "2",
    ]);
    expect(two.stdout.trim().split("\n")).toHaveLength(2);
    expect(server.requests).toHaveLength(0);
  });

  it("resumes after SIGKILL: every id labelled exactly once, a torn last line cut off", async () => {
    const out = join(dir, "resume.jsonl");
    server.requests.length = 0;
    // the first 3 samples get answers (15 requests each), every other sample's requests hang:
    // which requests come first depends on scheduling, so the script goes by sample, not by count
    const inputRows = JSON.parse(await readFile(join(dir, "llava.json"), "utf8")) as {
      conversations: { value: string }[];
    }[];
    const answered = inputRows
      .slice(0, 3)
      .map((r) => r.conversations[0].value.replace(/^<image>\n/, "").slice(0, 30));
    const teacher = teacherScript();
    server.setScript((req) => (answered.some((q) => req.raw.includes(q)) ? teacher(req) : { hang: true }));
    const run = startBin([...base("resume.jsonl"), "--concurrency", "4", "--retries", "0"]);
    await waitFor(async () => (await completeLines(out)) >= 3, "3 labelled lines");
    run.child.kill("SIGKILL");
    const killed = await run.exited;
    expect(killed.signal).toBe("SIGKILL");
    const before = await jsonl(out);
    expect(before.length).toBeGreaterThanOrEqual(3);
    expect(before.length).toBeLessThan(20);
    // a write the killed run did not finish
    await writeFile(out, `${await readFile(out, "utf8")}{"id": "000000`, "utf8");

    server.requests.length = 0;
    server.setScript(teacherScript());
    const again = await runBin([...base("resume.jsonl"), "--concurrency", "4"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/WARNING: resume\.jsonl:\d+: the last line was torn/);
    expect(again.stdout).toMatch(new RegExp(`already in the output: ${before.length}\\b`));
    const rows = await jsonl(out);
    const ids = rows.map((r) => r.id as string);
    expect(ids).toHaveLength(20);
    expect(new Set(ids).size).toBe(20); // 0 duplicates
    expect([...ids].sort()).toEqual([...llavaIds].sort());
    // only the samples not yet labelled were asked
    expect(server.requests).toHaveLength((20 - before.length) * 15);
  });

  it("annotate -> fit -> score: labels that fit reads unchanged (missing scores as null), a model that scores", async () => {
    server.requests.length = 0;
    // the OCR query of every third sample gets an answer that is no score
    server.setScript(
      teacherScript((req, q) =>
        q.kind === "capability" && q.name === "optical character recognition" && hashText(req.raw) % 3 === 0
          ? { content: "I cannot tell." }
          : undefined,
      ),
    );
    const r = await runBin([...base("labels.jsonl"), "--api-key-env", KEY_VAR, "--concurrency", "16"], {
      [KEY_VAR]: KEY,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/annotated 20 of 20 samples \(released:mmssr-7b\).*labelled 20/);
    expect(r.stdout).toMatch(
      /requests: 300 \(HTTP attempts 300, retries 0, failed 0\); tokens: prompt 3000, completion 600/,
    );
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(server.requests.every((q) => q.headers.authorization === `Bearer ${KEY}`)).toBe(true);
    const labels = await jsonl(join(dir, "labels.jsonl"));
    expect(labels).toHaveLength(20);
    const withMissing = labels.filter((l) => (l.scores as Record<string, unknown>).ocr === null);
    expect(withMissing.length).toBeGreaterThan(0);
    for (const l of withMissing)
      expect((l.annotation as { missing: Record<string, string> }).missing.ocr).toBe(
        'reply "I cannot tell." is not an integer',
      );
    for (const l of labels) {
      expect(l.teacher).toBe("released:mmssr-7b");
      expect(Object.keys(l.scores as object)).toHaveLength(14);
      expect(l.conversations).toBeDefined(); // the sample's own fields are kept
    }
    const fit = await runBin([
      "fit",
      "--labels",
      "labels.jsonl",
      "--out",
      "student",
      "--epochs",
      "2",
      "--hidden",
      "8",
    ]);
    expect(fit.code, fit.stderr).toBe(0);
    expect(await readFile(join(dir, "student", "MODEL_CARD.md"), "utf8")).toMatch(/released:mmssr-7b/);
    const score = await runBin([
      "score",
      "--in",
      "llava.json",
      "--model",
      "student",
      "--out",
      "scored.jsonl",
      "--no-progress",
    ]);
    expect(score.code, score.stderr).toBe(0);
    const scored = await jsonl(join(dir, "scored.jsonl"));
    expect(scored.map((s) => s.id).sort()).toEqual([...llavaIds].sort());
    for (const s of scored) {
      const v = Object.values(s.scores as Record<string, number | null>);
      expect(v).toHaveLength(14);
      for (const x of v) expect(Number.isFinite(x)).toBe(true);
    }
    // ... and the same student curates a stream (here a file source) unchanged
    const curate = await runBin([
      "curate",
      "--in",
      "llava.json",
      "--model",
      "student",
      "--out",
      "curated",
      "--ratio",
      "0.5",
      "--progress-every",
      "0",
    ]);
    expect(curate.code, curate.stderr).toBe(0);
    expect(curate.stdout).toMatch(/read 20 records: 20 scored with student@1\.0\.0/);
    // a second teacher may not write into the same labels file
    const other = await runBin([
      "annotate",
      "--in",
      "llava.json",
      "--endpoint",
      server.url,
      "--mode",
      "rubric",
      "--model",
      "gpt",
      "--out",
      "labels.jsonl",
    ]);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(/holds labels by "released:mmssr-7b"/);
  });

  it("rubric mode with --limit labels that many samples in one request each", async () => {
    server.requests.length = 0;
    server.setScript(teacherScript());
    const r = await runBin([...base("rubric.jsonl", "demo.json"), "--mode", "rubric", "--limit", "3"]);
    expect(r.code, r.stderr).toBe(0);
    const rows = await jsonl(join(dir, "rubric.jsonl"));
    expect(rows).toHaveLength(3);
    expect(server.requests).toHaveLength(3);
    expect(server.requests[0].body.response_format.type).toBe("json_schema");
    for (const row of rows) {
      expect(row.teacher).toBe("rubric:mmssr-7b");
      expect((row.annotation as { image: { sent: boolean } }).image.sent).toBe(true);
      expect(Object.values(row.scores as object).every((v) => Number.isInteger(v))).toBe(true);
    }
    const rest = await runBin([...base("rubric.jsonl", "demo.json"), "--mode", "rubric", "--no-json-schema"]);
    expect(rest.code, rest.stderr).toBe(0);
    expect(await jsonl(join(dir, "rubric.jsonl"))).toHaveLength(6);
    expect(server.requests.slice(3).every((q) => q.body.response_format === undefined)).toBe(true);
  });

  it("HTTP 401 stops the run at once: exit 2, nothing more is sent", async () => {
    server.requests.length = 0;
    server.setScript(() => ({ status: 401, body: { error: { message: "invalid key" } } }));
    const r = await runBin([...base("unauth.jsonl"), "--concurrency", "4"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\[MMSSR_USAGE\]: --api-key-env: .* HTTP 401 \(invalid key\)/);
    // without the stop, 20 samples x 15 queries would have been sent
    expect(server.requests.length).toBeLessThanOrEqual(4 * 15);
    expect(await jsonl(join(dir, "unauth.jsonl"))).toHaveLength(0);
  });

  it("a run that labels nothing exits non-zero and lists every sample with its reason", async () => {
    server.requests.length = 0;
    server.setScript(() => ({ content: "N/A" }));
    const r = await runBin([...base("none.jsonl", "demo.json"), "--concurrency", "15"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\[MMSSR_INFERENCE\]: nothing was labelled: all 6 samples sent got no score/);
    expect(await jsonl(join(dir, "none.jsonl"))).toHaveLength(0);
    const failed = await jsonl(join(dir, "none.jsonl.failed.jsonl"));
    expect(failed).toHaveLength(6);
    expect(failed[0].reason).toBe('no capability score: reply "N/A" is not an integer');
    expect(failed[0].where).toMatch(/^demo\.json\[\d\]$/);
  });
});
