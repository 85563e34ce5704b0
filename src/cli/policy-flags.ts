/**
 * The selection-policy flags of `mmssr curate` and `mmssr policy set`, in one table: each flag,
 * the policy field it sets and how its text is read. Defaults are not commander's: a flag not
 * given leaves its field to the policy schema's default (POLICY_DEFAULTS), so the flags, the admin
 * API and the control topic share one schema and one set of defaults; and the curator can say
 * which flags it did not apply when the group's stored policy wins.
 */
import type { Command } from "commander";
import { CAPABILITY_IDS } from "../domain/taxonomy.js";
import {
  POLICY_DEFAULTS,
  type PolicyProblem,
  parsePolicy,
  patchPolicy,
  type SelectionPolicy,
  type SelectionPolicyInput,
} from "../selection/selection-policy.js";
import { parseIntegerFlag, parseNumberFlag, parseWeightsFlag, usageError } from "./cli-errors.js";

interface PolicyFlag {
  flag: string;
  /** commander's attribute name */
  attr: string;
  field: keyof SelectionPolicyInput;
  argument: string;
  help: string;
  parse: (flag: string, raw: string) => unknown;
  /** `mmssr policy set`: this text removes the field ("none", "all") */
  clear?: string;
}

const list = (_flag: string, raw: string): string[] =>
  raw
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c !== "");

export const POLICY_FLAGS: readonly PolicyFlag[] = [
  {
    flag: "--ratio",
    attr: "ratio",
    field: "ratio",
    argument: "<r>",
    help: "share to select: of each window (window mode) or of the stream (continuous), 0 < r < 1",
    parse: parseNumberFlag,
  },
  {
    flag: "--budget",
    attr: "budget",
    field: "budget",
    argument: "<n>",
    help: "samples to select per window (window mode); instead of --ratio",
    parse: (f, raw) => parseIntegerFlag(f, raw),
  },
  {
    flag: "--caps",
    attr: "caps",
    field: "capabilities",
    argument: "<list>",
    help: `capabilities, in order: all (default) or a comma list of ${CAPABILITY_IDS.join(",")}`,
    parse: list,
    clear: "all",
  },
  {
    flag: "--thr",
    attr: "thr",
    field: "threshold",
    argument: "<t>",
    help: `a score must be above t (0..5) to count (default ${POLICY_DEFAULTS.threshold})`,
    parse: parseNumberFlag,
  },
  {
    flag: "--cap-weights",
    attr: "capWeights",
    field: "capabilityWeights",
    argument: "<list>",
    help: "budget shares per capability, e.g. ocr=2,data=2 (0: takes no part; none: equal)",
    parse: parseWeightsFlag,
    clear: "none",
  },
  {
    flag: "--style-weights",
    attr: "styleWeights",
    field: "styleWeights",
    argument: "<list>",
    help: 'quota weights per style, e.g. "yes/no=0.5" (0 excludes a style; none: equal)',
    parse: parseWeightsFlag,
    clear: "none",
  },
  {
    flag: "--max-total",
    attr: "maxTotal",
    field: "maxTotal",
    argument: "<n>",
    help: "select at most this many samples in total (none: no cap)",
    parse: (f, raw) => parseIntegerFlag(f, raw),
    clear: "none",
  },
  {
    flag: "--max-per-hour",
    attr: "maxPerHour",
    field: "maxPerHour",
    argument: "<n>",
    help: "select at most this many samples per clock hour (none: no cap)",
    parse: (f, raw) => parseIntegerFlag(f, raw),
    clear: "none",
  },
  {
    flag: "--max-delay-ms",
    attr: "maxDelayMs",
    field: "maxDelayMs",
    argument: "<ms>",
    help: `continuous mode: longest a sample waits for its decision (default ${POLICY_DEFAULTS.maxDelayMs})`,
    parse: (f, raw) => parseIntegerFlag(f, raw, 1),
  },
];

const FLAG_OF_FIELD = new Map(POLICY_FLAGS.map((f) => [f.field as string, f.flag]));

/** The flag that sets a policy field ("ratio" -> "--ratio"). */
export const policyFlagOf = (field: string): string | undefined => FLAG_OF_FIELD.get(field);

/** Adds the policy flags to a command (no defaults: see above). */
export function addPolicyFlags(command: Command): Command {
  for (const f of POLICY_FLAGS) command.option(`${f.flag} ${f.argument}`, f.help);
  return command;
}

/** The flags given (as typed: "--ratio"), in table order. */
export function givenPolicyFlags(flags: Record<string, unknown>): string[] {
  return POLICY_FLAGS.filter((f) => flags[f.attr] !== undefined).map((f) => f.flag);
}

/** The policy input of the flags given (checked by the schema only when built). */
export function policyInputOf(flags: Record<string, unknown>): SelectionPolicyInput {
  const input: Record<string, unknown> = {};
  for (const f of POLICY_FLAGS) {
    const raw = flags[f.attr];
    if (typeof raw !== "string") continue;
    if (f.clear !== undefined && raw.trim() === f.clear) continue;
    input[f.field] = f.parse(f.flag, raw);
  }
  return input as SelectionPolicyInput;
}

/** `mmssr curate`'s first policy from its flags; a usage error names the flag at fault. */
export function policyFromFlags(flags: Record<string, unknown>): SelectionPolicy {
  const r = parsePolicy(policyInputOf(flags));
  if (!r.ok) throw flagsError(r.problems);
  return r.policy;
}

/**
 * `mmssr policy set`: the merge patch of the flags given over `current` (--ratio removes a
 * budget and --budget a ratio, since they exclude each other; "none" / "all" remove a field),
 * validated, with the next version.
 */
export function patchFromFlags(current: SelectionPolicy, flags: Record<string, unknown>): SelectionPolicy {
  const patch: Record<string, unknown> = {};
  for (const f of POLICY_FLAGS) {
    const raw = flags[f.attr];
    if (typeof raw !== "string") continue;
    patch[f.field] = f.clear !== undefined && raw.trim() === f.clear ? null : f.parse(f.flag, raw);
  }
  if (Object.keys(patch).length === 0)
    throw usageError(`nothing to set: give at least one of ${POLICY_FLAGS.map((f) => f.flag).join(", ")}`);
  if ("ratio" in patch && !("budget" in patch)) patch.budget = null;
  if ("budget" in patch && !("ratio" in patch)) patch.ratio = null;
  const r = patchPolicy(current, patch);
  if (!r.ok) throw flagsError(r.problems);
  return r.policy;
}

function flagsError(problems: readonly PolicyProblem[]) {
  return usageError(
    problems
      .map((p) => {
        const field = p.path.split(".")[0];
        const flag = FLAG_OF_FIELD.get(field);
        if (!flag) return `${p.path}: ${p.message}`;
        const rest = p.path.slice(field.length + 1);
        return `${flag}${rest ? ` ${rest}` : ""}: ${p.message}`;
      })
      .join("; "),
  );
}
