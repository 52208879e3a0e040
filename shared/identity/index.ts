/**
 * Caller identity: whose buckets a request draws on. Strategies are tried in the order
 * `identity.strategies` lists them (default `["jwt", "api-key", "ip"]`); the first that
 * applies wins (docs/identity.md):
 * - `jwt` — `Authorization: Bearer <JWT>` that verifies under the keys of its own issuer in
 *   `identity.jwt` (one entry per issuer: JWKS URL and/or static keys; `iss`, `aud`, `exp`,
 *   `nbf`, algorithm; a string `sub`) → `jwt:<hex>` of `iss` + `sub`. Verified.
 * - `api-key` — the `identity.apiKeyHeader` value whose SHA-256 is an issued key (listed in
 *   `identity.apiKeys`, or a key of the `TOLLBOOTH_KEYS` KV namespace) → `key:<hex>`. Verified.
 * - `ip` — `CF-Connecting-IP` reduced to `identity.ipv4Prefix` / `ipv6Prefix` → `ip:<network>`.
 *   Shared by everyone on that network; trustworthy only behind Cloudflare's edge.
 * - `authorization-unverified` / `api-key-unverified` — the hash of whatever header value
 *   arrives (`auth:<hex>` / `key:<hex>`). Opt-in: a caller splits itself by sending new values.
 * A token or key that does not verify is not an identity: the request falls through to the
 * next strategy (tollbooth refuses nothing for it). Nothing applies → `anonymous`.
 * Never `Mcp-Session-Id`: a caller mints sessions freely.
 */
import type { IdentityStrategy, Policy } from "../policy/index.ts";
import { toHex } from "../wire/encoding.ts";
import { type JwtIdentity, jwtVerifier } from "./jwt.ts";
import { BoundedMemo, sha256 } from "./memo.ts";
import { networkOf } from "./network.ts";

export { JWKS_CACHE_MAX_AGE_MS, JWKS_COOLDOWN_MS, JWT_MEMO_MAX } from "./jwt.ts";
export { networkOf } from "./network.ts";

/** Identity of callers no strategy could name, and the network of callers without a usable `CF-Connecting-IP`. */
export const ANONYMOUS = "anonymous";

/**
 * Milliseconds an answer of the `TOLLBOOTH_KEYS` KV namespace (found or not found) is
 * reused per isolate: a key revoked in KV (or added) takes effect within this time, plus
 * KV's own propagation (up to about 60 s across Cloudflare locations).
 */
export const KEY_MEMO_TTL_MS = 30_000;
/** KV answers remembered per isolate (oldest dropped first). */
export const KEY_MEMO_MAX = 4096;
/** Credential hashes remembered per isolate (oldest dropped first). */
const HASH_MEMO_MAX = 1024;

/** The caller of one request, as the gateway meters it. */
export interface Identity {
  /**
   * Durable Object name and bucket key, ≤ 64 characters:
   * `jwt:<32 hex>` (first 16 bytes of SHA-256(`iss` + "\n" + `sub`)),
   * `key:<32 hex>` (api-key, verified or not: first 16 bytes of SHA-256 of the key value),
   * `auth:<32 hex>` (authorization-unverified: first 16 bytes of SHA-256 of the whole
   * `Authorization` value), `ip:<network>` (e.g. `ip:203.0.113.7`, `ip:10.1.0.0/16` with
   * `ipv4Prefix` 16, `ip:2001:db8:1:2::/64`), or `anonymous`.
   */
  id: string;
  /** The strategy that named the caller, or `anonymous`. */
  strategy: IdentityStrategy | "anonymous";
  /** true for `jwt` and `api-key` (issued credentials); false for `ip`, `*-unverified` and `anonymous`. */
  verified: boolean;
  /**
   * Plan name from the key entry or the JWT claim named by the `planClaim` of the token's
   * issuer in `identity.jwt` (within its `plans`, when listed); may be unknown
   * to the policy (the gateway then uses `defaultPlan`). Undefined when none was given.
   */
  plan?: string;
  /**
   * The caller's network, always computed from `CF-Connecting-IP` with the configured
   * prefixes: `ip:<network>`, or `anonymous` without a usable header. The key of the
   * network ceiling and the shared bucket of unverified callers.
   */
  network: string;
  /** For logs: the key's name or the JWT `sub` (≤ 64 characters; never a secret, never a full credential). */
  label?: string;
}

/** What the resolver reads besides the request headers. */
export interface IdentityDeps {
  /**
   * KV namespace `TOLLBOOTH_KEYS` (optional): key = SHA-256 hex of the API key (64 lowercase
   * hex), value = JSON `{"name": string, "plan"?: string}` (other members ignored).
   */
  keys?: { get(key: string, type: "json"): Promise<unknown> } | undefined;
  /** fetch used for the JWKS (injectable, like the MCP SDK's FetchLike); default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

/** An issued API key's entry. */
interface KeyEntry {
  name: string;
  plan?: string;
}

/**
 * Build the identity resolver of a policy, once per policy (it holds the per-isolate memos
 * and the JWKS cache, so keep it as long as the policy): validates `identity.jwt`, prepares
 * its key sets and indexes `identity.apiKeys`.
 * @param config `policy.identity`
 * @param deps the `TOLLBOOTH_KEYS` namespace and the JWKS fetch
 * @returns the per-request resolver: request headers → the caller's {@link Identity}. It never
 *   throws: a JWT that does not verify, an unknown key, a KV error, a JWKS that cannot be
 *   fetched all mean "this strategy does not apply".
 * @throws TypeError naming the bad option, e.g. `TOLLBOOTH_POLICY.identity.jwt.keys.0: …`,
 *   `TOLLBOOTH_POLICY.identity.jwt.jwksUrl: …`, `TOLLBOOTH_POLICY.identity.jwt: needs jwksUrl or keys`
 *   (single-object form), `TOLLBOOTH_POLICY.identity.jwt.1.jwksUrl: …`,
 *   `TOLLBOOTH_POLICY.identity.jwt.1.issuer: … is already the issuer of identity.jwt.0; …` (list form)
 */
export function identityResolver(config: Policy["identity"], deps: IdentityDeps = {}): (headers: Headers) => Promise<Identity> {
  const { strategies, apiKeyHeader, ipv4Prefix, ipv6Prefix } = config;
  const verifyJwt = config.jwt ? jwtVerifier(config.jwt, deps.fetch) : undefined;
  const listed = new Map<string, KeyEntry>(
    config.apiKeys.map((k) => [k.sha256, k.plan === undefined ? { name: k.name } : { name: k.name, plan: k.plan }]),
  );
  const kv = deps.keys;
  /** `prefix + "\n" + value` → full SHA-256 hex (an agent sends one credential on every call). */
  const hashMemo = new BoundedMemo<string>(HASH_MEMO_MAX);
  /** SHA-256 hex of a key → its KV entry, or null (not issued). */
  const kvMemo = new BoundedMemo<KeyEntry | null>(KEY_MEMO_MAX);

  const hashHex = async (value: string): Promise<string> => {
    const known = hashMemo.get(value, 0);
    if (known !== undefined) return known;
    const hex = toHex(await sha256(value));
    hashMemo.set(value, hex, Infinity);
    return hex;
  };

  const issuedKey = async (hex: string): Promise<KeyEntry | null> => {
    const entry = listed.get(hex);
    if (entry) return entry;
    if (!kv) return null;
    const now = Date.now();
    const known = kvMemo.get(hex, now);
    if (known !== undefined) return known;
    let value: unknown;
    try {
      value = await kv.get(hex, "json");
    } catch {
      return null; // KV unavailable or a non-JSON value: not an identity now, asked again next time
    }
    const found = keyEntry(value);
    kvMemo.set(hex, found, now + KEY_MEMO_TTL_MS);
    return found;
  };

  return async (headers) => {
    const network = networkFor(headers, ipv4Prefix, ipv6Prefix);
    for (const strategy of strategies) {
      switch (strategy) {
        case "jwt": {
          if (!verifyJwt) break;
          const token = bearerToken(headers.get("authorization"));
          if (token === null) break;
          const jwt: JwtIdentity | null = await verifyJwt(token);
          if (jwt)
            return {
              id: jwt.id,
              strategy,
              verified: true,
              ...(jwt.plan !== undefined ? { plan: jwt.plan } : {}),
              network,
              label: jwt.label,
            };
          break;
        }
        case "api-key": {
          const value = headers.get(apiKeyHeader);
          if (!value) break;
          const hex = await hashHex(value);
          const entry = await issuedKey(hex);
          if (entry)
            return {
              id: `key:${hex.slice(0, 32)}`,
              strategy,
              verified: true,
              ...(entry.plan !== undefined ? { plan: entry.plan } : {}),
              network,
              label: entry.name,
            };
          break;
        }
        case "ip":
          if (network !== ANONYMOUS) return { id: network, strategy, verified: false, network };
          break;
        case "authorization-unverified": {
          const value = headers.get("authorization");
          if (value) return { id: `auth:${(await hashHex(value)).slice(0, 32)}`, strategy, verified: false, network };
          break;
        }
        case "api-key-unverified": {
          const value = headers.get(apiKeyHeader);
          if (value) return { id: `key:${(await hashHex(value)).slice(0, 32)}`, strategy, verified: false, network };
          break;
        }
      }
    }
    return { id: ANONYMOUS, strategy: "anonymous", verified: false, network };
  };
}

/**
 * The token of `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 b64token,
 * nothing after it), or null.
 */
function bearerToken(value: string | null): string | null {
  if (!value) return null;
  const m = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(value);
  return m ? m[1]! : null;
}

/** A KV value as a key entry: an object with a string `name` (1–64 chars) and an optional string `plan`; else null. */
function keyEntry(value: unknown): KeyEntry | null {
  if (typeof value !== "object" || value === null) return null;
  const { name, plan } = value as { name?: unknown; plan?: unknown };
  if (typeof name !== "string" || name === "" || name.length > 64) return null;
  if (plan !== undefined && plan !== null && typeof plan !== "string") return null;
  return typeof plan === "string" ? { name, plan } : { name };
}

/**
 * The caller's network: `ip:<prefix>` of `CF-Connecting-IP` (IPv4 to `ipv4Prefix` bits,
 * IPv6 to `ipv6Prefix`), or `anonymous` without a usable header. Only Cloudflare's edge
 * makes that header trustworthy (it overwrites what a client sends). The key of the network
 * ceiling and the identity of the `ip` strategy.
 */
export function networkFor(headers: Headers, ipv4Prefix: number, ipv6Prefix: number): string {
  const ip = headers.get("cf-connecting-ip");
  const net = ip ? networkOf(ip.trim(), ipv4Prefix, ipv6Prefix) : null;
  return net === null ? ANONYMOUS : `ip:${net}`;
}
