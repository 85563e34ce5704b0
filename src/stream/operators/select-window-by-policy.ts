import { Observable, type OperatorFunction } from "rxjs";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { BudgetGovernor } from "../../selection/budget-governor.js";
import { type SelectionPolicy, selectOptionsOf } from "../../selection/selection-policy.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { decideWindow } from "./select-window.js";

export interface SelectWindowByPolicyOptions {
  /** Window id of the n-th window (0-based) (default `w<n>`). */
  windowId?: (n: number, window: readonly ScoredRecord[]) => string;
  /** Clock for decidedAt and the hourly cap (default Date.now). */
  now?: () => number;
  /** the absolute caps' counts (default: a governor of this operator) */
  governor?: BudgetGovernor;
}

/**
 * Window mode under a policy that may change while it runs: each window is decided by the exact
 * offline selector under the latest policy `policy$` has emitted (a change applies from the next
 * window on), its budget (ratio of the window, or the absolute budget) cut to what the budget
 * governor still allows of maxTotal / maxPerHour. Every decision carries the policy version.
 * policy$ must have emitted before the first window (a BehaviorSubject does at subscription).
 */
export function selectWindowByPolicy(
  policy$: Observable<SelectionPolicy>,
  options: SelectWindowByPolicyOptions = {},
): OperatorFunction<readonly ScoredRecord[], Decision[]> {
  const { windowId = (n: number) => `w${n}`, now = Date.now } = options;
  return (windows) =>
    new Observable<Decision[]>((subscriber) => {
      const governor = options.governor ?? new BudgetGovernor();
      let policy: SelectionPolicy | undefined;
      let appliedVersion: number | undefined;
      let n = 0;
      const policies = policy$.subscribe({
        next: (p) => {
          policy = p;
        },
        error: (err) => subscriber.error(err),
      });
      const sub = windows.subscribe({
        next(window) {
          if (!policy) {
            subscriber.error(
              new MmssrError(ERROR_CODES.INTERNAL, "selectWindowByPolicy: no policy before the first window"),
            );
            return;
          }
          const p = policy;
          if (p.version !== appliedVersion) {
            governor.setCaps({ maxTotal: p.maxTotal, maxPerHour: p.maxPerHour });
            appliedVersion = p.version;
          }
          const at = now();
          const asked = p.budget ?? Math.floor(window.length * (p.ratio ?? 0));
          const { ratio: _ratio, budget: _budget, ...rest } = selectOptionsOf(p);
          const id = windowId(n++, window);
          const allowed = governor.allowance(asked, at);
          let decisions: Decision[];
          try {
            decisions = decideWindow(window, { ...rest, budget: allowed }, id, at);
            const cap = allowed < asked ? governor.bindingCap(asked, at) : undefined;
            if (cap) {
              // What the uncut budget would have taken and the cap did not: the cap's doing.
              // Run only when a cap binds (rare), so the common window is selected once.
              const uncut = decideWindow(window, { ...rest, budget: asked }, id, at);
              uncut.forEach((u, i) => {
                if (u.selected && !decisions[i].selected) decisions[i].reason = cap;
              });
            }
          } catch (err) {
            subscriber.error(err);
            return;
          }
          let picked = 0;
          for (const d of decisions) {
            d.policyVersion = p.version;
            if (d.selected) picked++;
          }
          governor.record(picked, at);
          subscriber.next(decisions);
        },
        error: (err) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
      return () => {
        sub.unsubscribe();
        policies.unsubscribe();
      };
    });
}
