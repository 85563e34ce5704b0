/**
 * npm run build:model — rebuilds models/mmssr-lite from the seed corpus, reproducibly:
 * the allowed real records of ../shared/data (models/seed-corpus.ts) plus seeded synthetic
 * samples (models/synthetic-samples.ts), labelled by the rule teacher, featurized, and fitted
 * with a fixed seed. The same inputs give the same ONNX bytes (sha256 in the manifest).
 *
 *   node dist/models/build-mmssr-lite.js [--data ../shared/data] [--out models/mmssr-lite] [--synthetic 12000]
 */
import { resolve } from "node:path";
import { styleIndex } from "../src/domain/taxonomy.js";
import { createSampleFeaturizer, DEFAULT_FEATURE_SPEC } from "../src/scoring/featurize-samples.js";
import { fitModel, type LabelledSample } from "../src/scoring/fit/fit-model.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { RULE_TEACHER_ID, ruleTeacherLabel } from "../src/scoring/rule-teacher.js";
import { packageRoot } from "../src/util/package-root.js";
import { loadSeedCorpus } from "./seed-corpus.js";
import { syntheticSamples } from "./synthetic-samples.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 ? args[k + 1] : fallback;
};
const root = packageRoot();
const dataDir = resolve(root, flag("--data", "../shared/data"));
const outDir = resolve(root, flag("--out", "models/mmssr-lite"));
const syntheticCount = Number(flag("--synthetic", "12000"));

const seed = loadSeedCorpus(dataDir);
const synthetic = syntheticSamples(syntheticCount, 2503);
const samples = [...seed.map((r) => r.sample), ...synthetic];
const labelled: LabelledSample[] = samples.map((sample) => {
  const label = ruleTeacherLabel(sample);
  let styleMask = 0;
  for (const s of label.styles) styleMask |= 1 << styleIndex(s);
  return { sample, scores: label.scores, styleMask };
});

const imageLoader = createImageLoader({ baseDir: dataDir, allowUrls: false });
const featurizer = createSampleFeaturizer(DEFAULT_FEATURE_SPEC, { imageLoader });
const t0 = performance.now();
const result = await fitModel(labelled, featurizer, {
  outDir,
  id: "mmssr-lite",
  version: "1.0.0",
  teacher: RULE_TEACHER_ID,
  train: { hidden: 64, epochs: 12, batchSize: 64, learningRate: 2e-3, seed: 7 },
  cardNotes: [
    "",
    `Seed corpus: ${seed.length} real records of ../shared/data whose licences allow it (see models/seed-corpus.ts:`,
    "LLaVA-Instruct 100, LLaMA-Factory demo 6, LLaVA COCO GPT-4 QA 90 + QA-90 90, COCO captions and boxes 160,",
    "LLaVA-Bench in the wild 60), plus " +
      `${synthetic.length} synthetic template samples (models/synthetic-samples.ts, seed 2503) covering every style and`,
    "capability vocabulary. Most records name COCO images that are not in the repository: they are featurized",
    "text-only (image block zero, flag image-missing); the rule teacher reads text only, so image descriptors",
    "carry no signal in this model. Rebuild: `npm run build:model` (same bytes for the same inputs).",
  ].join("\n"),
  subsets: [{ name: "the real records", ids: new Set(seed.map((r) => r.sample.id)) }],
  log: (line) => process.stderr.write(`${line}\n`),
});
await imageLoader.close();
process.stdout.write(
  `wrote ${outDir} (${result.trainSize} train, ${result.holdoutSize} held out) in ${((performance.now() - t0) / 1000).toFixed(1)} s; onnx sha256 ${result.manifest.onnx.sha256}\n`,
);
for (const c of result.fidelity.capabilities)
  process.stdout.write(`  ${c.id.padEnd(12)} spearman ${c.spearman.toFixed(3)}\n`);
for (const sub of result.subsetFidelity)
  process.stdout.write(
    `  ${sub.name} (${sub.fidelity.n} held out): spearman ${sub.fidelity.capabilities.map((c) => `${c.id} ${c.spearman.toFixed(2)}`).join(", ")}\n`,
  );
for (const s of result.fidelity.styles)
  process.stdout.write(
    `  ${s.style.padEnd(32)} F1 ${Number.isNaN(s.f1) ? "-" : s.f1.toFixed(3)} (support ${s.support})\n`,
  );
