/**
 * The safety ceiling (docs/wire-contract.md §4): every request, token or not, counts
 * against a per-caller ceiling; over it, 429 with an integer Retry-After and the JSON-RPC
 * error body (code 429, reason "ceiling"), no challenge, nothing reaches the origin.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  challengeOf,
  errorBody,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  observeOrigin,
  parseLimitList,
  post,
  request,
  rpc,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

// Ceiling 5 at 0.25/s: one missing request takes 4 s. A free bucket large enough to stay out of the way.
const POLICY = {
  bucket: { capacity: 100, refillPerSecond: 1 },
  ceiling: { capacity: 5, refillPerSecond: 0.25 },
  challenge: { difficulty: 8, credits: 50 },
};

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway(POLICY);

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

async function fill(n: number, headers: Record<string, string> = { "cf-connecting-ip": ip }, send = gw): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await send(post(toolCall(i), { headers }));
    expect(res.status).toBe(200);
    await res.body?.cancel();
  }
}

describe("safety ceiling", () => {
  it("answers 429 over the ceiling: integer Retry-After, JSON-RPC error with the id, reason ceiling, no challenge", async () => {
    await fill(5);
    const res = await gw(post(toolCall(6), { ip }));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(res.headers.get("retry-after")).toBe("4");
    expect(res.headers.get("www-authenticate")).toBeNull();
    const body = await errorBody(res);
    expect(body.id).toBe(6);
    expect(body.error.code).toBe(429);
    expect(body.error.data).toMatchObject({ reason: "ceiling", retryAfter: 4 });
    expect(body.error.data!.challenges).toBeUndefined();
    expect(parseLimitList(res.headers.get("ratelimit")!).ceiling).toEqual({ r: 0, t: 20 });
    expect(origin.requests).toHaveLength(5);
  });

  it("keeps string ids and answers a batch with an array", async () => {
    await fill(5);
    const single = await errorBody(await gw(post(toolCall("s"), { ip })));
    expect(single.id).toBe("s");
    const batch = (await (await gw(post([toolCall(1), toolCall(2)], { ip }))).json()) as Array<{ id: unknown; error: { code: number } }>;
    expect(batch.map((r) => [r.id, r.error.code])).toEqual([
      [1, 429],
      [2, 429],
    ]);
  });

  it("admits again after Retry-After seconds, not before", async () => {
    await fill(5);
    expect((await gw(post(toolCall(6), { ip }))).status).toBe(429);
    advance(3_000);
    const early = await gw(post(toolCall(7), { ip }));
    expect(early.status).toBe(429);
    expect(early.headers.get("retry-after")).toBe("1");
    advance(1_000);
    expect((await gw(post(toolCall(8), { ip }))).status).toBe(200);
  });

  it("counts zero-cost requests and other paths too", async () => {
    for (const req of [
      post(rpc("initialize", {}, 1), { ip }),
      post(rpc("tools/list", {}, 2), { ip }),
      post(rpc("notifications/initialized"), { ip }),
      request("GET", "/mcp", { ip }),
      request("GET", "/.well-known/oauth-protected-resource", { ip }),
    ]) {
      expect((await gw(req)).status).toBe(200);
    }
    expect((await gw(post(rpc("ping", {}, 3), { ip }))).status).toBe(429);
  });

  it("counts requests refused with 402: the ceiling wins once it is reached", async () => {
    const send = gateway({ ...POLICY, bucket: { capacity: 1, refillPerSecond: 0.001 } });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await send(post(toolCall(i), { ip }))).status);
    expect(statuses).toEqual([200, 402, 402, 402, 402, 429, 429]);
  });

  it("applies to token holders: 429 with credits left, and the 429 spends no credits", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { verifyBody } = await solve(ch);
    const verified = await gw(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip },
        body: JSON.stringify(verifyBody),
      }),
    );
    // The challenge endpoint and the redemption each counted: 2 of 5.
    expect(verified.status).toBe(200);
    const { token } = (await verified.json()) as { token: string };
    const withToken = (id: number) => post(toolCall(id), { headers: { "cf-connecting-ip": ip, "tollbooth-token": token } });
    const credits: Array<string | null> = [];
    for (let i = 0; i < 3; i++) {
      const res = await gw(withToken(i));
      expect(res.status).toBe(200);
      credits.push(res.headers.get("tollbooth-credits"));
    }
    expect(credits).toEqual(["49", "48", "47"]);
    const over = await gw(withToken(5));
    expect(over.status).toBe(429);
    expect(over.headers.get("www-authenticate")).toBeNull();
    expect((await errorBody(over)).error.data!.reason).toBe("ceiling");
    expect(origin.requests).toHaveLength(3);
    advance(4_000);
    const after = await gw(withToken(6));
    expect(after.status).toBe(200);
    expect(after.headers.get("tollbooth-credits")).toBe("46");
  });

  it("a solution sent over the ceiling is not spent: it redeems once the ceiling allows", async () => {
    const send = gateway({ ...POLICY, bucket: { capacity: 1, refillPerSecond: 0.001 } });
    expect((await send(post(toolCall(0), { ip }))).status).toBe(200);
    const refused = await send(post(toolCall(1), { ip }));
    expect(refused.status).toBe(402);
    const { header } = await solve(challengeOf(refused));
    for (let i = 0; i < 3; i++) expect((await send(post(toolCall(2), { ip }))).status).toBe(402);
    const withSolution = () => send(post(toolCall(3), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } }));
    const blocked = await withSolution();
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get("tollbooth-token")).toBeNull();
    advance(4_000);
    const res = await withSolution();
    expect(res.status).toBe(200);
    expect(res.headers.get("tollbooth-token")).toMatch(/^tb1\./);
  });

  it("POST /verify over the ceiling answers 429 with Retry-After and does not spend the solution", async () => {
    // GET /challenge counts against the ceiling: 1 of 5, then 4 requests fill it.
    const { verifyBody } = await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }));
    await fill(4);
    const verify = () =>
      gw(
        new Request(`${WELL_KNOWN}/verify`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: JSON.stringify(verifyBody),
        }),
      );
    const res = await verify();
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("4");
    expect(await res.json()).toMatchObject({ retryAfter: 4 });
    advance(4_000);
    expect((await verify()).status).toBe(200);
  });

  it("GET /challenge and /status count against the ceiling and answer 429 over it: no challenge is issued", async () => {
    const status = await gw(request("GET", `${WELL_KNOWN}/status`, { ip }));
    expect(status.status).toBe(200);
    expect(((await status.json()) as { ceiling: { remaining: number } }).ceiling.remaining).toBe(4);
    await fill(4);
    for (const path of ["/challenge", "/status"]) {
      const res = await gw(request("GET", `${WELL_KNOWN}${path}`, { ip }));
      expect(res.status, path).toBe(429);
      expect(res.headers.get("retry-after")).toBe("4");
      expect(res.headers.get("www-authenticate")).toBeNull();
      expect(await res.json()).toMatchObject({ error: "too_many_requests", layer: "ceiling", retryAfter: 4 });
    }
    expect(origin.requests).toHaveLength(4);
    advance(4_000);
    expect((await gw(request("GET", `${WELL_KNOWN}/challenge`, { ip }))).status).toBe(200);
  });

  it("is per caller", async () => {
    await fill(5);
    expect((await gw(post(toolCall(6), { ip }))).status).toBe(429);
    await fill(5, { "cf-connecting-ip": freshIp() });
  });

  it("the default policy: 60 requests, then 429 with Retry-After 1", async () => {
    const dflt = gateway();
    for (let i = 0; i < 60; i++) {
      const res = await dflt(post(rpc("ping", {}, i), { ip }));
      expect(res.status, `request ${i + 1}`).toBe(200);
      await res.body?.cancel();
    }
    const res = await dflt(post(rpc("ping", {}, 60), { ip }));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1");
    expect((await errorBody(res)).error.data!.retryAfter).toBe(1);
  });
});
