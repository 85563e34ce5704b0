/**
 * Generated volume for the seed corpus of mmssr-lite: template conversations that cover every
 * interaction style and every capability's vocabulary, which the few hundred real records we
 * may use (licences) cannot. They are plainly synthetic (ids "synth-...", image_source
 * "synthetic-<topic>"), seeded, and labelled by the same teacher as the real records.
 */
import type { Sample } from "../src/domain/sample.js";
import { createRandom, type Random } from "../src/util/random.js";

interface Topic {
  name: string;
  source: string;
  /** a question about the image; {o} = an object */
  questions: string[];
  /** a short answer; {o} */
  shortAnswers: string[];
  /** sentences to build longer answers */
  sentences: string[];
}

const OBJECTS = [
  "dog",
  "cat",
  "car",
  "bus",
  "woman",
  "man",
  "child",
  "bicycle",
  "tree",
  "boat",
  "horse",
  "table",
  "cup",
  "sign",
  "bird",
  "train",
  "building",
  "laptop",
  "pizza",
  "umbrella",
];
const COLOURS = ["red", "blue", "green", "yellow", "white", "black", "orange", "brown", "purple", "gray"];
const WORDS = ["STOP", "EXIT", "OPEN", "SALE", "CAFE", "PARKING", "HOTEL", "BANK", "MAIN ST", "NO ENTRY"];

const TOPICS: Topic[] = [
  {
    name: "ocr",
    source: "synthetic-ocr",
    questions: [
      "What is written on the {o}?",
      "What text appears on the sign?",
      "Read the title of the document.",
      "What is the phone number on the receipt?",
      "What does the label on the bottle say?",
    ],
    shortAnswers: ["{w}", "{w}", 'The text reads "{w}".', "555-0199", "{w}"],
    sentences: [
      'The sign in the image reads "{w}" in bold letters.',
      "The document title is printed at the top of the page.",
      "The receipt lists the total amount and the store name.",
    ],
  },
  {
    name: "data",
    source: "synthetic-chart",
    questions: [
      "According to the bar chart, which year had the highest sales?",
      "What is the value for 2019 in the table?",
      "Which category has the largest share in the pie chart?",
      "What trend does the line graph show?",
    ],
    shortAnswers: ["2021", "42", "Category B", "An upward trend"],
    sentences: [
      "The bar chart shows sales growing each year, with the highest value in 2021.",
      "The table lists values per year; the 2019 row shows 42 units.",
      "The pie chart is divided into five categories, and category B takes about forty percent.",
    ],
  },
  {
    name: "stem",
    source: "synthetic-science",
    questions: [
      "What is the area of the triangle shown in the diagram?",
      "Which force keeps the planet in orbit?",
      "What is the chemical formula of the compound?",
      "Solve for x in the equation shown: 3x + 5 = 20.",
    ],
    shortAnswers: ["12 square units", "Gravity", "H2O", "x = 5"],
    sentences: [
      "The base is 6 units and the height is 4 units, so the area is 6 * 4 / 2 = 12.",
      "Gravity provides the centripetal force that keeps the planet in orbit.",
      "Subtracting 5 from both sides gives 3x = 15, so x = 5.",
    ],
  },
  {
    name: "spatial",
    source: "synthetic-spatial",
    questions: [
      "What is to the left of the {o}?",
      "Where is the {o} located in the image?",
      "How many {o}s are there in the image?",
      "Is the {o} above or below the table?",
    ],
    shortAnswers: ["A {c} car", "In the bottom right corner", "3", "Below"],
    sentences: [
      "The {o} is on the left side of the image, next to a {c} car.",
      "There are three {o}s, two in the front and one behind them.",
      "The {o} sits below the table, near the center of the frame.",
    ],
  },
  {
    name: "attribute",
    source: "synthetic-attribute",
    questions: [
      "What color is the {o}?",
      "What material is the {o} made of?",
      "What shape is the {o}?",
      "How big is the {o} compared to the door?",
    ],
    shortAnswers: ["{c}", "Wood", "Round", "Small"],
    sentences: [
      "The {o} is {c} with a glossy surface.",
      "It appears to be made of wood with a smooth finish.",
      "The {o} is small and round.",
    ],
  },
  {
    name: "activity",
    source: "synthetic-activity",
    questions: [
      "What is the {o} doing?",
      "What activity are the people engaged in?",
      "What sport is being played?",
    ],
    shortAnswers: ["Running", "Playing soccer", "Tennis"],
    sentences: [
      "The {o} is running across the field while others watch.",
      "A group of people is playing soccer in a park.",
      "Two players are playing tennis on a clay court.",
    ],
  },
  {
    name: "humanities",
    source: "synthetic-art",
    questions: [
      "Which art movement does this painting belong to?",
      "What historical period does this building come from?",
      "What cultural festival is shown?",
    ],
    shortAnswers: ["Impressionism", "The Renaissance", "Lunar New Year"],
    sentences: [
      "The painting uses loose brushstrokes and light colours typical of Impressionism.",
      "The facade shows columns and arches from the Renaissance period.",
      "Red lanterns and dragon dances suggest a Lunar New Year celebration.",
    ],
  },
  {
    name: "finegrained",
    source: "synthetic-species",
    questions: [
      "What breed is the dog?",
      "What species of bird is this?",
      "What is the brand of the car?",
      "Which landmark is shown?",
    ],
    shortAnswers: ["Golden retriever", "Blue jay", "Toyota", "The Eiffel Tower"],
    sentences: [
      "The dog is a golden retriever, recognisable by its long golden coat.",
      "The bird is a blue jay with a crest and blue wings.",
      "The landmark is the Eiffel Tower in Paris.",
    ],
  },
  {
    name: "scene",
    source: "synthetic-scene",
    questions: [
      "Where was this photo taken?",
      "What kind of event is taking place?",
      "What is the setting of the image?",
    ],
    shortAnswers: ["At a beach", "A wedding", "A busy city street"],
    sentences: [
      "The photo was taken at a beach on a sunny afternoon.",
      "People in formal clothes gather around a cake, suggesting a wedding.",
      "The scene is a busy city street with shops and traffic.",
    ],
  },
  {
    name: "causal",
    source: "synthetic-causal",
    questions: [
      "Why is the street wet?",
      "What might happen if the {o} keeps moving forward?",
      "What caused the traffic jam?",
    ],
    shortAnswers: ["Because it rained", "It may fall", "An accident"],
    sentences: [
      "The street is wet because it rained recently, as shown by the puddles.",
      "If the {o} keeps moving forward, it might fall off the edge, because the path ends.",
      "An accident ahead caused the traffic jam, as a result the cars are stopped.",
    ],
  },
  {
    name: "logical",
    source: "synthetic-puzzle",
    questions: [
      "Which shape comes next in the sequence?",
      "If all the red blocks are heavy and this block is red, what can we conclude?",
      "Which option completes the pattern?",
    ],
    shortAnswers: ["The triangle", "It is heavy", "Option C"],
    sentences: [
      "The sequence alternates circle and square, so the next shape must be a triangle by elimination.",
      "Since every red block is heavy and this block is red, we can deduce that it is heavy.",
    ],
  },
  {
    name: "language",
    source: "synthetic-story",
    questions: [
      "Write a short story inspired by this image.",
      "Write a poem about the scene.",
      "Compose a caption for a travel blog.",
    ],
    shortAnswers: ["A quiet morning by the lake", "Waves and light", "Sunset over the harbor"],
    sentences: [
      "On a quiet morning, the old fisherman pushed his boat into the misty lake.",
      "The water was calm, and the only sound was the call of a distant bird.",
      "He smiled, remembering the summers he had spent here as a boy.",
      "By noon the mist had lifted, revealing the mountains beyond.",
    ],
  },
];

const pick = <T>(rng: Random, xs: readonly T[]): T => xs[rng.int(xs.length)];

function fill(rng: Random, template: string): string {
  return template
    .replaceAll("{o}", pick(rng, OBJECTS))
    .replaceAll("{c}", pick(rng, COLOURS))
    .replaceAll("{w}", pick(rng, WORDS));
}

function sentences(rng: Random, topic: Topic, count: number): string {
  const out: string[] = [];
  for (let k = 0; k < count; k++) out.push(fill(rng, pick(rng, topic.sentences)));
  return out.join(" ");
}

type Form = (rng: Random, topic: Topic) => [string, string];

/** One template per interaction style, plus plain question/answer. */
const FORMS: Form[] = [
  // multi-choice
  (rng, t) => {
    const answer = fill(rng, pick(rng, t.shortAnswers));
    const letters = ["A", "B", "C", "D"];
    const k = rng.int(4);
    const options = letters.map(
      (l, i) =>
        `${l}. ${i === k ? answer : fill(rng, pick(rng, TOPICS[rng.int(TOPICS.length)].shortAnswers))}`,
    );
    const q = `${fill(rng, pick(rng, t.questions))}\n${options.join("\n")}\nAnswer with the option's letter from the given choices directly.`;
    return [q, letters[k]];
  },
  // coordinate
  (rng) => {
    const box = Array.from({ length: 4 }, () => (Math.round(rng.next() * 100) / 100).toFixed(2));
    return [
      `Please provide the bounding box coordinate of the region this sentence describes: the ${pick(rng, COLOURS)} ${pick(rng, OBJECTS)}.`,
      `[${box.join(", ")}]`,
    ];
  },
  // yes/no
  (rng) => [
    `Is there a ${pick(rng, OBJECTS)} in the image? ${rng.next() < 0.5 ? "Please answer yes or no." : ""}`.trim(),
    rng.next() < 0.5 ? "Yes" : "No",
  ],
  // word/short-phrase
  (rng, t) => [fill(rng, pick(rng, t.questions)), fill(rng, pick(rng, t.shortAnswers))],
  // short description
  (rng, t) => ["Briefly describe the image.", sentences(rng, t, 1)],
  // detailed description
  (rng, t) => ["Describe the image in detail.", sentences(rng, t, 4 + rng.int(3))],
  // comparison
  (rng, t) => [
    `What is the difference between the ${pick(rng, OBJECTS)} and the ${pick(rng, OBJECTS)}?`,
    `The first one is ${pick(rng, COLOURS)} and larger than the second, while the second is ${pick(rng, COLOURS)}. Both are near the center. ${sentences(rng, t, 1)}`,
  ],
  // chain-of-thought
  (rng, t) => [
    `${fill(rng, pick(rng, t.questions))} Let's think step by step.`,
    `First, ${sentences(rng, t, 1)} Then, we look at the remaining details. Therefore, the answer is ${fill(rng, pick(rng, t.shortAnswers))}.`,
  ],
  // specified style
  (rng, t) => [
    `${fill(rng, pick(rng, t.questions))} Respond in JSON format with the key "answer".`,
    `{"answer": "${fill(rng, pick(rng, t.shortAnswers)).replaceAll('"', "'")}"}`,
  ],
  // in-context: examples in the question
  (rng, t) => [
    `Here are examples. Q: What color is the sky? A: Blue. Q: What color is grass? A: Green. Follow the same format. Q: ${fill(rng, pick(rng, t.questions))} A:`,
    fill(rng, pick(rng, t.shortAnswers)),
  ],
];

/** `n` synthetic samples, deterministic for a seed. */
export function syntheticSamples(n: number, seed: number): Sample[] {
  const rng = createRandom(seed);
  const out: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const topic = pick(rng, TOPICS);
    const turns = rng.next() < 0.15 ? 2 : 1;
    const conversations: Sample["conversations"] = [];
    for (let t = 0; t < turns; t++) {
      const [q, a] = pick(rng, FORMS)(rng, topic);
      conversations.push({ from: "human", value: t === 0 ? `<image>\n${q}` : q }, { from: "gpt", value: a });
    }
    out.push({
      id: `synth-${seed}-${i}`,
      image: `synthetic/${topic.name}-${i}.jpg`,
      image_source: topic.source,
      conversations,
    });
  }
  return out;
}
