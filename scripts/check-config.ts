/**
 * `npm run check-config -- [--env <name>] [--config <path>] [--remote]`: check a
 * configuration before a deploy, print every problem, exit 1 when there is one (0 when none).
 *
 * Reads wrangler.toml (or `--config`) for the environment (`--env`, top level without), as
 * `wrangler deploy --env <name>` would, and the secrets of `.dev.vars.<env>` (else
 * `.dev.vars`) beside it and of the process environment (a value there wins). With
 * `--remote`, a secret stored with `wrangler secret put` (listed by `wrangler secret list`,
 * names only) counts as set too. Checks:
 * - ORIGIN_URL (or each route's `origin`): a URL, http(s), not the placeholder
 *   (`origin.example.com`), and, in a named environment, not loopback (127.0.0.1,
 *   localhost): a deployed Worker cannot reach this machine;
 * - TOLLBOOTH_POLICY and TOLLBOOTH_ROUTES as the Worker reads them (shared/policy/index.ts,
 *   shared/policy/routes.ts), each route's policy included, and `identity.jwt`'s issuers as the
 *   Worker prepares them (shared/identity/index.ts: URLs, public keys; nothing is fetched);
 * - TOLLBOOTH_SECRET set (≥ 16 bytes per secret) and no secret in [vars]; the secrets the
 *   policy needs (TOLLBOOTH_LIGHTNING_SECRET with `lightning`, each route's `originSecret`);
 * - the bindings: CALLER_BUCKET (CallerState), ORIGIN_GATE when a policy sets
 *   `originCeiling` (wrangler does not inherit bindings into an environment).
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseSecrets } from "../shared/credentials/keys.ts";
import { identityResolver } from "../shared/identity/index.ts";
import { isLoopback, originProblem, parseRoutes } from "../shared/policy/routes.ts";
import { type Policy, parsePolicy } from "../workers/schemes/policy.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WRANGLER_BIN = join(ROOT, "node_modules/wrangler/bin/wrangler.js");

/** Secrets the Worker reads (workers/env.ts); never in [vars]. */
export const SECRET_NAMES = [
  "TOLLBOOTH_SECRET",
  "TOLLBOOTH_ORIGIN_SECRET",
  "TOLLBOOTH_LIGHTNING_SECRET",
  "TOLLBOOTH_FACILITATOR_AUTH",
  "TOLLBOOTH_ADMIN_TOKEN",
] as const;

/** Options of `checkConfig`. */
export interface CheckOptions {
  /** Path of wrangler.toml. */
  config: string;
  /** The environment (`[env.<name>]`); undefined: the top level (`wrangler dev`). */
  env?: string | undefined;
  /** The process environment to read secrets from (default: none). */
  processEnv?: Readonly<Record<string, string | undefined>>;
  /** Names of secrets stored on Cloudflare (`wrangler secret list`), when known. */
  storedSecrets?: readonly string[];
}

/** What the Worker of an environment is configured with. */
interface Loaded {
  vars: Record<string, unknown>;
  durableObjects: Array<{ name: string; class_name: string }>;
}

/** Read wrangler.toml for an environment with wrangler's own reader. */
async function load(config: string, env: string | undefined): Promise<Loaded> {
  const { unstable_readConfig, experimental_readRawConfig } = await import("wrangler");
  if (env !== undefined) {
    // wrangler falls back to the top level for an environment the file does not have: refuse it.
    const { rawConfig } = experimental_readRawConfig({ config });
    if (!rawConfig.env || !Object.hasOwn(rawConfig.env, env)) throw new Error(`${config} has no [env.${env}]`);
  }
  const c = unstable_readConfig({ config, ...(env !== undefined ? { env } : {}) }, { hideWarnings: true });
  return {
    vars: { ...c.vars },
    durableObjects: (c.durable_objects?.bindings ?? []).map((b: { name: string; class_name: string }) => ({
      name: b.name,
      class_name: b.class_name,
    })),
  };
}

/**
 * `TOLLBOOTH_POLICY` as the gateway an operator means reads it: for a local gateway (`npm
 * start`, `wrangler dev`), the process environment, else `.dev.vars.<env>` / `.dev.vars` beside
 * the config, else the config's vars; for a deployed one (`remote`), the config's vars of `env`
 * only (what `wrangler deploy --env <env>` uploads).
 * @returns the value (undefined: unset, every default) and where it came from, in words
 * @throws Error when the config cannot be read or has no `[env.<env>]`
 */
export async function policySetting(options: {
  config: string;
  env?: string | undefined;
  remote: boolean;
  processEnv: Readonly<Record<string, string | undefined>>;
}): Promise<{ value: string | undefined; from: string }> {
  const where = `${options.config}${options.env !== undefined ? ` [env.${options.env}.vars]` : " [vars]"}`;
  if (!options.remote) {
    const env = options.processEnv.TOLLBOOTH_POLICY;
    if (env !== undefined && env.trim() !== "") return { value: env, from: "the environment" };
    const dir = dirname(options.config);
    for (const name of [...(options.env !== undefined ? [`.dev.vars.${options.env}`] : []), ".dev.vars"]) {
      if (!existsSync(join(dir, name))) continue;
      const value = readDotVars(readFileSync(join(dir, name), "utf8")).TOLLBOOTH_POLICY;
      if (value !== undefined) return { value, from: name };
      break;
    }
  }
  const vars = (await load(options.config, options.env)).vars;
  const value = typeof vars.TOLLBOOTH_POLICY === "string" && vars.TOLLBOOTH_POLICY.trim() !== "" ? vars.TOLLBOOTH_POLICY : undefined;
  return { value, from: value === undefined ? `${where} (unset: the default policy)` : where };
}

/**
 * Read a dotenv file (`NAME=value` lines, `#` comments, optional single or double quotes).
 * @returns the values by name; a blank value is left out (unset)
 */
export function readDotVars(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line);
    if (!m || line.trimStart().startsWith("#")) continue;
    let value = m[2]!;
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1);
    else value = value.replace(/\s+#.*$/, "");
    if (value !== "") out[m[1]!] = value;
  }
  return out;
}

/**
 * Check the configuration of one environment.
 * @returns every problem, one sentence each naming the setting (empty: none)
 */
export async function checkConfig(options: CheckOptions): Promise<string[]> {
  const problems: string[] = [];
  const where = options.env === undefined ? "the top level" : `[env.${options.env}]`;
  let loaded: Loaded;
  try {
    loaded = await load(options.config, options.env);
  } catch (err) {
    return [`wrangler config: ${(err as Error).message}`];
  }
  const dir = dirname(options.config);
  const devVarsPath =
    options.env !== undefined && existsSync(join(dir, `.dev.vars.${options.env}`))
      ? join(dir, `.dev.vars.${options.env}`)
      : join(dir, ".dev.vars");
  const devVars = existsSync(devVarsPath) ? readDotVars(readFileSync(devVarsPath, "utf8")) : {};
  const fromProcess = Object.fromEntries(
    Object.entries(options.processEnv ?? {}).filter((e): e is [string, string] => typeof e[1] === "string" && e[1] !== ""),
  );
  const secrets: Record<string, string> = { ...devVars, ...fromProcess };
  const stored = new Set(options.storedSecrets ?? []);
  const str = (name: string) => (typeof loaded.vars[name] === "string" ? (loaded.vars[name] as string) : undefined);
  const deployed = options.env !== undefined && options.env !== "dev";

  for (const name of SECRET_NAMES) {
    if (name in loaded.vars)
      problems.push(
        `${name}: a secret in ${where} [vars]; remove it and use \`wrangler secret put ${name}${options.env ? ` --env ${options.env}` : ""}\``,
      );
  }

  /** A secret the Worker needs: set locally (then checked) or stored. */
  const needSecret = (name: string, why: string, check?: (value: string) => void) => {
    const value = secrets[name] ?? str(name);
    if (value === undefined) {
      if (stored.has(name)) return;
      problems.push(
        `${name} is not set (${why}): put it in ${devVarsPath.replace(`${dir}/`, "")} or the environment, or store it with \`wrangler secret put ${name}${options.env ? ` --env ${options.env}` : ""}\` and pass --remote`,
      );
      return;
    }
    try {
      check?.(value);
    } catch (err) {
      problems.push((err as Error).message);
    }
  };
  needSecret("TOLLBOOTH_SECRET", "it signs challenges and access tokens", (v) => parseSecrets(v, "TOLLBOOTH_SECRET"));
  const originSecret = secrets.TOLLBOOTH_ORIGIN_SECRET;
  if (originSecret !== undefined) {
    try {
      parseSecrets(originSecret, "TOLLBOOTH_ORIGIN_SECRET");
    } catch (err) {
      problems.push((err as Error).message);
    }
  }

  /** `endpoint`: the policy's MCP endpoint; an origin URL ending in it would be asked for `/mcp/mcp`. */
  const checkOrigin = (label: string, url: unknown, endpoint: string | undefined) => {
    const problem = originProblem(url);
    if (problem !== null) return void problems.push(`${label} ${problem}`);
    const u = new URL(url as string);
    const path = u.pathname.replace(/\/+$/, "");
    if (endpoint !== undefined && endpoint !== "/" && path.endsWith(endpoint)) {
      problems.push(
        `${label} is the origin's base URL, without \`${endpoint}\`: the gateway appends each request's path, so ${u.origin}${path} would be asked for ${u.origin}${path}${endpoint}; set ${u.origin}${path.slice(0, -endpoint.length)}`,
      );
    }
    if (deployed && isLoopback(u.hostname)) {
      problems.push(
        `${label} is a loopback address (${u.host}): a Worker deployed to ${where} cannot reach this machine; set your MCP server's public URL`,
      );
    }
  };

  const policies: Policy[] = [];
  let top: Policy | undefined;
  try {
    top = parsePolicy(str("TOLLBOOTH_POLICY"));
    policies.push(top);
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (top !== undefined)
    try {
      identityResolver(top.identity);
    } catch (err) {
      problems.push((err as Error).message);
    }
  let routes: ReturnType<typeof parseRoutes> = null;
  try {
    routes = parseRoutes(str("TOLLBOOTH_ROUTES"), str("TOLLBOOTH_POLICY"));
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (routes === null && !problems.some((p) => p.startsWith("TOLLBOOTH_ROUTES"))) {
    checkOrigin("ORIGIN_URL", str("ORIGIN_URL"), top?.endpoint);
  }
  for (const [i, route] of (routes ?? []).entries()) {
    const label = `TOLLBOOTH_ROUTES[${i}] (${JSON.stringify(route.name)})`;
    // A route inherits TOLLBOOTH_POLICY: its own fields are checked once that one is good.
    let endpoint: string | undefined;
    if (top !== undefined)
      try {
        const routePolicy = parsePolicy(route.policy);
        policies.push(routePolicy);
        endpoint = routePolicy.endpoint;
      } catch (err) {
        problems.push((err as Error).message.replace(/^TOLLBOOTH_POLICY/, `${label}.policy`));
      }
    checkOrigin(`${label}.origin`, route.origin, endpoint);
    if (route.originSecret !== null) needSecret(route.originSecret, `${label}.originSecret`, (v) => parseSecrets(v, route.originSecret!));
  }
  if (policies.some((p) => p.lightning)) needSecret("TOLLBOOTH_LIGHTNING_SECRET", "the policy sets lightning (L402)");

  const binding = (name: string) => loaded.durableObjects.find((b) => b.name === name);
  if (binding("CALLER_BUCKET")?.class_name !== "CallerState") {
    problems.push(
      `CALLER_BUCKET: no Durable Object binding to CallerState in ${where} (wrangler does not inherit durable_objects into an environment: repeat the block)`,
    );
  }
  if (policies.some((p) => p.originCeiling) && binding("ORIGIN_GATE")?.class_name !== "OriginGate") {
    problems.push(`ORIGIN_GATE: a policy sets originCeiling but ${where} has no Durable Object binding to OriginGate`);
  }
  return problems;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: wrangler's colour codes start with ESC (0x1b)
const ANSI_COLOUR = /\x1b\[[0-9;]*m/g;

/**
 * Wrangler's own error out of its output: the text of its `✘ [ERROR] …` lines (colours
 * stripped), without the warnings before them or the "🪵 Logs were written to …" line after;
 * without an `[ERROR]` line, the last line that is not that one.
 * @param output wrangler's stderr and stdout
 */
export function wranglerError(output: string): string {
  const lines = output
    .replace(ANSI_COLOUR, "")
    .split(/\r?\n/)
    .map((l) => l.trim());
  const errors = lines.filter((l) => /^(✘ )?\[ERROR\]/.test(l)).map((l) => l.replace(/^(✘ )?\[ERROR\]\s*/, ""));
  if (errors.length > 0) return errors.join(" ");
  return lines.filter((l) => l !== "" && !/Logs were written to/.test(l)).at(-1) ?? "no output";
}

/** Names of the secrets stored for an environment (`wrangler secret list`). */
function storedSecrets(config: string, env: string | undefined): string[] {
  const run = spawnSync(
    process.execPath,
    [WRANGLER_BIN, "secret", "list", "--format", "json", "--config", config, ...(env ? ["--env", env] : [])],
    {
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", NO_COLOR: "1", FORCE_COLOR: "0" },
    },
  );
  if (run.status !== 0) throw new Error(`wrangler secret list failed: ${wranglerError(`${run.stderr}\n${run.stdout}`)}`);
  const list = JSON.parse(run.stdout.slice(run.stdout.indexOf("["))) as Array<{ name: string }>;
  return list.map((s) => s.name);
}

async function main(argv: string[]): Promise<number> {
  let env: string | undefined;
  let config = resolve(ROOT, "wrangler.toml");
  let remote = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--env" || a === "-e") env = argv[++i];
    else if (a.startsWith("--env=")) env = a.slice(6);
    else if (a === "--config" || a === "-c") config = resolve(argv[++i] ?? "");
    else if (a === "--remote") remote = true;
    else {
      console.error(`check-config: unknown argument ${a}\nusage: npm run check-config -- [--env <name>] [--config <path>] [--remote]`);
      return 2;
    }
  }
  if (env === "") env = undefined;
  let stored: string[] = [];
  if (remote) {
    try {
      stored = storedSecrets(config, env);
    } catch (err) {
      // Not fatal: a secret set locally still counts; one that is not is reported below.
      const message = (err as Error).message;
      const auth = /CLOUDFLARE_API_TOKEN|not authenticated|wrangler login|Authentication error|\[code: 10000\]/i.test(message);
      console.error(
        `check-config: could not list the stored secrets (${message})${auth ? "\n  log in first: `npx wrangler login`, or set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID): docs/deploy.md" : ""}`,
      );
    }
  }
  const problems = await checkConfig({ config, env, processEnv: process.env, storedSecrets: stored });
  const what = `${config}${env ? ` --env ${env}` : ""}`;
  if (problems.length === 0) {
    console.log(`check-config: ${what}: ok`);
    return 0;
  }
  console.error(`check-config: ${what}: ${problems.length} problem${problems.length === 1 ? "" : "s"}`);
  for (const p of problems) console.error(`  - ${p}`);
  return 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
