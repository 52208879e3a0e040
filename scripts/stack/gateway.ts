/**
 * Runs the gateway Worker for end-to-end tests with a real `wrangler dev`
 * (local mode, workerd), bound to 127.0.0.1 on free ports, with isolated
 * persistence (or a given persist dir, to restart a gateway over the same state).
 *
 *   const gw = await startGateway({ originUrl: origin.url, policy: {...} });
 *   await fetch(`${gw.url}/mcp`, ...);
 *   await gw.close();
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { toEnvFile } from "../start-settings.ts";
import { freePort, OutputTail } from "./ports.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WRANGLER_BIN = join(ROOT, "node_modules/wrangler/bin/wrangler.js");
/** The repository's `wrangler.toml` (default `config`). */
export const DEFAULT_WRANGLER_CONFIG = join(ROOT, "wrangler.toml");
const READY_TIMEOUT_MS = 30_000;
const READY_PATH = "/.well-known/tollbooth";

/** Options for {@link startGateway}. */
export interface GatewayOptions {
  /** Upstream MCP server base URL (`ORIGIN_URL`). */
  originUrl: string;
  /** `TOLLBOOTH_POLICY`, as JSON (omitted when undefined). */
  policy?: object;
  /** `TOLLBOOTH_SECRET`; a random 32-byte hex string when omitted. */
  secret?: string;
  /** Port for the gateway; a free one when omitted. */
  port?: number;
  /** Wrangler config path; defaults to the repo's `wrangler.toml`. */
  config?: string;
  /**
   * More settings, vars or secrets, by name (e.g. `TOLLBOOTH_ADMIN_TOKEN`). Every setting
   * (these, `ORIGIN_URL`, `TOLLBOOTH_SECRET`, `TOLLBOOTH_POLICY`) reaches `wrangler dev` in a
   * dotenv file of a private temporary folder (`--env-file`, deleted on close()), never on its
   * command line; a value no dotenv quoting can hold goes as `--var NAME:value`. They override
   * the config's `[vars]`; wrangler then reads no `.dev.vars` or `.env`.
   */
  vars?: Record<string, string>;
  /**
   * `--persist-to` directory (Durable Object storage). Given: it is kept on close(), so a
   * gateway started again with it (and the same `secret`) finds its callers' state.
   * Omitted: a fresh temporary directory, deleted on close().
   */
  persistDir?: string;
  /**
   * The network ceiling (`[[ratelimits]]` binding `TOLLBOOTH_NETWORK_LIMIT`) to run with:
   * `{ limit, period }` replaces wrangler.toml's, `null` removes the binding. Under Vitest
   * the default is `{ limit: 1_000_000, period: 60 }` (every test caller comes from
   * 127.0.0.1); elsewhere wrangler.toml's own. Only for the repository's wrangler.toml.
   */
  networkLimit?: { limit: number; period: 10 | 60 } | null;
  /**
   * Under Vitest, a policy that sets no `identity` gets
   * `identity: { strategies: ["api-key-unverified", "ip"] }`, so tests that tell callers
   * apart by invented `x-api-key` values keep one bucket per value (the opt-in, splittable
   * strategy). `false` leaves the policy as given. Only for the repository's wrangler.toml.
   */
  unverifiedKeys?: boolean;
  /** Called with each chunk of wrangler's stdout and stderr as it arrives (e.g. to print the decision log). */
  onOutput?: (chunk: string) => void;
}

const UNDER_VITEST = process.env.VITEST !== undefined;

/** Handle returned by {@link startGateway}. */
export interface Gateway {
  /** Base URL, e.g. `http://127.0.0.1:41235`. */
  url: string;
  /** The `TOLLBOOTH_SECRET` the worker was started with. */
  secret: string;
  /** Captured wrangler/workerd stdout+stderr so far (last 64 KiB). */
  output(): string;
  /** The `--persist-to` directory in use. */
  persistDir: string;
  /** Kills wrangler's whole process group and deletes the persist dir (unless it was given). */
  close(): Promise<void>;
}

/** Process groups still alive, killed if the test process exits without close(). */
const liveGroups = new Set<number>();
/** Settings folders (they hold secrets) still on disk, deleted then too. */
const liveSettings = new Set<string>();
process.once("exit", () => {
  for (const pid of liveGroups) killGroup(pid, "SIGKILL");
  for (const dir of liveSettings) rmSync(dir, { recursive: true, force: true });
});

/**
 * Spawns `wrangler dev` (via process.execPath) for `opts.config` and resolves
 * once `GET <url>/.well-known/tollbooth` answers 2xx (30 s timeout; the error
 * quotes wrangler's output).
 * @throws GatewayMisconfigured as soon as the Worker answers `500 misconfigured` (its message)
 */
export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  // A port freePort() found free can be taken by another process before wrangler binds it
  // (wrangler takes seconds to start; workerd and other wranglers bind port 0 meanwhile):
  // then try again with new ports, unless the caller chose the port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startGatewayOnce(opts);
    } catch (err) {
      const taken = err instanceof Error && /Address already in use/.test(err.message);
      if (!taken || opts.port !== undefined || attempt >= 3) throw err;
    }
  }
}

/** One attempt of {@link startGateway}, on fresh ports (unless `opts.port`). */
async function startGatewayOnce(opts: GatewayOptions): Promise<Gateway> {
  const port = opts.port ?? (await freePort());
  const inspectorPort = await freePort();
  const secret = opts.secret ?? randomBytes(32).toString("hex");
  const ownDir = opts.persistDir === undefined;
  const persistDir = opts.persistDir ?? (await mkdtemp(join(tmpdir(), "tollbooth-wrangler-")));
  const ownConfig = opts.config === undefined || opts.config === DEFAULT_WRANGLER_CONFIG;
  let policy = opts.policy;
  if (ownConfig && (opts.unverifiedKeys ?? UNDER_VITEST) && !(policy && "identity" in policy)) {
    policy = { ...policy, identity: { strategies: ["api-key-unverified", "ip"] } };
  }
  let config = opts.config ?? DEFAULT_WRANGLER_CONFIG;
  const networkLimit =
    opts.networkLimit !== undefined ? opts.networkLimit : UNDER_VITEST ? { limit: 1_000_000, period: 60 as const } : undefined;
  if (ownConfig && networkLimit !== undefined) config = await writeConfig(persistDir, networkLimit);
  const vars: Record<string, string> = {
    ...opts.vars,
    ORIGIN_URL: opts.originUrl,
    TOLLBOOTH_SECRET: secret,
    ...(policy !== undefined ? { TOLLBOOTH_POLICY: JSON.stringify(policy) } : {}),
  };
  // The settings in a file only this user can read (secrets stay off the command line).
  const settingsDir = await mkdtemp(join(tmpdir(), "tollbooth-settings-"));
  const settingsFile = join(settingsDir, "settings.env");
  const { text, unquotable } = toEnvFile(vars);
  await writeFile(settingsFile, text, { mode: 0o600 });
  await chmod(settingsDir, 0o700);
  liveSettings.add(settingsDir);
  const args = [
    WRANGLER_BIN,
    "dev",
    "--config",
    config,
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--persist-to",
    persistDir,
    "--show-interactive-dev-session=false",
    "--env-file",
    settingsFile,
    ...Object.entries(unquotable).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CI: "1",
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_HIDE_BANNER: "true", // also skips the npm update check
    CLOUDFLARE_CF_FETCH_ENABLED: "false", // don't fetch workers.cloudflare.com/cf.json
    WRANGLER_LOG_PATH: join(persistDir, "logs"),
    NO_COLOR: "1",
    // The settings file is read only when this is on (its default); nothing else of process.env.
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
  };
  // Vitest's NODE_ENV=test would be inlined into the worker bundle by wrangler.
  for (const key of Object.keys(env)) {
    if (key === "NODE_ENV" || key === "FORCE_COLOR" || key === "CLOUDFLARE_INCLUDE_PROCESS_ENV" || key.startsWith("VITEST"))
      delete env[key];
  }

  const output = new OutputTail();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    detached: true, // own process group, so workerd dies with it
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveGroups.add(child.pid!);
  child.stdout!.on("data", (c) => output.push(c));
  child.stderr!.on("data", (c) => output.push(c));
  if (opts.onOutput) {
    child.stdout!.on("data", (c: Buffer) => opts.onOutput!(c.toString("utf8")));
    child.stderr!.on("data", (c: Buffer) => opts.onOutput!(c.toString("utf8")));
  }

  const url = `http://127.0.0.1:${port}`;
  const close = async () => {
    await stopGroup(child);
    await rm(settingsDir, { recursive: true, force: true });
    liveSettings.delete(settingsDir);
    if (ownDir) await rm(persistDir, { recursive: true, force: true });
  };
  try {
    await waitUntilReady(url, child, output);
  } catch (err) {
    await close();
    throw err;
  }
  return { url, secret, persistDir, output: () => output.toString(), close };
}

/**
 * A copy of the repository's wrangler.toml, in `dir`, with the network ceiling replaced
 * (or removed, for `null`) and `main` and the `[assets]` directory pointing back at the repository.
 * @returns the copy's path
 */
export async function writeConfig(dir: string, networkLimit: { limit: number; period: 10 | 60 } | null, extra = ""): Promise<string> {
  let toml = await readFile(DEFAULT_WRANGLER_CONFIG, "utf8");
  toml = toml.replace(/^main = .*$/m, `main = ${JSON.stringify(join(ROOT, "workers/index.ts"))}`);
  // The admin dashboard's static files ([assets]) resolve from the repository too.
  toml = toml.replace(/^directory = "\.\/public"$/m, `directory = ${JSON.stringify(join(ROOT, "public"))}`);
  const block = /\[\[ratelimits\]\]\nname = "TOLLBOOTH_NETWORK_LIMIT"\nnamespace_id = "[^"]*"\nsimple = \{[^}]*\}\n/;
  if (!block.test(toml)) throw new Error("wrangler.toml has no TOLLBOOTH_NETWORK_LIMIT block to replace");
  toml = toml.replace(
    block,
    networkLimit === null
      ? ""
      : `[[ratelimits]]\nname = "TOLLBOOTH_NETWORK_LIMIT"\nnamespace_id = "1001"\nsimple = { limit = ${networkLimit.limit}, period = ${networkLimit.period} }\n`,
  );
  // Sections appended at the end (e.g. a KV namespace) must come before [vars] to stay top-level tables.
  if (extra) toml = toml.replace(/^\[vars\]$/m, `${extra}\n\n[vars]`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, "wrangler.toml");
  await writeFile(path, toml);
  return path;
}

/**
 * Thrown by {@link startGateway} when the Worker answered its first readiness probe with
 * `500 {"error":"misconfigured"}`: `message` is the Worker's own (`tollbooth is misconfigured: …`).
 */
export class GatewayMisconfigured extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GatewayMisconfigured";
  }
}

/** The `message` of a `{"error":"misconfigured","message":…}` body, else null. */
function misconfiguredMessage(text: string): string | null {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    return body.error === "misconfigured" && typeof body.message === "string" ? body.message : null;
  } catch {
    return null;
  }
}

/**
 * Polls `url + READY_PATH` until it returns 2xx; rejects on child exit or timeout, and at
 * once with {@link GatewayMisconfigured} when the Worker answers `500 misconfigured`.
 */
async function waitUntilReady(url: string, child: ChildProcess, output: OutputTail): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "no response yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`wrangler dev exited early (${child.exitCode ?? child.signalCode}):\n${output}`);
    }
    try {
      const res = await fetch(url + READY_PATH, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return;
      const text = await res.text();
      // The Worker is up and refuses its configuration: waiting changes nothing.
      const misconfigured = res.status === 500 ? misconfiguredMessage(text) : null;
      if (misconfigured !== null) throw new GatewayMisconfigured(misconfigured);
      last = `HTTP ${res.status}: ${text.slice(0, 500)}`;
    } catch (err) {
      if (err instanceof GatewayMisconfigured) throw err;
      last = String((err as Error).cause ?? err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`wrangler dev not ready at ${url}${READY_PATH} after ${READY_TIMEOUT_MS} ms (last: ${last}):\n${output}`);
}

/** SIGTERM the group, SIGKILL after 5 s, then SIGKILL any stragglers (workerd). */
async function stopGroup(child: ChildProcess): Promise<void> {
  const pid = child.pid!;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    killGroup(pid, "SIGTERM");
    const timer = setTimeout(() => killGroup(pid, "SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
  killGroup(pid, "SIGKILL");
  liveGroups.delete(pid);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: group already gone.
  }
}
