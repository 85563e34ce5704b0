import type { Command } from "commander";
import { poolFormatOf, writeScoredPool } from "../../../connectors/scored-pool-io.js";
import { generatePool } from "../../pool/generate-pool.js";
import { parseIntegerFlag, parseNumberFlag } from "../cli-errors.js";

interface GenPoolFlags {
  n: string;
  seed: string;
  out: string;
  sources: string;
  integerScores?: boolean;
  missingRate: string;
  stylelessRate: string;
}

export function registerGenPoolCommand(program: Command): void {
  program
    .command("gen-pool")
    .description("generate a realistic scored pool (seeded, reproducible) for tests and benchmarks")
    .requiredOption("--n <count>", "number of rows")
    .requiredOption("--out <file>", "output: .jsonl or .parquet")
    .option("--seed <s>", "random seed", "1")
    .option("--sources <k>", "number of image sources", "20")
    .option("--integer-scores", "whole scores 0..5, as the released 7B scorer emits")
    .option("--missing-rate <p>", "share of scores left missing", "0.005")
    .option("--styleless-rate <p>", "share of rows without a style", "0.01")
    .action(async (flags: GenPoolFlags) => {
      const n = parseIntegerFlag("--n", flags.n);
      const seed = parseIntegerFlag("--seed", flags.seed);
      const sources = parseIntegerFlag("--sources", flags.sources, 1);
      const missingScoreRate = parseNumberFlag("--missing-rate", flags.missingRate);
      const styleLessRate = parseNumberFlag("--styleless-rate", flags.stylelessRate);
      poolFormatOf(flags.out);
      const pool = generatePool({
        n,
        seed,
        sources,
        integerScores: flags.integerScores,
        missingScoreRate,
        styleLessRate,
      });
      await writeScoredPool(flags.out, pool);
      process.stdout.write(
        `wrote ${n} rows (${pool.sources.length} sources, seed ${seed}) to ${flags.out}\n`,
      );
    });
}
