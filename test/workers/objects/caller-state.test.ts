/**
 * What the `CallerState` Durable Object keeps, and for how long (docs/durable-object.md):
 * `spent` rows until the challenge's expiry + SPENT_MARGIN_MS, `tokens` rows until the
 * token expires; an alarm deletes a redemption's rows after their expiry, within
 * CLEANUP_BOUND_MS of the later of the two. Nothing is stored when a challenge is issued.
 * A caller whose state is nothing but full buckets leaves no rows at all.
 *
 * The tests do not read when the alarm is set: they fire the object's alarms the way the
 * runtime does (each at its time, in order, with the clock there; see fireAlarmsUntil) and
 * check which rows are left at a given time.
 */
import { evictDurableObject, runDurableObjectAlarm } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import {
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
  WELL_KNOWN,
} from "../support.ts";

// Challenges live 10 s, tokens 60 s.
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 5, ttlSeconds: 10 },
  token: { ttlSeconds: 60 },
};
/**
 * docs/durable-object.md: a redemption's `spent` and `tokens` rows are deleted at most this
 * long after the later of the challenge's and the token's expiry.
 */
const CLEANUP_BOUND_MS = 10_000;
/** docs/durable-object.md: a spent mark outlives its challenge by 60 s (longer than any clock skew). */
const SPENT_MARGIN_MS = 60_000;
/** The challenge's spent mark expires at t0 + SPENT_AT (10 s challenge + margin); the token at t0 + 60 s. */
const SPENT_AT = 10_000 + SPENT_MARGIN_MS;
/** When the bucket of POLICY, emptied at t0, is full again (1 unit at 0.001/s). */
const IDLE_AT = 1_000_000;
/**
 * docs/durable-object.md: a caller that solved keeps its state until its recent solves
 * have decayed away: one solve's score falls under 0.01 after log2(100) ≈ 6.65 half-lives
 * (the default half-life is 600 s).
 */
const QUIET_AT = Math.ceil(Math.log2(100) * 600_000);
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

/**
 * Fire the caller's alarms as the runtime would up to `untilMs`: each scheduled alarm at its
 * time (the frozen clock moves there), in order, while one is due by `untilMs`; then the
 * clock stands at `untilMs`.
 */
async function fireAlarmsUntil(untilMs: number): Promise<void> {
  for (let fired = 0; ; fired++) {
    const at = await alarmOf(who);
    if (at === null || at > untilMs) break;
    if (fired === 20) throw new Error(`the alarm keeps firing (due at ${at - t0} ms after t0)`);
    if (at > Date.now()) vi.setSystemTime(at);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
  }
  if (Date.now() < untilMs) vi.setSystemTime(untilMs);
}

/** Redeem a fresh challenge with a request. @returns the challenge id, its solution header, and the token's jti */
async function redeem(): Promise<{ id: string; header: string; jti: string }> {
  const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
  const { header } = await solve(ch);
  const res = await gw(post(toolCall(1), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } }));
  expect(res.status).toBe(200);
  return { id: ch.params.id!, header, jti: decodeToken(res.headers.get("tollbooth-token")!).claims.jti };
}

describe("Durable Object storage and cleanup", () => {
  it("stores nothing when challenges are issued (402 or challenge endpoint); the buckets go once full again", async () => {
    expect((await gw(post(toolCall(1), { ip }))).status).toBe(200);
    const refused = await gw(post(toolCall(2), { ip }));
    expect(refused.status).toBe(402);
    challengeOf(refused);
    await fetchChallenge(gw, { "cf-connecting-ip": ip });
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
    await fireAlarmsUntil(t0 + IDLE_AT - 1_000); // not yet full: the buckets stay
    expect((await rows<{ name: string }>(who, "buckets")).map((r) => r.name).sort()).toEqual(["ceiling", "free"]);
    await fireAlarmsUntil(t0 + IDLE_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "buckets")).toEqual([]);
    expect(await alarmOf(who)).toBeNull();
  });

  it("a redemption stores the spent challenge and the token balance with their expiries; both are gone within the bound after the later one", async () => {
    const { id, jti } = await redeem();
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + SPENT_AT }]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    await fireAlarmsUntil(t0 + 60_000 - 1); // the token still lives
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    await fireAlarmsUntil(t0 + SPENT_AT - 1); // the spent mark still lives
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + SPENT_AT }]);
    await fireAlarmsUntil(t0 + SPENT_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
    // The caller solved: its state (buckets, recent solves) stays until the solve has decayed.
    await fireAlarmsUntil(t0 + QUIET_AT - 60_000);
    expect((await rows<{ name: string }>(who, "buckets")).map((r) => r.name).sort()).toEqual(["ceiling", "free"]);
    await fireAlarmsUntil(t0 + QUIET_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "buckets")).toEqual([]);
    expect(await alarmOf(who)).toBeNull(); // nothing left to clean
  });

  it("a redemption via /verify does the same", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { verifyBody } = await solve(ch);
    const res = await gw(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip },
        body: JSON.stringify(verifyBody),
      }),
    );
    const { token } = (await res.json()) as { token: string };
    const jti = decodeToken(token).claims.jti;
    expect(await rows(who, "spent")).toEqual([{ id: ch.params.id, expires_ms: t0 + SPENT_AT }]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 5, expires_ms: t0 + 60_000 }]);
    await fireAlarmsUntil(t0 + 60_000 - 1);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 5, expires_ms: t0 + 60_000 }]);
    await fireAlarmsUntil(t0 + SPENT_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
  });

  it("an alarm run before any expiry deletes nothing, and cleanup still comes within the bound", async () => {
    const { id, jti } = await redeem();
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true); // early, at t0
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + SPENT_AT }]);
    expect(await rows(who, "tokens")).toEqual([{ jti, credits: 4, expires_ms: t0 + 60_000 }]);
    await fireAlarmsUntil(t0 + 60_000 + CLEANUP_BOUND_MS / 2); // the token's expiry is the earliest left
    expect(await rows(who, "tokens")).toEqual([]);
    expect(await rows(who, "spent")).toEqual([{ id, expires_ms: t0 + SPENT_AT }]);
    await fireAlarmsUntil(t0 + SPENT_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "spent")).toEqual([]);
  });

  it("the spent mark stops a replay while the challenge lives, an expired challenge is refused without it; buckets stay", async () => {
    expect((await gw(post(toolCall(0), { ip }))).status).toBe(200); // a free request: the `free` bucket row exists too
    const { header, jti } = await redeem();
    await fireAlarmsUntil(t0 + 9_000);
    expect(await rows(who, "spent")).toHaveLength(1);
    expect(await reasonOf(await gw(post(toolCall(2), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } })))).toBe(
      "solution_spent",
    );

    await fireAlarmsUntil(t0 + SPENT_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await rows(who, "tokens")).toEqual([]);
    // Without its spent mark the solution still cannot be replayed: the challenge has expired.
    expect(await reasonOf(await gw(post(toolCall(3), { headers: { "cf-connecting-ip": ip, "tollbooth-solution": header } })))).toBe(
      "solution_expired",
    );
    expect(jti).toBeTypeOf("string");
    // The buckets stay until they are full again (the free one was emptied at t0).
    expect((await rows<{ name: string }>(who, "buckets")).map((r) => r.name).sort()).toEqual(["ceiling", "free"]);
  });

  it("keeps rows that have not expired when others have", async () => {
    const a = await redeem();
    advance(30_000);
    const b = await redeem(); // its token expires at t0 + 90 s
    await fireAlarmsUntil(t0 + 60_000 + CLEANUP_BOUND_MS); // a's are due, b's token lives
    const tokens = await rows<{ jti: string }>(who, "tokens");
    expect(tokens.map((r) => r.jti)).toEqual([b.jti]);
    expect(tokens.map((r) => r.jti)).not.toContain(a.jti);
    await fireAlarmsUntil(t0 + 30_000 + SPENT_AT + CLEANUP_BOUND_MS);
    expect(await rows(who, "tokens")).toEqual([]);
    expect(await rows(who, "spent")).toEqual([]);
  });

  it("cleanup of the first redemption is not pushed back by a later one", async () => {
    const a = await redeem();
    advance(30_000);
    const b = await redeem(); // expires 30 s after a, more than CLEANUP_BOUND_MS
    await fireAlarmsUntil(t0 + 60_000 + CLEANUP_BOUND_MS);
    expect((await rows<{ jti: string }>(who, "tokens")).map((r) => r.jti)).toEqual([b.jti]);
    expect(a.jti).not.toBe(b.jti);
  });

  it("…not even after the object was evicted from memory in between", async () => {
    // After an eviction the object no longer remembers its alarm in memory; a later
    // redemption must not move the first one's cleanup later (to the new token's expiry).
    const a = await redeem();
    await evictDurableObject(stubFor(who));
    advance(30_000);
    const b = await redeem();
    await fireAlarmsUntil(t0 + 60_000 + CLEANUP_BOUND_MS);
    expect((await rows<{ jti: string }>(who, "tokens")).map((r) => r.jti)).toEqual([b.jti]);
    expect(a.jti).not.toBe(b.jti);
  });
});
