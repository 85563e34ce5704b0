import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { type FeedPosition, SelectedFeed } from "../../../connectors/sink/selected-feed.js";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";
import { writeFileAtomic } from "../../util/atomic-file.js";
import { parseIntegerFlag, parseNumberFlag, usageError } from "../cli-errors.js";

interface TailFlags {
  out: string;
  once?: boolean;
  rows?: boolean;
  rank: string;
  worldSize: string;
  position?: string;
  pollMs: string;
}

/**
 * `mmssr tail --out DIR`: the selected shards of a curate output as they are published, one
 * JSON line each (or, with --rows, the rows), following until interrupted. With --position FILE
 * it resumes where the last run stopped and saves its place (atomically) after each line.
 */
export function registerTailCommand(program: Command): void {
  program
    .command("tail")
    .description(
      "print the selected shards of a curate output as they are published (a JSON line each), following new ones",
    )
    .requiredOption("--out <dir>", "the curate output folder (holds selected/ and manifests/)")
    .option("--once", "print what is published now and exit instead of following")
    .option("--rows", "print the selected rows (JSON lines; image_bytes as base64) instead of the shards")
    .option("--rank <r>", "this reader's data-parallel rank (shards are split by a hash of their name)", "0")
    .option("--world-size <n>", "how many ranks read the output", "1")
    .option(
      "--position <file>",
      "resume from the position saved in this file (if it exists) and save it after each line",
    )
    .option("--poll-ms <ms>", "how often to look for new shards", "1000")
    .action(async (flags: TailFlags) => {
      const worldSize = parseIntegerFlag("--world-size", flags.worldSize, 1);
      const rank = parseIntegerFlag("--rank", flags.rank, 0);
      if (rank >= worldSize) throw usageError(`--rank: expected 0..${worldSize - 1}, got ${rank}`);
      const start = flags.position ? await readPosition(flags.position) : undefined;
      const feed = new SelectedFeed(flags.out, {
        rank,
        worldSize,
        start,
        pollMs: parseNumberFlag("--poll-ms", flags.pollMs),
      });
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once("SIGINT", onSignal);
      process.once("SIGTERM", onSignal);
      const save = async (): Promise<void> => {
        if (flags.position) await writeFileAtomic(flags.position, `${JSON.stringify(feed.position())}\n`);
      };
      let shards = 0;
      let rows = 0;
      try {
        const follow = { follow: flags.once !== true, signal: stop.signal };
        if (flags.rows) {
          for await (const row of feed.rows(follow)) {
            rows++;
            process.stdout.write(`${JSON.stringify(row, bytesAsBase64)}\n`);
            await save();
          }
        } else {
          for await (const e of feed.shards(follow)) {
            shards++;
            process.stdout.write(
              `${JSON.stringify({
                file: e.file,
                rows: e.rows,
                bytes: e.bytes,
                sha256: e.sha256,
                seq: e.seq,
                instance: e.instance ?? "",
                topic: e.topic,
                partition: e.partition,
                firstOffset: e.firstOffset,
                lastOffset: e.lastOffset,
                publishedAt: e.publishedAt,
              })}\n`,
            );
            feed.finish(e);
            await save();
          }
          // the shards of other ranks passed after the last one printed
          await save();
        }
      } finally {
        process.removeListener("SIGINT", onSignal);
        process.removeListener("SIGTERM", onSignal);
      }
      process.stderr.write(
        `mmssr tail: ${flags.rows ? `${rows} row(s)` : `${shards} shard(s)`} of rank ${rank}/${worldSize}${flags.position ? `; position in ${flags.position}` : ""}\n`,
      );
    });
}

function bytesAsBase64(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value;
}

async function readPosition(path: string): Promise<FeedPosition | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new MmssrError(ERROR_CODES.USAGE, `--position: cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as FeedPosition;
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.USAGE,
      `--position: ${path} is not a position token: ${(err as Error).message}`,
    );
  }
}
