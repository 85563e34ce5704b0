/**
 * The process's logger: pino, passed in like the metrics registry (runCurate's `logger`).
 *
 * Two formats. `json`: pino's own JSON lines (level, time, pid, hostname, msg and any fields),
 * for log shippers. `text`: one line per event for people at a terminal, in the shape the CLI
 * has always printed ("mmssr curate: <message>", with the level named from warn on), so that
 * scripts reading stderr keep working. Both write to stderr synchronously: a line logged just
 * before exit is not lost.
 */
import { Writable } from "node:stream";
import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger } from "pino";
export type LogFormat = "text" | "json";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface LoggerSettings {
  level?: LogLevel;
  format?: LogFormat;
  /** the program part of each text line, e.g. "mmssr curate" */
  name?: string;
  /** where lines go (default: stderr); tests pass their own */
  write?: (line: string) => void;
}

const LEVEL_NAMES: Record<number, string> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

const TEXT_TAGS: Record<string, string> = { warn: "WARNING", error: "ERROR", fatal: "FATAL" };

export function createLogger(settings: LoggerSettings = {}): Logger {
  const write = settings.write ?? ((line: string) => process.stderr.write(line));
  const options: LoggerOptions = { level: settings.level ?? "info", name: settings.name };
  if ((settings.format ?? "text") === "json") {
    if (settings.write) return pino(options, new Writable({ write: lineWriter(write) }));
    return pino(options, pino.destination({ fd: 2, sync: true }));
  }
  const prefix = settings.name ? `${settings.name}: ` : "";
  const text = new Writable({
    write(chunk: Buffer, _encoding, done) {
      // pino hands over one JSON line per event
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line === "") continue;
        let event: Record<string, unknown>;
        try {
          event = JSON.parse(line) as Record<string, unknown>;
        } catch {
          write(`${line}\n`);
          continue;
        }
        const level = LEVEL_NAMES[event.level as number] ?? "info";
        const tag = level === "info" || level === "debug" || level === "trace" ? "" : `${TEXT_TAGS[level]}: `;
        const err = event.err as { message?: string } | undefined;
        write(`${prefix}${tag}${String(event.msg ?? "")}${err?.message ? ` (${err.message})` : ""}\n`);
      }
      done();
    },
  });
  return pino({ ...options, base: undefined, timestamp: false }, text);
}

function lineWriter(write: (line: string) => void) {
  return (chunk: Buffer, _encoding: BufferEncoding, done: () => void): void => {
    write(chunk.toString("utf8"));
    done();
  };
}
