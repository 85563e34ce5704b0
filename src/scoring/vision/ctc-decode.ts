/**
 * CTC greedy decoding of the PP-OCRv4 recogniser's output, with PaddleOCR's CTCLabelDecode
 * conventions: class 0 is the CTC blank, classes 1..K are the dictionary's lines in file order
 * (each line stripped of "\n" and "\r\n"), and with use_space_char (on for ppocr_keys_v1) a space
 * is class K + 1. For ppocr_keys_v1.txt K = 6623, so the model's 6625 classes match.
 *
 * Per step the arg-max class; a step equal to the previous one is dropped (collapse), then blanks
 * are dropped. Confidence = mean of the kept steps' probabilities, 0 when nothing is kept
 * (PaddleOCR's conf_list = [0]).
 */

import { readFileSync } from "node:fs";
import { ERROR_CODES, MmssrError } from "../../domain/errors.js";

/** classes[k] = the text of class k; classes[0] = "" (blank). */
export interface CtcCharset {
  readonly classes: readonly string[];
}

/** The charset from the dictionary's text (one character a line), plus the space class. */
export function charsetFromDictionary(text: string, useSpaceChar = true): CtcCharset {
  const lines = text.split("\n").map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l));
  // A final newline leaves an empty last element that is no line of the file.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const classes = ["", ...lines];
  if (useSpaceChar) classes.push(" ");
  return { classes };
}

/** Reads the dictionary file; missing or unreadable -> MmssrError (MODEL_INVALID) naming the path. */
export function loadCharset(path: string, useSpaceChar = true): CtcCharset {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new MmssrError(
      ERROR_CODES.MODEL_INVALID,
      `OCR dictionary cannot be read: ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  const charset = charsetFromDictionary(text, useSpaceChar);
  if (charset.classes.length < 3)
    throw new MmssrError(ERROR_CODES.MODEL_INVALID, `OCR dictionary has no characters: ${path}`);
  return charset;
}

export interface CtcText {
  text: string;
  /** mean probability of the kept steps, 0..1; 0 for an empty text */
  confidence: number;
}

/**
 * Decodes item `item` of a [batch, steps, classes] softmax output (row-major Float32Array).
 * `steps` may be less than the tensor's step count (e.g. to skip padding); it defaults to all.
 */
export function ctcGreedyDecode(
  probs: Float32Array,
  item: number,
  totalSteps: number,
  numClasses: number,
  charset: CtcCharset,
  steps: number = totalSteps,
): CtcText {
  const classes = charset.classes;
  let text = "";
  let confSum = 0;
  let kept = 0;
  let prev = -1;
  const base = item * totalSteps * numClasses;
  for (let t = 0; t < steps; t++) {
    const row = base + t * numClasses;
    let best = 0;
    let bestP = probs[row];
    for (let k = 1; k < numClasses; k++) {
      const p = probs[row + k];
      if (p > bestP) {
        bestP = p;
        best = k;
      }
    }
    if (best !== prev && best !== 0) {
      text += classes[best] ?? "";
      confSum += bestP;
      kept++;
    }
    prev = best;
  }
  return { text, confidence: kept > 0 ? confSum / kept : 0 };
}
