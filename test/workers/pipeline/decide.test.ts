/**
 * The layers `decide()` puts in front of each caller's own budget: the network ceiling
 * (Workers Rate Limiting binding, every request of one network whatever credential it
 * carries, tollbooth's own endpoints included), the origin ceiling (all callers together, by
 * admission class; what a refused request took is given back), unverified callers sharing their network's
 * free budget, and what the 402 says and what is free. Refused requests never reach the origin.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { NetworkLimiter } from "../../../workers/env.ts";
import {
  advance,
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  hex,
  ipIdentity,
  observeOrigin,
  type PolicyJson,
  post,
  reasonOf,
  request,
  rpc,
  sha256,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

let ip: string;
let origin: ReturnType<typeof observeOrigin>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** A network limiter like the binding: the first `limit` calls per key succeed; every key asked is recorded. */
function countingLimiter(limit: number): NetworkLimiter & { keys: string[] } {
  const counts = new Map<string, number>();
  const keys: string[] = [];
  return {
    keys,
    async limit({ key }) {
      keys.push(key);
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      return { success: n <= limit };
    },
  };
}

/**
 * A gateway with its own network limiter. The Worker keeps one app per CALLER_BUCKET binding
 * and configuration strings, so each limiter gets a policy of its own (a unique realm).
 */
let realmSeq = 0;
function withLimiter(policy: PolicyJson, limiter: NetworkLimiter): (r: Request) => Promise<Response> {
  return gateway({ ...policy, realm: `layers-${++realmSeq}` }, { TOLLBOOTH_NETWORK_LIMIT: limiter });
}

const ROOMY = {
  bucket: { capacity: 100, refillPerSecond: 1 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 4 },
};

async function expectNetwork429(res: Response, retryAfter: number, network: string): Promise<void> {
  expect(res.status).toBe(429);
  expect(res.headers.get("retry-after")).toBe(String(retryAfter));
  const body = await errorBody(res);
  expect(body.error.code).toBe(429);
  expect(body.error.data).toMatchObject({ layer: "network", retryAfter });
  expect(body.error.message).toContain(network);
  expect(body.error.message).toContain(`retry after ${retryAfter} s`);
}

describe("network ceiling", () => {
  it("counts every request of one network, whatever credential it carries: 429 with Retry-After = networkRetryAfterSeconds, layer network", async () => {
    const limiter = countingLimiter(3);
    const send = withLimiter({ ...ROOMY, networkRetryAfterSeconds: 7 }, limiter);
    const creds: Array<Record<string, string>> = [{}, { "x-api-key": "invented-1" }, { authorization: "Bearer invented-2" }];
    for (const [i, headers] of creds.entries()) expect((await send(post(toolCall(i), { ip, headers }))).status).toBe(200);
    await expectNetwork429(await send(post(toolCall(9), { ip, headers: { "x-api-key": "invented-3" } })), 7, ipIdentity(ip));
    await expectNetwork429(await send(post(toolCall(10), { ip, headers: { authorization: "Bearer brand-new" } })), 7, ipIdentity(ip));
    expect(origin.requests).toHaveLength(3);
    expect(new Set(limiter.keys)).toEqual(new Set([ipIdentity(ip)]));
    // Another network has its own count.
    expect((await send(post(toolCall(11), { ip: freshIp() }))).status).toBe(200);
    expect(origin.requests).toHaveLength(4);
  });

  it("applies to tollbooth's own endpoints: policy, /status, /challenge, /verify", async () => {
    const limiter = countingLimiter(0);
    const send = withLimiter({ ...ROOMY, networkRetryAfterSeconds: 60 }, limiter);
    for (const req of [
      request("GET", WELL_KNOWN, { ip }),
      request("GET", `${WELL_KNOWN}/status`, { ip }),
      request("GET", `${WELL_KNOWN}/challenge`, { ip }),
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip },
        body: "{}",
      }),
      request("GET", "/mcp", { ip }),
      request("GET", "/.well-known/oauth-protected-resource", { ip }),
    ]) {
      const res = await send(req);
      await expectNetwork429(res, 60, ipIdentity(ip));
    }
    expect(limiter.keys).toHaveLength(6);
    expect(origin.requests).toHaveLength(0);
  });

  it("is keyed by the network prefix (an IPv6 /64 is one network) and is skipped, not fatal, when the binding throws", async () => {
    const limiter = countingLimiter(2);
    const send = withLimiter(ROOMY, limiter);
    expect((await send(post(toolCall(1), { ip: "2001:db8:7:1::1" }))).status).toBe(200);
    expect((await send(post(toolCall(2), { ip: "2001:db8:7:1::ffff" }))).status).toBe(200);
    expect((await send(post(toolCall(3), { ip: "2001:db8:7:1:aaaa::1" }))).status).toBe(429);
    expect(new Set(limiter.keys)).toEqual(new Set(["ip:2001:db8:7:1::/64"]));
    vi.spyOn(console, "error").mockImplementation(() => {});
    const broken = withLimiter(ROOMY, { limit: () => Promise.reject(new Error("rate limiter down")) });
    expect((await broken(post(toolCall(4), { ip }))).status).toBe(200);
  });

  it("the real binding from wrangler.toml (1000 per 10 s per network) refuses the 1001st request; a policy cannot raise it", async () => {
    expect(typeof env.TOLLBOOTH_NETWORK_LIMIT?.limit).toBe("function");
    // The simulated binding counts in 10 s windows aligned to the wall clock. A run is only
    // judged when it stayed in one window; one that crossed into the next (a slow machine)
    // is run again, with a new address, from the start of a window: never judged weaker.
    vi.useRealTimers();
    const window = () => Math.floor(Date.now() / 10_000);
    // A policy has no field for the network limit (only the Retry-After of its 429).
    const send = gateway({ ...ROOMY, networkRetryAfterSeconds: 10 });
    for (let attempt = 1; ; attempt++) {
      const intoWindow = Date.now() % 10_000;
      if (intoWindow > 3_000 || attempt > 1) await new Promise((r) => setTimeout(r, 10_050 - intoWindow));
      const startWindow = window();
      const who = freshIp();
      const seen = origin.requests.length;
      let admitted = 0;
      let refused: Response | undefined;
      while (!refused && admitted < 3_000) {
        const batch = await Promise.all(Array.from({ length: 100 }, () => send(request("GET", WELL_KNOWN, { ip: who }))));
        for (const r of batch) {
          if (r.status === 200) admitted++;
          else refused ??= r;
          if (r !== refused) await r.body?.cancel();
        }
      }
      const status = await send(request("GET", `${WELL_KNOWN}/status`, { ip: who }));
      const mcp = await send(post(toolCall(1), { ip: who }));
      if (window() !== startWindow) {
        await status.body?.cancel();
        await mcp.body?.cancel();
        await refused?.body?.cancel();
        expect(attempt, "every run crossed a 10 s window").toBeLessThan(3);
        continue;
      }
      expect(admitted).toBe(1000);
      await expectNetwork429(refused!, 10, ipIdentity(who));
      await expectNetwork429(status, 10, ipIdentity(who));
      expect(mcp.status).toBe(429);
      expect(origin.requests).toHaveLength(seen);
      break;
    }
  }, 120_000);
});

describe("origin ceiling: admission classes", () => {
  // 100 messages and no refill to speak of, one shard (docs/allocation.md): guarantees paid 10,
  // verified 10, worked 5, free 5; the pool of 70 kept down to 21 for free, 10.5 for worked,
  // 3.5 for verified, 0 for paid.
  const KEY = "tb_origin_classes_key_0001";
  let realms = 0;
  const policy = async (refillPerSecond = 0.001) => ({
    bucket: { capacity: 10, refillPerSecond: 0.001 },
    ceiling: { capacity: 1000, refillPerSecond: 100 },
    originCeiling: { capacity: 100, refillPerSecond },
    challenge: { difficulty: 4 },
    identity: { strategies: ["api-key", "ip"], apiKeys: [{ sha256: hex(await sha256(KEY)), name: "partner", plan: "pro" }] },
    plans: { pro: { bucket: { capacity: 1000, refillPerSecond: 1 } } },
    // A gateway of its own (its isolate's leases), as each test's objects are.
    realm: `origin-classes-${++realms}`,
  });
  const pings = (n: number) => Array.from({ length: n }, (_, i) => rpc("ping", undefined, i));
  const messages = () => origin.requests.reduce((n, r) => n + [JSON.parse(r.body)].flat().length, 0);

  it("every message counts, cost 0 too: free traffic gets its guarantee and the pool down to its floor, then a 402 from the origin with the way up and the congestion", async () => {
    const send = gateway(await policy());
    expect((await send(post(pings(50), { ip: freshIp() }))).status).toBe(200);
    expect((await send(post(pings(4), { ip: freshIp() }))).status).toBe(200);
    const refused = await send(post(rpc("ping", undefined, 1), { ip }));
    expect(refused.status).toBe(402);
    const body = await errorBody(refused.clone());
    expect(body.error.data).toMatchObject({
      reason: "origin",
      layer: "origin",
      congestion: { level: 0, freeShare: 1, extraBits: 0, priceFactor: 1 },
    });
    expect(body.error.data!.congestion.why).toMatch(/this request's class has no room now; paid and verified traffic is served first/);
    expect(body.error.message).toMatch(/^Payment required \(origin\): ping costs 0; the origin is at 0 % of its ceiling/);
    // The way up from free that has room: work (no payment is configured here).
    expect(body.error.data!.challenges.map((c: { type: string }) => c.type)).toEqual(["pow"]);
    expect(messages()).toBe(54);

    // Solved: the request is worked, a class above, and goes through; its token's requests too, to worked's share: 5 + 10.
    const { header } = await solve(challengeOf(refused));
    const worked = await send(post(rpc("ping", undefined, 2), { ip, headers: { "tollbooth-solution": header } }));
    expect(worked.status).toBe(200);
    const token = worked.headers.get("tollbooth-token")!;
    expect((await send(post(pings(14), { ip, headers: { "tollbooth-token": token } }))).status).toBe(200);
    expect(messages()).toBe(69);
    // Worked has had its share; money is the only way up, and none is offered: 429 from the origin.
    const full = await send(post(rpc("ping", undefined, 3), { ip, headers: { "tollbooth-token": token } }));
    expect(full.status).toBe(429);
    expect((await errorBody(full)).error.data).toMatchObject({ layer: "origin", congestion: { level: 0 } });

    // The verified caller still has its guarantee and the pool down to its floor: 10 + 7.
    const key = { "x-api-key": KEY };
    expect((await send(post(pings(17), { ip: freshIp(), headers: key }))).status).toBe(200);
    expect((await send(post(rpc("ping", undefined, 4), { ip: freshIp(), headers: key }))).status).toBe(429);
    expect(messages()).toBe(86);
  });

  it("a request its caller's own layers refuse gives its units back: a caller over budget does not use up the free share", async () => {
    const send = gateway(await policy());
    const greedy = freshIp();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await send(post(toolCall(i), { ip: greedy }))).status);
    // Its free bucket (10) admits 10; the 20 it refuses take nothing from the origin ceiling.
    expect(statuses).toEqual([...Array<number>(10).fill(200), ...Array<number>(20).fill(402)]);
    expect(await reasonOf(await send(post(toolCall(31), { ip: greedy })))).toBe("over_budget");
    // The rest of free's 54 is there for the others.
    // 43 from the shard, and the one the refused requests gave back to this isolate's lease.
    expect((await send(post(pings(43), { ip: freshIp() }))).status).toBe(200);
    expect((await send(post(pings(1), { ip: freshIp() }))).status).toBe(200);
    expect(await reasonOf(await send(post(toolCall(32), { ip: freshIp() })))).toBe("origin");
    expect(messages()).toBe(54);
  });

  it("a request the origin ceiling refuses takes nothing else: its solution is not spent and buys its token once there is room", async () => {
    const send = gateway(await policy(1));
    const { header } = await solve(challengeOf(await send(request("GET", `${WELL_KNOWN}/challenge`, { ip }))));
    // Free's share (54) used up, then worked's by another solver's batch (15): this caller's solution is refused at the origin.
    expect((await send(post(pings(54), { ip: freshIp() }))).status).toBe(200);
    const other = freshIp();
    const { header: otherHeader } = await solve(challengeOf(await send(request("GET", `${WELL_KNOWN}/challenge`, { ip: other }))));
    expect((await send(post(pings(15), { ip: other, headers: { "tollbooth-solution": otherHeader } }))).status).toBe(200);
    const refused = await send(post(toolCall(1), { ip, headers: { "tollbooth-solution": header } }));
    expect(refused.status).toBe(429);
    expect((await errorBody(refused.clone())).error.data).toMatchObject({ layer: "origin" });
    expect(refused.headers.get("tollbooth-token")).toBeNull();
    // Refill brings worked its guarantee back (0.05 × 1 message a second: 1 in 20 s, within the
    // challenge's 120 s). The isolate learns it in the background (a class without room is asked
    // about again after 500 ms, once it is asked for): refused once more, then the same
    // solution buys its token.
    advance(20_000);
    expect((await send(post(toolCall(2), { ip, headers: { "tollbooth-solution": header } }))).status).toBe(429);
    const later = await send(post(toolCall(3), { ip, headers: { "tollbooth-solution": header } }));
    expect(later.status).toBe(200);
    expect(later.headers.get("tollbooth-token")).toMatch(/^tb1\./);
  });
});

describe("unverified callers share their network's free budget", () => {
  const POLICY = {
    bucket: { capacity: 5, refillPerSecond: 0.001 },
    ceiling: { capacity: 2000, refillPerSecond: 100 },
    challenge: { difficulty: 4 },
  };

  it("500 invented API keys and bearer tokens from one address get one allowance between them", async () => {
    const send = gateway(POLICY);
    const statuses: number[] = [];
    for (let round = 0; round < 10; round++) {
      const batch = await Promise.all(
        Array.from({ length: 50 }, (_, i) => {
          const n = round * 50 + i;
          const headers: Record<string, string> =
            n % 2 === 0 ? { "x-api-key": `invented-${n}` } : { authorization: `Bearer invented.${n}.token` };
          return send(post(toolCall(n), { ip, headers }));
        }),
      );
      for (const r of batch) {
        statuses.push(r.status);
        await r.body?.cancel();
      }
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 402)).toHaveLength(495);
    expect(origin.requests).toHaveLength(5);
    expect(new Set(origin.requests.map((f) => f.headers["tollbooth-caller"]))).toEqual(new Set([ipIdentity(ip)]));
  }, 30_000);

  it("50 addresses get 50 allowances", async () => {
    const send = gateway({ ...POLICY, bucket: { capacity: 2, refillPerSecond: 0.001 } });
    const ips = Array.from({ length: 50 }, () => freshIp());
    const results = await Promise.all(
      ips.map(async (who, k) => {
        const got: number[] = [];
        for (let i = 0; i < 3; i++) {
          const res = await send(post(toolCall(i), { ip: who, headers: { "x-api-key": `invented-${k}-${i}` } }));
          got.push(res.status);
          await res.body?.cancel();
        }
        return got;
      }),
    );
    for (const got of results) expect(got).toEqual([200, 200, 402]);
    expect(origin.requests).toHaveLength(100);
  }, 30_000);
});

describe("what the 402 says, and what is free", () => {
  const EMPTY = { bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 4 } };

  it("the 402 message names the method and the tool (or resource) refused", async () => {
    const send = gateway(EMPTY);
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const tool = await send(post(toolCall(2, "search_web"), { ip }));
    expect(await reasonOf(tool.clone())).toBe("over_budget");
    expect((await errorBody(tool)).error.message).toMatch(/^Payment required \(over_budget\): tools\/call search_web costs 1 /);
    const read = await errorBody(await send(post(rpc("resources/read", { uri: "file:///etc/motd" }, 3), { ip })));
    expect(read.error.message).toContain("resources/read file:///etc/motd costs 1");
    const batch = (await (await send(post([toolCall(4), toolCall(5)], { ip }))).json()) as Array<{ error: { message: string } }>;
    expect(batch[0]!.error.message).toContain("a batch of 2 messages costs 2");
    expect(origin.requests).toHaveLength(1);
  });

  it("housekeeping methods cost 0: answered with the bucket empty", async () => {
    const send = gateway(EMPTY);
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    expect((await send(post(toolCall(2), { ip }))).status).toBe(402);
    const free = [
      rpc("initialize", { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } }, 10),
      rpc("ping", {}, 11),
      rpc("tools/list", {}, 12),
      rpc("resources/list", {}, 13),
      rpc("resources/templates/list", {}, 14),
      rpc("prompts/list", {}, 15),
      rpc("logging/setLevel", { level: "info" }, 16),
      rpc("completion/complete", { ref: { type: "ref/prompt", name: "p" }, argument: { name: "a", value: "x" } }, 17),
      rpc("notifications/initialized"),
    ];
    for (const msg of free) {
      const res = await send(post(msg, { ip }));
      expect(res.status, String(msg.method)).toBe(200);
      await res.body?.cancel();
    }
    expect(origin.requests).toHaveLength(1 + free.length);
    expect((await send(post(rpc("resources/read", { uri: "x" }, 20), { ip }))).status).toBe(402);
  });
});
