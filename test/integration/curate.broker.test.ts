/**
 * `mmssr curate` end to end against the real broker: every message of the topic is decided
 * exactly once (scored log or dead letter), selected ids are unique, offsets are committed to
 * the end, and a second run of the same group finds nothing left to do.
 */
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { type Duck, openDuck } from "../support/duckdb.js";
import { brokers, freshGroup, freshTopic, testKafka } from "../support/kafka.js";
import { runCli } from "../support/run-cli.js";

let dir: string;
let duck: Duck;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-curate-"));
  duck = await openDuck();
});
afterAll(async () => {
  duck.close();
  await rm(dir, { recursive: true, force: true });
});

const sql = (query: string) => duck.sql(query);

describe("mmssr curate", () => {
  it("decides every message once, publishes, commits; a rerun has nothing left", async () => {
    const topic = await freshTopic("curate", 3);
    const dlqTopic = `${topic}-dlq`;
    const outTopic = `${topic}-selected`;
    const admin = testKafka("curate-admin").admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: dlqTopic, numPartitions: 1 },
        { topic: outTopic, numPartitions: 1 },
      ],
      waitForLeaders: true,
    });
    const input = join(dir, "input.jsonl");
    const lines = syntheticSamples(1200, 77).map((s) => JSON.stringify(s));
    lines.splice(500, 0, "{broken");
    await writeFile(input, `${lines.join("\n")}\n`);
    const produced = await runCli([
      "produce",
      "--brokers",
      brokers().join(","),
      "--topic",
      topic,
      "--in",
      input,
    ]);
    expect(produced.code, produced.stderr).toBe(0);

    const group = freshGroup("curate");
    const out = join(dir, "out");
    const args = [
      "curate",
      "--brokers",
      brokers().join(","),
      "--topic",
      topic,
      "--group",
      group,
      "--out",
      out,
      "--ratio",
      "0.2",
      "--window-size",
      "400",
      "--window-ms",
      "2000",
      "--until-idle",
      "3",
      "--dlq-topic",
      dlqTopic,
      "--output-topic",
      outTopic,
    ];
    const first = await runCli(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/read 1201 records: 1200 scored/);
    expect(first.stdout).toMatch(/1 dead-lettered/);

    const [scored] = await sql(
      `SELECT count(*) AS n, count(DISTINCT (origin_partition, origin_offset)) AS origins FROM read_parquet('${join(out, "scored", "*.parquet")}')`,
    );
    expect(Number(scored.n)).toBe(1200);
    expect(Number(scored.origins)).toBe(1200);
    const [selected] = await sql(
      `SELECT count(*) AS n, count(DISTINCT id) AS ids FROM read_parquet('${join(out, "selected", "*.parquet")}')`,
    );
    expect(Number(selected.n)).toBeGreaterThan(0);
    expect(Number(selected.ids)).toBe(Number(selected.n));

    // the output topic holds the selected samples, keyed by id
    const outOffsets = await admin.fetchTopicOffsets(outTopic);
    expect(Number(outOffsets[0].high)).toBe(Number(selected.n));

    const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const offsets = await admin.fetchTopicOffsets(topic);
    for (const p of committed[0].partitions) {
      const end = offsets.find((o) => o.partition === p.partition)?.high;
      expect(p.offset).toBe(end);
    }
    await admin.disconnect();

    const second = await runCli(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/read 0 records/);
    expect((await readdir(join(out, "scored"))).length).toBeGreaterThan(0);

    // mmssr dlq shows the dead letter: why, where it came from, its bytes
    const dlq = await runCli(["dlq", "--brokers", brokers().join(","), "--dlq-topic", dlqTopic]);
    expect(dlq.code, dlq.stderr).toBe(0);
    const letters = dlq.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({
      code: "invalid-json",
      origin: { topic },
      value: "{broken",
      valueEncoding: "utf8",
    });
    expect(dlq.stderr).toMatch(/1 dead letter\(s\) in .*: invalid-json 1/);
    const none = await runCli(["dlq", "--brokers", brokers().join(","), "--topic", `${topic}-nope`]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/the dead-letter topic .*-nope\.dlq does not exist/);
  });
});
