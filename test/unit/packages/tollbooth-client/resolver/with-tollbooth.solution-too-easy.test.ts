/**
 * `withTollbooth` when the gateway answers its fresh solution with 402 `solution_too_easy`
 * (docs/wire-contract.md §1: the caller's difficulty rose between the challenge and the
 * redemption, so the solution buys less than the request costs): the 402 carries a fresh
 * challenge at the current difficulty, and the resolver solves that one instead of giving
 * up — at most `MAX_RESOLVES` times a call. Any other refusal of a fresh solution still ends
 * the call as `challenge_refused`.
 */
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import { type SolveEvent, withTollbooth } from "../../../../../packages/tollbooth-client/src/index.ts";
import { MAX_RESOLVES } from "../../../../../packages/tollbooth-client/src/resolver/with-tollbooth.ts";
import { formatAuthParams } from "../../../../../shared/wire/auth-params.ts";
import { CREDITS_HEADER, SOLUTION_HEADER, TOKEN_HEADER, WWW_AUTHENTICATE_HEADER } from "../../../../../shared/wire/headers.ts";

/**
 * A scripted gateway: 402 with a challenge of `bits[0]` to a request without a solution; a
 * solution meeting its challenge's difficulty is refused `refusal` (with a fresh challenge of
 * the next `bits`) while `refusals` lasts, then admitted with a token.
 */
function fakeGateway(bits: number[], refusals: number, refusal = "solution_too_easy") {
  let left = refusals;
  let level = 0;
  /** Challenges issued: id → difficulty. */
  const issued = new Map<string, number>();
  const seen: Array<{ status: number; solution: string | null; challengeId?: string; difficulty?: number }> = [];
  const json = (status: number, body: object, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
  const challenge = (difficulty: number) => {
    const id = randomBytes(16).toString("base64url");
    issued.set(id, difficulty);
    const header = formatAuthParams("PowChallenge", {
      realm: "tollbooth",
      id,
      salt: randomBytes(16).toString("hex"),
      difficulty,
      algorithm: "sha256",
      expires: 1_900_000_000,
      credits: 8,
      kid: "k1",
      signature: "sig",
    });
    return { header, id };
  };
  const refuse = (reason: string) => {
    const fresh = challenge(bits[Math.min(level, bits.length - 1)]!);
    return json(
      402,
      {
        jsonrpc: "2.0",
        id: 1,
        error: { code: 402, message: `Payment required (${reason})`, data: { reason, difficulty: bits[Math.min(level, bits.length - 1)] } },
      },
      { [WWW_AUTHENTICATE_HEADER]: fresh.header },
    );
  };
  const fetch = async (_url: string | URL, init?: RequestInit): Promise<Response> => {
    const solution = new Headers(init?.headers).get(SOLUTION_HEADER);
    if (!solution) {
      const res = refuse("over_budget");
      seen.push({ status: 402, solution });
      return res;
    }
    const id = /id="([^"]+)"/.exec(solution)?.[1] ?? "";
    const salt = /salt="([0-9a-f]+)"/.exec(solution)?.[1];
    const nonce = /nonce="([0-9]+)"/.exec(solution)?.[1];
    const difficulty = issued.get(id);
    const digest = createHash("sha256").update(`${salt}${nonce}`).digest();
    const good = difficulty !== undefined && digest.readUInt32BE(0) >>> (32 - difficulty) === 0;
    issued.delete(id); // each challenge redeems once
    let res: Response;
    if (!good)
      res = json(402, {
        jsonrpc: "2.0",
        id: 1,
        error: { code: 402, message: "bad solution", data: { reason: "solution_insufficient_work" } },
      });
    else if (left > 0) {
      left--;
      level++;
      res = refuse(refusal);
    } else {
      const token = `tb1.k1.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 300, cr: 8 })).toString("base64url")}.sig`;
      res = json(200, { jsonrpc: "2.0", id: 1, result: {} }, { [TOKEN_HEADER]: token, [CREDITS_HEADER]: "7" });
    }
    seen.push({ status: res.status, solution, challengeId: id, ...(difficulty !== undefined ? { difficulty } : {}) });
    return res;
  };
  return { fetch, seen };
}

const call = (fetch: ReturnType<typeof withTollbooth>) => fetch("https://gw.example/mcp", { method: "POST", body: "{}" });

describe("withTollbooth: solution_too_easy", () => {
  it("solves the 402's fresh challenge at the higher difficulty and gets through", async () => {
    const gw = fakeGateway([4, 7], 1);
    const solves: SolveEvent[] = [];
    const res = await call(withTollbooth(gw.fetch, { onSolve: (e) => solves.push(e) }));
    expect(res.status).toBe(200);
    expect(gw.seen.map((s) => s.status)).toEqual([402, 402, 200]);
    // Two different challenges solved: the first at 4 bits, then the fresh one at 7.
    expect(gw.seen.slice(1).map((s) => s.difficulty)).toEqual([4, 7]);
    expect(gw.seen[2]!.challengeId).not.toBe(gw.seen[1]!.challengeId);
    expect(solves.map((e) => e.difficulty)).toEqual([4, 7]);
  });

  it(`re-solves at most ${MAX_RESOLVES} times a call, then ends it as challenge_refused`, async () => {
    const gw = fakeGateway([4, 5, 6, 7, 8], 10);
    const error = await call(withTollbooth(gw.fetch)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TollboothError);
    expect((error as TollboothError).code).toBe("challenge_refused");
    expect((error as TollboothError).status).toBe(402);
    expect((error as TollboothError).message).toContain("solution_too_easy");
    // The first solution and MAX_RESOLVES more, each to its own fresh challenge.
    const sent = gw.seen.filter((s) => s.solution !== null);
    expect(sent.map((s) => s.difficulty)).toEqual([4, 5, 6, 7]);
    expect(new Set(sent.map((s) => s.challengeId)).size).toBe(MAX_RESOLVES + 1);
  });

  it("another refusal of a fresh solution (solution_spent) still ends the call at once", async () => {
    const gw = fakeGateway([4, 5], 1, "solution_spent");
    const error = await call(withTollbooth(gw.fetch)).catch((e: unknown) => e);
    expect((error as TollboothError).code).toBe("challenge_refused");
    expect(gw.seen.map((s) => s.status)).toEqual([402, 402]);
  });

  it("a fresh challenge harder than maxDifficulty ends the call as challenge_too_hard", async () => {
    const gw = fakeGateway([4, 9], 1);
    const error = await call(withTollbooth(gw.fetch, { maxDifficulty: 8 })).catch((e: unknown) => e);
    expect((error as TollboothError).code).toBe("challenge_too_hard");
    expect(gw.seen.filter((s) => s.solution !== null)).toHaveLength(1);
  });
});
