import { Command, CommanderError } from "commander";
import { ERROR_CODES, explainError, isUserError, MmssrError } from "../domain/errors.js";
import { packageVersion } from "../util/package-root.js";
import { registerAnnotateCommand } from "./commands/annotate-command.js";
import { registerConfigCommand } from "./commands/config-command.js";
import { registerCurateCommand } from "./commands/curate-command.js";
import { registerDemoCommand } from "./commands/demo-command.js";
import { registerDlqCommand } from "./commands/dlq-command.js";
import { registerExportCommand } from "./commands/export-command.js";
import { registerFitCommand } from "./commands/fit-command.js";
import { registerGenPoolCommand } from "./commands/gen-pool-command.js";
import { registerPolicyCommand } from "./commands/policy-command.js";
import { registerProduceCommand } from "./commands/produce-command.js";
import { registerReportCommand } from "./commands/report-command.js";
import { registerScoreCommand } from "./commands/score-command.js";
import { registerSelectCommand } from "./commands/select-command.js";
import { registerTailCommand } from "./commands/tail-command.js";

/** Exit codes: 0 done, 1 failure that is not the user's (I/O, bug), 2 bad usage or bad input. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command("mmssr")
    .description("Streaming multi-modal data curation with mmSSR (Cream of the Crop, arXiv 2503.13383)")
    .version(packageVersion(), "-V, --version", "print the version of mmssr")
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)")
    // commander's own parse errors in the same shape as ours
    .configureOutput({
      outputError: (text, write) =>
        write(`mmssr: error [${ERROR_CODES.USAGE}]: ${text.replace(/^error: /, "")}`),
    });
  registerDemoCommand(program);
  registerSelectCommand(program);
  registerScoreCommand(program);
  registerFitCommand(program);
  registerProduceCommand(program);
  registerCurateCommand(program);
  registerGenPoolCommand(program);
  registerPolicyCommand(program);
  registerDlqCommand(program);
  registerExportCommand(program);
  registerAnnotateCommand(program);
  registerConfigCommand(program);
  registerReportCommand(program);
  registerTailCommand(program);
  const all = (cmds: readonly Command[]): Command[] => cmds.flatMap((c) => [c, ...all(c.commands)]);
  for (const cmd of all(program.commands))
    cmd.exitOverride().configureOutput({
      outputError: (text, write) =>
        write(`mmssr: error [${ERROR_CODES.USAGE}]: ${text.replace(/^error: /, "")}`),
    });
  return program;
}

let pipesGuarded = false;
/**
 * A reader that goes away (`mmssr select ... | head -1`) closes our stdout: that ends no command.
 * What it writes to files is finished and published; only the printed lines are not read.
 */
function ignoreClosedPipes(): void {
  if (pipesGuarded) return;
  pipesGuarded = true;
  for (const stream of [process.stdout, process.stderr])
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE") throw err;
    });
}

export async function main(argv: string[]): Promise<number> {
  ignoreClosedPipes();
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT_OK;
  } catch (caught) {
    const err = explainError(caught);
    if (err instanceof CommanderError) {
      // help and version end with code 0; every parse error is a usage error
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (isUserError(err)) {
      process.stderr.write(`mmssr: error [${err.code}]: ${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof MmssrError) {
      process.stderr.write(
        `mmssr: error [${err.code}]${err.retriable ? " (retriable)" : ""}: ${err.message}\n`,
      );
      return EXIT_FAILURE;
    }
    process.stderr.write(`mmssr: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT_FAILURE;
  }
}
