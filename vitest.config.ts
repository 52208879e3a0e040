/**
 * Two Vitest projects:
 *  - "unit":    plain Node tests (test/unit) and end-to-end tests (test/e2e) that
 *               spawn server-everything + `wrangler dev` (see test/helpers).
 *  - "workers": tests that run *inside* workerd via @cloudflare/vitest-plugin,
 *               against the Worker described by ./wrangler.toml.
 *
 * Run one: `npx vitest run --project unit` / `--project workers`.
 */
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // The gateway's decision log (one line per request, workers tests) is not echoed; tests that read it spy on console.log.
    onConsoleLog: (log: string) => !log.startsWith('{"tollbooth":"decision",'),
    projects: [
      {
        extends: false,
        test: {
          name: "unit",
          environment: "node",
          include: ["test/unit/**/*.test.ts", "test/e2e/**/*.test.ts"],
          // One server-everything shared by the e2e files (each keeps its own counting proxy).
          globalSetup: ["test/e2e/global-setup.ts"],
          // e2e files spawn processes (wrangler dev takes ~2-5 s to boot).
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Run files one after another: e2e tests start real servers.
          fileParallelism: false,
        },
      },
      {
        extends: false,
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              // Metrics flushes off (a flush waits its interval inside the request's waitUntil, which
              // waitOnExecutionContext would wait for): test/workers/observe/ turns them on.
              bindings: {
                TOLLBOOTH_SECRET: "test-secret-1-0123456789abcdef",
                ORIGIN_URL: "http://127.0.0.1:9",
                TOLLBOOTH_METRICS_FLUSH_MS: "0",
                // Every decision line, as `npm start` writes them (the tests read admitted lines);
                // test/workers/observe/observe.test.ts sets the deployed default (100) itself.
                TOLLBOOTH_DECISION_LOG_SAMPLE: "1",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          setupFiles: ["test/workers/setup.ts"],
        },
      },
    ],
  },
});
