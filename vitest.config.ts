import { configDefaults, defineConfig } from "vitest/config";

// Tests that talk to a real Kafka broker. They form their own project, whose global setup
// starts the local broker (test/support/kafka-global-setup.ts); vitest runs a project's
// global setup only when some of its files are in the run, so the other tests never wait
// for the broker.
const brokerTests = ["test/integration/**/*.test.ts", "test/e2e/**/*.test.ts", "**/*.broker.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ["default", ["json", { outputFile: ".tmp/vitest-report.json" }]],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["src/**/*.test.ts", "connectors/**/*.test.ts", "test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, ...brokerTests],
        },
      },
      {
        extends: true,
        test: {
          name: "broker",
          include: brokerTests,
          exclude: [...configDefaults.exclude],
          globalSetup: ["test/support/kafka-global-setup.ts"],
        },
      },
    ],
  },
});
