/**
 * The default model's teacher: the rule teacher's scores and styles, moved by the weak label of
 * a record's source where it has one. A question from a document benchmark exercises reading text
 * whatever its wording, one about a natural photo does not need charts, maths or reading; the rule
 * teacher sees only keywords, so without this the student inherits its blind spots (issue 10: a
 * document question ranked below a photo question on `ocr` more often than not).
 */

import type { Sample } from "../src/domain/sample.js";
import { type CapabilityId, capabilityIndex, styleIndex } from "../src/domain/taxonomy.js";
import type { LabelledSample } from "../src/scoring/fit/fit-model.js";
import { type ImageEvidence, RULE_TEACHER_ID, ruleTeacherLabel } from "../src/scoring/rule-teacher.js";
import type { WeakGroup } from "./weak-labelled-corpus.js";

export const WEAK_TEACHER_ID = `${RULE_TEACHER_ID}+weak-labels@1`;
/** The same, where the rule teacher also saw what the vision models found in each image. */
export const WEAK_VISION_TEACHER_ID = `${RULE_TEACHER_ID}+image-evidence+weak-labels@1`;

/** What a record's weak label says: the capabilities it exercises and those it does not need. */
export interface WeakPrior {
  capabilities: readonly CapabilityId[];
  absent: readonly CapabilityId[];
}

/** A capability the source exercises scores at least this. */
export const EXERCISED_FLOOR = 4;
/** A capability the source does not need scores at most this. */
export const ABSENT_CEILING = 1;

/** The prior of a whole group, for generated questions that have a group but no source. */
export const GROUP_PRIORS: Readonly<Record<WeakGroup, WeakPrior>> = {
  chart: { capabilities: ["data"], absent: ["activity", "scene"] },
  document: { capabilities: ["ocr"], absent: ["activity", "scene"] },
  science: { capabilities: ["stem"], absent: ["activity", "scene"] },
  photo: { capabilities: [], absent: ["ocr", "data", "stem"] },
  "scene-text": { capabilities: ["ocr"], absent: ["data"] },
  "fine-grained": { capabilities: ["finegrained"], absent: ["ocr", "data", "stem"] },
  other: { capabilities: [], absent: [] },
};

/** The label of one sample: rule teacher, then the weak prior (if any) applied to its scores. */
export function weakTeacherLabel(
  sample: Sample,
  prior?: WeakPrior,
  evidence?: ImageEvidence,
): LabelledSample {
  const label = ruleTeacherLabel(sample, evidence);
  const scores = Float32Array.from(label.scores);
  if (prior !== undefined) {
    for (const c of prior.capabilities) {
      const k = capabilityIndex(c);
      scores[k] = Math.max(scores[k], EXERCISED_FLOOR);
    }
    for (const c of prior.absent) {
      const k = capabilityIndex(c);
      scores[k] = Math.min(scores[k], ABSENT_CEILING);
    }
  }
  let styleMask = 0;
  for (const s of label.styles) styleMask |= 1 << styleIndex(s);
  return { sample, scores, styleMask };
}

/** For the model card: the priors as a table. */
export function describePriors(priors: Readonly<Record<string, WeakPrior>>): string {
  const rows = Object.entries(priors).map(
    ([name, p]) => `| ${name} | ${p.capabilities.join(", ") || "-"} | ${p.absent.join(", ") || "-"} |`,
  );
  return [
    `| weak label | scores at least ${EXERCISED_FLOOR} | scores at most ${ABSENT_CEILING} |`,
    "|---|---|---|",
    ...rows,
  ].join("\n");
}
