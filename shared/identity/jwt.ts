/**
 * The `jwt` identity strategy: `Authorization: Bearer <JWT>` verified with `jose` against
 * a remote JWKS (`identity.jwt.jwksUrl`) and/or static public keys (`identity.jwt.keys`).
 * No JWT or JWK code of our own: parsing, key selection, signature, `iss`, `aud`, `exp`,
 * `nbf` and the algorithm allow-list are all `jose`'s `jwtVerify`.
 *
 * Remote keys (jose `createRemoteJWKSet`): fetched on first use and cached
 * {@link JWKS_CACHE_MAX_AGE_MS}; a token whose `kid` matches no cached key makes jose
 * fetch the set again, at most once per {@link JWKS_COOLDOWN_MS} (so a key rotated in at the
 * JWKS is followed within that time, and a flood of unknown `kid`s costs at most one JWKS
 * fetch per cooldown per isolate). A key removed from the JWKS stops verifying new tokens
 * once the cache ages out; tokens already verified stay memoized until their own `exp`.
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTVerifyGetKey } from "jose";
import type { Policy } from "../policy.ts";
import { BoundedMemo, sha256, toHexPrefix } from "./memo.ts";

/** Milliseconds after a JWKS fetch before an unknown `kid` may trigger another fetch (jose `cooldownDuration`). */
export const JWKS_COOLDOWN_MS = 10_000;
/** Milliseconds a fetched JWKS is used before it is fetched again (jose `cacheMaxAge`). */
export const JWKS_CACHE_MAX_AGE_MS = 300_000;
/** Milliseconds a JWKS fetch may take (jose `timeoutDuration`); the token then does not verify. */
export const JWKS_TIMEOUT_MS = 5_000;
/** Verified tokens remembered per isolate (oldest dropped first), each until its `exp`. */
export const JWT_MEMO_MAX = 4096;
/** Longer `Authorization` tokens are still verified but not memoized (bounds the memo's memory). */
const JWT_MEMO_MAX_TOKEN_CHARS = 4096;

/** A verified token's identity. */
export interface JwtIdentity {
  /** `jwt:` + first 16 bytes (hex) of SHA-256(`iss` + "\n" + `sub`). */
  id: string;
  /** The string value of the claim `planClaim`, if any. */
  plan?: string;
  /** `sub`, cut to 64 characters. */
  label: string;
}

/** JWT config, `identity.jwt` of the policy. */
export type JwtConfig = NonNullable<Policy["identity"]["jwt"]>;

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Check `identity.jwt` and prepare its key sets.
 * @param config `identity.jwt`
 * @param fetchImpl fetch for the JWKS (jose's `customFetch`); undefined: the global fetch
 * @returns the verifier: a Bearer token → its identity, or null when it does not verify
 *   (never throws)
 * @throws TypeError naming the bad option: `TOLLBOOTH_POLICY.identity.jwt: …` (neither
 *   `jwksUrl` nor `keys`), `….jwksUrl: …` (not a URL; plain http to a non-loopback host),
 *   `….keys.<i>: …` (not a public signature key of an allowed algorithm)
 */
export function jwtVerifier(config: JwtConfig, fetchImpl?: typeof fetch): (token: string) => Promise<JwtIdentity | null> {
  const at = "TOLLBOOTH_POLICY.identity.jwt";
  if (config.jwksUrl === undefined && config.keys === undefined) throw new TypeError(`${at}: needs jwksUrl or keys`);
  let remote: JWTVerifyGetKey | undefined;
  if (config.jwksUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(config.jwksUrl);
    } catch {
      throw new TypeError(`${at}.jwksUrl: not a URL`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && LOOPBACK_HOST.test(url.hostname))) {
      throw new TypeError(`${at}.jwksUrl: must be https (plain http only to a loopback host)`);
    }
    remote = createRemoteJWKSet(url, {
      cooldownDuration: JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_CACHE_MAX_AGE_MS,
      timeoutDuration: JWKS_TIMEOUT_MS,
      ...(fetchImpl ? { [customFetch]: (u: string, init: RequestInit) => fetchImpl(u, init) } : {}),
    });
  }
  let local: JWTVerifyGetKey | undefined;
  if (config.keys !== undefined) {
    config.keys.forEach((jwk, i) => checkPublicJwk(jwk, config.algorithms, `${at}.keys.${i}`));
    try {
      local = createLocalJWKSet({ keys: config.keys as never });
    } catch (err) {
      throw new TypeError(`${at}.keys: ${(err as Error).message}`);
    }
  }
  // Static keys first; a token whose key is not among them goes to the JWKS.
  const getKey: JWTVerifyGetKey =
    local && remote
      ? async (header, token) => {
          try {
            return await local(header, token);
          } catch (err) {
            if (err instanceof errors.JWKSNoMatchingKey) return remote(header, token);
            throw err;
          }
        }
      : (local ?? remote)!;

  const options = {
    issuer: config.issuer,
    audience: config.audience,
    algorithms: config.algorithms,
    clockTolerance: config.clockToleranceSeconds,
    requiredClaims: ["exp", "sub"],
  };
  const memo = new BoundedMemo<JwtIdentity>(JWT_MEMO_MAX);

  return async (token) => {
    const now = Date.now();
    const known = memo.get(token, now);
    if (known) return known;
    let payload;
    try {
      ({ payload } = await jwtVerify(token, getKey, options));
    } catch {
      return null; // not an identity: the caller falls through to the next strategy
    }
    const { iss, sub, exp } = payload;
    if (typeof sub !== "string" || sub === "" || typeof iss !== "string" || typeof exp !== "number") return null;
    const claim = config.planClaim !== undefined ? payload[config.planClaim] : undefined;
    const identity: JwtIdentity = {
      id: `jwt:${toHexPrefix(await sha256(`${iss}\n${sub}`), 16)}`,
      label: sub.slice(0, 64),
      ...(typeof claim === "string" ? { plan: claim } : {}),
    };
    if (token.length <= JWT_MEMO_MAX_TOKEN_CHARS) memo.set(token, identity, exp * 1000);
    return identity;
  };
}

/**
 * A static key must be a public signature key: RSA, EC or OKP, with no private or
 * symmetric members, `use` (if any) `sig`, `alg` (if any) among the allowed algorithms.
 */
function checkPublicJwk(jwk: Record<string, unknown>, algorithms: readonly string[], at: string): void {
  const kty = jwk.kty;
  if (kty !== "RSA" && kty !== "EC" && kty !== "OKP") throw new TypeError(`${at}: kty must be "RSA", "EC" or "OKP" (a public signature key)`);
  const secret = PRIVATE_MEMBERS.find((m) => m in jwk);
  if (secret !== undefined) throw new TypeError(`${at}: holds private key material ("${secret}"); list public keys only`);
  const needed = kty === "RSA" ? ["n", "e"] : kty === "EC" ? ["crv", "x", "y"] : ["crv", "x"];
  for (const m of needed) if (typeof jwk[m] !== "string") throw new TypeError(`${at}: ${kty} key without "${m}"`);
  if (jwk.use !== undefined && jwk.use !== "sig") throw new TypeError(`${at}: use must be "sig"`);
  if (jwk.alg !== undefined && !algorithms.includes(jwk.alg as string)) throw new TypeError(`${at}: alg ${JSON.stringify(jwk.alg)} is not in identity.jwt.algorithms`);
}
