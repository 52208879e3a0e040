/**
 * The MCP conformance suite (`@modelcontextprotocol/conformance`, `server` mode, every active
 * scenario) passes through the gateway exactly as it passes direct: the same scenarios pass and
 * fail, against server-everything, with the default session and stream caps (buckets generous
 * enough for its calls). The suite opens a session per scenario and never ends one (about 30,
 * more than the default cap of 16): at the cap the gateway ends the caller's least recently
 * used idle session at the origin, so none of its sessions is refused and the origin never
 * holds more than the cap.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const CLI = fileURLToPath(new URL("../../node_modules/@modelcontextprotocol/conformance/dist/index.js", import.meta.url));
const DEFAULT_SESSION_CAP = 16;

let origin: Origin;
let gateway: Gateway;
let workdir: string;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({
    originUrl: origin.url,
    policy: { bucket: { capacity: 10_000, refillPerSecond: 1_000 }, ceiling: { capacity: 10_000, refillPerSecond: 1_000 } },
  });
  // The suite writes its results under its working directory.
  workdir = await mkdtemp(join(tmpdir(), "tollbooth-conformance-"));
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
  if (workdir) await rm(workdir, { recursive: true, force: true });
});

/** Runs the suite against `url`: each scenario's `{ passed, failed }` checks, from its summary. */
async function conformance(url: string): Promise<Record<string, { passed: number; failed: number }>> {
  const child = spawn(process.execPath, [CLI, "server", "--url", url], { cwd: workdir, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => (out += c));
  await new Promise<void>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", () => resolve());
  });
  const summary = out.slice(out.indexOf("=== SUMMARY ==="));
  expect(summary, out.slice(-2_000)).toContain("=== SUMMARY ===");
  const results: Record<string, { passed: number; failed: number }> = {};
  for (const m of summary.matchAll(/^[✓✗] (\S+): (\d+) passed, (\d+) failed$/gmu))
    results[m[1]!] = { passed: Number(m[2]), failed: Number(m[3]) };
  return results;
}

describe("the MCP conformance suite through the gateway", () => {
  it("the same scenarios pass and fail as direct; no session refused; the origin holds at most the default cap", async () => {
    const direct = await conformance(`${origin.url}/mcp`);
    expect(Object.keys(direct).length).toBeGreaterThan(20);
    expect(direct["server-initialize"]).toEqual({ passed: 1, failed: 0 });
    expect(direct["tools-call-simple-text"]).toEqual({ passed: 1, failed: 0 });

    origin.reset();
    const live = origin.liveSessions();
    const through = await conformance(`${gateway.url}/mcp`);
    expect(through).toEqual(direct);
    // More sessions than the cap were opened, and the origin never held more than the cap of them.
    expect(origin.counts().initialize).toBeGreaterThan(DEFAULT_SESSION_CAP);
    expect(origin.mostLiveSessions() - live).toBeLessThanOrEqual(DEFAULT_SESSION_CAP);
    expect(origin.liveSessions() - live).toBe(DEFAULT_SESSION_CAP);
  });
});
