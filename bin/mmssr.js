#!/usr/bin/env node
// The CLI is compiled by `npm ci` (the `prepare` script) into dist/.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = new URL("../dist/src/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write("mmssr: dist/ is missing; run `npm ci` (or `npm run build`) in the project first\n");
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
