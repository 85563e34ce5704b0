/**
 * The model contract (issue 3): `models/<name>/manifest.json` + the ONNX file it names.
 * loadModel() validates the manifest and the ONNX file's sha256; checkSessionMatchesManifest()
 * validates a loaded session's input/output names and declared shapes against the manifest.
 * Every problem is reported with the file and the JSON path it concerns.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITY_IDS,
  NUM_CAPABILITIES,
  NUM_STYLES,
  SCORE_MAX,
  SCORE_MIN,
  STYLES,
} from "../domain/taxonomy.js";
import type { FeatureSpec } from "./scoring-types.js";

export const MODEL_FORMAT = "mmssr-model/1";
export const MANIFEST_FILE = "manifest.json";

const posInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

const featureSpecSchema = z
  .strictObject({
    kind: z.enum(["mmssr-hashed/v1", "mmssr-hashed/v2"]),
    dims: posInt,
    text: z.strictObject({
      questionDims: nonNegInt,
      answerDims: nonNegInt,
      ngrams: z.array(z.number().int().min(1).max(8)).min(1),
      maxChars: posInt,
      hashSeed: z.number().int().min(0).max(0xffffffff),
    }),
    sourceDims: nonNegInt,
    formDims: nonNegInt,
    image: z.strictObject({ size: posInt, dims: nonNegInt }),
    vision: z
      .strictObject({
        textInImage: z
          .strictObject({ maxSide: posInt, recognize: z.boolean().optional(), dims: posInt })
          .optional(),
        embedding: z.strictObject({ model: z.string().min(1), dims: posInt }).optional(),
      })
      .optional(),
  })
  .superRefine((f, ctx) => {
    if (f.vision !== undefined && f.kind !== "mmssr-hashed/v2")
      ctx.addIssue({
        code: "custom",
        path: ["vision"],
        message: "a vision block needs kind mmssr-hashed/v2",
      });
    const vision = (f.vision?.textInImage?.dims ?? 0) + (f.vision?.embedding?.dims ?? 0);
    const sum = f.text.questionDims + f.text.answerDims + f.sourceDims + f.formDims + f.image.dims + vision;
    if (sum !== f.dims) {
      ctx.addIssue({
        code: "custom",
        path: ["dims"],
        message:
          `dims is ${f.dims} but the parts sum to ${sum} (text.questionDims ${f.text.questionDims} + ` +
          `text.answerDims ${f.text.answerDims} + sourceDims ${f.sourceDims} + formDims ${f.formDims} + ` +
          `image.dims ${f.image.dims} + vision dims ${vision})`,
      });
    }
  });

function exactList(expected: readonly string[], what: string) {
  return z.array(z.string()).superRefine((got, ctx) => {
    if (got.length !== expected.length) {
      ctx.addIssue({
        code: "custom",
        message: `expected the ${expected.length} ${what} of MMSSR.md in order, got ${got.length} entries`,
      });
      return;
    }
    for (let i = 0; i < expected.length; i++) {
      if (got[i] !== expected[i]) {
        ctx.addIssue({
          code: "custom",
          path: [i],
          message: `expected "${expected[i]}" (${what} order of MMSSR.md), got "${got[i]}"`,
        });
      }
    }
  });
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, "expected 64 lowercase hex digits");

const relativeFile = z
  .string()
  .min(1)
  .refine((p) => !path.isAbsolute(p) && !p.split(/[\\/]/).includes(".."), {
    message: "must be a path inside the model directory (relative, no '..')",
  });

export const modelManifestSchema = z
  .strictObject({
    format: z.literal(MODEL_FORMAT),
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-'"),
    version: z.string().min(1),
    description: z.string().optional(),
    onnx: z.strictObject({ file: relativeFile, sha256: sha256Hex }),
    input: z.strictObject({ name: z.literal("features"), dims: posInt }),
    featurizer: featureSpecSchema,
    outputs: z.strictObject({
      scores: z.strictObject({
        name: z.string().min(1),
        range: z.tuple([z.literal(SCORE_MIN), z.literal(SCORE_MAX)]),
      }),
      styles: z.strictObject({
        name: z.string().min(1),
        thresholds: z.array(z.number().min(0).max(1)).length(NUM_STYLES),
      }),
    }),
    capabilities: exactList(CAPABILITY_IDS, "capability ids"),
    styles: exactList(STYLES, "style names"),
    /** providers the model is known to run on; informative (the runtime's option decides) */
    executionProviders: z
      .array(z.enum(["cpu", "cuda"]))
      .min(1)
      .optional(),
    /** ISO 8601 timestamp of the build */
    created: z.string().optional(),
    /** free text: what labelled the training data (e.g. "rule-teacher@1") */
    teacher: z.string().optional(),
  })
  .superRefine((m, ctx) => {
    if (m.input.dims !== m.featurizer.dims) {
      ctx.addIssue({
        code: "custom",
        path: ["input", "dims"],
        message: `input.dims (${m.input.dims}) differs from featurizer.dims (${m.featurizer.dims})`,
      });
    }
    if (m.outputs.scores.name === m.outputs.styles.name) {
      ctx.addIssue({
        code: "custom",
        path: ["outputs", "styles", "name"],
        message: "equals outputs.scores.name",
      });
    }
  });

export type ModelManifest = Omit<
  z.infer<typeof modelManifestSchema>,
  "featurizer" | "capabilities" | "styles"
> & {
  featurizer: FeatureSpec;
  capabilities: string[];
  styles: string[];
};

// The schema's featurizer must stay assignable to the FeatureSpec contract.
const _featureSpecCheck: (f: z.infer<typeof featureSpecSchema>) => FeatureSpec = (f) => f;
void _featureSpecCheck;

export interface LoadedModel {
  manifest: ModelManifest;
  /** absolute path of the model directory */
  dir: string;
  manifestPath: string;
  onnxPath: string;
  onnxBytes: Uint8Array;
}

/** "a.b[3].c" for a zod issue path; "(root)" for the empty path. */
export function formatJsonPath(p: readonly PropertyKey[]): string {
  let out = "";
  for (const k of p) {
    if (typeof k === "number") out += `[${k}]`;
    else out += out === "" ? String(k) : `.${String(k)}`;
  }
  return out === "" ? "(root)" : out;
}

/** Validates a parsed manifest object; `where` names the file in errors. */
export function parseModelManifest(value: unknown, where = MANIFEST_FILE): ModelManifest {
  const res = modelManifestSchema.safeParse(value);
  if (!res.success) {
    const lines = res.error.issues.map((i) => `  ${formatJsonPath(i.path)}: ${i.message}`);
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `${where}: invalid model manifest (${res.error.issues.length} problem${res.error.issues.length === 1 ? "" : "s"}):\n${lines.join("\n")}`,
    );
  }
  return res.data;
}

function isNotFound(err: unknown): boolean {
  return (
    (err as NodeJS.ErrnoException)?.code === "ENOENT" || (err as NodeJS.ErrnoException)?.code === "ENOTDIR"
  );
}

async function readOrThrow(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isNotFound(err)) {
      throw new MmssrError(ERROR_CODES.FILE_NOT_FOUND, `${file}: ${what} not found`, { cause: err });
    }
    throw new MmssrError(ERROR_CODES.IO, `${file}: cannot read ${what}: ${(err as Error).message}`, {
      cause: err,
      retriable: true,
    });
  }
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Reads and validates `<dir>/manifest.json`, reads the ONNX file it names and checks its sha256. */
export async function loadModel(dir: string): Promise<LoadedModel> {
  const absDir = path.resolve(dir);
  const manifestPath = path.join(absDir, MANIFEST_FILE);
  const text = (await readOrThrow(manifestPath, "model manifest")).toString("utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `${manifestPath}: not valid JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const manifest = parseModelManifest(json, manifestPath);
  const onnxPath = path.join(absDir, manifest.onnx.file);
  const buf = await readOrThrow(onnxPath, `ONNX file named by ${manifestPath} (onnx.file)`);
  const onnxBytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const actual = sha256Of(onnxBytes);
  if (actual !== manifest.onnx.sha256) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `${onnxPath}: sha256 mismatch: manifest (onnx.sha256) expects ${manifest.onnx.sha256}, file has ${actual}`,
    );
  }
  return { manifest, dir: absDir, manifestPath, onnxPath, onnxBytes };
}

/** The part of an onnxruntime InferenceSession (or a worker pool's report of one) that is checked. */
export interface SessionSignature {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata?: readonly ValueMetadataLike[];
  readonly outputMetadata?: readonly ValueMetadataLike[];
}

export interface ValueMetadataLike {
  readonly name: string;
  readonly isTensor: boolean;
  readonly type?: string;
  readonly shape?: ReadonlyArray<number | string>;
}

function isFixedDim(d: number | string | undefined): d is number {
  return typeof d === "number" && d >= 0;
}

function checkShape(
  meta: ValueMetadataLike | undefined,
  what: string,
  secondDim: number,
  problems: string[],
): void {
  if (!meta) return;
  if (!meta.isTensor) {
    problems.push(`${what} "${meta.name}" is not a tensor`);
    return;
  }
  if (meta.type !== undefined && meta.type !== "float32") {
    problems.push(`${what} "${meta.name}" has element type ${meta.type}, expected float32`);
  }
  const shape = meta.shape;
  if (!shape || shape.length === 0) return; // shape not declared in the ONNX file
  if (shape.length !== 2) {
    problems.push(
      `${what} "${meta.name}" has rank ${shape.length} [${shape.join(", ")}], expected [N, ${secondDim}]`,
    );
    return;
  }
  if (isFixedDim(shape[0])) {
    problems.push(
      `${what} "${meta.name}" has a fixed batch dimension ${shape[0]}, expected a dynamic one [N, ${secondDim}]`,
    );
  }
  if (isFixedDim(shape[1]) && shape[1] !== secondDim) {
    problems.push(`${what} "${meta.name}" has shape [${shape.join(", ")}], expected [N, ${secondDim}]`);
  }
}

/**
 * Throws MODEL_INVALID (listing every problem) when the session does not follow the manifest:
 * the input and both outputs must exist under the manifest's names, the model must need no other
 * input, and declared shapes must be [N, input.dims], [N, 14], [N, 9] in float32.
 */
export function checkSessionMatchesManifest(
  session: SessionSignature,
  manifest: ModelManifest,
  where = "model",
): void {
  const problems: string[] = [];
  const inName = manifest.input.name;
  const scoresName = manifest.outputs.scores.name;
  const stylesName = manifest.outputs.styles.name;
  if (!session.inputNames.includes(inName)) {
    problems.push(
      `input "${inName}" (manifest input.name) not in the ONNX inputs [${session.inputNames.map((n) => `"${n}"`).join(", ")}]`,
    );
  }
  const extra = session.inputNames.filter((n) => n !== inName);
  if (extra.length > 0) {
    problems.push(
      `the ONNX model needs inputs the contract does not feed: ${extra.map((n) => `"${n}"`).join(", ")}`,
    );
  }
  for (const [name, field] of [
    [scoresName, "outputs.scores.name"],
    [stylesName, "outputs.styles.name"],
  ] as const) {
    if (!session.outputNames.includes(name)) {
      problems.push(
        `output "${name}" (manifest ${field}) not in the ONNX outputs [${session.outputNames.map((n) => `"${n}"`).join(", ")}]`,
      );
    }
  }
  const inMeta = session.inputMetadata?.find((m) => m.name === inName);
  checkShape(inMeta, "input", manifest.input.dims, problems);
  checkShape(
    session.outputMetadata?.find((m) => m.name === scoresName),
    "output",
    NUM_CAPABILITIES,
    problems,
  );
  checkShape(
    session.outputMetadata?.find((m) => m.name === stylesName),
    "output",
    NUM_STYLES,
    problems,
  );
  if (problems.length > 0) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `${where}: the ONNX model does not match its manifest:\n${problems.map((p) => `  ${p}`).join("\n")}`,
    );
  }
}
