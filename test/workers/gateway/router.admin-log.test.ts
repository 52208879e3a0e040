/**
 * Where several origins meet the admin API and the decision log (TOLLBOOTH_ROUTES with
 * TOLLBOOTH_ADMIN_TOKEN): the admin paths are the gateway's own, before any route; a caller's
 * state is looked up, reset and blocked per route (`?route=`); each decision record names its
 * route; what the router answers itself (a 404, the route list) counts against the network
 * ceiling like every other path.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { NetworkLimiter } from "../../../workers/env.ts";
import type { DecisionRecord } from "../../../workers/observe/types.ts";
import { freezeTime, freshIp, GW, gateway, ipIdentity, ORIGIN_URL, observeOrigin, post, request, toolCall } from "../support.ts";

const TOKEN = "admin-token-0123456789abcdef";
const auth = { authorization: `Bearer ${TOKEN}` };
const ROUTES = [
  { name: "a", match: { path: "/a" }, origin: `${ORIGIN_URL}/oa`, policy: { bucket: { capacity: 2, refillPerSecond: 0.001 } } },
  { name: "b", match: { path: "/b" }, origin: `${ORIGIN_URL}/ob`, policy: { bucket: { capacity: 5, refillPerSecond: 0.001 } } },
];
const TOP = { challenge: { difficulty: 4, credits: 3 } };
const gw = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES), TOLLBOOTH_ADMIN_TOKEN: TOKEN });

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** An admin request with the token. */
function admin(method: string, path: string, body?: unknown): Request {
  const headers = new Headers({ ...auth, "cf-connecting-ip": "192.0.2.250" });
  if (body !== undefined) headers.set("content-type", "application/json");
  return new Request(`${GW}/admin${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
}

describe("the admin API in front of several routes", () => {
  it("looks a caller up per route: its budget on route a is spent, on route b untouched", async () => {
    for (let i = 0; i < 2; i++) expect((await gw(post(toolCall(i), { ip, path: "/a/mcp" }))).status).toBe(200);
    const id = encodeURIComponent(ipIdentity(ip));
    const onA = await gw(admin("GET", `/callers/${id}?route=a`));
    expect(onA.status).toBe(200);
    expect(((await onA.json()) as { buckets: { free: { remaining: number; limit: number } } }).buckets.free).toMatchObject({
      remaining: 0,
      limit: 2,
    });
    const onB = await gw(admin("GET", `/callers/${id}?route=b`));
    expect(((await onB.json()) as { buckets: { free: { remaining: number; limit: number } } }).buckets.free).toMatchObject({
      remaining: 5,
      limit: 5,
    });
    // The admin paths never reach an origin.
    expect(origin.requests).toHaveLength(2);
  });

  it("needs ?route= naming a route (400 without, 404 for an unknown one), and resets only the route named", async () => {
    const id = encodeURIComponent(ipIdentity(ip));
    const missing = await gw(admin("GET", `/callers/${id}`));
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: "route_required", routes: ["a", "b"] });
    expect((await gw(admin("GET", `/callers/${id}?route=zzz`))).status).toBe(404);

    for (let i = 0; i < 2; i++) expect((await gw(post(toolCall(i), { ip, path: "/a/mcp" }))).status).toBe(200);
    expect((await gw(post(toolCall(3), { ip, path: "/a/mcp" }))).status).toBe(402);
    expect((await gw(admin("POST", `/callers/${id}/reset?route=b`))).status).toBe(200);
    expect((await gw(post(toolCall(4), { ip, path: "/a/mcp" }))).status).toBe(402);
    expect((await gw(admin("POST", `/callers/${id}/reset?route=a`))).status).toBe(200);
    expect((await gw(post(toolCall(5), { ip, path: "/a/mcp" }))).status).toBe(200);
  });

  it("blocks a caller on one route: 403 there and nothing reaches its origin; the other route still serves it", async () => {
    const id = encodeURIComponent(ipIdentity(ip));
    expect((await gw(admin("POST", `/callers/${id}/block?route=a`, { seconds: 60 }))).status).toBe(200);
    const blocked = await gw(post(toolCall(1), { ip, path: "/a/mcp" }));
    expect(blocked.status).toBe(403);
    expect(await blocked.json()).toMatchObject({ error: { data: { reason: "blocked" } } });
    expect(origin.requests).toHaveLength(0);
    expect((await gw(post(toolCall(2), { ip, path: "/b/mcp" }))).status).toBe(200);
    expect(origin.requests.map((r) => new URL(r.url).pathname)).toEqual(["/ob/mcp"]);
  });

  it("answers 401 without the token before looking at any route, and a route cannot shadow the admin path", async () => {
    const res = await gw(request("GET", "/admin/stats", { ip }));
    expect(res.status).toBe(401);
    const shadow = gateway(TOP, {
      TOLLBOOTH_ROUTES: JSON.stringify([{ name: "admin", match: { path: "/admin" }, origin: `${ORIGIN_URL}/oadmin` }]),
      TOLLBOOTH_ADMIN_TOKEN: TOKEN,
    });
    expect((await shadow(request("GET", "/admin/policy", { ip, headers: auth }))).status).toBe(200);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("the decision log with routes", () => {
  it("names the route in each record", async () => {
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
    await (await gw(post(toolCall(1), { ip, path: "/a/mcp" }))).arrayBuffer();
    await (await gw(post(toolCall(2), { ip, path: "/b/mcp" }))).arrayBuffer();
    const records = lines.filter((l) => l.startsWith('{"tollbooth":"decision",')).map((l) => JSON.parse(l) as DecisionRecord);
    expect(records.map((r) => [r.route, r.decision])).toEqual([
      ["a", "admitted"],
      ["b", "admitted"],
    ]);
  });
});

describe("the router's own answers in the decision log", () => {
  it("a 404 for a path no route claims, a 400 prefix spelling and the route list each write one line, and the metrics count them", async () => {
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
    const counted = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES), TOLLBOOTH_METRICS_FLUSH_MS: "100" });
    expect((await counted(post(toolCall(1), { ip, path: "/nowhere" }))).status).toBe(404);
    expect((await counted(post(toolCall(2), { ip, path: "/a%2Fmcp" }))).status).toBe(400);
    expect((await counted(request("GET", "/.well-known/tollbooth", { ip }))).status).toBe(200);
    const records = lines.filter((l) => l.startsWith('{"tollbooth":"decision",')).map((l) => JSON.parse(l) as DecisionRecord);
    expect(records.map((r) => [r.decision, r.reason, r.status, r.caller])).toEqual([
      ["bad_request", "no_route", 404, ipIdentity(ip)],
      ["bad_request", "invalid_path", 400, ipIdentity(ip)],
      ["own_endpoint", "routes", 200, ipIdentity(ip)],
    ]);
    const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals['requests_total{decision="bad_request"}']).toBe(2);
    expect(snap.totals['requests_total{decision="own_endpoint"}']).toBe(1);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("what the router answers itself is metered", () => {
  it("a 404 for a path no route claims, and the route list, count against the network ceiling", async () => {
    const seen: string[] = [];
    const limiter: NetworkLimiter = { limit: async ({ key }) => (seen.push(key), { success: seen.length <= 2 }) };
    const limited = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES), TOLLBOOTH_NETWORK_LIMIT: limiter });
    expect((await limited(post(toolCall(1), { ip, path: "/nowhere" }))).status).toBe(404);
    expect((await limited(request("GET", "/.well-known/tollbooth", { ip }))).status).toBe(200);
    const over = await limited(post(toolCall(2), { ip, path: "/nowhere" }));
    expect(over.status).toBe(429);
    expect(over.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await over.json()).toMatchObject({ reason: "network" });
    expect(seen).toEqual([ipIdentity(ip), ipIdentity(ip), ipIdentity(ip)]);
    expect(origin.requests).toHaveLength(0);
  });
});
