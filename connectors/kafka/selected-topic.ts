import type { Producer } from "kafkajs";
import { CAPABILITY_IDS } from "../../src/domain/taxonomy.js";
import type { DecisionOutput } from "../../src/stream/ports.js";
import { createKafka, type KafkaConnectionOptions } from "./kafka-client.js";

export type SelectedTopic = DecisionOutput;

/**
 * Optional output topic of selected samples, for training jobs that read Kafka rather than
 * the Parquet folder: key = sample id, value = the sample with its scores, styles, picked_by,
 * bucket, window id, model id and origin. The producer is idempotent (no duplicates from its own
 * retries); after a crash, records re-decided before their files were published are sent
 * again with the same key, so a compacted topic (or a reader that keys by id) sees each once.
 */
export async function createSelectedTopic(
  options: KafkaConnectionOptions & { topic: string },
): Promise<SelectedTopic> {
  const producer: Producer = createKafka({
    ...options,
    clientId: options.clientId ?? "mmssr-selected",
  }).producer({
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  return {
    async send(decisions) {
      const selected = decisions.filter((d) => d.selected);
      if (selected.length === 0) return;
      await producer.send({
        topic: options.topic,
        acks: -1,
        messages: selected.map((d) => {
          const { record } = d;
          const scores = Object.fromEntries(
            CAPABILITY_IDS.map((id, c) => {
              const v = record.score.scores[c];
              return [id, Number.isNaN(v) ? null : Math.round(v * 1e4) / 1e4];
            }),
          );
          return {
            key: record.sample.id,
            value: JSON.stringify({
              ...record.sample,
              scores,
              styles: record.score.styles,
              picked_by: d.pickedBy,
              bucket: d.bucket,
              window_id: d.windowId,
              model_id: record.modelId,
              origin: record.origin,
            }),
          };
        }),
      });
    },
    close: () => producer.disconnect(),
  };
}
