/**
 * API keys end to end: keys issued with `npm run keys` (scripts/keys.ts, through wrangler's
 * own KV CLI, into a local persist dir) in front of `wrangler dev` over the same persist dir,
 * with a counting origin (server-everything). A key works under its plan; an invented key
 * is no identity (it ends at the caller's network and shares that budget); a revoked key
 * falls through; the KV holds only hashes.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_WRANGLER_CONFIG, type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { KEY_MEMO_TTL_MS } from "../../shared/identity/index.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WRANGLER = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
const SECRET = randomBytes(32).toString("hex");
/** free: 2 calls, pro: 6 (practically no refill). */
const POLICY = {
  bucket: { capacity: 2, refillPerSecond: 0.0001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 2 },
  plans: { pro: { bucket: { capacity: 6, refillPerSecond: 0.0001 }, challenge: { credits: 6 } } },
  defaultPlan: "free",
};
const sha256hex = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const keyId = (key: string) => `key:${sha256hex(key).slice(0, 32)}`;

let dir: string;
let config: string;
let persistDir: string;
let origin: Origin;
let gw: Gateway;
const keys: Record<string, string> = {};

/** `wrangler.toml` copied with `main` pointing back at the repository and a local `TOLLBOOTH_KEYS` namespace. */
async function configWithKeys(to: string): Promise<string> {
  const original = await readFile(DEFAULT_WRANGLER_CONFIG, "utf8");
  let toml = original.replace(/^main = "(.*)"$/m, (_m, main: string) => `main = ${JSON.stringify(join(ROOT, main))}`);
  if (toml === original) throw new Error(`no main = "…" line in ${DEFAULT_WRANGLER_CONFIG}`);
  toml = toml.replace(/^directory = "\.\/public"$/m, `directory = ${JSON.stringify(join(ROOT, "public"))}`);
  if (!/binding\s*=\s*"TOLLBOOTH_KEYS"/.test(toml)) toml += '\n[[kv_namespaces]]\nbinding = "TOLLBOOTH_KEYS"\n';
  const path = join(to, "wrangler.toml");
  await writeFile(path, toml);
  return path;
}

/** `npm run keys -- <args>` against the test's local namespace, with the gateway's policy in the environment (what `--plan` is checked against, as for `npm start`). */
async function keysScript(...args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ["scripts/keys.ts", ...args, "--local", "--persist-to", persistDir, "--config", config], {
    cwd: ROOT,
    env: { ...process.env, TOLLBOOTH_POLICY: JSON.stringify(POLICY) },
  });
}

/** wrangler's own `kv key …` on the test's local namespace. */
async function kv(...args: string[]): Promise<string> {
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", WRANGLER_HIDE_BANNER: "true", NO_COLOR: "1" };
  const { stdout } = await run(
    process.execPath,
    [WRANGLER, "kv", "key", ...args, "--binding", "TOLLBOOTH_KEYS", "--local", "--persist-to", persistDir, "--config", config],
    { cwd: ROOT, env },
  );
  return stdout;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tollbooth-keys-"));
  persistDir = join(dir, "state");
  config = await configWithKeys(dir);
  for (const [name, plan] of [
    ["alice", "pro"],
    ["bob", undefined],
    ["carol", "pro"],
  ] as const) {
    const { stdout, stderr } = await keysScript("add", name, ...(plan ? ["--plan", plan] : []));
    const key = stdout.trim();
    expect(key, stderr).toMatch(/^tb_[A-Za-z0-9_-]{43}$/);
    keys[name] = key;
  }
  origin = await startOrigin();
  gw = await startGateway({ originUrl: origin.url, policy: POLICY, config, persistDir, secret: SECRET });
}, 150_000);

afterAll(async () => {
  await gw?.close();
  await origin?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

let rpcId = 0;
let session: Record<string, string>;

/** One MCP session at the origin (initialize and notifications/initialized cost 0), shared by the calls below. */
async function sessionHeaders(): Promise<Record<string, string>> {
  if (session) return session;
  session = await openRawSession(`${gw.url}/mcp`, { "cf-connecting-ip": "192.0.2.1" }, "api-keys-test");
  return session;
}

/** A priced `tools/call` of `echo` as `who`: the HTTP status. */
async function call(who: Record<string, string>): Promise<number> {
  const res = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...(await sessionHeaders()), ...who },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } }),
  });
  await res.text();
  return res.status;
}

/** Calls as `who` until the first non-200 (at most `max`): how many passed, and the status that stopped them. */
async function callsUntilRefused(who: Record<string, string>, max = 20): Promise<{ passed: number; stoppedBy: number | null }> {
  for (let passed = 0; passed < max; passed++) {
    const status = await call(who);
    if (status !== 200) return { passed, stoppedBy: status };
  }
  return { passed: max, stoppedBy: null };
}

const echoes = () => origin.counts()["tools/call:echo"] ?? 0;

async function status(who: Record<string, string>): Promise<Record<string, unknown>> {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/status`, { headers: who });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

/** A fresh address in TEST-NET-2, so each test draws on its own network budget. */
let ipSeq = Math.floor(Math.random() * 200);
const freshIp = () => `198.51.100.${++ipSeq}`;

describe("API keys issued with npm run keys, in wrangler dev", () => {
  it("name their caller (key:<hash>, verified) under the key's plan", async () => {
    const ip = freshIp();
    expect(await status({ "x-api-key": keys.alice!, "cf-connecting-ip": ip })).toMatchObject({
      caller: keyId(keys.alice!),
      plan: "pro",
      verified: true,
      network: `ip:${ip}`,
    });
    expect(await status({ "x-api-key": keys.bob!, "cf-connecting-ip": ip })).toMatchObject({
      caller: keyId(keys.bob!),
      plan: "free",
      verified: true,
    });
  });

  it("a pro key passes more calls than a free key, each its own bucket; refused calls never reach the origin", async () => {
    await sessionHeaders();
    const ip = freshIp();
    let before = echoes();
    const pro = await callsUntilRefused({ "x-api-key": keys.alice!, "cf-connecting-ip": ip });
    expect(pro).toEqual({ passed: 6, stoppedBy: 402 });
    expect(echoes() - before).toBe(6);
    before = echoes();
    const free = await callsUntilRefused({ "x-api-key": keys.bob!, "cf-connecting-ip": ip });
    expect(free).toEqual({ passed: 2, stoppedBy: 402 });
    expect(echoes() - before).toBe(2);
  });

  it("invented keys are no identity: from one address they share that network's one free budget", async () => {
    await sessionHeaders();
    const ip = freshIp();
    const invented = () => ({ "x-api-key": `tb_${randomBytes(32).toString("base64url")}`, "cf-connecting-ip": ip });
    expect(await status(invented())).toMatchObject({ caller: `ip:${ip}`, verified: false, plan: "free" });
    // A real key with one character changed is no key either.
    const near = keys.alice!.slice(0, -1) + (keys.alice!.endsWith("A") ? "B" : "A");
    expect(await status({ "x-api-key": near, "cf-connecting-ip": ip })).toMatchObject({ caller: `ip:${ip}`, verified: false });
    const before = echoes();
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push(await call(i % 3 === 0 ? { "x-api-key": near, "cf-connecting-ip": ip } : invented()));
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.slice(2).every((s) => s === 402)).toBe(true);
    expect(echoes() - before).toBe(2);
  });

  it("the KV namespace holds SHA-256 hashes and names, never a plain key", async () => {
    const [listed, aliceValue, script] = await Promise.all([kv("list"), kv("get", sha256hex(keys.alice!), "--text"), keysScript("list")]);
    const list = JSON.parse(listed.replace(/^[^[]*/, "")) as Array<{ name: string; metadata?: unknown }>;
    expect(list.map((k) => k.name).sort()).toEqual(Object.values(keys).map(sha256hex).sort());
    expect(list.find((k) => k.name === sha256hex(keys.alice!))?.metadata).toMatchObject({ name: "alice", plan: "pro" });
    expect(JSON.parse(aliceValue)).toEqual({ name: "alice", plan: "pro", created: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    // Nothing wrangler shows, nothing `keys list` prints, no byte of the persist dir holds a key.
    const shown = listed + aliceValue + script.stdout + script.stderr;
    expect(script.stdout).toMatch(/^alice\tpro\t/m);
    expect(script.stdout).toMatch(/^bob\t-\t/m);
    const stored: Buffer[] = [];
    for (const entry of await readdir(persistDir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile()) continue;
      try {
        stored.push(await readFile(join(entry.parentPath, entry.name)));
      } catch (err) {
        // The running gateway's SQLite may drop a transient file (`-shm`, `-wal`) between the listing and the read.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    expect(stored.some((bytes) => bytes.includes('"name":"alice"'))).toBe(true); // the KV's own files are among them
    for (const key of Object.values(keys)) {
      expect(shown).not.toContain(key.slice(3)); // nor its random part
      for (const bytes of stored) expect(bytes.includes(key.slice(3))).toBe(false);
    }
  });

  it(`a revoked key falls through within the memo time (${KEY_MEMO_TTL_MS / 1000} s), and at once on a restarted gateway`, async () => {
    const ip = freshIp();
    const carol = { "x-api-key": keys.carol!, "cf-connecting-ip": ip };
    expect(await status(carol)).toMatchObject({ caller: keyId(keys.carol!), verified: true, plan: "pro" });
    const revokedAt = Date.now();
    const { stderr } = await keysScript("revoke", "carol");
    expect(stderr).toMatch(/revoked 1 key/);
    // The running gateway: its isolate remembers the KV answer for at most KEY_MEMO_TTL_MS.
    let caller: unknown;
    while (Date.now() - revokedAt < KEY_MEMO_TTL_MS + 10_000) {
      caller = (await status(carol)).caller;
      if (caller === `ip:${ip}`) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(caller).toBe(`ip:${ip}`);
    // A gateway restarted over the same persist dir never knew it.
    await gw.close();
    gw = await startGateway({ originUrl: origin.url, policy: POLICY, config, persistDir, secret: SECRET });
    session = undefined as never;
    expect(await status(carol)).toMatchObject({ caller: `ip:${ip}`, verified: false, plan: "free" });
    expect(await status({ "x-api-key": keys.alice!, "cf-connecting-ip": ip })).toMatchObject({ caller: keyId(keys.alice!), plan: "pro" });
  }, 120_000);

  it("revoke by a target that is one key's name and another key's hash prefix revokes nothing (exit 1, both listed); a longer prefix revokes one", async () => {
    const alicePrefix = sha256hex(keys.alice!).slice(0, 12);
    const added = await keysScript("add", alicePrefix);
    const impostor = added.stdout.trim();
    expect(impostor).toMatch(/^tb_/);
    const refused = await keysScript("revoke", alicePrefix).then(
      () => null,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(refused?.code).toBe(1);
    expect(refused?.stderr).toContain("matches 2 keys; nothing was revoked");
    expect(refused?.stderr).toMatch(new RegExp(`^alice\t${alicePrefix}\tby hash prefix$`, "m"));
    expect(refused?.stderr).toMatch(new RegExp(`^${alicePrefix}\t${sha256hex(impostor).slice(0, 12)}\tby name$`, "m"));
    expect(JSON.parse(await kv("get", sha256hex(keys.alice!), "--text"))).toMatchObject({ name: "alice" });
    // The impostor by more of its own hash: revoked; alice stays.
    const done = await keysScript("revoke", sha256hex(impostor).slice(0, 16));
    expect(done.stderr).toMatch(/revoked 1 key \("[0-9a-f]{12}", [0-9a-f]{12}, by hash prefix\)/);
    const left = JSON.parse((await kv("list")).replace(/^[^[]*/, "")) as Array<{ name: string }>;
    expect(left.map((k) => k.name)).toContain(sha256hex(keys.alice!));
    expect(left.map((k) => k.name)).not.toContain(sha256hex(impostor));
  }, 60_000);
});
