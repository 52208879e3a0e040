/**
 * Per-caller adaptive difficulty, kept in the caller's object (shared/limits/difficulty.ts,
 * docs/adaptive-difficulty.md): each solve a caller redeems adds to a score that halves every
 * `halfLifeSeconds`; the next challenge asks `difficulty + floor(score / solvesPerStep)` bits,
 * at most `maxExtraBits` more. The 402 says why it rose (`error.data.difficultyRaised`);
 * `/status` and `/challenge` show it; a quiet caller falls back. The clock is frozen: no decay
 * unless the test advances it.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  type Challenge,
  challengeOf,
  decodeToken,
  errorBody,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  parseChallenge,
  post,
  reasonOf,
  request,
  rows,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

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
      const res = await send(
        new Request(`${WELL_KNOWN}/verify`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: JSON.stringify(verifyBody),
        }),
      );
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

/**
 * A solution is priced at the caller's difficulty when it is redeemed. Its
 * challenge asked d bits (2^d hashes of work); at a current difficulty d' > d it buys
 * floor(credits × 2^(d − d')), and nothing (refused `solution_too_easy`, spent, not a solve)
 * when that is below what the request costs (1 at least). Frozen clock: nothing decays unless
 * the test advances it.
 */
describe("a solution is judged at the caller's difficulty when it is redeemed", () => {
  // Base 4 bits, +1 bit per decayed solve, at most +4; half-life 10 s (challenges live 120 s). A solve buys 8; 3 free units.
  const STALE = {
    bucket: { capacity: 3, refillPerSecond: 0.0001 },
    ceiling: { capacity: 1000, refillPerSecond: 100 },
    challenge: { difficulty: 4, credits: 8, adaptive: { solvesPerStep: 1, halfLifeSeconds: 10, maxExtraBits: 4 } },
    costs: { tools: { heavy: 3 } },
  };
  let gw: (r: Request) => Promise<Response>;
  beforeEach(() => {
    gw = gateway(STALE);
  });
  const who = () => ({ "cf-connecting-ip": ip });
  const verify = (body: Record<string, unknown>) =>
    gw(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", ...who() },
        body: JSON.stringify(body),
      }),
    );
  /** Spend the free units: the calls until the first 402, which is returned. */
  async function drain(): Promise<Response> {
    for (;;) {
      const res = await gw(post(toolCall(++seq), { ip }));
      if (res.status !== 200) return res;
    }
  }
  const statusNow = async () =>
    (await (await gw(request("GET", `${WELL_KNOWN}/status`, { ip }))).json()) as { difficulty: number; recentSolves: number };
  /** A fresh challenge at the current difficulty, solved and redeemed at /verify: its credits. */
  async function solveFresh(): Promise<{ difficulty: number; credits: number; cr: number }> {
    const ch = await fetchChallenge(gw, who());
    const res = await verify((await solve(ch)).verifyBody);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; credits: number };
    return { difficulty: Number(ch.params.difficulty), credits: body.credits, cr: decodeToken(body.token).claims.cr };
  }

  it("20 challenges fetched while quiet, redeemed after the difficulty rose: charged at the current difficulty, then refused", async () => {
    // 20 challenges at the base difficulty: 10 from the challenge endpoint, 10 from 402s.
    const stale: Challenge[] = [];
    for (let i = 0; i < 10; i++) stale.push(await fetchChallenge(gw, who()));
    for (let i = 0; i < 10; i++) {
      const res = i === 0 ? await drain() : await gw(post(toolCall(++seq), { ip }));
      expect(res.status).toBe(402);
      stale.push(challengeOf(res));
    }
    expect(stale.map((c) => c.params.difficulty)).toEqual(Array(20).fill("4"));
    const solved = await Promise.all(stale.map((c) => solve(c)));

    // Two solves at the current difficulty (full credits each) raise it to 6.
    expect(await solveFresh()).toEqual({ difficulty: 4, credits: 8, cr: 8 });
    expect(await solveFresh()).toEqual({ difficulty: 5, credits: 8, cr: 8 });
    expect(await statusNow()).toMatchObject({ difficulty: 6, recentSolves: 2 });
    const forwarded = origin.requests.length;

    // Now the 20, alternating the request path (cost 1) and /verify.
    const outcomes: Array<string | number> = [];
    for (let i = 0; i < 20; i++) {
      if (i % 2 === 0) {
        const res = await gw(post(toolCall(++seq), { ip, headers: { "tollbooth-solution": solved[i]!.header } }));
        if (res.status === 200) {
          const cr = decodeToken(res.headers.get("tollbooth-token")!).claims.cr;
          expect(Number(res.headers.get("tollbooth-credits"))).toBe(cr - 1);
          outcomes.push(cr);
        } else {
          const body = await errorBody(res);
          expect(res.status).toBe(402);
          expect(res.headers.get("tollbooth-token")).toBeNull();
          // The 402's fresh challenge asks the current difficulty.
          expect(challengeOf(res).params.difficulty).toBe(String(body.error.data!.difficulty));
          expect(body.error.data!.detail).toContain("asked 4 bits; this caller's difficulty is now 8, so it buys 0 of its 8 credits");
          outcomes.push(`${body.error.data!.reason}@${body.error.data!.difficulty}`);
        }
      } else {
        const res = await verify(solved[i]!.verifyBody);
        const body = (await res.json()) as Record<string, any>;
        if (res.status === 200) {
          expect(body.credits).toBe(decodeToken(body.token).claims.cr);
          outcomes.push(body.credits);
        } else {
          expect(res.status).toBe(422);
          expect(body.error).toBe("invalid_solution");
          outcomes.push(`${body.reason}@${body.difficulty}`);
        }
      }
    }
    // 6 bits: 8 × 2^(4−6) = 2 credits (a solve: 7 bits); 8 × 2^(4−7) = 1 (8 bits); then 8 × 2^(4−8) = 0: refused.
    expect(outcomes).toEqual([2, 1, ...Array(9).fill(["solution_too_easy@8", "too_easy@8"]).flat()]);
    // Only the first was forwarded; the refusals counted no solve.
    expect(origin.requests.length).toBe(forwarded + 1);
    expect(await statusNow()).toMatchObject({ difficulty: 8, recentSolves: 4 });

    // A refused solution is spent: when the difficulty is back at 4 (the challenge still valid), it still does not pass.
    const marks = await rows<{ id: string; expires_ms: number }>(ipIdentity(ip), "spent");
    for (const c of stale.slice(2))
      expect(marks.find((m) => m.id === c.params.id)?.expires_ms).toBe(Number(c.params.expires) * 1000 + 60_000);
    advance(60_000); // six half-lives: 4 solves → 0.06
    expect(await statusNow()).toMatchObject({ difficulty: 4 });
    expect(Number(stale[2]!.params.expires) * 1000).toBeGreaterThan(Date.now());
    const again = await verify(solved[3]!.verifyBody);
    expect(again.status).toBe(422);
    expect(await again.json()).toMatchObject({ reason: "spent" });
    expect(await reasonOf(await gw(post(toolCall(++seq), { ip, headers: { "tollbooth-solution": solved[2]!.header } })))).toBe(
      "solution_spent",
    );
    expect(origin.requests.length).toBe(forwarded + 1);
  });

  it("a solution at the current difficulty buys the full credits; one harder than it buys no more", async () => {
    expect(await solveFresh()).toEqual({ difficulty: 4, credits: 8, cr: 8 });
    expect(await solveFresh()).toEqual({ difficulty: 5, credits: 8, cr: 8 });
    // At 6 bits now: a challenge at 6 bits redeemed in the request itself buys 8, pays 1.
    const ch = challengeOf(await drain());
    expect(ch.params.difficulty).toBe("6");
    const paid = await gw(post(toolCall(++seq), { ip, headers: { "tollbooth-solution": (await solve(ch)).header } }));
    expect(paid.status).toBe(200);
    expect(decodeToken(paid.headers.get("tollbooth-token")!).claims.cr).toBe(8);
    expect(paid.headers.get("tollbooth-credits")).toBe("7");
    // A challenge at 7 bits redeemed after the difficulty fell back: still 8 (the challenge's own credits).
    const hard = await fetchChallenge(gw, who());
    expect(hard.params.difficulty).toBe("7");
    advance(60_000);
    expect(await statusNow()).toMatchObject({ difficulty: 4 });
    const res2 = await verify((await solve(hard)).verifyBody);
    const body = (await res2.json()) as { token: string; credits: number };
    expect(body.credits).toBe(8);
    expect(decodeToken(body.token).claims.cr).toBe(8);
  });

  it("one bit behind buys half; a solution worth less than the request's cost is refused on the request path", async () => {
    const behind = await Promise.all([fetchChallenge(gw, who()), fetchChallenge(gw, who()), fetchChallenge(gw, who())]);
    const solutions = await Promise.all(behind.map((c) => solve(c)));
    expect(await solveFresh()).toEqual({ difficulty: 4, credits: 8, cr: 8 }); // now 5 bits
    // One bit behind: 4 credits, enough for the heavy tool (3).
    const half = await gw(post(toolCall(++seq, "heavy"), { ip, headers: { "tollbooth-solution": solutions[0]!.header } }));
    expect(half.status).toBe(200);
    expect(decodeToken(half.headers.get("tollbooth-token")!).claims.cr).toBe(4);
    expect(half.headers.get("tollbooth-credits")).toBe("1");
    // Two bits behind (6 bits now): 2 credits, less than the heavy tool's 3: refused, spent, no solve.
    const forwarded = origin.requests.length;
    const short = await gw(post(toolCall(++seq, "heavy"), { ip, headers: { "tollbooth-solution": solutions[1]!.header } }));
    expect(await reasonOf(short.clone())).toBe("solution_too_easy");
    expect((await errorBody(short)).error.data).toMatchObject({
      difficulty: 6,
      cost: 3,
      detail: expect.stringContaining("it buys 2 of its 8 credits, less than the 3 this request costs"),
    });
    expect(origin.requests.length).toBe(forwarded);
    expect(await statusNow()).toMatchObject({ difficulty: 6, recentSolves: 2 });
    expect((await verify(solutions[1]!.verifyBody)).status).toBe(422); // spent
    // The same two bits behind at /verify (cost 0) buys its 2 credits.
    const two = await verify(solutions[2]!.verifyBody);
    expect(await two.json()).toMatchObject({ credits: 2 });
  });
});
