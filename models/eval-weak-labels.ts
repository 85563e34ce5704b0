/**
 * npm run eval:weak-labels — how well a scorer ranks real benchmark questions by what their
 * source says they are about (weak labels, models/weak-labelled-corpus.ts), the measures of
 * issue 10: the expected answer style tagged, a contradicting style tagged, and the AUC of chart
 * questions vs natural photos on `data`, documents vs natural photos on `ocr`, science diagrams
 * vs natural photos on `stem`. Images named by these records are mostly absent, so most are
 * scored text-only (as they would be in a stream without the images).
 *
 *   node dist/models/eval-weak-labels.js [--model models/mmssr-lite] [--data ../shared/data]
 *     [--sources a,b,...  only these sources] [--json]
 *
 * It always scores the rule teacher (the "keyword rules" baseline) beside the model.
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import type { StyleName } from "../src/domain/taxonomy.js";
import { capabilityIndex } from "../src/domain/taxonomy.js";
import { createImageLoader } from "../src/scoring/image-source.js";
import { createOnnxScorer } from "../src/scoring/onnx-scorer.js";
import { RuleTeacherScorer } from "../src/scoring/rule-teacher.js";
import type { SampleScore, Scorer } from "../src/scoring/scoring-types.js";
import { packageRoot } from "../src/util/package-root.js";
import { loadWeakLabelled, type WeakGroup, type WeakRecord } from "./weak-labelled-corpus.js";

export interface WeakLabelMeasures {
  n: number;
  expectedStyleTagged: number;
  contradictingStyleTagged: number;
  aucDataChartVsPhoto: number;
  aucOcrDocumentVsPhoto: number;
  aucStemScienceVsPhoto: number;
  counts: Record<string, number>;
}

/** Mann-Whitney AUC: the chance that a random positive outscores a random negative (ties 1/2). */
export function auc(positives: readonly number[], negatives: readonly number[]): number {
  if (positives.length === 0 || negatives.length === 0) return Number.NaN;
  const all = [
    ...positives.map((v) => ({ v, pos: true })),
    ...negatives.map((v) => ({ v, pos: false })),
  ].sort((a, b) => a.v - b.v);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j].v === all[i].v) j++;
    const midRank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) if (all[k].pos) rankSum += midRank;
    i = j;
  }
  const np = positives.length;
  return (rankSum - (np * (np + 1)) / 2) / (np * negatives.length);
}

export function measure(records: readonly WeakRecord[], scores: readonly SampleScore[]): WeakLabelMeasures {
  let expected = 0;
  let contradicting = 0;
  const byGroup = (group: WeakGroup, cap: "data" | "ocr" | "stem"): number[] => {
    const c = capabilityIndex(cap);
    return records.flatMap((r, i) => (r.source.group === group ? [scores[i].scores[c]] : []));
  };
  const counts: Record<string, number> = {};
  records.forEach((r, i) => {
    counts[r.source.name] = (counts[r.source.name] ?? 0) + 1;
    const tagged = new Set<StyleName>(scores[i].styles);
    if (r.expectedStyles.some((st) => tagged.has(st))) expected++;
    if (r.contradictingStyles.some((s) => tagged.has(s))) contradicting++;
  });
  return {
    n: records.length,
    expectedStyleTagged: expected / records.length,
    contradictingStyleTagged: contradicting / records.length,
    aucDataChartVsPhoto: auc(byGroup("chart", "data"), byGroup("photo", "data")),
    aucOcrDocumentVsPhoto: auc(byGroup("document", "ocr"), byGroup("photo", "ocr")),
    aucStemScienceVsPhoto: auc(byGroup("science", "stem"), byGroup("photo", "stem")),
    counts,
  };
}

export async function scoreAll(scorer: Scorer, records: readonly WeakRecord[]): Promise<SampleScore[]> {
  const out: SampleScore[] = [];
  for (let i = 0; i < records.length; i += 1024)
    out.push(...(await scorer.score(records.slice(i, i + 1024).map((r) => r.sample))));
  return out;
}

export const GOALS = {
  expectedStyleTagged: 0.98,
  contradictingStyleTagged: 0.02,
  aucDataChartVsPhoto: 0.8,
  aucOcrDocumentVsPhoto: 0.8,
  aucStemScienceVsPhoto: 0.8,
} as const;

export function formatMeasures(rows: readonly { name: string; m: WeakLabelMeasures }[]): string {
  const f = (v: number) => (Number.isNaN(v) ? "-" : v.toFixed(3));
  const head = `| measure | ${rows.map((r) => r.name).join(" | ")} | goal |\n|---|${rows.map(() => "---:|").join("")}---:|`;
  const line = (label: string, key: keyof typeof GOALS, cmp: string) =>
    `| ${label} | ${rows.map((r) => f(r.m[key])).join(" | ")} | ${cmp} ${GOALS[key]} |`;
  return [
    head,
    line("expected style tagged", "expectedStyleTagged", ">="),
    line("contradicting style tagged", "contradictingStyleTagged", "<="),
    line("AUC chart/infographic vs photos, on `data`", "aucDataChartVsPhoto", ">="),
    line("AUC documents vs photos, on `ocr`", "aucOcrDocumentVsPhoto", ">="),
    line("AUC science diagrams vs photos, on `stem`", "aucStemScienceVsPhoto", ">="),
  ].join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: "string", default: "../shared/data" },
      model: { type: "string", default: "models/mmssr-lite" },
      sources: { type: "string", default: "" },
      json: { type: "boolean", default: false },
    },
  });
  const root = packageRoot();
  const dataDir = resolve(root, values.data);
  const modelDir = resolve(root, values.model);
  const only = values.sources;
  let records = loadWeakLabelled(dataDir);
  if (only !== "") {
    const keep = new Set(only.split(","));
    records = records.filter((r) => keep.has(r.source.name));
  }
  const imageLoader = createImageLoader({ baseDir: dataDir, allowUrls: false });
  const model = await createOnnxScorer({ modelDir, imageLoader });
  const rules = new RuleTeacherScorer();
  const rows = [
    { name: model.id, m: measure(records, await scoreAll(model, records)) },
    { name: rules.id, m: measure(records, await scoreAll(rules, records)) },
  ];
  await model.close();
  await imageLoader.close();
  if (values.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
  else {
    process.stdout.write(
      `# eval:weak-labels  model ${modelDir}  data ${dataDir}  records ${records.length}\n`,
    );
    process.stdout.write(`# per source: ${JSON.stringify(rows[0].m.counts)}\n`);
    process.stdout.write(`${formatMeasures(rows)}\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
