import type { Source } from "./ports.js";

/** How far the group's committed offset of one partition is behind its end. */
export interface PartitionLag {
  /** "topic:partition" */
  partition: string;
  /** the group's committed offset (next to read), absent when it has none */
  committed?: string;
  end: bigint;
  /** end - committed (a partition never committed counts from 0), never below 0 */
  lag: bigint;
}

/** Per partition of the source, the group's lag; undefined for a source without end offsets (a file). */
export async function groupLag(
  source: Pick<Source, "endOffsets" | "committedOffsets">,
): Promise<PartitionLag[] | undefined> {
  const ends = await source.endOffsets();
  if (!ends) return undefined;
  const committed = await source.committedOffsets();
  return [...ends].map(([partition, high]) => {
    const c = committed.get(partition);
    const end = BigInt(high);
    const lag = end - BigInt(c ?? "0");
    return { partition, committed: c, end, lag: lag > 0n ? lag : 0n };
  });
}
