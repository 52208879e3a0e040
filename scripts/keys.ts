/**
 * Issue, list and revoke API keys of the `api-key` identity strategy (docs/identity.md).
 *
 *   npm run keys -- add <name> [--plan <plan>]   # prints a new key once (stdout), stores only its SHA-256
 *   npm run keys -- list                         # name, plan, created, hash prefix of every key
 *   npm run keys -- revoke <name | hash | hash prefix>  # deletes the one key it names
 *
 * Options passed through to wrangler: --local / --remote, --persist-to <dir>,
 * --config <path>, --env <name>. Keys live in the Workers KV namespace bound as
 * `TOLLBOOTH_KEYS`: key = SHA-256 hex of the API key (64 lowercase hex), value =
 * `{"name","plan"?,"created"}` (also stored as the entry's metadata, so `list` needs one call).
 * The plain key is never stored, never passed to wrangler and never logged; it is printed
 * once, alone on stdout (`KEY=$(npm run -s keys -- add ci-bot --local)`), the rest goes to stderr.
 * All KV access goes through wrangler's own CLI (`wrangler kv key put|list|get|delete --binding TOLLBOOTH_KEYS`).
 * `revoke` matches as the admin API does (shared/identity/api-keys.ts `matchKeyTarget`): a whole
 * SHA-256 first, then exact names and hash prefixes (≥ 12 hex, as `list` shows) together,
 * which must name exactly one key; an ambiguous target revokes nothing and lists the matches.
 * `add --plan <plan>` refuses a plan the gateway's policy does not name, as the admin API does
 * (the policy from the environment, `.dev.vars` or wrangler.toml; with `--remote`, wrangler.toml's
 * vars of `--env`).
 * Exit codes: 0 done, 1 wrangler failed, nothing to revoke or an ambiguous target, 2 bad usage
 * (a plan the policy lacks included).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KEY_NAME, KEY_PLAN, keyRecord, matchKeyTarget, newApiKey, readKeyRecord } from "../shared/identity/api-keys.ts";
import { parsePolicy } from "../workers/schemes/policy.ts";
import { policySetting } from "./check-config.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** Binding name of the KV namespace (wrangler.toml `[[kv_namespaces]]`). */
export const BINDING = "TOLLBOOTH_KEYS";
/** Prefix of generated keys; the key format lives in shared/identity/api-keys.ts (shared with the admin API). */
export { KEY_PREFIX } from "../shared/identity/api-keys.ts";

const NAME = KEY_NAME;
const PLAN = KEY_PLAN;

const USAGE = `usage: npm run keys -- <command> [options]
  add <name> [--plan <plan>]   issue a key: printed once, only its SHA-256 is stored
  list                         list issued keys (name, plan, created, hash prefix)
  revoke <target>              delete the one key a name, a whole hash or a hash prefix
                               (≥ 12 hex, as list shows) names; an ambiguous target
                               revokes nothing and lists the matches
options (passed to wrangler): --local | --remote, --persist-to <dir>, --config <path>, --env <name>`;

/** A stored key entry, as `list` shows it (`name` null: its record is unreadable, shown as `?`). */
interface Entry {
  sha256: string;
  name: string | null;
  plan?: string;
  created?: string;
}

/** A new API key: `tb_` + 32 random bytes, base64url (46 characters); shared/identity/api-keys.ts `newApiKey`. */
export function newKey(): string {
  return newApiKey();
}

/** The KV key of an API key: SHA-256 of its UTF-8 bytes, 64 lowercase hex (what the gateway looks up); synchronous twin of shared/identity/api-keys.ts `apiKeyHash`. */
export function keyHash(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/**
 * Whether the policy of the gateway the keys are for names `plan`, as the admin API checks it
 * (`POST /admin/keys`: 400 `unknown_plan`): TOLLBOOTH_POLICY from the environment, `.dev.vars`
 * or wrangler.toml (`--remote`: wrangler.toml's vars of `--env` only; check-config.ts
 * `policySetting`), its `plans` and `defaultPlan`.
 * @returns null when it does, else the sentence to print
 */
async function planProblem(
  plan: string,
  options: { config?: string | undefined; env?: string | undefined; remote: boolean },
): Promise<string | null> {
  let setting;
  try {
    setting = await policySetting({
      config: resolve(options.config ?? join(process.cwd(), "wrangler.toml")),
      env: options.env,
      remote: options.remote,
      processEnv: process.env,
    });
  } catch (err) {
    return `cannot check --plan: ${(err as Error).message}`;
  }
  let plans: string[];
  try {
    plans = Object.keys(parsePolicy(setting.value).plans);
  } catch (err) {
    return `cannot check --plan: ${(err as Error).message} (TOLLBOOTH_POLICY from ${setting.from})`;
  }
  if (plans.includes(plan)) return null;
  return `the policy has no plan ${JSON.stringify(plan)} (plans: ${plans.join(", ")}; TOLLBOOTH_POLICY from ${setting.from}): add it to the policy's "plans" first, or choose one of those`;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        plan: { type: "string" },
        local: { type: "boolean" },
        remote: { type: "boolean" },
        "persist-to": { type: "string" },
        config: { type: "string", short: "c" },
        env: { type: "string", short: "e" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    return usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.local && values.remote) return usage("--local and --remote exclude each other");
  const pass = [
    "--binding",
    BINDING,
    ...(values.local ? ["--local"] : []),
    ...(values.remote ? ["--remote"] : []),
    ...(values["persist-to"] !== undefined ? ["--persist-to", values["persist-to"]] : []),
    ...(values.config !== undefined ? ["--config", values.config] : []),
    ...(values.env !== undefined ? ["--env", values.env] : []),
  ];
  const [command, name, ...extra] = positionals;
  if (extra.length > 0) return usage(`unexpected argument ${JSON.stringify(extra[0])}`);
  if (command !== "add" && values.plan !== undefined) return usage("--plan is an option of add");

  if (command === "add") {
    if (name === undefined || !NAME.test(name)) return usage("add needs a <name> of 1-64 printable ASCII characters");
    if (values.plan !== undefined && !PLAN.test(values.plan)) return usage("--plan must match [A-Za-z0-9][A-Za-z0-9_.-]{0,31}");
    if (values.plan !== undefined) {
      const problem = await planProblem(values.plan, { config: values.config, env: values.env, remote: values.remote === true });
      if (problem !== null) {
        console.error(`keys: ${problem}`);
        return 2;
      }
    }
    const existing = list(pass);
    if (existing === null) return 1;
    if (existing.some((e) => e.name === name)) {
      console.error(`keys: a key named ${JSON.stringify(name)} exists; revoke it first or choose another name`);
      return 1;
    }
    const key = newKey();
    const hash = keyHash(key);
    const entry = keyRecord(name, values.plan, Date.now());
    const json = JSON.stringify(entry);
    if (!wrangler(["kv", "key", "put", hash, json, "--metadata", json, ...pass])) return 1;
    console.log(key);
    console.error(
      `keys: issued ${JSON.stringify(name)}${values.plan !== undefined ? ` (plan ${values.plan})` : ""}, stored as SHA-256 ${hash.slice(0, 12)}…; the key above is shown only this once.`,
    );
    return 0;
  }
  if (command === "list") {
    if (name !== undefined) return usage("list takes no argument");
    const entries = list(pass);
    if (entries === null) return 1;
    if (entries.length === 0) console.error("keys: no keys");
    for (const e of entries) console.log([e.name ?? "?", e.plan ?? "-", e.created ?? "-", e.sha256.slice(0, 12)].join("\t"));
    return 0;
  }
  if (command === "revoke") {
    if (name === undefined) return usage("revoke needs a <name>, a whole hash or a hash prefix");
    const entries = list(pass);
    if (entries === null) return 1;
    const found = matchKeyTarget(entries, name);
    if (found.kind === "none") {
      console.error(`keys: no key with the name, hash or hash prefix ${JSON.stringify(name)}`);
      return 1;
    }
    if (found.kind === "ambiguous") {
      console.error(
        `keys: ${JSON.stringify(name)} matches ${found.matches.length} keys; nothing was revoked (give a whole hash or more of it):`,
      );
      for (const m of found.matches) console.error([m.name ?? "?", m.sha256Prefix, `by ${m.matchedBy}`].join("\t"));
      return 1;
    }
    if (!wrangler(["kv", "key", "delete", found.sha256, ...pass])) return 1;
    console.error(
      `keys: revoked 1 key (${found.match.name === null ? "no name" : JSON.stringify(found.match.name)}, ${found.match.sha256Prefix}, by ${found.match.matchedBy}); gateways stop accepting it within their memo time (30 s) plus KV propagation (up to ~60 s).`,
    );
    return 0;
  }
  return usage(command === undefined ? "no command" : `unknown command ${JSON.stringify(command)}`);
}

/** Every entry of the namespace (64-hex keys only), from metadata or, without it, the value. Null when wrangler failed. */
function list(pass: string[]): Entry[] | null {
  const out = wrangler(["kv", "key", "list", ...pass]);
  if (out === null) return null;
  let keys: Array<{ name: string; metadata?: unknown }>;
  try {
    keys = JSON.parse(out.slice(out.indexOf("[")));
  } catch {
    console.error(`keys: could not read wrangler's key list:\n${out}`);
    return null;
  }
  const entries: Entry[] = [];
  for (const k of keys) {
    if (!/^[0-9a-f]{64}$/.test(k.name)) continue;
    let meta = readKeyRecord(k.metadata);
    if (meta === null) {
      const value = wrangler(["kv", "key", "get", k.name, "--text", ...pass]);
      try {
        meta = value === null ? null : readKeyRecord(JSON.parse(value));
      } catch {
        meta = null;
      }
    }
    entries.push({
      sha256: k.name,
      name: meta?.name ?? null,
      ...(meta?.plan !== undefined ? { plan: meta.plan } : {}),
      ...(meta?.created !== undefined ? { created: meta.created } : {}),
    });
  }
  return entries;
}

/** Runs wrangler with `args`; its stdout, or null (its output shown on stderr) when it failed. */
function wrangler(args: string[]): string | null {
  const env: NodeJS.ProcessEnv = { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", NO_COLOR: "1" };
  const res = spawnSync(process.execPath, [WRANGLER, ...args], { cwd: process.cwd(), env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  if (res.status === 0) return res.stdout;
  console.error(
    `keys: wrangler ${args.slice(0, 3).join(" ")} failed (${res.error?.message ?? `exit ${res.status ?? res.signal}`}):\n${res.stderr}${res.stdout}`,
  );
  return null;
}

function usage(problem: string): number {
  console.error(`keys: ${problem}\n${USAGE}`);
  return 2;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = await main(process.argv.slice(2));
