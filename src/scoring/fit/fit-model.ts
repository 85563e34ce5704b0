import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Sample } from "../../domain/sample.js";
import { CAPABILITY_IDS, NUM_CAPABILITIES, NUM_STYLES, STYLES } from "../../domain/taxonomy.js";
import { tieHash } from "../../selection/tie-break.js";
import { writeFileAtomic } from "../../util/atomic-file.js";
import type { SampleFeaturizer } from "../featurize-samples.js";
import { MANIFEST_FILE, MODEL_FORMAT, type ModelManifest, sha256Of } from "../model-manifest.js";
import {
  buildMlpModel,
  MLP_SCORES_NAME,
  MLP_STYLES_NAME,
  type MlpWeights,
  mlpForward,
} from "../onnx-graph.js";
import { type Fidelity, measureFidelity } from "./fidelity.js";
import { type TrainOptions, trainMlp } from "./train-mlp.js";

/** A sample with its teacher's labels: 14 scores (NaN = missing) and a style bit mask. */
export interface LabelledSample {
  sample: Sample;
  scores: ArrayLike<number>;
  styleMask: number;
}

export interface FitOptions {
  /** model folder to write (created) */
  outDir: string;
  id: string;
  version: string;
  /** what labelled the data, e.g. "rule-teacher@1"; goes into the manifest and the card */
  teacher: string;
  /** every sample whose tieHash(id) % holdoutModulo == 0 is held out (default 5: 20%) */
  holdoutModulo?: number;
  train?: TrainOptions;
  /** extra text for the model card (how the corpus was built, ...) */
  cardNotes?: string;
  /** ids of samples whose held-out fidelity is also reported on its own (e.g. the real records) */
  subsets?: { name: string; ids: ReadonlySet<string> }[];
  log?: (line: string) => void;
}

export interface FitResult {
  manifest: ModelManifest;
  fidelity: Fidelity;
  /** held-out fidelity per named subset */
  subsetFidelity: { name: string; fidelity: Fidelity }[];
  trainSize: number;
  holdoutSize: number;
  weights: MlpWeights;
}

function matrices(rows: readonly LabelledSample[]): { scores: Float32Array; styles: Float32Array } {
  const scores = new Float32Array(rows.length * NUM_CAPABILITIES);
  const styles = new Float32Array(rows.length * NUM_STYLES);
  rows.forEach((r, i) => {
    for (let c = 0; c < NUM_CAPABILITIES; c++) scores[i * NUM_CAPABILITIES + c] = r.scores[c];
    for (let s = 0; s < NUM_STYLES; s++) styles[i * NUM_STYLES + s] = r.styleMask & (1 << s) ? 1 : 0;
  });
  return { scores, styles };
}

/**
 * Featurizes labelled samples, trains the student on all but a held-out fifth (chosen by id
 * hash, so it is stable), measures fidelity to the teacher on the held-out part, and writes
 * the model folder: <id>.onnx, manifest.json (with the ONNX file's sha256) and MODEL_CARD.md.
 */
export async function fitModel(
  data: readonly LabelledSample[],
  featurizer: SampleFeaturizer,
  options: FitOptions,
): Promise<FitResult> {
  const log = options.log ?? (() => {});
  const modulo = options.holdoutModulo ?? 5;
  const trainRows = data.filter((d) => tieHash(d.sample.id) % modulo !== 0);
  const holdRows = data.filter((d) => tieHash(d.sample.id) % modulo === 0);
  if (trainRows.length === 0 || holdRows.length === 0)
    throw new Error(
      `fit needs samples on both sides of the hold-out split (train ${trainRows.length}, held out ${holdRows.length})`,
    );
  const spec = featurizer.spec;

  log(`featurizing ${data.length} samples (${trainRows.length} train, ${holdRows.length} held out)`);
  const train = await featurizer.featurize(trainRows.map((r) => r.sample));
  const hold = await featurizer.featurize(holdRows.map((r) => r.sample));
  const trainLabels = matrices(trainRows);
  const holdLabels = matrices(holdRows);

  const weights = trainMlp(
    { n: trainRows.length, dims: spec.dims, features: train.features, ...trainLabels },
    { ...options.train, onEpoch: (e, loss) => log(`epoch ${e + 1}: loss ${loss.toFixed(4)}`) },
  );
  const thresholds = new Array<number>(NUM_STYLES).fill(0.5);
  const predicted = mlpForward(weights, hold.features, holdRows.length);
  const fidelity = measureFidelity(holdRows.length, holdLabels, predicted, thresholds);
  const subsetFidelity = (options.subsets ?? []).map(({ name, ids }) => {
    const keep = holdRows.map((r, i) => (ids.has(r.sample.id) ? i : -1)).filter((i) => i >= 0);
    const pick = (m: Float32Array, w: number) => {
      const out = new Float32Array(keep.length * w);
      keep.forEach((i, k) => {
        out.set(m.subarray(i * w, (i + 1) * w), k * w);
      });
      return out;
    };
    return {
      name,
      fidelity: measureFidelity(
        keep.length,
        { scores: pick(holdLabels.scores, NUM_CAPABILITIES), styles: pick(holdLabels.styles, NUM_STYLES) },
        { scores: pick(predicted.scores, NUM_CAPABILITIES), styles: pick(predicted.styles, NUM_STYLES) },
        thresholds,
      ),
    };
  });

  const onnxFile = `${options.id}.onnx`;
  const onnxBytes = buildMlpModel(weights, {
    producer: "mmssr-stream fit",
    docString: `${options.id}@${options.version}, student of ${options.teacher}`,
  });
  const manifest: ModelManifest = {
    format: MODEL_FORMAT,
    id: options.id,
    version: options.version,
    description: `Single-pass mmSSR student (hashed text + image descriptors -> MLP), distilled from ${options.teacher}`,
    onnx: { file: onnxFile, sha256: sha256Of(onnxBytes) },
    input: { name: "features", dims: spec.dims },
    featurizer: spec,
    outputs: {
      scores: { name: MLP_SCORES_NAME, range: [0, 5] },
      styles: { name: MLP_STYLES_NAME, thresholds },
    },
    capabilities: [...CAPABILITY_IDS],
    styles: [...STYLES],
    executionProviders: ["cpu", "cuda"],
    teacher: options.teacher,
  } as ModelManifest;

  await mkdir(options.outDir, { recursive: true });
  await writeFileAtomic(join(options.outDir, onnxFile), onnxBytes);
  await writeFileAtomic(join(options.outDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  await writeFileAtomic(
    join(options.outDir, "MODEL_CARD.md"),
    modelCard(manifest, fidelity, subsetFidelity, trainRows.length, holdRows.length, weights, options),
  );
  return {
    manifest,
    fidelity,
    subsetFidelity,
    trainSize: trainRows.length,
    holdoutSize: holdRows.length,
    weights,
  };
}

const f3 = (v: number): string => (Number.isNaN(v) ? "-" : v.toFixed(3));

function fidelityTables(fid: Fidelity): string {
  const caps = fid.capabilities
    .map((c) => `| ${c.id} | ${f3(c.spearman)} | ${f3(c.meanAbsError)} |`)
    .join("\n");
  const styles = fid.styles
    .map((s) => `| ${s.style} | ${s.support} | ${f3(s.precision)} | ${f3(s.recall)} | ${f3(s.f1)} |`)
    .join("\n");
  return `| capability | Spearman | mean abs error |
|---|---:|---:|
${caps}

| style | support | precision | recall | F1 |
|---|---:|---:|---:|---:|
${styles}
`;
}

function modelCard(
  m: ModelManifest,
  fid: Fidelity,
  subsets: { name: string; fidelity: Fidelity }[],
  trainSize: number,
  holdSize: number,
  w: MlpWeights,
  options: FitOptions,
): string {
  const subsetText = subsets
    .map(
      (x) =>
        `\n## Held-out fidelity on ${x.name} only (${x.fidelity.n} samples)\n\n${fidelityTables(x.fidelity)}`,
    )
    .join("");
  return `# ${m.id} ${m.version}

${m.description}.

## What it is
- Input: one float32 row of ${m.input.dims} features per sample, filled by the TypeScript featurizer
  \`${m.featurizer.kind}\` (hashed uni/bigrams of the questions and of the answers, a hashed
  image_source token, ${m.featurizer.formDims} answer-form features, ${m.featurizer.image.dims} image descriptors).
- Network: ${w.inputDims} -> ${w.hidden} (ReLU) -> scores [N,14] = 5 * sigmoid, styles [N,9] = sigmoid; one
  forward pass gives all 14 capability scores and 9 style probabilities (style threshold 0.5).
- ONNX file: \`${m.onnx.file}\`, sha256 \`${m.onnx.sha256}\` (opset 13).

## Teacher, honestly
Trained on labels from **${m.teacher}**. The student can only be as good as its teacher: with
the rule teacher it reproduces transparent heuristics (answer form -> styles, keyword and
source cues -> capabilities), not the judgement of the released mmSSR 7B scorer. To replace it
with a student of a real VLM teacher, label samples with that teacher into the labelled JSONL
format (a sample plus \`scores\` and \`styles\` in the interchange format) and run
\`mmssr fit --labels labels.jsonl --out models/<name>\`; nothing else changes.

## Data
${trainSize} training samples, ${holdSize} held out (every sample whose tie hash of its id is divisible by
${options.holdoutModulo ?? 5}).
${options.cardNotes ?? ""}

## Held-out fidelity to the teacher (${fid.n} samples)

${fidelityTables(fid)}${subsetText}`;
}
