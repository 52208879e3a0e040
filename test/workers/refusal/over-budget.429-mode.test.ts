/**
 * The 429 mode for clients that cannot pay: a plan with `overBudget: "429"` answers over budget
 * with 429 and an exact integer `Retry-After` — the whole second at which the free bucket
 * admits the same request again — for clients that retry only 429; the challenge is still in
 * `error.data.challenges`, and solving it still works. Refused requests never reach the origin.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  errorBody,
  freezeTime,
  freshIp,
  gateway,
  hex,
  observeOrigin,
  parseChallenge,
  post,
  sha256,
  solve,
  toolCall,
} from "../support.ts";

// 2 units at 0.3 units/s; heavy costs 2. A solve buys 5 credits.
const POLICY = {
  overBudget: "429",
  bucket: { capacity: 2, refillPerSecond: 0.3 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  costs: { tools: { heavy: 2 } },
  challenge: { difficulty: 4, credits: 5 },
};

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
let send: (r: Request) => Promise<Response>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
  send = gateway(POLICY);
});

const call = (id: number, tool = "echo", headers: Record<string, string> = {}) => send(post(toolCall(id, tool), { ip, headers }));

/** Asserts the 429 shape; @returns its Retry-After (seconds) and error.data. */
async function over(res: Response): Promise<{ retryAfter: number; data: Record<string, any>; message: string }> {
  expect(res.status).toBe(429);
  const header = res.headers.get("retry-after")!;
  expect(header).toMatch(/^[1-9]\d*$/);
  const body = await errorBody(res);
  expect(body.error.code).toBe(429);
  expect(body.error.data).toMatchObject({ reason: "over_budget", layer: "bucket", retryAfter: Number(header) });
  expect(body.error.data!.challenges).toHaveLength(1);
  return { retryAfter: Number(header), data: body.error.data!, message: body.error.message };
}

describe('overBudget "429"', () => {
  it("answers 429 (not 402) with the challenge in error.data and a Retry-After that is exactly enough", async () => {
    expect((await call(1)).status).toBe(200);
    expect((await call(2)).status).toBe(200);
    // Empty: one unit at 0.3/s takes 3.33 s → 4.
    const refused = await over(await call(3));
    expect(refused.retryAfter).toBe(4);
    expect(refused.message).toMatch(/^Too many requests \(over_budget\): tools\/call echo costs 1 /);
    expect(refused.message).toContain("Retry after 4 s");
    advance(3_000); // 1 s before: still refused, now with 1 s to go
    expect((await over(await call(4))).retryAfter).toBe(1);
    advance(1_000); // exactly then: admitted
    expect((await call(5)).status).toBe(200);
    expect(origin.requests).toHaveLength(3);
  });

  it("from a part-filled bucket, and for a request costing 2: Retry-After is when the same request fits", async () => {
    expect((await call(1, "heavy")).status).toBe(200); // 0 left
    advance(1_500); // 0.45 left
    // heavy needs 1.55 more: 5.17 s → 6.
    const refused = await over(await call(2, "heavy"));
    expect(refused.retryAfter).toBe(6);
    expect(refused.data.cost).toBe(2);
    advance(5_000); // 1 s before: 1.95 units
    expect((await over(await call(3, "heavy"))).retryAfter).toBe(1);
    advance(1_000); // 2.25 units
    expect((await call(4, "heavy")).status).toBe(200);
    expect(origin.requests).toHaveLength(2);
  });

  it("the challenge in error.data, solved, pays for the request", async () => {
    expect((await call(1, "heavy")).status).toBe(200);
    const refused = await over(await call(2, "heavy"));
    const challenge = refused.data.challenges[0] as Record<string, any>;
    expect(challenge).toMatchObject({ type: "pow", algorithm: "sha256", difficulty: 4, credits: 5 });
    const { header } = await solve(parseChallenge(challenge.header as string));
    const paid = await call(3, "heavy", { "tollbooth-solution": header });
    expect(paid.status).toBe(200);
    expect(paid.headers.get("tollbooth-token")).toMatch(/^tb1\./);
    expect(paid.headers.get("tollbooth-credits")).toBe("3");
    expect(origin.requests).toHaveLength(2);
  });

  it("is a plan option: the default plan answers 402, a key on the 429 plan gets 429", async () => {
    const key = "key-of-a-seed-004-client-0123456789";
    const gw = gateway({
      bucket: { capacity: 1, refillPerSecond: 0.001 },
      challenge: { difficulty: 4 },
      plans: { retrying: { overBudget: "429" } },
      identity: { apiKeys: [{ sha256: hex(await sha256(key)), name: "retrier", plan: "retrying" }] },
    });
    for (const headers of [{}, { "x-api-key": key }] as Array<Record<string, string>>)
      expect((await gw(post(toolCall(1), { ip, headers }))).status).toBe(200);
    expect((await gw(post(toolCall(2), { ip }))).status).toBe(402);
    const res = await gw(post(toolCall(3), { ip, headers: { "x-api-key": key } }));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1000");
    expect((await errorBody(res)).error.data).toMatchObject({ plan: "retrying", challenges: [expect.objectContaining({ type: "pow" })] });
    expect(origin.requests).toHaveLength(2);
  });
});

describe("a request that waiting never admits (a batch above the bucket's capacity)", () => {
  // Capacity 3, a solve buys 5: a batch of 4 echo calls costs 4.
  const batch = [toolCall(1), toolCall(2), toolCall(3), toolCall(4)];
  const policy = { ...POLICY, bucket: { capacity: 3, refillPerSecond: 0.001 } };

  it("in 429 mode: 400 saying so, never a Retry-After to wait for; the origin gets nothing", async () => {
    const res = await gateway(policy)(post(batch, { ip }));
    expect(res.status).toBe(400);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = (await res.json()) as Array<{ error: { code: number; message: string; data: { cost: number; maxCost: number } } }>;
    expect(body).toHaveLength(4);
    expect(body[0]!.error.code).toBe(-32600);
    expect(body[0]!.error.data).toMatchObject({ cost: 4, maxCost: 3 });
    expect(body[0]!.error.message).toContain("more than the free bucket ever holds");
    expect(origin.requests).toHaveLength(0);
  });

  it("in 402 mode: a challenge (a solve pays for it) and no Retry-After", async () => {
    const res = await gateway({ ...policy, overBudget: "402" })(post(batch, { ip }));
    expect(res.status).toBe(402);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = (await res.json()) as Array<{ error: { data: { retryAfter: number | null; challenges: unknown[] } } }>;
    expect(body[0]!.error.data.retryAfter).toBeNull();
    expect(body[0]!.error.data.challenges).toHaveLength(1);
    expect(origin.requests).toHaveLength(0);
  });
});
