/**
 * Teacher mode `released` of `mmssr annotate`: the golden request bodies of the released scorer
 * and styler interface (MMSSR.md), as built and as they reach a real local server, the image
 * part, and the parsing of the replies.
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AnnotateItem,
  annotateSamples,
  type SampleOutcome,
} from "../../src/annotate/annotate-samples.js";
import { ChatClient } from "../../src/annotate/chat-client.js";
import { createImagePartResolver, sniffImageMime } from "../../src/annotate/image-part.js";
import {
  parseReleasedScore,
  parseReleasedStyles,
  releasedRequests,
} from "../../src/annotate/released-prompts.js";
import { type Sample, validateSample } from "../../src/domain/sample.js";
import { type ChatServer, startChatServer, teacherScript } from "../support/chat-completions-server.js";

const FIXTURES = new URL("../fixtures/samples/", import.meta.url).pathname;

/** The capability names in contract order, written out (the golden is not derived from the code). */
const NAMES = [
  "object spatial understanding",
  "attribute identification",
  "logical deduction",
  "scene understanding",
  "fine-grained recognition",
  "language generation",
  "in-context learning",
  "comparative analysis",
  "activity recognition",
  "causal reasoning",
  "humanities",
  "stem knowledge",
  "data understanding",
  "optical character recognition",
];
const IDS = [
  "spatial",
  "attribute",
  "logical",
  "scene",
  "finegrained",
  "language",
  "incontext",
  "comparative",
  "activity",
  "causal",
  "humanities",
  "stem",
  "data",
  "ocr",
];
const SYSTEM = "You are a helpful assistant.";
const capQuery = (name: string) =>
  `On a scale of 0 to 5, how do you rate the helpfulness of the VQA instance in training a Multimodal Large Language Model for ${name}?`;
const STYLE_QUERY =
  "Interaction style candidates: [multi-choice, coordinate, yes/no, word/short-phrase, short description, detailed description, comparison, chain-of-thought (step-by-step), specified style]\nStyles: ";

/** The 15 golden bodies for a conversation text and user content builder. */
function golden(conversation: string, content: (text: string) => unknown, model = "mmssr-7b") {
  const body = (text: string, maxTokens: number) => ({
    model,
    messages: [
      { role: "system", content: SYSTEM },
      { role: "user", content: content(text) },
    ],
    temperature: 0,
    max_tokens: maxTokens,
  });
  return [
    ...NAMES.map((n) => body(`${conversation}\n${capQuery(n)}`, 8)),
    body(`${conversation}\n${STYLE_QUERY}`, 96),
  ];
}

function sampleOf(raw: unknown): Sample {
  const v = validateSample(raw, { missingId: "content-hash" });
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return v.sample;
}

let demo: Sample[];
let jpeg1: string;
let server: ChatServer;

beforeAll(async () => {
  demo = (JSON.parse(await readFile(`${FIXTURES}mllm_demo.json`, "utf8")) as unknown[]).map(sampleOf);
  jpeg1 = (await readFile(`${FIXTURES}mllm_demo_data/1.jpg`)).toString("base64");
  server = await startChatServer();
});
afterAll(async () => {
  await server.close();
});

const MODELS = { scorer: "mmssr-7b", styler: "mmssr-7b" };
const DEMO0_TEXT =
  "Question: Who are they? Answer: They're Kane and Gretzka from Bayern Munich.\n" +
  "Question: What are they doing? Answer: They are celebrating on the soccer field.";

describe("released request bodies (golden)", () => {
  it("mllm_demo[0]: system message, layout, 14 queries in capability order, style query, image as a data URL", async () => {
    const images = createImagePartResolver({ baseDir: FIXTURES });
    const r = await images.resolve(demo[0]);
    await images.close();
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.origin).toBe(`file:${FIXTURES}mllm_demo_data/1.jpg`);
    const bodies = releasedRequests(demo[0], r.part, MODELS).map((q) => q.body);
    const imagePart = { type: "image_url", image_url: { url: `data:image/jpeg;base64,${jpeg1}` } };
    expect(bodies).toEqual(golden(DEMO0_TEXT, (text) => [imagePart, { type: "text", text }]));
    expect(
      releasedRequests(demo[0], r.part, MODELS).map((q) =>
        q.kind === "capability" ? q.capability : "styles",
      ),
    ).toEqual([...IDS, "styles"]);
  });

  it("reproduces the strip quirk, keeps Hint: turns, removes the placeholder after the layout", () => {
    const sample = sampleOf({
      id: "quirk",
      image: "x.jpg",
      conversations: [
        { from: "human", value: "<image>\nDescribe the scene in one sentence" },
        { from: "gpt", value: "A dog on a beach." },
        { from: "human", value: "is it sunny?" },
        { from: "gpt", value: "Yes." },
        { from: "human", value: "Hint: look at the sky.\nQuestion: What time is it" },
        { from: "gpt", value: "Noon." },
      ],
    });
    const text =
      // "<image>\n..." starts with "<", so only the end is stripped: "sentence" loses its "e"
      "Question: Describe the scene in one sentenc Answer: A dog on a beach.\n" +
      // "is it sunny?": "i", "s", " ", "i", "t", " ", "s", "u", "n", "n" are all in the set
      "Question: y? Answer: Yes.\n" +
      // a Hint: turn is kept as is (neither prefix nor strip)
      "Hint: look at the sky.\nQuestion: What time is it Answer: Noon.";
    const bodies = releasedRequests(sample, undefined, MODELS).map((q) => q.body);
    expect(bodies).toEqual(golden(text, (t) => t)); // no image: the text alone, as a string
  });

  it("the scorer and styler may be different models", () => {
    const bodies = releasedRequests(demo[1], undefined, { scorer: "s-model", styler: "t-model" }).map(
      (q) => q.body,
    );
    expect(bodies.slice(0, 14).every((b) => b.model === "s-model")).toBe(true);
    expect(bodies[14].model).toBe("t-model");
  });

  it("reach the server exactly so, one request per query, in capability order", async () => {
    server.requests.length = 0;
    server.setScript(teacherScript());
    const client = new ChatClient({ endpoint: server.url, timeoutMs: 5000, retries: 0, backoffMs: 0 });
    const images = createImagePartResolver({ baseDir: FIXTURES });
    const outcomes: SampleOutcome[] = [];
    async function* one(): AsyncGenerator<AnnotateItem> {
      yield { sample: demo[0], where: "demo[0]" };
    }
    await annotateSamples(
      one(),
      { config: { mode: "released", models: MODELS }, client, concurrency: 1, images, badImage: "text-only" },
      async (o) => {
        outcomes.push(o);
      },
    );
    await images.close();
    const imagePart = { type: "image_url", image_url: { url: `data:image/jpeg;base64,${jpeg1}` } };
    expect(server.requests.map((q) => q.body)).toEqual(
      golden(DEMO0_TEXT, (text) => [imagePart, { type: "text", text }]),
    );
    expect(outcomes).toHaveLength(1);
    const o = outcomes[0];
    expect(o.kind).toBe("labelled");
    if (o.kind !== "labelled") return;
    expect(Object.keys(o.scores)).toEqual(IDS);
    expect(Object.values(o.scores).every((v) => Number.isInteger(v))).toBe(true);
    expect(o.annotation).toMatchObject({ mode: "released", requests: 15, attempts: 15, missing: {} });
    expect(o.annotation.image).toEqual({ sent: true, origin: `file:${FIXTURES}mllm_demo_data/1.jpg` });
  });
});

describe("concurrency", () => {
  it("never has more than --concurrency requests open at the server", async () => {
    server.requests.length = 0;
    const teacher = teacherScript();
    server.setScript((req) => ({ delayMs: 5, reply: teacher(req) }));
    server.resetMaxInFlight();
    const client = new ChatClient({ endpoint: server.url, timeoutMs: 5000, retries: 0, backoffMs: 0 });
    const outcomes: SampleOutcome[] = [];
    async function* all(): AsyncGenerator<AnnotateItem> {
      for (const [k, sample] of demo.entries()) yield { sample, where: `demo[${k}]` };
    }
    await annotateSamples(
      all(),
      {
        config: { mode: "released", models: MODELS },
        client,
        concurrency: 3,
        images: undefined,
        badImage: "text-only",
      },
      async (o) => {
        outcomes.push(o);
      },
    );
    expect(server.requests).toHaveLength(6 * 15);
    expect(server.maxInFlight).toBeLessThanOrEqual(3);
    expect(outcomes.map((o) => o.sample.id).sort()).toEqual(demo.map((d) => d.id).sort());
  });
});

describe("released replies", () => {
  it("a score is the integer of the reply, else missing with the reason", () => {
    expect(parseReleasedScore("4")).toEqual({ score: 4 });
    expect(parseReleasedScore(" 3\n")).toEqual({ score: 3 });
    expect(parseReleasedScore("0")).toEqual({ score: 0 });
    expect(parseReleasedScore("7")).toEqual({ missing: 'reply "7" is outside 0..5' });
    expect(parseReleasedScore("four")).toEqual({ missing: 'reply "four" is not an integer' });
    expect(parseReleasedScore("4.5")).toHaveProperty("missing");
    expect(parseReleasedScore("Score: 4")).toHaveProperty("missing");
    expect(parseReleasedScore("")).toHaveProperty("missing");
  });

  it("styles: comma split, trimmed, known names only, de-duplicated, in order", () => {
    expect(parseReleasedStyles("yes/no, short description,yes/no, bogus ,comparison")).toEqual({
      styles: ["yes/no", "short description", "comparison"],
    });
    expect(parseReleasedStyles("Yes/No")).toEqual({
      styles: [],
      note: 'reply "Yes/No" names no known style',
    });
  });

  it("an unparseable or failed request leaves that score missing with its reason; the rest stay", async () => {
    server.requests.length = 0;
    server.setScript(
      teacherScript((_req, q) => {
        if (q.kind === "capability" && q.name === "optical character recognition") return { content: "N/A" };
        if (q.kind === "capability" && q.name === "humanities")
          return { status: 400, body: { error: { message: "nope" } } };
        if (q.kind === "styles") return { content: "none of these" };
        return undefined;
      }),
    );
    const client = new ChatClient({ endpoint: server.url, timeoutMs: 5000, retries: 0, backoffMs: 0 });
    const outcomes: SampleOutcome[] = [];
    async function* one(): AsyncGenerator<AnnotateItem> {
      yield { sample: demo[1], where: "demo[1]" };
    }
    await annotateSamples(
      one(),
      {
        config: { mode: "released", models: MODELS },
        client,
        concurrency: 4,
        images: undefined,
        badImage: "text-only",
      },
      async (o) => {
        outcomes.push(o);
      },
    );
    const o = outcomes[0];
    expect(o.kind).toBe("labelled");
    if (o.kind !== "labelled") return;
    expect(o.scores.ocr).toBeNull();
    expect(o.scores.humanities).toBeNull();
    expect(o.scores.spatial).not.toBeNull();
    expect(o.styles).toEqual([]);
    expect(o.annotation.missing).toEqual({
      ocr: 'reply "N/A" is not an integer',
      humanities: "request failed: HTTP 400 Bad Request: nope",
      styles: 'reply "none of these" names no known style',
    });
    expect(o.annotation.image).toEqual({ sent: false, flag: "no-image", reason: "--no-images" });
    // text-only: the user content is a plain string
    expect(typeof server.requests[0].body.messages[1].content).toBe("string");
  });
});

describe("image part", () => {
  const urlSample = (url: string) =>
    sampleOf({
      id: "u",
      image_url: url,
      conversations: [
        { from: "human", value: "<image>\nWhat is it?" },
        { from: "gpt", value: "A cat." },
      ],
    });

  it("passes an allowed http(s) URL through, refuses others", async () => {
    const allowed = createImagePartResolver({ baseDir: FIXTURES, allowHosts: ["images.example.com"] });
    const r = await allowed.resolve(urlSample("https://images.example.com/a.jpg?sig=1"));
    expect(r).toEqual({
      ok: true,
      part: { type: "image_url", image_url: { url: "https://images.example.com/a.jpg?sig=1" } },
      origin: "https://images.example.com/a.jpg?...",
    });
    const other = await allowed.resolve(urlSample("https://evil.example.org/a.jpg"));
    expect(other).toMatchObject({ ok: false, flag: "image-refused" });
    await allowed.close();
    const any = createImagePartResolver({ baseDir: FIXTURES, allowHosts: ["*"] });
    expect(await any.resolve(urlSample("http://10.0.0.1/a.jpg"))).toMatchObject({
      ok: false,
      flag: "image-refused",
      reason: expect.stringMatching(/private address/),
    });
    await any.close();
  });

  it("inline bytes become a data URL of their type; a path outside the base is refused", async () => {
    const images = createImagePartResolver({ baseDir: `${FIXTURES}mllm_demo_data` });
    const png = Buffer.from("89504e470d0a1a0a0000000d49484452", "hex").toString("base64");
    const r = await images.resolve(
      sampleOf({ ...urlSample("https://x.example/a.jpg"), image_url: undefined, image_b64: png }),
    );
    expect(r).toMatchObject({ ok: true, part: { image_url: { url: `data:image/png;base64,${png}` } } });
    const outside = await images.resolve({ ...demo[0], image: "../llava_serve_examples/waterview.jpg" });
    expect(outside).toMatchObject({ ok: false, flag: "image-refused" });
    await images.close();
    expect(sniffImageMime(Buffer.from("GIF89a......"))).toBe("image/gif");
    expect(sniffImageMime(Buffer.from("hello"))).toBeUndefined();
  });
});
