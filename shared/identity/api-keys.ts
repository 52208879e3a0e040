/**
 * The format of issued API keys (the `api-key` identity strategy, docs/identity.md), shared
 * by `npm run keys` (scripts/keys.ts) and the admin API (workers/admin/keys.ts):
 * - a key is `tb_` + 32 random bytes in base64url (46 characters), shown once to the operator;
 * - the `TOLLBOOTH_KEYS` KV namespace stores, under the SHA-256 hex of the key (64 lowercase
 *   hex), the JSON value `{"name","plan"?,"created"}`, also as the entry's metadata (so a
 *   listing needs one call). The plain key is never stored;
 * - a revocation names one key by its whole hash, its exact name or an unambiguous hash
 *   prefix (`matchKeyTarget`).
 * WebCrypto only, so it runs in the Worker and in Node.
 */
import { toBase64Url, toHex, utf8 } from "../wire/encoding.ts";

/** Prefix of generated keys (recognisable in secret scanners and logs). */
export const KEY_PREFIX = "tb_";
/** A key's name: 1–64 printable ASCII characters (as `identity.apiKeys[].name` in shared/policy/index.ts). */
export const KEY_NAME = /^[\x20-\x7e]{1,64}$/;
/** A plan name (as `plans` names in shared/policy/index.ts). */
export const KEY_PLAN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** A KV key of the namespace: the SHA-256 hex of an API key. */
export const KEY_HASH = /^[0-9a-f]{64}$/;

/** What the namespace holds for one issued key (value and metadata). */
export interface KeyRecord {
  name: string;
  plan?: string;
  /** ISO 8601 time of issue. */
  created?: string;
}

/** A new API key: `tb_` + 32 random bytes (WebCrypto), base64url; 46 characters. */
export function newApiKey(): string {
  return KEY_PREFIX + toBase64Url(crypto.getRandomValues(new Uint8Array(32)));
}

/** The KV key of an API key: SHA-256 of its UTF-8 bytes, 64 lowercase hex (what the gateway looks up). */
export async function apiKeyHash(key: string): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", utf8(key))));
}

/**
 * The record stored for a new key.
 * @param createdMs unix ms of issue
 * @throws TypeError when `name` or `plan` does not match {@link KEY_NAME} / {@link KEY_PLAN}
 */
export function keyRecord(name: string, plan: string | undefined, createdMs: number): KeyRecord {
  if (!KEY_NAME.test(name)) throw new TypeError("key name must be 1-64 printable ASCII characters");
  if (plan !== undefined && !KEY_PLAN.test(plan)) throw new TypeError("key plan must match [A-Za-z0-9][A-Za-z0-9_.-]{0,31}");
  return { name, ...(plan !== undefined ? { plan } : {}), created: new Date(createdMs).toISOString() };
}

/** A stored value or metadata as a record (a string `name`, optional string `plan` / `created`), else null. */
export function readKeyRecord(value: unknown): KeyRecord | null {
  if (typeof value !== "object" || value === null) return null;
  const { name, plan, created } = value as Record<string, unknown>;
  if (typeof name !== "string") return null;
  return { name, ...(typeof plan === "string" ? { plan } : {}), ...(typeof created === "string" ? { created } : {}) };
}

/** A revocation target that may be a hash prefix: 12–63 lowercase hex (the listing shows 12). */
export const KEY_HASH_PREFIX = /^[0-9a-f]{12,63}$/;
/** Hex characters of a hash a listing or a match shows. */
export const SHOWN_HASH_CHARS = 12;

/** A stored key as a revocation target is matched against: its SHA-256 hex and its name (null when its record is unreadable). */
export interface KeyEntry {
  sha256: string;
  name: string | null;
}

/** A key a revocation target matched: its name, the first 12 hex of its hash, and how it matched. */
export interface KeyMatch {
  name: string | null;
  sha256Prefix: string;
  matchedBy: "hash" | "name" | "hash prefix";
}

/** What a revocation target names: exactly one key, none, or several (nothing may be revoked). */
export type KeyTarget = { kind: "one"; sha256: string; match: KeyMatch } | { kind: "none" } | { kind: "ambiguous"; matches: KeyMatch[] };

/**
 * The key a revocation target names among `entries` (the admin API's `DELETE <admin>/keys/<target>`
 * and `npm run keys -- revoke <target>`), in this order:
 * 1. a whole SHA-256 (64 lowercase hex) of a stored key: that key;
 * 2. otherwise every key whose name is exactly `target`, together with every key whose hash
 *    starts with `target` (12–63 lowercase hex): one key → it; several → ambiguous.
 * So a target that is both a key's name and another key's hash prefix, two keys' hash
 * prefix, or the name of two keys, names no key: the caller gets the matches to choose from
 * (give more of the hash). A key matched both ways by one target is one match.
 * @returns `{ kind: "one", sha256, match }`, `{ kind: "none" }` or `{ kind: "ambiguous", matches }` (sorted by hash)
 */
export function matchKeyTarget(entries: readonly KeyEntry[], target: string): KeyTarget {
  const shown = (e: KeyEntry, matchedBy: KeyMatch["matchedBy"]): KeyMatch => ({
    name: e.name,
    sha256Prefix: e.sha256.slice(0, SHOWN_HASH_CHARS),
    matchedBy,
  });
  if (KEY_HASH.test(target)) {
    const whole = entries.find((e) => e.sha256 === target);
    if (whole) return { kind: "one", sha256: whole.sha256, match: shown(whole, "hash") };
  }
  const found = new Map<string, KeyMatch>();
  for (const e of entries) if (e.name !== null && e.name === target) found.set(e.sha256, shown(e, "name"));
  if (KEY_HASH_PREFIX.test(target))
    for (const e of entries) if (e.sha256.startsWith(target) && !found.has(e.sha256)) found.set(e.sha256, shown(e, "hash prefix"));
  if (found.size === 0) return { kind: "none" };
  if (found.size === 1) {
    const [sha256, match] = [...found][0]!;
    return { kind: "one", sha256, match };
  }
  return { kind: "ambiguous", matches: [...found].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, m]) => m) };
}
