/**
 * Generated questions of the kinds that public VQA benchmarks ask about charts and tables,
 * documents and science diagrams, in the varied wording those benchmarks use. The real
 * weak-labelled records (models/weak-labelled-corpus.ts) have documents and natural photos in
 * plenty but few charts and no diagram questions besides ScienceQA; these fill that gap. Every one
 * is plainly synthetic (id "synth-task-...", image_source "unknown"), seeded, and carries the group
 * its template was written for, so the build can give it the group's weak prior like a real record.
 */
import type { Sample } from "../src/domain/sample.js";
import { createRandom, type Random } from "../src/util/random.js";
import type { WeakGroup } from "./weak-labelled-corpus.js";

export interface SyntheticTaskQuestion {
  sample: Sample;
  group: WeakGroup;
}

const YEARS = [
  "2008",
  "2010",
  "2012",
  "2014",
  "2015",
  "2016",
  "2017",
  "2018",
  "2019",
  "2020",
  "2021",
  "2022",
];
const COUNTRIES = [
  "Germany",
  "Japan",
  "Brazil",
  "India",
  "Canada",
  "France",
  "Mexico",
  "Kenya",
  "Spain",
  "Italy",
  "Norway",
  "Chile",
];
const METRICS = [
  "revenue",
  "sales",
  "unemployment rate",
  "market share",
  "GDP growth",
  "number of users",
  "population",
  "average price",
  "share of respondents",
  "export value",
  "internet penetration",
  "birth rate",
  "CO2 emissions",
  "net income",
];
const SERIES = [
  "Male",
  "Female",
  "Urban",
  "Rural",
  "Online",
  "In-store",
  "Domestic",
  "International",
  "2019",
  "2020",
];
const COLOURS = ["blue", "red", "green", "orange", "grey", "dark blue", "light green", "purple"];
const CHART = [
  "chart",
  "bar chart",
  "graph",
  "line graph",
  "pie chart",
  "bar graph",
  "plot",
  "stacked bar chart",
];
const TABLE = ["table", "data table", "spreadsheet"];

const CHART_Q: readonly ((r: Random) => string)[] = [
  (r) => `What is the value of ${pick(r, SERIES)} in ${pick(r, YEARS)}?`,
  (r) =>
    `Which ${pick(r, ["country", "region", "category", "segment", "brand"])} has the highest ${pick(r, METRICS)}?`,
  (r) => `Which ${pick(r, ["country", "region", "category", "year"])} had the lowest ${pick(r, METRICS)}?`,
  (r) =>
    `What is the difference between the highest and the lowest ${pick(r, ["bar", "value", "point", "percentage"])}?`,
  (r) =>
    `How many ${pick(r, ["bars", "colors", "categories", "lines", "data points", "segments"])} are there in the ${pick(r, CHART)}?`,
  (r) =>
    `What percentage of ${pick(r, ["respondents", "households", "adults", "companies", "students"])} said ${pick(r, ["yes", "no", "they agree", "very likely"])}?`,
  (r) => `In which year did the ${pick(r, METRICS)} reach its peak?`,
  (r) => `Is the value of ${pick(r, COUNTRIES)} greater than that of ${pick(r, COUNTRIES)}?`,
  (r) => `What is the average of the ${pick(r, SERIES)} values?`,
  (r) => `What does the ${pick(r, COLOURS)} ${pick(r, ["line", "bar", "segment", "area"])} represent?`,
  (r) => `What is the sum of ${pick(r, COUNTRIES)} and ${pick(r, COUNTRIES)}?`,
  (r) => `What was the ${pick(r, METRICS)} of ${pick(r, COUNTRIES)} in ${pick(r, YEARS)}?`,
  (r) => `What is the ratio of ${pick(r, SERIES)} to ${pick(r, SERIES)}?`,
  (r) => `How much did the ${pick(r, METRICS)} increase from ${pick(r, YEARS)} to ${pick(r, YEARS)}?`,
  (r) => `What is the median value of the ${pick(r, CHART)}?`,
  (r) => `Which two ${pick(r, ["years", "countries", "categories"])} have the same value?`,
  (r) => `What is the title of the ${pick(r, CHART)}?`,
  (r) => `What is the label of the ${pick(r, ["x-axis", "y-axis", "vertical axis", "horizontal axis"])}?`,
  (r) => `According to the ${pick(r, TABLE)}, what is the ${pick(r, METRICS)} for ${pick(r, COUNTRIES)}?`,
  (r) => `How many ${pick(r, ["rows", "columns", "entries"])} does the ${pick(r, TABLE)} have?`,
  (r) => `What is the maximum ${pick(r, METRICS)} shown in the ${pick(r, CHART)}?`,
  (r) => `Does the ${pick(r, METRICS)} of ${pick(r, COUNTRIES)} decrease over the years?`,
];

const DOC_KIND = [
  "letter",
  "memo",
  "invoice",
  "receipt",
  "form",
  "report",
  "document",
  "fax",
  "page",
  "brochure",
  "agenda",
  "bill",
  "certificate",
];
const DOC_FIELD = [
  "date",
  "title",
  "subject",
  "total amount",
  "invoice number",
  "phone number",
  "address",
  "zip code",
  "fax number",
  "page number",
  "heading",
  "name of the company",
  "reference number",
  "due date",
  "grand total",
  "tax amount",
  "signature",
  "account number",
];
const DOC_Q: readonly ((r: Random) => string)[] = [
  (r) => `What is the ${pick(r, DOC_FIELD)} mentioned in the ${pick(r, DOC_KIND)}?`,
  (r) =>
    `What is the ${pick(r, DOC_FIELD)} given at the ${pick(r, ["top", "bottom", "header", "footer"])} of the ${pick(r, DOC_KIND)}?`,
  (r) =>
    `Who is the ${pick(r, ["sender", "recipient", "author", "addressee"])} of this ${pick(r, DOC_KIND)}?`,
  (r) => `To whom is the ${pick(r, DOC_KIND)} addressed?`,
  (r) => `Which company's name is printed in the ${pick(r, ["header", "letterhead", "logo"])}?`,
  (r) => `What is written in the ${pick(r, ["first", "second", "last"])} line of the ${pick(r, DOC_KIND)}?`,
  (r) => `What is the ${pick(r, DOC_FIELD)}?`,
  (r) => `Who signed the ${pick(r, DOC_KIND)}?`,
  (r) =>
    `What is the name of the ${pick(r, ["organization", "department", "university", "hospital", "committee", "store"])}?`,
  (r) =>
    `When was the ${pick(r, DOC_KIND)} ${pick(r, ["sent", "issued", "signed", "received", "approved"])}?`,
  (r) =>
    `What is the amount ${pick(r, ["due", "paid", "billed", "charged"])} for ${pick(r, ["services", "items", "the order", "shipping"])}?`,
  (r) => `What does the ${pick(r, ["stamp", "seal", "footnote", "caption"])} say?`,
  (r) =>
    `How many ${pick(r, ["items", "pages", "attendees", "sections"])} are listed in the ${pick(r, DOC_KIND)}?`,
];

const STAGES = ["egg", "larva", "pupa", "adult", "seedling", "tadpole", "nymph"];
const PARTS = [
  "crust",
  "mantle",
  "outer core",
  "inner core",
  "stem",
  "root",
  "leaf",
  "petal",
  "nucleus",
  "cell wall",
  "stamen",
];
const SCIENCE_Q: readonly ((r: Random) => string)[] = [
  (r) => `Which label shows the ${pick(r, PARTS)}?`,
  (r) => `What stage comes after the ${pick(r, STAGES)} stage in the life cycle?`,
  (r) =>
    `Which of these organisms is a ${pick(r, ["producer", "consumer", "decomposer", "predator", "herbivore"])} in the food web?`,
  (r) => `What does label ${pick(r, ["A", "B", "C", "D", "E", "F"])} represent in the diagram?`,
  (r) =>
    `In the diagram, what is the ${pick(r, PARTS)} of the ${pick(r, ["earth", "plant", "flower", "cell"])} called?`,
  (r) => `How many stages are shown in the ${pick(r, ["life cycle", "water cycle", "rock cycle"])}?`,
  (r) => `Which phase of the moon is shown at ${pick(r, ["A", "B", "C", "D"])}?`,
  (r) =>
    `What would happen to the ${pick(r, ["frogs", "hawks", "grasshoppers", "rabbits"])} if the ${pick(r, ["grass", "snakes", "insects"])} died out?`,
  (r) =>
    `Which part of the ${pick(r, ["circuit", "magnet", "lever", "pulley"])} is labeled ${pick(r, ["X", "Y", "Z"])}?`,
  (r) => `What process is shown by the arrows in the ${pick(r, ["water cycle", "carbon cycle", "diagram"])}?`,
  (r) =>
    `Which layer of the ${pick(r, ["atmosphere", "soil", "earth"])} is the ${pick(r, ["thickest", "hottest", "outermost"])}?`,
  (r) => `Which magnet pairs will ${pick(r, ["attract", "repel"])} each other?`,
];

const THINGS = [
  "bus",
  "dog",
  "woman",
  "man",
  "car",
  "horse",
  "umbrella",
  "kite",
  "train",
  "boat",
  "cat",
  "bench",
  "child",
  "bicycle",
];
const PHOTO_Q: readonly ((r: Random) => string)[] = [
  (r) => `What color is the ${pick(r, THINGS)}?`,
  (r) => `Where is the ${pick(r, THINGS)}?`,
  (r) => `What is the ${pick(r, ["man", "woman", "child", "dog", "person"])} doing?`,
  (r) => `How many ${pick(r, THINGS)}s are in the picture?`,
  (r) => `What is the weather like in the ${pick(r, ["photo", "image", "scene"])}?`,
  (r) => `What is on the ${pick(r, ["table", "plate", "shelf", "ground"])}?`,
  (r) => `Which animal is shown in the ${pick(r, ["photo", "image"])}?`,
  (r) => `What is the ${pick(r, THINGS)} next to?`,
  (r) => `Why is the ${pick(r, ["man", "woman", "child"])} holding an umbrella?`,
  () => "What room is this?",
];
const PHOTO_OPTIONS = [
  "red",
  "blue",
  "white",
  "on the street",
  "in the park",
  "riding a bike",
  "eating",
  "two",
  "three",
  "sunny",
  "rainy",
  "a dog",
  "a cat",
  "the kitchen",
  "the bench",
];

/** Options one per line ("A. x"), or on the question's line ("A. x B. y", "(A) x (B) y"). */
function optionList(r: Random, n: number, pool: readonly string[]): string {
  const form = r.int(3);
  const items = OPTION_LETTERS.slice(0, n).map((l) =>
    form === 2 ? `(${l}) ${pick(r, pool)}` : `${l}. ${pick(r, pool)}`,
  );
  return form === 0 ? items.join("\n") : items.join(" ");
}

function withOptions(r: Random, question: string, pool: readonly string[]): { q: string; a: string } {
  const n = 2 + r.int(3);
  const options = optionList(r, n, pool);
  const suffix = pick(r, ANSWER_SUFFIXES);
  return { q: `${question}\n${options}${suffix === "" ? "" : `\n${suffix}`}`, a: OPTION_LETTERS[r.int(n)] };
}

const pick = <T>(r: Random, xs: readonly T[]): T => xs[r.int(xs.length)];

function chartAnswer(r: Random): string {
  const k = r.int(4);
  if (k === 0) return `${(r.next() * 90).toFixed(1)}%`;
  if (k === 1) return pick(r, YEARS);
  if (k === 2) return pick(r, COUNTRIES);
  return String(Math.round(r.next() * 500));
}

function docAnswer(r: Random): string {
  const k = r.int(4);
  if (k === 0) return `${pick(r, ["March", "June", "October", "May"])} ${1 + r.int(28)}, ${1960 + r.int(40)}`;
  if (k === 1) return `$${(r.next() * 9000).toFixed(2)}`;
  if (k === 2)
    return pick(r, ["R. J. Reynolds", "Dr. Alan Smith", "Brown & Williamson", "Mary Jones", "Lorillard"]);
  return String(10000 + r.int(89999));
}

const OPTION_LETTERS = ["A", "B", "C", "D"];
const CONTEXT_SENTENCES = [
  "Below is a food web from a forest ecosystem.",
  "A food web models how the matter eaten by organisms moves through an ecosystem.",
  "The diagram shows the layers of the earth.",
  "Scientists use a model to show how energy moves between objects.",
  "The passage below describes an experiment.",
  "Magnets can pull or push on other magnets without touching them.",
  "This organism is a plant. It has green leaves.",
  "The temperature of each object was measured every hour.",
  "A student placed two identical cups of water in the sun and in the shade.",
  "The arrows show the direction of the force.",
  "Select the better answer.",
  "Read the text about the life cycle of a frog.",
  "The map shows the states of the United States.",
  "Look at the picture of the rock.",
];
const ANSWER_SUFFIXES = [
  "Answer with the option's letter from the given choices directly.",
  "",
  "Choose the correct option.",
];

function scienceSample(r: Random, question: string): { q: string; a: string } {
  if (r.next() < 0.6) {
    const n = 2 + r.int(3);
    const options = optionList(r, n, [...STAGES, ...PARTS]);
    const context =
      r.next() < 0.5
        ? `Context: ${Array.from({ length: 1 + r.int(4) }, () => pick(r, CONTEXT_SENTENCES)).join(" ")}\n`
        : "";
    const suffix = pick(r, ANSWER_SUFFIXES);
    const letter = OPTION_LETTERS[r.int(n)];
    return { q: `${context}${question}\n${options}${suffix === "" ? "" : `\n${suffix}`}`, a: letter };
  }
  return { q: question, a: pick(r, [...STAGES, ...PARTS]) };
}

/**
 * `n` questions, a quarter each of charts/tables, documents, science diagrams and natural photos
 * (the photos and a share of the others as multiple choice, so that the options form is not
 * peculiar to science); same seed, same samples.
 */
export function syntheticTaskQuestions(n: number, seed: number): SyntheticTaskQuestion[] {
  const r = createRandom(seed);
  const out: SyntheticTaskQuestion[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 4;
    let q: string;
    let a: string;
    let group: WeakGroup;
    if (kind === 0) {
      q = pick(r, CHART_Q)(r);
      a = /^(?:Is|Does)\b/.test(q) ? pick(r, ["Yes", "No"]) : chartAnswer(r);
      if (r.next() < 0.25) ({ q, a } = withOptions(r, q, [...YEARS, ...COUNTRIES]));
      group = "chart";
    } else if (kind === 1) {
      q = pick(r, DOC_Q)(r);
      a = docAnswer(r);
      if (r.next() < 0.25)
        ({ q, a } = withOptions(r, q, [
          "March 3, 1998",
          "$120.00",
          "Dr. Alan Smith",
          "R. J. Reynolds",
          "45201",
        ]));
      group = "document";
    } else if (kind === 3) {
      q = pick(r, PHOTO_Q)(r);
      a = pick(r, PHOTO_OPTIONS);
      if (r.next() < 0.7) ({ q, a } = withOptions(r, q, PHOTO_OPTIONS));
      group = "photo";
    } else {
      ({ q, a } = scienceSample(r, pick(r, SCIENCE_Q)(r)));
      group = "science";
    }
    out.push({
      sample: {
        id: `synth-task-${seed}-${i}`,
        image: `synthetic/${group}-${i}.png`,
        image_source: "unknown",
        conversations: [
          { from: "human", value: `<image>\n${q}` },
          { from: "gpt", value: a },
        ],
      } as Sample,
      group,
    });
  }
  return out;
}
