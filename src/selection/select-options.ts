import type { CapabilityId, StyleName } from "../domain/taxonomy.js";

/** Options of the offline mmSSR selector (MMSSR.md, "Offline selection"). */
export interface SelectOptions {
  /** Share of the whole pool to select: budget = floor(pool.size * ratio). Exclusive with budget. */
  ratio?: number;
  /** Absolute number of samples to select. Exclusive with ratio. */
  budget?: number;
  /** Ordered capability list (default: all 14 in contract order). */
  capabilities?: readonly CapabilityId[];
  /** A sample passes for a capability when its score is strictly above this (default 0). */
  threshold?: number;
  /**
   * Our extension: budget shares proportional to these weights instead of equal shares.
   * A capability with weight 0 takes no part. Equal weights select exactly what no weights select.
   */
  capabilityWeights?: Partial<Record<CapabilityId, number>>;
  /**
   * Our extension: per-style quotas inside a capability proportional to these weights
   * (a bucket's weight is its style's). Weight 0 excludes the style. Default 1 each.
   */
  styleWeights?: Partial<Record<StyleName, number>>;
}

/** What the selector picked, in pick order. */
export interface SelectionResult {
  /** floor(pool.size * ratio) or the absolute budget. */
  budget: number;
  /** Row indices into the pool, in the order they were picked. */
  indices: Uint32Array;
  /** Capability index (CAPABILITIES order) that picked each row. */
  pickedBy: Uint8Array;
  /** Style index (STYLES order) of the bucket that picked each row; the bucket is style + "+" + image_source. */
  pickedStyle: Uint8Array;
  /** Number of rounds of the outer loop. */
  rounds: number;
}
