import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../../domain/errors.js";
import { charsetFromDictionary, ctcGreedyDecode, loadCharset } from "./ctc-decode.js";
import { defaultOcrModelPaths } from "./ocr-models.js";

/** A [1, steps, classes] output whose arg-max per step is `path[t]` with probability `p[t]`. */
function output(path: number[], classes: number, p: number[] = path.map(() => 0.9)): Float32Array {
  const out = new Float32Array(path.length * classes);
  path.forEach((k, t) => {
    for (let c = 0; c < classes; c++) out[t * classes + c] = (1 - p[t]) / (classes - 1);
    out[t * classes + k] = p[t];
  });
  return out;
}

describe("charsetFromDictionary", () => {
  it("puts the blank first, the lines in order and the space last", () => {
    expect(charsetFromDictionary("a\nb\r\nc\n").classes).toEqual(["", "a", "b", "c", " "]);
    expect(charsetFromDictionary("a\nb").classes).toEqual(["", "a", "b", " "]);
    expect(charsetFromDictionary("a\nb", false).classes).toEqual(["", "a", "b"]);
  });

  it("gives the shipped ppocr_keys_v1 the 6625 classes of the PP-OCRv4 recogniser", () => {
    const charset = loadCharset(defaultOcrModelPaths().dictionary);
    expect(charset.classes).toHaveLength(6625);
    expect(charset.classes[0]).toBe("");
    expect(charset.classes[6624]).toBe(" ");
    expect(charset.classes.slice(1).every((c) => c.length > 0)).toBe(true);
  });

  it("names the path of a dictionary that cannot be read", () => {
    expect(() => loadCharset("/nonexistent/keys.txt")).toThrow(
      expect.objectContaining({
        code: ERROR_CODES.MODEL_INVALID,
        message: expect.stringContaining("/nonexistent/keys.txt"),
      }),
    );
  });
});

describe("ctcGreedyDecode", () => {
  const charset = charsetFromDictionary("a\nb\nc");
  const classes = charset.classes.length; // 5

  it("collapses repeats, drops blanks and keeps a letter repeated across a blank", () => {
    // a a _ a b b _ _ space c
    const path = [1, 1, 0, 1, 2, 2, 0, 0, 4, 3];
    const r = ctcGreedyDecode(output(path, classes), 0, path.length, classes, charset);
    expect(r.text).toBe("aab c");
  });

  it("averages the kept steps' probabilities; an empty text has confidence 0", () => {
    const r = ctcGreedyDecode(output([1, 0, 2], classes, [0.8, 0.99, 0.6]), 0, 3, classes, charset);
    expect(r.text).toBe("ab");
    expect(r.confidence).toBeCloseTo(0.7, 5);
    expect(ctcGreedyDecode(output([0, 0], classes), 0, 2, classes, charset)).toEqual({
      text: "",
      confidence: 0,
    });
  });

  it("decodes the item asked for in a batch", () => {
    const a = output([1, 0, 0], classes);
    const b = output([3, 3, 2], classes);
    const batch = new Float32Array(a.length + b.length);
    batch.set(a, 0);
    batch.set(b, a.length);
    expect(ctcGreedyDecode(batch, 1, 3, classes, charset).text).toBe("cb");
    expect(ctcGreedyDecode(batch, 0, 3, classes, charset).text).toBe("a");
  });
});
