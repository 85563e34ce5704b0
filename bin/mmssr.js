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
// Exit explicitly: a client library can leave a socket open after its work is done (seen with
// kafkajs after a broker restart), and a finished command must not hang. stdout and stderr are
// synchronous for files and pipes on Linux, so nothing written is lost.
process.exit(await main(process.argv.slice(2)));
