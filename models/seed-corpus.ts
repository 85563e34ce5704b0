/**
 * The real records of ../shared/data whose licences allow building a model from them (the
 * records themselves are read at build time and never copied into this repository):
 *
 * | file (under the shared data folder) | licence | records |
 * |---|---|---|
 * | LLaMA-Factory/data/llava_instruct_100.json | CC BY 4.0 (+ OpenAI terms) | 100 |
 * | LLaMA-Factory/data/mllm_demo.json (+ 3 images) | Apache-2.0 | 6 |
 * | LLaVA/playground/data/coco2014_val_gpt4_qa_30x3.jsonl | COCO CC BY 4.0, OpenAI terms | 90 |
 * | LLaVA/playground/data/coco2014_val_qa_eval/qa90_*.jsonl | same | 90 |
 * | LLaVA/llava/eval/table/caps_boxes_coco2014_val_80.jsonl (caption + box questions) | same | 160 |
 * | Visual-CoT/.../llava-bench-in-the-wild/{questions,answers_gpt4}.jsonl | LLaVA's (Apache-2.0) | 60 |
 *
 * Left out on purpose: MME and the LAION/CC/SBU captions (research use only), ScienceQA
 * (CC BY-NC-SA: non-commercial), the Visual-CoT benchmark files (licences of 13 upstream sets).
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { type Sample, validateSample } from "../src/domain/sample.js";

export interface SeedRecord {
  sample: Sample;
  /** the file it came from, relative to the shared data folder */
  origin: string;
}

const readJsonl = (path: string): Record<string, unknown>[] =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

function add(out: SeedRecord[], origin: string, raw: unknown): void {
  const r = validateSample(raw, { missingId: "content-hash" });
  if (!r.ok)
    throw new Error(`${origin}: a seed record failed validation: ${JSON.stringify(r.errors.slice(0, 3))}`);
  out.push({ sample: r.sample, origin });
}

const qa = (id: string, image: string, source: string, question: string, answer: string) => ({
  id,
  image,
  image_source: source,
  conversations: [
    { from: "human", value: `<image>\n${question}` },
    { from: "gpt", value: answer },
  ],
});

/** Loads every allowed real record from `dataDir` (normally ../shared/data). */
export function loadSeedCorpus(dataDir: string): SeedRecord[] {
  const out: SeedRecord[] = [];

  const llavaInstruct = "LLaMA-Factory/data/llava_instruct_100.json";
  for (const rec of JSON.parse(readFileSync(join(dataDir, llavaInstruct), "utf8")) as Record<
    string,
    unknown
  >[])
    add(out, llavaInstruct, { ...rec, image_source: "coco" });

  const demo = "LLaMA-Factory/data/mllm_demo.json";
  const demoDir = dirname(resolve(dataDir, demo));
  for (const rec of JSON.parse(readFileSync(join(dataDir, demo), "utf8")) as Record<string, unknown>[]) {
    const images = (rec.images as string[] | undefined)?.map((p) => resolve(demoDir, p));
    add(out, demo, { ...rec, images, image_source: "llamafactory-demo" });
  }

  const gpt4qa = "LLaVA/playground/data/coco2014_val_gpt4_qa_30x3.jsonl";
  readJsonl(join(dataDir, gpt4qa)).forEach((r, k) => {
    add(
      out,
      gpt4qa,
      qa(`coco-gpt4qa-${k}`, String(r.image), "coco", String(r.instruction), String(r.output)),
    );
  });

  const qa90q = "LLaVA/playground/data/coco2014_val_qa_eval/qa90_questions.jsonl";
  const qa90a = "LLaVA/playground/data/coco2014_val_qa_eval/qa90_gpt4_answer.jsonl";
  const answers90 = new Map(readJsonl(join(dataDir, qa90a)).map((r) => [r.question_id, String(r.text)]));
  for (const r of readJsonl(join(dataDir, qa90q)))
    add(
      out,
      qa90q,
      qa(
        `coco-qa90-${r.question_id}`,
        String(r.image),
        "coco",
        String(r.text),
        answers90.get(r.question_id) ?? "",
      ),
    );

  const boxes = "LLaVA/llava/eval/table/caps_boxes_coco2014_val_80.jsonl";
  readJsonl(join(dataDir, boxes)).forEach((r, k) => {
    const captions = r.captions as string[];
    const instances = r.instances as { category: string; bbox: number[] }[];
    add(
      out,
      boxes,
      qa(
        `coco-caption-${k}`,
        String(r.image),
        "coco",
        "Write a one-sentence caption for the image.",
        captions[0],
      ),
    );
    if (instances.length > 0) {
      const inst = instances[0];
      add(
        out,
        boxes,
        qa(
          `coco-box-${k}`,
          String(r.image),
          "coco",
          `Please provide the bounding box coordinate of the region this sentence describes: a ${inst.category}.`,
          `[${inst.bbox.map((v) => v.toFixed(2)).join(", ")}]`,
        ),
      );
    }
  });

  const benchDir = "Visual-CoT/playground/data/eval/llava-bench-in-the-wild";
  const benchAnswers = new Map(
    readJsonl(join(dataDir, benchDir, "answers_gpt4.jsonl")).map((r) => [r.question_id, String(r.text)]),
  );
  for (const r of readJsonl(join(dataDir, benchDir, "questions.jsonl")))
    add(
      out,
      `${benchDir}/questions.jsonl`,
      qa(
        `llava-bench-${r.question_id}`,
        String(r.image),
        "llava-bench",
        String(r.text),
        benchAnswers.get(r.question_id) ?? "",
      ),
    );
  return out;
}
