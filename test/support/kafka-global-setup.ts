/**
 * Vitest global setup of the "broker" project (vitest.config.ts): makes sure a Kafka broker
 * answers before the tests that need one start, and tells them where it is.
 *
 * - MMSSR_KAFKA_BROKERS set (CI starts the broker itself; or a broker of your own): used
 *   as it is, nothing is started or stopped.
 * - Otherwise `connectors/kafka/local-broker.sh start` (a no-op that prints the address when
 *   it runs already), and MMSSR_KAFKA_BROKERS is set for the workers (they are created
 *   after this runs and inherit process.env; the address is also provided as
 *   inject("kafkaBrokers")).
 *
 * Teardown stops the broker only when a test run started it and no other test run still
 * uses it: each run leaves a lease (a file named after its pid) in the broker's data dir,
 * and a marker file records that tests, not a person, started the broker. MMSSR_KAFKA_KEEP=1
 * leaves it running for the next run (`npm run broker stop` stops it).
 */

import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { TestProject } from "vitest/node";
import { BROKERS_ENV } from "./kafka.js";

declare module "vitest" {
  export interface ProvidedContext {
    kafkaBrokers: string;
  }
}

const run = promisify(execFile);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const script = join(repo, "connectors/kafka/local-broker.sh");

function dataDir(): string {
  return process.env.KAFKA_DATA_DIR ?? join(repo, ".tmp", `kafka-${process.env.KAFKA_PORT ?? "19092"}`);
}

async function broker(command: "start" | "stop" | "status"): Promise<string> {
  const { stdout } = await run("bash", [script, command], {
    cwd: repo,
    // Fetching the jars the first time (Maven) can take a while; the script bounds its own waits.
    timeout: 600_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout.trim();
}

async function isRunning(): Promise<boolean> {
  try {
    await broker("status");
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const given = process.env[BROKERS_ENV]?.trim();
  if (given) {
    project.provide("kafkaBrokers", given);
    return undefined;
  }

  const leases = join(dataDir(), "test-runs");
  const lease = join(leases, String(process.pid));
  const marker = join(dataDir(), "started-by-tests");
  // The lease goes first, so a run finishing meanwhile does not stop the broker under us.
  mkdirSync(leases, { recursive: true });
  writeFileSync(lease, "");

  let address: string;
  try {
    if (!(await isRunning())) writeFileSync(marker, String(process.pid));
    address = await broker("start");
  } catch (err) {
    rmSync(lease, { force: true });
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `could not start the local Kafka broker (connectors/kafka/local-broker.sh start): ${e.stderr?.trim() || e.message}\n` +
        `Set ${BROKERS_ENV}=host:port to use a broker of your own.`,
    );
  }
  process.env[BROKERS_ENV] = address;
  project.provide("kafkaBrokers", address);

  return async () => {
    rmSync(lease, { force: true });
    const others = existsSync(leases)
      ? readdirSync(leases).filter((name) => {
          const pid = Number(name);
          if (Number.isInteger(pid) && alive(pid)) return true;
          rmSync(join(leases, name), { force: true });
          return false;
        })
      : [];
    if (others.length === 0 && existsSync(marker) && !process.env.MMSSR_KAFKA_KEEP) {
      rmSync(marker, { force: true });
      await broker("stop");
    }
  };
}
