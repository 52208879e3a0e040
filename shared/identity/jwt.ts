/**
 * The `jwt` identity strategy: `Authorization: Bearer <JWT>` verified with `jose` against the
 * keys of the token's own issuer. `identity.jwt` lists issuers (one entry each, or one object
 * for a single issuer), each with its remote JWKS (`jwksUrl`) and/or static public keys
 * (`keys`), audience, algorithms and plan claim. No JWT or JWK code of our own: parsing, key
 * selection, signature, `iss`, `aud`, `exp`, `nbf` and the algorithm allow-list are all
 * `jose`'s (`decodeJwt` to read the unverified `iss` that picks the entry, then `jwtVerify`
 * with that entry's keys only and `issuer` pinned). A partner issuer's key therefore never
 * verifies a token claiming another issuer's `iss`: it cannot mint another issuer's callers
 * (the id is SHA-256 of `iss` + `sub`) nor their plans.
 *
 * Remote keys (jose `createRemoteJWKSet`, one per issuer): fetched on first use and cached
 * {@link JWKS_CACHE_MAX_AGE_MS}; a token whose `kid` matches no cached key makes jose
 * fetch the set again, at most once per {@link JWKS_COOLDOWN_MS}. A key removed from the JWKS
 * stops verifying new tokens once the cache ages out; tokens already verified stay memoized
 * until their own `exp`.
 */
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeJwt, errors, jwtVerify, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { checkJwtIssuers, jwtIssuers, type JwtIssuer, type Policy } from "../policy.ts";
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
  /** The string value of the issuer's `planClaim`, if any (and, with `plans`, if listed there). */
  plan?: string;
  /** `sub`, cut to 64 characters. */
  label: string;
}

/** JWT config, `identity.jwt` of the policy: one issuer, or a list of issuers. */
export type JwtConfig = NonNullable<Policy["identity"]["jwt"]>;

/** One issuer, prepared: its key set and jose options. */
interface Issuer {
  entry: JwtIssuer;
  getKey: JWTVerifyGetKey;
  options: JWTVerifyOptions;
}

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];
const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Check `identity.jwt` and prepare each issuer's key sets (nothing is fetched yet).
 * @param config `identity.jwt`: one issuer object, or a list of them
 * @param fetchImpl fetch for the JWKS; undefined: the global fetch
 * @returns the verifier: a Bearer token → its identity, or null when it does not verify
 *   (never throws). A token verifies only under the keys of the entry whose `issuer` is its
 *   unverified `iss`; a token of an issuer not listed costs no key lookup and no fetch.
 * @throws TypeError naming the bad option (`<at>` is `TOLLBOOTH_POLICY.identity.jwt` for the
 *   single-object form, `TOLLBOOTH_POLICY.identity.jwt.<i>` for a list entry):
 *   `<at>: needs jwksUrl or keys`, `<at>.jwksUrl: …` (not a URL; plain http to a non-loopback
 *   host), `<at>.keys.<j>: …` (not a public signature key of an allowed algorithm),
 *   `<at>.issuer: …` (an `iss` another entry lists too), `<at>.plans: …` (without `planClaim`)
 */
export function jwtVerifier(config: JwtConfig, fetchImpl?: typeof fetch): (token: string) => Promise<JwtIdentity | null> {
  checkJwtIssuers(config);
  const byIss = new Map<string, Issuer>();
  for (const { at, entry } of jwtIssuers(config)) {
    const issuer: Issuer = {
      entry,
      getKey: issuerKeys(entry, at, fetchImpl),
      options: { audience: entry.audience, algorithms: entry.algorithms, clockTolerance: entry.clockToleranceSeconds, requiredClaims: ["exp", "sub"] },
    };
    for (const iss of typeof entry.issuer === "string" ? [entry.issuer] : entry.issuer) byIss.set(iss, issuer);
  }
  const memo = new BoundedMemo<JwtIdentity>(JWT_MEMO_MAX);

  return async (token) => {
    const now = Date.now();
    const known = memo.get(token, now);
    if (known) return known;
    // Pick the issuer by the unverified `iss`; jose then verifies with its keys only, `iss` pinned.
    let claimed: unknown;
    try {
      claimed = decodeJwt(token).iss;
    } catch {
      return null; // not a JWT
    }
    const issuer = typeof claimed === "string" ? byIss.get(claimed) : undefined;
    if (issuer === undefined) return null; // an issuer not listed: not an identity
    let payload;
    try {
      ({ payload } = await jwtVerify(token, issuer.getKey, { ...issuer.options, issuer: claimed as string }));
    } catch {
      return null; // not an identity: the caller falls through to the next strategy
    }
    const { iss, sub, exp } = payload;
    if (typeof sub !== "string" || sub === "" || iss !== claimed || typeof exp !== "number") return null;
    const { planClaim, plans } = issuer.entry;
    const claim = planClaim !== undefined ? payload[planClaim] : undefined;
    const plan = typeof claim === "string" && (plans === undefined || plans.includes(claim)) ? claim : undefined;
    const identity: JwtIdentity = {
      id: `jwt:${toHexPrefix(await sha256(`${iss}\n${sub}`), 16)}`,
      label: sub.slice(0, 64),
      ...(plan !== undefined ? { plan } : {}),
    };
    if (token.length <= JWT_MEMO_MAX_TOKEN_CHARS) memo.set(token, identity, exp * 1000);
    return identity;
  };
}

/**
 * One issuer's key set: its static keys first, then its JWKS for a key not among them.
 * @throws TypeError naming the bad option (see {@link jwtVerifier})
 */
function issuerKeys(entry: JwtIssuer, at: string, fetchImpl: typeof fetch | undefined): JWTVerifyGetKey {
  if (entry.jwksUrl === undefined && entry.keys === undefined) throw new TypeError(`${at}: needs jwksUrl or keys`);
  let remote: JWTVerifyGetKey | undefined;
  if (entry.jwksUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(entry.jwksUrl);
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
  if (entry.keys !== undefined) {
    entry.keys.forEach((jwk, i) => checkPublicJwk(jwk, entry.algorithms, `${at}.keys.${i}`));
    try {
      local = createLocalJWKSet({ keys: entry.keys as never });
    } catch (err) {
      throw new TypeError(`${at}.keys: ${(err as Error).message}`);
    }
  }
  if (local && remote) {
    const [staticKeys, jwks] = [local, remote];
    return async (header, token) => {
      try {
        return await staticKeys(header, token);
      } catch (err) {
        if (err instanceof errors.JWKSNoMatchingKey) return jwks(header, token);
        throw err;
      }
    };
  }
  return (local ?? remote)!;
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
