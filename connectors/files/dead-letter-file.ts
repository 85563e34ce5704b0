import { open } from "node:fs/promises";
import type { DeadLetterSink } from "../../src/stream/ports.js";

/**
 * Dead letters of a file source: appended to a JSONL file with their reason and origin, the
 * value kept as text (or base64 when it is not UTF-8), fsynced before `send` resolves so that
 * a letter counts as decided only once it is on disk.
 */
export function createDeadLetterFile(path: string): DeadLetterSink {
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  return {
    async send(letters) {
      if (letters.length === 0) return;
      const text = letters
        .map((l) => {
          let value: string | null = null;
          let encoding = "utf8";
          if (l.value) {
            try {
              value = utf8.decode(l.value);
            } catch {
              value = Buffer.from(l.value).toString("base64");
              encoding = "base64";
            }
          }
          return `${JSON.stringify({ code: l.code, reason: l.reason, origin: l.origin, key: l.key, value, encoding })}\n`;
        })
        .join("");
      const fh = await open(path, "a");
      try {
        await fh.appendFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
    },
    async close() {},
  };
}
