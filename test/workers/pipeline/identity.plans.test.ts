/**
 * Plans: an identity gets its plan from its issued API key (`identity.apiKeys`,
 * SHA-256 of the key, never the key), else the default plan. The plan decides the bucket,
 * the costs and the challenge; `/status` says which plan the caller has; the policy
 * endpoint publishes every plan. A request that no plan budget could ever admit gets a
 * clear error instead of an endless 402. Refused requests never reach the origin.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  hex,
  ipIdentity,
  observeOrigin,
  parseLimitList,
  post,
  request,
  rpc,
  sha256,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

const PRO_KEY = "tb_live_pro_0123456789abcdef0123456789";
const BASIC_KEY = "tb_live_basic_0123456789abcdef01234567";

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
let gw: (r: Request) => Promise<Response>;
let proHash: string;
let basicHash: string;

/** Free plan: 3 units, heavy costs 3, a solve buys 5. Pro: 50 units, heavy costs 1, huge 40, a solve buys 40. */
async function policy(): Promise<Record<string, unknown>> {
  proHash = hex(await sha256(PRO_KEY));
  basicHash = hex(await sha256(BASIC_KEY));
  return {
    bucket: { capacity: 3, refillPerSecond: 0.001 },
    ceiling: { capacity: 1000, refillPerSecond: 100 },
    costs: { tools: { heavy: 3 } },
    challenge: { difficulty: 4, credits: 5 },
    plans: {
      pro: { bucket: { capacity: 50, refillPerSecond: 0.001 }, costs: { tools: { heavy: 1, huge: 40 } }, challenge: { credits: 40 } },
    },
    identity: {
      apiKeys: [
        { sha256: proHash, name: "alice", plan: "pro" },
        { sha256: basicHash, name: "bob" },
      ],
    },
  };
}

beforeEach(async () => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
  gw = gateway(await policy());
});

const freeLeft = (res: Response) => parseLimitList(res.headers.get("ratelimit")!).free!.r;

async function statusOf(headers: Record<string, string>): Promise<Record<string, any>> {
  const res = await gw(request("GET", `${WELL_KNOWN}/status`, { ip, headers }));
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

describe("plans", () => {
  it("a key listed with plan pro gets the pro bucket and costs, as its own verified caller", async () => {
    const key = { "x-api-key": PRO_KEY };
    const first = await gw(post(toolCall(1, "heavy"), { ip, headers: key }));
    expect(first.status).toBe(200);
    expect(first.headers.get("ratelimit-policy")).toMatch(/"free";q=50;/);
    expect(freeLeft(first)).toBe(49); // heavy costs 1 under pro, not 3
    // A tool only pro prices (40 units) is admitted from the pro bucket.
    const huge = await gw(post(toolCall(2, "huge"), { ip, headers: key }));
    expect(huge.status).toBe(200);
    expect(freeLeft(huge)).toBe(9);
    const caller = `key:${proHash.slice(0, 32)}`;
    expect(origin.requests.map((f) => f.headers["tollbooth-caller"])).toEqual([caller, caller]);
    // The network's free budget is untouched: the key is a caller of its own.
    const anon = await gw(post(toolCall(3, "heavy"), { ip }));
    expect(anon.status).toBe(200);
    expect(freeLeft(anon)).toBe(0);

    const s = await statusOf(key);
    expect(s).toMatchObject({ caller, plan: "pro", verified: true, network: ipIdentity(ip) });
    expect(s.bucket).toMatchObject({ limit: 50, remaining: 9 });
  });

  it("a listed key without a plan is verified and on the default plan, with its own bucket", async () => {
    const key = { "x-api-key": BASIC_KEY };
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await gw(post(toolCall(i), { ip, headers: key }))).status);
    expect(statuses).toEqual([200, 200, 200, 402]);
    expect((await gw(post(toolCall(9), { ip }))).status).toBe(200); // the network's bucket is its own
    expect(await statusOf(key)).toMatchObject({ caller: `key:${basicHash.slice(0, 32)}`, plan: "free", verified: true });
    expect(origin.requests).toHaveLength(4);
  });

  it("an unknown key falls through to the network and the default plan: invented keys share one bucket", async () => {
    const heavy = (id: number, k: string) => gw(post(toolCall(id, "heavy"), { ip, headers: { "x-api-key": k } }));
    const admitted = await heavy(1, "invented-1");
    expect(admitted.status).toBe(200);
    expect(freeLeft(admitted)).toBe(0); // heavy costs 3 under free: the whole bucket
    const refused = await heavy(2, "invented-2");
    expect(refused.status).toBe(402);
    const body = await errorBody(refused);
    expect(body.error.data).toMatchObject({ reason: "over_budget", plan: "free", cost: 3 });
    expect(body.error.message).toContain("tools/call heavy");
    // A near miss of the real key is not the key.
    expect((await heavy(3, `${PRO_KEY}x`)).status).toBe(402);
    expect(origin.requests.map((f) => f.headers["tollbooth-caller"])).toEqual([ipIdentity(ip)]);
    expect(await statusOf({ "x-api-key": "invented-3" })).toMatchObject({ caller: ipIdentity(ip), plan: "free", verified: false });
  });

  it("the policy endpoint publishes every plan (and no key hashes)", async () => {
    const res = await gw(request("GET", WELL_KNOWN, { ip }));
    expect(res.status).toBe(200);
    const text = await res.text();
    const body = JSON.parse(text) as Record<string, any>;
    expect(body.defaultPlan).toBe("free");
    expect(Object.keys(body.plans).sort()).toEqual(["free", "pro"]);
    expect(body.plans.pro.bucket).toEqual({ capacity: 50, refillPerSecond: 0.001 });
    expect(body.plans.pro.costs.tools).toEqual({ heavy: 1, huge: 40 });
    expect(body.plans.pro.challenge).toMatchObject({ difficulty: 4, credits: 40 });
    expect(body.plans.free.bucket).toEqual({ capacity: 3, refillPerSecond: 0.001 });
    expect(body.plans.free.costs.tools).toEqual({ heavy: 3 });
    expect(body.bucket).toEqual(body.plans.free.bucket);
    expect(text).not.toContain(proHash);
    expect(text).not.toContain(basicHash);
    expect(origin.requests).toHaveLength(0);
  });

  it("a batch costing more than max(capacity, credits) gets 400 naming the cost and the limit, not a 402 it could never pay", async () => {
    // Free plan: capacity 3, a solve buys 5 → at most 5 at once. Six tool calls cost 6.
    const batch = Array.from({ length: 6 }, (_, i) => toolCall(i + 1));
    const res = await gw(post(batch, { ip }));
    expect(res.status).toBe(400);
    expect(res.headers.get("www-authenticate")).toBeNull();
    const errors = (await res.json()) as Array<{ id: number; error: { code: number; message: string; data: Record<string, unknown> } }>;
    expect(errors.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(errors[0]!.error.code).toBe(-32600);
    expect(errors[0]!.error.message).toContain("a batch of 6 messages costs 6; at most 5 can be admitted at once (plan free)");
    expect(errors[0]!.error.data).toMatchObject({ cost: 6, maxCost: 5, plan: "free" });
    // Nothing was charged: the whole free bucket is still there.
    const next = await gw(post(toolCall(7), { ip }));
    expect(next.status).toBe(200);
    expect(freeLeft(next)).toBe(2);
    // The same batch is payable under pro.
    expect((await gw(post(batch, { ip, headers: { "x-api-key": PRO_KEY } }))).status).toBe(200);
    expect(origin.requests).toHaveLength(2);
  });

  it("a batch above the bucket but within a solve's credits gets a 402 that solving pays", async () => {
    const batch = [toolCall(1), toolCall(2), toolCall(3), toolCall(4), toolCall(5)]; // 5 > capacity 3, = credits 5
    const refused = await gw(post(batch, { ip }));
    expect(refused.status).toBe(402);
    const { header } = await solve(challengeOf(refused));
    const paid = await gw(post(batch, { ip, headers: { "tollbooth-solution": header } }));
    expect(paid.status).toBe(200);
    expect(paid.headers.get("tollbooth-credits")).toBe("0");
    expect(origin.requests).toHaveLength(1);
  });

  it("a request costing more than a solve buys (but within the bucket) gets 429 with Retry-After and no challenge", async () => {
    // Capacity 10, a solve buys 5: a batch of 7 fits the bucket only.
    const send = gateway({
      bucket: { capacity: 10, refillPerSecond: 1 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      challenge: { difficulty: 4, credits: 5 },
    });
    const spend = await send(post([toolCall(1), toolCall(2), toolCall(3), toolCall(4)], { ip }));
    expect(spend.status).toBe(200); // 6 left
    const batch = Array.from({ length: 7 }, (_, i) => toolCall(10 + i));
    const res = await send(post(batch, { ip }));
    expect(res.status).toBe(429);
    expect(res.headers.get("www-authenticate")).toBeNull();
    expect(res.headers.get("retry-after")).toBe("1");
    const errors = (await res.json()) as Array<{ error: { message: string; data: Record<string, unknown> } }>;
    expect(errors[0]!.error.message).toContain("more than a solve buys (5)");
    expect(errors[0]!.error.data).toMatchObject({ cost: 7, retryAfter: 1 });
    expect(errors[0]!.error.data.challenges).toBeUndefined();
    expect(origin.requests).toHaveLength(1);
    // Zero-cost housekeeping is unaffected by plans: still free.
    expect((await send(post(rpc("resources/list", {}, 99), { ip }))).status).toBe(200);
  });
});
