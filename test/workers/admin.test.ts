/**
 * The admin API (docs/admin.md), inside workerd: absent without `TOLLBOOTH_ADMIN_TOKEN`;
 * behind a constant-time bearer check with it; inspect, reset, block and unblock a caller;
 * issue and revoke API keys that then work (or stop working) as `api-key` identities; the
 * dashboard's shell, headers and static files; bad input. Refusals assert the origin got nothing.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { LEASE_MS, RENEW_BEFORE_MS } from "../../shared/limits/lease.ts";
import { adminTokenChecker, bearerOf, constantTimeEqual } from "../../workers/admin/auth.ts";
import type { Env } from "../../workers/env.ts";
import {
  advance,
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  post,
  request,
  solve,
  toolCall,
  WELL_KNOWN,
} from "./support.ts";

const TOKEN = "admin-token-0123456789abcdef-XYZ";
/** Free plan: 3 units, practically no refill; pro: 10 units. A solve buys 4 credits. */
const POLICY = {
  bucket: { capacity: 3, refillPerSecond: 0.0001 },
  ceiling: { capacity: 100, refillPerSecond: 10 },
  challenge: { difficulty: 4, credits: 4 },
  plans: { pro: { bucket: { capacity: 10, refillPerSecond: 0.0001 } } },
  defaultPlan: "free",
};

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN });
const auth = { authorization: `Bearer ${TOKEN}` };

/** An admin request (`path` under /admin) with the right token unless `headers` says otherwise. */
function adminReq(method: string, path: string, body?: unknown, headers: Record<string, string> = auth): Request {
  const h = new Headers(headers);
  h.set("cf-connecting-ip", "192.0.2.250");
  if (body !== undefined) h.set("content-type", "application/json");
  return new Request(`http://gw.test/admin${path}`, {
    method,
    headers: h,
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
}
const callerPath = (id: string) => `/callers/${encodeURIComponent(id)}`;

/** Rows in each of the caller object's own tables. */
async function rowCounts(id: string): Promise<number> {
  const ns = env.CALLER_BUCKET;
  return runInDurableObject(ns.get(ns.idFromName(id)), (_i, state) => {
    const sql = state.storage.sql;
    const tables = sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
      .toArray();
    return tables.reduce((n, { name }) => n + sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM "${name}"`).one().n, 0);
  });
}

beforeEach(() => {
  ip = freshIp();
  origin = observeOrigin();
});

describe("without TOLLBOOTH_ADMIN_TOKEN", () => {
  it("admin paths are ordinary gateway paths: priced like any other path and proxied", async () => {
    const plain = gateway(POLICY);
    const res = await plain(request("GET", "/admin/callers/ip%3A10.0.0.1", { ip, headers: auth }));
    expect(res.status).toBe(200);
    expect(res.headers.get("ratelimit")).toMatch(/"free";r=2/);
    expect(origin.requests.map((r) => new URL(r.url).pathname)).toEqual(["/admin/callers/ip%3A10.0.0.1"]);
    const dash = await plain(request("GET", "/admin", { ip }));
    expect(dash.headers.get("content-security-policy")).toBeNull();
    expect(origin.requests).toHaveLength(2);
  });
});

describe("the token", () => {
  it("a wrong or missing token gets 401 with WWW-Authenticate: Bearer, and changes nothing", async () => {
    const id = ipIdentity(ip);
    for (const headers of [
      {},
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: TOKEN },
      { authorization: `Basic ${TOKEN}` },
    ] as Array<Record<string, string>>) {
      const res = await gw(adminReq("POST", `${callerPath(id)}/block`, { seconds: 600 }, headers));
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer\b/);
      expect(((await res.json()) as { error: string }).error).toBe("unauthorized");
    }
    // Unknown paths are 401 too: nothing of the API is revealed without the token.
    expect((await gw(adminReq("GET", "/nothing-here", undefined, {}))).status).toBe(401);
    // Nothing was blocked, nothing created.
    expect(await rowCounts(id)).toBe(0);
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(1);
  });

  it("two Authorization headers (one right) are refused", async () => {
    const h = new Headers({ "cf-connecting-ip": "192.0.2.250" });
    h.append("authorization", `Bearer ${TOKEN}`);
    h.append("authorization", "Bearer other");
    expect((await gw(new Request("http://gw.test/admin/policy", { headers: h }))).status).toBe(401);
  });

  it("constantTimeEqual compares every byte; bearerOf reads one bearer token; the checker accepts only the token", async () => {
    const a = new Uint8Array([1, 2, 3, 4]);
    expect(constantTimeEqual(a, new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(constantTimeEqual(a, new Uint8Array([1, 2, 3, 5]))).toBe(false);
    expect(constantTimeEqual(a, new Uint8Array([0, 2, 3, 4]))).toBe(false);
    expect(constantTimeEqual(a, new Uint8Array([1, 2, 3]))).toBe(false);
    expect(constantTimeEqual(new Uint8Array(), new Uint8Array())).toBe(true);
    expect(bearerOf("bearer  abc")).toBe("abc");
    expect(bearerOf("Bearer abc, Bearer def")).toBeNull();
    expect(bearerOf(`Bearer ${"a".repeat(2000)}`)).toBeNull();
    const check = adminTokenChecker(TOKEN);
    expect(await check(`Bearer ${TOKEN}`)).toBe(true);
    expect(await check(`Bearer ${TOKEN} `)).toBe(false);
    expect(await check(null)).toBe(false);
    expect(await check("Bearer ")).toBe(false);
    expect(() => adminTokenChecker("short")).toThrow(/TOLLBOOTH_ADMIN_TOKEN is shorter than 16 bytes/);
    expect(() => adminTokenChecker("has spaces in it, not a bearer token")).toThrow(TypeError);
  });

  it("a token too short makes the gateway answer 500 naming it", async () => {
    const bad = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: "short" });
    const res = await bad(post(toolCall(1), { ip }));
    expect(res.status).toBe(500);
    expect(JSON.stringify(await res.json())).toMatch(/TOLLBOOTH_ADMIN_TOKEN/);
    expect(origin.requests).toHaveLength(0);
  });

  it("admin requests pass the network ceiling first: a network over it gets 429 before the token is checked", async () => {
    const keys: string[] = [];
    const limited = gateway(POLICY, {
      TOLLBOOTH_ADMIN_TOKEN: TOKEN,
      TOLLBOOTH_NETWORK_LIMIT: { limit: async ({ key }) => (keys.push(key), { success: false }) },
    });
    const res = await limited(adminReq("GET", "/policy"));
    expect(res.status).toBe(429);
    expect(keys).toEqual(["ip:192.0.2.250"]);
  });
});

describe("callers", () => {
  it("shows the buckets after some traffic, and an unknown caller without creating state", async () => {
    const id = ipIdentity(ip);
    const unknown = await gw(adminReq("GET", callerPath(id)));
    expect(unknown.status).toBe(200);
    expect(unknown.headers.get("cache-control")).toBe("no-store");
    const u = (await unknown.json()) as Record<string, any>;
    expect(u).toMatchObject({
      caller: id,
      known: false,
      plan: { name: "free", source: "unverified" },
      buckets: { free: { remaining: 3, limit: 3 } },
      blocked: null,
    });
    // An inspection creates no rows and schedules nothing.
    expect(await rowCounts(id)).toBe(0);

    for (let i = 0; i < 2; i++) expect((await gw(post(toolCall(i), { ip }))).status).toBe(200);
    const seen = (await (await gw(adminReq("GET", callerPath(id)))).json()) as Record<string, any>;
    expect(seen).toMatchObject({
      known: true,
      buckets: { free: { remaining: 1, limit: 3 }, ceiling: { limit: 100, remaining: 98 } },
      sessions: 0,
      streams: 0,
      credits: [],
    });
    expect(seen.metered).toEqual({ bucket: POLICY.bucket, ceiling: POLICY.ceiling, halfLifeSeconds: expect.any(Number) });
  });

  it("looking up, resetting or unblocking a caller never seen stores nothing: no table, no byte, no key", async () => {
    const rand = (bytes: number) => [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    const ids = [ipIdentity(ip), `key:${rand(16)}`, `jwt:${rand(16)}`, `auth:${rand(16)}`, `evm:0x${rand(20)}`];
    /** What the caller's object holds: its SQLite size (bytes), every table (sqlite_master) and the KV-API keys. */
    const storageOf = (id: string) =>
      runInDurableObject(env.CALLER_BUCKET.get(env.CALLER_BUCKET.idFromName(id)), async (_i, state) => ({
        bytes: state.storage.sql.databaseSize,
        tables: state.storage.sql
          .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
          .toArray()
          .map((r) => r.name),
        keys: [...(await state.storage.list()).keys()],
      }));
    for (const id of ids) {
      const before = await storageOf(id);
      expect(before).toMatchObject({ tables: [], keys: [] });
      const shown = await gw(adminReq("GET", callerPath(id)));
      expect(shown.status).toBe(200);
      expect(await shown.json()).toMatchObject({
        caller: id,
        known: false,
        credits: [],
        spentMarks: 0,
        solves: 0,
        sessions: 0,
        streams: 0,
        blocked: null,
      });
      expect(await (await gw(adminReq("POST", `${callerPath(id)}/reset`))).json()).toMatchObject({ reset: false });
      expect(await (await gw(adminReq("POST", `${callerPath(id)}/unblock`))).json()).toMatchObject({ unblocked: false });
      expect(await storageOf(id)).toEqual(before);
    }
    // The check can fail: one request of the caller stores its state.
    const empty = await storageOf(ids[0]!);
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(200);
    const used = await storageOf(ids[0]!);
    expect(used.tables).toEqual(expect.arrayContaining(["limits", "spent", "tokens", "solves", "slots", "config", "blocks"]));
    expect(used.bytes).toBeGreaterThan(empty.bytes);
    expect(((await (await gw(adminReq("GET", callerPath(ids[0]!)))).json()) as { known: boolean }).known).toBe(true);
  });

  it("reset fills the bucket again and forgets solves; paid credits stay", async () => {
    const id = ipIdentity(ip);
    for (let i = 0; i < 3; i++) expect((await gw(post(toolCall(i), { ip }))).status).toBe(200);
    const refused = await gw(post(toolCall(3), { ip }));
    expect(refused.status).toBe(402);
    const { header } = await solve(challengeOf(refused));
    expect((await gw(post(toolCall(4), { ip, headers: { "tollbooth-solution": header } }))).status).toBe(200);
    const before = (await (await gw(adminReq("GET", callerPath(id)))).json()) as Record<string, any>;
    expect(before.buckets.free.remaining).toBe(0);
    expect(before.solves).toBeGreaterThan(0);
    expect(before.credits).toEqual([{ id: expect.any(String), credits: 3, expiresMs: expect.any(Number) }]);
    expect(before.spentMarks).toBe(1);

    const reset = await gw(adminReq("POST", `${callerPath(id)}/reset`));
    expect(reset.status).toBe(200);
    const after = (await (await gw(adminReq("GET", callerPath(id)))).json()) as Record<string, any>;
    expect(after.buckets.free.remaining).toBe(3);
    expect(after.solves).toBe(0);
    expect(after.credits).toEqual(before.credits);
    expect(after.spentMarks).toBe(1);
    // The solution stays spent.
    const again = await gw(post(toolCall(5), { ip, headers: { "tollbooth-solution": header } }));
    expect(again.status).toBe(402);
    expect((await errorBody(again)).error.data!.reason).toBe("solution_spent");
    expect((await gw(post(toolCall(6), { ip }))).status).toBe(200);
  });

  it("block refuses the caller with 403 blocked before the origin or a credential; unblock admits it again", async () => {
    const id = ipIdentity(ip);
    const asked = Date.now();
    const blocked = await gw(adminReq("POST", `${callerPath(id)}/block`, { seconds: 120 }));
    expect(blocked.status).toBe(200);
    // 120 s from when the gateway handled it (between `asked` and now).
    const until = ((await blocked.json()) as { blockedUntilMs: number }).blockedUntilMs;
    expect(until).toBeGreaterThanOrEqual(asked + 120_000);
    expect(until).toBeLessThanOrEqual(Date.now() + 120_000);

    const res = await gw(post(toolCall(7), { ip }));
    expect(res.status).toBe(403);
    const body = await errorBody(res);
    expect(body.id).toBe(7);
    expect(body.error.data).toMatchObject({ reason: "blocked", retryAfter: expect.any(Number) });
    expect(body.error.data!.retryAfter as number).toBeGreaterThan(100);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(100);
    // A credential is not redeemed for a blocked caller: /verify refuses and the challenge stays unspent.
    const ch = await gw(request("GET", `${WELL_KNOWN}/challenge`, { ip }));
    expect(ch.status).toBe(200);
    expect(origin.requests).toHaveLength(0);
    const shown = (await (await gw(adminReq("GET", callerPath(id)))).json()) as Record<string, any>;
    expect(shown.blocked).toMatchObject({ untilMs: expect.any(Number), retryAfter: expect.any(Number) });
    expect(shown.spentMarks).toBe(0);

    const lifted = await gw(adminReq("POST", `${callerPath(id)}/unblock`));
    expect(await lifted.json()).toMatchObject({ caller: id, unblocked: true });
    expect((await gw(post(toolCall(8), { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(1);
  });

  it("a blocked caller's solution is not redeemed (403, its single use not spent)", async () => {
    const id = ipIdentity(ip);
    for (let i = 0; i < 3; i++) await gw(post(toolCall(i), { ip }));
    const refused = await gw(post(toolCall(3), { ip }));
    const { header } = await solve(challengeOf(refused));
    await gw(adminReq("POST", `${callerPath(id)}/block`, { seconds: 60 }));
    const res = await gw(post(toolCall(4), { ip, headers: { "tollbooth-solution": header } }));
    expect(res.status).toBe(403);
    expect(origin.requests).toHaveLength(3);
    await gw(adminReq("POST", `${callerPath(id)}/unblock`));
    // Still unspent: it pays now.
    expect((await gw(post(toolCall(5), { ip, headers: { "tollbooth-solution": header } }))).status).toBe(200);
    expect(origin.requests).toHaveLength(4);
  });

  it("bad input: caller id, body, path, method", async () => {
    const cases: Array<[Request, number, RegExp]> = [
      [adminReq("GET", "/callers/bogus"), 400, /caller id/],
      [adminReq("GET", `/callers/${encodeURIComponent("ip:010.0.0.1")}`), 400, /caller id/],
      [adminReq("GET", `/callers/${encodeURIComponent("ip:10.0.0.1/32")}`), 400, /use ip:10\.0\.0\.1/],
      [adminReq("GET", `/callers/${encodeURIComponent("key:ABC")}`), 400, /32 lowercase hex/],
      [adminReq("GET", "/callers/%E0%A4%A"), 400, /percent-encoding/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/block`, "{not json"), 400, /not JSON/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/block`), 400, /needs a JSON body/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/block`, { seconds: 31 * 24 * 3600 }), 400, /30 days/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/block`, { seconds: 1.5 }), 400, /integer/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/block`, { seconds: 5, extra: 1 }), 400, /unknown member/],
      [adminReq("POST", `${callerPath("ip:10.0.0.1")}/explode`), 404, /no action/],
      [adminReq("GET", "/nowhere"), 404, /no admin path/],
      [adminReq("DELETE", callerPath("ip:10.0.0.1")), 405, /use GET/],
      [adminReq("GET", `${callerPath("ip:10.0.0.1")}/block`), 405, /use POST/],
      [adminReq("POST", "/stats"), 405, /use GET/],
      [adminReq("PUT", "/keys"), 405, /use GET, POST/],
      [adminReq("POST", "/keys", { name: "x", plan: "gold" }), 400, /has no plan .*gold/],
      [adminReq("POST", "/keys", { name: "" }), 400, /name must be/],
      [adminReq("POST", "/keys", { name: "x", admin: true }), 400, /unknown member/],
    ];
    for (const [req, status, message] of cases) {
      const res = await gw(req);
      const text = await res.text();
      expect({ url: req.url, status: res.status }).toEqual({ url: req.url, status });
      expect(res.headers.get("content-type")).toBe("application/json");
      expect(text).toMatch(message);
    }
    expect((await gw(adminReq("DELETE", callerPath("ip:10.0.0.1")))).headers.get("allow")).toBe("GET");
    // Every id form the gateway makes is accepted, in its canonical spelling.
    for (const id of [
      "ip:2001:db8:1:2::/64",
      "ip:10.1.0.0/16",
      "anonymous",
      `jwt:${"a".repeat(32)}`,
      `auth:${"0".repeat(32)}`,
      `evm:0x${"b".repeat(40)}`,
    ]) {
      expect((await gw(adminReq("GET", callerPath(id)))).status, id).toBe(200);
    }
    const upper = await gw(adminReq("GET", callerPath("ip:2001:DB8:1:2::/64")));
    expect(upper.status).toBe(400);
    expect(await upper.text()).toContain("use ip:2001:db8:1:2::/64");
    expect(await rowCounts("ip:10.0.0.1")).toBe(0);
    expect(origin.requests).toHaveLength(0);
  });

  it("the admin path can be moved, and must not be the MCP endpoint", async () => {
    const moved = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_ADMIN_PATH: "/ops/tollbooth" });
    expect((await moved(new Request("http://gw.test/ops/tollbooth/policy", { headers: auth }))).status).toBe(200);
    // /admin is then an ordinary path (priced and proxied).
    expect((await moved(request("GET", "/admin/policy", { ip, headers: auth }))).headers.get("ratelimit")).toMatch(/"free";r=2/);
    expect(origin.requests).toHaveLength(1);
    for (const path of ["/mcp", "/MCP", "/", "/.well-known/tollbooth", "/admin/", "/a/../b"]) {
      const bad = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_ADMIN_PATH: path });
      const res = await bad(post(toolCall(1), { ip }));
      expect(res.status, path).toBe(500);
      expect(JSON.stringify(await res.json())).toMatch(/TOLLBOOTH_ADMIN_PATH/);
    }
    expect(origin.requests).toHaveLength(1);
  });
});

describe("blocks over time", () => {
  const stubOf = (id: string) => env.CALLER_BUCKET.get(env.CALLER_BUCKET.idFromName(id));

  it("a block ends by itself; the alarm keeps the state until then and drops it after", async () => {
    const t0 = freezeTime();
    const id = ipIdentity(ip);
    await gw(adminReq("POST", `${callerPath(id)}/block`, { seconds: 30 }));
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(403);
    // An alarm before the block's end does not drop it.
    advance(10_000);
    expect(await runDurableObjectAlarm(stubOf(id))).toBe(true);
    expect((await gw(post(toolCall(2), { ip }))).status).toBe(403);
    advance(21_000);
    expect(await runDurableObjectAlarm(stubOf(id))).toBe(true);
    expect(await rowCounts(id)).toBe(0);
    expect(Date.now()).toBe(t0 + 31_000);
    expect((await gw(post(toolCall(3), { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(1);
  });

  it("a blocked caller gets no new lease; a lease held before admits for at most its remaining time (≤ LEASE_MS, 10 s)", async () => {
    freezeTime();
    const id = ipIdentity(ip);
    const leased = gateway(
      { ...POLICY, leases: true, bucket: { capacity: 1000, refillPerSecond: 100 }, ceiling: { capacity: 1000, refillPerSecond: 100 } },
      { TOLLBOOTH_ADMIN_TOKEN: TOKEN },
    );
    // A busy caller gets a lease.
    for (let i = 0; i < 20; i++) {
      expect((await leased(post(toolCall(i), { ip }))).status).toBe(200);
      advance(50);
    }
    const want = {
      nowMs: Date.now(),
      bucket: { capacity: 1000, refillPerSecond: 100 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      lease: { units: 50, ceilingUnits: 50, returned: { units: 0, ceilingUnits: 0 } },
    };
    expect((await stubOf(id).renew(want)).units).toBe(50);
    await leased(adminReq("POST", `${callerPath(id)}/block`, { seconds: 600 }));
    // Renewal after the block: nothing granted.
    const grant = await stubOf(id).renew({
      nowMs: Date.now(),
      bucket: { capacity: 1000, refillPerSecond: 100 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      lease: { units: 50, ceilingUnits: 50, returned: { units: 0, ceilingUnits: 0 } },
    });
    expect(grant).toMatchObject({ units: 0, ceilingUnits: 0, revoked: true });
    // Past the lease's lifetime, every request is refused.
    advance(LEASE_MS + 1);
    for (let i = 0; i < 5; i++) expect((await leased(post(toolCall(100 + i), { ip }))).status).toBe(403);
    const before = origin.requests.length;
    advance(1_000);
    expect((await leased(post(toolCall(200), { ip }))).status).toBe(403);
    expect(origin.requests).toHaveLength(before);
  });
});

describe("a block revokes leases at their next renewal", () => {
  it("the isolate's renewal after the block empties its lease: the caller's next request is refused 403 before the lease would have expired", async () => {
    freezeTime();
    const id = ipIdentity(ip);
    const leased = gateway(
      { ...POLICY, leases: true, bucket: { capacity: 1000, refillPerSecond: 100 }, ceiling: { capacity: 1000, refillPerSecond: 100 } },
      { TOLLBOOTH_ADMIN_TOKEN: TOKEN },
    );
    for (let i = 0; i < 20; i++) {
      expect((await leased(post(toolCall(i), { ip }))).status).toBe(200);
      advance(50);
    }
    expect((await leased(adminReq("POST", `${callerPath(id)}/block`, { seconds: 600 }))).status).toBe(200);
    // Into the lease's last quarter: this request is still admitted from it and starts its renewal, which the block revokes.
    advance(LEASE_MS - RENEW_BEFORE_MS);
    expect((await leased(post(toolCall(100), { ip }))).status).toBe(200);
    const before = origin.requests.length;
    advance(10);
    for (let i = 0; i < 3; i++) expect((await leased(post(toolCall(200 + i), { ip }))).status).toBe(403);
    expect(origin.requests).toHaveLength(before);
  });
});

describe("API keys", () => {
  it("an issued key works as an api-key identity under its plan; listing shows no key; revoked, it stops working", async () => {
    const issued = await gw(adminReq("POST", "/keys", { name: `bot-${ip}`, plan: "pro" }));
    expect(issued.status).toBe(201);
    const { key, caller, sha256Prefix } = (await issued.json()) as { key: string; caller: string; sha256Prefix: string };
    expect(key).toMatch(/^tb_[A-Za-z0-9_-]{43}$/);
    expect(caller).toMatch(/^key:[0-9a-f]{32}$/);
    // KV holds the hash only.
    const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    expect(await env.TOLLBOOTH_KEYS!.get(digest, "json")).toMatchObject({ name: `bot-${ip}`, plan: "pro" });
    expect(caller).toBe(`key:${digest.slice(0, 32)}`);
    // The same name again: 409.
    expect((await gw(adminReq("POST", "/keys", { name: `bot-${ip}` }))).status).toBe(409);

    const list = await (await gw(adminReq("GET", "/keys"))).text();
    expect(list).toContain(sha256Prefix);
    expect(list).not.toContain(key);
    expect(list).not.toContain(digest);

    const status = await gw(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "x-api-key": key } }));
    expect(await status.json()).toMatchObject({ caller, plan: "pro", verified: true });
    const shown = (await (await gw(adminReq("GET", callerPath(caller)))).json()) as Record<string, any>;
    expect(shown.plan).toMatchObject({ name: "pro", source: "key", keyName: `bot-${ip}` });
    expect(shown.buckets.free.limit).toBe(10);

    const revoked = await gw(adminReq("DELETE", `/keys/${encodeURIComponent(`bot-${ip}`)}`));
    expect(await revoked.json()).toMatchObject({ revoked: [sha256Prefix] });
    expect(await env.TOLLBOOTH_KEYS!.get(digest)).toBeNull();
    // This isolate's app remembers the key for KEY_MEMO_TTL_MS (30 s, docs/identity.md); a
    // fresh app (another isolate) no longer knows it: the caller is its network again.
    const fresh = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_ADMIN_PATH: "/admin2" } as Partial<Env>);
    const after = await fresh(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "x-api-key": key } }));
    expect(await after.json()).toMatchObject({ caller: ipIdentity(ip), plan: "free", verified: false });
    expect((await gw(adminReq("DELETE", `/keys/${encodeURIComponent(`bot-${ip}`)}`))).status).toBe(404);
  });
});

describe("revoking a key: whole hash, exact name, or an unambiguous hash prefix", () => {
  const hexOf = (bytes: number) => [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const sha256Hex = async (text: string) =>
    [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");
  /** Issue a key through the API: its name, key, whole hash and listed prefix. */
  async function issue(name: string): Promise<{ name: string; key: string; sha256: string; prefix: string }> {
    const res = await gw(adminReq("POST", "/keys", { name }));
    expect(res.status).toBe(201);
    const { key, sha256Prefix } = (await res.json()) as { key: string; sha256Prefix: string };
    return { name, key, sha256: await sha256Hex(key), prefix: sha256Prefix };
  }
  /** A key stored directly with a chosen hash (two hashes sharing a prefix cannot be issued on purpose). */
  async function store(sha256: string, name: string): Promise<void> {
    const record = { name, created: new Date().toISOString() };
    await env.TOLLBOOTH_KEYS!.put(sha256, JSON.stringify(record), { metadata: record });
  }
  const listed = async () =>
    ((await (await gw(adminReq("GET", "/keys"))).json()) as { keys: Array<{ name: string; sha256Prefix: string }> }).keys;
  const revoke = (target: string) => gw(adminReq("DELETE", `/keys/${encodeURIComponent(target)}`));

  it("a name that equals another key's hash prefix is ambiguous: 409 listing both, nothing revoked", async () => {
    const a = await issue(`a-${hexOf(4)}`);
    // The issue's case: a key named like another key's hash prefix.
    const b = await issue(a.prefix);
    const before = await listed();
    const res = await revoke(a.prefix);
    expect(res.status).toBe(409);
    const body = (await res.json()) as { error: string; message: string; matches: unknown[] };
    expect(body.error).toBe("ambiguous");
    expect(body.matches).toEqual(
      [
        { name: a.name, sha256Prefix: a.prefix, matchedBy: "hash prefix" },
        { name: b.name, sha256Prefix: b.prefix, matchedBy: "name" },
      ].sort((x, y) => (x.sha256Prefix < y.sha256Prefix ? -1 : 1)),
    );
    expect(body.message).toContain("nothing was revoked");
    expect(await listed()).toEqual(before);
    expect(await env.TOLLBOOTH_KEYS!.get(a.sha256)).not.toBeNull();
    expect(await env.TOLLBOOTH_KEYS!.get(b.sha256)).not.toBeNull();
    // A longer prefix of a's hash names a alone.
    const longer = await revoke(a.sha256.slice(0, 16));
    expect(longer.status).toBe(200);
    expect(await longer.json()).toMatchObject({ revoked: [a.prefix], matchedBy: "hash prefix" });
    expect(await env.TOLLBOOTH_KEYS!.get(a.sha256)).toBeNull();
    // Now b's name matches b only.
    const byName = await revoke(b.name);
    expect(await byName.json()).toMatchObject({ revoked: [b.prefix], matchedBy: "name" });
    expect(await env.TOLLBOOTH_KEYS!.get(b.sha256)).toBeNull();
    // The key itself no longer identifies a caller (a fresh isolate: no memo).
    const fresh = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_ADMIN_PATH: "/admin3" } as Partial<Env>);
    const after = await fresh(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "x-api-key": b.key } }));
    expect(await after.json()).toMatchObject({ caller: ipIdentity(ip), verified: false });
  });

  it("a prefix of several keys' hashes is ambiguous: 409 listing them, nothing revoked; more of the hash revokes one", async () => {
    const common = hexOf(6); // 12 hex
    const h1 = `${common}0${hexOf(25)}1`;
    const h2 = `${common}f${hexOf(25)}2`;
    await store(h1, `p1-${common}`);
    await store(h2, `p2-${common}`);
    const before = await listed();
    const res = await revoke(common);
    expect(res.status).toBe(409);
    expect(((await res.json()) as { matches: unknown[] }).matches).toEqual([
      { name: `p1-${common}`, sha256Prefix: h1.slice(0, 12), matchedBy: "hash prefix" },
      { name: `p2-${common}`, sha256Prefix: h2.slice(0, 12), matchedBy: "hash prefix" },
    ]);
    expect(await listed()).toEqual(before);
    // 13 hex tell them apart.
    const one = await revoke(h2.slice(0, 13));
    expect(await one.json()).toMatchObject({ revoked: [h2.slice(0, 12)], matchedBy: "hash prefix" });
    expect(await env.TOLLBOOTH_KEYS!.get(h2)).toBeNull();
    expect(await env.TOLLBOOTH_KEYS!.get(h1)).not.toBeNull();
    // Two keys of one name (written around the API): ambiguous too.
    const h3 = hexOf(32);
    await store(h3, `p1-${common}`);
    const twice = await revoke(`p1-${common}`);
    expect(twice.status).toBe(409);
    expect(((await twice.json()) as { matches: Array<{ matchedBy: string }> }).matches.map((m) => m.matchedBy)).toEqual(["name", "name"]);
    expect(await env.TOLLBOOTH_KEYS!.get(h1)).not.toBeNull();
    expect(await env.TOLLBOOTH_KEYS!.get(h3)).not.toBeNull();
    // A whole hash names its key exactly, whatever else matches.
    expect(await (await revoke(h1)).json()).toMatchObject({ revoked: [h1.slice(0, 12)], matchedBy: "hash" });
    expect(await (await revoke(h3)).json()).toMatchObject({ revoked: [h3.slice(0, 12)], matchedBy: "hash" });
  });

  it("whole hash, exact name and an unambiguous prefix each revoke exactly their key; short prefixes and unknown targets 404", async () => {
    const [x, y, z] = [await issue(`x-${hexOf(4)}`), await issue(`y-${hexOf(4)}`), await issue(`z-${hexOf(4)}`)];
    // A whole hash stored under a name too: the hash wins (it names one key exactly).
    const named = await issue(x.sha256);
    expect(await (await revoke(x.sha256)).json()).toMatchObject({ revoked: [x.prefix], matchedBy: "hash" });
    expect(await env.TOLLBOOTH_KEYS!.get(named.sha256)).not.toBeNull();
    // Its hash gone, the same target now names the key called so.
    expect(await (await revoke(x.sha256)).json()).toMatchObject({ revoked: [named.prefix], matchedBy: "name" });
    expect(await (await revoke(y.name)).json()).toMatchObject({ revoked: [y.prefix], matchedBy: "name" });
    expect(await (await revoke(z.prefix)).json()).toMatchObject({ revoked: [z.prefix], matchedBy: "hash prefix" });
    for (const k of [x, y, z, named]) expect(await env.TOLLBOOTH_KEYS!.get(k.sha256)).toBeNull();
    // Fewer than 12 hex is no prefix; unknown targets, and what was just revoked: 404.
    const other = await issue(`w-${hexOf(4)}`);
    for (const target of [other.prefix.slice(0, 11), y.name, z.prefix, hexOf(32)]) {
      const res = await revoke(target);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBe("not_found");
    }
    expect(await env.TOLLBOOTH_KEYS!.get(other.sha256)).not.toBeNull();
    expect(origin.requests).toHaveLength(0);
  });
});

describe("dashboard, policy, stats", () => {
  it("GET /admin is the HTML shell with a strict CSP, framing denied, no data; its files are served", async () => {
    const res = await gw(adminReq("GET", "", undefined, {}));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toMatch(/default-src 'self'/);
    expect(csp).toMatch(/script-src 'self'(;|$)/);
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|<style/);
    expect(html).toContain('src="/admin/assets/uPlot.iife.min.js"');
    expect(html).not.toContain(TOKEN);

    const uplot = await gw(adminReq("GET", "/assets/uPlot.iife.min.js", undefined, {}));
    expect(uplot.status).toBe(200);
    expect(uplot.headers.get("content-type")).toMatch(/javascript/);
    expect(await uplot.text()).toMatch(/^\/\*! https:\/\/github.com\/leeoniya\/uPlot \(v1\.6\.\d+\) \*\//);
    const js = await gw(adminReq("GET", "/assets/dashboard.js", undefined, {}));
    expect(await js.text()).toContain("sessionStorage");
    // Only the listed files: nothing else of public/ (nor a traversal) is reachable.
    for (const name of ["VERSION", "..%2Fuplot%2FLICENSE", "x.js"])
      expect((await gw(adminReq("GET", `/assets/${name}`, undefined, {}))).status).toBe(404);
    expect(origin.requests).toHaveLength(0);
  });

  it("GET /admin/policy shows the policy; /stats and /metrics answer from the Stats object", async () => {
    const policy = (await (await gw(adminReq("GET", "/policy"))).json()) as Record<string, any>;
    expect(policy.plans.pro.bucket).toEqual({ capacity: 10, refillPerSecond: 0.0001 });
    expect(policy.endpoint).toBe("/mcp");
    // Metrics flushed 100 ms after the first record (the test's gateway waits for the flush).
    const quick = gateway(POLICY, { TOLLBOOTH_ADMIN_TOKEN: TOKEN, TOLLBOOTH_METRICS_FLUSH_MS: "100" } as Partial<Env>);
    for (let i = 0; i < 4; i++) await quick(post(toolCall(i), { ip }));
    const stats = await quick(adminReq("GET", "/stats"));
    const metrics = await quick(adminReq("GET", "/metrics"));
    expect(stats.status).toBe(200);
    const snap = (await stats.json()) as { minutes: Array<{ counters: Record<string, number> }> };
    expect(snap.minutes).toHaveLength(60);
    const sum = (key: string) => snap.minutes.reduce((n, m) => n + (m.counters[key] ?? 0), 0);
    expect(sum('requests_total{decision="admitted"}')).toBe(3);
    expect(sum('requests_total{decision="payment_required"}')).toBe(1);
    // The caller's page lists its recent decisions, newest first.
    const shown = (await (await quick(adminReq("GET", callerPath(ipIdentity(ip))))).json()) as {
      recent: Array<{ decision: string; status: number }>;
    };
    expect(shown.recent.map((r) => r.status)).toEqual([402, 200, 200, 200]);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(await metrics.text()).toMatch(/^# HELP tollbooth_/m);
  });
});
