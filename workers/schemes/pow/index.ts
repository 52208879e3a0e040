/**
 * Proof of work (`PowChallenge`, docs/wire-contract.md §1–2): the free way through a 402.
 * Offer: a challenge signed for the caller at its current (adaptive) difficulty.
 * Credential: `Tollbooth-Solution: <the challenge's parameters>, nonce="<digits>"`, or the
 * same fields as JSON to `/verify`. A solution buys an access token with the challenge's
 * `credits`, living `token.ttlSeconds`; its challenge id is spent once. It is priced at the
 * caller's difficulty when it is redeemed: each bit its challenge asked below that halves
 * the credits (workers/objects/caller-state.ts `solutionWorth`).
 * Refusals: `solution_<SolutionError>`, `solution_spent`, `solution_expired`,
 * `solution_too_easy` (all 402); at `/verify`, 422 `invalid_solution`.
 * It adds no policy section: the challenge's settings (`challenge`) are the policy's own,
 * since the caller's object adapts the difficulty.
 */

import { issueChallenge, verifySolution } from "../../../shared/credentials/challenge.ts";
import { newTokenId } from "../../../shared/credentials/token.ts";
import { refuse } from "../../../shared/result.ts";
import { parseAuthParams } from "../../../shared/wire/auth-params.ts";
import { SOLUTION_HEADER } from "../../../shared/wire/headers.ts";
import { formatChallenge, type PowChallenge, readSolution, type SolutionError } from "../../../shared/wire/pow.ts";
import type { PaymentScheme, Redemption, SchemeFactory, SchemeModule } from "../contract.ts";

/**
 * A proof-of-work refusal as it reaches the wire. `solution_too_easy`: the challenge asked
 * fewer bits than the caller's difficulty at redemption, so the solution is worth less than
 * the request costs (nothing, when it is 0 credits); it is spent, and the 402 carries a
 * fresh challenge at the current difficulty.
 */
export type PowRefusal = `solution_${SolutionError | "spent" | "expired" | "too_easy"}`;

/** A solution read from a request: the challenge as received and the nonce. */
export interface PowCredential {
  challenge: PowChallenge;
  nonce: string;
}

/** A challenge as it appears in `error.data.challenges` and the challenge endpoint. */
export function challengeJson(ch: PowChallenge): Record<string, unknown> {
  return { type: "pow", ...ch, header: formatChallenge(ch) };
}

/**
 * What a verified solution buys: an access token's balance of at most `challenge.credits`
 * (the caller's object scales it to its difficulty at redemption, from `challenge.difficulty`
 * bits), living `tokenTtlSeconds` from `nowMs` (unix ms); the challenge id is spent once.
 */
export function powRedemption(challenge: PowChallenge, tokenTtlSeconds: number, nowMs: number): Redemption {
  const exp = Math.floor(nowMs / 1000) + tokenTtlSeconds;
  return {
    spendId: challenge.id,
    spendUntilMs: challenge.expires * 1000,
    jti: newTokenId(),
    credits: challenge.credits,
    tokenExpiresMs: exp * 1000,
    reusable: false,
    prefix: "solution",
    solve: true,
    difficulty: challenge.difficulty,
  };
}

const read = (params: Record<string, unknown>) => {
  const r = readSolution(params);
  return typeof r === "string" ? refuse(r) : { ok: true as const, credential: r };
};

/** The proof-of-work scheme's factory; always enabled. */
export const powScheme: SchemeFactory = (policy) => {
  const scheme: PaymentScheme<PowCredential> = {
    type: "pow",
    prefix: "solution",
    admits: "worked",
    credits: (plan) => plan.challenge.credits,
    verifyFields: `the challenge fields (realm, id, salt, difficulty, algorithm, expires, credits, kid, signature) and nonce (decimal digits), as in ${SOLUTION_HEADER}`,
    async offer(ctx) {
      const ch = await issueChallenge(ctx.keyring, {
        realm: policy.realm,
        difficulty: ctx.difficulty,
        credits: ctx.plan.challenge.credits,
        ttlSeconds: ctx.plan.challenge.ttlSeconds,
        caller: ctx.caller,
        nowMs: ctx.nowMs,
      });
      return {
        ok: true,
        type: "pow",
        challenge: formatChallenge(ch),
        json: challengeJson(ch),
        hint:
          `Solve the proof-of-work challenge (the "pow" entry of error.data.challenges: find decimal nonce with SHA-256(salt+nonce) ` +
          `having ${ch.difficulty} leading zero bits) and retry with header Tollbooth-Solution: <challenge params>, nonce="<nonce>"`,
      };
    },
    read({ headers }) {
      const value = headers.get(SOLUTION_HEADER);
      if (value === null) return null;
      const params = parseAuthParams(value);
      return params ? read(params.params) : refuse("malformed");
    },
    readJson: read,
    async verify({ challenge, nonce }, ctx) {
      const check = await verifySolution(ctx.keyring, challenge, nonce, ctx.caller, ctx.nowMs);
      if (!check.ok) return check;
      return { ok: true, redemption: powRedemption(challenge, ctx.policy.token.ttlSeconds, ctx.nowMs) };
    },
    refusalStatus: () => 402,
    strip(headers) {
      headers.delete(SOLUTION_HEADER);
    },
    // `/verify`'s refusal of a solution: 422 `invalid_solution` with the reason as the object or
    // the check gave it; a solution below the caller's difficulty now says what it asked, and
    // where a fresh challenge is.
    verifyRefusal(reason, facts) {
      if (reason === "unsupported_algorithm")
        return { status: 422, error: "invalid_solution", message: "Only algorithm sha256 is supported", data: { reason } };
      if (reason === "too_easy" && facts) {
        const message = `Solution refused: too_easy: its challenge asked ${facts.redemption.difficulty} bits; this caller's difficulty is now ${facts.difficulty}, so it buys no credits. Solve a fresh challenge`;
        return {
          status: 422,
          error: "invalid_solution",
          message,
          data: { reason, difficulty: facts.difficulty, challengeUrl: facts.challengeUrl },
        };
      }
      return { status: 422, error: "invalid_solution", message: `Solution refused: ${reason}`, data: { reason } };
    },
    // A 402's `detail` for a solution solved below the caller's current difficulty: what it was
    // worth (the 402's challenge asks the current difficulty).
    refusalDetail(reason, { redemption, difficulty, worth, cost }) {
      if (reason !== "solution_too_easy" || redemption.difficulty === undefined) return undefined;
      return `the solution's challenge asked ${redemption.difficulty} bits; this caller's difficulty is now ${difficulty}, so it buys ${worth ?? 0} of its ${redemption.credits} credits, less than the ${cost} this request costs: solve the fresh challenge`;
    },
  };
  return scheme;
};

/** Proof of work as registered: first in offer order (free, always there). */
export const pow: SchemeModule = {
  type: "pow",
  prefix: "solution",
  make: powScheme,
  words: { redeemed: "solved proof-of-work challenges (pow)" },
};
