import { createReadStream } from "node:fs";

/** One line of a text file: its text, or why it is not UTF-8. 1-based line numbers. */
export type TextLine = { lineNo: number; text: string } | { lineNo: number; error: string; bytes: Buffer };

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * The lines of a file, decoded as strict UTF-8 one line at a time (a line ends at \n; a
 * trailing \r is dropped): a line with bytes that are not UTF-8 comes back as an error naming
 * the byte offset, instead of being silently repaired with U+FFFD as a decoding stream would,
 * so the caller rejects it as a bad row as the stream does with such a message.
 */
export async function* readTextLines(path: string): AsyncGenerator<TextLine> {
  let carry: Buffer[] = [];
  let lineNo = 0;
  const emit = (parts: Buffer[]): TextLine => {
    lineNo++;
    let bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1);
    try {
      return { lineNo, text: decoder.decode(bytes) };
    } catch {
      return { lineNo, error: `not UTF-8 (${describeBadBytes(bytes)})`, bytes };
    }
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
      carry.push(chunk.subarray(start, nl));
      yield emit(carry);
      carry = [];
      start = nl + 1;
    }
    if (start < chunk.length) carry.push(chunk.subarray(start));
  }
  if (carry.some((b) => b.length > 0)) yield emit(carry);
}

/** Where the first invalid byte of a line is, and its value. */
function describeBadBytes(bytes: Buffer): string {
  for (let i = 0; i < bytes.length; ) {
    const n = sequenceLength(bytes, i);
    if (n === 0) return `byte 0x${bytes[i].toString(16).padStart(2, "0")} at column ${i + 1}`;
    i += n;
  }
  return "an invalid byte sequence";
}

/** Length of the valid UTF-8 sequence at i, or 0 when none starts there. */
function sequenceLength(b: Buffer, i: number): number {
  const c = b[i];
  if (c < 0x80) return 1;
  const n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n === 0 || i + n > b.length) return 0;
  for (let k = 1; k < n; k++) if ((b[i + k] & 0xc0) !== 0x80) return 0;
  try {
    decoder.decode(b.subarray(i, i + n));
  } catch {
    return 0;
  }
  return n;
}
