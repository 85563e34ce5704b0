/**
 * The curation graph from a file source (no broker): both selection modes decide every record
 * exactly once, dead-letter the bad ones, and admit about the asked share.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readScoredPoolParquet } from "../../connectors/parquet/scored-pool-parquet.js";
import { syntheticSamples } from "../../models/synthetic-samples.js";
import { runCurate } from "../../src/app/curator.js";

let dir: string;
let input: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "mmssr-curate-file-"));
  input = join(dir, "in.jsonl");
  const lines = syntheticSamples(2000, 5).map((s) => JSON.stringify(s));
  lines.splice(700, 0, "not json at all");
  await writeFile(input, `${lines.join("\n")}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function scoredRows(
  out: string,
): Promise<{ offsets: string[]; selected: number; policyVersions: Set<unknown> }> {
  const { readdir } = await import("node:fs/promises");
  const offsets: string[] = [];
  const policyVersions = new Set<unknown>();
  let selected = 0;
  for (const f of await readdir(join(out, "scored"))) {
    const pool = await readScoredPoolParquet(join(out, "scored", f));
    for (let i = 0; i < pool.size; i++) {
      const extra = pool.extras.get(i) ?? {};
      offsets.push(String(extra.origin_offset));
      policyVersions.add(extra.policy_version ?? null);
      if (extra.selected === true) selected++;
    }
  }
  return { offsets, selected, policyVersions };
}

describe("runCurate with a file source", () => {
  for (const mode of ["window", "continuous"] as const)
    it(`${mode} mode: every record decided once, about 20% selected`, async () => {
      const out = join(dir, mode);
      const stats = await runCurate({
        source: { kind: "file", path: input },
        out,
        mode,
        policy: { ratio: 0.2, maxDelayMs: 200 },
        windowSize: 500,
        windowMs: 10_000,
        log: () => {},
      });
      expect(stats.read).toBe(2001);
      expect(stats.deadLettered).toBe(1);
      expect(stats.scored).toBe(2000);
      const { offsets, selected, policyVersions } = await scoredRows(out);
      // both modes decide under the policy the flags built (version 0 of a run without a policy file)
      expect([...policyVersions]).toEqual([0]);
      expect(offsets).toHaveLength(2000);
      expect(new Set(offsets).size).toBe(2000);
      expect(selected).toBe(stats.selected);
      if (mode === "window") expect(selected).toBe(4 * 100);
      else {
        expect(selected / 2000).toBeGreaterThan(0.15);
        expect(selected / 2000).toBeLessThan(0.25);
      }
      const letters = (await readFile(join(out, "dead-letters.jsonl"), "utf8")).trim().split("\n");
      expect(JSON.parse(letters[0]).origin.offset).toBe("700");
    });
});

describe("absolute budgets", () => {
  it("--max-total caps what a run selects across windows (window mode)", async () => {
    const out = join(dir, "capped");
    const stats = await runCurate({
      source: { kind: "file", path: input },
      out,
      mode: "window",
      policy: { ratio: 0.2, maxTotal: 150 },
      windowSize: 500,
      windowMs: 10_000,
      log: () => {},
    });
    // the first window asks for 100, the second is cut from 100 to 50, the rest get 0
    expect(stats.selected).toBe(150);
    expect(stats.scored).toBe(2000);
  });
});

describe("metrics", () => {
  it("counts what the graph did and serves it in Prometheus format", async () => {
    const { Registry } = await import("prom-client");
    const { serveMetrics } = await import("../../src/stream/curation-metrics.js");
    const registry = new Registry();
    await runCurate({
      source: { kind: "file", path: input },
      out: join(dir, "metrics"),
      policy: { ratio: 0.2 },
      windowSize: 500,
      windowMs: 10_000,
      registry,
      log: () => {},
    });
    const server = await serveMetrics(registry, 0);
    try {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(text).toMatch(/^mmssr_records_read_total 2001$/m);
      expect(text).toMatch(/^mmssr_scored_total 2000$/m);
      expect(text).toMatch(/^mmssr_dead_lettered_total\{code="invalid-json"\} 1$/m);
      expect(text).toMatch(/^mmssr_selected_total\{capability="[a-z]+"\} \d+$/m);
      // one file, one partition, assigned once and never moved
      expect(text).toMatch(/^mmssr_assignment_changes_total 1$/m);
      expect(text).toMatch(/^mmssr_dropped_stale_total 0$/m);
      expect(text).toMatch(/^mmssr_skipped_published_total 0$/m);
      // what was published, against the manifests; the style tallies against the scored log
      const { readPublishedEntries } = await import("../../connectors/sink/shared-output.js");
      const { STYLES } = await import("../../src/domain/taxonomy.js");
      const entries = await readPublishedEntries(join(dir, "metrics"));
      for (const kind of ["scored", "selected"] as const) {
        const mine = entries.filter((e) => e.kind === kind);
        expect(mine.length).toBeGreaterThan(0);
        const bytes = mine.reduce((n, e) => n + (e.bytes ?? 0), 0);
        expect(text).toContain(`mmssr_files_published_total{kind="${kind}"} ${mine.length}\n`);
        expect(text).toContain(`mmssr_bytes_published_total{kind="${kind}"} ${bytes}\n`);
      }
      const decidedByStyle = new Map<string, number>();
      const selectedByStyle = new Map<string, number>();
      for (const e of entries.filter((x) => x.kind === "scored")) {
        const pool = await readScoredPoolParquet(join(dir, "metrics", e.file));
        for (let i = 0; i < pool.size; i++)
          STYLES.forEach((style, k) => {
            if ((pool.styleMask[i] & (1 << k)) === 0) return;
            decidedByStyle.set(style, (decidedByStyle.get(style) ?? 0) + 1);
            if (pool.extras.get(i)?.selected === true)
              selectedByStyle.set(style, (selectedByStyle.get(style) ?? 0) + 1);
          });
      }
      expect(decidedByStyle.size).toBeGreaterThan(1);
      for (const [style, n] of decidedByStyle)
        expect(text).toContain(`mmssr_decided_by_style_total{style="${style}"} ${n}\n`);
      for (const [style, n] of selectedByStyle)
        expect(text).toContain(`mmssr_selected_by_style_total{style="${style}"} ${n}\n`);
      // the flags of the scored log (the synthetic samples name images that are not there)
      const flagged = new Map<string, number>();
      for (const e of entries.filter((x) => x.kind === "scored")) {
        const pool = await readScoredPoolParquet(join(dir, "metrics", e.file));
        for (let i = 0; i < pool.size; i++)
          for (const f of (pool.extras.get(i)?.flags as string[] | undefined) ?? [])
            flagged.set(f, (flagged.get(f) ?? 0) + 1);
      }
      expect(flagged.size).toBeGreaterThan(0);
      for (const [flag, n] of flagged)
        expect(text).toContain(`mmssr_image_flags_total{flag="${flag}"} ${n}\n`);
      // every scored sample went through a worker batch; and both latency histograms saw each decision
      const batched = Number(/^mmssr_inference_batch_seconds_count (\d+)$/m.exec(text)?.[1]);
      expect(batched).toBeGreaterThanOrEqual(Math.ceil(2000 / 256));
      expect(text).toMatch(/^mmssr_decision_latency_seconds_count 2000$/m);
      expect(text).toMatch(/^mmssr_decision_latency_from_arrival_seconds_count 2000$/m);
      expect(text).toMatch(
        /^mmssr_build_info\{version="\d+\.\d+\.\d+[^"]*",model_id="mmssr-lite@[^"]+",execution_provider="cpu"\} 1$/m,
      );
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("a repeated sample id", () => {
  it("is decided once: later messages with the id are dead-lettered as duplicate-id, naming the first", async () => {
    const path = join(dir, "dups.jsonl");
    const samples = syntheticSamples(300, 9);
    const lines = samples.map((s) => JSON.stringify(s));
    // two later messages carry the id of the first sample (same content: sent twice), one another's
    lines.push(
      JSON.stringify(samples[0]),
      JSON.stringify({ ...samples[5], conversations: samples[6].conversations }),
    );
    await writeFile(path, `${lines.join("\n")}\n`);
    const out = join(dir, "dups");
    const stats = await runCurate({
      source: { kind: "file", path },
      out,
      policy: { ratio: 0.9 },
      windowSize: 500,
      windowMs: 10_000,
      log: () => {},
    });
    expect(stats.scored).toBe(300);
    expect(stats.deadLettered).toBe(2);
    const letters = (await readFile(join(out, "dead-letters.jsonl"), "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(letters.map((l) => [l.code, l.origin.offset])).toEqual([
      ["duplicate-id", "300"],
      ["duplicate-id", "301"],
    ]);
    expect(letters[0].reason).toMatch(/was already decided from .*:0:0: a stream decides an id once/);
    // and the selected output has every id once
    const { readScoredPoolParquet: read } = await import("../../connectors/parquet/scored-pool-parquet.js");
    const { readdir } = await import("node:fs/promises");
    const ids: string[] = [];
    for (const f of await readdir(join(out, "selected"))) {
      const pool = await read(join(out, "selected", f));
      for (let i = 0; i < pool.size; i++) ids.push(pool.ids[i]);
    }
    expect(new Set(ids).size).toBe(ids.length);
  });
});
