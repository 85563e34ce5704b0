/**
 * Runs the CLI in-process: `main(argv)` with process.stdout.write / process.stderr.write
 * temporarily replaced, so a test sees the exit code and everything the command printed.
 * Calls must not overlap (vitest runs the tests of one file one after another).
 */

import { main } from "../../src/cli/main.js";

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

type Write = typeof process.stdout.write;

function capture(into: string[]): Write {
  return ((chunk: unknown, encodingOrCb?: unknown, cb?: unknown): boolean => {
    into.push(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
    const done = typeof encodingOrCb === "function" ? encodingOrCb : cb;
    if (typeof done === "function") (done as (err?: Error | null) => void)();
    return true;
  }) as Write;
}

export async function runCli(argv: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const origOut = process.stdout.write;
  const origErr = process.stderr.write;
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  let code: number;
  try {
    code = await main(argv);
  } finally {
    process.stdout.write = origOut;
    process.stderr.write = origErr;
  }
  return { code, stdout: out.join(""), stderr: err.join("") };
}
