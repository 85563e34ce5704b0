/** The image flags that several commands share, parsed and checked in one place. */
import { stat } from "node:fs/promises";
import { normalizeHostPattern } from "../scoring/image-source.js";
import { usageError } from "./cli-errors.js";

/**
 * --image-base must name an existing folder: a typo must not score everything text-only.
 * `mmssr score`, `mmssr curate` and `mmssr export` take the flag.
 */
export async function checkImageBase(dir: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw usageError(`--image-base: ${dir} does not exist`);
    throw usageError(`--image-base: cannot read ${dir} (${String(code ?? err)})`);
  }
  if (!isDir) throw usageError(`--image-base: ${dir} is not a folder`);
}

/**
 * "--allow-image-hosts a.example.com,*.cdn.example.org" -> normalized patterns (none: []), a
 * usage error naming the flag for a bad entry (`score` and `curate`).
 */
export function parseHostList(raw: string | undefined): string[] {
  if (raw === undefined) return [];
  const list = raw
    .split(",")
    .map((h) => h.trim())
    .filter((h) => h !== "");
  if (list.length === 0)
    throw usageError(`--allow-image-hosts: expected a comma list of hosts, got ${JSON.stringify(raw)}`);
  return list.map((h) => {
    try {
      return normalizeHostPattern(h);
    } catch (err) {
      throw usageError(`--allow-image-hosts: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}
