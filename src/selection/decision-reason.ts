import type { ResolvedSelectOptions } from "./resolve-select-options.js";

/**
 * Why a sample was not selected, as the scored log says it (column `reason`), so that an
 * operator can see what a policy change did:
 * - `below-threshold`: no capability of the policy scores it above the threshold;
 * - `no-style`: none of its styles may form a bucket (no styles, or every one weighted 0);
 * - `budget`: it could have been picked, but the window's budget (or the continuous ratio)
 *   went to better or more diverse samples;
 * - `cap-total` / `cap-hour`: the budget would have taken it, the policy's maxTotal /
 *   maxPerHour did not.
 */
export type DecisionReason = "below-threshold" | "no-style" | "budget" | "cap-total" | "cap-hour";

export const DECISION_REASONS: readonly DecisionReason[] = [
  "below-threshold",
  "no-style",
  "budget",
  "cap-total",
  "cap-hour",
];

/**
 * Why a sample cannot be picked under `options` at all, or undefined when it can (it has a
 * score above the threshold in a capability of the policy, and a style that forms a bucket).
 * `scores` in CAPABILITIES order (NaN = missing), `styleMask` bit s = STYLES[s].
 */
export function ineligibleReason(
  scores: ArrayLike<number>,
  styleMask: number,
  options: Pick<ResolvedSelectOptions, "capabilities" | "threshold" | "allowedStyleMask">,
): DecisionReason | undefined {
  if ((styleMask & options.allowedStyleMask) === 0) return "no-style";
  for (const c of options.capabilities) if (scores[c] > options.threshold) return undefined;
  return "below-threshold";
}
