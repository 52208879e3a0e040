/**
 * tollbooth's own endpoints (docs/wire-contract.md §6): discovery, challenge, status,
 * verify's request errors. They never reach the origin and charge nothing (verify counts
 * against the ceiling only: test/workers/objects/caller-state.ceiling.test.ts).
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  challengeOf,
  forgeToken,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  post,
  request,
  rows,
  toolCall,
  WELL_KNOWN,
} from "./support.ts";

let now: number;
let ip: string;
let origin: ReturnType<typeof observeOrigin>;

beforeEach(() => {
  now = freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

describe("GET /.well-known/tollbooth", () => {
  it("publishes the default policy, the challenge types and the URLs", async () => {
    const res = await gateway()(request("GET", WELL_KNOWN, { ip }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
    const methods = {
      initialize: 0,
      ping: 0,
      "tools/list": 0,
      "resources/list": 0,
      "resources/templates/list": 0,
      "prompts/list": 0,
      "logging/setLevel": 0,
      "completion/complete": 0,
      "notifications/*": 0,
    };
    const plan = {
      bucket: { capacity: 10, refillPerSecond: 0.5 },
      ceiling: { capacity: 60, refillPerSecond: 10 },
      costs: { default: 1, methods, tools: {}, otherPaths: 1 },
      challenge: {
        types: ["pow"],
        algorithm: "sha256",
        difficulty: 16,
        credits: 20,
        ttlSeconds: 120,
        adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 },
      },
      overBudget: "402",
      limits: { sessions: 16, sessionTtlSeconds: 3600, onSessionCap: "evict", streams: 4, streamMaxSeconds: 600 },
    };
    expect(await res.json()).toEqual({
      realm: "tollbooth",
      endpoint: "/mcp",
      ...plan,
      defaultPlan: "free",
      plans: { free: plan },
      identity: { strategies: ["jwt", "api-key", "ip"], apiKeyHeader: "x-api-key", ipv4Prefix: 32, ipv6Prefix: 64 },
      originCeiling: null,
      networkRetryAfterSeconds: 10,
      maxBodyBytes: 1048576,
      bodyTimeoutMs: 10000,
      maxJsonDepth: 64,
      token: { ttlSeconds: 300, header: "Tollbooth-Token" },
      solutionHeader: "Tollbooth-Solution",
      policyUrl: WELL_KNOWN,
      challengeUrl: `${WELL_KNOWN}/challenge`,
      verifyUrl: `${WELL_KNOWN}/verify`,
      statusUrl: `${WELL_KNOWN}/status`,
    });
    expect(origin.requests).toHaveLength(0);
    expect(await rows(ipIdentity(ip), "buckets")).toEqual([]);
  });

  it("publishes a configured policy, user method costs merged over the defaults", async () => {
    const send = gateway({
      endpoint: "/rpc",
      bucket: { capacity: 30, refillPerSecond: 2 },
      costs: { methods: { "tools/call": 3, ping: 1 }, tools: { big: 9 } },
      challenge: { difficulty: 12 },
      token: { ttlSeconds: 60 },
    });
    const body = (await (await send(request("GET", WELL_KNOWN, { ip }))).json()) as Record<string, any>;
    expect(body.endpoint).toBe("/rpc");
    expect(body.bucket).toEqual({ capacity: 30, refillPerSecond: 2 });
    expect(body.costs.methods).toEqual({
      initialize: 0,
      ping: 1,
      "tools/list": 0,
      "resources/list": 0,
      "resources/templates/list": 0,
      "prompts/list": 0,
      "logging/setLevel": 0,
      "completion/complete": 0,
      "notifications/*": 0,
      "tools/call": 3,
    });
    expect(body.costs.tools).toEqual({ big: 9 });
    expect(body.challenge).toEqual({
      types: ["pow"],
      algorithm: "sha256",
      difficulty: 12,
      credits: 20,
      ttlSeconds: 120,
      adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 },
    });
    expect(body.token.ttlSeconds).toBe(60);
  });

  it("the published endpoint and costs are what the gateway charges", async () => {
    const send = gateway({
      endpoint: "/rpc",
      bucket: { capacity: 10, refillPerSecond: 0.01 },
      costs: { methods: { "tools/call": 3 }, tools: { big: 9 } },
    });
    const remaining = async (tool: string) => {
      const res = await send(post(toolCall(1, tool), { ip, path: "/rpc" }));
      expect(res.status).toBe(200);
      return /"free";r=(\d+)/.exec(res.headers.get("ratelimit")!)![1];
    };
    expect(await remaining("small")).toBe("7");
    expect(await remaining("small")).toBe("4");
    // Not on the endpoint any more: /mcp is just another path now (otherPaths = 1).
    const other = await send(request("GET", "/mcp", { ip }));
    expect(/"free";r=(\d+)/.exec(other.headers.get("ratelimit")!)![1]).toBe("3");
  });

  it("answers 405 with Allow for another method, and 404 under an unknown path", async () => {
    const send = gateway();
    const post405 = await send(new Request(WELL_KNOWN, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }));
    expect(post405.status).toBe(405);
    expect(post405.headers.get("allow")).toBe("GET");
    const get405 = await send(request("GET", `${WELL_KNOWN}/verify`, { ip }));
    expect(get405.status).toBe(405);
    expect(get405.headers.get("allow")).toBe("POST");
    expect((await send(request("GET", `${WELL_KNOWN}/nope`, { ip }))).status).toBe(404);
    expect((await send(request("HEAD", `${WELL_KNOWN}/challenge`, { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("GET /.well-known/tollbooth/challenge", () => {
  it("issues a fresh challenge for this caller each time; spends nothing but one ceiling unit each", async () => {
    const send = gateway();
    const first = await send(request("GET", `${WELL_KNOWN}/challenge`, { ip }));
    const a = challengeOf(first);
    const b = challengeOf(await send(request("GET", `${WELL_KNOWN}/challenge`, { ip })));
    expect(a.params.id).not.toBe(b.params.id);
    expect(a.params.expires).toBe(String(now / 1000 + 120));
    expect(first.headers.get("ratelimit")).toBe('"free";r=10;t=0, "ceiling";r=59;t=1');
    expect(await rows(ipIdentity(ip), "spent")).toEqual([]);
    // The challenge endpoint is metered: each call took one unit of the ceiling, none of the free bucket.
    expect((await rows<{ name: string; tokens: number }>(ipIdentity(ip), "buckets")).sort((x, y) => x.name.localeCompare(y.name))).toEqual([
      { name: "ceiling", tokens: 58, updated_ms: now },
      { name: "free", tokens: 10, updated_ms: now },
    ]);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("GET /.well-known/tollbooth/status", () => {
  it("shows this caller's plan, free bucket and ceiling; charges nothing but one ceiling unit", async () => {
    const send = gateway();
    for (let i = 0; i < 3; i++) expect((await send(post(toolCall(i), { ip }))).status).toBe(200);
    for (let i = 0; i < 2; i++) {
      const res = await send(request("GET", `${WELL_KNOWN}/status`, { ip }));
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, any>;
      expect(body.caller).toBe(ipIdentity(ip));
      expect(body.plan).toBe("free");
      expect(body.verified).toBe(false);
      expect(body.network).toBe(ipIdentity(ip));
      expect(body.difficulty).toBe(16);
      expect(body.recentSolves).toBe(0);
      expect(body.sessions).toEqual({ open: 0, max: 16 });
      expect(body.streams).toEqual({ open: 0, max: 4 });
      expect(body.bucket).toMatchObject({ limit: 10, remaining: 7 });
      // The status call itself took one unit of the ceiling.
      expect(body.ceiling).toMatchObject({ limit: 60, remaining: 56 - i });
      expect(body.token).toBeNull();
      expect(res.headers.get("ratelimit")).toBe(`"free";r=7;t=6, "ceiling";r=${56 - i};t=1`);
    }
    const other = (await (await send(request("GET", `${WELL_KNOWN}/status`, { ip: freshIp() }))).json()) as {
      bucket: { remaining: number };
    };
    expect(other.bucket.remaining).toBe(10);
  });

  it("refuses a bad token with 401 and the reason", async () => {
    const send = gateway();
    const res = await send(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "tollbooth-token": "garbage" } }));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: "invalid_token", reason: "malformed" });
    const foreign = await forgeToken("test-secret-1-0123456789abcdef", {
      sub: "ip:192.0.2.1",
      jti: "CCCCCCCCCCCCCCCCCCCCCC",
      exp: now / 1000 + 60,
      cr: 5,
    });
    const wrong = await send(request("GET", `${WELL_KNOWN}/status`, { ip, headers: { "tollbooth-token": foreign } }));
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ reason: "wrong_caller" });
  });
});

describe("POST /.well-known/tollbooth/verify", () => {
  it("takes application/json only", async () => {
    const res = await gateway()(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "text/plain", "cf-connecting-ip": ip },
        body: "{}",
      }),
    );
    expect(res.status).toBe(415);
  });

  it("answers 400 invalid_request for a body that is not an object with the challenge fields", async () => {
    for (const body of ["[]", "null", '"x"', "{}", '{"nonce":"1"}']) {
      const res = await gateway()(
        new Request(`${WELL_KNOWN}/verify`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body,
        }),
      );
      expect(res.status, body).toBe(400);
      expect(await res.json()).toMatchObject({ error: "invalid_request" });
    }
    expect(origin.requests).toHaveLength(0);
  });
});
