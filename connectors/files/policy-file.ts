import { type Stats, unwatchFile, watchFile } from "node:fs";
import { readFile } from "node:fs/promises";
import { Subject } from "rxjs";
import { ERROR_CODES, MmssrError } from "../../src/domain/errors.js";
import type { SelectionPolicy } from "../../src/selection/selection-policy.js";
import { decodePolicyRecord, encodePolicyRecord } from "../../src/stream/policy-record.js";
import type { PolicyOrigin, PolicyRecord, PolicyStore } from "../../src/stream/ports.js";
import { writeFileAtomic } from "../../src/util/atomic-file.js";

export interface PolicyFileOptions {
  /** the policy file; without one the policy lives as long as the process (a one-off file run) */
  path?: string;
  /** how often the file is checked for an edit by hand or by `mmssr policy set` (default 1 s) */
  pollMs?: number;
  log?: (line: string) => void;
}

/**
 * The policy of a file-source curator (the demo, batch backfills), where there is no control
 * topic: a JSON file holding a PolicyRecord (or a plain policy written by hand). Writes replace
 * it atomically; an edit made while the curator runs is picked up within `pollMs`, and an
 * invalid edit is refused with its field paths while the policy in force stays. Versions grow
 * by one per write.
 */
export function createPolicyFileStore(options: PolicyFileOptions = {}): PolicyStore {
  const { path } = options;
  const log = options.log ?? (() => {});
  const where = path ? `policy file ${path}` : "this process (no policy file)";
  const changes = new Subject<PolicyRecord>();
  let last: PolicyRecord | undefined;
  let watching = false;

  const read = async (): Promise<PolicyRecord | undefined> => {
    if (!path) return undefined;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new MmssrError(ERROR_CODES.IO, `${where}: ${(err as Error).message}`, { cause: err });
    }
    const r = decodePolicyRecord(text, {
      from: { via: "file", host: "unknown" },
      at: new Date().toISOString(),
    });
    if (!r.ok) throw new MmssrError(ERROR_CODES.BAD_OPTIONS, `${where}: ${r.problem}`);
    return r.record;
  };

  const onChange = (now: Stats, before: Stats): void => {
    if (now.mtimeMs === before.mtimeMs && now.size === before.size) return;
    read().then(
      (record) => {
        if (!record || (last && record.policy.version <= last.policy.version)) return;
        last = record;
        changes.next(record);
      },
      (err) => log(`${(err as Error).message} (the policy in force stays)`),
    );
  };

  return {
    where,
    async latest() {
      last = await read();
      if (path && !watching) {
        watching = true;
        watchFile(path, { interval: options.pollMs ?? 1_000 }, onChange);
      }
      return last;
    },
    changes$: changes.asObservable(),
    async write(policy: SelectionPolicy, from: PolicyOrigin, previous?: SelectionPolicy) {
      const version = Math.max(last?.policy.version ?? -1, previous?.version ?? -1) + 1;
      const record: PolicyRecord = {
        policy: { ...policy, version },
        at: new Date().toISOString(),
        from,
        ...(previous ? { previous } : {}),
      };
      if (path) await writeFileAtomic(path, `${encodePolicyRecord(record)}\n`);
      last = record;
      changes.next(record);
      return record;
    },
    async close() {
      if (path && watching) unwatchFile(path, onChange);
      changes.complete();
    },
  };
}
