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
 * Remote keys ({@link remoteKeySet}): the JWKS is fetched by us with the injectable fetch and
 * handed to jose's `createLocalJWKSet`; we own caching ({@link JWKS_CACHE_MAX_AGE_MS}), the
 * timeout ({@link JWKS_TIMEOUT_MS}) and the bound on fetches: at most one fetch starts per
 * {@link JWKS_COOLDOWN_MS} per issuer per isolate, whatever the JWKS does (slow, failing,
 * fine). A token whose `kid` matches no cached key starts a refetch only when the cooldown
 * has passed; otherwise it is answered from the cached set ("no key": not an identity).
 * A key rotated in at the JWKS is therefore followed within the cooldown; a key removed
 * stops verifying new tokens once the cache ages out; tokens already verified stay memoized
 * until their own `exp`.
 */
import { createLocalJWKSet, decodeJwt, errors, type JWTVerifyGetKey, type JWTVerifyOptions, jwtVerify } from "jose";
import { checkJwtIssuers, type JwtIssuer, jwtIssuers, type Policy } from "../policy/index.ts";
import { BoundedMemo, sha256, toHexPrefix } from "./memo.ts";

/** Milliseconds after a JWKS fetch starts (whether it succeeds or fails) before another may start. */
export const JWKS_COOLDOWN_MS = 10_000;
/** Milliseconds a fetched JWKS is used (from the start of its fetch); then it is fetched again before use. */
export const JWKS_CACHE_MAX_AGE_MS = 300_000;
/** Milliseconds a JWKS fetch may take (response and body); the fetch then fails. Less than the cooldown, so fetches never overlap. */
export const JWKS_TIMEOUT_MS = 5_000;
/** Verified tokens remembered per isolate (oldest dropped first), each until its `exp`. */
export const JWT_MEMO_MAX = 4096;
/** Longer `Authorization` tokens are still verified but not memoized (bounds the memo's memory). */
const JWT_MEMO_MAX_TOKEN_CHARS = 4096;
/** Milliseconds between looks at a JWKS fetch another request started, while waiting for it (see {@link remoteKeySet}). */
const JWKS_WAIT_POLL_MS = 10;

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
      options: {
        audience: entry.audience,
        algorithms: entry.algorithms,
        clockTolerance: entry.clockToleranceSeconds,
        requiredClaims: ["exp", "sub"],
      },
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
    remote = remoteKeySet(url.href, fetchImpl);
  }
  let local: JWTVerifyGetKey | undefined;
  if (entry.keys !== undefined) {
    for (const [i, jwk] of entry.keys.entries()) checkPublicJwk(jwk, entry.algorithms, `${at}.keys.${i}`);
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
 * A remote JWKS as a jose key set (`JWTVerifyGetKey`), with fetches bounded whatever the JWKS
 * does. The JWKS is fetched with `fetchImpl` (GET, no redirects, 200 and a JSON JWK Set
 * required) and handed to jose's `createLocalJWKSet`, which selects the key by `kid` / `alg`.
 * - A fetch starts only when {@link JWKS_COOLDOWN_MS} has passed since the last one started —
 *   successful or not. As {@link JWKS_TIMEOUT_MS} is shorter, at most one fetch is in flight,
 *   and at most one starts per cooldown, however many tokens with invented `kid`s arrive and
 *   however slow or failing the JWKS is.
 * - With a set fetched less than {@link JWKS_CACHE_MAX_AGE_MS} ago: a known key is returned; an unknown
 *   `kid` starts a refetch when the cooldown allows (and waits for it: a rotated-in key is
 *   picked up), else it is answered from the cached set: "no key"
 *   (`errors.JWKSNoMatchingKey`), so the token does not verify, at no cost.
 * - Without such a set (first use, aged out, or every fetch failed so far): a fetch starts if
 *   the cooldown allows; when another request's fetch is in flight, this one waits for it by
 *   looking every {@link JWKS_WAIT_POLL_MS} ms, at most {@link JWKS_TIMEOUT_MS} (never awaiting the other
 *   request's promise: on Workers a promise of a request that is cancelled never settles).
 *   A set that aged out is not used while it cannot be fetched again.
 * A failed fetch keeps the previous set (and its age).
 * @param url the JWKS URL (already checked: https, or http to loopback)
 * @param fetchImpl fetch for the JWKS; undefined: the global fetch
 * @returns the key set; it throws jose's errors (`JWKSNoMatchingKey` when no key is known)
 */
function remoteKeySet(url: string, fetchImpl: typeof fetch | undefined): JWTVerifyGetKey {
  const get = fetchImpl ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  /** jose's key set over the last JWKS fetched, and when that fetch started (Date.now ms). */
  let cached: { keys: JWTVerifyGetKey; fetchedAt: number } | undefined;
  /** When the last fetch started (Date.now ms). */
  let attemptedAt = -Infinity;
  /** Fetches started, and fetches settled (succeeded or failed), in this isolate. */
  let started = 0;
  let settled = 0;

  const fresh = (now: number) => cached !== undefined && now >= cached.fetchedAt && now - cached.fetchedAt < JWKS_CACHE_MAX_AGE_MS;
  // A clock that went back counts as "cooldown over" (else a jump back would stop fetches for as long).
  const mayFetch = (now: number) => !(now >= attemptedAt && now - attemptedAt < JWKS_COOLDOWN_MS);

  /** Fetch the JWKS now (the caller checked `mayFetch`); resolves when settled, never rejects. */
  const reload = async (now: number): Promise<void> => {
    attemptedAt = now;
    const n = ++started;
    try {
      const res = await get(url, {
        method: "GET",
        redirect: "manual",
        headers: { accept: "application/jwk-set+json, application/json" },
        signal: AbortSignal.timeout(JWKS_TIMEOUT_MS),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        return;
      }
      cached = { keys: createLocalJWKSet(await res.json()), fetchedAt: now };
    } catch {
      // Timeout, network error, not JSON, not a JWK Set: keep the previous set; the cooldown runs.
    } finally {
      settled = Math.max(settled, n);
    }
  };

  /** Wait (polling, own timers) until the fetch in flight settles, at most {@link JWKS_TIMEOUT_MS}. */
  const awaitOthers = async (): Promise<void> => {
    const target = started;
    for (let waited = 0; settled < target && waited < JWKS_TIMEOUT_MS; waited += JWKS_WAIT_POLL_MS) {
      await new Promise((resolve) => setTimeout(resolve, JWKS_WAIT_POLL_MS));
    }
  };

  return async (header, token) => {
    const now = Date.now();
    if (fresh(now)) {
      try {
        return await cached!.keys(header, token);
      } catch (err) {
        if (!(err instanceof errors.JWKSNoMatchingKey) || !mayFetch(now)) throw err;
      }
      await reload(now);
    } else if (mayFetch(now)) {
      await reload(now);
    } else if (settled < started) {
      await awaitOthers();
    }
    if (!fresh(Date.now())) throw new errors.JWKSNoMatchingKey();
    return cached!.keys(header, token);
  };
}

/**
 * A static key must be a public signature key: RSA, EC or OKP, with no private or
 * symmetric members, `use` (if any) `sig`, `alg` (if any) among the allowed algorithms.
 */
function checkPublicJwk(jwk: Record<string, unknown>, algorithms: readonly string[], at: string): void {
  const kty = jwk.kty;
  if (kty !== "RSA" && kty !== "EC" && kty !== "OKP")
    throw new TypeError(`${at}: kty must be "RSA", "EC" or "OKP" (a public signature key)`);
  const secret = PRIVATE_MEMBERS.find((m) => m in jwk);
  if (secret !== undefined) throw new TypeError(`${at}: holds private key material ("${secret}"); list public keys only`);
  const needed = kty === "RSA" ? ["n", "e"] : kty === "EC" ? ["crv", "x", "y"] : ["crv", "x"];
  for (const m of needed) if (typeof jwk[m] !== "string") throw new TypeError(`${at}: ${kty} key without "${m}"`);
  if (jwk.use !== undefined && jwk.use !== "sig") throw new TypeError(`${at}: use must be "sig"`);
  if (jwk.alg !== undefined && !algorithms.includes(jwk.alg as string))
    throw new TypeError(`${at}: alg ${JSON.stringify(jwk.alg)} is not in identity.jwt.algorithms`);
}
