/** The default model through OnnxScorer: batch and one-by-one scoring agree; bad model folders are refused. */
import { readFileSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { validateSample } from "../domain/sample.js";
import { createOnnxScorer } from "./onnx-scorer.js";

const MODEL = new URL("../../models/mmssr-lite", import.meta.url).pathname;
const samples = (
  JSON.parse(
    readFileSync(new URL("../../test/fixtures/samples/llava_instruct_20.json", import.meta.url), "utf8"),
  ) as unknown[]
).map((r) => {
  const v = validateSample(r);
  if (!v.ok) throw new Error("fixture invalid");
  return v.sample;
});
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("createOnnxScorer", () => {
  it("gives the same scores one by one (micro-batched) as in one batch, on 2 workers", async () => {
    const scorer = await createOnnxScorer({ modelDir: MODEL, workers: 2, batchSize: 8, maxWaitMs: 5 });
    try {
      expect(scorer.id).toBe("mmssr-lite@2.0.0");
      const whole = await scorer.score(samples);
      const single = await Promise.all(samples.map((s) => scorer.scoreOne(s)));
      expect(single).toHaveLength(samples.length);
      single.forEach((r, i) => {
        expect(Array.from(r.scores)).toEqual(Array.from(whole[i].scores));
        expect(r.styles).toEqual(whole[i].styles);
      });
      for (const r of whole) {
        expect(r.scores).toHaveLength(14);
        expect(r.scores.every((v) => v >= 0 && v <= 5)).toBe(true);
        expect(r.styles.length).toBeGreaterThan(0);
      }
    } finally {
      await scorer.close();
    }
  });

  it("refuses a model whose ONNX file does not match its manifest's sha256", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mmssr-model-"));
    dirs.push(dir);
    await cp(MODEL, dir, { recursive: true });
    await writeFile(join(dir, "mmssr-lite.onnx"), "not the model");
    await expect(createOnnxScorer({ modelDir: dir })).rejects.toThrow(/sha256/);
  });
});
