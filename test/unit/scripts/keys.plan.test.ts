/**
 * `npm run keys -- add <name> --plan <plan>` refuses a plan the gateway's policy does not name,
 * as the admin API does (`POST /admin/keys`: 400 `unknown_plan`), and stores nothing: the
 * policy from the environment, `.dev.vars` or wrangler.toml (`--remote`: wrangler.toml's vars
 * of `--env`). Run as the command, with wrangler's local KV in a temporary folder.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const temp = () => {
  const d = mkdtempSync(join(tmpdir(), "tollbooth-keys-plan-"));
  dirs.push(d);
  return d;
};

/** Runs scripts/keys.ts with only the given environment (and PATH, HOME). */
function keys(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [join(ROOT, "scripts/keys.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
    env: { PATH: process.env.PATH, HOME: process.env.HOME, WRANGLER_SEND_METRICS: "false", CI: "1", ...env },
  });
}

const PRO = JSON.stringify({ plans: { pro: { bucket: { capacity: 100, refillPerSecond: 2 } } } });

describe("npm run keys -- add --plan", () => {
  it("refuses a plan the policy lacks, names the plans and where the policy came from, and stores nothing", () => {
    const state = temp();
    const run = keys(["add", "ci-bot", "--plan", "pro", "--local", "--persist-to", state]);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(
      `keys: the policy has no plan "pro" (plans: free; TOLLBOOTH_POLICY from ${join(ROOT, "wrangler.toml")} [vars] (unset: the default policy)): add it to the policy's "plans" first, or choose one of those\n`,
    );
    const list = keys(["list", "--local", "--persist-to", state]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toBe("");
    expect(list.stderr).toMatch(/keys: no keys/);
  });

  it("issues the key when the policy in the environment names the plan (what npm start runs with)", () => {
    const state = temp();
    const run = keys(["add", "ci-bot", "--plan", "pro", "--local", "--persist-to", state], { TOLLBOOTH_POLICY: PRO });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^tb_[A-Za-z0-9_-]{43}\n$/);
    const list = keys(["list", "--local", "--persist-to", state]);
    expect(list.stdout).toMatch(/^ci-bot\tpro\t/m);
    // The default plan is a plan of every policy.
    expect(keys(["add", "other", "--plan", "free", "--local", "--persist-to", state]).status).toBe(0);
  });

  it("reads the policy from .dev.vars beside the config for a local gateway", () => {
    const dir = temp();
    writeFileSync(
      join(dir, "wrangler.toml"),
      `name = "t"\nmain = "index.ts"\ncompatibility_date = "2026-10-01"\n\n[[kv_namespaces]]\nbinding = "TOLLBOOTH_KEYS"\n`,
    );
    writeFileSync(join(dir, ".dev.vars"), `TOLLBOOTH_POLICY='${JSON.stringify({ plans: { team: {} } })}'\n`);
    const run = keys(["add", "x", "--plan", "pro", "--local", "--config", join(dir, "wrangler.toml"), "--persist-to", join(dir, "state")]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^keys: the policy has no plan "pro" \(plans: team, free; TOLLBOOTH_POLICY from \.dev\.vars\)/);
  });

  it("with --remote, checks the deployed environment's policy in wrangler.toml (the environment's own is not it), before asking Cloudflare", () => {
    const run = keys(["add", "ci-bot", "--plan", "pro", "--remote", "--env", "production"], { TOLLBOOTH_POLICY: PRO });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(
      /^keys: the policy has no plan "pro" \(plans: free; TOLLBOOTH_POLICY from .*wrangler\.toml \[env\.production\.vars\] \(unset: the default policy\)\)/,
    );
    expect(run.stderr).not.toMatch(/CLOUDFLARE_API_TOKEN|wrangler kv/);
  });

  it("names a policy it cannot read", () => {
    const run = keys(["add", "x", "--plan", "pro", "--local", "--persist-to", temp()], {
      TOLLBOOTH_POLICY: '{"bucket":{"capacity":0,"refillPerSecond":1}}',
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^keys: cannot check --plan: TOLLBOOTH_POLICY\.bucket\.capacity.*\(TOLLBOOTH_POLICY from the environment\)/);
  });
});
