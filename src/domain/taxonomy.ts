/**
 * The mmSSR taxonomy. Ids, names and order are a model contract (../shared/MMSSR.md):
 * score columns, ONNX output columns and style bit positions all follow these arrays.
 */

export const CAPABILITIES = [
  { id: "spatial", name: "object spatial understanding" },
  { id: "attribute", name: "attribute identification" },
  { id: "logical", name: "logical deduction" },
  { id: "scene", name: "scene understanding" },
  { id: "finegrained", name: "fine-grained recognition" },
  { id: "language", name: "language generation" },
  { id: "incontext", name: "in-context learning" },
  { id: "comparative", name: "comparative analysis" },
  { id: "activity", name: "activity recognition" },
  { id: "causal", name: "causal reasoning" },
  { id: "humanities", name: "humanities" },
  { id: "stem", name: "stem knowledge" },
  { id: "data", name: "data understanding" },
  { id: "ocr", name: "optical character recognition" },
] as const;

export type CapabilityId = (typeof CAPABILITIES)[number]["id"];
export const CAPABILITY_IDS: readonly CapabilityId[] = CAPABILITIES.map((c) => c.id);
export const NUM_CAPABILITIES = CAPABILITIES.length; // 14

export const STYLES = [
  "multi-choice",
  "coordinate",
  "yes/no",
  "word/short-phrase",
  "short description",
  "detailed description",
  "comparison",
  "chain-of-thought (step-by-step)",
  "specified style",
] as const;

export type StyleName = (typeof STYLES)[number];
export const NUM_STYLES = STYLES.length; // 9

/** Score scale of the released scorer and of our models. */
export const SCORE_MIN = 0;
export const SCORE_MAX = 5;

/** image_source given to a sample that names none (MMSSR.md, interchange format). */
export const UNKNOWN_SOURCE = "unknown";

const capabilityIndexById = new Map<string, number>(CAPABILITY_IDS.map((id, i) => [id, i]));
const styleIndexByName = new Map<string, number>(STYLES.map((s, i) => [s, i]));

/** Index of a capability id in contract order, or -1. */
export function capabilityIndex(id: string): number {
  return capabilityIndexById.get(id) ?? -1;
}

/** Index (bit position) of a style name in contract order, or -1. */
export function styleIndex(name: string): number {
  return styleIndexByName.get(name) ?? -1;
}

/** Style bit mask (bit i = STYLES[i]) -> names in contract order. */
export function styleNamesOfMask(mask: number): StyleName[] {
  const out: StyleName[] = [];
  for (let s = 0; s < NUM_STYLES; s++) if (mask & (1 << s)) out.push(STYLES[s]);
  return out;
}

/** The selection bucket of a sample for one of its styles (MMSSR.md). */
export function bucketName(style: string, imageSource: string): string {
  return `${style}+${imageSource}`;
}
