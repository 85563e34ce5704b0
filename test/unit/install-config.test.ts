import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

// The install contract: a plain `npm ci` must not fetch onnxruntime-node's CUDA binaries from
// outside the registry, and npm must not complain about the project's config on every call.
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const run = promisify(execFile);

describe("install config", () => {
  it("npx mmssr prints no npm warning (every .npmrc key is one npm knows)", async () => {
    const { stdout, stderr } = await run("npx", ["--no-install", "mmssr", "--version"], { cwd: root });
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(stderr).toBe("");
  });

  it("npm reads engine-strict from the project's .npmrc", async () => {
    const { stdout, stderr } = await run("npm", ["config", "get", "engine-strict"], { cwd: root });
    expect(stdout.trim()).toBe("true");
    expect(stderr).toBe("");
  });

  it("onnxruntime-node's download script is denied, and an npm that cannot deny it refuses", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      allowScripts: Record<string, boolean>;
      engines: Record<string, string>;
    };
    expect(pkg.allowScripts["onnxruntime-node"]).toBe(false);
    // npm 11.16.0 is the first release whose installer skips a script denied in allowScripts.
    const [major, minor] = (pkg.engines.npm.match(/^>=(\d+)\.(\d+)\.\d+$/) ?? []).slice(1).map(Number);
    expect(major * 1000 + minor).toBeGreaterThanOrEqual(11 * 1000 + 16);
  });

  it("the installed tree has the CPU build and none of the downloaded CUDA files", () => {
    const bin = join(root, "node_modules", "onnxruntime-node", "bin", "napi-v6", "linux", "x64");
    if (process.platform !== "linux" || process.arch !== "x64") return;
    expect(existsSync(join(bin, "onnxruntime_binding.node"))).toBe(true);
    expect(existsSync(join(bin, "libonnxruntime_providers_cuda.so"))).toBe(false);
  });
});
