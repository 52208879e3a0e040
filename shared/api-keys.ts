/**
 * The format of issued API keys (the `api-key` identity strategy, docs/identity.md), shared
 * by `npm run keys` (scripts/keys.ts) and the admin API (workers/admin/keys.ts):
 * - a key is `tb_` + 32 random bytes in base64url (46 characters), shown once to the operator;
 * - the `TOLLBOOTH_KEYS` KV namespace stores, under the SHA-256 hex of the key (64 lowercase
 *   hex), the JSON value `{"name","plan"?,"created"}`, also as the entry's metadata (so a
 *   listing needs one call). The plain key is never stored.
 * WebCrypto only, so it runs in the Worker and in Node.
 */
import { toBase64Url, toHex, utf8 } from "./encoding.ts";

/** Prefix of generated keys (recognisable in secret scanners and logs). */
export const KEY_PREFIX = "tb_";
/** A key's name: 1–64 printable ASCII characters (as `identity.apiKeys[].name` in shared/policy.ts). */
export const KEY_NAME = /^[\x20-\x7e]{1,64}$/;
/** A plan name (as `plans` names in shared/policy.ts). */
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
