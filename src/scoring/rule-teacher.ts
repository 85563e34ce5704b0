/**
 * The rule teacher: a transparent labeller that gives a sample the 14 capability scores and the
 * interaction styles of MMSSR.md from the TEXT of its conversation and its image_source alone. It
 * labels the seed corpus of the default student model (issue 3) and is also a Scorer on its own
 * (`RuleTeacherScorer`, id "rule-teacher@1"). It is not the released mmSSR scorer and does not
 * imitate its numbers; it is a documented, deterministic stand-in that a student of a real VLM
 * teacher replaces.
 *
 * Input: the human and gpt texts of `layoutConversation` (image placeholder removed, no quirk),
 * all pairs of the conversation, and `image_source` (lower-cased). Nothing else is read (no
 * `dataset`/`category` fields, no image).
 *
 * ## Styles (multi-label; union over the question/answer pairs; returned in STYLES order)
 * Per pair (Q = question, A = answer, trimmed; word count counts each CJK character as half a word):
 * - multi-choice: Q lists options (markers "A." and "B.", or "(A)"/"(a)" and "(B)"/"(b)", at a line
 *   start or after a space; or "Options:"/"Choices:"/"choose from"/"select from"; or numbered lines
 *   "1." and "2." in Q with an answer of at most 6 words), or A is a single option letter A-H
 *   ("B", "(B)", "B.", "The answer is B.", "Answer: (C)") or starts "(B) text" / "B) text" with at
 *   most 12 words ("A. C. Monk" is a name, not an option).
 * - coordinate: A holds a box or point: `[x, y]` or `[x1, y1, x2, y2]` of numbers, `(x, y)`, or a
 *   `<box>` / `<point>` tag.
 * - yes/no: A starts with "yes" or "no" followed by the end, punctuation or a space (not "no one",
 *   "no longer", "no matter").
 * - word/short-phrase: A has at most 4 words and is not yes/no, an option letter, a coordinate
 *   only or a JSON-like answer (starts with { or [), and Q is not a describe/caption request.
 * - "long" = more than 40 words or more than 2 sentences.
 * - short description: A is not long, and Q is a describe/caption request ("describe", "caption",
 *   "elaborate", "what is in the image", ...) and A is not one of the short forms above (bare
 *   yes/no, option letter, coordinates only, JSON-like); or A is none of those forms, has more than
 *   4 words, and is not long.
 * - detailed description: A is long and Q is a describe/caption request; or A is long and neither
 *   chain-of-thought nor comparison matched the pair.
 * - chain-of-thought (step-by-step): A says "step 1", "step-by-step", "let's think"; or A has a
 *   conclusion marker at a sentence start ("Therefore", "Thus", "Hence", "So", "In conclusion") or
 *   "so the answer is" anywhere, and at least 2 sentences; or A has two or more sequencing markers
 *   at sentence starts ("First,", "Second,", "Next,", "Then,", "Finally,"); or Q asks for it
 *   ("step by step", "explain your reasoning", "show your work") and A has at least 2 sentences.
 * - comparison: Q has "compare", "comparison", "difference", "differ", "similar", "alike",
 *   "versus"/"vs", "than", "both", "in common"; or A has two or more of "than", "whereas",
 *   "in contrast", "compared", "similar", "unlike", "difference", "both".
 * - specified style: Q dictates the answer's format: "answer (the question) using/with/in a single
 *   word/phrase/number/letter/sentence", "answer with the option's letter", "in JSON/YAML/XML/
 *   markdown/CSV/a table/a list/bullet points", "respond/reply/output/return ... format",
 *   "in the following format", "format ... as", "in N words/sentences", "in one word/sentence",
 *   "answer yes or no", "only output/answer/respond", "do not explain".
 * A sample whose answers are all blank gets no style (it cannot be selected). A non-blank answer
 * that matched no rule above (a JSON-like answer with no format instruction) falls back on its
 * length: at most 4 words word/short-phrase, long detailed description, else short description.
 * The text cues are English; other languages get the form and length cues only.
 * `explainRuleTeacher` lists the cues that fired for a sample.
 *
 * ## Capability scores (0..5, multiples of 0.5)
 * score = clamp(1 + sum of the weights of the cues that fire, 0, 5). Each cue fires at most once
 * per sample. Q = all human texts, A = all gpt texts, S = image_source. The cue table `CUES` below
 * lists every cue with its capability, where it looks, its weight and its pattern; the computed
 * cues are:
 * - form: multi-choice style (logical +1); coordinate style (spatial +2); chain-of-thought style
 *   (logical +1.5, causal +0.5); comparison style (comparative +1.5); specified style
 *   (incontext +1); an arithmetic expression "3 + 4", "6 - 2", "x = 2" in Q or A (stem +2;
 *   "2016-04-01" is not one); an upper-case word of 3+ characters in A such as "LANCOME", other
 *   than YES/NO/OK (ocr +1); quoted text in A (ocr +0.5); proper names (capitalised words not at a
 *   sentence start) in A (finegrained +1, or +2 with three or more); "is/are + -ing" in A
 *   (activity +1).
 * - length (language): total answer words >= 40: +1, >= 80: +2, >= 150: +3; 3 or more sentences in
 *   one answer: +0.5; every answer at most 4 words: -0.5.
 * - conversation (incontext): 2+ pairs: +0.5, 4+ pairs: +1; several images: +1.
 */
import type { Sample } from "../domain/sample.js";
import {
  type CapabilityId,
  capabilityIndex,
  NUM_CAPABILITIES,
  NUM_STYLES,
  SCORE_MAX,
  SCORE_MIN,
  STYLES,
  type StyleName,
  styleIndex,
} from "../domain/taxonomy.js";
import { layoutConversation } from "./conversation-text.js";
import type { SampleScore, ScoreFlag, Scorer } from "./scoring-types.js";

export const RULE_TEACHER_ID = "rule-teacher@1";

/** Where a cue looks: the questions, the answers, both, or the image_source. */
export type CueField = "q" | "a" | "qa" | "src";

export interface Cue {
  cap: CapabilityId;
  field: CueField;
  weight: number;
  re: RegExp;
}

const w = (words: string): string => `\\b(?:${words})\\b`;
const cue = (cap: CapabilityId, field: CueField, weight: number, pattern: string): Cue => ({
  cap,
  field,
  weight,
  re: new RegExp(pattern, "iu"),
});

const COLOURS =
  "red|orange|yellow|green|blue|purple|violet|pink|brown|black|white|gr[ae]y|silver|gold(?:en)?|beige|colou?rs?|colou?red";
const SETTINGS =
  "street|road|beach|park|room|kitchen|bedroom|bathroom|office|field|city|forest|mountains?|ocean|sea|lake|river|snow|sky|stadium|restaurant|farm|market|airport|station|indoors?|outdoors?|downtown|countryside|desert|garden|shop|store|classroom";

/**
 * Every text cue: capability, field, weight, pattern (case-insensitive). Each fires at most once per
 * sample. Kept as one table so that the rules can be read, reviewed and changed in one place.
 */
export const CUES: readonly Cue[] = [
  // ocr: reading text
  cue(
    "ocr",
    "q",
    2,
    w(
      "read|reads|written|writing|handwrit\\w*|spell\\w*|font|typed|printed|inscription|ocr|what is written|(?:text|word|words|letters|numbers?) (?:on|in|at) the|what (?:does|do) (?:the|this|that|it)[\\w\\s]{0,30} say",
    ),
  ),
  cue(
    "ocr",
    "q",
    1,
    w(
      "documents?|invoices?|receipts?|page|form|posters?|signs?|signboard|labels?|logos?|screens?|menu|license plate|jersey|headline|heading|paragraph|banner|ticket|website|webpage|title|brand name|phone number|address|email|dated?",
    ),
  ),
  cue(
    "ocr",
    "src",
    3,
    "docvqa|textvqa|textcap|ocr|sroie|dude|infographic|st-?vqa|funsd|cord|synthdog|llavar|screen|doc",
  ),
  // data: charts, tables, plots, diagrams
  cue(
    "data",
    "q",
    2,
    w(
      "charts?|plots?|graphs?|diagrams?|infographics?|bar (?:charts?|graphs?|plots?)|pie (?:charts?|graphs?)|histogram|axis|x-axis|y-axis|legend|spreadsheet|flowchart|statistics?|data|trend",
    ),
  ),
  // a table of data, not the furniture of a photo ("the dining table", "on the table"); weight 1:
  // "the table" alone is as often furniture, the data words around it (values, rows) add the rest
  cue(
    "data",
    "q",
    1,
    `(?<!\\b(?:dining|coffee|kitchen|picnic|wooden|wood|end|side|night|pool|glass|round|small|white|black|brown) )${w(
      "tables?",
    )}(?! ?(?:cloth|top|ware|spoon))(?<!\\b(?:on|under|at|near|by|beside|around|of|from|off) (?:the|a|this|that) tables?)`,
  ),
  cue(
    "data",
    "qa",
    1,
    "%|\\b(?:percent(?:age)?|values?|rows?|columns?|average|increase[sd]?|decrease[sd]?|survey|proportion|ratio)\\b",
  ),
  cue("data", "src", 3, "chart|dvqa|plotqa|figureqa|tabmwp|infographic|ai2d|table|diagram|mapqa"),
  // stem: math and science
  cue(
    "stem",
    "q",
    2,
    w(
      "math\\w*|equations?|calculate|solve|formula|algebra|geometry|triangles?|angles?|perimeter|radius|physics|chemistry|chemical|biology|molecules?|atoms?|cells|organisms?|force|energy|velocity|magnets?|magnetic|circuits?|electric\\w*|experiment\\w*|hypothes[ie]s|science|scientific|engineering|genetic\\w*|photosynthesis|ecosystems?|gravity|acids?|theorem|probability|python|code|program|algorithm|fraction|derivative|integral",
    ),
  ),
  cue(
    "stem",
    "qa",
    1,
    w("how much|sum|total|degrees|celsius|fahrenheit|temperature|mass|volume|speed|units?"),
  ),
  cue("stem", "qa", 1, "\\d\\s*(?:kg|km|cm|mm|m|g|mg|l|ml|mph|km/h|°c|°f|°)(?![\\p{L}])"),
  cue("stem", "src", 3, "scienceqa|mathvista|geoqa|geo3k|math|tabmwp|ai2d|tqa|iconqa|chem|physic|code"),
  // spatial: positions, layout, grounding, counting
  cue(
    "spatial",
    "q",
    2,
    w(
      "left|right|above|below|under|underneath|beneath|behind|in front of|next to|beside|between|near|nearest|far|top|bottom|corner|center|centre|middle|position|positioned|located|location|where|closest|farthest|on top of|inside|outside|adjacent|opposite|bounding box|coordinates?|region",
    ),
  ),
  cue("spatial", "q", 1.5, w("how many|count|number of")),
  cue("spatial", "a", 0.5, w("left|right|above|below|behind|in front of|next to|beside|between|on top of")),
  cue(
    "spatial",
    "src",
    2,
    "gqa|vsr|visual7w|v7w|refcoco|visual.?genome|\\bvg\\b|clevr|count|grounding|pointqa|tally",
  ),
  // attribute: colour, shape, material, size, state
  cue("attribute", "q", 2, w(COLOURS)),
  cue(
    "attribute",
    "q",
    2,
    w(
      "shapes?|round|square|circular|rectangular|triangular|oval|materials?|made of|wooden|wood|metal|metallic|plastic|glass|leather|fabric|cotton|stone|brick|concrete",
    ),
  ),
  cue(
    "attribute",
    "q",
    1,
    w(
      "size|big|small|large|tiny|huge|tall|short|long|wide|thick|thin|wet|dry|empty|full|open|closed|broken|clean|dirty|shiny|striped|texture|wearing|what kind of|what type of",
    ),
  ),
  cue("attribute", "a", 1, w(COLOURS)),
  cue("attribute", "src", 1, "attribute|vaw|color|colour"),
  // causal: why, because, consequences
  cue(
    "causal",
    "q",
    2,
    w(
      "why|cause[sd]?|reasons?|because|result|consequences?|effects?|lead to|led to|due to|purpose|impact|prevent|what (?:might|could|would|will) happen|what happens|might have happened",
    ),
  ),
  cue(
    "causal",
    "a",
    1,
    w("because|due to|as a result|consequently|leads to|results? in|caused by|so that|since"),
  ),
  // activity: actions and interactions of people and animals
  cue(
    "activity",
    "q",
    2,
    w(
      "doing|activity|activities|action|playing|play|riding|ride|running|walking|eating|drinking|holding|throwing|catching|swimming|surfing|skiing|skateboarding|jumping|sitting|standing|cooking|dancing|sports?|game|celebrat\\w*|performing|working|interacting|fighting|hugging|carrying|driving|flying|emotions?",
    ),
  ),
  cue(
    "activity",
    "qa",
    0.5,
    w("man|woman|men|women|person|people|boy|girl|child|children|kids?|players?|crowd|dog|cat|horse"),
  ),
  cue("activity", "src", 2, "emotic|kinetics|hico|vcoco|v-coco|\\bava\\b|action|stanford40|flickr30k"),
  // humanities: art, history, culture, society
  cue(
    "humanities",
    "q",
    2,
    w(
      "art|artist|artwork|painting|painted|painter|sculpture|museum|history|historical|ancient|century|culture|cultural|traditions?|traditional|religio\\w*|church|temple|myth\\w*|literature|poem|poetry|novel|author|music\\w*|architecture|heritage|dynasty|empire|wars?|colon(?:y|ies|ial)|civili[sz]ation|philosoph\\w*|politic\\w*|society|social|economy|laws?|government|festival|figure of speech|rhetoric\\w*",
    ),
  ),
  cue("humanities", "qa", 1, w("style|famous|era|period|symbol\\w*|meaning|story|movie|film|book")),
  cue("humanities", "src", 3, "wikiart|artemis|semart|artbench|\\bart\\b|histor|cultur"),
  // finegrained: species, breeds, brands, landmarks, models, identities
  cue(
    "finegrained",
    "q",
    2,
    w(
      "species|breed|brand|model|make|landmark|identify|who is|who are|celebrity|aircraft|variety|genus|what (?:kind|type|species|breed|model|brand) of (?:bird|dog|cat|car|plane|airplane|flower|tree|plant|food|dish|animal|fish|insect|vehicle)",
    ),
  ),
  cue(
    "finegrained",
    "qa",
    1,
    w("birds?|dog breed|car model|plant|flower|mushroom|insect|butterfly|name of (?:the|this)"),
  ),
  cue(
    "finegrained",
    "src",
    3,
    "cub|inat|inaturalist|stanford.?dogs|stanford.?cars|fgvc|aircraft|food-?101|flowers|oxford|landmark|gldv2|celeb|product|sku|bird",
  ),
  // scene: setting, event, context of the whole image
  cue(
    "scene",
    "q",
    2,
    w(
      "scene|setting|place|environment|background|event|occasion|weather|season|time of day|atmosphere|mood|what is happening|overall|landscape|taken|indoor|outdoor",
    ),
  ),
  cue("scene", "q", 1, w(SETTINGS)),
  cue("scene", "a", 1, w(SETTINGS)),
  cue("scene", "src", 2, "places|sun397"),
  cue("scene", "src", 1, "coco|flickr30k|laion|cc3m|cc12m|sbu|\\bcc\\b"),
  // language: long-form writing requests (length cues are computed)
  cue(
    "language",
    "q",
    1,
    w("describe|description|caption|story|poem|write|explain|elaborate|details?|essay|summar\\w*|narrat\\w*"),
  ),
  // logical: deduction, puzzles
  cue(
    "logical",
    "q",
    2,
    w(
      "which of the following|infer|deduce|deduction|conclude|conclusion|logic\\w*|puzzles?|riddle|pattern|sequence|next (?:shape|number|figure|image)|must be|true or false|correct statement|best describes|most likely|implies|imply|assume|premise|solve",
    ),
  ),
  cue("logical", "src", 2, "raven|\\biq\\b|puzzle|logic|clevr|scienceqa|mmbench"),
  // comparative: comparing objects, regions, images or options
  cue(
    "comparative",
    "q",
    2,
    w(
      "compare|compared|comparison|differences?|differ|different|similar|similarit(?:y|ies)|alike|versus|vs|than|both|in common|which is (?:bigger|larger|smaller|taller|shorter|older|newer|heavier|lighter|faster|closer)",
    ),
  ),
  cue("comparative", "a", 1, w("than|whereas|in contrast|compared|similar|unlike|difference|both")),
  cue("comparative", "src", 2, "nlvr|spot.?the.?diff|birds.?to.?words|compar"),
  // incontext: examples, patterns, following the conversation's constraints
  cue(
    "incontext",
    "q",
    2,
    w(
      "for example|e\\.g|examples?|follow the (?:format|pattern|example)|in the same (?:way|format|style)|like the (?:above|previous|following)|as shown (?:above|below)|based on the (?:above|previous|given)|given the following",
    ),
  ),
  cue("incontext", "q", 1, "(?:^|\\n)[ \\t]*(?:context|hint):"),
];

// ---------------------------------------------------------------------------------------------
// Text helpers

const CJK_RE = /[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]/g;

/** Words: whitespace tokens without CJK characters, plus half a word per CJK character (rounded up). */
export function wordCount(text: string): number {
  const cjk = text.match(CJK_RE)?.length ?? 0;
  const latin = text
    .replace(CJK_RE, " ")
    .split(/\s+/)
    .filter((t) => /[\p{L}\p{N}]/u.test(t)).length;
  return latin + Math.ceil(cjk / 2);
}

/** Sentences: runs ending in . ! ? or a CJK full stop that hold a letter or digit. */
export function sentenceCount(text: string): number {
  const parts = text.split(/(?<=[.!?。！？])\s+|(?<=[。！？])|\n+/);
  return parts.filter((p) => /[\p{L}\p{N}]{2,}/u.test(p)).length;
}

const NUM = "-?\\d+(?:\\.\\d+)?";
const BOX_RE = new RegExp(`\\[\\s*${NUM}\\s*,\\s*${NUM}\\s*(?:,\\s*${NUM}\\s*,\\s*${NUM}\\s*)?\\]`);
const POINT_RE = new RegExp(`\\(\\s*${NUM}\\s*,\\s*${NUM}\\s*\\)`);
const BOX_TAG_RE = /<(?:box|point|bbox|ref)>/i;
const COORD_ONLY_RE = new RegExp(
  `^(?:[\\s,;]|\\[\\s*${NUM}(?:\\s*,\\s*${NUM})*\\s*\\]|\\(\\s*${NUM}(?:\\s*,\\s*${NUM})*\\s*\\)|</?\\w+>)+$`,
);

/** A JSON-like answer: starts with { or [ (and is not a box); no length style for it. */
const STRUCTURED_RE = /^[{[]/;
const YES_NO_RE = /^(?:yes|no)(?:$|[.,!;:]|\s(?!(?:one|longer|matter)\b))/i;
const ANSWER_PREFIX_RE = /^(?:the )?(?:correct )?(?:answer|option|choice)(?: is)?:?\s*/i;
const LETTER_ONLY_RE = /^\(?[A-H]\)?[.)]?$/;
const LETTER_WITH_TEXT_RE = /^(?:\([A-H]\)|[A-H]\))\s+\S/;
const OPTIONS_WORD_RE =
  /\b(?:options|choices)\s*:|\b(?:choose|select) (?:from|one of|between)\b|\boptions?\s*\(?[A-H]\)?\s*[.:)]/i;
// Patterns anchored at line starts use [ \t]* (not \s*) so that runs of newlines stay linear.
const NUMBERED_1_RE = /^[ \t]*1[.)][ \t]+\S/m;
const NUMBERED_2_RE = /^[ \t]*2[.)][ \t]+\S/m;

/** Option markers A and B (or a and b in parentheses) at a line start or after a space. */
function hasLetterOptions(q: string): boolean {
  const a = /(?:^|\s)(?:A[.):]|\([Aa]\))\s*\S/.test(q);
  const b = /(?:^|\s)(?:B[.):]|\([Bb]\))\s*\S/.test(q);
  return a && b;
}

function hasOptions(q: string, a: string): boolean {
  if (hasLetterOptions(q) || OPTIONS_WORD_RE.test(q)) return true;
  return NUMBERED_1_RE.test(q) && NUMBERED_2_RE.test(q) && wordCount(a) <= 6;
}

/** "B", "(B)", "B.", "The answer is B.", "Answer: (C)" (case-sensitive letter A-H). */
function isLetterOnly(a: string): boolean {
  return LETTER_ONLY_RE.test(a.replace(ANSWER_PREFIX_RE, ""));
}

/** A letter alone, or "(B) text" / "B) text" (not "A. C. Monk", which is a name). */
function isOptionLetterAnswer(a: string): boolean {
  return isLetterOnly(a) || (LETTER_WITH_TEXT_RE.test(a) && wordCount(a) <= 12);
}

function hasCoordinate(a: string): boolean {
  return BOX_RE.test(a) || POINT_RE.test(a) || BOX_TAG_RE.test(a);
}

const DESCRIBE_RE =
  /\b(?:describe|description|caption|elaborate|what do you see|what is (?:in|shown in) (?:the|this) (?:image|picture|photo)|what(?:'s| is) in the (?:image|picture|photo)|tell me about (?:the|this) (?:image|picture|photo|scene)|details? of (?:the|this) (?:image|picture|photo|scene)|summari[sz]e (?:the|this) (?:image|picture|photo|scene)|what is this (?:image|picture|photo) about)\b/i;

const COT_STRONG_RE = /\bstep\s*(?:1|one)\b|\bstep[- ]by[- ]step\b|\blet'?s think\b|\blet us think\b/i;
const COT_CONCLUSION_RE =
  /(?:^[ \t]*|[.!?:][ \t]+)(?:therefore|thus|hence|in conclusion|so)\b|\bso the (?:correct )?answer is\b/im;
const COT_SEQUENCE_RE =
  /(?:^[ \t]*|[.!?][ \t]+)(?:first(?:ly)?|second(?:ly)?|third(?:ly)?|next|then|finally|lastly),/gim;
const COT_REQUEST_RE =
  /\bstep[- ]by[- ]step\b|\bexplain your (?:reasoning|answer)\b|\bshow your (?:work|reasoning)\b|\bthink (?:carefully|it through)\b|\breason(?:ing)? (?:before|first)\b/i;

const COMPARE_Q_RE =
  /\b(?:compare|compared|comparison|comparing|differences?|differ|similar|similarit(?:y|ies)|alike|versus|vs\.?|than|both|in common)\b/i;
const COMPARE_A_CUES: readonly RegExp[] = [
  /\bthan\b/i,
  /\bwhereas\b/i,
  /\bin contrast\b/i,
  /\bcompared\b/i,
  /\bsimilar\b/i,
  /\bunlike\b/i,
  /\bdifferences?\b/i,
  /\bboth\b/i,
];

const SPECIFIED_RES: readonly RegExp[] = [
  /\banswer (?:the question |this question )?(?:using|with|in) (?:a |one |only |just )?(?:single |one )?(?:word|phrase|number|letter|sentence|integer|option)/i,
  /\bwith the option'?s letter\b/i,
  /\b(?:in|as) (?:a )?(?:valid )?(?:json|yaml|xml|markdown|csv|latex|html|table|list|bullet(?:ed)? (?:points|list))\b/i,
  /\b(?:respond|reply|output|return|answer|write)\b[^.?!\n]{0,40}\bformat\b/i,
  /\bin (?:the )?(?:following|this|given|same) format\b/i,
  /\bformat(?:ted)? (?:it |your answer |the answer )?as\b/i,
  /\bin (?:exactly |at most |no more than |less than |fewer than |under )?\d+ (?:words|sentences|characters|bullet points)\b/i,
  /\bin (?:one|a single) (?:word|sentence)\b/i,
  /\b(?:please )?answer (?:with )?(?:yes or no|"yes" or "no"|'yes' or 'no')\b/i,
  /\bonly (?:output|answer|respond|reply|give|return)\b/i,
  /\b(?:do not|don't) (?:explain|include any|add any)\b/i,
];

const ARITHMETIC_RE = /\d\s*[+*×÷^]\s*\d|\d\s+[-/]\s+\d|[\p{L}\d)]\s*=\s*[-\d(\p{L}]/u;
const UPPER_WORD_RE = /\b[A-Z][A-Z0-9&'-]{2,}\b/g;
const QUOTED_RE = /["“][^"”\n]{1,60}["”]/;
const PROPER_NAME_RE = /(?<=[\p{L}\p{N},;:] )\p{Lu}\p{Ll}+(?:[ -]\p{Lu}\p{Ll}+)*/gu;
const PROGRESSIVE_RE = /\b(?:is|are|was|were)\s+\w{2,}ing\b/i;

// ---------------------------------------------------------------------------------------------
// Styles

const S = (name: StyleName): number => styleIndex(name);
const S_MC = S("multi-choice");
const S_COORD = S("coordinate");
const S_YESNO = S("yes/no");
const S_WORD = S("word/short-phrase");
const S_SHORT = S("short description");
const S_DETAIL = S("detailed description");
const S_COMP = S("comparison");
const S_COT = S("chain-of-thought (step-by-step)");
const S_SPEC = S("specified style");

function isCot(q: string, a: string, sentences: number): boolean {
  if (COT_STRONG_RE.test(a)) return true;
  if (COT_CONCLUSION_RE.test(a) && sentences >= 2) return true;
  if ((a.match(COT_SEQUENCE_RE)?.length ?? 0) >= 2) return true;
  return COT_REQUEST_RE.test(q) && sentences >= 2;
}

function isComparison(q: string, a: string): boolean {
  if (COMPARE_Q_RE.test(q)) return true;
  let n = 0;
  for (const re of COMPARE_A_CUES) if (re.test(a)) n++;
  return n >= 2;
}

function isSpecified(q: string): boolean {
  return SPECIFIED_RES.some((re) => re.test(q));
}

/** Style flags of one question/answer pair (indices into STYLES). */
function pairStyles(qRaw: string, aRaw: string, out: boolean[]): void {
  const q = qRaw.trim();
  const a = aRaw.trim();
  if (a.length === 0) return;
  const words = wordCount(a);
  const sentences = Math.max(1, sentenceCount(a));
  const describe = DESCRIBE_RE.test(q);
  const pair = new Array<boolean>(NUM_STYLES).fill(false);

  const coord = hasCoordinate(a);
  const yesNo = YES_NO_RE.test(a);
  const letterOnly = isLetterOnly(a);
  const cot = isCot(q, a, sentences);
  const comp = isComparison(q, a);
  pair[S_MC] = hasOptions(q, a) || isOptionLetterAnswer(a);
  pair[S_COORD] = coord;
  pair[S_YESNO] = yesNo;
  pair[S_COT] = cot;
  pair[S_COMP] = comp;
  pair[S_SPEC] = isSpecified(q);

  const shortForm =
    (yesNo && words <= 1) ||
    letterOnly ||
    (coord && COORD_ONLY_RE.test(a)) ||
    (STRUCTURED_RE.test(a) && !coord);
  const long = words > 40 || sentences > 2;
  if (describe && !shortForm) pair[long ? S_DETAIL : S_SHORT] = true;
  else if (!shortForm) {
    if (words <= 4) pair[S_WORD] = !yesNo;
    else if (!long) pair[S_SHORT] = true;
    else pair[S_DETAIL] = !cot && !comp;
  }
  // Every non-blank answer gets a style: a form that matched nothing above falls back on length.
  if (!pair.includes(true)) pair[words <= 4 ? S_WORD : long ? S_DETAIL : S_SHORT] = true;
  for (let s = 0; s < NUM_STYLES; s++) if (pair[s]) out[s] = true;
}

// ---------------------------------------------------------------------------------------------
// Capabilities

const CAP = (id: CapabilityId): number => capabilityIndex(id);

/** Score of a capability that no cue touches. */
export const BASE_SCORE = 1;

export interface RuleTeacherLabel {
  /** length 14, CAPABILITIES order, each in 0..5 (multiples of 0.5) */
  scores: Float32Array;
  /** styles in STYLES order */
  styles: StyleName[];
}

/** One cue that fired: which capability it moved, by how much, and which rule it was. */
export interface CueHit {
  cap: CapabilityId;
  weight: number;
  /** `q:<pattern>`, `a:...`, `qa:...`, `src:...` for table cues; a short name for computed ones */
  rule: string;
}

export interface RuleTeacherExplanation extends RuleTeacherLabel {
  hits: CueHit[];
}

function countMatches(re: RegExp, text: string): number {
  return text.match(re)?.length ?? 0;
}

const NOT_OCR_UPPER_RE = /^(?:YES|NO|OK)$/;

/**
 * What the vision models saw in a sample's image (src/scoring/vision): the share of the image
 * covered by text boxes, their number, and MobileNetV2's probability of a drawing (as against a
 * photo). The rule teacher reads text; with this it also counts text in the image towards `ocr`
 * and a drawing towards `data` and `stem`, the evidence a VLM teacher would have.
 */
export interface ImageEvidence {
  textAreaShare: number;
  textBoxes: number;
  drawing: number;
}

function imageCues(e: ImageEvidence, add: (cap: CapabilityId, weight: number, rule: string) => void): void {
  if (e.textAreaShare >= 0.15 || e.textBoxes >= 12) add("ocr", 1.5, "image: text covers much of it");
  else if (e.textBoxes >= 3) add("ocr", 0.5, "image: some text");
  if (e.drawing >= 0.5) {
    add("data", 0.5, "image: a drawing");
    add("stem", 0.5, "image: a drawing");
  } else if (e.textBoxes === 0) add("scene", 0.5, "image: a photo without text");
}

/** Labels one sample and lists every cue that fired (rules in the header). */
export function explainRuleTeacher(sample: Sample, evidence?: ImageEvidence): RuleTeacherExplanation {
  const { questions, answers } = layoutConversation(sample);
  const flags = new Array<boolean>(NUM_STYLES).fill(false);
  for (let i = 0; i < questions.length; i++) pairStyles(questions[i], answers[i] ?? "", flags);
  const styles: StyleName[] = [];
  for (let s = 0; s < NUM_STYLES; s++) if (flags[s]) styles.push(STYLES[s]);

  const q = questions.join("\n");
  const a = answers.join("\n");
  const src = typeof sample.image_source === "string" ? sample.image_source.toLowerCase() : "";
  const hits: CueHit[] = [];
  const add = (cap: CapabilityId, weight: number, rule: string): void => {
    hits.push({ cap, weight, rule });
  };

  for (const c of CUES) {
    const text = c.field === "q" ? q : c.field === "a" ? a : c.field === "qa" ? `${q}\n${a}` : src;
    if (c.re.test(text)) add(c.cap, c.weight, `${c.field}:${c.re.source}`);
  }

  if (evidence !== undefined) imageCues(evidence, add);

  // Form cues.
  if (flags[S_MC]) add("logical", 1, "style:multi-choice");
  if (flags[S_COORD]) add("spatial", 2, "style:coordinate");
  if (flags[S_COT]) {
    add("logical", 1.5, "style:chain-of-thought");
    add("causal", 0.5, "style:chain-of-thought");
  }
  if (flags[S_COMP]) add("comparative", 1.5, "style:comparison");
  if (flags[S_SPEC]) add("incontext", 1, "style:specified");
  if (ARITHMETIC_RE.test(q) || ARITHMETIC_RE.test(a)) add("stem", 2, "arithmetic");
  const upper = (a.match(UPPER_WORD_RE) ?? []).filter((t) => !NOT_OCR_UPPER_RE.test(t));
  if (upper.length >= 1) add("ocr", 1, "upper-case words in answer");
  if (QUOTED_RE.test(a)) add("ocr", 0.5, "quoted text in answer");
  const names = countMatches(PROPER_NAME_RE, a);
  if (names >= 3) add("finegrained", 2, "3+ proper names in answer");
  else if (names >= 1) add("finegrained", 1, "proper name in answer");
  if (PROGRESSIVE_RE.test(a)) add("activity", 1, "is/are + -ing in answer");

  // Length (language).
  let totalWords = 0;
  let maxSentences = 0;
  let allShort = true;
  for (const ans of answers) {
    const n = wordCount(ans);
    totalWords += n;
    if (n > 4) allShort = false;
    maxSentences = Math.max(maxSentences, sentenceCount(ans));
  }
  if (totalWords >= 150) add("language", 3, "answers >= 150 words");
  else if (totalWords >= 80) add("language", 2, "answers >= 80 words");
  else if (totalWords >= 40) add("language", 1, "answers >= 40 words");
  if (maxSentences >= 3) add("language", 0.5, "an answer of 3+ sentences");
  if (allShort) add("language", -0.5, "every answer <= 4 words");

  // Conversation (incontext).
  if (questions.length >= 4) add("incontext", 1, "4+ turns");
  else if (questions.length >= 2) add("incontext", 0.5, "2+ turns");
  if (Array.isArray(sample.images) && sample.images.length > 1) add("incontext", 1, "several images");

  const raw = new Float64Array(NUM_CAPABILITIES).fill(BASE_SCORE);
  for (const h of hits) raw[CAP(h.cap)] += h.weight;
  const scores = new Float32Array(NUM_CAPABILITIES);
  for (let k = 0; k < NUM_CAPABILITIES; k++) scores[k] = Math.min(SCORE_MAX, Math.max(SCORE_MIN, raw[k]));
  return { scores, styles, hits };
}

/** Labels one sample (rules in the header). Deterministic; never throws on a validated Sample. */
export function ruleTeacherLabel(sample: Sample, evidence?: ImageEvidence): RuleTeacherLabel {
  const { scores, styles } = explainRuleTeacher(sample, evidence);
  return { scores, styles };
}

/** Whether the sample names any image (image, images, image_url or image_b64). */
export function hasImageReference(sample: Sample): boolean {
  return (
    (typeof sample.image === "string" && sample.image.length > 0) ||
    (Array.isArray(sample.images) && sample.images.length > 0) ||
    (typeof sample.image_url === "string" && sample.image_url.length > 0) ||
    (typeof sample.image_b64 === "string" && sample.image_b64.length > 0)
  );
}

/** The rule teacher as a Scorer: style probabilities 0/1; flag "no-image" for text-only samples. */
export class RuleTeacherScorer implements Scorer {
  readonly id = RULE_TEACHER_ID;

  /** Synchronous form of `score` for one sample. Never throws: a failure gives NaN scores, no style. */
  scoreOne(sample: Sample): SampleScore {
    const flags: ScoreFlag[] = [];
    let label: RuleTeacherLabel;
    try {
      if (!hasImageReference(sample)) flags.push("no-image");
      label = ruleTeacherLabel(sample);
    } catch {
      label = { scores: new Float32Array(NUM_CAPABILITIES).fill(Number.NaN), styles: [] };
    }
    const styleProbabilities = new Float32Array(NUM_STYLES);
    for (const s of label.styles) styleProbabilities[styleIndex(s)] = 1;
    return { scores: label.scores, styles: label.styles, styleProbabilities, flags };
  }

  async score(samples: readonly Sample[]): Promise<SampleScore[]> {
    return samples.map((s) => this.scoreOne(s));
  }

  async close(): Promise<void> {}
}
