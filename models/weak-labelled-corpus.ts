/**
 * The records of ../shared/data that carry real, human-assigned weak labels of capability and
 * answer style: the source dataset of each Visual-CoT question, MME's category, ScienceQA's
 * multiple-choice form, the LLaVA COCO question types. They are not mmSSR scores; they say what a
 * question is about (a document, a chart, a science diagram, a natural photo) and how it is meant to
 * be answered. The build uses some sources to teach the student (see `WEAK_SOURCES`), and the
 * evaluation (models/eval-weak-labels.ts) checks the ranking on sources the model did not see.
 *
 * The files are read where they are (never copied into this repository). Licences differ by source
 * (column `licence`); the README of ../shared/data allows their use as the default model's seed
 * corpus, and `--permissive-only` of the build leaves out every source that is research-only or
 * non-commercial.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type Sample, validateSample } from "../src/domain/sample.js";
import type { CapabilityId, StyleName } from "../src/domain/taxonomy.js";

/** What a question is about, from its source's own metadata. */
export type WeakGroup = "document" | "chart" | "science" | "photo" | "scene-text" | "fine-grained" | "other";

export interface WeakSource {
  /** dataset name as the source writes it */
  name: string;
  group: WeakGroup;
  /** capabilities the source's questions exercise (weak, by the source's purpose) */
  capabilities: readonly CapabilityId[];
  /** capabilities the source's questions do not need */
  absent: readonly CapabilityId[];
  licence: string;
  permissive: boolean;
}

const PHOTO_ABSENT: readonly CapabilityId[] = ["ocr", "data", "stem"];

/** Every weak-labelled source, with the capabilities its purpose implies. */
export const WEAK_SOURCES: Readonly<Record<string, WeakSource>> = {
  docvqa: {
    name: "docvqa",
    group: "document",
    capabilities: ["ocr"],
    absent: ["activity", "scene", "spatial"],
    licence: "DocVQA: research use",
    permissive: false,
  },
  dude: {
    name: "dude",
    group: "document",
    capabilities: ["ocr"],
    absent: ["activity", "scene"],
    licence: "DUDE: CC BY 4.0",
    permissive: true,
  },
  sroie: {
    name: "sroie",
    group: "document",
    capabilities: ["ocr"],
    absent: ["activity", "scene", "spatial"],
    licence: "SROIE (ICDAR 2019): research use",
    permissive: false,
  },
  infographicsvqa: {
    name: "infographicsvqa",
    group: "chart",
    capabilities: ["data", "ocr"],
    absent: ["activity", "scene"],
    licence: "InfographicVQA: research use",
    permissive: false,
  },
  textvqa: {
    name: "textvqa",
    group: "scene-text",
    capabilities: ["ocr"],
    absent: ["data"],
    licence: "TextVQA: CC BY 4.0",
    permissive: true,
  },
  textcap: {
    name: "textcap",
    group: "scene-text",
    capabilities: ["ocr"],
    absent: ["data"],
    licence: "TextCaps: CC BY 4.0",
    permissive: true,
  },
  gqa: {
    name: "gqa",
    group: "photo",
    capabilities: ["spatial", "attribute"],
    absent: PHOTO_ABSENT,
    licence: "GQA: CC BY 4.0",
    permissive: true,
  },
  vsr: {
    name: "vsr",
    group: "photo",
    capabilities: ["spatial"],
    absent: PHOTO_ABSENT,
    licence: "VSR: CC BY 4.0 (COCO images)",
    permissive: true,
  },
  v7w: {
    name: "v7w",
    group: "photo",
    capabilities: ["spatial", "attribute"],
    absent: PHOTO_ABSENT,
    licence: "Visual7W: CC BY 4.0 (Visual Genome)",
    permissive: true,
  },
  flickr30k: {
    name: "flickr30k",
    group: "photo",
    capabilities: ["activity", "scene"],
    absent: PHOTO_ABSENT,
    licence: "Flickr30k: non-commercial research",
    permissive: false,
  },
  openimages: {
    name: "openimages",
    group: "photo",
    capabilities: ["attribute", "scene"],
    absent: PHOTO_ABSENT,
    licence: "Open Images: CC BY 4.0 annotations",
    permissive: true,
  },
  emotic: {
    name: "emotic",
    group: "photo",
    capabilities: ["activity", "scene"],
    absent: PHOTO_ABSENT,
    licence: "EMOTIC: non-commercial research",
    permissive: false,
  },
  cub: {
    name: "cub",
    group: "fine-grained",
    capabilities: ["finegrained", "attribute"],
    absent: PHOTO_ABSENT,
    licence: "CUB-200-2011: research use",
    permissive: false,
  },
  scienceqa: {
    name: "scienceqa",
    group: "science",
    capabilities: ["stem", "logical"],
    absent: ["activity", "scene"],
    licence: "ScienceQA: CC BY-NC-SA 4.0",
    permissive: false,
  },
  "coco-qa": {
    name: "coco-qa",
    group: "photo",
    capabilities: [],
    absent: PHOTO_ABSENT,
    licence: "COCO CC BY 4.0, OpenAI terms",
    permissive: true,
  },
  "mme-ocr": {
    name: "mme-ocr",
    group: "scene-text",
    capabilities: ["ocr"],
    absent: [],
    licence: "MME: research use",
    permissive: false,
  },
  "mme-photo": {
    name: "mme-photo",
    group: "photo",
    capabilities: ["spatial", "attribute"],
    absent: PHOTO_ABSENT,
    licence: "MME: research use",
    permissive: false,
  },
};

export interface WeakRecord {
  sample: Sample;
  source: WeakSource;
  /** the styles the source's answer format implies (tagging any one of them is right) */
  expectedStyles: readonly StyleName[];
  /** styles that contradict the source's answer format */
  contradictingStyles: readonly StyleName[];
}

type AnswerForm = Pick<WeakRecord, "expectedStyles" | "contradictingStyles">;

const YES_NO: AnswerForm = {
  expectedStyles: ["yes/no"],
  contradictingStyles: [
    "multi-choice",
    "detailed description",
    "coordinate",
    "chain-of-thought (step-by-step)",
  ],
};
const SHORT: AnswerForm = {
  expectedStyles: ["word/short-phrase", "short description"],
  contradictingStyles: [
    "multi-choice",
    "detailed description",
    "coordinate",
    "chain-of-thought (step-by-step)",
  ],
};
const SENTENCE: AnswerForm = {
  expectedStyles: ["short description", "detailed description"],
  contradictingStyles: ["multi-choice", "coordinate"],
};

/** The answer style an open question's reference answer has: yes/no, a short phrase or sentences. */
function openAnswerForm(answer: string): AnswerForm {
  const a = answer.trim().toLowerCase().replace(/[.!]$/, "");
  if (a === "yes" || a === "no") return YES_NO;
  const words = a.split(/\s+/).filter((x) => x !== "").length;
  return words <= 8 && !/[.!?]\s+\S/.test(a) ? SHORT : SENTENCE;
}

// Visual-CoT appends this grounding request to every question; the evaluation asks the plain
// question, the way the source benchmark did.
const BOX_REQUEST =
  /\s*Please provide the bounding box coordinate of the region that can help you answer the question better\.?\s*$/i;

function make(raw: Record<string, unknown>, where: string): Sample {
  const r = validateSample(raw, { missingId: "content-hash" });
  if (!r.ok)
    throw new Error(
      `${where}: a weak-labelled record failed validation: ${JSON.stringify(r.errors.slice(0, 3))}`,
    );
  return r.sample;
}

const qa = (
  id: string,
  image: string | undefined,
  question: string,
  answer: string,
  imageSource?: string,
) => ({
  id,
  ...(image === undefined ? {} : { image }),
  ...(imageSource === undefined ? {} : { image_source: imageSource }),
  conversations: [
    { from: "human", value: image === undefined ? question : `<image>\n${question}` },
    { from: "gpt", value: answer },
  ],
});

const VISUAL_COT_DIR = "Visual-CoT/viscot_benchmark/benchmark";

/** Visual-CoT questions as single-turn samples: the plain question and its final (short) answer. */
function loadVisualCot(dataDir: string, out: WeakRecord[]): void {
  const dir = join(dataDir, VISUAL_COT_DIR);
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()) {
    const rows = JSON.parse(readFileSync(join(dir, file), "utf8")) as Record<string, unknown>[];
    rows.forEach((row, k) => {
      const source = WEAK_SOURCES[String(row.dataset)];
      if (source === undefined)
        throw new Error(`${VISUAL_COT_DIR}/${file}: unknown dataset ${String(row.dataset)}`);
      const turns = row.conversations as { from: string; value: string }[];
      const question = turns[0].value.replace(/^<image>\s*/, "").replace(BOX_REQUEST, "");
      const answer = turns[turns.length - 1].value;
      const image = (row.image as string[])[0];
      out.push({
        sample: make(qa(`viscot-${source.name}-${k}`, image, question, answer), `${file}[${k}]`),
        source,
        ...openAnswerForm(answer),
      });
    });
  }
}

const SCIENCEQA = "LLaVA-pr1199/playground/data/eval/scienceqa/llava_test_CQM-A.json";

/** ScienceQA questions that show an image (diagrams, maps, photos of specimens): multiple choice. */
function loadScienceQa(dataDir: string, out: WeakRecord[]): void {
  const rows = JSON.parse(readFileSync(join(dataDir, SCIENCEQA), "utf8")) as Record<string, unknown>[];
  for (const row of rows) {
    if (typeof row.image !== "string") continue;
    const turns = row.conversations as { from: string; value: string }[];
    out.push({
      sample: make(
        qa(
          `scienceqa-${String(row.id)}`,
          row.image,
          turns[0].value.replace(/^<image>\s*/, ""),
          turns[1].value,
        ),
        `${SCIENCEQA}#${String(row.id)}`,
      ),
      source: WEAK_SOURCES.scienceqa,
      expectedStyles: ["multi-choice"],
      contradictingStyles: ["yes/no", "coordinate", "detailed description"],
    });
  }
}

const MME_DIR = "Visual-CoT/playground/data/eval/MME/eval_tool/LaVIN";
const MME_PHOTO = new Set(["color", "count", "existence", "position"]);
const MME_TEXT = new Set(["OCR"]);

/** MME yes/no questions with their category; only the categories whose images are photos or text. */
function loadMme(dataDir: string, out: WeakRecord[]): void {
  const dir = join(dataDir, MME_DIR);
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(".txt"))
    .sort()) {
    const category = file.replace(/\.txt$/, "");
    const source = MME_PHOTO.has(category)
      ? WEAK_SOURCES["mme-photo"]
      : MME_TEXT.has(category)
        ? WEAK_SOURCES["mme-ocr"]
        : undefined;
    if (source === undefined) continue;
    readFileSync(join(dir, file), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .forEach((line, k) => {
        const [image, question, answer] = line.split("\t");
        out.push({
          sample: make(qa(`mme-${category}-${k}`, image, question, answer), `${MME_DIR}/${file}:${k + 1}`),
          source,
          ...YES_NO,
        });
      });
  }
}

const COCO_QA = "LLaVA/playground/data/coco2014_val_gpt4_qa_30x3.jsonl";

/** LLaVA's COCO questions typed conv / detail / complex by their authors. */
function loadCocoQa(dataDir: string, out: WeakRecord[]): void {
  readFileSync(join(dataDir, COCO_QA), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .forEach((line, k) => {
      const r = JSON.parse(line) as Record<string, string>;
      if (r.type !== "detail") return;
      out.push({
        sample: make(qa(`cocoqa-${k}`, r.image, r.instruction, r.output, "coco"), `${COCO_QA}:${k + 1}`),
        source: WEAK_SOURCES["coco-qa"],
        expectedStyles: ["detailed description"],
        contradictingStyles: ["yes/no", "multi-choice", "coordinate", "word/short-phrase"],
      });
    });
}

/** Every weak-labelled record of `dataDir` (normally ../shared/data). */
export function loadWeakLabelled(dataDir: string): WeakRecord[] {
  if (!existsSync(join(dataDir, VISUAL_COT_DIR)))
    throw new Error(`${dataDir}: no ${VISUAL_COT_DIR} (the weak-labelled records live in ../shared/data)`);
  const out: WeakRecord[] = [];
  loadVisualCot(dataDir, out);
  loadScienceQa(dataDir, out);
  loadMme(dataDir, out);
  loadCocoQa(dataDir, out);
  return out;
}
