/**
 * The one owner of a curator's selection policy (DESIGN.md "Budgets and control"): it starts
 * from the group's policy store (the control topic, or a policy file), or writes the
 * command line's policy there when the group has none; it follows the store, so a change made
 * on any instance (or with `mmssr policy set`) reaches every instance of the group; it turns
 * a PATCH or PUT into a validated policy, writes it to the store and applies it. The select
 * operators read `policy$`. Every change is logged: when, from where, old and new.
 */
import { BehaviorSubject, type Observable, type Subscription } from "rxjs";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";
import {
  type PolicyProblem,
  parsePolicy,
  patchPolicy,
  type SelectionPolicy,
} from "../selection/selection-policy.js";
import type { PolicyOrigin, PolicyRecord, PolicyStore } from "../stream/ports.js";
import type { PolicyChangeResult } from "./admin-types.js";

export interface PolicyControlOptions {
  store: PolicyStore;
  /** the policy the command line builds: the group's first when its store holds none */
  initial: SelectionPolicy;
  /** the policy flags the user gave (e.g. ["--ratio", "--max-total"]), named when the store's policy wins */
  givenFlags?: readonly string[];
  /**
   * What this curator cannot run with (e.g. continuous mode without a ratio): a change that
   * has problems here is refused (400), and one read from the store is not applied (logged).
   */
  accept?: (policy: SelectionPolicy) => PolicyProblem[];
  /** who writes the first policy (via "flags") */
  origin: { host: string; instance?: string };
  log?: (line: string) => void;
}

export class PolicyControl {
  private readonly subject: BehaviorSubject<SelectionPolicy>;
  private current: PolicyRecord;
  private following: Subscription | undefined;
  /** one change at a time, so a second PATCH patches the result of the first */
  private changing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: PolicyStore,
    first: PolicyRecord,
    private readonly log: (line: string) => void,
    private readonly accept: (policy: SelectionPolicy) => PolicyProblem[],
  ) {
    this.current = first;
    this.subject = new BehaviorSubject(first.policy);
  }

  /** Reads the group's policy (or writes the initial one) and starts following the store. */
  static async start(options: PolicyControlOptions): Promise<PolicyControl> {
    const { store } = options;
    const log = options.log ?? (() => {});
    const found = await store.latest();
    const accept = options.accept ?? (() => []);
    let first: PolicyRecord;
    if (found && accept(found.policy).length > 0) {
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `the group's policy v${found.policy.version} in the ${store.where} does not suit this curator: ${accept(
          found.policy,
        )
          .map((p) => `${p.path}: ${p.message}`)
          .join("; ")}`,
      );
    }
    if (found) {
      first = found;
      const flags = options.givenFlags ?? [];
      log(
        `policy v${found.policy.version} from the ${store.where} is in force (${describeOrigin(found)})` +
          (flags.length > 0 ? `; flags not applied (the group's policy wins): ${flags.join(", ")}` : ""),
      );
    } else {
      first = await store.write(options.initial, { via: "flags", ...options.origin });
      log(`policy v${first.policy.version} from the command line, written to the ${store.where}`);
    }
    const control = new PolicyControl(store, first, log, accept);
    control.following = store.changes$.subscribe({
      next: (record) => control.apply(record),
      error: (err) => log(`following the ${store.where} failed: ${(err as Error).message}`),
    });
    return control;
  }

  /** the policy in force */
  get policy(): SelectionPolicy {
    return this.current.policy;
  }

  /** the record of the policy in force: when and where it was set */
  get record(): PolicyRecord {
    return this.current;
  }

  /** the policy in force, then every change (a BehaviorSubject's view) */
  get policy$(): Observable<SelectionPolicy> {
    return this.subject.asObservable();
  }

  /** A JSON merge patch of the policy in force: validated, written to the store, applied. */
  patch(patch: unknown, from: PolicyOrigin): Promise<PolicyChangeResult> {
    return this.serial(async () => {
      const r = patchPolicy(this.current.policy, patch);
      if (!r.ok) return invalid(r.problems);
      const refused = this.accept(r.policy);
      if (refused.length > 0) return invalid(refused);
      return this.commit(r.policy, from);
    });
  }

  /** A whole policy; a `version`, when given, must be the one in force (read-modify-write). */
  replace(body: unknown, from: PolicyOrigin): Promise<PolicyChangeResult> {
    return this.serial(async () => {
      const version = this.current.policy.version;
      if (body === null || typeof body !== "object" || Array.isArray(body))
        return invalid([{ path: "(policy)", message: "must be a JSON object" }]);
      const given = (body as { version?: unknown }).version;
      if (given !== undefined && given !== version)
        return {
          ok: false,
          status: 409,
          problems: [
            {
              path: "version",
              message: `is ${JSON.stringify(given)}, but v${version} is in force now: read it again and retry`,
            },
          ],
        };
      const r = parsePolicy({ ...body, version: version + 1 });
      if (!r.ok) return invalid(r.problems);
      const refused = this.accept(r.policy);
      if (refused.length > 0) return invalid(refused);
      return this.commit(r.policy, from);
    });
  }

  /** Stops following the store (which its opener closes) and completes policy$. */
  async close(): Promise<void> {
    this.following?.unsubscribe();
    await this.changing.catch(() => {});
    this.subject.complete();
  }

  private async commit(policy: SelectionPolicy, from: PolicyOrigin): Promise<PolicyChangeResult> {
    const record = await this.store.write(policy, from, this.current.policy);
    this.apply(record);
    return { ok: true, policy: this.current.policy };
  }

  /** A record from the store (or this instance's own write): newer versions only, in order. */
  private apply(record: PolicyRecord): void {
    const old = this.current;
    if (record.policy.version <= old.policy.version) return; // our own write, read back; or older
    const refused = this.accept(record.policy);
    if (refused.length > 0) {
      this.log(
        `policy v${record.policy.version} (${describeOrigin(record)}) not applied here, v${old.policy.version} stays: ${refused.map((p) => `${p.path}: ${p.message}`).join("; ")}`,
      );
      return;
    }
    this.current = record;
    this.log(
      `policy v${old.policy.version} -> v${record.policy.version} (${describeOrigin(record)}): ${describeChange(old.policy, record.policy)}`,
    );
    this.subject.next(record.policy);
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.changing.then(work, work);
    this.changing = run.catch(() => {});
    return run;
  }
}

function invalid(problems: PolicyProblem[]): PolicyChangeResult {
  return { ok: false, status: 400, problems };
}

function describeOrigin(r: PolicyRecord): string {
  const who = r.from.instance ? ` ${r.from.instance}` : "";
  return `set via ${r.from.via} from ${r.from.host}${who} at ${r.at}`;
}

/** "ratio 0.2 -> 0.05, maxTotal (none) -> 1000": the fields that differ, old -> new. */
export function describeChange(old: SelectionPolicy, now: SelectionPolicy): string {
  const keys = [...new Set([...Object.keys(old), ...Object.keys(now)])].filter((k) => k !== "version");
  const show = (v: unknown): string => (v === undefined ? "(none)" : JSON.stringify(v));
  const parts = keys
    .filter((k) => show(old[k as keyof SelectionPolicy]) !== show(now[k as keyof SelectionPolicy]))
    .map((k) => `${k} ${show(old[k as keyof SelectionPolicy])} -> ${show(now[k as keyof SelectionPolicy])}`);
  return parts.length > 0 ? parts.join(", ") : "no field changed";
}
