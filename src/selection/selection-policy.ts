/**
 * The one shape of the selection options of a stream (DESIGN.md "Budgets and control"): a zod
 * schema with its defaults and a version. Command-line flags build the first policy; an admin API
 * and the control topic change it with a JSON merge patch (RFC 7386), validated against the same
 * schema, so all three share one set of defaults and one set of error messages.
 *
 * It lives below the stream (src/selection) because the select operators read it; the admin API
 * and the control topic that change it live above (src/control).
 */
import { z } from "zod";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  CAPABILITY_IDS,
  type CapabilityId,
  SCORE_MAX,
  SCORE_MIN,
  STYLES,
  type StyleName,
} from "../domain/taxonomy.js";
import { resolveSelectOptions } from "./resolve-select-options.js";
import type { SelectOptions } from "./select-options.js";

const capability = z.enum(CAPABILITY_IDS as [CapabilityId, ...CapabilityId[]]);
const style = z.enum(STYLES as unknown as [StyleName, ...StyleName[]]);
const weight = z.number().finite().min(0);
const count = z.number().int().min(0);

/** Defaults of the fields that have one (the rest are absent unless given). */
export const POLICY_DEFAULTS = { version: 0, threshold: 0, maxDelayMs: 1000 } as const;

export const SelectionPolicySchema = z
  .object({
    /** grows by one with every change; every decision records the version it was made under */
    version: count.default(POLICY_DEFAULTS.version),
    /** share of each window (window mode) or of the stream (continuous mode) to select, in (0, 1) */
    ratio: z.number().gt(0).lt(1).optional(),
    /** samples to select per window (window mode); exclusive with ratio */
    budget: count.optional(),
    /** select at most this many samples in total */
    maxTotal: count.optional(),
    /** select at most this many samples per clock hour */
    maxPerHour: count.optional(),
    /** capabilities, in order (default: all 14 in contract order) */
    capabilities: z.array(capability).min(1).optional(),
    /** budget shares per capability (0: takes no part) */
    capabilityWeights: z.partialRecord(capability, weight).optional(),
    /** quota weights per style (0: excludes the style) */
    styleWeights: z.partialRecord(style, weight).optional(),
    /** a score must be strictly above this to count */
    threshold: z.number().min(SCORE_MIN).max(SCORE_MAX).default(POLICY_DEFAULTS.threshold),
    /** continuous mode: longest a sample waits for its decision (ms) */
    maxDelayMs: z.number().int().min(1).default(POLICY_DEFAULTS.maxDelayMs),
  })
  .strict()
  .superRefine((p, ctx) => {
    if ((p.ratio === undefined) === (p.budget === undefined))
      ctx.addIssue({
        code: "custom",
        path: [p.ratio === undefined ? "ratio" : "budget"],
        message:
          p.ratio === undefined
            ? "one of ratio or budget is required"
            : "ratio and budget exclude each other: give one of them",
      });
    if (p.capabilities && new Set(p.capabilities).size !== p.capabilities.length)
      ctx.addIssue({ code: "custom", path: ["capabilities"], message: "a capability is listed twice" });
  });

export type SelectionPolicy = z.output<typeof SelectionPolicySchema>;
export type SelectionPolicyInput = z.input<typeof SelectionPolicySchema>;

/** One thing wrong with a policy: where (a JSON path such as "capabilityWeights.ocr") and what. */
export interface PolicyProblem {
  path: string;
  message: string;
}

/** Validates a policy (defaults filled in), or says every problem with its field path. */
export function parsePolicy(
  input: unknown,
): { ok: true; policy: SelectionPolicy } | { ok: false; problems: PolicyProblem[] } {
  const r = SelectionPolicySchema.safeParse(input);
  if (r.success) {
    // What the schema cannot see alone (every capability weighted 0, every style excluded):
    // the selector's own checks, so that a policy that passes here never fails a window.
    try {
      resolveSelectOptions(0, selectOptionsOf(r.data));
    } catch (err) {
      if (!(err instanceof MmssrError)) throw err;
      const m = /^([A-Za-z]+)(?:\.[A-Za-z/_-]+)?: /.exec(err.message);
      return {
        ok: false,
        problems: [
          {
            path: m ? m[0].slice(0, -2) : "(policy)",
            message: m ? err.message.slice(m[0].length) : err.message,
          },
        ],
      };
    }
    return { ok: true, policy: r.data };
  }
  return {
    ok: false,
    problems: r.error.issues.map((i) => ({
      path: i.path.map(String).join(".") || "(policy)",
      message: i.message,
    })),
  };
}

/** parsePolicy, throwing MmssrError(BAD_OPTIONS) that names every field at fault. */
export function policyOrThrow(input: unknown): SelectionPolicy {
  const r = parsePolicy(input);
  if (r.ok) return r.policy;
  throw new MmssrError(
    ERROR_CODES.BAD_OPTIONS,
    `invalid selection policy: ${r.problems.map((p) => `${p.path}: ${p.message}`).join("; ")}`,
  );
}

/**
 * RFC 7386 JSON merge patch: objects merge key by key, null removes a key, anything else
 * (arrays included) replaces.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target !== null && typeof target === "object" && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * The policy after a merge patch, validated, with the next version; the old policy is untouched
 * (the caller keeps it in force when this fails). A patch cannot set the version.
 */
export function patchPolicy(
  current: SelectionPolicy,
  patch: unknown,
): { ok: true; policy: SelectionPolicy } | { ok: false; problems: PolicyProblem[] } {
  if (patch !== null && typeof patch === "object" && !Array.isArray(patch) && "version" in patch)
    return { ok: false, problems: [{ path: "version", message: "is set by the curator, not by a patch" }] };
  const { version, ...rest } = current;
  const merged = mergePatch(rest, patch);
  if (merged === null || typeof merged !== "object" || Array.isArray(merged))
    return { ok: false, problems: [{ path: "(policy)", message: "a patch must be a JSON object" }] };
  return parsePolicy({ ...(merged as object), version: version + 1 });
}

/** The options of the offline selector for one window under `policy` (caps are the governor's). */
export function selectOptionsOf(policy: SelectionPolicy): SelectOptions {
  return {
    ratio: policy.ratio,
    budget: policy.budget,
    capabilities: policy.capabilities,
    threshold: policy.threshold,
    capabilityWeights: policy.capabilityWeights,
    styleWeights: policy.styleWeights,
  };
}
