/**
 * Worker thread of the vision block (vision/vision-features.ts): owns the PP-OCRv4 and MobileNetV2
 * sessions, whose run() and pre/post-processing would otherwise hold the main event loop for
 * hundreds of ms per batch of images (BENCHMARKS.md, "Image models").
 *
 * Protocol (main -> worker): { type: "features", id, bytes } | { type: "close" }
 * (worker -> main): "ready" | "init-error" once, then "result" / "error" per request. Image bytes
 * and result vectors are transferred, not copied.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { VisionSpec } from "./scoring-types.js";
import { VisionFeaturizer, type VisionFeaturizerOptions } from "./vision/vision-features.js";

export interface VisionWorkerInit {
  spec: VisionSpec;
  options: VisionFeaturizerOptions;
}

const port = parentPort;
if (port === null) throw new Error("vision-worker must run in a worker thread");
const init = workerData as VisionWorkerInit;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

// No top-level await: from the TS sources this file is loaded as CommonJS (tsx's require hook).
VisionFeaturizer.create(init.spec, init.options).then(
  (models) => {
    port.on(
      "message",
      async (msg: { type: "features"; id: number; bytes: Uint8Array } | { type: "close" }) => {
        if (msg.type === "close") {
          await models.close();
          port.close();
          return;
        }
        try {
          const r = await models.features(msg.bytes);
          if (r.ok)
            port.postMessage({ type: "result", id: msg.id, ok: true, vector: r.vector }, [
              r.vector.buffer as ArrayBuffer,
            ]);
          else port.postMessage({ type: "result", id: msg.id, ok: false, flag: r.flag, reason: r.reason });
        } catch (err) {
          port.postMessage({ type: "error", id: msg.id, message: message(err) });
        }
      },
    );
    port.postMessage({ type: "ready" });
  },
  (err: unknown) => {
    port.postMessage({ type: "init-error", message: message(err) });
    port.close();
  },
);
