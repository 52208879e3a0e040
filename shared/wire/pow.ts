/**
 * The proof-of-work challenge as both sides speak it: the `PowChallenge` fields, their
 * `WWW-Authenticate` form, reading a solution's parameters, and the work rule. Signing and
 * checking a challenge's signature is the gateway's (shared/credentials/challenge.ts).
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
 */
import { formatAuthParams } from "./auth-params.ts";
import { utf8 } from "./encoding.ts";

/** The `WWW-Authenticate` scheme name. */
export const POW_SCHEME = "PowChallenge";
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
  /** Id of the key that signed it (see `shared/credentials/keys.ts`). */
  kid: string;
  /** base64url HMAC-SHA256 (43 characters). */
  signature: string;
}

/** Why a solution was refused. */
export type SolutionError = "malformed" | "unsupported_algorithm" | "unknown_key" | "bad_signature" | "expired" | "insufficient_work";

const DIGITS = /^(0|[1-9][0-9]{0,15})$/;
const NONCE = /^[0-9]{1,32}$/;

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
  if (signature === undefined || nonce === undefined || difficulty === undefined || expires === undefined || credits === undefined)
    return "malformed";
  if (!NONCE.test(nonce) || difficulty < 1 || difficulty > 256 || salt.length > 256 || id.length > 256 || realm.length > 256)
    return "malformed";
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
