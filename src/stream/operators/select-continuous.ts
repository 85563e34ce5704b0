import {
  asyncScheduler,
  Observable,
  type OperatorFunction,
  of,
  type SchedulerLike,
  type Subscription,
} from "rxjs";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import {
  type ContinuousDecision,
  type ContinuousPolicyOptions,
  ContinuousSelector,
  type ContinuousSelectorOptions,
  type ContinuousSelectorStats,
} from "../../selection/continuous-selector.js";
import { type SelectionPolicy, selectOptionsOf } from "../../selection/selection-policy.js";
import type { Decision, ScoredRecord } from "../stream-types.js";
import { selectionRowOf } from "./select-window.js";

/** What both continuous operators take besides the selector's options. */
interface ContinuousOperatorOptions {
  /** Window id of the n-th decision batch (default `c<n>`). */
  batchId?: (n: number) => string;
  /** Called with the selector's stats after each decision batch, before it is emitted. */
  onStats?: (stats: ContinuousSelectorStats) => void;
}

export interface SelectContinuousOptions extends ContinuousSelectorOptions, ContinuousOperatorOptions {}

/** The options of continuous mode that no policy sets: fixed for the life of the stream. */
export interface SelectContinuousByPolicyOptions
  extends Pick<
      ContinuousSelectorOptions,
      "maxPending" | "referenceSize" | "refreshEvery" | "horizon" | "feedback" | "tolerance" | "seed"
    >,
    ContinuousOperatorOptions {}

/**
 * The selector options of continuous mode under `policy`: selectOptionsOf(policy) plus
 * maxDelayMs and the caps. Throws MmssrError(BAD_OPTIONS) when the policy has no ratio.
 */
export function continuousOptionsOf(policy: SelectionPolicy): ContinuousPolicyOptions {
  const { ratio, capabilities, threshold, capabilityWeights, styleWeights } = selectOptionsOf(policy);
  if (ratio === undefined)
    throw new MmssrError(
      ERROR_CODES.BAD_OPTIONS,
      "continuous mode needs a ratio (the share of incoming samples to admit); budget is per window",
    );
  return {
    ratio,
    capabilities,
    threshold,
    capabilityWeights,
    styleWeights,
    maxDelayMs: policy.maxDelayMs,
    maxAdmitted: { total: policy.maxTotal, perHour: policy.maxPerHour },
  };
}

/**
 * Continuous mode (DESIGN.md): scored records in, arrays of decisions out (one per decision
 * batch of the ContinuousSelector). Every record is decided exactly once, at most
 * `maxDelayMs` (scheduler time) after it arrived: a timer on `scheduler` fires when the oldest
 * waiting record is due. Source completion decides every waiting record; a source error passes
 * through and leaves them undecided (their offsets are not committed). Unsubscribing cancels
 * the timer. A record not selected says why (`reason`). The options are fixed; see
 * selectContinuousByPolicy for options that change while the stream runs.
 */
export function selectContinuous(
  options: SelectContinuousOptions,
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<ScoredRecord, Decision[]> {
  const {
    batchId,
    onStats,
    ratio,
    capabilities,
    threshold,
    capabilityWeights,
    styleWeights,
    maxDelayMs,
    maxAdmitted,
    ...fixed
  } = options;
  const policy: ContinuousPolicyOptions = {
    ratio,
    capabilities,
    threshold,
    capabilityWeights,
    styleWeights,
    maxDelayMs,
    maxAdmitted,
  };
  return continuousUnder(of({ options: policy }), fixed, { batchId, onStats }, scheduler);
}

/**
 * Continuous mode under a selection policy that may change while it runs. The selector is
 * built from the first policy `policy$` emits (it must emit before the first record: a
 * BehaviorSubject does at subscription); every later one is applied with
 * ContinuousSelector.setPolicy: from the next decision batch on (the records still waiting are
 * decided under it, with thresholds refreshed), a new ratio tracked from the change on, the
 * caps' counts carried over, and the timer re-armed at once for a new maxDelayMs. Every
 * decision carries the version of the policy its batch was decided under (`policyVersion`)
 * and, when not selected, why (`reason`). A policy without a ratio (continuous mode has no
 * per-window budget) or one the selector rejects errors the stream (MmssrError BAD_OPTIONS),
 * as does a policy$ error; the records still waiting stay undecided.
 */
export function selectContinuousByPolicy(
  policy$: Observable<SelectionPolicy>,
  options: SelectContinuousByPolicyOptions = {},
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<ScoredRecord, Decision[]> {
  const { batchId, onStats, ...fixed } = options;
  const steps = new Observable<PolicyStep>((subscriber) =>
    policy$.subscribe({
      next: (p) => {
        let step: PolicyStep;
        try {
          step = { options: continuousOptionsOf(p), version: p.version };
        } catch (err) {
          subscriber.error(err);
          return;
        }
        subscriber.next(step);
      },
      error: (err) => subscriber.error(err),
      complete: () => subscriber.complete(),
    }),
  );
  return continuousUnder(steps, fixed, { batchId, onStats }, scheduler);
}

/** One policy as the selector takes it, with its version when it has one. */
interface PolicyStep {
  options: ContinuousPolicyOptions;
  version?: number;
}

/** The operator body of both selectContinuous (one fixed policy) and selectContinuousByPolicy. */
function continuousUnder(
  policies$: Observable<PolicyStep>,
  fixed: Omit<ContinuousSelectorOptions, keyof ContinuousPolicyOptions>,
  { batchId = (n) => `c${n}`, onStats }: ContinuousOperatorOptions,
  scheduler: SchedulerLike,
): OperatorFunction<ScoredRecord, Decision[]> {
  return (source) =>
    new Observable<Decision[]>((subscriber) => {
      let selector: ContinuousSelector<ScoredRecord> | undefined;
      let version: number | undefined;
      let timer: Subscription | undefined;
      let timerDue: number | undefined;
      const emit = (decisions: ContinuousDecision<ScoredRecord>[]): void => {
        if (decisions.length === 0) return;
        if (onStats && selector) onStats(selector.stats);
        subscriber.next(
          decisions.map((d) => {
            const out: Decision = {
              record: d.item,
              selected: d.selected,
              windowId: batchId(d.batch),
              decidedAt: d.decidedAt,
            };
            if (d.pickedBy !== undefined) out.pickedBy = d.pickedBy;
            if (d.bucket !== undefined) out.bucket = d.bucket;
            if (version !== undefined) out.policyVersion = version;
            if (d.reason !== undefined) out.reason = d.reason;
            return out;
          }),
        );
      };
      const cancel = (): void => {
        timer?.unsubscribe();
        timer = undefined;
        timerDue = undefined;
      };
      const fail = (err: unknown): void => {
        cancel();
        subscriber.error(err);
      };
      const arm = (): void => {
        const due = selector?.nextDueAt();
        if (due === timerDue) return;
        cancel();
        if (due === undefined) return;
        timerDue = due;
        timer = scheduler.schedule(
          () => {
            timer = undefined;
            timerDue = undefined;
            if (!selector) return;
            emit(selector.poll(Math.max(scheduler.now(), due)));
            arm();
          },
          Math.max(due - scheduler.now(), 0),
        );
      };
      const policies = policies$.subscribe({
        next: (step) => {
          try {
            if (selector) selector.setPolicy(step.options);
            else
              selector = new ContinuousSelector<ScoredRecord>({ ...fixed, ...step.options }, selectionRowOf);
          } catch (err) {
            fail(err);
            return;
          }
          version = step.version;
          arm(); // a new maxDelayMs moves the due time of the waiting batch
        },
        error: fail,
      });
      if (subscriber.closed) return () => policies.unsubscribe();
      const subscription = source.subscribe({
        next: (record) => {
          if (!selector) {
            fail(
              new MmssrError(
                ERROR_CODES.INTERNAL,
                "selectContinuousByPolicy: no policy before the first record",
              ),
            );
            return;
          }
          let decisions: ContinuousDecision<ScoredRecord>[];
          try {
            decisions = selector.decide(record, scheduler.now());
          } catch (err) {
            fail(err);
            return;
          }
          emit(decisions);
          arm();
        },
        error: fail,
        complete: () => {
          cancel();
          if (selector) emit(selector.flush(scheduler.now()));
          subscriber.complete();
        },
      });
      return () => {
        cancel();
        subscription.unsubscribe();
        policies.unsubscribe();
      };
    });
}
