/** A set of int64 offsets as sorted, disjoint, non-adjacent inclusive ranges. */
export class OffsetRanges {
  private los: bigint[] = [];
  private his: bigint[] = [];

  get ranges(): [bigint, bigint][] {
    return this.los.map((lo, i) => [lo, this.his[i]]);
  }

  get isEmpty(): boolean {
    return this.los.length === 0;
  }

  /** index of the last range with lo <= x, or -1 */
  private find(x: bigint): number {
    let a = 0;
    let b = this.los.length - 1;
    let r = -1;
    while (a <= b) {
      const m = (a + b) >> 1;
      if (this.los[m] <= x) {
        r = m;
        a = m + 1;
      } else b = m - 1;
    }
    return r;
  }

  has(x: bigint): boolean {
    const i = this.find(x);
    return i >= 0 && this.his[i] >= x;
  }

  add(lo: bigint, hi: bigint = lo): void {
    if (hi < lo) return;
    // first range that may touch [lo, hi]: the last with lo' <= lo, if it reaches lo - 1
    let i = this.find(lo);
    if (i < 0 || this.his[i] < lo - 1n) i++;
    let j = i;
    let newLo = lo;
    let newHi = hi;
    while (j < this.los.length && this.los[j] <= hi + 1n) {
      if (this.los[j] < newLo) newLo = this.los[j];
      if (this.his[j] > newHi) newHi = this.his[j];
      j++;
    }
    this.los.splice(i, j - i, newLo);
    this.his.splice(i, j - i, newHi);
  }

  /** From x, the first offset not in the set. */
  advance(x: bigint): bigint {
    const i = this.find(x);
    return i >= 0 && this.his[i] >= x ? this.his[i] + 1n : x;
  }

  /** Forgets offsets below x (committed: they are never read again). */
  pruneBelow(x: bigint): void {
    let k = 0;
    while (k < this.los.length && this.his[k] < x) k++;
    this.los.splice(0, k);
    this.his.splice(0, k);
    if (this.los.length > 0 && this.los[0] < x) this.los[0] = x;
  }
}
