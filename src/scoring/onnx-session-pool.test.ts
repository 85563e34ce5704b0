import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tinyInputs, tinyWeights } from "../../test/fixtures/models/tiny-weights.js";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import { checkSessionMatchesManifest, loadModel } from "./model-manifest.js";
import { mlpForward } from "./onnx-graph.js";
import { crashWorkerForTest, createSessionPool, type SessionPool } from "./onnx-session-pool.js";

const TINY = path.resolve("test/fixtures/models/tiny");
const DIMS = 48;
const pools: SessionPool[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

async function pool(opts: Parameters<typeof createSessionPool>[0]): Promise<SessionPool> {
  const p = await createSessionPool(opts);
  pools.push(p);
  return p;
}

/** true when this onnxruntime-node install ships the CUDA provider library */
function cudaProviderInstalled(): boolean {
  const main = createRequire(import.meta.url).resolve("onnxruntime-node");
  const bin = path.join(path.dirname(main), "..", "bin", "napi-v6", process.platform, process.arch);
  return existsSync(path.join(bin, "libonnxruntime_providers_cuda.so"));
}

/** Handles and requests that keep the process alive, without timers (vitest's own come and go). */
function liveResources(): string[] {
  return process
    .getActiveResourcesInfo()
    .filter((r) => r !== "Timeout" && r !== "Immediate")
    .sort();
}

describe("createSessionPool", () => {
  it("runs the tiny model off the main thread and matches mlpForward", async () => {
    const { onnxBytes, manifest } = await loadModel(TINY);
    const logs: string[] = [];
    const p = await pool({ onnxBytes, logger: (m) => logs.push(m) });
    expect(p.provider).toBe("cpu");
    expect(p.size).toBe(1);
    expect(logs.join("\n")).toMatch(/1 worker on the cpu execution provider/);
    expect(() => checkSessionMatchesManifest(p.signature, manifest)).not.toThrow();
    const n = 6;
    const out = await p.run(tinyInputs(n), n, DIMS);
    const ref = mlpForward(tinyWeights(), tinyInputs(n), n);
    expect(out.scores.length).toBe(n * 14);
    expect(out.styles.length).toBe(n * 9);
    for (let i = 0; i < ref.scores.length; i++)
      expect(Math.abs(out.scores[i] - ref.scores[i])).toBeLessThan(1e-5);
    for (let i = 0; i < ref.styles.length; i++)
      expect(Math.abs(out.styles[i] - ref.styles[i])).toBeLessThan(1e-5);
  });

  it("gives identical results with 1 and 2 workers, under concurrent calls", async () => {
    const one = await pool({ onnxPath: path.join(TINY, "tiny.onnx"), workers: 1 });
    const two = await pool({ onnxPath: path.join(TINY, "tiny.onnx"), workers: 2, intraOpThreads: 1 });
    expect(two.size).toBe(2);
    const batches = [1, 3, 17, 64, 5, 2, 33, 8];
    const a = await Promise.all(batches.map((n) => one.run(tinyInputs(n), n, DIMS)));
    const b = await Promise.all(batches.map((n) => two.run(tinyInputs(n), n, DIMS)));
    for (let k = 0; k < batches.length; k++) {
      expect(Array.from(b[k].scores)).toEqual(Array.from(a[k].scores));
      expect(Array.from(b[k].styles)).toEqual(Array.from(a[k].styles));
    }
  });

  it("transfers a whole-buffer feature array and copies a view of a larger buffer", async () => {
    const p = await pool({ onnxPath: path.join(TINY, "tiny.onnx") });
    const whole = tinyInputs(2);
    await p.run(whole, 2, DIMS);
    expect(whole.length).toBe(0); // detached: ownership moved to the worker
    const big = new Float32Array(3 * DIMS);
    big.set(tinyInputs(2), DIMS);
    const view = big.subarray(DIMS);
    const out = await p.run(view, 2, DIMS);
    expect(view.length).toBe(2 * DIMS);
    expect(out.scores.length).toBe(28);
  });

  it("rejects a call whose run fails in ONNX Runtime with INFERENCE naming the cause, and keeps serving", async () => {
    const p = await pool({ onnxPath: path.join(TINY, "tiny.onnx") });
    const err = await p.run(new Float32Array(2 * 10), 2, 10).catch((e) => e);
    expect(err).toBeInstanceOf(MmssrError);
    expect(err.code).toBe(ERROR_CODES.INFERENCE);
    expect(err.message).toMatch(/ONNX Runtime run failed: .*features/i);
    expect((await p.run(tinyInputs(1), 1, DIMS)).scores.length).toBe(14);
  });

  it("rejects a feature array whose length is not n * dims before sending it", async () => {
    const p = await pool({ onnxPath: path.join(TINY, "tiny.onnx") });
    await expect(p.run(new Float32Array(47), 1, DIMS)).rejects.toMatchObject({
      code: ERROR_CODES.BAD_OPTIONS,
    });
    expect((await p.run(new Float32Array(0), 0, DIMS)).scores.length).toBe(0);
  });

  it("replaces a crashed worker: its in-flight call rejects, later calls succeed", async () => {
    const logs: string[] = [];
    const p = await pool({ onnxPath: path.join(TINY, "tiny.onnx"), logger: (m) => logs.push(m) });
    crashWorkerForTest(p, 0);
    const err = await p.run(tinyInputs(1), 1, DIMS).catch((e) => e);
    expect(err).toMatchObject({
      code: ERROR_CODES.INFERENCE,
      message: expect.stringMatching(/exited with code 70/),
    });
    const out = await p.run(tinyInputs(2), 2, DIMS);
    expect(out.scores.length).toBe(28);
    expect(logs.join("\n")).toMatch(/inference worker 0 exited with code 70; replacing it/);
  });

  it("fails on a bad model with INFERENCE naming the cause, leaving no worker behind", async () => {
    const before = liveResources();
    const err = await createSessionPool({ onnxBytes: new Uint8Array([1, 2, 3, 4]) }).catch((e) => e);
    expect(err).toMatchObject({ code: ERROR_CODES.INFERENCE });
    expect(err.message).toMatch(/cannot create ONNX Runtime session \(cpu\)/);
    expect(liveResources()).toEqual(before);
  });

  it("validates its options", async () => {
    await expect(createSessionPool({ workers: 1 })).rejects.toMatchObject({ code: ERROR_CODES.BAD_OPTIONS });
    await expect(createSessionPool({ onnxPath: "x.onnx", workers: 0 })).rejects.toThrow(
      /workers must be a positive/,
    );
  });

  describe.skipIf(cudaProviderInstalled())("CUDA provider on a CPU-only onnxruntime-node build", () => {
    it("fails loudly by default", async () => {
      const err = await createSessionPool({
        onnxPath: path.join(TINY, "tiny.onnx"),
        executionProvider: "cuda",
      }).catch((e) => e);
      expect(err).toBeInstanceOf(MmssrError);
      expect(err.code).toBe(ERROR_CODES.INFERENCE);
      expect(err.message).toMatch(/CUDA execution provider failed to load: .*Failed to load shared library/);
      expect(err.message).toMatch(/onCudaUnavailable "fallback-cpu"/);
    });

    it("falls back to CPU when configured, and says so", async () => {
      const logs: string[] = [];
      const p = await pool({
        onnxPath: path.join(TINY, "tiny.onnx"),
        executionProvider: "cuda",
        onCudaUnavailable: "fallback-cpu",
        workers: 2,
        logger: (m) => logs.push(m),
      });
      expect(p.provider).toBe("cpu");
      expect(logs[0]).toMatch(/CUDA execution provider failed to load .*falling back to CPU as configured/);
      expect(logs[1]).toMatch(/2 workers on the cpu execution provider/);
      expect((await p.run(tinyInputs(3), 3, DIMS)).styles.length).toBe(27);
    });
  });

  it("close() terminates every worker: no handles are left, later calls reject", async () => {
    const before = liveResources();
    const p = await createSessionPool({ onnxPath: path.join(TINY, "tiny.onnx"), workers: 2 });
    await p.run(tinyInputs(4), 4, DIMS);
    expect(liveResources().length).toBeGreaterThan(before.length);
    const inFlight = p.run(tinyInputs(512), 512, DIMS).catch((e) => e);
    await p.close();
    await p.close(); // idempotent
    const settled = await inFlight;
    // either it finished before the workers went, or it was rejected because they did
    if (settled instanceof Error) expect(settled).toMatchObject({ code: ERROR_CODES.INFERENCE });
    expect(liveResources()).toEqual(before);
    await expect(p.run(tinyInputs(1), 1, DIMS)).rejects.toThrow(/session pool is closed/);
  });
});
