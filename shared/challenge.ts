/**
 * The proof-of-work challenge: format, signing, and checking a solution.
 *
 * Wire form (the `PowChallenge` scheme published for MCP proof-of-work challenges,
 * extended with `expires`, `credits`, `kid` and a signature), RFC 9110 §11.6.1:
 *
 *   WWW-Authenticate: PowChallenge realm="tollbooth", id="…", salt="…", difficulty=16,
 *     algorithm="sha256", expires=1790000000, credits=20, kid="…", signature="…"
 *
 * Rule (same as @powforge/captcha-mcp): find a `nonce` of ASCII decimal digits such that
 * SHA-256(UTF-8(salt ‖ nonce)) has at least `difficulty` leading zero bits, counting
 * from the most significant bit of byte 0.
 *
 * Challenges are stateless: nothing is stored when one is issued. The signature is
 * HMAC-SHA256 over the canonical encoding of every field plus the caller identity, so a
 * challenge issued to one caller cannot be redeemed by another, and no field can be
 * changed or shifted into its neighbour. Single use is enforced at redemption, inside
 * the caller's Durable Object (`workers/caller-bucket.ts`).
 */
import { formatAuthParams } from "./auth-params.ts";
import { canonical, fromBase64Url, randomBytes, toBase64Url, toHex, utf8 } from "./encoding.ts";
import { hmac, hmacVerify, type Keyring } from "./keys.ts";

/** The `WWW-Authenticate` scheme name. */
export const POW_SCHEME = "PowChallenge";
/** Domain-separation label of the challenge signature (never reused by another format). */
const LABEL = "tollbooth/pow-challenge/v1";

/** A challenge as sent on the wire. All fields are needed to redeem it. */
export interface PowChallenge {
  realm: string;
  /** 22 base64url characters (16 random bytes); also the single-use key at redemption. */
  id: string;
  /** 32 lowercase hex characters (16 random bytes); hashed as its UTF-8 text. */
  salt: string;
  /** Required leading zero bits, 1–32. */
  difficulty: number;
  algorithm: "sha256";
  /** Unix seconds after which the challenge cannot be redeemed. */
  expires: number;
  /** Credits of the access token a solve buys. */
  credits: number;
  /** Id of the key that signed it (see `shared/keys.ts`). */
  kid: string;
  /** base64url HMAC-SHA256 (43 characters). */
  signature: string;
}

/** Why a solution was refused. */
export type SolutionError =
  | "malformed"
  | "unsupported_algorithm"
  | "unknown_key"
  | "bad_signature"
  | "expired"
  | "insufficient_work";

const DIGITS = /^(0|[1-9][0-9]{0,15})$/;
const NONCE = /^[0-9]{1,32}$/;

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

/** The `WWW-Authenticate` field value of a challenge. */
export function formatChallenge(ch: PowChallenge): string {
  return formatAuthParams(POW_SCHEME, {
    realm: ch.realm,
    id: ch.id,
    salt: ch.salt,
    difficulty: ch.difficulty,
    algorithm: ch.algorithm,
    expires: ch.expires,
    credits: ch.credits,
    kid: ch.kid,
    signature: ch.signature,
  });
}

/**
 * Read a challenge (and the solver's nonce) from parameters: those of a `Tollbooth-Solution`
 * header, or the JSON body of `POST /.well-known/tollbooth/verify` (numbers may be JSON numbers).
 * Integers must be plain decimal (no sign, leading zeros, or exponent); the nonce 1–32 digits.
 * @returns the challenge and nonce, or `"malformed"` / `"unsupported_algorithm"`
 */
export function readSolution(
  params: Record<string, unknown>,
): { challenge: PowChallenge; nonce: string } | "malformed" | "unsupported_algorithm" {
  const str = (k: string) => (typeof params[k] === "string" ? (params[k] as string) : undefined);
  const int = (k: string) => {
    const v = params[k];
    const text = typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? String(v) : typeof v === "string" ? v : "";
    const n = DIGITS.test(text) ? Number(text) : NaN;
    return Number.isSafeInteger(n) ? n : undefined;
  };
  const [realm, id, salt, algorithm, kid, signature, nonce] = ["realm", "id", "salt", "algorithm", "kid", "signature", "nonce"].map(str);
  const [difficulty, expires, credits] = ["difficulty", "expires", "credits"].map(int);
  if (realm === undefined || id === undefined || salt === undefined || algorithm === undefined || kid === undefined) return "malformed";
  if (signature === undefined || nonce === undefined || difficulty === undefined || expires === undefined || credits === undefined) return "malformed";
  if (!NONCE.test(nonce) || difficulty < 1 || difficulty > 256 || salt.length > 256 || id.length > 256 || realm.length > 256) return "malformed";
  if (algorithm.toLowerCase() !== "sha256") return "unsupported_algorithm";
  return { challenge: { realm, id, salt, difficulty, algorithm: "sha256", expires, credits, kid, signature }, nonce };
}

/** Leading zero bits of `bytes`, from the most significant bit of byte 0. */
export function leadingZeroBits(bytes: Uint8Array): number {
  let bits = 0;
  for (const b of bytes) {
    if (b === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

/** SHA-256(UTF-8(salt ‖ nonce)) with WebCrypto. @returns 32 bytes */
export async function powDigest(salt: string, nonce: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(salt + nonce)));
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
  if (!tag || tag.byteLength !== 32) return { ok: false, reason: "bad_signature" };
  const { signature: _omit, ...unsigned } = challenge;
  // Invariant: every field that matters (and the caller) is under the HMAC; checked in constant time.
  if (!(await hmacVerify(key, tag, signedBytes(unsigned, caller)))) return { ok: false, reason: "bad_signature" };
  if (nowMs >= challenge.expires * 1000) return { ok: false, reason: "expired" };
  if (leadingZeroBits(await powDigest(challenge.salt, nonce)) < challenge.difficulty) {
    return { ok: false, reason: "insufficient_work" };
  }
  return { ok: true };
}
