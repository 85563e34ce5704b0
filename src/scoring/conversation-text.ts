/**
 * The conversation text and the prompts of the released mmSSR scorer and styler
 * (../shared/MMSSR.md, "Released scorer / styler interface (constants)").
 *
 * `layoutConversation` builds the text exactly as the release does, so that a VLM teacher queried
 * with it (a later issue) sees what the checkpoints saw, and so that our featurizer reads the same
 * layout:
 *
 * 1. Walk the turns in pairs: human turn k (0-based even index) and the gpt turn after it.
 * 2. A human turn that starts with `Hint:`, or with `<image>\nHint:`, is emitted as is:
 *    `<human text> Answer: <gpt text>`. (MMSSR.md says "kept as is"; we read that as: neither the
 *    `Question: ` prefix nor the strip quirk below applies to it.)
 * 3. Any other human turn is emitted as `Question: <stripped human text> Answer: <gpt text>`, where
 *    "stripped" is the release's quirk: Python's `str.strip('Question: ')`, which removes from BOTH
 *    ends every character that is one of `Q u e s t i o n : ` and space (a character SET, not the
 *    prefix). So `"Question: What is it"` becomes `"Wha"` (the trailing `t`, `i`, ` `, `s`, `i`,
 *    ` `, `t` all belong to the set) and `"one of these?"` becomes `"f these?"`; a turn that ends
 *    in `?`, `.` or `>` keeps its end. The checkpoints were trained and used that way, so we match
 *    it. No other trimming: newlines and tabs are not in the set and stay.
 * 4. The gpt text is used as is. Pairs are joined with `\n`.
 * 5. Only then the image placeholder is removed from the whole text: every `<image>\n` first (the
 *    placeholder with the newline that follows it), then every remaining `<image>`. A newline in
 *    FRONT of a placeholder stays (`"What is this?\n<image>"` -> `"What is this?\n"`).
 *
 * `questions` and `answers` are the raw human and gpt texts with the placeholder removed the same
 * way (step 5) but without the quirk, for featurizers and the rule teacher.
 */
import type { Sample, Turn } from "../domain/sample.js";
import { IMAGE_PLACEHOLDER } from "../domain/sample.js";
import { CAPABILITIES, STYLES, type StyleName, styleIndex } from "../domain/taxonomy.js";

/** System message of both released models. */
export const SYSTEM_PROMPT = "You are a helpful assistant.";

/** The characters that the release strips from both ends of a human turn (as a set). */
export const QUESTION_STRIP_CHARS = "Question: ";

const STRIP_SET: ReadonlySet<string> = new Set(QUESTION_STRIP_CHARS);

/** Python's `s.strip("Question: ")`: removes characters of the set from both ends. */
export function stripQuestionChars(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && STRIP_SET.has(s[start])) start++;
  while (end > start && STRIP_SET.has(s[end - 1])) end--;
  return s.slice(start, end);
}

const PLACEHOLDER_LINE = `${IMAGE_PLACEHOLDER}\n`;
const PLACEHOLDER_HINT = `${IMAGE_PLACEHOLDER}\nHint:`;

/** Removes every `<image>\n`, then every remaining `<image>`. */
export function removeImagePlaceholders(s: string): string {
  if (s.indexOf(IMAGE_PLACEHOLDER) < 0) return s;
  // Two passes as two split/joins would do them: removing `<image>\n` can join the pieces of
  // an `<image>` that the second pass then removes ("<ima<image>\nge>" -> "").
  return removeEvery(removeEvery(s, PLACEHOLDER_LINE), IMAGE_PLACEHOLDER);
}

/** s.split(part).join(""), without the array: the occurrences in `s`, left to right, not overlapping. */
function removeEvery(s: string, part: string): string {
  let at = s.indexOf(part);
  if (at < 0) return s;
  let out = "";
  let from = 0;
  while (at >= 0) {
    out += s.slice(from, at);
    from = at + part.length;
    at = s.indexOf(part, from);
  }
  return out + s.slice(from);
}

/** Whether a raw human turn is a `Hint:` turn (kept as is by the release). */
export function isHintTurn(raw: string): boolean {
  return raw.startsWith("Hint:") || raw.startsWith(PLACEHOLDER_HINT);
}

export interface ConversationLayout {
  /** The released scorer's conversation text (placeholders removed). */
  text: string;
  /** Human texts, placeholders removed, no quirk. One per human turn. */
  questions: string[];
  /** Gpt texts, placeholders removed. One per human turn ("" when a human turn has no answer). */
  answers: string[];
}

/** Lays out the conversation as the released scorer does (rules in the header). Never throws. */
export function layoutConversation(sample: Pick<Sample, "conversations">): ConversationLayout {
  return layoutTurns(sample.conversations);
}

/** `layoutConversation` over a turn list (pairs by position: even index human, odd index gpt). */
export function layoutTurns(turns: readonly Turn[]): ConversationLayout {
  let text = "";
  const questions: string[] = [];
  const answers: string[] = [];
  for (let i = 0; i < turns.length; i += 2) {
    const q = turns[i]?.value ?? "";
    const a = i + 1 < turns.length ? (turns[i + 1]?.value ?? "") : "";
    if (i > 0) text += "\n";
    text += isHintTurn(q) ? `${q} Answer: ${a}` : `Question: ${stripQuestionChars(q)} Answer: ${a}`;
    questions.push(removeImagePlaceholders(q));
    answers.push(removeImagePlaceholders(a));
  }
  return { text: removeImagePlaceholders(text), questions, answers };
}

/** The capability query of the released scorer, for one capability NAME (e.g. "humanities"). */
export function CAPABILITY_PROMPT(capabilityName: string): string {
  return `On a scale of 0 to 5, how do you rate the helpfulness of the VQA instance in training a Multimodal Large Language Model for ${capabilityName}?`;
}

/** The 14 capability queries in contract order (CAPABILITIES). */
export const CAPABILITY_PROMPTS: readonly string[] = CAPABILITIES.map((c) => CAPABILITY_PROMPT(c.name));

/** The style query of the released styler (ends with a space after `Styles:`). */
export const STYLE_PROMPT = `Interaction style candidates: [${STYLES.join(", ")}]\nStyles: `;

/** User text of a capability query: conversation text, `\n`, the capability query. */
export function capabilityQueryText(conversationText: string, capabilityName: string): string {
  return `${conversationText}\n${CAPABILITY_PROMPT(capabilityName)}`;
}

/** User text of the style query: conversation text, `\n`, the style query. */
export function styleQueryText(conversationText: string): string {
  return `${conversationText}\n${STYLE_PROMPT}`;
}

const INTEGER_RE = /^[+-]?[0-9]+$/;

/**
 * Parses the scorer's answer to a capability query: an integer (surrounding whitespace allowed,
 * optional sign, ASCII digits, as Python's `int()` reads it) -> that integer; anything else ->
 * null (missing). Our choice where the release is silent: an integer outside 0..5 is also null,
 * since no score outside the scale may enter a scored pool.
 */
export function parseCapabilityAnswer(text: string): number | null {
  if (typeof text !== "string") return null;
  const t = text.trim();
  if (!INTEGER_RE.test(t)) return null;
  const n = Number.parseInt(t, 10);
  if (!Number.isFinite(n) || n < 0 || n > 5) return null;
  return n === 0 ? 0 : n; // "-0" -> 0
}

/**
 * Parses the styler's answer: split on `,`, trim each part, keep the known style names (exact,
 * case-sensitive), de-duplicate, keep the order of the answer.
 */
export function parseStyleAnswer(text: string): StyleName[] {
  if (typeof text !== "string") return [];
  const out: StyleName[] = [];
  for (const part of text.split(",")) {
    const name = part.trim();
    const k = styleIndex(name);
    if (k >= 0 && !out.includes(STYLES[k])) out.push(STYLES[k]);
  }
  return out;
}
