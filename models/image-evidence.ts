/**
 * What the vision models see in the images of the build's training samples, as the rule teacher's
 * ImageEvidence: the teacher labels with it, the student then learns it from the vision block.
 */
import type { Sample } from "../src/domain/sample.js";
import type { ImageLoader } from "../src/scoring/image-source.js";
import type { ImageEvidence } from "../src/scoring/rule-teacher.js";
import { ImageEmbedder } from "../src/scoring/vision/image-embedder.js";
import { OcrEngine } from "../src/scoring/vision/text-in-image.js";

/** Evidence per sample id, for the samples whose image loads and decodes (others: none). */
export async function imageEvidence(
  samples: readonly Sample[],
  loader: ImageLoader,
  maxSide: number,
): Promise<Map<string, ImageEvidence>> {
  const ocr = await OcrEngine.create({ intraOpNumThreads: 1 });
  const embedder = await ImageEmbedder.load({ intraOpNumThreads: 1 });
  const out = new Map<string, ImageEvidence>();
  // the build reuses a few hundred images across thousands of questions
  const byImage = new Map<string, ImageEvidence>();
  try {
    for (const s of samples) {
      if (s.image === undefined && s.image_b64 === undefined) continue;
      const known = s.image === undefined ? undefined : byImage.get(s.image);
      if (known !== undefined) {
        out.set(s.id, known);
        continue;
      }
      const loaded = await loader.load(s);
      if (!loaded.ok) continue;
      try {
        const text = await ocr.textInImage(loaded.bytes, { maxSide, recognize: false });
        const e = await embedder.embed(loaded.bytes);
        const evidence = {
          textAreaShare: text.textAreaShare,
          textBoxes: text.boxCount,
          drawing: e.probs[e.labels.indexOf("drawing")],
        };
        out.set(s.id, evidence);
        if (s.image !== undefined) byImage.set(s.image, evidence);
      } catch {
        // an image the models cannot read gives no evidence; the featurizer flags it
      }
    }
  } finally {
    await ocr.close();
    await embedder.close();
  }
  return out;
}
