/**
 * Every command README.md gives that needs no Cloudflare account is run by a test or by CI:
 * each shell line of README's `sh` blocks (split on `&&`, without its comment and its
 * `NAME=value` prefixes) is either listed here with the file that runs it — and that file
 * still names the command (its npm script, its script file, the variable it sets) — or
 * listed as needing an account. A command added to README without either fails here.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const read = (file: string) => readFileSync(join(ROOT, file), "utf8");

/** A README command (as split below) → the file that runs it and what that file must contain. */
const RUN_BY: Record<string, { file: string; contains: string[] }> = {
  "npm ci": { file: ".ci/run", contains: ["npm ci"] },
  "npm start": { file: "test/helpers/npm-start.ts", contains: ['"start"'] },
  "npm run test:all": { file: ".ci/run", contains: ["npm run test:all"] },
  "npm run demo": { file: "test/e2e/demo-errors.test.ts", contains: ["scripts/demo.ts"] },
  "ORIGIN_URL= npm start": { file: "test/e2e/start-errors.test.ts", contains: ["ORIGIN_URL", "npmStart"] },
  "TOLLBOOTH_POLICY= npm start": { file: "test/e2e/start-from-env.test.ts", contains: ["TOLLBOOTH_POLICY", "npmStart"] },
  "TOLLBOOTH_ADMIN_TOKEN= npm start": { file: "test/e2e/start-from-env.test.ts", contains: ["TOLLBOOTH_ADMIN_TOKEN", "npmStart"] },
  "npm run pack:packages": { file: "test/e2e/packages.test.ts", contains: ['"pack:packages"'] },
  "npm run check-config -- --env production": {
    file: "test/unit/scripts/check-config.test.ts",
    contains: ['join(ROOT, "scripts/check-config.ts"), "--env", "production"'],
  },
};
/** README commands that act on a Cloudflare account: no test can run them here. */
const NEEDS_ACCOUNT = ["npx wrangler secret put TOLLBOOTH_SECRET --env production", "npm run deploy"];

/** README's shell commands: each `sh` block line, comment dropped, split on `&&`, `NAME=value ` prefixes reduced to `NAME=`. */
function readmeCommands(): string[] {
  const blocks = [...read("README.md").matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const commands = blocks
    .flatMap((b) => b.split("\n"))
    .map((line) => line.replace(/\s+#.*$/, "").replace(/^#.*$/, ""))
    .flatMap((line) => line.split("&&"))
    .map((c) => c.trim().replace(/^((?:[A-Z_]+=(?:'[^']*'|\$\([^)]*\)|\S+)\s+)+)/, (env) => `${env.match(/[A-Z_]+=/g)!.join(" ")} `))
    .filter((c) => c !== "");
  return [...new Set(commands)];
}

describe("README's commands", () => {
  const commands = readmeCommands();

  it("are found (the quick start's two commands among them)", () => {
    expect(commands).toContain("npm start");
    expect(commands).toContain("npm run test:all");
  });

  it("are each run by a test or CI, or need a Cloudflare account", () => {
    const unaccounted = commands.filter((c) => !(c in RUN_BY) && !NEEDS_ACCOUNT.includes(c));
    expect(unaccounted).toEqual([]);
  });

  it("are still named by the file said to run each", () => {
    for (const command of commands.filter((c) => c in RUN_BY)) {
      const { file, contains } = RUN_BY[command]!;
      const text = read(file);
      for (const needle of contains) expect({ command, file, has: text.includes(needle) }).toEqual({ command, file, has: true });
    }
  });

  it("CI runs README's test command", () => {
    expect(read(".ci/run")).toMatch(/^npm ci\nnpm run test:all$/m);
    expect(read("README.md")).toContain("npm ci && npm run test:all");
  });
});
