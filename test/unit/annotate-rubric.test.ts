/**
 * Teacher mode `rubric` of `mmssr annotate`: the request (rubric, json_schema response format),
 * the strict validation of the answer, and a bad answer asked again, then recorded as missing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AnnotateConfig,
  type AnnotateItem,
  annotateSamples,
  type SampleOutcome,
} from "../../src/annotate/annotate-samples.js";
import { ChatClient } from "../../src/annotate/chat-client.js";
import { parseRubricAnswer, RUBRIC_JSON_SCHEMA, rubricRequest } from "../../src/annotate/rubric-prompt.js";
import { type Sample, validateSample } from "../../src/domain/sample.js";
import { CAPABILITY_IDS } from "../../src/domain/taxonomy.js";
import {
  type ChatServer,
  lastUserText,
  startChatServer,
  teacherScript,
} from "../support/chat-completions-server.js";

const sampleOf = (raw: unknown): Sample => {
  const v = validateSample(raw);
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.sample;
};
const SAMPLE = sampleOf({
  id: "r1",
  image: "x.jpg",
  conversations: [
    { from: "human", value: "<image>\nWhat does the sign say?" },
    { from: "gpt", value: "It says STOP." },
  ],
});
const IMAGE = { type: "image_url" as const, image_url: { url: "data:image/jpeg;base64,/9j/" } };
const goodScores = Object.fromEntries(CAPABILITY_IDS.map((id, i) => [id, i % 6]));
const good = JSON.stringify({ scores: goodScores, styles: ["word/short-phrase"] });

let server: ChatServer;
beforeAll(async () => {
  server = await startChatServer();
});
afterAll(async () => {
  await server.close();
});

async function annotateOne(config: AnnotateConfig): Promise<SampleOutcome> {
  const client = new ChatClient({ endpoint: server.url, timeoutMs: 5000, retries: 0, backoffMs: 0 });
  const outcomes: SampleOutcome[] = [];
  async function* one(): AsyncGenerator<AnnotateItem> {
    yield { sample: SAMPLE, where: "in.jsonl:1" };
  }
  await annotateSamples(
    one(),
    { config, client, concurrency: 2, images: undefined, badImage: "text-only" },
    async (o) => {
      outcomes.push(o);
    },
  );
  expect(outcomes).toHaveLength(1);
  return outcomes[0];
}

const RUBRIC: AnnotateConfig = { mode: "rubric", model: "big-vlm", jsonSchema: true, answerRetries: 2 };

describe("rubric request", () => {
  it("one request: rubric system message, image then text, temperature 0, json_schema response format", () => {
    const body = rubricRequest(SAMPLE, IMAGE, { model: "big-vlm", jsonSchema: true });
    expect(body.model).toBe("big-vlm");
    expect(body.temperature).toBe(0);
    expect(body.messages[0]).toMatchObject({ role: "system" });
    expect(body.messages[0].content).toMatch(/one JSON object/);
    const content = body.messages[1].content as { type: string; text?: string }[];
    expect(content[0]).toEqual(IMAGE);
    const text = content[1].text ?? "";
    expect(text).toMatch(/USER: What does the sign say\?\nASSISTANT: It says STOP\./);
    expect(text).not.toMatch(/<image>/);
    for (const id of CAPABILITY_IDS) expect(text).toContain(`- ${id} (`);
    expect(text).toMatch(/- ocr \(optical character recognition\): reading text in images/);
    expect(text).toMatch(/- chain-of-thought \(step-by-step\): /);
    expect(body.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "mmssr_labels", strict: true, schema: RUBRIC_JSON_SCHEMA },
    });
    expect(RUBRIC_JSON_SCHEMA.properties.scores.required).toEqual([...CAPABILITY_IDS]);
  });

  it("--no-json-schema leaves response_format out; no image sends the text alone", () => {
    const body = rubricRequest(SAMPLE, undefined, { model: "m", jsonSchema: false });
    expect(body).not.toHaveProperty("response_format");
    expect(typeof body.messages[1].content).toBe("string");
    expect(body.messages[1].content).toMatch(/^This instance has no image\./);
  });
});

describe("rubric answers", () => {
  it("accepts exactly the 14 integer scores and known styles (a fence is allowed, repeats dropped)", () => {
    const r = parseRubricAnswer(good);
    expect(r).toEqual({ ok: true, value: { scores: goodScores, styles: ["word/short-phrase"] } });
    const fenced = parseRubricAnswer(
      `\`\`\`json\n${JSON.stringify({ scores: goodScores, styles: ["yes/no", "yes/no", "comparison"] })}\n\`\`\``,
    );
    expect(fenced).toMatchObject({ ok: true, value: { styles: ["yes/no", "comparison"] } });
  });

  it.each([
    ["not JSON", "Sure! Here are the scores: ...", /not valid JSON/],
    ["cut JSON", good.slice(0, 40), /not valid JSON/],
    [
      "a missing id",
      JSON.stringify({ scores: { ...goodScores, ocr: undefined }, styles: [] }),
      /scores\.ocr/,
    ],
    ["an extra key", JSON.stringify({ scores: { ...goodScores, vibes: 3 }, styles: [] }), /vibes/],
    ["out of range", JSON.stringify({ scores: { ...goodScores, stem: 6 }, styles: [] }), /scores\.stem/],
    ["not an integer", JSON.stringify({ scores: { ...goodScores, stem: 2.5 }, styles: [] }), /scores\.stem/],
    ["a string score", JSON.stringify({ scores: { ...goodScores, stem: "3" }, styles: [] }), /scores\.stem/],
    ["an unknown style", JSON.stringify({ scores: goodScores, styles: ["mcq"] }), /styles\.0/],
    ["no styles", JSON.stringify({ scores: goodScores }), /styles/],
    ["an extra top-level key", JSON.stringify({ scores: goodScores, styles: [], why: "x" }), /why/],
    ["an array", "[1,2]", /expected object/],
  ])("rejects %s", (_what, reply, problem) => {
    const r = parseRubricAnswer(reply);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });
});

describe("rubric mode against a server", () => {
  it("labels a sample from one valid answer", async () => {
    server.requests.length = 0;
    server.setScript(() => ({ content: good, usage: { prompt_tokens: 900, completion_tokens: 60 } }));
    const o = await annotateOne(RUBRIC);
    expect(o.kind).toBe("labelled");
    if (o.kind !== "labelled") return;
    expect(o.scores).toEqual(goodScores);
    expect(o.styles).toEqual(["word/short-phrase"]);
    expect(o.annotation).toMatchObject({
      mode: "rubric",
      models: { model: "big-vlm" },
      requests: 1,
      answer_tries: 1,
      missing: {},
      usage: { prompt_tokens: 900, completion_tokens: 60 },
    });
    expect(server.requests).toHaveLength(1);
  });

  it("asks again after malformed JSON, with the bad answer and what was wrong", async () => {
    server.requests.length = 0;
    server.setScript(
      teacherScript((req) =>
        req.body.messages.length === 2 ? { content: '{"scores": {"spatial": 3,' } : { content: good },
      ),
    );
    const o = await annotateOne(RUBRIC);
    expect(o.kind).toBe("labelled");
    expect(o.annotation.answer_tries).toBe(2);
    expect(server.requests).toHaveLength(2);
    const retry = server.requests[1].body;
    expect(retry.messages.slice(0, 2)).toEqual(server.requests[0].body.messages);
    expect(retry.messages[2]).toEqual({ role: "assistant", content: '{"scores": {"spatial": 3,' });
    expect(lastUserText(retry)).toMatch(/^That answer is not valid: not valid JSON/);
    expect(retry.response_format).toEqual(server.requests[0].body.response_format);
  });

  it("after --answer-retries bad answers the sample is recorded as missing, with the reason", async () => {
    server.requests.length = 0;
    server.setScript(() => ({ content: JSON.stringify({ scores: { spatial: 9 }, styles: [] }) }));
    const o = await annotateOne(RUBRIC);
    expect(o.kind).toBe("failed");
    if (o.kind !== "failed") return;
    expect(server.requests).toHaveLength(3); // 1 + 2 answer retries
    expect(o.annotation.answer_tries).toBe(3);
    expect(o.reason).toMatch(/^no capability score: invalid answer: scores\.spatial: .* \(after 3 answers\)/);
    expect(Object.keys(o.annotation.missing)).toEqual([...CAPABILITY_IDS, "styles"]);
  });

  it("a request that fails (after its transport retries) is not asked again as a bad answer", async () => {
    server.requests.length = 0;
    server.setScript(() => ({ status: 422, body: { error: { message: "response_format not supported" } } }));
    const o = await annotateOne(RUBRIC);
    expect(o.kind).toBe("failed");
    if (o.kind !== "failed") return;
    expect(server.requests).toHaveLength(1);
    expect(o.reason).toMatch(/request failed: HTTP 422.*response_format not supported/);
  });
});
