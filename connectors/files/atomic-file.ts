import { randomBytes } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";

/**
 * A file that appears under its final name only once it is complete: written under a
 * hidden temporary name in the same directory, fsynced, then renamed. A reader (a training
 * job tailing the folder) never sees half a file, and a crash leaves only a `.tmp` file.
 */
export class AtomicFile {
  readonly tempPath: string;
  private readonly stream: WriteStream;
  private failed: unknown;

  constructor(readonly path: string) {
    this.tempPath = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.tmp`);
    this.stream = createWriteStream(this.tempPath, { highWaterMark: 1 << 20 });
    this.stream.on("error", (err) => {
      this.failed = err;
    });
  }

  /** Writes text, waiting for the stream to drain when its buffer is full (backpressure). */
  async write(chunk: string): Promise<void> {
    if (this.failed) throw ioError(this.path, this.failed);
    if (!this.stream.write(chunk)) await new Promise<void>((resolve) => this.stream.once("drain", resolve));
  }

  /** Flushes, fsyncs and publishes the file under its final name. */
  async commit(): Promise<void> {
    await new Promise<void>((resolve, reject) =>
      this.stream.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    if (this.failed) throw ioError(this.path, this.failed);
    const fh = await open(this.tempPath, "r+");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(this.tempPath, this.path);
  }

  /** Drops the temporary file; the final name is never touched. */
  async abort(): Promise<void> {
    this.stream.destroy();
    await rm(this.tempPath, { force: true });
  }
}

function ioError(path: string, cause: unknown): MmssrError {
  return new MmssrError(ERROR_CODES.IO, `${path}: write failed: ${(cause as Error).message ?? cause}`, {
    retriable: true,
    cause,
  });
}
