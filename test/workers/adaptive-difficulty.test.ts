/**
 * Per-caller adaptive difficulty (issue 7 §6, shared/difficulty.ts): each solve a caller
 * redeems adds to a score that halves every `halfLifeSeconds`; the next challenge asks
 * `difficulty + floor(score / solvesPerStep)` bits, at most `maxExtraBits` more. The 402
 * says why it rose (`error.data.difficultyRaised`); `/status` and `/challenge` show it; a
 * quiet caller falls back. The clock is frozen: no decay unless the test advances it.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  WELL_KNOWN,
  advance,
  challengeOf,
  errorBody,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  observeOrigin,
  parseChallenge,
  post,
  request,
  solve,
  toolCall,
} from "./support.ts";

// Base 4 bits, +1 bit per 2 decayed solves, at most +3; half-life 60 s. One free unit, a solve buys 1.
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 4, credits: 1, adaptive: { solvesPerStep: 2, halfLifeSeconds: 60, maxExtraBits: 3 } },
};

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
let send: (r: Request) => Promise<Response>;
let seq = 0;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
  send = gateway(POLICY);
});

/** A refused call: its 402 body, and the challenge in it. */
async function refused(who = ip): Promise<{ data: Record<string, any>; message: string; res: Response }> {
  const res = await send(post(toolCall(++seq), { ip: who }));
  expect(res.status).toBe(402);
  const header = challengeOf(res);
  const body = await errorBody(res);
  expect(Number(header.params.difficulty)).toBe(body.error.data!.difficulty);
  return { data: body.error.data!, message: body.error.message, res };
}

/** Get a 402, solve its challenge, and pay the call with it: one redeemed solve. @returns the difficulty solved */
async function payOnce(who = ip): Promise<number> {
  const res = await send(post(toolCall(++seq), { ip: who }));
  expect(res.status).toBe(402);
  const ch = challengeOf(res);
  const { header } = await solve(ch);
  const paid = await send(post(toolCall(++seq), { ip: who, headers: { "tollbooth-solution": header } }));
  expect(paid.status).toBe(200);
  return Number(ch.params.difficulty);
}

async function statusOf(who = ip): Promise<{ difficulty: number; recentSolves: number }> {
  const res = await send(request("GET", `${WELL_KNOWN}/status`, { ip: who }));
  expect(res.status).toBe(200);
  return (await res.json()) as { difficulty: number; recentSolves: number };
}

describe("adaptive difficulty", () => {
  it("rises one bit per solvesPerStep solves, capped at maxExtraBits, and the 402 says why", async () => {
    expect((await send(post(toolCall(0), { ip }))).status).toBe(200); // the one free unit
    const first = await refused();
    expect(first.data.difficulty).toBe(4);
    expect(first.data.difficultyRaised).toBeUndefined();

    const solved: number[] = [];
    for (let i = 0; i < 10; i++) solved.push(await payOnce());
    // Solves 1–2 at 4 bits, 3–4 at 5, 5–6 at 6, then 7 (4 + 3) however many more.
    expect(solved).toEqual([4, 4, 5, 5, 6, 6, 7, 7, 7, 7]);

    // The score is kept at most at the top step (maxExtraBits × solvesPerStep = 6): solving more buys no longer stay at the top.
    const now = await refused();
    expect(now.data.difficulty).toBe(7);
    expect(now.data.difficultyRaised).toMatchObject({ base: 4, current: 7, recentSolves: 6 });
    expect(now.data.difficultyRaised.why).toContain("6 recent solves");
    expect(now.data.difficultyRaised.why).toContain("half-life of 60 s");
    expect(now.message).toContain("having 7 leading zero bits");
    expect(origin.requests).toHaveLength(11);
  });

  it("/status and /challenge show the caller's current difficulty", async () => {
    expect(await statusOf()).toMatchObject({ difficulty: 4, recentSolves: 0 });
    expect((await fetchChallenge(send, { "cf-connecting-ip": ip })).params.difficulty).toBe("4");
    expect((await send(post(toolCall(0), { ip }))).status).toBe(200);
    for (let i = 0; i < 4; i++) await payOnce();
    expect(await statusOf()).toMatchObject({ difficulty: 6, recentSolves: 4 });
    const ch = await fetchChallenge(send, { "cf-connecting-ip": ip });
    expect(ch.params.difficulty).toBe("6");
    // The policy endpoint publishes the curve's settings.
    const policy = (await (await send(request("GET", WELL_KNOWN, { ip }))).json()) as { challenge: Record<string, unknown> };
    expect(policy.challenge).toMatchObject({ difficulty: 4, adaptive: { solvesPerStep: 2, halfLifeSeconds: 60, maxExtraBits: 3 } });
  });

  it("solves redeemed at /verify count too", async () => {
    for (let i = 0; i < 2; i++) {
      const { verifyBody } = await solve(await fetchChallenge(send, { "cf-connecting-ip": ip }));
      const res = await send(new Request(`${WELL_KNOWN}/verify`, { method: "POST", headers: { "content-type": "application/json", "cf-connecting-ip": ip }, body: JSON.stringify(verifyBody) }));
      expect(res.status).toBe(200);
    }
    expect(await statusOf()).toMatchObject({ difficulty: 5, recentSolves: 2 });
  });

  it("is per caller: another caller's solves do not raise mine", async () => {
    expect((await send(post(toolCall(0), { ip }))).status).toBe(200);
    for (let i = 0; i < 6; i++) await payOnce();
    const other = freshIp();
    expect(await statusOf(other)).toMatchObject({ difficulty: 4, recentSolves: 0 });
    expect((await send(post(toolCall(0), { ip: other }))).status).toBe(200);
    expect((await refused(other)).data.difficulty).toBe(4);
  });

  it("falls back when the caller is quiet: the score halves every half-life", async () => {
    expect((await send(post(toolCall(0), { ip }))).status).toBe(200);
    for (let i = 0; i < 8; i++) await payOnce();
    expect(await statusOf()).toMatchObject({ difficulty: 7, recentSolves: 6 }); // 8 solves, score capped at 6
    advance(30_000); // half a half-life: 6 / √2 = 4.24 → +2
    expect(await statusOf()).toMatchObject({ difficulty: 6, recentSolves: 4.24 });
    advance(30_000); // one half-life: 3 → +1
    expect(await statusOf()).toMatchObject({ difficulty: 5, recentSolves: 3 });
    advance(120_000); // three half-lives: 0.75 → base
    expect(await statusOf()).toMatchObject({ difficulty: 4, recentSolves: 0.75 });
    const quiet = await refused();
    expect(quiet.data.difficulty).toBe(4);
    expect(quiet.data.difficultyRaised).toBeUndefined();
    // The 402's challenge itself asks the base difficulty, and solving it works.
    const ch = parseChallenge(quiet.data.challenges[0].header as string);
    expect(ch.params.difficulty).toBe("4");
    const { header } = await solve(ch);
    expect((await send(post(toolCall(++seq), { ip, headers: { "tollbooth-solution": header } }))).status).toBe(200);
  });
});
