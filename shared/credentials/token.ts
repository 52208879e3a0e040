/**
 * The access token: what a solved challenge buys, sent back in the `Tollbooth-Token`
 * request header.
 *
 * Format: `tb1.<kid>.<payload>.<signature>`
 * - `kid`: id of the signing key (`shared/credentials/keys.ts`), so secrets can rotate;
 * - `payload`: base64url (RFC 4648 §5, no padding) of JSON `{ sub, jti, exp, cr }` and, for a
 *   token money bought, `pd: 1`: `sub` the caller identity it is bound to, `jti` its id (22
 *   base64url characters), `exp` unix seconds, `cr` the credits bought, `pd` whether a payment
 *   (not a proof of work) bought them — its requests' admission class at the origin ceiling
 *   (shared/limits/origin-classes.ts); a token without `pd` (work, or one signed before it
 *   existed) verifies as before;
 * - `signature`: base64url HMAC-SHA256 over canonical([label, kid, payload]).
 *
 * The token proves who may spend and until when; how many credits are left is accounted
 * by the caller's Durable Object under `jti` (the `cr` field is the starting balance).
 */
import { canonical, fromBase64Url, randomBytes, toBase64Url, utf8 } from "../wire/encoding.ts";
import { hmac, hmacVerify, type Keyring } from "./keys.ts";

const PREFIX = "tb1";
/** Domain-separation label of the token signature. */
const LABEL = "tollbooth/access-token/v1";

/** The claims of an access token. */
export interface TokenClaims {
  /** Caller identity the token is bound to. */
  sub: string;
  /** Token id: the key of its credit balance in the Durable Object. */
  jti: string;
  /** Expiry, unix seconds. */
  exp: number;
  /** Credits bought (starting balance). */
  cr: number;
  /** 1 when money bought the credits (class `paid` at the origin ceiling); absent when work did. */
  pd?: 1;
}

/** Why a token was refused. */
export type TokenError = "malformed" | "unknown_key" | "bad_signature" | "expired" | "wrong_caller";

/** A fresh random token id (16 bytes, base64url). */
export function newTokenId(): string {
  return toBase64Url(randomBytes(16));
}

/** Sign claims with the keyring's current signing key. @returns the token string */
export async function signToken(keyring: Keyring, claims: TokenClaims): Promise<string> {
  const kid = keyring.signer.kid;
  const payload = toBase64Url(
    utf8(JSON.stringify({ sub: claims.sub, jti: claims.jti, exp: claims.exp, cr: claims.cr, ...(claims.pd === 1 ? { pd: 1 } : {}) })),
  );
  const tag = await hmac(keyring.signer, canonical([LABEL, kid, payload]));
  return `${PREFIX}.${kid}.${payload}.${toBase64Url(tag)}`;
}

/**
 * Verify a token for `caller` at `nowMs` (unix milliseconds).
 * Checks, in order: shape, key id, signature (constant time), claims, expiry, caller.
 * @returns the claims, or the reason the token was refused
 */
export async function verifyToken(
  keyring: Keyring,
  token: string,
  caller: string,
  nowMs: number,
): Promise<{ ok: true; claims: TokenClaims } | { ok: false; reason: TokenError }> {
  const signed = await verifySignature(keyring, token);
  return signed.ok ? checkClaims(signed.claims, caller, nowMs) : signed;
}

/** Shape, key id, signature (constant time) and claim types of a token; not its expiry or caller. */
async function verifySignature(
  keyring: Keyring,
  token: string,
): Promise<{ ok: true; claims: TokenClaims } | { ok: false; reason: TokenError }> {
  if (token.length > 2048) return { ok: false, reason: "malformed" };
  const parts = token.split(".");
  if (parts.length !== 4 || parts[0] !== PREFIX) return { ok: false, reason: "malformed" };
  const [, kid, payload, signature] = parts as [string, string, string, string];
  const key = keyring.byKid.get(kid);
  if (!key) return { ok: false, reason: "unknown_key" };
  // Invariant: strict base64url, so a token has exactly one valid spelling.
  const tag = fromBase64Url(signature);
  if (tag?.byteLength !== 32) return { ok: false, reason: "bad_signature" };
  if (!(await hmacVerify(key, tag, canonical([LABEL, kid, payload])))) return { ok: false, reason: "bad_signature" };
  const bytes = fromBase64Url(payload);
  let claims: TokenClaims;
  try {
    claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes ?? new Uint8Array()));
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (
    typeof claims?.sub !== "string" ||
    typeof claims.jti !== "string" ||
    !Number.isSafeInteger(claims.exp) ||
    !Number.isSafeInteger(claims.cr)
  ) {
    return { ok: false, reason: "malformed" };
  }
  return { ok: true, claims };
}

function checkClaims(
  claims: TokenClaims,
  caller: string,
  nowMs: number,
): { ok: true; claims: TokenClaims } | { ok: false; reason: TokenError } {
  if (nowMs >= claims.exp * 1000) return { ok: false, reason: "expired" };
  if (claims.sub !== caller) return { ok: false, reason: "wrong_caller" };
  return { ok: true, claims };
}

/** Most verified tokens a `tokenVerifier` remembers (oldest dropped first). */
export const TOKEN_MEMO_MAX = 4096;

/**
 * `verifyToken` for one keyring, remembering tokens whose signature verified (until their
 * `exp`, at most `TOKEN_MEMO_MAX`): an agent sends the same token on every call, so its
 * HMAC is checked once per isolate. Expiry and caller are checked on every call; a token
 * that failed is not remembered.
 * @returns `(token, caller, nowMs) → claims or the reason`, as `verifyToken`
 */
export function tokenVerifier(
  keyring: Keyring,
): (token: string, caller: string, nowMs: number) => Promise<{ ok: true; claims: TokenClaims } | { ok: false; reason: TokenError }> {
  const memo = new Map<string, TokenClaims>();
  return async (token, caller, nowMs) => {
    const known = memo.get(token);
    if (known !== undefined) {
      if (nowMs < known.exp * 1000) return checkClaims(known, caller, nowMs);
      memo.delete(token);
    }
    const signed = await verifySignature(keyring, token);
    if (!signed.ok) return signed;
    if (nowMs < signed.claims.exp * 1000) {
      if (memo.size >= TOKEN_MEMO_MAX) memo.delete(memo.keys().next().value!);
      memo.set(token, signed.claims);
    }
    return checkClaims(signed.claims, caller, nowMs);
  };
}
