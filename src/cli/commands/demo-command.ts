import { mkdir } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import type { Command } from "commander";
import { packageRoot } from "../../util/package-root.js";
import { parseNumberFlag } from "../cli-errors.js";
import { runSelect } from "./select-command.js";

/** The bundled scored pool: 3,000 rows from `mmssr gen-pool --n 3000 --seed 2026` (generated, not real data). */
export const DEMO_POOL = join("src", "demo", "demo-pool.jsonl");

export function registerDemoCommand(program: Command): void {
  program
    .command("demo")
    .description("run the main job on the embedded default: select 30% of the bundled scored pool")
    .option("--out-dir <dir>", "where the result goes", "out/demo")
    .option("--ratio <r>", "share to select", "0.3")
    .action(async (flags: { outDir: string; ratio: string }) => {
      const outDir = resolve(flags.outDir);
      await mkdir(outDir, { recursive: true });
      const scores = join(packageRoot(), DEMO_POOL);
      const out = join(outDir, "selected.parquet");
      process.stdout.write(
        `mmssr demo: offline mmSSR selection over the bundled pool ${relative(process.cwd(), scores)}\n`,
      );
      await runSelect({ scores, out, ratio: parseNumberFlag("--ratio", flags.ratio) });
      process.stdout.write(
        `\nselected rows (with picked_by and bucket): ${relative(process.cwd(), out) || out}\n`,
      );
    });
}
