/**
 * What the `CallerBucket` Durable Object keeps, and for how long (docs/durable-object.md):
 * `spent` rows until the challenge expires, `tokens` rows until the token expires; an
 * alarm deletes them after their expiry. Nothing is stored when a challenge is issued.
 */
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import {
  WELL_KNOWN,
  advance,
  alarmOf,
  challengeOf,
  decodeToken,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  post,
  reasonOf,
  rows,
  solve,
  stubFor,
  toolCall,
} from "./support.ts";

// Challenges live 10 s, tokens 60 s; the alarm runs 1 s after the last expiry it covers.
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 5, ttlSeconds: 10 },
  token: { ttlSeconds: 60 },
};
const SLACK_MS = 1_000;

let t0: number;
let ip: string;
let who: string;
const gw = gateway(POLICY);

beforeEach(() => {
  t0 = freezeTime();
  ip = freshIp();
  who = ipIdentity(ip);
  observeOrigin();
});

/** Redeem a fresh challenge with a request. @returns the challenge id, its solution header, and the token's jti */
async function redeem(): Promise<{ id: string; header: string; jti: string }> {
  const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
  const { header } = await solve(ch);
  const res = await gw(post(toolCall(1), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } }));
  expect(res.status).toBe(200);
  return { id: ch.params.id!, header, jti: decodeToken(res.headers.get("tollbooth-token")!).claims.jti };
}

describe("Durable Object storage and cleanup", () => {
  it("stores nothing when challenges are issued (402 or challenge endpoint)", async () => {
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(200);
    const refused = await gw(post(toolCall(2), { ip }));
    expect(refused.status).toBe(402);
    challengeOf(refused);
    await fetchChallenge(gw, { "cf-connecting-ip": ip });
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
    expect(await alarmOf(who)).toBeNull();
  });

  it("a redemption stores the spent challenge and the token balance with their expiries, and schedules the alarm", async () => {
    const { id, jti } = await redeem();
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + 10_000 }]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
  });

  it("a redemption via /verify does the same", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { verifyBody } = await solve(ch);
    const res = await gw(new Request(`${WELL_KNOWN}/verify`, { method: "POST", headers: { "content-type": "application/json", "cf-connecting-ip": ip }, body: JSON.stringify(verifyBody) }));
    const { token } = (await res.json()) as { token: string };
    expect(await rows(who, "spent")).toEqual([{ id: ch.params.id, expires_ms: t0 + 10_000 }]);
    expect(await rows(who, "tokens")).toEqual([{ jti: decodeToken(token).claims.jti, credits: 5, expires_ms: t0 + 60_000 }]);
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
  });

  it("the alarm deletes nothing that has not expired, and reschedules itself for the earliest expiry", async () => {
    const { id, jti } = await redeem();
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + 10_000 }]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    expect(await alarmOf(who)).toBe(t0 + 10_000 + SLACK_MS);
  });

  it("deletes the spent row once the challenge expired, then the token row once the token expired; buckets stay", async () => {
    expect((await gw(post(toolCall(0), { ip }))).status).toBe(200); // a free request: the `free` bucket row exists too
    const { header, jti } = await redeem();
    // While the challenge lives, its spent mark stops a replay.
    advance(9_000);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toHaveLength(1);
    expect(await reasonOf(await gw(post(toolCall(2), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } })))).toBe("solution_spent");

    advance(2_000); // t0 + 11 s: challenge expired
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
    // Without its spent mark the solution still cannot be replayed: the challenge has expired.
    expect(await reasonOf(await gw(post(toolCall(3), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } })))).toBe("solution_expired");

    advance(50_000); // t0 + 61 s: token expired
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "tokens")).toEqual([]);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await alarmOf(who)).toBeNull();
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(false);
    expect((await rows<{ name: string }>(who, "buckets")).map((r) => r.name).sort()).toEqual(["ceiling", "free"]);
  });

  it("keeps rows that have not expired when others have", async () => {
    const a = await redeem();
    advance(30_000);
    const b = await redeem();
    advance(31_000); // t0 + 61 s: a's token expired, b's (t0 + 90 s) not
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    const tokens = await rows<{ jti: string }>(who, "tokens");
    expect(tokens.map((r) => r.jti)).toEqual([b.jti]);
    expect(tokens.map((r) => r.jti)).not.toContain(a.jti);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await alarmOf(who)).toBe(t0 + 90_000 + SLACK_MS);
  });

  it("an alarm due at the expiry of the first redemption is not pushed back by a later one", async () => {
    await redeem();
    advance(30_000);
    await redeem();
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
  });

  it("…not even after the object was evicted from memory in between", async () => {
    // The first token expires at t0 + 60 s, so cleanup is due at t0 + 61 s. After an
    // eviction the object no longer remembers its alarm; a later redemption must not
    // move that alarm later (to the new token's expiry, t0 + 91 s).
    await redeem();
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
    await evictDurableObject(stubFor(who));
    advance(30_000);
    await redeem();
    expect(await alarmOf(who)).toBe(t0 + 60_000 + SLACK_MS);
  });
});
