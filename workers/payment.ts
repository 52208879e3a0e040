/**
 * The 402 Payment Required answer and the challenge as JSON. The wire contract is in
 * docs/wire-contract.md; tests in test/workers/payment-required.test.ts pin it.
 */
import { formatChallenge, issueChallenge, type PowChallenge } from "../shared/challenge.ts";
import { ErrorCode, type ParsedBody } from "../shared/jsonrpc.ts";
import type { Keyring } from "../shared/keys.ts";
import type { Plan, Policy } from "../shared/policy.ts";
import { newTokenId, type TokenClaims } from "../shared/token.ts";
import type { Redemption } from "./caller-bucket.ts";
import { jsonRpcError } from "./responses.ts";

import { WELL_KNOWN } from "../shared/wire.ts";
export { CREDITS_HEADER, SOLUTION_HEADER, TOKEN_HEADER, WELL_KNOWN } from "../shared/wire.ts";

/**
 * What a verified solution buys: the claims of the access token (signed once the caller's
 * Durable Object has minted it) and the record the object keeps for it.
 * @param tokenTtlSeconds token lifetime in seconds; `nowMs` unix milliseconds
 */
export function redemptionFor(challenge: PowChallenge, caller: string, tokenTtlSeconds: number, nowMs: number): { claims: TokenClaims; redemption: Redemption } {
  const claims: TokenClaims = { sub: caller, jti: newTokenId(), exp: Math.floor(nowMs / 1000) + tokenTtlSeconds, cr: challenge.credits };
  return {
    claims,
    redemption: { challengeId: challenge.id, challengeExpiresMs: challenge.expires * 1000, jti: claims.jti, credits: claims.cr, tokenExpiresMs: claims.exp * 1000 },
  };
}

/** A challenge as it appears in `error.data.challenges` and the challenge endpoint. */
export function challengeJson(ch: PowChallenge): Record<string, unknown> {
  return { type: "pow", ...ch, header: formatChallenge(ch) };
}

/** The gateway's own URLs, absolute, for a request URL. */
export function gatewayUrls(requestUrl: URL): { policyUrl: string; challengeUrl: string; verifyUrl: string; statusUrl: string } {
  const base = requestUrl.origin + WELL_KNOWN;
  return { policyUrl: base, challengeUrl: `${base}/challenge`, verifyUrl: `${base}/verify`, statusUrl: `${base}/status` };
}

/**
 * What a request is, for messages: `tools/call expensive`, `resources/read file:///x`,
 * `a batch of 3 messages`, or `GET /path`.
 */
export function describeRequest(method: string, path: string, body: ParsedBody | null): string {
  if (!body) return `${method} ${path}`;
  if (body.batch) return `a batch of ${body.messages.length} messages`;
  const m = body.messages[0]!;
  if (m.method === undefined) return "a JSON-RPC response";
  return m.name !== undefined ? `${m.method} ${m.name}` : m.method;
}

/**
 * The over-budget answer, with a fresh proof-of-work challenge bound to `caller`: 402 with
 * the challenge in `WWW-Authenticate` and in the JSON-RPC error body (`error.code` 402,
 * `error.data.challenges`); or, in the plan's 429 mode (`overBudget: "429"`), 429 with an
 * exact integer `Retry-After` and the challenge still in `error.data`. A request that
 * costs more than a solve buys gets 429 with no challenge (solving could never pay for it);
 * one costing more than the free bucket holds gets no `Retry-After` (waiting never admits
 * it), and in 429 mode a 400 (a client that only waits would loop).
 * @param retryAfterSeconds whole seconds until the free bucket would admit the request
 * @param difficulty the caller's current difficulty, bits (adaptive: see shared/difficulty.ts)
 * @param solves the caller's decayed count of recent solves (why the difficulty rose)
 * @param headers rate-limit headers to add
 */
export async function paymentRequired(opts: {
  keyring: Keyring;
  policy: Policy;
  plan: Plan;
  caller: string;
  nowMs: number;
  url: URL;
  body: ParsedBody | null;
  what: string;
  reason: string;
  cost: number;
  retryAfterSeconds: number;
  difficulty?: number | undefined;
  solves?: number | undefined;
  headers: Record<string, string>;
}): Promise<Response> {
  const { policy, plan } = opts;
  const retryAfter = Math.max(opts.plan.overBudget === "429" ? 1 : 0, opts.retryAfterSeconds);
  // Invariant: a Retry-After is only sent when waiting can help (the bucket can hold the cost).
  const waitHelps = opts.cost <= plan.bucket.capacity;
  if (!waitHelps && plan.overBudget === "429") {
    // 429 mode is for clients that only wait: one that waiting never admits gets an error, not a loop.
    return jsonRpcError(400, opts.body, ErrorCode.InvalidRequest, `Invalid Request: ${opts.what} costs ${opts.cost}, more than the free bucket ever holds (${plan.bucket.capacity}, plan ${plan.name}): send fewer messages per batch`, { reason: opts.reason, cost: opts.cost, maxCost: plan.bucket.capacity, plan: plan.name });
  }
  if (opts.cost > plan.challenge.credits) {
    const message = `Too many requests (${opts.reason}): ${opts.what} costs ${opts.cost}, more than a solve buys (${plan.challenge.credits}); retry after ${Math.max(1, retryAfter)} s, when the free bucket holds it.`;
    return jsonRpcError(429, opts.body, ErrorCode.TooManyRequests, message, { reason: opts.reason, layer: "bucket", cost: opts.cost, retryAfter: Math.max(1, retryAfter) }, { ...opts.headers, "retry-after": String(Math.max(1, retryAfter)) });
  }
  const difficulty = opts.difficulty ?? plan.challenge.difficulty;
  const ch = await issueChallenge(opts.keyring, {
    realm: policy.realm,
    difficulty,
    credits: plan.challenge.credits,
    ttlSeconds: plan.challenge.ttlSeconds,
    caller: opts.caller,
    nowMs: opts.nowMs,
  });
  const raised = difficulty > plan.challenge.difficulty
    ? { difficultyRaised: { base: plan.challenge.difficulty, current: difficulty, recentSolves: opts.solves ?? 0, why: `${opts.solves ?? 0} recent solves (decaying with a half-life of ${plan.challenge.adaptive.halfLifeSeconds} s): +1 bit per ${plan.challenge.adaptive.solvesPerStep}` } }
    : {};
  const data = { reason: opts.reason, plan: plan.name, cost: opts.cost, retryAfter: waitHelps ? retryAfter : null, difficulty, ...raised, challenges: [challengeJson(ch)], ...gatewayUrls(opts.url) };
  const solveHint =
    `Solve the proof-of-work challenge in error.data.challenges[0] (find decimal nonce with SHA-256(salt+nonce) ` +
    `having ${ch.difficulty} leading zero bits) and retry with header Tollbooth-Solution: <challenge params>, nonce="<nonce>"`;
  if (plan.overBudget === "429") {
    const message = `Too many requests (${opts.reason}): ${opts.what} costs ${opts.cost} and the caller's budget is spent. Retry after ${retryAfter} s; or ${solveHint.charAt(0).toLowerCase()}${solveHint.slice(1)}.`;
    return jsonRpcError(429, opts.body, ErrorCode.TooManyRequests, message, { ...data, layer: "bucket" }, { ...opts.headers, "retry-after": String(retryAfter) });
  }
  const message = waitHelps
    ? `Payment required (${opts.reason}): ${opts.what} costs ${opts.cost} and the caller's budget is spent. ${solveHint}; or wait ${retryAfter} s.`
    : `Payment required (${opts.reason}): ${opts.what} costs ${opts.cost}, more than the free bucket ever holds (${plan.bucket.capacity}). ${solveHint}.`;
  return jsonRpcError(402, opts.body, ErrorCode.PaymentRequired, message, data, {
    ...opts.headers,
    "www-authenticate": formatChallenge(ch),
    ...(waitHelps ? { "retry-after": String(retryAfter) } : {}),
  });
}
