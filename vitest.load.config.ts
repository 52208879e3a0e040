/**
 * `npm run test:load`: the load test alone (test/load), kept out of `npm test`
 * (vitest.config.ts includes test/unit, test/e2e and test/workers only). It starts
 * server-everything and two `wrangler dev`s and runs its load for 30 s per caller; the
 * whole run takes about 1½ minutes on 2 cores.
 */
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    name: "load",
    environment: "node",
    include: ["test/load/**/*.test.ts"],
    // One load run at a time: two on 2 cores would spoil each other's figures.
    fileParallelism: false,
    testTimeout: 110_000,
    hookTimeout: 60_000,
  },
});
