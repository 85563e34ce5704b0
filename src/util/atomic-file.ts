import { randomBytes } from "node:crypto";
import { unlinkSync } from "node:fs";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ERROR_CODES, MmssrError } from "../domain/errors.js";

/** fs error codes after which the same write may succeed later. */
const RETRIABLE_FS_CODES = new Set(["ENOSPC", "EAGAIN", "EIO", "EBUSY", "EMFILE", "ENFILE", "EDQUOT"]);

/**
 * Temporary files not yet committed or aborted: removed when the process exits, whatever the
 * path to the exit (an error, a closed pipe, process.exit), so no `.tmp` file is left behind
 * except by a kill that runs no code (and those the next owner of the output removes).
 */
const openTemps = new Set<string>();
let cleanupInstalled = false;
function trackTemp(path: string): void {
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    process.once("exit", () => {
      for (const p of openTemps)
        try {
          unlinkSync(p);
        } catch {
          /* already gone */
        }
    });
  }
  openTemps.add(path);
}

/**
 * A file that appears under its final name only once it is complete: written under a
 * hidden temporary name in the same directory, fsynced, then renamed. A reader (a training
 * job tailing the folder) never sees half a file, and a crash leaves only a `.tmp` file.
 *
 * Every failure (missing directory, disk full, ...) surfaces as an MmssrError from the call
 * that hit it: writes go straight to a file handle and are awaited, so there is no stream
 * whose error could be missed while waiting for a 'drain' that never comes.
 */
export class AtomicFile {
  readonly tempPath: string;
  private fh: FileHandle | undefined;

  constructor(readonly path: string) {
    this.tempPath = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.tmp`);
  }

  /** Creates the temporary file now (else the first write does): fails early on a bad directory. */
  async open(): Promise<void> {
    await this.handle();
  }

  /** Appends text (as UTF-8) or bytes to the temporary file; callers batch into large chunks. */
  async write(chunk: string | Uint8Array): Promise<void> {
    const fh = await this.handle();
    const buf = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
    let off = 0;
    try {
      while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
    } catch (err) {
      throw ioError(this.path, err);
    }
  }

  /** Flushes, fsyncs and publishes the file under its final name. */
  async commit(): Promise<void> {
    const fh = await this.handle();
    try {
      await fh.sync();
      await fh.close();
      this.fh = undefined;
      await rename(this.tempPath, this.path);
      openTemps.delete(this.tempPath);
    } catch (err) {
      throw ioError(this.path, err);
    }
    // Make the rename itself durable (best effort: not every filesystem fsyncs a directory).
    try {
      const dh = await open(dirname(this.path), "r");
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch {
      /* ignore */
    }
  }

  /** Drops the temporary file; the final name is never touched. */
  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => {});
    await rm(this.tempPath, { force: true }).catch(() => {});
    openTemps.delete(this.tempPath);
  }

  private async handle(): Promise<FileHandle> {
    if (this.fh) return this.fh;
    try {
      this.fh = await open(this.tempPath, "wx");
      trackTemp(this.tempPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        throw new MmssrError(
          ERROR_CODES.FILE_NOT_FOUND,
          `cannot write ${this.path}: directory ${dirname(this.path)} does not exist`,
          { cause: err },
        );
      throw ioError(this.path, err);
    }
    return this.fh;
  }
}

/** An fs failure as an MmssrError(IO), retriable where waiting can help (disk full, EAGAIN, ...). */
export function ioError(path: string, cause: unknown): MmssrError {
  if (cause instanceof MmssrError) return cause;
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  return new MmssrError(
    ERROR_CODES.IO,
    `${path}: write failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    { retriable: code !== undefined && RETRIABLE_FS_CODES.has(code), cause },
  );
}

/** Writes a whole file atomically (temp + fsync + rename), removing the temp file on failure. */
export async function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  const file = new AtomicFile(path);
  try {
    await file.write(content);
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
}
