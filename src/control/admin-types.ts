import type { PolicyProblem, SelectionPolicy } from "../selection/selection-policy.js";
import type { PolicyOrigin } from "../stream/ports.js";

/** The outcome of a policy change asked through the admin API or `mmssr policy set`. */
export type PolicyChangeResult =
  | { ok: true; policy: SelectionPolicy }
  /** 400: the change is invalid (problems name the fields); 409: it was based on an old version */
  | { ok: false; status: 400 | 409; problems: PolicyProblem[] };

/** What the admin HTTP server serves, from the curator it runs in (src/app wires it). */
export interface AdminBackend {
  /** the policy in force */
  policy(): SelectionPolicy;
  /** a JSON merge patch (RFC 7386) of the policy; the old one stays in force when it fails */
  patchPolicy(patch: unknown, from: PolicyOrigin): Promise<PolicyChangeResult>;
  /** a whole policy (a `version`, when given, must be the one in force: 409 otherwise) */
  putPolicy(body: unknown, from: PolicyOrigin): Promise<PolicyChangeResult>;
  /** assigned partitions with lag, window and reservoir fill, model, execution provider, policy */
  status(): Promise<Record<string, unknown>>;
  /** broker connected, model loaded, partitions assigned: each check by name */
  ready(): Promise<{ ready: boolean; checks: Record<string, boolean> }>;
  /** starts a drain (publish, commit, exit), as SIGTERM does; idempotent */
  drain(): void;
  /** Prometheus text of the curator's registry */
  metrics(): Promise<{ contentType: string; text: string }>;
}
