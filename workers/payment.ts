/**
 * The 402 Payment Required answer and the challenge as JSON. The wire contract is in
 * docs/wire-contract.md; tests in test/workers/payment-required.test.ts pin it.
 */
import { formatChallenge, issueChallenge, type PowChallenge } from "../shared/challenge.ts";
import { ErrorCode, type ParsedBody } from "../shared/jsonrpc.ts";
import type { Keyring } from "../shared/keys.ts";
import type { Policy } from "../shared/policy.ts";
import { newTokenId, type TokenClaims } from "../shared/token.ts";
import type { Redemption } from "./caller-bucket.ts";
import { jsonRpcError } from "./responses.ts";

/** Path prefix of tollbooth's own endpoints. */
export const WELL_KNOWN = "/.well-known/tollbooth";
/** Request header carrying a solved challenge (redeem in the same round trip). */
export const SOLUTION_HEADER = "tollbooth-solution";
/** Request header carrying an access token; response header carrying a minted one. */
export const TOKEN_HEADER = "tollbooth-token";
/** Response header: credits left on the access token used or minted. */
export const CREDITS_HEADER = "tollbooth-credits";

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
 * 402 with a fresh proof-of-work challenge bound to `caller`, in `WWW-Authenticate` and
 * in the JSON-RPC error body (`error.code` 402, `error.data.challenges`).
 * @param retryAfterSeconds whole seconds until the free bucket would admit the request
 * @param headers rate-limit headers to add
 */
export async function paymentRequired(opts: {
  keyring: Keyring;
  policy: Policy;
  caller: string;
  nowMs: number;
  url: URL;
  body: ParsedBody | null;
  reason: string;
  cost: number;
  retryAfterSeconds: number;
  headers: Record<string, string>;
}): Promise<Response> {
  const { policy } = opts;
  const ch = await issueChallenge(opts.keyring, {
    realm: policy.realm,
    difficulty: policy.challenge.difficulty,
    credits: policy.challenge.credits,
    ttlSeconds: policy.challenge.ttlSeconds,
    caller: opts.caller,
    nowMs: opts.nowMs,
  });
  const message =
    `Payment required (${opts.reason}): this request costs ${opts.cost} and the caller's budget is spent. ` +
    `Solve the proof-of-work challenge in error.data.challenges[0] (find decimal nonce with SHA-256(salt+nonce) ` +
    `having ${ch.difficulty} leading zero bits) and retry with header Tollbooth-Solution: <challenge params>, nonce="<nonce>"; ` +
    `or wait ${opts.retryAfterSeconds} s.`;
  const data = { reason: opts.reason, cost: opts.cost, retryAfter: opts.retryAfterSeconds, challenges: [challengeJson(ch)], ...gatewayUrls(opts.url) };
  return jsonRpcError(402, opts.body, ErrorCode.PaymentRequired, message, data, {
    ...opts.headers,
    "www-authenticate": formatChallenge(ch),
    "retry-after": String(opts.retryAfterSeconds),
  });
}
