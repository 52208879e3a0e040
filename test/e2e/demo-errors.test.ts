/**
 * `npm run demo` (scripts/demo.ts) names the part that failed when it cannot connect — no
 * gateway (no connection), the gateway up but its origin down (502) or silent (504), the origin
 * answering 404 because its URL ends in `/mcp`, a GATEWAY_URL that is not an endpoint — and
 * prints its calls under a header: what admitted each (`bucket`, `402 → solved in … ms`,
 * `token (N left)`), "1 challenge" in the singular, and a tool's own error text.
 * One `wrangler dev` with a route per case, in front of a real server-everything.
 */
import { spawn } from "node:child_process";
import type { AddressInfo } from "node:net";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Everything, startEverything } from "../../scripts/stack/everything.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { freePort } from "../../scripts/stack/ports.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
let origin: Everything;
let gw: Gateway;
/** Accepts connections and never answers (the origin that times out). */
let silent: Server;
const sockets = new Set<Socket>();
let deadPort: number;

beforeAll(async () => {
  origin = await startEverything();
  silent = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  deadPort = await freePort();
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 2, refillPerSecond: 0.001 },
      challenge: { difficulty: 8, credits: 20 },
      originTimeoutMs: 1_000,
      identity: { strategies: ["ip"] },
    },
    vars: {
      TOLLBOOTH_ROUTES: JSON.stringify([
        { name: "ok", match: { path: "/ok" }, origin: origin.url },
        { name: "tools", match: { path: "/tools" }, origin: origin.url },
        { name: "down", match: { path: "/down" }, origin: `http://127.0.0.1:${deadPort}` },
        { name: "slow", match: { path: "/slow" }, origin: `http://127.0.0.1:${(silent.address() as AddressInfo).port}` },
        { name: "wrong", match: { path: "/wrong" }, origin: `${origin.url}/mcp` },
      ]),
    },
  });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await origin?.close();
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
});

/** Runs `npm run -s demo` with GATEWAY_URL and the given environment. */
function demo(gatewayUrl: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn("npm", ["run", "-s", "demo"], {
      cwd: ROOT,
      env: { PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`, HOME: process.env.HOME, GATEWAY_URL: gatewayUrl, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("npm run demo: which part failed", () => {
  it("no gateway at GATEWAY_URL: no connection, start it with npm start", async () => {
    const port = await freePort();
    const run = await demo(`http://127.0.0.1:${port}/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      `Cannot reach the gateway at http://127.0.0.1:${port} (ECONNREFUSED: no connection). Start it with \`npm start\` (it prints the URL to use), or set GATEWAY_URL.`,
    );
  });

  it("the gateway up, its origin down: the gateway's 502, not 'cannot reach the gateway'", async () => {
    const run = await demo(`${gw.url}/down/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      `The gateway at ${gw.url} is up, but its origin could not be reached (502: Bad gateway: the origin could not be reached). Start the origin, or fix ORIGIN_URL (npm start prints the origin it fronts).`,
    );
  });

  it("the gateway up, its origin silent: the gateway's 504", async () => {
    const run = await demo(`${gw.url}/slow/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      `The gateway at ${gw.url} is up, but its origin did not answer in time (504: Gateway timeout: the origin did not answer within 1000 ms). Start the origin, or fix ORIGIN_URL (npm start prints the origin it fronts).`,
    );
  });

  it("an origin URL ending in /mcp: the origin's own 404 for /mcp/mcp, and the fix", async () => {
    const run = await demo(`${gw.url}/wrong/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toMatch(
      new RegExp(
        `^The gateway at ${gw.url.replace(/\./g, "\\.")} forwarded to its origin, which answered 404 \\(Error Cannot POST /mcp/mcp\\): the origin has no MCP endpoint at /wrong/mcp behind it\\. ORIGIN_URL is the origin's base URL, without /wrong/mcp`,
      ),
    );
  });

  it("a GATEWAY_URL that is not an endpoint of the gateway: its endpoints listed", async () => {
    const run = await demo(`${gw.url}/nowhere/mcp`);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      `/nowhere/mcp is not an MCP endpoint of the gateway (it answered 404: No route for 127.0.0.1/nowhere/mcp). Its endpoints: ${["ok", "tools", "down", "slow", "wrong"].map((r) => `${gw.url}/${r}/mcp`).join(", ")}; set GATEWAY_URL to one.`,
    );
  });
});

describe("npm run demo: its lines", () => {
  it("say what admitted each call under a header, and count '1 challenge'", async () => {
    const run = await demo(`${gw.url}/ok/mcp`, { CALLS: "4" });
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split("\n");
    const header = lines.find((l) => l.startsWith("call "))!;
    expect(header.split(/\s{2,}/)).toEqual(["call", "HTTP", "admitted by", "result", "time"]);
    const calls = lines.filter((l) => l.startsWith("#"));
    expect(calls).toHaveLength(4);
    expect(calls[0]).toMatch(/^# {2}1 +200 +bucket +ok +\d+ ms$/);
    expect(calls[1]).toMatch(/^# {2}2 +200 +bucket +ok +\d+ ms$/);
    expect(calls[2]).toMatch(/^# {2}3 +402→200 +402 → solved in \d+ ms \(8 bits\) +ok +\d+ ms$/);
    expect(calls[3]).toMatch(/^# {2}4 +200 +token \(18 left\) +ok +\d+ ms$/);
    // Every call line has its columns where the header has them.
    for (const l of calls) for (const title of ["HTTP", "admitted by", "result"]) expect(l[header.indexOf(title) - 1]).toBe(" ");
    expect(run.stdout).toMatch(
      /^summary: 4\/4 calls succeeded: 2 from the bucket, 1 challenge solved \(median solve \d+ ms\), 1 on a token; [\d.]+ s in all, no human involved\.$/m,
    );
  });

  it("print a tool's own error text", async () => {
    const run = await demo(`${gw.url}/tools/mcp`, { CALLS: "1", TOOL: "get-sum" });
    expect(run.code).toBe(1);
    const line = run.stdout.split("\n").find((l) => l.startsWith("#  1"))!;
    expect(line).toMatch(/ tool error: MCP error -32602: Input val… +\d+ ms$/);
    // The whole text, below the line.
    expect(run.stdout).toMatch(/^ {7}tool error: MCP error -32602: Input validation error: Invalid arguments for tool get-sum: /m);
    expect(run.stdout).toMatch(/^summary: 0\/1 calls succeeded: 1 from the bucket, 0 challenges solved, 0 on a token;/m);
  });
});
