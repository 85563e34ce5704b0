import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { afterEach, describe, expect, it } from "vitest";
import { tinyWeights } from "../../test/fixtures/models/tiny-weights.js";
import { ERROR_CODES, isUserError, MmssrError } from "../domain/errors.js";
import {
  checkSessionMatchesManifest,
  formatJsonPath,
  loadModel,
  type ModelManifest,
  parseModelManifest,
  type SessionSignature,
  sha256Of,
} from "./model-manifest.js";
import { buildMlpModel } from "./onnx-graph.js";

const { onnx } = onnxProto;
const TINY = path.resolve("test/fixtures/models/tiny");
const dirs: string[] = [];

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function tinyManifest(): Promise<ModelManifest> {
  return JSON.parse(await readFile(path.join(TINY, "manifest.json"), "utf8"));
}

/** A copy of the tiny model dir with its manifest replaced (text as given, or an edited object). */
async function modelDir(manifest: unknown | string, onnxBytes?: Uint8Array): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "mmssr-model-"));
  dirs.push(dir);
  await cp(TINY, dir, { recursive: true });
  if (onnxBytes) await writeFile(path.join(dir, "tiny.onnx"), onnxBytes);
  await writeFile(
    path.join(dir, "manifest.json"),
    typeof manifest === "string" ? manifest : JSON.stringify(manifest, null, 2),
  );
  return dir;
}

async function loadError(dir: string): Promise<MmssrError> {
  try {
    await loadModel(dir);
  } catch (err) {
    expect(err).toBeInstanceOf(MmssrError);
    return err as MmssrError;
  }
  throw new Error("loadModel did not fail");
}

describe("loadModel", () => {
  it("loads the tiny fixture and verifies its sha256", async () => {
    const m = await loadModel(TINY);
    expect(m.manifest.id).toBe("tiny");
    expect(m.manifest.input).toEqual({ name: "features", dims: 48 });
    expect(m.onnxPath).toBe(path.join(TINY, "tiny.onnx"));
    expect(sha256Of(m.onnxBytes)).toBe(m.manifest.onnx.sha256);
  });

  it("names the manifest file when the directory or the manifest is missing", async () => {
    const err = await loadError(path.join(TINY, "nope"));
    expect(err.code).toBe(ERROR_CODES.FILE_NOT_FOUND);
    expect(err.message).toContain(path.join(TINY, "nope", "manifest.json"));
  });

  it("rejects bad JSON naming the file", async () => {
    const dir = await modelDir('{"format": "mmssr-model/1",');
    const err = await loadError(dir);
    expect(err.code).toBe(ERROR_CODES.MODEL_INVALID);
    expect(isUserError(err)).toBe(true);
    expect(err.message).toContain(path.join(dir, "manifest.json"));
    expect(err.message).toMatch(/not valid JSON/);
  });

  it("names the JSON path of a missing field", async () => {
    const m = (await tinyManifest()) as unknown as Record<string, Record<string, unknown>>;
    delete m.onnx.sha256;
    delete m.featurizer.sourceDims;
    const err = await loadError(await modelDir(m));
    expect(err.code).toBe(ERROR_CODES.MODEL_INVALID);
    expect(err.message).toMatch(/onnx\.sha256: /);
    expect(err.message).toMatch(/featurizer\.sourceDims: /);
    expect(err.message).toMatch(/2 problems/);
  });

  it("rejects capabilities out of order, naming the index and the expected id", async () => {
    const m = await tinyManifest();
    [m.capabilities[0], m.capabilities[1]] = [m.capabilities[1], m.capabilities[0]];
    const err = await loadError(await modelDir(m));
    expect(err.message).toContain('capabilities[0]: expected "spatial"');
    expect(err.message).toContain('capabilities[1]: expected "attribute"');
  });

  it("rejects a missing style and a wrong threshold count", async () => {
    const m = await tinyManifest();
    m.styles = m.styles.slice(0, 8);
    m.outputs.styles.thresholds = [0.5];
    const err = await loadError(await modelDir(m));
    expect(err.message).toMatch(/styles: expected the 9 style names .* got 8/);
    expect(err.message).toMatch(/outputs\.styles\.thresholds: /);
  });

  it("rejects featurizer dims that differ from the sum of its parts, and input.dims != featurizer.dims", async () => {
    const m = await tinyManifest();
    m.featurizer.dims = 50;
    const err = await loadError(await modelDir(m));
    expect(err.message).toMatch(/featurizer\.dims: dims is 50 but the parts sum to 48/);
    expect(err.message).toMatch(/input\.dims: input\.dims \(48\) differs from featurizer\.dims \(50\)/);
  });

  it("rejects a wrong sha256, giving expected and actual", async () => {
    const m = await tinyManifest();
    const wrong = "0".repeat(64);
    m.onnx.sha256 = wrong;
    const dir = await modelDir(m);
    const err = await loadError(dir);
    expect(err.code).toBe(ERROR_CODES.MODEL_INVALID);
    expect(err.message).toContain(`expects ${wrong}`);
    expect(err.message).toContain(`file has ${(await tinyManifest()).onnx.sha256}`);
    expect(err.message).toContain(path.join(dir, "tiny.onnx"));
  });

  it("rejects an ONNX file outside the model directory and a missing ONNX file", async () => {
    const m = await tinyManifest();
    m.onnx.file = "../elsewhere.onnx";
    expect((await loadError(await modelDir(m))).message).toMatch(
      /onnx\.file: must be a path inside the model directory/,
    );
    m.onnx.file = "missing.onnx";
    const err = await loadError(await modelDir(m));
    expect(err.code).toBe(ERROR_CODES.FILE_NOT_FOUND);
    expect(err.message).toContain("missing.onnx");
  });

  it("rejects unknown fields (typos) and a wrong format", async () => {
    const m = { ...(await tinyManifest()), descripton: "typo", format: "mmssr-model/2" };
    const err = await loadError(await modelDir(m));
    expect(err.message).toMatch(/format: /);
    expect(err.message).toMatch(/descripton/);
  });
});

describe("parseModelManifest / formatJsonPath", () => {
  it("formats paths", () => {
    expect(formatJsonPath([])).toBe("(root)");
    expect(formatJsonPath(["a", 3, "b"])).toBe("a[3].b");
  });
  it("names the file it was given", () => {
    expect(() => parseModelManifest({}, "x/manifest.json")).toThrow(
      /^x\/manifest\.json: invalid model manifest/,
    );
  });
});

/** The tiny model with its input (and the first node's input) renamed. */
function renamedInputModel(name: string): Uint8Array {
  const model = onnx.ModelProto.decode(buildMlpModel(tinyWeights(), { producer: "test" }));
  const graph = model.graph as onnxProto.onnx.GraphProto;
  graph.input[0].name = name;
  for (const n of graph.node) n.input = (n.input ?? []).map((i) => (i === "features" ? name : i));
  return onnx.ModelProto.encode(model).finish();
}

describe("checkSessionMatchesManifest", () => {
  it("accepts the tiny model's session", async () => {
    const { manifest, onnxBytes } = await loadModel(TINY);
    const session = await ort.InferenceSession.create(onnxBytes);
    expect(() => checkSessionMatchesManifest(session, manifest)).not.toThrow();
    await session.release();
  });

  it("names a wrong input name in the ONNX file", async () => {
    const bytes = renamedInputModel("x");
    const m = await tinyManifest();
    m.onnx.sha256 = sha256Of(bytes);
    const loaded = await loadModel(await modelDir(m, bytes));
    const session = await ort.InferenceSession.create(loaded.onnxBytes);
    expect(() => checkSessionMatchesManifest(session, loaded.manifest, "tiny")).toThrow(
      /tiny: the ONNX model does not match its manifest:\n {2}input "features" \(manifest input.name\) not in the ONNX inputs \["x"\]\n {2}the ONNX model needs inputs the contract does not feed: "x"/,
    );
    await session.release();
  });

  it("names a missing output and a wrong input width", async () => {
    const w = tinyWeights();
    const narrow = { ...w, inputDims: 40, w1: w.w1.slice(0, 40 * w.hidden) };
    const session = await ort.InferenceSession.create(buildMlpModel(narrow, { producer: "test" }));
    const m = await tinyManifest();
    m.outputs.scores.name = "capability_scores";
    let msg = "";
    try {
      checkSessionMatchesManifest(session, m);
    } catch (err) {
      expect((err as MmssrError).code).toBe(ERROR_CODES.MODEL_INVALID);
      msg = (err as Error).message;
    }
    expect(msg).toContain(
      'output "capability_scores" (manifest outputs.scores.name) not in the ONNX outputs ["scores", "styles"]',
    );
    expect(msg).toContain('input "features" has shape [batch, 40], expected [N, 48]');
    await session.release();
  });

  it("checks declared output shapes, element types and fixed batch sizes", async () => {
    const m = await tinyManifest();
    const sig: SessionSignature = {
      inputNames: ["features"],
      outputNames: ["scores", "styles"],
      inputMetadata: [{ name: "features", isTensor: true, type: "float32", shape: [8, 48] }],
      outputMetadata: [
        { name: "scores", isTensor: true, type: "float32", shape: ["batch", 13] },
        { name: "styles", isTensor: true, type: "float16", shape: [] },
      ],
    };
    expect(() => checkSessionMatchesManifest(sig, m)).toThrow(/fixed batch dimension 8/);
    expect(() => checkSessionMatchesManifest(sig, m)).toThrow(
      /output "scores" has shape \[batch, 13\], expected \[N, 14\]/,
    );
    expect(() => checkSessionMatchesManifest(sig, m)).toThrow(/output "styles" has element type float16/);
    // shapes the ONNX file does not declare are not checked
    expect(() =>
      checkSessionMatchesManifest({ inputNames: ["features"], outputNames: ["scores", "styles"] }, m),
    ).not.toThrow();
  });
});
