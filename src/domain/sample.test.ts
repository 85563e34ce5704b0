import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, isUserError, MmssrError } from "./errors.js";
import {
  DEFAULT_MAX_IMAGE_BYTES,
  parseSampleJson,
  type SampleValidationError,
  type SampleValidationResult,
  toMmssrError,
  validateSample,
} from "./sample.js";
import { UNKNOWN_SOURCE } from "./taxonomy.js";

const FIXTURES = fileURLToPath(new URL("../../test/fixtures/samples/", import.meta.url));
const readFixture = (name: string): unknown[] => JSON.parse(readFileSync(FIXTURES + name, "utf8"));

const base = () => ({
  id: "s1",
  image: "coco/1.jpg",
  conversations: [
    { from: "human", value: "<image>\nWhat is this?" },
    { from: "gpt", value: "A cat." },
  ],
});

function errorsOf(res: SampleValidationResult): SampleValidationError[] {
  if (res.ok) throw new Error(`expected a rejection, got ${JSON.stringify(res.sample).slice(0, 200)}`);
  return res.errors;
}

/** The sample is rejected and one of its errors is at `path`. */
function expectErrorAt(input: unknown, path: string, reason?: RegExp, options = {}): void {
  const errors = errorsOf(validateSample(input, options));
  const hit = errors.find((e) => e.path === path);
  expect(hit, `errors: ${JSON.stringify(errors)}`).toBeDefined();
  if (reason && hit) expect(hit.reason).toMatch(reason);
}

function accept(input: unknown, options = {}) {
  const res = validateSample(input, options);
  if (!res.ok) throw new Error(`rejected: ${JSON.stringify(res.errors)}`);
  return res;
}

describe("real fixtures", () => {
  it("every LLaVA-Instruct record validates unchanged", () => {
    const records = readFixture("llava_instruct_20.json");
    expect(records).toHaveLength(20);
    for (const rec of records) {
      const res = accept(rec);
      expect(res.warnings).toEqual([]);
      const { image_source, ...rest } = res.sample;
      expect(image_source).toBe(UNKNOWN_SOURCE);
      expect(rest).toEqual(rec);
    }
  });

  it("every mllm_demo record validates (with a content-hash id) and normalises", () => {
    const records = readFixture("mllm_demo.json");
    expect(records).toHaveLength(6);
    const ids = new Set<string>();
    for (const rec of records) {
      const res = accept(rec, { missingId: "content-hash" });
      expect(res.sample.id).toMatch(/^sha256:[0-9a-f]{24}$/);
      ids.add(res.sample.id);
      expect(res.sample.conversations.length).toBe((rec as { messages: unknown[] }).messages.length);
      expect(res.sample).not.toHaveProperty("messages");
    }
    expect(ids.size).toBe(6);
    // Rejected without an id source.
    expectErrorAt(records[0], "id", /missing/);
  });

  it("mllm_demo record 0 (two images, two placeholders) normalises as worked by hand", () => {
    const rec = readFixture("mllm_demo.json")[0];
    const res = accept(rec, { defaultId: "mllm_demo.json#0" });
    expect(res.sample).toEqual({
      id: "mllm_demo.json#0",
      image: "mllm_demo_data/1.jpg",
      images: ["mllm_demo_data/1.jpg", "mllm_demo_data/1.jpg"],
      image_source: "unknown",
      conversations: [
        { from: "human", value: "<image>Who are they?" },
        { from: "gpt", value: "They're Kane and Gretzka from Bayern Munich." },
        { from: "human", value: "What are they doing?<image>" },
        { from: "gpt", value: "They are celebrating on the soccer field." },
      ],
    });
    expect(res.warnings).toEqual(['id: missing; using "mllm_demo.json#0"']);
    // Keys in the documented order.
    expect(Object.keys(res.sample)).toEqual(["id", "image", "images", "image_source", "conversations"]);
  });

  it("mllm_demo record 1 (one image) gets image only", () => {
    const res = accept(readFixture("mllm_demo.json")[1], { defaultId: "x" });
    expect(res.sample.image).toBe("mllm_demo_data/2.jpg");
    expect(res.sample).not.toHaveProperty("images");
  });

  it("the fixture images exist and are small", () => {
    for (const f of [
      "mllm_demo_data/1.jpg",
      "mllm_demo_data/2.jpg",
      "mllm_demo_data/3.jpg",
      "llava_serve_examples/extreme_ironing.jpg",
      "llava_serve_examples/waterview.jpg",
    ]) {
      const bytes = readFileSync(FIXTURES + f);
      expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8])); // JPEG SOI
      expect(bytes.length).toBeLessThan(300_000);
    }
  });

  it("accepts a real JPEG inline as image_b64", () => {
    const b64 = readFileSync(`${FIXTURES}llava_serve_examples/extreme_ironing.jpg`).toString("base64");
    const res = accept({ ...base(), image: undefined, image_b64: b64, image_source: "llava-demo" });
    expect(res.sample.image_b64).toBe(b64);
    expect(res.sample.image_source).toBe("llava-demo");
    expectErrorAt({ ...base(), image_b64: b64 }, "image_b64", /limit of 1000/, { maxImageBytes: 1000 });
  });
});

describe("normalisation", () => {
  it("keeps unknown fields as they are, after the known ones", () => {
    const extra = { nested: { a: [1, 2] }, n: 3 };
    const res = accept({ meta: extra, ...base(), zzz: null });
    expect(res.sample.meta).toBe(extra);
    expect(res.sample.zzz).toBeNull();
    expect(Object.keys(res.sample)).toEqual(["id", "image", "image_source", "conversations", "meta", "zzz"]);
  });

  it("keeps a __proto__ key as a plain field", () => {
    const input = JSON.parse(
      '{"id":"p","conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"yo"}],"__proto__":{"polluted":1}}',
    );
    const res = accept(input);
    expect(Object.getPrototypeOf(res.sample)).toBe(Object.prototype);
    expect(Object.hasOwn(res.sample, "__proto__")).toBe(true);
    expect(JSON.stringify(res.sample)).toContain('"__proto__":{"polluted":1}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("converts an integer id to a string", () => {
    expect(accept({ ...base(), id: 42 }).sample.id).toBe("42");
  });

  it("maps user/assistant aliases and a leading system turn", () => {
    const res = accept({
      id: "a",
      conversations: [
        { from: "system", value: "Be brief." },
        { from: "user", value: "hi" },
        { from: "assistant", value: "hello" },
      ],
    });
    expect(res.sample.system).toBe("Be brief.");
    expect(res.sample.conversations).toEqual([
      { from: "human", value: "hi" },
      { from: "gpt", value: "hello" },
    ]);
  });

  it("messages form: system message, several images, other fields", () => {
    const res = accept({
      id: 7,
      messages: [
        { role: "system", content: "sys" },
        { role: "user", content: "<image><image>compare" },
        { role: "assistant", content: "same" },
      ],
      images: ["a.jpg", "b.jpg"],
      image_source: "web",
      tag: "x",
    });
    expect(res.sample).toEqual({
      id: "7",
      image: "a.jpg",
      images: ["a.jpg", "b.jpg"],
      image_source: "web",
      system: "sys",
      conversations: [
        { from: "human", value: "<image><image>compare" },
        { from: "gpt", value: "same" },
      ],
      tag: "x",
    });
    expect(res.warnings).toEqual([]);
  });

  it("an image array in image (OneVision style) and null optionals", () => {
    const res = accept({
      ...base(),
      image: ["a.jpg", "b.jpg"],
      image_url: null,
      image_b64: null,
      image_source: null,
      system: null,
    });
    expect(res.sample.image).toBe("a.jpg");
    expect(res.sample.images).toEqual(["a.jpg", "b.jpg"]);
    expect(res.sample.image_source).toBe(UNKNOWN_SOURCE);
    expect(res.warnings).toEqual(["2 images but only 1 <image> placeholders"]);
  });

  it("text-only samples are fine; an image without placeholder is a warning", () => {
    const textOnly = accept({
      id: "t",
      conversations: base().conversations.map((t) => ({ ...t, value: "x" })),
    });
    expect(textOnly.warnings).toEqual([]);
    expect(textOnly.sample).not.toHaveProperty("image");
    const noPh = accept({
      ...base(),
      conversations: [
        { from: "human", value: "q" },
        { from: "gpt", value: "a" },
      ],
    });
    expect(noPh.warnings[0]).toMatch(/no <image> placeholder/);
  });

  it("a content hash id is stable and depends on content", () => {
    const a = accept({ ...base(), id: undefined }, { missingId: "content-hash" }).sample.id;
    const b = accept({ ...base(), id: null, extra: 1 }, { missingId: "content-hash" }).sample.id;
    const c = accept({ ...base(), id: undefined, image: "other.jpg" }, { missingId: "content-hash" }).sample
      .id;
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });
});

describe("rules: each failing case names its path", () => {
  it("record must be an object", () => {
    for (const v of [null, [], "x", 3, true, undefined]) expectErrorAt(v, "", /JSON object/);
  });

  it("id", () => {
    expectErrorAt({ ...base(), id: undefined }, "id", /missing/);
    expectErrorAt({ ...base(), id: "" }, "id", /empty/);
    expectErrorAt({ ...base(), id: 1.5 }, "id", /safe integer/);
    expectErrorAt({ ...base(), id: 2 ** 60 }, "id", /safe integer/);
    expectErrorAt({ ...base(), id: { a: 1 } }, "id", /string or an integer/);
  });

  it("conversations: present, an array, non-empty, not both forms", () => {
    expectErrorAt({ id: "x" }, "conversations", /missing/);
    expectErrorAt({ id: "x", conversations: "hi" }, "conversations", /array/);
    expectErrorAt({ id: "x", conversations: [] }, "conversations", /empty/);
    expectErrorAt({ id: "x", messages: {} }, "messages", /array/);
    expectErrorAt({ ...base(), messages: [] }, "messages", /not both/);
  });

  it("turns: objects with a known speaker and a string text", () => {
    const conv = (c: unknown[]) => ({ ...base(), conversations: c });
    expectErrorAt(conv([{ from: "human", value: "<image>q" }, "a"]), "conversations[1]", /object/);
    expectErrorAt(
      conv([
        { from: "human", value: "<image>q" },
        { from: "bot", value: "a" },
      ]),
      "conversations[1].from",
      /"bot"/,
    );
    expectErrorAt(
      conv([
        { from: "human", value: "<image>q" },
        { from: "gpt", value: 3 },
      ]),
      "conversations[1].value",
      /string/,
    );
    expectErrorAt(
      conv([{ from: "human", value: "<image>q" }, { from: "gpt" }]),
      "conversations[1].value",
      /string/,
    );
    const msgs = {
      id: "m",
      messages: [
        { role: "user", content: "q" },
        { role: "assistant", content: [{ type: "text" }] },
      ],
    };
    expectErrorAt(msgs, "messages[1].content", /string/);
    expectErrorAt(
      {
        id: "m",
        messages: [
          { role: "user", content: "q" },
          { from: "gpt", content: "a" },
        ],
      },
      "messages[1].role",
    );
  });

  it("turns alternate starting with human; the first break is reported", () => {
    const t = (from: string) => ({ from, value: "v" });
    const first = errorsOf(validateSample({ id: "x", conversations: [t("gpt"), t("human")] }));
    expect(first).toEqual([
      { path: "conversations[0].from", reason: expect.stringMatching(/expected "human"/) },
    ]);
    const mid = errorsOf(
      validateSample({
        id: "x",
        conversations: [t("human"), t("gpt"), t("human"), t("human"), t("gpt"), t("gpt")],
      }),
    );
    expect(mid).toEqual([{ path: "conversations[3].from", reason: expect.stringMatching(/expected "gpt"/) }]);
    // With a leading system turn the indices stay those of the input.
    expectErrorAt(
      {
        id: "x",
        messages: [
          { role: "system", content: "s" },
          { role: "assistant", content: "a" },
        ],
      },
      "messages[1].role",
      /expected "human"/,
    );
  });

  it("the last turn must be gpt", () => {
    expectErrorAt(
      { id: "x", conversations: [{ from: "human", value: "q" }] },
      "conversations[0].from",
      /ends with a human/,
    );
  });

  it("system: only first, only once, only a string", () => {
    const s = { from: "system", value: "s" };
    const h = { from: "human", value: "q" };
    const g = { from: "gpt", value: "a" };
    expectErrorAt({ id: "x", conversations: [h, s, g] }, "conversations[1].from", /first turn/);
    expectErrorAt({ id: "x", system: "t", conversations: [s, h, g] }, "conversations[0]", /only one/);
    expectErrorAt({ id: "x", system: 5, conversations: [h, g] }, "system", /string/);
    expectErrorAt({ id: "x", conversations: [s] }, "conversations", /no human or gpt/);
  });

  it("<image> placeholders: at most one in the single-image form", () => {
    const input = {
      ...base(),
      conversations: [
        { from: "human", value: "<image> q" },
        { from: "gpt", value: "a" },
        { from: "human", value: "again <image>" },
        { from: "gpt", value: "b" },
      ],
    };
    expectErrorAt(input, "conversations[2].value", /more than one <image>/);
    expectErrorAt(
      {
        ...base(),
        conversations: [
          { from: "human", value: "<image><image>" },
          { from: "gpt", value: "a" },
        ],
      },
      "conversations[0].value",
    );
  });

  it("<image> placeholders: at most as many as images", () => {
    const input = {
      id: "x",
      messages: [
        { role: "user", content: "<image><image>" },
        { role: "assistant", content: "a" },
        { role: "user", content: "<image>" },
        { role: "assistant", content: "b" },
      ],
      images: ["1.jpg", "2.jpg"],
    };
    expectErrorAt(
      input,
      "messages[2].content",
      /3 <image> placeholders so far but the sample has only 2 images/,
    );
  });

  it("<image> placeholder needs an image reference", () => {
    expectErrorAt({ ...base(), image: undefined }, "conversations[0].value", /no image/);
    expectErrorAt({ ...base(), image: null, images: [] }, "conversations[0].value", /no image/);
    // image_url alone is enough.
    accept({ ...base(), image: undefined, image_url: "https://example.org/a.jpg" });
  });

  it("image and images", () => {
    expectErrorAt({ ...base(), image: "" }, "image", /empty/);
    expectErrorAt({ ...base(), image: 5 }, "image", /string or an array/);
    expectErrorAt({ ...base(), image: [] }, "image", /empty array/);
    expectErrorAt({ ...base(), image: ["a.jpg", 3] }, "image[1]", /non-empty string/);
    expectErrorAt({ ...base(), images: "a.jpg" }, "images", /array of strings/);
    expectErrorAt({ ...base(), images: ["a.jpg", ""] }, "images[1]", /non-empty string/);
    expectErrorAt({ ...base(), image: "z.jpg", images: ["a.jpg"] }, "image", /images\[0\]/);
    accept({ ...base(), image: "a.jpg", images: ["a.jpg"] });
  });

  it("image_url must be http(s)", () => {
    expectErrorAt({ ...base(), image_url: "ftp://x/a.jpg" }, "image_url", /http or https/);
    expectErrorAt({ ...base(), image_url: "file:///etc/passwd" }, "image_url", /http or https/);
    expectErrorAt({ ...base(), image_url: "not a url" }, "image_url", /absolute URL/);
    expectErrorAt({ ...base(), image_url: 7 }, "image_url", /string/);
    accept({ ...base(), image_url: "http://example.org/a.jpg?x=1" });
  });

  it("image_b64 must be base64 within the size limit", () => {
    expectErrorAt({ ...base(), image_b64: "abc" }, "image_b64", /multiple of 4/);
    expectErrorAt({ ...base(), image_b64: "ab!d" }, "image_b64", /not valid base64/);
    expectErrorAt({ ...base(), image_b64: "a=bc" }, "image_b64", /not valid base64/);
    expectErrorAt({ ...base(), image_b64: "" }, "image_b64", /empty/);
    expectErrorAt({ ...base(), image_b64: "data:image/png;base64,AAAA" }, "image_b64", /data: URL/);
    expectErrorAt({ ...base(), image_b64: 12 }, "image_b64", /base64 string/);
    expectErrorAt(
      { ...base(), image_b64: "AAAAAA==" },
      "image_b64",
      /decodes to 4 bytes, more than the limit of 3/,
      {
        maxImageBytes: 3,
      },
    );
    accept({ ...base(), image_b64: "AAAAAA==" }, { maxImageBytes: 4 });
    // Default limit: 20 MiB decoded. One byte over is rejected without decoding.
    expect((DEFAULT_MAX_IMAGE_BYTES + 1) % 3).toBe(0);
    const over = "A".repeat(((DEFAULT_MAX_IMAGE_BYTES + 1) / 3) * 4);
    expectErrorAt(
      { ...base(), image_b64: over },
      "image_b64",
      /decodes to 20971521 bytes, more than the limit of 20971520/,
    );
  });

  it("image_source: optional non-empty string", () => {
    expectErrorAt({ ...base(), image_source: "" }, "image_source", /empty/);
    expectErrorAt({ ...base(), image_source: 3 }, "image_source", /string/);
  });

  it("reports every independent error at once", () => {
    const errors = errorsOf(
      validateSample({ id: 1.5, conversations: [], image_url: "ftp://x", image_source: 0 }),
    );
    expect(errors.map((e) => e.path).sort()).toEqual(["conversations", "id", "image_source", "image_url"]);
  });

  it("caps the error list", () => {
    const conversations = Array.from({ length: 500 }, () => 0);
    const errors = errorsOf(validateSample({ id: "x", conversations }));
    expect(errors).toHaveLength(101);
    expect(errors[100]).toEqual({ path: "", reason: "400 more errors not listed" });
  });
});

describe("parseSampleJson", () => {
  it("parses and validates a line", () => {
    const res = parseSampleJson(JSON.stringify(base()));
    expect(res.ok).toBe(true);
    const bytes = parseSampleJson(new TextEncoder().encode(JSON.stringify(base())));
    expect(bytes.ok).toBe(true);
  });

  it("invalid JSON gives one error at path '' with the parser's reason", () => {
    let reason = "";
    try {
      JSON.parse("{bad");
    } catch (e) {
      reason = (e as Error).message;
    }
    expect(errorsOf(parseSampleJson("{bad"))).toEqual([{ path: "", reason: `invalid JSON: ${reason}` }]);
    expect(errorsOf(parseSampleJson(""))).toHaveLength(1);
    expect(errorsOf(parseSampleJson(new Uint8Array([0x7b, 0xff, 0x7d])))[0].path).toBe("");
  });

  it("valid JSON that is not a sample gives the validator's errors", () => {
    expectErrorAt(JSON.parse("[1]"), "", /JSON object/);
    expect(errorsOf(parseSampleJson('{"id":"x"}'))[0].path).toBe("conversations");
  });
});

describe("toMmssrError", () => {
  it("gives INVALID_SAMPLE, not retriable, a user error, with path: reason", () => {
    const err = toMmssrError(
      [
        { path: "conversations[3].value", reason: "must be a string" },
        { path: "", reason: "invalid JSON" },
      ],
      "in.jsonl:7",
    );
    expect(err).toBeInstanceOf(MmssrError);
    expect(err.code).toBe(ERROR_CODES.INVALID_SAMPLE);
    expect(err.retriable).toBe(false);
    expect(isUserError(err)).toBe(true);
    expect(err.message).toBe(
      "invalid sample (in.jsonl:7): conversations[3].value: must be a string; invalid JSON",
    );
  });

  it("shortens long lists", () => {
    const errors = Array.from({ length: 25 }, (_, i) => ({ path: `p${i}`, reason: "r" }));
    expect(toMmssrError(errors).message).toMatch(/p19: r; \(5 more\)$/);
  });
});

describe("property: never throws", () => {
  const check = (res: SampleValidationResult) => {
    if (res.ok) {
      expect(typeof res.sample.id).toBe("string");
      expect(Array.isArray(res.warnings)).toBe(true);
    } else {
      expect(res.errors.length).toBeGreaterThan(0);
      for (const e of res.errors) {
        expect(typeof e.path).toBe("string");
        expect(typeof e.reason).toBe("string");
      }
    }
  };

  it("on fc.anything()", () => {
    fc.assert(
      fc.property(
        fc.anything({ withNullPrototype: true, withObjectString: true, withSparseArray: true }),
        (v) => {
          check(validateSample(v));
          check(validateSample(v, { missingId: "content-hash" }));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("on sample-shaped records with random fields", () => {
    const value = fc.oneof(fc.string(), fc.constantFrom("<image>", "<image>x<image>"), fc.anything());
    const turn = fc.record(
      { from: fc.constantFrom("human", "gpt", "user", "assistant", "system", "x"), value },
      { requiredKeys: [] },
    );
    const record = fc.record(
      {
        id: fc.oneof(fc.string(), fc.integer(), fc.double(), fc.anything()),
        image: fc.oneof(fc.string(), fc.array(fc.string()), fc.anything()),
        images: fc.oneof(fc.array(fc.string()), fc.anything()),
        image_url: fc.oneof(fc.webUrl(), fc.string()),
        image_b64: fc.oneof(fc.base64String(), fc.string()),
        image_source: fc.oneof(fc.string(), fc.anything()),
        system: fc.anything(),
        conversations: fc.oneof(fc.array(turn), fc.anything()),
        messages: fc.array(fc.record({ role: fc.string(), content: value })),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(record, (v) => check(validateSample(v))),
      { numRuns: 3000 },
    );
  });

  it("parseSampleJson on arbitrary strings and JSON", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.uint8Array()), (s) => check(parseSampleJson(s))),
      { numRuns: 1000 },
    );
  });

  it("survives a hostile Proxy", () => {
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error("boom");
        },
        has() {
          throw new Error("boom");
        },
        getOwnPropertyDescriptor() {
          throw new Error("boom");
        },
      },
    );
    expect(errorsOf(validateSample(hostile))[0].reason).toMatch(/validator failed.*boom/);
  });
});
