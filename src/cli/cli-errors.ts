import { ERROR_CODES, MmssrError } from "../domain/errors.js";

export function usageError(message: string): MmssrError {
  return new MmssrError(ERROR_CODES.USAGE, message);
}

/** Parses a flag's number strictly ("0.3" yes, "0.3x" or "" no), naming the flag on failure. */
export function parseNumberFlag(flag: string, raw: string): number {
  const v = raw.trim() === "" ? Number.NaN : Number(raw);
  if (!Number.isFinite(v)) throw usageError(`${flag}: expected a number, got ${JSON.stringify(raw)}`);
  return v;
}

export function parseIntegerFlag(flag: string, raw: string, min = 0): number {
  const v = parseNumberFlag(flag, raw);
  if (!Number.isSafeInteger(v) || v < min)
    throw usageError(`${flag}: expected a whole number >= ${min}, got ${JSON.stringify(raw)}`);
  return v;
}

/** Parses "a=1,b=2.5" into { a: 1, b: 2.5 }. */
export function parseWeightsFlag(flag: string, raw: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of raw.split(",")) {
    const eq = part.lastIndexOf("=");
    if (eq <= 0)
      throw usageError(`${flag}: expected name=weight[,name=weight...], got ${JSON.stringify(part)}`);
    out[part.slice(0, eq).trim()] = parseNumberFlag(
      `${flag} ${part.slice(0, eq).trim()}`,
      part.slice(eq + 1),
    );
  }
  return out;
}

/** A share flag (0..1) when given, else undefined. */
export function parseShareFlag(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const v = parseNumberFlag(flag, raw);
  if (!(v >= 0 && v <= 1)) throw usageError(`${flag}: expected a share in 0..1, got ${raw}`);
  return v;
}
