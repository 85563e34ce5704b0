import type { Command } from "commander";
import { Document, isMap, isScalar } from "yaml";
import {
  type ConfigOrigin,
  describeConfig,
  loadConfigFile,
  resolveCurateConfig,
} from "../../app/curate-config.js";
import { curateRunOf } from "./curate-command.js";

/**
 * `mmssr config check <file>`: the effective settings of `mmssr curate --config <file>` (the
 * file under the MMSSR_* environment variables of this shell), checked by the same schema and
 * rules, printed as YAML that is itself a valid config file, each value's origin as a comment;
 * or every problem, and exit 2.
 */
export function registerConfigCommand(program: Command): void {
  const config = program.command("config").description("check the settings of mmssr curate");
  config
    .command("check <file>")
    .description(
      "print the effective configuration of `mmssr curate --config <file>` (file + MMSSR_* environment) or every problem in it",
    )
    .option("--json", "print JSON instead of YAML (without the origins)")
    .action(async (file: string, flags: { json?: boolean }) => {
      const resolved = resolveCurateConfig({ file: await loadConfigFile(file), env: process.env });
      // what the schema cannot see: folders that must exist, a token file that must be readable
      await curateRunOf(resolved);
      const effective = describeConfig(resolved);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(effective, null, 2)}\n`);
      } else {
        const doc = new Document(effective);
        if (isMap(doc.contents))
          for (const pair of doc.contents.items) {
            const key = isScalar(pair.key) ? String(pair.key.value) : "";
            const origin = resolved.origins[key];
            if (origin && isScalar(pair.value)) pair.value.comment = ` ${originText(origin)}`;
          }
        doc.commentBefore = ` effective settings of mmssr curate --config ${file}`;
        process.stdout.write(doc.toString());
      }
      process.stderr.write(`mmssr config: ${file}: ok\n`);
    });
}

function originText(o: ConfigOrigin): string {
  if (o.kind === "default") return "default";
  if (o.kind === "file") return `from ${o.path}`;
  if (o.kind === "env") return `from ${o.name}`;
  return `from ${o.flag}`;
}
