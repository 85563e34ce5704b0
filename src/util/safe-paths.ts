/**
 * Guards for commands that write files: an output never replaces one of the command's inputs,
 * and a command removes only what it created (a folder it made carries a marker file).
 */
import { existsSync, realpathSync } from "node:fs";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";

/** The real path a path names or would name (links resolved as far as they exist). */
export function canonicalPath(path: string): string {
  const abs = resolve(path);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(canonicalPath(parent), basename(abs));
}

/**
 * Throws MmssrError(USAGE) when an output resolves to the same file as an input (the same real
 * path, links and `./` spellings included), before anything is read or written.
 * Each entry is [flag as the user typed it, path]; undefined paths are skipped.
 */
export function refuseOutputOverInput(
  outputs: readonly (readonly [string, string | undefined])[],
  inputs: readonly (readonly [string, string | undefined])[],
): void {
  const ins = inputs
    .filter((i): i is readonly [string, string] => i[1] !== undefined)
    .map(([flag, p]) => ({ flag, p, real: canonicalPath(p) }));
  for (const [flag, path] of outputs) {
    if (path === undefined) continue;
    const real = canonicalPath(path);
    const hit = ins.find((i) => i.real === real);
    if (hit)
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `${flag}: ${path} is the same file as ${hit.flag} ${hit.p}: refusing to overwrite an input (nothing was changed)`,
      );
  }
}

/** Throws MmssrError(USAGE) when an output lies inside an input folder (a later read would take it in). */
export function refuseOutputInsideInput(
  outputs: readonly (readonly [string, string | undefined])[],
  input: readonly [string, string],
): void {
  const root = canonicalPath(input[1]) + sep;
  for (const [flag, path] of outputs)
    if (path !== undefined && canonicalPath(path).startsWith(root))
      throw new MmssrError(
        ERROR_CODES.USAGE,
        `${flag}: ${path} is inside ${input[0]} ${input[1]}: write it elsewhere (it would be read as part of the input)`,
      );
}

/**
 * Makes `dir` a folder this command owns: creates it (with `marker` inside) when it is missing
 * or empty; accepts it when it holds the marker (a folder an earlier run made); refuses any
 * other non-empty folder (MmssrError USAGE, nothing changed), so a user's files are never
 * removed or mixed with ours.
 */
export async function claimOwnedDir(
  dir: string,
  marker: string,
  flag: string,
  command: string,
): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTDIR")
      throw new MmssrError(ERROR_CODES.USAGE, `${flag}: ${dir} is a file, not a folder`);
    if (code !== "ENOENT") throw err;
  }
  if (entries.length > 0 && !entries.includes(marker))
    throw new MmssrError(
      ERROR_CODES.USAGE,
      `${flag}: ${dir} is not empty and was not made by ${command}: give a new or empty folder (nothing was changed)`,
    );
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, marker), `made by ${command}; it replaces only what it wrote here\n`);
}
