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
 *     [--vision]   build models/mmssr-vision instead: the same corpus, half of the generated
 *                  chart / document / science questions with a rendered image of their kind and
 *                  half of the generated photo questions with a real photo, the rule teacher
 *                  seeing what the vision models see in each image, and the featurizer's vision block
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { capabilityIndex } from "../src/domain/taxonomy.js";
import {
  createSampleFeaturizer,
  DEFAULT_FEATURE_SPEC,
  VISION_FEATURE_SPEC,
} from "../src/scoring/featurize-samples.js";
import { type FitOptions, fitModel, type LabelledSample } from "../src/scoring/fit/fit-model.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { createOnnxScorer } from "../src/scoring/onnx-scorer.js";
import { RuleTeacherScorer } from "../src/scoring/rule-teacher.js";
import { packageRoot } from "../src/util/package-root.js";
import { auc, formatMeasures, measure, scoreAll } from "./eval-weak-labels.js";
import { imageEvidence } from "./image-evidence.js";
import { loadSeedCorpus } from "./seed-corpus.js";
import { syntheticSamples } from "./synthetic-samples.js";
import { renderTaskImages } from "./synthetic-task-images.js";
import { syntheticTaskQuestions } from "./synthetic-task-questions.js";
import { loadWeakLabelled, WEAK_SOURCES, type WeakRecord } from "./weak-labelled-corpus.js";
import {
  describePriors,
  GROUP_PRIORS,
  WEAK_TEACHER_ID,
  WEAK_VISION_TEACHER_ID,
  weakTeacherLabel,
} from "./weak-teacher.js";

const { values: opts } = parseArgs({
  options: {
    data: { type: "string", default: "../shared/data" },
    out: { type: "string" },
    synthetic: { type: "string", default: "8000" },
    "synthetic-tasks": { type: "string", default: "12000" },
    "permissive-only": { type: "boolean", default: false },
    /** where to keep the measured (held-out) model; by default a temp folder, removed */
    "holdout-out": { type: "string", default: "" },
    vision: { type: "boolean", default: false },
  },
});
const root = packageRoot();
const dataDir = resolve(root, opts.data);
const withVision = opts.vision;
const modelId = withVision ? "mmssr-vision" : "mmssr-lite";
const outDir = resolve(root, opts.out ?? `models/${modelId}`);
const syntheticCount = Number(opts.synthetic);
const taskCount = Number(opts["synthetic-tasks"]);
const permissiveOnly = opts["permissive-only"];
const holdoutOut = opts["holdout-out"];

/**
 * Whole sources the measured model does not train on: one of each group the issue measures
 * (documents, charts/infographics, science diagrams) and two of natural photos.
 */
const HELD_OUT_SOURCES = new Set(["dude", "infographicsvqa", "scienceqa", "vsr", "v7w"]);

const seed = loadSeedCorpus(dataDir);
const weak = loadWeakLabelled(dataDir).filter((r) => !permissiveOnly || r.source.permissive);
const synthetic = syntheticSamples(syntheticCount, 2503);
const tasks = syntheticTaskQuestions(taskCount, 1003);

const scratchImages = withVision ? await mkdtemp(join(tmpdir(), "mmssr-build-images-")) : "";
const PHOTO_DIR = "LLaVA-pr1902/playground/data/LLaVA-Pretrain/images";
const PHOTOS = "_derived/LLaVA-pr1902_blip_laion_cc_sbu_2k.subset_with_images.json";
/** Real photos: every third is kept out of training for the image-side check. */
const photos = withVision
  ? (JSON.parse(readFileSync(join(dataDir, PHOTOS), "utf8")) as { image: string }[]).map((r) =>
      join(dataDir, PHOTO_DIR, r.image),
    )
  : [];
const trainPhotos = photos.filter((_, k) => k % 3 !== 0);
const checkPhotos = photos.filter((_, k) => k % 3 === 0);
if (withVision) {
  const rendered = await renderTaskImages(scratchImages, 300, 77);
  tasks.forEach((t, i) => {
    if (i % 8 >= 4) return; // half keep a missing image, as most real records do
    const pool = t.group === "photo" ? trainPhotos : rendered[t.group as "chart" | "document" | "science"];
    t.sample.image = pool[(i * 7) % pool.length];
  });
}
const imageLoader = createImageLoader({
  baseDir: dataDir,
  allowUrls: false,
  allowLocalOutsideBase: withVision,
});
const spec = withVision ? VISION_FEATURE_SPEC : DEFAULT_FEATURE_SPEC;
const teacherId = withVision ? WEAK_VISION_TEACHER_ID : WEAK_TEACHER_ID;
const evidence = withVision
  ? await imageEvidence(
      [...seed.map((r) => r.sample), ...tasks.map((t) => t.sample)],
      imageLoader,
      spec.vision?.textInImage?.maxSide ?? 320,
    )
  : new Map();

const labelWeak = (r: WeakRecord): LabelledSample =>
  weakTeacherLabel(r.sample, r.source, evidence.get(r.sample.id));
const common: LabelledSample[] = [
  ...seed.map((r) => weakTeacherLabel(r.sample, GROUP_PRIORS.other, evidence.get(r.sample.id))),
  ...synthetic.map((s) => weakTeacherLabel(s)),
  ...tasks.map((t) => weakTeacherLabel(t.sample, GROUP_PRIORS[t.group], evidence.get(t.sample.id))),
];
const weakTrain = weak.filter((r) => !HELD_OUT_SOURCES.has(r.source.name));
const weakHeld = weak.filter((r) => HELD_OUT_SOURCES.has(r.source.name));

const featurizer = createSampleFeaturizer(spec, { imageLoader });
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
  heldOutTable = formatMeasures(rows);
  if (withVision) heldOutTable += `\n\n${await imageSideCheck(student)}`;
  await student.close();
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
  id: modelId,
  version: withVision ? "1.0.0" : "2.0.0",
  teacher: teacherId,
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
await featurizer.close();
await imageLoader.close();
if (withVision) await rm(scratchImages, { recursive: true, force: true });
process.stdout.write(
  `wrote ${outDir} (${result.trainSize} train, ${result.holdoutSize} held out) in ${((performance.now() - t0) / 1000).toFixed(1)} s; onnx sha256 ${result.manifest.onnx.sha256}\n`,
);
process.stdout.write(`${heldOutTable}\n`);

/**
 * The image side alone: one neutral question about images the measured model never saw, rendered
 * charts / pages / diagrams of new seeds against the real photos kept out of training, ranked on
 * data / ocr / stem. Text is the same for all, so only the vision block can separate them.
 */
async function imageSideCheck(student: Awaited<ReturnType<typeof createOnnxScorer>>): Promise<string> {
  const fresh = await renderTaskImages(join(scratchImages, "check"), 60, 991);
  const ask = (id: string, image: string) => ({
    id,
    image,
    image_source: "unknown",
    conversations: [
      { from: "human" as const, value: "<image>\nWhat is shown in the image?" },
      { from: "gpt" as const, value: "It is shown in the image." },
    ],
  });
  const photoScores = await student.score(checkPhotos.map((p, k) => ask(`photo-${k}`, p)));
  const rows: string[] = [];
  for (const [group, capId] of [
    ["chart", "data"],
    ["document", "ocr"],
    ["science", "stem"],
  ] as const) {
    const cap = capabilityIndex(capId);
    const scores = await student.score(fresh[group].map((p, k) => ask(`${group}-${k}`, p)));
    rows.push(
      `| rendered ${group} vs real photos | ${capId} | ${auc(
        scores.map((s) => s.scores[cap]),
        photoScores.map((s) => s.scores[cap]),
      ).toFixed(3)} |`,
    );
  }
  return [
    `Image side alone (the same question for every image; ${checkPhotos.length} real photos kept out of training, 60 rendered images of each kind from a new seed):`,
    "",
    "| images | capability | AUC |",
    "|---|---|---:|",
    ...rows,
  ].join("\n");
}
