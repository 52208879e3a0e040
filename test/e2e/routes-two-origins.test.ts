/**
 * One gateway in front of two MCP servers (TOLLBOOTH_ROUTES): two real server-everything
 * origins, each behind a counting pass-through, under routes `/a` (3 units, echo costs 1)
 * and `/b` (10 units, echo costs 2). One official SDK client per route, same
 * caller: each works, each gets its 402 after its own number of calls, and spending route
 * a's budget leaves route b's intact. A path no route claims, and spellings of a prefix,
 * never reach the other route's origin.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Everything, startEverything } from "../../scripts/stack/everything.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { connect, firstText } from "../helpers/mcp.ts";

/** A pass-through in front of one origin that logs what reached it. */
interface Counted {
  url: string;
  /** `METHOD path` of every request received, in order. */
  seen: string[];
  /** Echo tool calls received. */
  echoes(): number;
  close(): Promise<void>;
}

async function counted(origin: Everything): Promise<Counted> {
  const seen: string[] = [];
  let echoes = 0;
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (body.includes('"tools/call"') && body.includes('"echo"')) echoes++;
      const up = http.request({ host: "127.0.0.1", port: origin.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.rawHeaders);
        res.flushHeaders();
        r.pipe(res);
      });
      up.on("error", (err) => (res.headersSent ? res.destroy(err) : res.writeHead(502).end(String(err))));
      res.on("close", () => up.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    echoes: () => echoes,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const A_CALLS = 3;
const B_CALLS = 5;
let everythingA: Everything;
let everythingB: Everything;
let originA: Counted;
let originB: Counted;
let gateway: Gateway;

beforeAll(async () => {
  [everythingA, everythingB] = await Promise.all([startEverything(), startEverything()]);
  [originA, originB] = await Promise.all([counted(everythingA), counted(everythingB)]);
  const routes = [
    // Route a: 3 units, echo costs 1 → 3 calls. Route b: 10 units, echo costs 2 → 5 calls.
    { name: "a", match: { path: "/a" }, origin: originA.url, policy: { bucket: { capacity: A_CALLS, refillPerSecond: 0.0001 } } },
    {
      name: "b",
      match: { path: "/b" },
      origin: originB.url,
      policy: { bucket: { capacity: 2 * B_CALLS, refillPerSecond: 0.0001 }, costs: { tools: { echo: 2 } } },
    },
  ];
  gateway = await startGateway({
    // Not used with routes: a closed port, so a request that fell back to it would fail loudly.
    originUrl: "http://127.0.0.1:9",
    policy: { challenge: { difficulty: 8 } },
    vars: { TOLLBOOTH_ROUTES: JSON.stringify(routes) },
  });
});

afterAll(async () => {
  await gateway?.close();
  await Promise.all([originA?.close(), originB?.close()]);
  await Promise.all([everythingA?.close(), everythingB?.close()]);
});

/** Echo calls that succeed before the first 402 (asserts the 402 ends the run). */
async function callsUntil402(c: Awaited<ReturnType<typeof connect>>, label: string): Promise<number> {
  for (let n = 0; n < 20; n++) {
    let result: Awaited<ReturnType<typeof c.client.callTool>>;
    try {
      result = await c.client.callTool({ name: "echo", arguments: { message: `${label} ${n}` } });
    } catch (err) {
      // Only the call is inside the try: a wrong echo below is a failure, never taken for the 402.
      expect(String(err)).toMatch(/\b402\b/);
      return n;
    }
    expect(firstText(result)).toBe(`Echo: ${label} ${n}`);
  }
  throw new Error("no 402 after 20 calls");
}

describe("several origins behind one gateway", () => {
  it("each route works with the SDK client, under its own policy, with its own budget", async () => {
    const a = await connect(`${gateway.url}/a/mcp`, { apiKey: "routes-caller" });
    const b = await connect(`${gateway.url}/b/mcp`, { apiKey: "routes-caller" });
    try {
      expect(a.client.getServerVersion()?.name).toBe("mcp-servers/everything");
      expect(b.client.getServerVersion()?.name).toBe("mcp-servers/everything");
      // Route a's budget spent first…
      expect(await callsUntil402(a, "a")).toBe(A_CALLS);
      // …leaves route b's whole: b's own number of calls, then b's own 402.
      expect(await callsUntil402(b, "b")).toBe(B_CALLS);
      // And a is still spent (b's calls gave it nothing back).
      expect(await callsUntil402(a, "a again")).toBe(0);
    } finally {
      await Promise.all([a.close(true), b.close(true)]);
    }
    // Each origin got its own client's calls (the 402s reached neither), prefix removed.
    expect(originA.echoes()).toBe(A_CALLS);
    expect(originB.echoes()).toBe(B_CALLS);
    expect(originA.seen.every((s) => / \/mcp$/.test(s))).toBe(true);
    expect(originB.seen.every((s) => / \/mcp$/.test(s))).toBe(true);
  });

  it("a path no route claims gets 404 JSON and reaches neither origin", async () => {
    const before = [originA.seen.length, originB.seen.length];
    for (const path of ["/mcp", "/c/mcp", "/ab/mcp", "/.well-known/tollbooth/verify"]) {
      const res = await fetch(`${gateway.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": "routes-stranger" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: "x" } } }),
      });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBe("not_found");
    }
    expect([originA.seen.length, originB.seen.length]).toEqual(before);
  });

  it("spellings of a prefix stay on that prefix's route; an escaped slash is refused", async () => {
    const before = originB.seen.length;
    const post = (path: string, key: string) =>
      fetch(`${gateway.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": key },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
        }),
      });
    const seenA = originA.seen.length;
    const statuses: number[] = [];
    for (const path of ["/%61/mcp", "/A/mcp", "//a//mcp"]) {
      const res = await post(path, `spelling-${path}`);
      statuses.push(res.status);
      await res.body?.cancel();
    }
    // Each reached origin a, under route a's policy, with the rest of the path as sent (the
    // origin itself answers 404 to "//mcp"); none reached origin b.
    expect(statuses).toEqual([200, 200, 404]);
    expect(originA.seen.slice(seenA)).toEqual(["POST /mcp", "POST /mcp", "POST //mcp"]);
    const refused = await post("/b%2Fmcp", "spelling-escaped");
    expect(refused.status).toBe(400);
    expect(originB.seen.length).toBe(before);
    // The route list says where each route lives, and never where its origin is.
    const list = await (await fetch(`${gateway.url}/.well-known/tollbooth`)).text();
    expect(list).not.toContain(originA.url);
    expect(list).not.toContain(originB.url);
    expect(
      (JSON.parse(list) as { routes: Array<{ name: string; endpoint: string }> }).routes.map((r) => `${r.name} ${r.endpoint}`),
    ).toEqual(["a /a/mcp", "b /b/mcp"]);
  });
});
