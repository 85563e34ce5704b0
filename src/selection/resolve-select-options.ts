import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITY_IDS,
  type CapabilityId,
  capabilityIndex,
  NUM_STYLES,
  SCORE_MAX,
  SCORE_MIN,
  STYLES,
  styleIndex,
} from "../domain/taxonomy.js";
import type { SelectOptions } from "./select-options.js";

/** Options checked and turned into the numbers the selector loops over. */
export interface ResolvedSelectOptions {
  budget: number;
  /** capability indices, in the order given */
  capabilities: number[];
  threshold: number;
  /** weight per entry of `capabilities`, or undefined when all are equal */
  capabilityWeights: Float64Array | undefined;
  /** weight per style (STYLES order), or undefined when all are equal */
  styleWeights: Float64Array | undefined;
  /** styles that may form buckets (weight > 0) as a bit mask */
  allowedStyleMask: number;
}

function bad(message: string): MmssrError {
  return new MmssrError(ERROR_CODES.BAD_OPTIONS, message);
}

function checkWeight(name: string, w: unknown): number {
  if (typeof w !== "number" || !Number.isFinite(w) || w < 0)
    throw bad(`${name}: weight must be a finite number >= 0, got ${String(w)}`);
  return w;
}

/** Throws MmssrError(BAD_OPTIONS) naming the option at fault. */
export function resolveSelectOptions(poolSize: number, options: SelectOptions): ResolvedSelectOptions {
  const hasRatio = options.ratio !== undefined;
  const hasBudget = options.budget !== undefined;
  if (hasRatio === hasBudget)
    throw bad(
      hasRatio ? "ratio and budget: give one of them, not both" : "ratio or budget: one of them is required",
    );
  let budget: number;
  if (hasRatio) {
    const r = options.ratio as number;
    if (typeof r !== "number" || !(r > 0 && r < 1)) throw bad(`ratio: must be a number in (0, 1), got ${r}`);
    budget = Math.floor(poolSize * r);
  } else {
    const b = options.budget as number;
    if (typeof b !== "number" || !Number.isSafeInteger(b) || b < 0)
      throw bad(`budget: must be a whole number >= 0, got ${b}`);
    budget = b;
  }

  const threshold = options.threshold ?? 0;
  if (typeof threshold !== "number" || !(threshold >= SCORE_MIN && threshold <= SCORE_MAX))
    throw bad(`threshold: must be a number in ${SCORE_MIN}..${SCORE_MAX}, got ${threshold}`);

  const ids = options.capabilities ?? CAPABILITY_IDS;
  if (ids.length === 0) throw bad("capabilities: the list is empty");
  const seen = new Set<string>();
  let capabilities: number[] = [];
  for (const id of ids) {
    const c = capabilityIndex(id);
    if (c < 0)
      throw bad(
        `capabilities: unknown capability ${JSON.stringify(id)} (known: ${CAPABILITY_IDS.join(", ")})`,
      );
    if (seen.has(id)) throw bad(`capabilities: ${id} is listed twice`);
    seen.add(id);
    capabilities.push(c);
  }

  let capabilityWeights: Float64Array | undefined;
  if (options.capabilityWeights) {
    for (const key of Object.keys(options.capabilityWeights))
      if (capabilityIndex(key) < 0) throw bad(`capabilityWeights: unknown capability ${JSON.stringify(key)}`);
    const w = capabilities.map((c) =>
      checkWeight(
        `capabilityWeights.${CAPABILITY_IDS[c]}`,
        options.capabilityWeights?.[CAPABILITY_IDS[c] as CapabilityId] ?? 1,
      ),
    );
    // weight 0 = the capability takes no part
    const kept = capabilities.filter((_, k) => w[k] > 0);
    const keptW = w.filter((x) => x > 0);
    if (kept.length === 0) throw bad("capabilityWeights: every selected capability has weight 0");
    capabilities = kept;
    capabilityWeights = keptW.every((x) => x === keptW[0]) ? undefined : Float64Array.from(keptW);
  }

  let styleWeights: Float64Array | undefined;
  let allowedStyleMask = (1 << NUM_STYLES) - 1;
  if (options.styleWeights) {
    for (const key of Object.keys(options.styleWeights))
      if (styleIndex(key) < 0)
        throw bad(`styleWeights: unknown style ${JSON.stringify(key)} (known: ${STYLES.join(", ")})`);
    const w = Float64Array.from(STYLES, (s) =>
      checkWeight(`styleWeights.${s}`, options.styleWeights?.[s] ?? 1),
    );
    allowedStyleMask = 0;
    for (let s = 0; s < NUM_STYLES; s++) if (w[s] > 0) allowedStyleMask |= 1 << s;
    if (allowedStyleMask === 0) throw bad("styleWeights: every style has weight 0");
    const positive = Array.from(w).filter((x) => x > 0);
    styleWeights = positive.every((x) => x === positive[0]) ? undefined : w;
  }

  return { budget, capabilities, threshold, capabilityWeights, styleWeights, allowedStyleMask };
}
