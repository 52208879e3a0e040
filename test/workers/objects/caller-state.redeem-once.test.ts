/**
 * "A challenge is bound to the caller it was issued to and redeems exactly once, however
 * many redemptions race" (docs/wire-contract.md §2, docs/durable-object.md): 100 concurrent
 * redemptions of one solution yield exactly one token / one admitted request. The same
 * holds for spending a token's credits.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  challengeOf,
  decodeToken,
  errorBody,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  post,
  rows,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

// A ceiling high enough that 100 concurrent requests all reach the redemption step.
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 20 },
};
const N = 100;

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway(POLICY);

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

const verify = (body: Record<string, unknown>, who = ip) =>
  gw(
    new Request(`${WELL_KNOWN}/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": who },
      body: JSON.stringify(body),
    }),
  );

describe("atomic redemption", () => {
  it(`${N} concurrent POST /verify of one solution: exactly one token, ${N - 1} × 422`, async () => {
    const { verifyBody } = await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }));
    const all = await Promise.all(Array.from({ length: N }, () => verify(verifyBody)));
    const bodies = await Promise.all(all.map(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> })));
    const ok = bodies.filter((b) => b.status === 200);
    expect(ok).toHaveLength(1);
    expect(bodies.filter((b) => b.status === 422)).toHaveLength(N - 1);
    for (const b of bodies.filter((x) => x.status === 422)) expect(b.body.error).toBe("invalid_solution");
    // One token row, one spent mark: nothing else was minted.
    const tokens = await rows<{ jti: string; credits: number }>(ipIdentity(ip), "tokens");
    expect(tokens).toEqual([{ jti: decodeToken(ok[0]!.body.token as string).claims.jti, credits: 20, expires_ms: expect.any(Number) }]);
    expect(await rows(ipIdentity(ip), "spent")).toHaveLength(1);
    expect(origin.requests).toHaveLength(0);
  });

  it(`${N} concurrent requests carrying one Tollbooth-Solution: exactly one admitted with a token, ${N - 1} × 402 solution_spent`, async () => {
    expect((await gw(post(toolCall(0), { ip }))).status).toBe(200);
    const refused = await gw(post(toolCall(1), { ip }));
    expect(refused.status).toBe(402);
    const { header } = await solve(challengeOf(refused));
    const all = await Promise.all(
      Array.from({ length: N }, (_, i) => gw(post(toolCall(i), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } }))),
    );
    const admitted = all.filter((r) => r.status === 200);
    expect(admitted).toHaveLength(1);
    expect(admitted[0]!.headers.get("tollbooth-token")).toMatch(/^tb1\./);
    expect(admitted[0]!.headers.get("tollbooth-credits")).toBe("19");
    const denied = all.filter((r) => r.status !== 200);
    expect(denied).toHaveLength(N - 1);
    for (const r of denied) {
      expect(r.status).toBe(402);
      expect(r.headers.get("tollbooth-token")).toBeNull();
      expect((await errorBody(r)).error.data!.reason).toBe("solution_spent");
    }
    expect(all.filter((r) => r.headers.get("tollbooth-token") !== null)).toHaveLength(1);
    // The origin saw the one free request and the one admitted paid request.
    expect(origin.requests).toHaveLength(2);
    expect(await rows(ipIdentity(ip), "tokens")).toHaveLength(1);
  });

  it("redemptions racing through both paths (verify and Tollbooth-Solution) still yield exactly one token", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { header, verifyBody } = await solve(ch);
    const all = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        i % 2 === 0 ? verify(verifyBody) : gw(post(toolCall(i), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } })),
      ),
    );
    const winners = all.filter((r) => r.status === 200);
    expect(winners).toHaveLength(1);
    expect(all.filter((r) => r.status === 422).length + all.filter((r) => r.status === 402).length).toBe(N - 1);
    expect(await rows(ipIdentity(ip), "tokens")).toHaveLength(1);
    // Only a request carrying the solution can reach the origin, and only if it won.
    const wonByRequest = winners[0]!.headers.get("tollbooth-token") !== null;
    expect(origin.requests).toHaveLength(wonByRequest ? 1 : 0);
  });

  it("a racing redemption by another caller never wins", async () => {
    const { verifyBody } = await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }));
    const others = Array.from({ length: 20 }, () => freshIp());
    const all = await Promise.all([...others.map((o) => verify(verifyBody, o)), verify(verifyBody)]);
    expect(all.map((r) => r.status)).toEqual([...Array(20).fill(422), 200]);
  });

  it(`${N} concurrent requests on one token with 20 credits: exactly 20 admitted, the rest token_exhausted`, async () => {
    const { verifyBody } = await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }));
    const { token } = (await (await verify(verifyBody)).json()) as { token: string };
    const all = await Promise.all(
      Array.from({ length: N }, (_, i) => gw(post(toolCall(i), { headers: { "cf-connecting-ip": ip, "tollbooth-token": token } }))),
    );
    const admitted = all.filter((r) => r.status === 200);
    expect(admitted).toHaveLength(20);
    // Every credit value 19…0 was handed out exactly once.
    expect(admitted.map((r) => Number(r.headers.get("tollbooth-credits"))).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, i) => i),
    );
    const denied = all.filter((r) => r.status !== 200);
    expect(denied).toHaveLength(N - 20);
    for (const r of denied) expect((await errorBody(r)).error.data!.reason).toBe("token_exhausted");
    expect(origin.requests).toHaveLength(20);
    expect((await rows<{ credits: number }>(ipIdentity(ip), "tokens"))[0]!.credits).toBe(0);
  });
});
