/**
 * The free token bucket, as kept by the caller's `CallerState` Durable Object:
 * capacity then 402, refill over time, costs, per-caller isolation, and what the
 * `buckets` table holds (docs/durable-object.md).
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  authIdentity,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  parseLimitList,
  post,
  reasonOf,
  request,
  rows,
  rpc,
  toolCall,
} from "../support.ts";

let now: number;
let ip: string;
let origin: ReturnType<typeof observeOrigin>;

beforeEach(() => {
  now = freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** A small bucket: 3 units, 1 unit per second; a ceiling high enough to stay out of the way. */
const SMALL = { bucket: { capacity: 3, refillPerSecond: 1 }, ceiling: { capacity: 1000, refillPerSecond: 100 } };

async function status(send: (r: Request) => Promise<Response>, who: string, id: number | string = 1): Promise<number> {
  const res = await send(post(toolCall(id), { ip: who }));
  await res.body?.cancel();
  return res.status;
}

describe("free bucket", () => {
  it("admits `capacity` requests, then answers 402 over_budget without reaching the origin", async () => {
    const gw = gateway(SMALL);
    expect([await status(gw, ip, 1), await status(gw, ip, 2), await status(gw, ip, 3)]).toEqual([200, 200, 200]);
    expect(origin.requests).toHaveLength(3);
    const res = await gw(post(toolCall(4), { ip }));
    expect(await reasonOf(res)).toBe("over_budget");
    expect(origin.requests).toHaveLength(3);
  });

  it("the default policy admits 10 tool calls in a burst, then 402", async () => {
    const gw = gateway();
    const statuses: number[] = [];
    for (let i = 1; i <= 11; i++) statuses.push(await status(gw, ip, i));
    expect(statuses).toEqual([...Array(10).fill(200), 402]);
  });

  it("counts down RateLimit remaining with each admitted request", async () => {
    const gw = gateway(SMALL);
    const remaining: number[] = [];
    for (let i = 1; i <= 4; i++) {
      const res = await gw(post(toolCall(i), { ip }));
      remaining.push(parseLimitList(res.headers.get("ratelimit")!).free!.r!);
    }
    expect(remaining).toEqual([2, 1, 0, 0]);
  });

  it("refills at refillPerSecond: one unit per second admits one more request per second", async () => {
    const gw = gateway(SMALL);
    for (let i = 1; i <= 3; i++) expect(await status(gw, ip, i)).toBe(200);
    expect(await status(gw, ip, 4)).toBe(402);
    advance(999);
    expect(await status(gw, ip, 5)).toBe(402);
    advance(1);
    expect(await status(gw, ip, 6)).toBe(200);
    expect(await status(gw, ip, 7)).toBe(402);
    advance(2_000);
    expect([await status(gw, ip, 8), await status(gw, ip, 9), await status(gw, ip, 10)]).toEqual([200, 200, 402]);
  });

  it("never holds more than its capacity, however long the caller was idle", async () => {
    const gw = gateway(SMALL);
    expect(await status(gw, ip)).toBe(200);
    advance(3_600_000);
    const got: number[] = [];
    for (let i = 0; i < 5; i++) got.push(await status(gw, ip, i));
    expect(got).toEqual([200, 200, 200, 402, 402]);
  });

  it("waiting exactly Retry-After seconds is enough, and one second less is not", async () => {
    // 0.3 units/s: one missing unit takes 3.33 s → Retry-After 4.
    const gw = gateway({ bucket: { capacity: 2, refillPerSecond: 0.3 } });
    expect(await status(gw, ip, 1)).toBe(200);
    expect(await status(gw, ip, 2)).toBe(200);
    const refused = await gw(post(toolCall(3), { ip }));
    expect(refused.status).toBe(402);
    expect(refused.headers.get("retry-after")).toBe("4");
    advance(3_000);
    const early = await gw(post(toolCall(4), { ip }));
    expect(early.status).toBe(402);
    expect(early.headers.get("retry-after")).toBe("1");
    advance(1_000);
    expect(await status(gw, ip, 5)).toBe(200);
  });

  it("a refused request takes nothing from the bucket", async () => {
    const gw = gateway(SMALL);
    for (let i = 1; i <= 3; i++) expect(await status(gw, ip, i)).toBe(200);
    for (let i = 0; i < 20; i++) expect(await status(gw, ip, i)).toBe(402);
    advance(1_000);
    expect(await status(gw, ip)).toBe(200);
  });

  it("charges per method and per tool as the policy says; a batch costs the sum of its messages", async () => {
    const gw = gateway({
      bucket: { capacity: 10, refillPerSecond: 0.01 },
      costs: { default: 1, methods: { "resources/*": 2, "prompts/get": 0 }, tools: { heavy: 4, free: 0 } },
    });
    const remaining = async (body: unknown) => {
      const res = await gw(post(body, { ip }));
      expect(res.status).toBe(200);
      await res.body?.cancel();
      return parseLimitList(res.headers.get("ratelimit")!).free!.r;
    };
    expect(await remaining(toolCall(1, "heavy"))).toBe(6);
    expect(await remaining(toolCall(2, "free"))).toBe(6);
    expect(await remaining(rpc("resources/read", { uri: "file:///x" }, 3))).toBe(4);
    expect(await remaining(rpc("prompts/get", { name: "p" }, 4))).toBe(4);
    // Housekeeping a client sends on connect costs 0 by default (DEFAULT_METHOD_COSTS).
    expect(await remaining(rpc("completion/complete", {}, 5))).toBe(4);
    expect(await remaining(rpc("custom/thing", {}, 55))).toBe(3);
    expect(await remaining([toolCall(6), toolCall(7), rpc("notifications/progress", { progressToken: 1, progress: 1 })])).toBe(1);
    // A response sent by the client (to a server request) costs nothing.
    expect(await remaining({ jsonrpc: "2.0", id: 99, result: {} })).toBe(1);
    const res = await gw(post(toolCall(8, "heavy"), { ip }));
    expect(await reasonOf(res)).toBe("over_budget");
  });

  it("a batch that does not fit is refused whole and charges nothing", async () => {
    const gw = gateway(SMALL);
    expect(await status(gw, ip, 1)).toBe(200);
    const res = await gw(post([toolCall(2), toolCall(3), toolCall(4)], { ip }));
    expect(res.status).toBe(402);
    const body = (await res.json()) as Array<{ error: { data: { cost: number } } }>;
    expect(body[0]!.error.data.cost).toBe(3);
    // The 2 units left are still there.
    expect(await status(gw, ip, 5)).toBe(200);
    expect(await status(gw, ip, 6)).toBe(200);
    expect(await status(gw, ip, 7)).toBe(402);
    expect(origin.requests).toHaveLength(3);
  });

  it("GET and DELETE on the endpoint and OAuth metadata cost 0; other paths cost costs.otherPaths", async () => {
    const gw = gateway({ bucket: { capacity: 3, refillPerSecond: 0.01 }, costs: { otherPaths: 2 } });
    for (const [method, path] of [
      ["GET", "/mcp"],
      ["DELETE", "/mcp"],
      ["GET", "/.well-known/oauth-protected-resource"],
      ["GET", "/.well-known/oauth-authorization-server/tenant"],
    ] as const) {
      const res = await gw(request(method, path, { ip }));
      expect(res.status, `${method} ${path}`).toBe(200);
      expect(parseLimitList(res.headers.get("ratelimit")!).free!.r, `${method} ${path}`).toBe(3);
    }
    const other = await gw(request("GET", "/files/a.txt", { ip }));
    expect(other.status).toBe(200);
    expect(parseLimitList(other.headers.get("ratelimit")!).free!.r).toBe(1);
    const again = await gw(request("GET", "/files/b.txt", { ip }));
    expect(again.status).toBe(402);
    expect((await errorBody(again)).error.data!.cost).toBe(2);
  });

  it("stores the bucket in the caller's Durable Object: `free` and `ceiling` rows with units and updated_ms", async () => {
    const gw = gateway(SMALL);
    expect(await status(gw, ip)).toBe(200);
    expect(await status(gw, ip)).toBe(200);
    const stored = await rows<{ name: string; tokens: number; updated_ms: number }>(ipIdentity(ip), "buckets");
    expect(stored.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: "ceiling", tokens: 998, updated_ms: now },
      { name: "free", tokens: 1, updated_ms: now },
    ]);
    advance(500);
    expect(await status(gw, ip)).toBe(200);
    const free = (await rows<{ name: string; tokens: number; updated_ms: number }>(ipIdentity(ip), "buckets")).find(
      (r) => r.name === "free",
    );
    expect(free).toEqual({ name: "free", tokens: 0.5, updated_ms: now + 500 });
  });

  it("is per caller: another IP has its own full bucket", async () => {
    const gw = gateway(SMALL);
    for (let i = 0; i < 3; i++) expect(await status(gw, ip)).toBe(200);
    expect(await status(gw, ip)).toBe(402);
    const other = freshIp();
    expect([await status(gw, other), await status(gw, other), await status(gw, other), await status(gw, other)]).toEqual([
      200, 200, 200, 402,
    ]);
  });

  it("with authorization-unverified (opt-in), is keyed by Authorization before IP: same key from two IPs shares one bucket, two keys from one IP do not", async () => {
    const gw = gateway({ ...SMALL, identity: { strategies: ["authorization-unverified", "ip"] } });
    const call = (auth: string, who: string) => gw(post(toolCall(1), { ip: who, headers: { authorization: auth } }));
    const [ipA, ipB] = [freshIp(), freshIp()];
    expect((await call("Bearer alice", ipA)).status).toBe(200);
    expect((await call("Bearer alice", ipB)).status).toBe(200);
    expect((await call("Bearer alice", ipA)).status).toBe(200);
    expect((await call("Bearer alice", ipB)).status).toBe(402);
    expect((await call("Bearer bob", ipA)).status).toBe(200);
    // The state lives in the object named after the documented identity.
    const alice = await rows<{ name: string; tokens: number }>(await authIdentity("Bearer alice"), "buckets");
    expect(alice.find((r) => r.name === "free")!.tokens).toBe(0);
    expect(await rows(ipIdentity(ipA), "buckets")).toEqual([]);
  });

  it("with api-key-unverified (opt-in), is keyed by the API-key header", async () => {
    const gw = gateway({ ...SMALL, identity: { strategies: ["api-key-unverified", "ip"] } });
    const call = (key: string) => gw(post(toolCall(1), { ip: freshIp(), headers: { "x-api-key": key } }));
    expect([(await call("k1")).status, (await call("k1")).status, (await call("k1")).status, (await call("k1")).status]).toEqual([
      200, 200, 200, 402,
    ]);
    expect((await call("k2")).status).toBe(200);
  });

  it("puts an IPv6 /64 in one bucket", async () => {
    const gw = gateway(SMALL);
    const call = (addr: string) => gw(post(toolCall(1), { ip: addr }));
    expect((await call("2001:db8:aa:1::1")).status).toBe(200);
    expect((await call("2001:db8:aa:1::2")).status).toBe(200);
    expect((await call("2001:db8:aa:1:ffff:ffff:ffff:ffff")).status).toBe(200);
    expect((await call("2001:db8:aa:1::3")).status).toBe(402);
    expect((await call("2001:db8:aa:2::1")).status).toBe(200);
  });

  it("puts callers no strategy can name in one shared `anonymous` bucket", async () => {
    const gw = gateway(SMALL);
    const anon = () => gw(post(toolCall(1), { headers: { "cf-connecting-ip": "not-an-ip" } }));
    expect([
      (await anon()).status,
      (await gw(post(toolCall(2)))).status,
      (await anon()).status,
      (await gw(post(toolCall(3)))).status,
    ]).toEqual([200, 200, 200, 402]);
    expect((await rows<{ name: string; tokens: number }>("anonymous", "buckets")).find((r) => r.name === "free")!.tokens).toBe(0);
    expect(origin.requests.every((f) => f.headers["tollbooth-caller"] === "anonymous")).toBe(true);
  });

  it("does not let Mcp-Session-Id create a new identity", async () => {
    const gw = gateway(SMALL);
    for (let i = 0; i < 3; i++) expect((await gw(post(toolCall(i), { ip, headers: { "mcp-session-id": `s${i}` } }))).status).toBe(200);
    expect((await gw(post(toolCall(9), { ip, headers: { "mcp-session-id": "brand-new" } }))).status).toBe(402);
  });

  it("charges a tools/call sent to a spelling of the endpoint the origin also serves (/mcp/, /MCP) like one sent to /mcp", async () => {
    // Express (which serves the bundled origin, server-everything) routes case-insensitively
    // and ignores a trailing slash: POST /mcp/ and POST /MCP reach its MCP handler (checked
    // against server-everything on 127.0.0.1: initialize → 200 with an Mcp-Session-Id on
    // /mcp, /mcp/, /MCP and /Mcp/). Priced as "another path" (costs.otherPaths = 1), a tool
    // that costs 5 runs for 1 unit: the price is bypassed.
    const gw = gateway({ bucket: { capacity: 10, refillPerSecond: 0.001 }, costs: { tools: { heavy: 5 } } });
    const charged: Record<string, number> = {};
    for (const path of ["/mcp", "/mcp/", "/MCP"]) {
      const who = freshIp();
      const res = await gw(post(toolCall(1, "heavy"), { ip: who, path }));
      expect(res.status, path).toBe(200);
      charged[path] = 10 - parseLimitList(res.headers.get("ratelimit")!).free!.r!;
    }
    expect(origin.requests.map((f) => new URL(f.url).pathname)).toEqual(["/mcp", "/mcp/", "/MCP"]);
    expect(charged).toEqual({ "/mcp": 5, "/mcp/": 5, "/MCP": 5 });
  });

  it("admits exactly `capacity` of many concurrent requests", async () => {
    const gw = gateway({ bucket: { capacity: 10, refillPerSecond: 0.001 }, ceiling: { capacity: 1000, refillPerSecond: 1 } });
    const all = await Promise.all(Array.from({ length: 40 }, (_, i) => gw(post(toolCall(i), { ip }))));
    const statuses = all.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(10);
    expect(statuses.filter((s) => s === 402)).toHaveLength(30);
    expect(origin.requests).toHaveLength(10);
  });
});
