/**
 * Signed proof-of-work challenges: issuing one bound to a caller and checking a solution
 * (the wire form and the work rule are shared/wire/pow.ts).
 *
 * Challenges are stateless: nothing is stored when one is issued. The signature is
 * HMAC-SHA256 over the canonical encoding of every field plus the caller identity, so a
 * challenge issued to one caller cannot be redeemed by another, and no field can be
 * changed or shifted into its neighbour. Single use is enforced at redemption, inside
 * the caller's Durable Object.
 */
import { canonical, fromBase64Url, randomBytes, toBase64Url, toHex } from "../wire/encoding.ts";
import { leadingZeroBits, type PowChallenge, powDigest, type SolutionError } from "../wire/pow.ts";
import { hmac, hmacVerify, type Keyring } from "./keys.ts";

/** Domain-separation label of the challenge signature (never reused by another format). */
const LABEL = "tollbooth/pow-challenge/v1";

function signedBytes(ch: Omit<PowChallenge, "signature">, caller: string): Uint8Array<ArrayBuffer> {
  return canonical([LABEL, ch.realm, ch.id, ch.salt, ch.difficulty, ch.algorithm, ch.expires, ch.credits, ch.kid, caller]);
}

/**
 * Issue a fresh challenge bound to `caller`. Stores nothing.
 * @param opts.ttlSeconds lifetime in seconds; `nowMs` unix milliseconds
 */
export async function issueChallenge(
  keyring: Keyring,
  opts: { realm: string; difficulty: number; credits: number; ttlSeconds: number; caller: string; nowMs: number },
): Promise<PowChallenge> {
  const unsigned = {
    realm: opts.realm,
    id: toBase64Url(randomBytes(16)),
    salt: toHex(randomBytes(16)),
    difficulty: opts.difficulty,
    algorithm: "sha256" as const,
    expires: Math.floor(opts.nowMs / 1000) + opts.ttlSeconds,
    credits: opts.credits,
    kid: keyring.signer.kid,
  };
  const tag = await hmac(keyring.signer, signedBytes(unsigned, opts.caller));
  return { ...unsigned, signature: toBase64Url(tag) };
}

/**
 * Check a solution statelessly: key, signature (bound to `caller`), expiry, then the work.
 * Single use is not checked here: the caller's Durable Object spends the challenge id.
 * @param nowMs unix milliseconds
 * @returns `{ ok: true }` or the reason it was refused
 */
export async function verifySolution(
  keyring: Keyring,
  challenge: PowChallenge,
  nonce: string,
  caller: string,
  nowMs: number,
): Promise<{ ok: true } | { ok: false; reason: SolutionError }> {
  const key = keyring.byKid.get(challenge.kid);
  if (!key) return { ok: false, reason: "unknown_key" };
  const tag = fromBase64Url(challenge.signature);
  if (tag?.byteLength !== 32) return { ok: false, reason: "bad_signature" };
  const { signature: _omit, ...unsigned } = challenge;
  // Invariant: every field that matters (and the caller) is under the HMAC; checked in constant time.
  if (!(await hmacVerify(key, tag, signedBytes(unsigned, caller)))) return { ok: false, reason: "bad_signature" };
  if (nowMs >= challenge.expires * 1000) return { ok: false, reason: "expired" };
  if (leadingZeroBits(await powDigest(challenge.salt, nonce)) < challenge.difficulty) {
    return { ok: false, reason: "insufficient_work" };
  }
  return { ok: true };
}
