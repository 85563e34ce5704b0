/** The message of anything thrown, for an error line; never throws itself (a hostile toString may). */
export function describeError(err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err);
  } catch {
    return "unprintable error";
  }
}
