import { hostname } from "node:os";
import type { Command } from "commander";
import { parseBrokers } from "../../../connectors/kafka/kafka-client.js";
import { openPolicyStore, type PolicyTarget } from "../../app/curator.js";
import { describeChange } from "../../control/policy-control.js";
import type { PolicyRecord } from "../../stream/ports.js";
import { usageError } from "../cli-errors.js";
import { addPolicyFlags, patchFromFlags, policyFromFlags } from "../policy-flags.js";

interface PolicyTargetFlags {
  brokers?: string;
  group?: string;
  topic?: string;
  controlTopic?: string;
  policyFile?: string;
}

function targetOf(flags: PolicyTargetFlags): PolicyTarget {
  if (flags.policyFile !== undefined) {
    if (flags.brokers !== undefined || flags.group !== undefined)
      throw usageError("--policy-file: a file curator's policy; do not give --brokers / --group with it");
    return { kind: "file", path: flags.policyFile };
  }
  if (flags.brokers === undefined || flags.group === undefined)
    throw usageError(
      "give --brokers and --group (a Kafka group's policy), or --policy-file (a file curator's)",
    );
  const brokers = parseBrokers(flags.brokers);
  if (brokers.length === 0) throw usageError("--brokers: no broker given");
  const controlTopic =
    flags.controlTopic ?? (flags.topic === undefined ? undefined : `${flags.topic}.control`);
  if (controlTopic === undefined)
    throw usageError("give --topic (the control topic is <topic>.control) or --control-topic");
  return { kind: "kafka", brokers, group: flags.group, controlTopic };
}

function withTargetFlags(command: Command): Command {
  return command
    .option("--brokers <list>", "bootstrap brokers, host:port[,host:port]")
    .option("--group <id>", "the curators' consumer group (its policy is keyed by it)")
    .option("--topic <name>", "the curated topic: the control topic is <topic>.control")
    .option("--control-topic <name>", "the control topic, when curators were given --control-topic")
    .option("--policy-file <file>", "instead: the policy file of a file-source curator");
}

function show(record: PolicyRecord, where: string): string {
  return `${JSON.stringify({ where, ...record }, null, 2)}\n`;
}

export function registerPolicyCommand(program: Command): void {
  const policy = program
    .command("policy")
    .description("read or change the selection policy of a group of curators (they follow it as it changes)");

  withTargetFlags(
    policy.command("get").description("print the group's policy in force, when and where it was set"),
  ).action(async (flags: PolicyTargetFlags) => {
    const store = await openPolicyStore(targetOf(flags));
    try {
      const record = await store.latest();
      if (!record)
        throw usageError(
          `no policy in the ${store.where} yet: the group's first curator writes its flags' policy there, or set one with \`mmssr policy set --ratio R ...\``,
        );
      process.stdout.write(show(record, store.where));
    } finally {
      await store.close();
    }
  });

  const set = withTargetFlags(
    policy
      .command("set")
      .description(
        "change the group's policy: the flags given are merged into the policy in force (--ratio replaces a budget, --budget a ratio; none / all remove a setting)",
      ),
  );
  addPolicyFlags(set).action(async (flags: PolicyTargetFlags & Record<string, unknown>) => {
    const store = await openPolicyStore(targetOf(flags));
    try {
      const current = await store.latest();
      // A group without a policy gets a whole one from the flags (ratio or budget required).
      const next = current ? patchFromFlags(current.policy, flags) : policyFromFlags(flags);
      const record = await store.write(next, { via: "cli", host: hostname() }, current?.policy);
      process.stderr.write(
        current
          ? `mmssr policy: v${current.policy.version} -> v${record.policy.version} in the ${store.where}: ${describeChange(current.policy, record.policy)}\n`
          : `mmssr policy: v${record.policy.version}, the group's first policy, in the ${store.where}\n`,
      );
      process.stdout.write(show(record, store.where));
    } finally {
      await store.close();
    }
  });
}
