/**
 * The commands the docs give an operator for a deployed gateway act on the deployed Worker:
 * every `wrangler secret put` and every `npm run keys -- … --remote` names `--env` (without it,
 * wrangler acts on the Worker `tollbooth` of the top level, which `npm run deploy` never
 * deploys), and no doc pipes a generated admin token straight into wrangler (where nobody
 * sees it, so nobody can log in).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const files = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];
/** Each shell line of the docs' code blocks, with where it is. */
const shellLines = files.flatMap((file) => {
  const text = readFileSync(join(ROOT, file), "utf8");
  return [...text.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split("\n").map((line) => ({ file, line })));
});

describe("the docs' deploy commands", () => {
  it("have shell blocks to check", () => {
    expect(shellLines.filter((l) => l.line.includes("wrangler secret put")).length).toBeGreaterThanOrEqual(3);
  });

  it("name --env on every wrangler secret put and every remote npm run keys", () => {
    const missing = shellLines.filter(
      ({ line }) =>
        (/wrangler secret (put|list)/.test(line) || (/npm run keys/.test(line) && /--remote/.test(line))) &&
        !/--env \S+/.test(line.replace(/#.*$/, "")),
    );
    expect(missing).toEqual([]);
  });

  it("never pipe a generated admin token into wrangler unseen", () => {
    const unseen = shellLines.filter(({ line }) => /openssl rand[^|]*\|\s*npx wrangler secret put TOLLBOOTH_ADMIN_TOKEN/.test(line));
    expect(unseen).toEqual([]);
    const admin = readFileSync(join(ROOT, "docs/admin.md"), "utf8");
    // Made into a variable, shown, then stored.
    expect(admin).toMatch(
      /TOKEN=\$\(openssl rand -hex 32\)\necho "TOLLBOOTH_ADMIN_TOKEN: \$TOKEN".*\nprintf %s "\$TOKEN" \| npx wrangler secret put TOLLBOOTH_ADMIN_TOKEN --env production/,
    );
  });
});
