/**
 * The wire form of a PolicyRecord (ports.ts), shared by the control topic and the policy file:
 * JSON `{ "policy": {...}, "at": "...", "from": { "via", "host", "instance" }, "previous": {...} }`.
 * The policy is validated by the one selection-policy schema, so a record that a person or an
 * older version wrote is refused with its field paths instead of reaching a selector.
 */
import { z } from "zod";
import { parsePolicy, type SelectionPolicy } from "../selection/selection-policy.js";
import type { PolicyOrigin, PolicyRecord } from "./ports.js";

const OriginSchema = z.object({
  via: z.enum(["flags", "api", "cli", "file"]),
  host: z.string(),
  instance: z.string().optional(),
});

const RecordSchema = z.object({
  policy: z.unknown(),
  at: z.string(),
  from: OriginSchema,
  previous: z.unknown().optional(),
});

export function encodePolicyRecord(record: PolicyRecord): string {
  return JSON.stringify(record);
}

/**
 * A record from its JSON text, or what is wrong with it. `version`, when given, replaces the
 * policy's own (the control topic's versions are its offsets). A plain policy object (a hand
 * written policy file) is read as a record from the file.
 */
export function decodePolicyRecord(
  text: string,
  defaults: { version?: number; from: PolicyOrigin; at: string },
): { ok: true; record: PolicyRecord } | { ok: false; problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `not JSON: ${(err as Error).message}` };
  }
  const isRecord = json !== null && typeof json === "object" && "policy" in json;
  const shell = RecordSchema.safeParse(
    isRecord ? json : { policy: json, at: defaults.at, from: defaults.from },
  );
  if (!shell.success)
    return {
      ok: false,
      problem: shell.error.issues.map((i) => `${i.path.join(".") || "(record)"}: ${i.message}`).join("; "),
    };
  const policy = withVersion(shell.data.policy, defaults.version);
  if (!policy.ok) return { ok: false, problem: policy.problem };
  const record: PolicyRecord = { policy: policy.policy, at: shell.data.at, from: shell.data.from };
  if (shell.data.previous !== undefined) {
    const previous = withVersion(shell.data.previous, undefined);
    if (previous.ok) record.previous = previous.policy;
  }
  return { ok: true, record };
}

function withVersion(
  input: unknown,
  version: number | undefined,
): { ok: true; policy: SelectionPolicy } | { ok: false; problem: string } {
  const body =
    version !== undefined && input !== null && typeof input === "object" ? { ...input, version } : input;
  const r = parsePolicy(body);
  if (r.ok) return r;
  return { ok: false, problem: r.problems.map((p) => `policy.${p.path}: ${p.message}`).join("; ") };
}
