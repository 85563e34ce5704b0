/**
 * A small seeded PRNG (sfc32) for reproducible generated data. Not for cryptography.
 * Kept local because generated pools must be byte-identical across library upgrades.
 */
export interface Random {
  /** uniform in [0, 1) */
  next(): number;
  /** standard normal (Box-Muller) */
  normal(): number;
  /** integer in [0, max) */
  int(max: number): number;
}

export function createRandom(seed: number): Random {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88 ^ Math.imul(seed, 0x85ebca6b);
  let c = 0xb7e15162;
  let d = 1;
  const u32 = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (a + b + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  for (let i = 0; i < 15; i++) u32();
  const next = (): number => u32() / 4294967296;
  let spare: number | undefined;
  return {
    next,
    int: (max) => Math.floor(next() * max),
    normal: () => {
      if (spare !== undefined) {
        const s = spare;
        spare = undefined;
        return s;
      }
      let u = 0;
      while (u === 0) u = next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
  };
}
