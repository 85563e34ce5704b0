/**
 * Teacher mode `released`: the interface of the released mmSSR scorer and styler
 * (mengyaolyu/mmssr-7b-scorer, -styler; ../shared/MMSSR.md, "Released scorer / styler interface
 * (constants)") as chat-completions requests: 15 requests per sample.
 *
 * Each request: the system message `You are a helpful assistant.`, then one user message whose
 * content is the image part (when the sample has a usable image) followed by the text part; a
 * sample without an image sends the text alone, as a plain string. The text is the release's
 * conversation layout (scoring/conversation-text.ts: `Question: <human> Answer: <gpt>` per turn
 * pair, joined with `\n`, `Hint:` turns kept as is, and the release's strip quirk: the
 * characters of `Question: ` are removed from both ends of every other human turn, as Python's
 * `str.strip('Question: ')` does, which also trims a turn ending in one of those letters; the
 * checkpoints were used that way), the `<image>` placeholder removed after the layout is built,
 * then `\n` and the query:
 *
 * - requests 0..13: the capability query for CAPABILITIES[c].name, in CAPABILITY_IDS order, to
 *   the scorer model;
 * - request 14: the style query, to the styler model.
 *
 * Greedy decoding: `temperature: 0`. `max_tokens` bounds the answer (the release is silent on it;
 * a score is one integer, a style list a few names).
 *
 * Parsing, as the release: a capability reply is an integer (Python's `int()` of the reply) in
 * 0..5, anything else is missing; a style reply is split on `,`, each part trimmed, known style
 * names kept, de-duplicated, in order.
 */
import type { Sample } from "../domain/sample.js";
import { CAPABILITIES, type CapabilityId, type StyleName } from "../domain/taxonomy.js";
import {
  capabilityQueryText,
  layoutConversation,
  parseCapabilityAnswer,
  parseStyleAnswer,
  SYSTEM_PROMPT,
  styleQueryText,
} from "../scoring/conversation-text.js";
import type { ChatRequestBody, ContentPart } from "./chat-client.js";
import type { ImagePart } from "./image-part.js";

/** Answer budget of a capability query (one integer). */
export const RELEASED_SCORE_MAX_TOKENS = 8;
/** Answer budget of the style query (a comma list of at most nine names). */
export const RELEASED_STYLE_MAX_TOKENS = 96;

export interface ReleasedModels {
  scorer: string;
  styler: string;
}

/** One request of the released interface and what it asks. */
export type ReleasedRequest =
  | { kind: "capability"; capability: CapabilityId; body: ChatRequestBody }
  | { kind: "styles"; body: ChatRequestBody };

function userContent(text: string, image: ImagePart | undefined): string | ContentPart[] {
  return image === undefined ? text : [image, { type: "text", text }];
}

/** The 15 requests of one sample, capabilities in contract order, then the style query. */
export function releasedRequests(
  sample: Pick<Sample, "conversations">,
  image: ImagePart | undefined,
  models: ReleasedModels,
): ReleasedRequest[] {
  const conversation = layoutConversation(sample).text;
  const body = (model: string, text: string, maxTokens: number): ChatRequestBody => ({
    model,
    messages: [
      { role: "system", content: SYSTEM_PROMPT },
      { role: "user", content: userContent(text, image) },
    ],
    temperature: 0,
    max_tokens: maxTokens,
  });
  const out: ReleasedRequest[] = CAPABILITIES.map((c) => ({
    kind: "capability" as const,
    capability: c.id,
    body: body(models.scorer, capabilityQueryText(conversation, c.name), RELEASED_SCORE_MAX_TOKENS),
  }));
  out.push({
    kind: "styles",
    body: body(models.styler, styleQueryText(conversation), RELEASED_STYLE_MAX_TOKENS),
  });
  return out;
}

function quote(reply: string): string {
  const t = reply.length > 60 ? `${reply.slice(0, 60)}...` : reply;
  return JSON.stringify(t);
}

/** A capability reply: the score, or why it is missing. */
export function parseReleasedScore(reply: string): { score: number } | { missing: string } {
  const score = parseCapabilityAnswer(reply);
  if (score !== null) return { score };
  return /^\s*[+-]?\d+\s*$/.test(reply)
    ? { missing: `reply ${quote(reply)} is outside 0..5` }
    : { missing: `reply ${quote(reply)} is not an integer` };
}

/** A style reply: the known styles it names, and a note when it names none. */
export function parseReleasedStyles(reply: string): { styles: StyleName[]; note?: string } {
  const styles = parseStyleAnswer(reply);
  return styles.length > 0 ? { styles } : { styles, note: `reply ${quote(reply)} names no known style` };
}
