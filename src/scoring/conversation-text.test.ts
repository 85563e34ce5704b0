import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Sample, type Turn, validateSample } from "../domain/sample.js";
import { CAPABILITIES, STYLES } from "../domain/taxonomy.js";
import {
  CAPABILITY_PROMPT,
  CAPABILITY_PROMPTS,
  capabilityQueryText,
  isHintTurn,
  layoutConversation,
  layoutTurns,
  parseCapabilityAnswer,
  parseStyleAnswer,
  removeImagePlaceholders,
  STYLE_PROMPT,
  SYSTEM_PROMPT,
  stripQuestionChars,
  styleQueryText,
} from "./conversation-text.js";

/** human, gpt, human, gpt, ... from a flat list of texts. */
function turns(...texts: string[]): Turn[] {
  return texts.map((value, i) => ({ from: i % 2 === 0 ? "human" : "gpt", value }));
}

function sample(...texts: string[]): Sample {
  return { id: "t", image: "x.jpg", image_source: "unknown", conversations: turns(...texts) };
}

describe("stripQuestionChars (Python str.strip('Question: '))", () => {
  // Expected values checked with CPython 3: s.strip('Question: ').
  it.each([
    ["what is it", "wha"],
    ["Question: What is it", "Wha"],
    ["one of these?", "f these?"],
    ["Is this a question", "Is this a q"],
    ["  spaces around  ", "paces around"],
    ["What is the sign?", "What is the sign?"],
    ["Hint: count the items", "Hint: count the item"],
    ["QQQ", ""],
    ["Question: ", ""],
    ["\nWhat is shown\n", "\nWhat is shown\n"],
    ["Describe the scene", "Describe the sc"],
    ["Who is in the photo? Answer: question", "Who is in the photo? Answer: q"],
    ["", ""],
  ])("%j -> %j", (input, expected) => {
    expect(stripQuestionChars(input)).toBe(expected);
  });

  it("equals a character-class reference on arbitrary strings", () => {
    const ref = (s: string) => s.replace(/^[Question: ]+/, "").replace(/[Question: ]+$/, "");
    const alphabet = fc.constantFrom(..."Question: Wha?\n<>qQ.xé");
    fc.assert(
      fc.property(fc.string({ unit: alphabet, maxLength: 30 }), (s) => {
        expect(stripQuestionChars(s)).toBe(ref(s));
      }),
    );
    fc.assert(fc.property(fc.string(), (s) => stripQuestionChars(s) === ref(s)));
  });
});

describe("removeImagePlaceholders", () => {
  it("removes <image>\\n first, then any other <image>; a newline before it stays", () => {
    expect(removeImagePlaceholders("<image>\nWhat is it?")).toBe("What is it?");
    expect(removeImagePlaceholders("What is this?\n<image>")).toBe("What is this?\n");
    expect(removeImagePlaceholders("<image>Who are they?")).toBe("Who are they?");
    expect(removeImagePlaceholders("a <image> b <image>\nc")).toBe("a  b c");
    expect(removeImagePlaceholders("no placeholder")).toBe("no placeholder");
  });
});

describe("layoutConversation: golden texts", () => {
  it("placeholder before the text", () => {
    const out = layoutConversation(sample("<image>\nWhat is in the photo?", "A cat on a sofa."));
    expect(out.text).toBe("Question: What is in the photo? Answer: A cat on a sofa.");
    expect(out.questions).toEqual(["What is in the photo?"]);
    expect(out.answers).toEqual(["A cat on a sofa."]);
  });

  it("placeholder after the text: the newline in front of it stays", () => {
    const out = layoutConversation(sample("What is this?\n<image>", "A dog."));
    expect(out.text).toBe("Question: What is this?\n Answer: A dog.");
    expect(out.questions).toEqual(["What is this?\n"]);
  });

  it("placeholder glued to the text (mllm_demo form)", () => {
    const out = layoutConversation(sample("<image>Who are they?", "Two players."));
    expect(out.text).toBe("Question: Who are they? Answer: Two players.");
  });

  it("the strip quirk trims a turn that ends in letters of the set; the questions list does not", () => {
    const out = layoutConversation(sample("<image>\nwhat is it", "a sign"));
    // Strip on the raw turn: the start is '<' (kept), the end "t is it" is in the set.
    expect(out.text).toBe("Question: wha Answer: a sign");
    expect(out.questions).toEqual(["what is it"]);
    expect(out.answers).toEqual(["a sign"]);
  });

  it("the quirk removes a leading 'Question: ' and more", () => {
    const out = layoutConversation(sample("Question: one of these?", "B"));
    // "Question: one " and the "o" of "of" are all in the set.
    expect(out.text).toBe("Question: f these? Answer: B");
  });

  it("the strip runs before the placeholder is removed", () => {
    // Raw turn ends in '>' so its end is kept; after removal the text ends in "describe the scene".
    const out = layoutConversation(sample("Describe the scene <image>", "A beach."));
    expect(out.text).toBe("Question: Describe the scene  Answer: A beach.");
    // Without a placeholder the end is trimmed.
    expect(layoutConversation(sample("Describe the scene", "A beach.")).text).toBe(
      "Question: Describe the sc Answer: A beach.",
    );
  });

  it("a Hint: turn is kept as is, without prefix and without strip", () => {
    const q = "Hint: The map shows the colonies.\nQuestion: Which colony is highlighted? Count the states";
    const out = layoutConversation(sample(q, "B"));
    expect(out.text).toBe(`${q} Answer: B`);
  });

  it("a Hint: turn after <image>\\n is kept as is, then the placeholder goes", () => {
    const out = layoutConversation(sample("<image>\nHint: read the label\nWhich is it", "A"));
    expect(out.text).toBe("Hint: read the label\nWhich is it Answer: A");
    expect(isHintTurn("<image>\nHint: x")).toBe(true);
    expect(isHintTurn("<image>Hint: x")).toBe(false);
    expect(isHintTurn(" Hint: x")).toBe(false);
  });

  it("multi-turn: one line per pair, joined with \\n; gpt texts untouched", () => {
    const out = layoutConversation(
      sample(
        "<image>\nWhat color is the truck?",
        "The truck is white.",
        "Is the man sitting or standing?",
        "Sitting.\n\nHe is on the boxes. ",
        "Hint: look left",
        "A car",
      ),
    );
    expect(out.text).toBe(
      [
        "Question: What color is the truck? Answer: The truck is white.",
        "Question: Is the man sitting or standing? Answer: Sitting.\n\nHe is on the boxes. ",
        "Hint: look left Answer: A car",
      ].join("\n"),
    );
    expect(out.questions).toEqual([
      "What color is the truck?",
      "Is the man sitting or standing?",
      "Hint: look left",
    ]);
    expect(out.answers).toEqual(["The truck is white.", "Sitting.\n\nHe is on the boxes. ", "A car"]);
  });

  it("a placeholder in a later turn (Visual-CoT form: the second human turn is only <image>)", () => {
    const out = layoutTurns(
      turns("<image>\nWhere is the cat?", "[0.1, 0.2, 0.5, 0.6]", "<image>", "On the mat."),
    );
    expect(out.text).toBe(
      "Question: Where is the cat? Answer: [0.1, 0.2, 0.5, 0.6]\nQuestion:  Answer: On the mat.",
    );
    expect(out.questions).toEqual(["Where is the cat?", ""]);
  });

  it("a trailing unanswered human turn gets an empty answer (never throws)", () => {
    const out = layoutTurns(turns("What?", "This.", "And?"));
    expect(out.text).toBe("Question: What? Answer: This.\nQuestion: And? Answer: ");
    expect(out.answers).toEqual(["This.", ""]);
    expect(layoutTurns([])).toEqual({ text: "", questions: [], answers: [] });
  });

  it("lays out every record of the fixtures", () => {
    const dir = fileURLToPath(new URL("../../test/fixtures/samples/", import.meta.url));
    for (const file of ["llava_instruct_20.json", "mllm_demo.json"]) {
      const records = JSON.parse(readFileSync(dir + file, "utf8")) as unknown[];
      for (const rec of records) {
        const res = validateSample(rec, { missingId: "content-hash" });
        expect(res.ok).toBe(true);
        if (!res.ok) continue;
        const out = layoutConversation(res.sample);
        expect(out.text).not.toContain("<image>");
        expect(out.questions.length).toBe(res.sample.conversations.length / 2);
        expect(out.text.split("\n").filter((l) => l.startsWith("Question: ")).length).toBeGreaterThan(0);
      }
    }
  });
});

describe("prompts", () => {
  it("system, capability and style queries are the released strings", () => {
    expect(SYSTEM_PROMPT).toBe("You are a helpful assistant.");
    expect(CAPABILITY_PROMPT("optical character recognition")).toBe(
      "On a scale of 0 to 5, how do you rate the helpfulness of the VQA instance in training a Multimodal Large Language Model for optical character recognition?",
    );
    expect(CAPABILITY_PROMPTS).toHaveLength(14);
    expect(CAPABILITY_PROMPTS[0]).toBe(CAPABILITY_PROMPT("object spatial understanding"));
    CAPABILITIES.forEach((c, i) => {
      expect(CAPABILITY_PROMPTS[i].endsWith(`for ${c.name}?`)).toBe(true);
    });
    expect(STYLE_PROMPT).toBe(
      "Interaction style candidates: [multi-choice, coordinate, yes/no, word/short-phrase, short description, detailed description, comparison, chain-of-thought (step-by-step), specified style]\nStyles: ",
    );
    expect(capabilityQueryText("Question: a Answer: b", "humanities")).toBe(
      `Question: a Answer: b\n${CAPABILITY_PROMPT("humanities")}`,
    );
    expect(styleQueryText("Question: a Answer: b")).toBe(`Question: a Answer: b\n${STYLE_PROMPT}`);
  });
});

describe("parseCapabilityAnswer", () => {
  it.each([
    ["3", 3],
    [" 4\n", 4],
    ["0", 0],
    ["5", 5],
    ["+2", 2],
    ["-0", 0],
    ["05", 5],
  ])("%j -> %j", (input, expected) => {
    expect(parseCapabilityAnswer(input)).toBe(expected);
  });

  it.each(["", " ", "3.5", "3.0", "three", "Score: 3", "3/5", "6", "-1", "1 2", "١"])(
    "%j -> null",
    (input) => {
      expect(parseCapabilityAnswer(input)).toBeNull();
    },
  );
});

describe("parseStyleAnswer", () => {
  it("splits on commas, trims, keeps known names in answer order, de-duplicates", () => {
    expect(parseStyleAnswer("yes/no, word/short-phrase")).toEqual(["yes/no", "word/short-phrase"]);
    expect(parseStyleAnswer(" detailed description ,multi-choice,detailed description")).toEqual([
      "detailed description",
      "multi-choice",
    ]);
    expect(parseStyleAnswer("chain-of-thought (step-by-step), poem, Yes/No, ")).toEqual([
      "chain-of-thought (step-by-step)",
    ]);
    expect(parseStyleAnswer("")).toEqual([]);
    expect(parseStyleAnswer(STYLES.join(","))).toEqual([...STYLES]);
  });

  it("never throws and returns only known names", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constantFrom(...STYLES), fc.string()), { maxLength: 8 }), (parts) => {
        const out = parseStyleAnswer(parts.join(", "));
        for (const s of out) expect(STYLES).toContain(s);
        expect(new Set(out).size).toBe(out.length);
      }),
    );
  });
});
