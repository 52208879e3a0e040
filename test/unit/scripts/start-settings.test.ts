/**
 * What `npm start` takes and checks before it starts anything (scripts/start-settings.ts):
 * every setting the Worker reads, from the environment over `.dev.vars`; origin URLs an
 * operator gets wrong (no scheme, `/mcp` at the end) named with the fix; a TCP probe that tells
 * "nothing listens" from "slow". (test/e2e/start-from-env.test.ts runs `npm start` itself.)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../../scripts/stack/ports.ts";
import {
  originUrlProblem,
  probeOrigin,
  readSettings,
  SECRET_SETTING_NAMES,
  toEnvFile,
  VAR_NAMES,
} from "../../../scripts/start-settings.ts";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const dir = (files: Record<string, string>) => {
  const d = mkdtempSync(join(tmpdir(), "tollbooth-start-settings-"));
  dirs.push(d);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
};

describe("the settings npm start passes on", () => {
  it("cover every secret of .dev.vars.example and every string var and secret of workers/env.ts", () => {
    const names = new Set<string>([...VAR_NAMES, ...SECRET_SETTING_NAMES]);
    const example = [...readFileSync(join(ROOT, ".dev.vars.example"), "utf8").matchAll(/^([A-Z_][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    expect(example.length).toBeGreaterThanOrEqual(5);
    expect(example.filter((n) => !names.has(n))).toEqual([]);
    const env = /export interface Env \{([\s\S]*?)\n\}/.exec(readFileSync(join(ROOT, "workers/env.ts"), "utf8"))![1]!;
    const strings = [...env.matchAll(/^\s{2}([A-Z_][A-Z0-9_]*)\??: string;/gm)].map((m) => m[1]!);
    expect(strings).toContain("TOLLBOOTH_ADMIN_TOKEN");
    expect(strings.filter((n) => !names.has(n))).toEqual([]);
  });

  it("come from the environment over .dev.vars; blank is unset; a route's originSecret is read by its name", () => {
    const d = dir({
      ".dev.vars": `TOLLBOOTH_ADMIN_TOKEN=from-file-0123456789\nTOLLBOOTH_POLICY='{"bucket":{"capacity":3,"refillPerSecond":1}}'\nORIGIN_SEARCH_SECRET=search-secret-0123456789\nUNRELATED=x\n`,
    });
    const routes = JSON.stringify([
      { name: "s", match: { path: "/s" }, origin: "http://127.0.0.1:1", originSecret: "ORIGIN_SEARCH_SECRET" },
    ]);
    const s = readSettings(
      {
        TOLLBOOTH_ADMIN_TOKEN: "from-env-0123456789ab",
        TOLLBOOTH_ROUTES: routes,
        TOLLBOOTH_LIGHTNING_SECRET: "  ",
        UNRELATED: "y",
        PATH: "/bin",
      },
      d,
    );
    expect(s.values).toEqual({
      TOLLBOOTH_ADMIN_TOKEN: "from-env-0123456789ab",
      TOLLBOOTH_POLICY: '{"bucket":{"capacity":3,"refillPerSecond":1}}',
      TOLLBOOTH_ROUTES: routes,
      ORIGIN_SEARCH_SECRET: "search-secret-0123456789",
    });
    expect(s.sources).toEqual({
      TOLLBOOTH_ADMIN_TOKEN: "environment",
      TOLLBOOTH_POLICY: ".dev.vars",
      TOLLBOOTH_ROUTES: "environment",
      ORIGIN_SEARCH_SECRET: ".dev.vars",
    });
  });

  it("read .env (then .env.local) when there is no .dev.vars, as wrangler does", () => {
    const d = dir({ ".env": "ORIGIN_URL=http://127.0.0.1:1\nTOLLBOOTH_DECISION_LOG=on\n", ".env.local": "TOLLBOOTH_DECISION_LOG=off\n" });
    expect(readSettings({}, d)).toEqual({
      values: { ORIGIN_URL: "http://127.0.0.1:1", TOLLBOOTH_DECISION_LOG: "off" },
      sources: { ORIGIN_URL: ".env", TOLLBOOTH_DECISION_LOG: ".env" },
    });
  });

  it("go to wrangler quoted, with every $ escaped; a value no quoting can hold is handed back", () => {
    const { text, unquotable } = toEnvFile({ A: `{"x":"$HOME"}`, B: "it's", C: `it's "x"`, D: `'"\``, E: "a\\nb'", F: "ends in \\" });
    expect(text).toBe(`A='{"x":"\\$HOME"}'\nB="it's"\nC=\`it's "x"\`\nE=\`a\\nb'\`\n`);
    expect(unquotable).toEqual({ D: `'"\``, F: "ends in \\" });
  });
});

describe("originUrlProblem", () => {
  it("accepts a base URL", () => {
    expect(originUrlProblem("ORIGIN_URL", "http://127.0.0.1:3001", "/mcp")).toBeNull();
    expect(originUrlProblem("ORIGIN_URL", "https://mcp.internal/base/", "/mcp")).toBeNull();
  });

  it("names a URL without a scheme, with the fix", () => {
    expect(originUrlProblem("ORIGIN_URL", "127.0.0.1:3001", "/mcp")).toBe(
      '`ORIGIN_URL` is the origin\'s base URL, with its scheme: got "127.0.0.1:3001"; did you mean ORIGIN_URL=http://127.0.0.1:3001?',
    );
    expect(originUrlProblem("ORIGIN_URL", "localhost:3001", "/mcp")).toMatch(/did you mean ORIGIN_URL=http:\/\/localhost:3001\?$/);
    expect(originUrlProblem("ORIGIN_URL", "mcp.internal", "/mcp")).toMatch(/did you mean ORIGIN_URL=https:\/\/mcp\.internal\?$/);
  });

  it("names a URL ending in the MCP endpoint: the gateway would ask /mcp/mcp", () => {
    expect(originUrlProblem("ORIGIN_URL", "http://127.0.0.1:3001/mcp", "/mcp")).toBe(
      "`ORIGIN_URL` is the origin's base URL, without `/mcp`: the gateway appends each request's path, so a client's /mcp would reach http://127.0.0.1:3001/mcp/mcp. Use ORIGIN_URL=http://127.0.0.1:3001",
    );
    expect(originUrlProblem('TOLLBOOTH_ROUTES[0] ("a").origin', "https://x.internal/api/rpc/", "/rpc")).toMatch(
      /^TOLLBOOTH_ROUTES\[0\] \("a"\)\.origin is the origin's base URL, without `\/rpc`: .* Use https:\/\/x\.internal\/api$/,
    );
    expect(originUrlProblem("ORIGIN_URL", "http://127.0.0.1:3001/mcp", "/rpc")).toBeNull();
  });
});

describe("probeOrigin", () => {
  it("connects to a listener, and calls a closed port unreachable", async () => {
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    expect(await probeOrigin(`http://127.0.0.1:${port}/x`, 2_000)).toEqual({ ok: true });
    await new Promise<void>((r) => server.close(() => r()));
    const closed = await freePort();
    expect(await probeOrigin(`http://127.0.0.1:${closed}`, 2_000)).toEqual({
      ok: false,
      unreachable: true,
      reason: `connection refused: nothing listens on 127.0.0.1:${closed}`,
    });
  });

  it("calls a name that does not resolve unreachable", async () => {
    const result = await probeOrigin("http://no-such-host.invalid:3001", 5_000);
    expect(result).toMatchObject({ ok: false, unreachable: true });
    expect((result as { reason: string }).reason).toMatch(/^the name no-such-host\.invalid does not resolve/);
  });
});
