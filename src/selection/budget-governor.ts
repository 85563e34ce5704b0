/**
 * The absolute caps of a selection policy (maxTotal over the run, maxPerHour per clock hour), in
 * one place for every mode: a selector asks how many of what it would pick it may still take,
 * then records what it took. Caps may change while it runs (a new policy): what was selected
 * so far still counts against the new caps.
 */
export interface BudgetCaps {
  maxTotal?: number;
  maxPerHour?: number;
}

const HOUR_MS = 3_600_000;

export class BudgetGovernor {
  private total = 0;
  private hour = Number.NaN;
  private inHour = 0;

  constructor(
    private caps: BudgetCaps = {},
    private readonly now: () => number = Date.now,
  ) {
    checkCaps(caps);
  }

  /** New caps from now on; the counts so far carry over. */
  setCaps(caps: BudgetCaps): void {
    checkCaps(caps);
    this.caps = { ...caps };
  }

  /** How many of `asked` may be selected at `at` (never negative). */
  allowance(asked: number, at: number = this.now()): number {
    this.roll(at);
    let left = asked;
    if (this.caps.maxTotal !== undefined) left = Math.min(left, this.caps.maxTotal - this.total);
    if (this.caps.maxPerHour !== undefined) left = Math.min(left, this.caps.maxPerHour - this.inHour);
    return Math.max(0, left);
  }

  /**
   * Which cap leaves less room than `asked` at `at` (the tighter one when both do), or
   * undefined when neither does: the reason a sample the budget would take is not selected.
   */
  bindingCap(asked: number, at: number = this.now()): "cap-total" | "cap-hour" | undefined {
    this.roll(at);
    const total = this.caps.maxTotal === undefined ? Infinity : this.caps.maxTotal - this.total;
    const hour = this.caps.maxPerHour === undefined ? Infinity : this.caps.maxPerHour - this.inHour;
    if (Math.min(total, hour) >= asked) return undefined;
    return total <= hour ? "cap-total" : "cap-hour";
  }

  /** `picked` samples were selected at `at`. */
  record(picked: number, at: number = this.now()): void {
    this.roll(at);
    this.total += picked;
    this.inHour += picked;
  }

  get selectedTotal(): number {
    return this.total;
  }

  /** selected in the clock hour of `at` */
  selectedInHour(at: number = this.now()): number {
    this.roll(at);
    return this.inHour;
  }

  private roll(at: number): void {
    const h = Math.floor(at / HOUR_MS);
    if (h !== this.hour) {
      this.hour = h;
      this.inHour = 0;
    }
  }
}

function checkCaps(caps: BudgetCaps): void {
  for (const [name, v] of Object.entries(caps))
    if (v !== undefined && !(v >= 0)) throw new RangeError(`${name}: must be a number >= 0, got ${v}`);
}
