/**
 * The admin API's bearer token (`TOLLBOOTH_ADMIN_TOKEN`, a Worker secret): checked in
 * constant time. Both the configured token and the presented one are first put through
 * HMAC-SHA256 under a random per-isolate key, so what is compared has a fixed length (32
 * bytes) whatever was sent, and the comparison below never stops at the first difference:
 * neither the token's length nor its prefix leaks through timing.
 */
import { utf8 } from "../../shared/wire/encoding.ts";

/** Tokens shorter than this (UTF-8 bytes) are refused as configuration errors. */
export const MIN_ADMIN_TOKEN_BYTES = 16;
/** Longest `Authorization` value read (longer ones are refused without hashing). */
const MAX_HEADER_CHARS = 1024;

/**
 * Whether two byte strings are equal, in time that depends only on their lengths.
 * Invariant: every byte is visited; no early exit on a difference (callers pass
 * equal-length digests, so the length is no secret either).
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/**
 * The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, one
 * space or more, RFC 6750 b64token characters, nothing after it), or null. Two headers
 * (joined with ", " by `Headers`) do not match.
 */
export function bearerOf(value: string | null): string | null {
  if (value === null || value.length > MAX_HEADER_CHARS) return null;
  const m = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(value);
  return m ? m[1]! : null;
}

/**
 * Build the checker of the admin token.
 * @param token the configured `TOLLBOOTH_ADMIN_TOKEN` (≥ 16 bytes; use `openssl rand -hex 32`)
 * @returns `(authorization header) → Promise<boolean>`: true only for `Bearer <the token>`
 * @throws TypeError when the token is shorter than 16 bytes or has characters a bearer
 *   token cannot carry (RFC 6750 b64token)
 */
export function adminTokenChecker(token: string): (authorization: string | null) => Promise<boolean> {
  if (utf8(token).byteLength < MIN_ADMIN_TOKEN_BYTES)
    throw new TypeError(`TOLLBOOTH_ADMIN_TOKEN is shorter than ${MIN_ADMIN_TOKEN_BYTES} bytes`);
  if (bearerOf(`Bearer ${token}`) !== token)
    throw new TypeError("TOLLBOOTH_ADMIN_TOKEN must be a bearer token: letters, digits and -._~+/ (then = padding)");
  let prepared: Promise<{ key: CryptoKey; expected: Uint8Array }> | undefined;
  const prepare = async () => {
    // A random, non-extractable key per isolate: the digests compared are unpredictable to a caller.
    const key = await crypto.subtle.importKey("raw", crypto.getRandomValues(new Uint8Array(32)), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
    ]);
    return { key, expected: new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(token))) };
  };
  return async (authorization) => {
    prepared ??= prepare();
    const { key, expected } = await prepared;
    // A missing or malformed header is compared too (as an empty token): same work either way.
    const presented = bearerOf(authorization) ?? "";
    const digest = new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(presented)));
    // Invariant: the token is compared only as equal-length HMAC digests, in constant time.
    return constantTimeEqual(digest, expected) && presented !== "";
  };
}
