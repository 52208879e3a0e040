/**
 * How long a caller's Durable Object keeps what it holds, judged by two clocks: a caller seen
 * once leaves no rows once its buckets are full again and the cleanup alarm has run; a
 * caller holding a live token keeps its state; a spent challenge can never be redeemed
 * again, even after its spent mark is gone, even by a Worker whose clock is behind — the
 * object judges expiry by the later of the Worker's clock and its own.
 * The clock is frozen (`Date` in the Worker and the object alike); alarms are run by hand.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  alarmOf,
  challengeOf,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  parseLimitList,
  post,
  reasonOf,
  rows,
  solve,
  stubFor,
  toolCall,
} from "../support.ts";

// Slow refills, so no alarm comes due on its own while a test runs: 1 free unit per 100 s.
const POLICY = {
  bucket: { capacity: 3, refillPerSecond: 0.01 },
  ceiling: { capacity: 10, refillPerSecond: 0.1 },
  challenge: { difficulty: 4, credits: 5, ttlSeconds: 10 },
  token: { ttlSeconds: 300 },
};

let t0: number;
let ip: string;
let who: string;
let origin: ReturnType<typeof observeOrigin>;
const send = gateway(POLICY);

beforeEach(() => {
  t0 = freezeTime();
  ip = freshIp();
  who = ipIdentity(ip);
  origin = observeOrigin();
});

/** Rows in each of the object's own tables (SQLite internals and the runtime's `_cf_` tables left out). */
async function rowCounts(identity = who): Promise<Record<string, number>> {
  return runInDurableObject(stubFor(identity), (_i, state) => {
    const sql = state.storage.sql;
    const tables = sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'")
      .toArray();
    return Object.fromEntries(tables.map(({ name }) => [name, sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM "${name}"`).one().n]));
  });
}
const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/** Spend the one free unit... and pay a call with a solve: a token (5 − 1 = 4 credits) and a spent challenge. */
async function buyToken(): Promise<{ token: string; solution: string; expiresMs: number; challengeId: string }> {
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await send(post(toolCall(i), { ip }))).status);
  expect(statuses).toEqual([200, 200, 200]);
  const refused = await send(post(toolCall(3), { ip }));
  expect(refused.status).toBe(402);
  const ch = challengeOf(refused);
  const { header } = await solve(ch);
  const paid = await send(post(toolCall(4), { ip, headers: { "tollbooth-solution": header } }));
  expect(paid.status).toBe(200);
  expect(paid.headers.get("tollbooth-credits")).toBe("4");
  return {
    token: paid.headers.get("tollbooth-token")!,
    solution: header,
    expiresMs: Number(ch.params.expires) * 1000,
    challengeId: ch.params.id!,
  };
}

describe("expiry of a caller's state", () => {
  it("a caller seen once leaves no rows once its buckets are full again and the alarm has run", async () => {
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    expect((await rowCounts()).limits).toBe(1);
    // Full again at t0 + 100 s (free; the ceiling, 1 request at 0.1/s, sooner): an alarm is due by then + 1 s.
    expect(await alarmOf(who)).toBeLessThanOrEqual(t0 + 101_000);

    advance(50_000); // too early: the free bucket is at 2.5 of 3
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect((await rowCounts()).limits).toBe(1);
    expect(await alarmOf(who)).toBe(t0 + 101_000); // rescheduled for when the bucket is full

    advance(51_000);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(total(await rowCounts())).toBe(0);
    expect(await rows(who, "buckets")).toEqual([]);
    expect(await alarmOf(who)).toBeNull();

    // Coming back, the caller finds what a new caller finds: a full bucket.
    const back = await send(post(toolCall(2), { ip }));
    expect(back.status).toBe(200);
    expect(parseLimitList(back.headers.get("ratelimit")!).free!.r).toBe(2);
  });

  it("a caller holding a live token keeps its rows; they go once the token, the spent mark and the recent solve are gone", async () => {
    const { token } = await buyToken();
    advance(200_000); // buckets full, challenge (t0 + 10 s) and its spent mark (+ 60 s) expired, token (t0 + 300 s) live
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    const kept = await rowCounts();
    expect(kept).toMatchObject({ tokens: 1, spent: 0, limits: 1, solves: 1 });
    const used = await send(post(toolCall(5), { ip, headers: { "tollbooth-token": token } }));
    expect(used.status).toBe(200);
    expect(used.headers.get("tollbooth-credits")).toBe("3");

    // At t0 + 400 s the token has expired and the buckets are full, but the solve is recent:
    // the solve count stays (dropping it would reset the caller's adaptive difficulty early).
    advance(200_000);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rowCounts()).toMatchObject({ tokens: 0, spent: 0, solves: 1 });
    // One solve counts as quiet after log2(100) half-lives of 600 s: ~3987 s after it.
    expect(await alarmOf(who)).toBeGreaterThan(t0 + 3_900_000);

    advance(3_600_000);
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(total(await rowCounts())).toBe(0);
    expect(await alarmOf(who)).toBeNull();
    expect(origin.requests).toHaveLength(5);
  });

  it("a spent mark outlives its challenge by the clock margin, and the challenge stays refused after the mark is gone", async () => {
    const { solution, expiresMs } = await buyToken();
    expect((await rows<{ expires_ms: number }>(who, "spent")).map((r) => r.expires_ms)).toEqual([expiresMs + 60_000]);
    advance(expiresMs - Date.now() + 1_000); // the challenge expired 1 s ago: the mark is still there
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toHaveLength(1);
    expect(await reasonOf(await send(post(toolCall(5), { ip, headers: { "tollbooth-solution": solution } })))).toBe("solution_expired");
    advance(60_000); // past the margin: the mark is dropped
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toEqual([]);
    expect(await reasonOf(await send(post(toolCall(6), { ip, headers: { "tollbooth-solution": solution } })))).toBe("solution_expired");
    expect(origin.requests).toHaveLength(4);
  });

  it("the object judges expiry by its own clock too: a Worker whose clock is behind cannot redeem a spent challenge whose mark is gone", async () => {
    const { expiresMs, challengeId } = await buyToken();
    advance(expiresMs + 61_000 - Date.now());
    expect(await runDurableObjectAlarm(stubFor(who))).toBe(true);
    expect(await rows(who, "spent")).toEqual([]);
    // What a Worker that read its clock before the challenge expired would ask (a stale nowMs).
    const stale = expiresMs - 5_000;
    const decision = await stubFor(who).admit({
      cost: 1,
      nowMs: stale,
      bucket: POLICY.bucket,
      ceiling: POLICY.ceiling,
      challenge: { difficulty: 4, adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 } },
      redeem: {
        spendId: challengeId,
        spendUntilMs: expiresMs,
        jti: "replayed-token-id-0000",
        credits: 5,
        tokenExpiresMs: stale + 300_000,
        reusable: false,
        prefix: "solution",
        solve: true,
      },
    });
    expect(decision).toMatchObject({ admitted: false, reason: "solution_expired" });
    expect(decision.minted).toBeFalsy();
    expect((await rows<{ jti: string }>(who, "tokens")).map((r) => r.jti)).not.toContain("replayed-token-id-0000");
    expect(await rows(who, "spent")).toEqual([]);
  });

  it("…and a never-spent challenge, too, once the object's clock is past its expiry", async () => {
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const expiresMs = t0 + 10_000;
    advance(11_000);
    const decision = await stubFor(who).admit({
      cost: 1,
      nowMs: t0,
      bucket: POLICY.bucket,
      ceiling: POLICY.ceiling,
      redeem: {
        spendId: "never-spent-challenge-id",
        spendUntilMs: expiresMs,
        jti: "late-token-id-00000000",
        credits: 5,
        tokenExpiresMs: t0 + 300_000,
        reusable: false,
        prefix: "solution",
        solve: true,
      },
    });
    expect(decision).toMatchObject({ admitted: false, reason: "solution_expired" });
    expect(await rows(who, "tokens")).toEqual([]);
    expect(await rows(who, "spent")).toEqual([]);
  });
});
