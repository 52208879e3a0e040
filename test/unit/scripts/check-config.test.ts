/**
 * `npm run check-config` (scripts/check-config.ts): good and bad configurations, each in a
 * temporary directory of its own (wrangler.toml + .dev.vars), and the repository's own
 * wrangler.toml, whose production environment holds the placeholder origin. Also: every
 * binding `wrangler types` generates (wrangler-types.d.ts) is documented in
 * workers/env.ts.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { checkConfig, readDotVars, wranglerError } from "../../../scripts/check-config.ts";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const SECRET = "a-secret-of-32-bytes-0123456789ab";
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const BINDINGS = (env: string) => `
[[env.${env}.durable_objects.bindings]]
name = "CALLER_BUCKET"
class_name = "CallerState"

[[env.${env}.durable_objects.bindings]]
name = "ORIGIN_GATE"
class_name = "OriginGate"
`;

/** A directory holding wrangler.toml (production env with `vars` and bindings) and dot-vars files. */
function project(opts: { vars: Record<string, string>; bindings?: boolean; files?: Record<string, string> }): string {
  const dir = mkdtempSync(join(tmpdir(), "tollbooth-check-config-"));
  dirs.push(dir);
  const vars = Object.entries(opts.vars)
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join("\n");
  writeFileSync(
    join(dir, "wrangler.toml"),
    `name = "t"\nmain = "index.ts"\ncompatibility_date = "2026-10-01"\n\n[[durable_objects.bindings]]\nname = "CALLER_BUCKET"\nclass_name = "CallerState"\n\n[vars]\nORIGIN_URL = "http://127.0.0.1:3001"\n\n[env.production]\n${opts.bindings === false ? "" : BINDINGS("production")}\n[env.production.vars]\n${vars}\n`,
  );
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), text);
  return join(dir, "wrangler.toml");
}

const check = (config: string, extra: Partial<Parameters<typeof checkConfig>[0]> = {}) =>
  checkConfig({ config, env: "production", ...extra });

describe("check-config", () => {
  it("passes a complete production configuration", async () => {
    const config = project({
      vars: { ORIGIN_URL: "https://mcp-origin.internal" },
      files: { ".dev.vars.production": `TOLLBOOTH_SECRET=${SECRET}\n` },
    });
    expect(await check(config)).toEqual([]);
  });

  it("names the placeholder origin and the missing secret", async () => {
    const problems = await check(project({ vars: { ORIGIN_URL: "https://origin.example.com" } }));
    expect(problems).toHaveLength(2);
    expect(problems.find((p) => p.startsWith("ORIGIN_URL"))).toMatch(/placeholder https:\/\/origin\.example\.com/);
    expect(problems.find((p) => p.startsWith("TOLLBOOTH_SECRET"))).toMatch(/not set/);
  });

  it("refuses a loopback origin in a deployed environment, not at the top level", async () => {
    const config = project({ vars: { ORIGIN_URL: "http://127.0.0.1:3001" }, files: { ".dev.vars": `TOLLBOOTH_SECRET=${SECRET}\n` } });
    expect(await check(config)).toEqual([expect.stringMatching(/^ORIGIN_URL is a loopback address \(127\.0\.0\.1:3001\)/)]);
    expect(await check(config, { env: undefined })).toEqual([]);
  });

  it("takes the secret from the environment, or from the stored secrets' names", async () => {
    const config = project({ vars: { ORIGIN_URL: "https://mcp-origin.internal" } });
    expect(await check(config, { processEnv: { TOLLBOOTH_SECRET: SECRET } })).toEqual([]);
    expect(await check(config, { storedSecrets: ["TOLLBOOTH_SECRET"] })).toEqual([]);
    expect(await check(config, { processEnv: { TOLLBOOTH_SECRET: "short" } })).toEqual([
      expect.stringMatching(/^TOLLBOOTH_SECRET key #1 is shorter than 16 bytes/),
    ]);
  });

  it("names a secret put in [vars], bindings not repeated in the environment, and bad policies and routes", async () => {
    const problems = await check(
      project({
        bindings: false,
        vars: {
          TOLLBOOTH_SECRET: SECRET,
          TOLLBOOTH_POLICY: JSON.stringify({ bucket: { capacity: 5, refillPerSecond: 1 } }),
          TOLLBOOTH_ROUTES: JSON.stringify([
            {
              name: "a",
              match: { path: "/a" },
              origin: "http://localhost:3001",
              policy: { originCeiling: { capacity: 5, refillPerSecond: 1 } },
            },
            {
              name: "b",
              match: { path: "/b" },
              origin: "https://b.internal",
              originSecret: "ORIGIN_B_SECRET",
              policy: { costs: { default: 6 } },
            },
          ]),
        },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^TOLLBOOTH_SECRET: a secret in \[env\.production\] \[vars\]/),
        expect.stringMatching(/^TOLLBOOTH_ROUTES\[1\] \("b"\)\.policy\.costs\.default/),
        expect.stringMatching(/^TOLLBOOTH_ROUTES\[0\] \("a"\)\.origin is a loopback address/),
        expect.stringMatching(/^ORIGIN_B_SECRET is not set \(TOLLBOOTH_ROUTES\[1\] \("b"\)\.originSecret\)/),
        expect.stringMatching(/^CALLER_BUCKET: no Durable Object binding/),
        expect.stringMatching(/^ORIGIN_GATE: a policy sets originCeiling/),
      ]),
    );
    expect(await check(project({ vars: { TOLLBOOTH_ROUTES: "[{}]" } }), { processEnv: { TOLLBOOTH_SECRET: SECRET } })).toEqual([
      expect.stringMatching(/^TOLLBOOTH_ROUTES\[0\]\.name/),
    ]);
    // A bad TOLLBOOTH_POLICY is named once, not again for each route inheriting it.
    const inherited = await check(
      project({
        vars: {
          ORIGIN_URL: "https://mcp-origin.internal",
          TOLLBOOTH_POLICY: '{"bucket":{"capacity":0,"refillPerSecond":1}}',
          TOLLBOOTH_ROUTES: JSON.stringify([{ name: "a", match: { path: "/a" }, origin: "https://a.internal" }]),
        },
      }),
      { processEnv: { TOLLBOOTH_SECRET: SECRET } },
    );
    expect(inherited).toEqual([expect.stringMatching(/^TOLLBOOTH_POLICY\.bucket\.capacity/)]);
  });

  it("names a bad identity.jwt entry: an issuer listed twice, a private key", async () => {
    const entry = (issuer: string, keys: object[]) => ({ issuer, audience: "https://mcp.example.test/mcp", keys });
    const pub = {
      kty: "EC",
      crv: "P-256",
      x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
      use: "sig",
      alg: "ES256",
    };
    const policy = (jwt: object) => ({
      ORIGIN_URL: "https://mcp-origin.internal",
      TOLLBOOTH_POLICY: JSON.stringify({ identity: { jwt } }),
    });
    const env = { processEnv: { TOLLBOOTH_SECRET: SECRET } };
    expect(await check(project({ vars: policy([entry("https://a.test", [pub]), entry("https://b.test", [pub])]) }), env)).toEqual([]);
    expect(await check(project({ vars: policy([entry("https://a.test", [pub]), entry("https://a.test", [pub])]) }), env)).toEqual([
      expect.stringMatching(/^TOLLBOOTH_POLICY\.identity\.jwt\.1\.issuer: "https:\/\/a\.test" is already the issuer of identity\.jwt\.0/),
    ]);
    expect(
      await check(project({ vars: policy([entry("https://a.test", [pub]), entry("https://b.test", [{ ...pub, d: "secret" }])]) }), env),
    ).toEqual([expect.stringMatching(/^TOLLBOOTH_POLICY\.identity\.jwt\.1\.keys\.0: holds private key material/)]);
  });

  it("names an origin URL that ends in the MCP endpoint (the gateway would ask /mcp/mcp)", async () => {
    const env = { processEnv: { TOLLBOOTH_SECRET: SECRET } };
    expect(await check(project({ vars: { ORIGIN_URL: "https://mcp-origin.internal/mcp" } }), env)).toEqual([
      "ORIGIN_URL is the origin's base URL, without `/mcp`: the gateway appends each request's path, so https://mcp-origin.internal/mcp would be asked for https://mcp-origin.internal/mcp/mcp; set https://mcp-origin.internal",
    ]);
    const routes = JSON.stringify([{ name: "a", match: { path: "/a" }, origin: "https://a.internal/rpc/", policy: { endpoint: "/rpc" } }]);
    expect(await check(project({ vars: { TOLLBOOTH_ROUTES: routes } }), env)).toEqual([
      expect.stringMatching(/^TOLLBOOTH_ROUTES\[0\] \("a"\)\.origin is the origin's base URL, without `\/rpc`/),
    ]);
  });

  it("names the admin token put in [vars] as a secret", async () => {
    const problems = await check(
      project({ vars: { ORIGIN_URL: "https://mcp-origin.internal", TOLLBOOTH_ADMIN_TOKEN: "0123456789abcdef0123" } }),
      { processEnv: { TOLLBOOTH_SECRET: SECRET } },
    );
    expect(problems).toEqual([
      expect.stringMatching(
        /^TOLLBOOTH_ADMIN_TOKEN: a secret in \[env\.production\] \[vars\]; remove it and use `wrangler secret put TOLLBOOTH_ADMIN_TOKEN --env production`/,
      ),
    ]);
  });

  it("refuses an environment the file does not have", async () => {
    expect(await check(project({ vars: {} }), { env: "staging" })).toEqual([expect.stringMatching(/has no \[env\.staging\]/)]);
  });

  it("reads dot-vars files as wrangler does: comments, quotes, blanks unset", () => {
    expect(readDotVars(`# c\nA=1\nB="two # not a comment"\nC='3'\nD=\nexport E=5 # comment\n  # F=6\n`)).toEqual({
      A: "1",
      B: "two # not a comment",
      C: "3",
      E: "5",
    });
  });

  it("as a command: prints each problem and exits 1, or says ok and exits 0", () => {
    const run = (config: string, env: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, [join(ROOT, "scripts/check-config.ts"), "--env", "production", "--config", config], {
        encoding: "utf8",
        env: { PATH: process.env.PATH, ...env },
      });
    const bad = run(project({ vars: { ORIGIN_URL: "https://origin.example.com" } }));
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/2 problems/);
    expect(bad.stderr).toMatch(/^ {2}- ORIGIN_URL is the placeholder/m);
    expect(bad.stderr).toMatch(/^ {2}- TOLLBOOTH_SECRET is not set/m);
    const good = run(project({ vars: { ORIGIN_URL: "https://mcp-origin.internal" } }), { TOLLBOOTH_SECRET: SECRET });
    expect(good.stdout).toMatch(/: ok$/m);
    expect(good.status).toBe(0);
  });

  it("with --remote and no Cloudflare login: passes on wrangler's own error and says how to log in", () => {
    const home = mkdtempSync(join(tmpdir(), "tollbooth-no-login-"));
    dirs.push(home);
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home, XDG_CONFIG_HOME: join(home, ".config"), TOLLBOOTH_SECRET: SECRET };
    const run = spawnSync(
      process.execPath,
      [
        join(ROOT, "scripts/check-config.ts"),
        "--env",
        "production",
        "--remote",
        "--config",
        project({ vars: { ORIGIN_URL: "https://mcp-origin.internal" } }),
      ],
      { encoding: "utf8", env },
    );
    expect(run.stderr).toMatch(
      /^check-config: could not list the stored secrets \(wrangler secret list failed: In a non-interactive environment, it's necessary to set a CLOUDFLARE_API_TOKEN environment variable for wrangler to work\./m,
    );
    expect(run.stderr).toMatch(
      /^ {2}log in first: `npx wrangler login`, or set CLOUDFLARE_API_TOKEN \(and CLOUDFLARE_ACCOUNT_ID\): docs\/deploy\.md$/m,
    );
    expect(run.stderr).not.toMatch(/Logs were written/);
    expect(run.stderr).not.toContain("\x1b[");
    // The secret was set locally: the configuration itself passes.
    expect(run.stdout).toMatch(/: ok$/m);
  });

  it("wranglerError: the [ERROR] lines without colours, warnings or the log file line", () => {
    const out =
      '\x1b[33m▲ \x1b[43;33m[\x1b[43;30mWARNING\x1b[43;33m]\x1b[0m vars missing\n\n\x1b[31m✘ \x1b[41;31m[\x1b[41;97mERROR\x1b[41;31m]\x1b[0m \x1b[1mAuthentication error [code: 10000]\x1b[0m\n\n🪵  Logs were written to "/x/y.log"\n';
    expect(wranglerError(out)).toBe("Authentication error [code: 10000]");
    expect(wranglerError('something odd\n🪵  Logs were written to "/x"\n')).toBe("something odd");
  });

  it("fails the repository's production environment until its placeholder origin is replaced", async () => {
    const problems = await checkConfig({
      config: join(ROOT, "wrangler.toml"),
      env: "production",
      processEnv: { TOLLBOOTH_SECRET: SECRET },
    });
    expect(problems).toEqual([expect.stringMatching(/^ORIGIN_URL is the placeholder https:\/\/origin\.example\.com/)]);
  });
});

describe("the generated Env", () => {
  it("documents in workers/env.ts every binding, var and secret `wrangler types` generates", () => {
    const generated = readFileSync(join(ROOT, "wrangler-types.d.ts"), "utf8");
    const base = /interface __BaseEnv_GeneratedEnv \{([^}]*)\}/.exec(generated)![1]!;
    const names = [...base.matchAll(/^\s*([A-Z_][A-Z0-9_]*)\??:/gm)].map((m) => m[1]!);
    expect(names).toEqual(expect.arrayContaining(["CALLER_BUCKET", "ORIGIN_URL", "TOLLBOOTH_SECRET", "TOLLBOOTH_ROUTES"]));
    const documented = readFileSync(join(ROOT, "workers/env.ts"), "utf8");
    const envBody = /export interface Env \{([\s\S]*?)\n\}/.exec(documented)![1]!;
    const envNames = new Set([...envBody.matchAll(/^\s{2}([A-Z_][A-Z0-9_]*)\??:/gm)].map((m) => m[1]!));
    expect(names.filter((n) => !envNames.has(n))).toEqual([]);
    // The one binding wrangler.toml ships commented out (Analytics Engine, opt-in).
    expect([...envNames].filter((n) => !names.includes(n))).toEqual(["TOLLBOOTH_ANALYTICS"]);
  });

  it("each deployed environment repeats the top level's vars: `npm run build -- --env <name>` is quiet", () => {
    for (const env of ["production", "staging"]) {
      const out = mkdtempSync(join(tmpdir(), "tollbooth-build-"));
      dirs.push(out);
      const run = spawnSync(process.execPath, [join(ROOT, "scripts/build.ts"), "--env", env, "--outdir", out], {
        cwd: ROOT,
        encoding: "utf8",
        env: { ...process.env, CI: "1", NO_COLOR: "1" },
      });
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(run.stderr).toContain(`build: [env.${env}] of wrangler.toml`);
      expect(run.stdout + run.stderr).not.toMatch(/WARNING|exist at the top level/);
      expect(readFileSync(join(out, "index.js"), "utf8").length).toBeGreaterThan(10_000);
    }
  });

  it("is up to date with wrangler.toml and .dev.vars.example (`npm run types -- --check`)", () => {
    const script = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts.types!;
    const args = script.replace(/^wrangler /, "").split(" ");
    const run = spawnSync(process.execPath, [join(ROOT, "node_modules/wrangler/bin/wrangler.js"), ...args, "--check"], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });
});
