/** The image flags that several commands share, parsed and checked in one place. */
import { stat } from "node:fs/promises";
import type { Command } from "commander";
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

/** What each command says about its image flags; the flags themselves are the same everywhere. */
export interface ImageOptionHelp {
  noImages: string;
  imageBase: string;
  outsideBase: string;
  allowHosts: string;
  allowPrivate: string;
  /** absent: the command has no --bad-image */
  badImage?: string;
  maxMissing: string;
}

/** Adds --no-images, --image-base, --allow-images-outside-base, --allow-image-hosts, --allow-private-image-hosts, [--bad-image], --max-missing-images. */
export function addImageOptions(cmd: Command, help: ImageOptionHelp): Command {
  cmd
    .option("--no-images", help.noImages)
    .option("--image-base <dir>", help.imageBase)
    .option("--allow-images-outside-base", help.outsideBase)
    .option("--allow-image-hosts <list>", help.allowHosts)
    .option("--allow-private-image-hosts", help.allowPrivate);
  if (help.badImage !== undefined) cmd.option("--bad-image <policy>", help.badImage, "text-only");
  return cmd.option("--max-missing-images <share>", help.maxMissing);
}
