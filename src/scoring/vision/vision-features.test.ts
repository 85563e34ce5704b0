import { resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { Sample } from "../../domain/sample.js";
import { createSampleFeaturizer, DEFAULT_FEATURE_SPEC, VISION_FEATURE_SPEC } from "../featurize-samples.js";
import { createImageLoader } from "../image-source.js";
import { parseModelManifest } from "../model-manifest.js";
import { featureLayout } from "../text-features.js";
import { TEXT_IN_IMAGE_LAYOUT } from "./text-in-image.js";
import { checkVisionSpec, visionDims } from "./vision-features.js";

const FIXTURES = resolve(import.meta.dirname, "../../../test/fixtures");
const loader = createImageLoader({ baseDir: FIXTURES, allowUrls: false });
const featurizer = createSampleFeaturizer(VISION_FEATURE_SPEC, { imageLoader: loader });
afterAll(async () => {
  await featurizer.close();
  await loader.close();
});

const sample = (id: string, image?: string): Sample => ({
  id,
  image_source: "unknown",
  ...(image === undefined ? {} : { image }),
  conversations: [
    { from: "human", value: "<image>\nWhat does it say?" },
    { from: "gpt", value: "A total." },
  ],
});

describe("the vision block of mmssr-hashed/v2", () => {
  const layout = featureLayout(VISION_FEATURE_SPEC);
  const [v0, v1] = layout.vision;

  it("sits after the image block, 14 text-in-image + 38 embedding dims; the fast spec has none", () => {
    expect(v1 - v0).toBe(52);
    expect(v1).toBe(VISION_FEATURE_SPEC.dims);
    expect(visionDims(VISION_FEATURE_SPEC.vision)).toBe(52);
    const fast = featureLayout(DEFAULT_FEATURE_SPEC).vision;
    expect(fast[1] - fast[0]).toBe(0);
  });

  it("reads the text of a rendered page and embeds a photo; an image-less sample gets zeros", async () => {
    const { features, flags } = await featurizer.featurize([
      sample("card", "ocr/text-card.png"),
      sample("photo", "samples/llava_serve_examples/extreme_ironing.jpg"),
      sample("none"),
    ]);
    const row = (i: number) =>
      features.subarray(i * VISION_FEATURE_SPEC.dims + v0, i * VISION_FEATURE_SPEC.dims + v1);
    const card = row(0);
    expect(card[TEXT_IN_IMAGE_LAYOUT.hasText]).toBe(1);
    expect(card[TEXT_IN_IMAGE_LAYOUT.textAreaShare]).toBeGreaterThan(0.05);
    expect(card[14 + 37]).toBe(1); // embedding has-image flag
    const photo = row(1);
    expect(photo[14 + 37]).toBe(1);
    expect(Array.from(photo.subarray(14, 14 + 5)).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    expect(row(2).every((x) => x === 0)).toBe(true);
    expect(flags[2]).toEqual(["no-image"]);
  });

  it("a corrupt image is flagged and leaves the whole image block zero", async () => {
    const b64 = Buffer.from("not an image at all").toString("base64");
    const { features, flags } = await featurizer.featurize([{ ...sample("bad"), image_b64: b64 }]);
    expect(flags[0]).toContain("image-corrupt");
    expect(features.subarray(layout.image[0], v1).every((x) => x === 0)).toBe(true);
  });

  it("a manifest's vision block must match this version's layouts and needs kind v2", () => {
    expect(() => checkVisionSpec({ textInImage: { maxSide: 320, dims: 13 } })).toThrow(/dims must be 14/);
    expect(() => checkVisionSpec({ embedding: { model: "resnet", dims: 38 } })).toThrow(/not known/);
    const manifest = (featurizer: unknown) => ({
      format: "mmssr-model/1",
      id: "m",
      version: "1",
      onnx: { file: "m.onnx", sha256: "0".repeat(64) },
      input: { name: "features", dims: VISION_FEATURE_SPEC.dims },
      featurizer,
    });
    expect(() => parseModelManifest(manifest({ ...VISION_FEATURE_SPEC, kind: "mmssr-hashed/v1" }))).toThrow(
      /vision block needs kind mmssr-hashed\/v2/,
    );
    expect(() =>
      parseModelManifest(manifest({ ...VISION_FEATURE_SPEC, dims: DEFAULT_FEATURE_SPEC.dims })),
    ).toThrow(/vision dims 52/);
  });
});
