/**
 * Teacher mode `rubric`: one request per sample to a strong general VLM, with a rubric of ours
 * (the paper's GPT-4o prompt is not public) asking for all 14 capability scores and the styles
 * as one JSON object, and the strict validation of its answer.
 *
 * Request: a system message with the task, one user message with the image part (when the
 * sample has a usable image) and the text (the conversation as `USER:` / `ASSISTANT:` lines,
 * placeholders removed; the rubric: every capability id with its name and working meaning from
 * MMSSR.md, the nine style names with a short gloss, the answer's shape), temperature 0, and
 * unless disabled `response_format: {type: "json_schema", ...}` with RUBRIC_JSON_SCHEMA (vLLM,
 * SGLang, OpenAI honour it; some servers reject it: --no-json-schema).
 *
 * Validation (zod, strict): the reply (optionally inside one ```json fence) is one JSON object
 * `{"scores": {...}, "styles": [...]}` and nothing else; `scores` holds exactly the 14 ids, each
 * an integer 0..5; `styles` is an array of known style names (a repeated name is dropped, the
 * order kept). Anything else is a bad answer, with the first problems named. A bad answer is
 * asked again with the conversation continued: the bad reply as the assistant turn, then a user
 * turn saying what was wrong (a greedy server would only repeat the same answer to the same
 * request).
 */
import { z } from "zod";
import type { Sample } from "../domain/sample.js";
import {
  CAPABILITIES,
  CAPABILITY_IDS,
  type CapabilityId,
  STYLES,
  type StyleName,
} from "../domain/taxonomy.js";
import { removeImagePlaceholders } from "../scoring/conversation-text.js";
import type { ChatMessage, ChatRequestBody, ContentPart } from "./chat-client.js";
import type { ImagePart } from "./image-part.js";

/** Answer budget of the rubric answer (14 scores and a style list as JSON). */
export const RUBRIC_MAX_TOKENS = 1024;

/** Working meanings of the capabilities (MMSSR.md, "The 14 capabilities"). */
export const CAPABILITY_MEANINGS: Readonly<Record<CapabilityId, string>> = {
  spatial: "positions, layout, relative location, grounding, counting in space",
  attribute: "colour, shape, material, size, state of objects",
  logical: "multi-step inference from visual and textual premises, puzzles",
  scene: "the setting, event and context of the whole image",
  finegrained: "species, brands, landmarks, specific models and identities",
  language: "fluent long-form text: captions, stories, explanations",
  incontext: "following patterns, examples or constraints given in the conversation",
  comparative: "comparing objects, regions, images or options",
  activity: "actions and interactions of people and animals",
  causal: "why things happen, consequences, cause and effect",
  humanities: "art, history, culture, society",
  stem: "science, mathematics, engineering problem solving",
  data: "charts, tables, plots, diagrams, infographics",
  ocr: "reading text in images: documents, signs, screens",
};

const STYLE_GLOSSES: Readonly<Record<StyleName, string>> = {
  "multi-choice": "the answer picks among options given in the question",
  coordinate: "the answer gives coordinates or bounding boxes",
  "yes/no": "the answer is yes or no",
  "word/short-phrase": "the answer is a word, a number or a short phrase",
  "short description": "the answer is one or two sentences",
  "detailed description": "the answer is a long, detailed description or explanation",
  comparison: "the answer compares things",
  "chain-of-thought (step-by-step)": "the answer reasons step by step before concluding",
  "specified style": 'the instruction dictates the answer\'s format (e.g. "answer in JSON", "in one word")',
};

export const RUBRIC_SYSTEM_PROMPT =
  "You are an expert annotator of multi-modal instruction-tuning data. For one training instance " +
  "(an image and a conversation about it) you rate how helpful it is for teaching a multimodal large " +
  "language model each of 14 capabilities, and you tag the interaction styles of its answers. " +
  "Reply with one JSON object and nothing else.";

function conversationText(sample: Pick<Sample, "conversations" | "system">): string {
  const lines: string[] = [];
  if (typeof sample.system === "string" && sample.system.trim() !== "")
    lines.push(`SYSTEM: ${sample.system}`);
  for (const t of sample.conversations)
    lines.push(`${t.from === "human" ? "USER" : "ASSISTANT"}: ${removeImagePlaceholders(t.value).trim()}`);
  return lines.join("\n");
}

/** The user text of the rubric request. */
export function rubricUserText(sample: Pick<Sample, "conversations" | "system">, hasImage: boolean): string {
  const caps = CAPABILITIES.map((c) => `- ${c.id} (${c.name}): ${CAPABILITY_MEANINGS[c.id]}`).join("\n");
  const styles = STYLES.map((s) => `- ${s}: ${STYLE_GLOSSES[s]}`).join("\n");
  const example = `{"scores": {${CAPABILITY_IDS.map((id) => `"${id}": <0-5>`).join(", ")}}, "styles": ["<style>", ...]}`;
  return [
    hasImage ? "The image of the instance is attached." : "This instance has no image.",
    "",
    "Conversation:",
    conversationText(sample),
    "",
    "Scores: for each capability below, an integer from 0 to 5: how helpful this instance is for " +
      "training a multimodal large language model in that capability (0 = not at all, 5 = extremely " +
      "helpful). Judge each capability on its own; most instances help only a few.",
    caps,
    "",
    "Styles: every interaction style the answers in the conversation take, from this list only, " +
      "names written exactly as here:",
    styles,
    "",
    "Answer with exactly this JSON object, all 14 capability ids present, integers only:",
    example,
  ].join("\n");
}

/** The JSON Schema of the answer, for `response_format`. */
export const RUBRIC_JSON_SCHEMA = {
  type: "object",
  properties: {
    scores: {
      type: "object",
      properties: Object.fromEntries(
        CAPABILITY_IDS.map((id) => [id, { type: "integer", enum: [0, 1, 2, 3, 4, 5] }]),
      ),
      required: [...CAPABILITY_IDS],
      additionalProperties: false,
    },
    styles: { type: "array", items: { type: "string", enum: [...STYLES] } },
  },
  required: ["scores", "styles"],
  additionalProperties: false,
} as const;

export const RUBRIC_RESPONSE_FORMAT = {
  type: "json_schema",
  json_schema: { name: "mmssr_labels", strict: true, schema: RUBRIC_JSON_SCHEMA },
} as const;

/** The first request for one sample. */
export function rubricRequest(
  sample: Pick<Sample, "conversations" | "system">,
  image: ImagePart | undefined,
  options: { model: string; jsonSchema: boolean },
): ChatRequestBody {
  const text = rubricUserText(sample, image !== undefined);
  const content: string | ContentPart[] = image === undefined ? text : [image, { type: "text", text }];
  const body: ChatRequestBody = {
    model: options.model,
    messages: [
      { role: "system", content: RUBRIC_SYSTEM_PROMPT },
      { role: "user", content },
    ],
    temperature: 0,
    max_tokens: RUBRIC_MAX_TOKENS,
  };
  if (options.jsonSchema) body.response_format = RUBRIC_RESPONSE_FORMAT as unknown as Record<string, unknown>;
  return body;
}

/** The request that asks again after a bad answer: the conversation continued with a correction. */
export function rubricRetryRequest(
  previous: ChatRequestBody,
  badReply: string,
  problem: string,
): ChatRequestBody {
  const correction: ChatMessage = {
    role: "user",
    content:
      `That answer is not valid: ${problem}. Reply again with only the JSON object: "scores" with ` +
      `all 14 capability ids (${CAPABILITY_IDS.join(", ")}), each an integer from 0 to 5, and ` +
      `"styles", a list of style names from the list.`,
  };
  return {
    ...previous,
    messages: [...previous.messages, { role: "assistant", content: badReply }, correction],
  };
}

const RubricAnswerSchema = z.strictObject({
  scores: z.strictObject(
    Object.fromEntries(CAPABILITY_IDS.map((id) => [id, z.number().int().min(0).max(5)])) as Record<
      CapabilityId,
      z.ZodNumber
    >,
  ),
  styles: z.array(z.enum(STYLES)),
});

export interface RubricAnswer {
  scores: Record<CapabilityId, number>;
  styles: StyleName[];
}

const FENCE_RE = /^```(?:json|JSON)?[ \t]*\r?\n([\s\S]*?)\r?\n?```$/;

/** Validates a rubric reply strictly (rules in the header). */
export function parseRubricAnswer(
  reply: string,
): { ok: true; value: RubricAnswer } | { ok: false; problem: string } {
  let text = reply.trim();
  const fenced = FENCE_RE.exec(text);
  if (fenced) text = fenced[1].trim();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const shown = text.length > 60 ? `${text.slice(0, 60)}...` : text;
    return {
      ok: false,
      problem: `not valid JSON (${(err as Error).message}): ${JSON.stringify(shown)}`,
    };
  }
  const r = RubricAnswerSchema.safeParse(parsed);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => {
      const path = i.path.map(String).join(".");
      return path === "" ? i.message : `${path}: ${i.message}`;
    });
    if (r.error.issues.length > 5) issues.push(`(${r.error.issues.length - 5} more)`);
    return { ok: false, problem: issues.join("; ") };
  }
  const styles: StyleName[] = [];
  for (const s of r.data.styles) if (!styles.includes(s)) styles.push(s);
  return { ok: true, value: { scores: r.data.scores as Record<CapabilityId, number>, styles } };
}
