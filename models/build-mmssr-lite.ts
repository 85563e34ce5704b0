/**
 * npm run build:model — rebuilds models/mmssr-lite reproducibly from:
 * - the real records of ../shared/data whose licences allow it (models/seed-corpus.ts),
 * - the real weak-labelled benchmark questions (models/weak-labelled-corpus.ts; with
 *   --permissive-only, only the sources under permissive licences),
 * - seeded synthetic samples: template conversations of every style (models/synthetic-samples.ts)
 *   and chart / document / science-diagram questions (models/synthetic-task-questions.ts),
 * labelled by the rule teacher moved by each record's weak label (models/weak-teacher.ts),
 * featurized, and fitted with a fixed seed. The same inputs give the same ONNX bytes.
 *
 * Before the model it ships, it fits one on everything but a set of whole held-out sources and
 * measures that one on them (models/eval-weak-labels.ts): the model card's ranking table comes
 * from sources the measured model never saw.
 *
 *   node dist/models/build-mmssr-lite.js [--data ../shared/data] [--out models/mmssr-lite]
 *     [--synthetic 8000] [--synthetic-tasks 12000] [--permissive-only] [--holdout-out DIR]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createSampleFeaturizer, DEFAULT_FEATURE_SPEC } from "../src/scoring/featurize-samples.js";
import { type FitOptions, fitModel, type LabelledSample } from "../src/scoring/fit/fit-model.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { createOnnxScorer } from "../src/scoring/onnx-scorer.js";
import { RuleTeacherScorer } from "../src/scoring/rule-teacher.js";
import { packageRoot } from "../src/util/package-root.js";
import { formatMeasures, measure, scoreAll } from "./eval-weak-labels.js";
import { loadSeedCorpus } from "./seed-corpus.js";
import { syntheticSamples } from "./synthetic-samples.js";
import { syntheticTaskQuestions } from "./synthetic-task-questions.js";
import { loadWeakLabelled, WEAK_SOURCES, type WeakRecord } from "./weak-labelled-corpus.js";
import { describePriors, GROUP_PRIORS, WEAK_TEACHER_ID, weakTeacherLabel } from "./weak-teacher.js";

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const k = args.indexOf(name);
  return k >= 0 ? args[k + 1] : fallback;
};
const root = packageRoot();
const dataDir = resolve(root, flag("--data", "../shared/data"));
const outDir = resolve(root, flag("--out", "models/mmssr-lite"));
const syntheticCount = Number(flag("--synthetic", "8000"));
const taskCount = Number(flag("--synthetic-tasks", "12000"));
const permissiveOnly = args.includes("--permissive-only");
/** where to keep the measured (held-out) model; by default it is written to a temp folder and removed */
const holdoutOut = flag("--holdout-out", "");

/**
 * Whole sources the measured model does not train on: one of each group the issue measures
 * (documents, charts/infographics, science diagrams) and two of natural photos.
 */
const HELD_OUT_SOURCES = new Set(["dude", "infographicsvqa", "scienceqa", "vsr", "v7w"]);

const seed = loadSeedCorpus(dataDir);
const weak = loadWeakLabelled(dataDir).filter((r) => !permissiveOnly || r.source.permissive);
const synthetic = syntheticSamples(syntheticCount, 2503);
const tasks = syntheticTaskQuestions(taskCount, 1003);

const labelWeak = (r: WeakRecord): LabelledSample => weakTeacherLabel(r.sample, r.source);
const common: LabelledSample[] = [
  ...seed.map((r) => weakTeacherLabel(r.sample, GROUP_PRIORS.other)),
  ...synthetic.map((s) => weakTeacherLabel(s)),
  ...tasks.map((t) => weakTeacherLabel(t.sample, GROUP_PRIORS[t.group])),
];
const weakTrain = weak.filter((r) => !HELD_OUT_SOURCES.has(r.source.name));
const weakHeld = weak.filter((r) => HELD_OUT_SOURCES.has(r.source.name));

const imageLoader = createImageLoader({ baseDir: dataDir, allowUrls: false });
const featurizer = createSampleFeaturizer(DEFAULT_FEATURE_SPEC, { imageLoader });
const train = { hidden: 64, epochs: 12, batchSize: 64, learningRate: 2e-3, seed: 7 };
const log = (line: string) => process.stderr.write(`${line}\n`);
const t0 = performance.now();

// 1. The measured model: trained without the held-out sources, measured on them.
const scratch = holdoutOut !== "" ? resolve(holdoutOut) : await mkdtemp(join(tmpdir(), "mmssr-build-"));
let heldOutTable: string;
try {
  const base: FitOptions = {
    outDir: scratch,
    id: "mmssr-lite-holdout",
    version: "0",
    teacher: WEAK_TEACHER_ID,
    train,
    log,
  };
  await fitModel([...common, ...weakTrain.map(labelWeak)], featurizer, base);
  const student = await createOnnxScorer({ modelDir: scratch, imageLoader });
  const rows = [
    { name: "student (held-out sources)", m: measure(weakHeld, await scoreAll(student, weakHeld)) },
    {
      name: "keyword rules (rule-teacher@1)",
      m: measure(weakHeld, await scoreAll(new RuleTeacherScorer(), weakHeld)),
    },
  ];
  await student.close();
  heldOutTable = formatMeasures(rows);
} finally {
  if (holdoutOut === "") await rm(scratch, { recursive: true, force: true });
}
log(heldOutTable);

// 2. The shipped model: every source.
const sourcesTable = [
  "| source | group | records | licence | in the measured model |",
  "|---|---|---:|---|---|",
  ...Object.values(WEAK_SOURCES).map((s) => {
    const n = weak.filter((r) => r.source.name === s.name).length;
    return `| ${s.name} | ${s.group} | ${n} | ${s.licence} | ${HELD_OUT_SOURCES.has(s.name) ? "held out" : "trained on"} |`;
  }),
].join("\n");
const result = await fitModel([...common, ...weak.map(labelWeak)], featurizer, {
  outDir,
  id: "mmssr-lite",
  version: "2.0.0",
  teacher: WEAK_TEACHER_ID,
  train,
  cardNotes: [
    "",
    `Seed corpus: ${seed.length} real records of ../shared/data whose licences allow it (models/seed-corpus.ts);`,
    `${weak.length} real benchmark questions with weak labels of their source (models/weak-labelled-corpus.ts${permissiveOnly ? ", permissive sources only" : ""});`,
    `${synthetic.length} synthetic template conversations of every style (models/synthetic-samples.ts, seed 2503) and`,
    `${tasks.length} synthetic chart / document / science-diagram questions (models/synthetic-task-questions.ts, seed 1003).`,
    "Most records name images that are not in the repository: they are featurized text-only (image block",
    "zero, flag image-missing), as the same questions would be in a stream without their images.",
    "Rebuild: `npm run build:model` (same bytes for the same inputs; `-- --permissive-only` leaves out every",
    "research-only or non-commercial source).",
    "",
    "## Teacher",
    "The rule teacher (keyword, answer-form and source cues, src/scoring/rule-teacher.ts), then the weak",
    "label of the record's source: the capabilities the source exists to test score at least 4, those it",
    "does not need at most 1. Weak labels are the sources' own metadata (Visual-CoT's `dataset`, MME's",
    "category, ScienceQA's form), not mmSSR scores.",
    "",
    describePriors({
      ...Object.fromEntries(Object.values(WEAK_SOURCES).map((s) => [s.name, s])),
      ...Object.fromEntries(Object.entries(GROUP_PRIORS).map(([g, p]) => [`generated ${g}`, p])),
    }),
    "",
    "## Sources",
    sourcesTable,
    "",
    "## Ranking on real questions from sources it was not trained on",
    `A model fitted exactly like this one but without the sources marked "held out" above, measured on`,
    `those ${weakHeld.length} questions (\`npm run eval:weak-labels\` measures any model on any sources):`,
    "",
    heldOutTable,
    "",
    "Groups: documents = dude; charts/infographics = infographicsvqa; science diagrams = ScienceQA",
    "questions with an image; natural photos = vsr + v7w. Expected style: yes/no for a yes/no reference",
    "answer, word/short-phrase or short description for a short one, multi-choice for ScienceQA.",
  ].join("\n"),
  subsets: [{ name: "the real records", ids: new Set([...seed, ...weak].map((r) => r.sample.id)) }],
  log,
});
await imageLoader.close();
process.stdout.write(
  `wrote ${outDir} (${result.trainSize} train, ${result.holdoutSize} held out) in ${((performance.now() - t0) / 1000).toFixed(1)} s; onnx sha256 ${result.manifest.onnx.sha256}\n`,
);
process.stdout.write(`${heldOutTable}\n`);
