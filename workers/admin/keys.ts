/**
 * API keys through the admin API, on the `TOLLBOOTH_KEYS` KV namespace, in the format of
 * shared/api-keys.ts (the one `npm run keys` uses): issue (the key is answered once, only its
 * SHA-256 is stored), list (names, plans, hash prefixes — never a key), revoke.
 * A revoked key keeps working in an isolate that looked it up within the last 30 s
 * (`KEY_MEMO_TTL_MS`, shared/identity.ts), plus KV's own propagation (up to about 60 s).
 */
import { apiKeyHash, KEY_HASH, KEY_NAME, KEY_PLAN, keyRecord, newApiKey, readKeyRecord, type KeyRecord } from "../../shared/api-keys.ts";
import { KEY_MEMO_TTL_MS } from "../../shared/identity.ts";
import type { Policy } from "../../shared/policy.ts";
import { refuse, type Result } from "../../shared/result.ts";

/** Characters of the SHA-256 hex shown by the listing (as `npm run keys -- list`). */
export const HASH_PREFIX_CHARS = 12;
/** Most keys a listing (or a revocation by name) reads: 10 pages of 1000. */
const MAX_LIST_PAGES = 10;

/** What the key functions need of the KV namespace. */
export type KeyStore = Pick<KVNamespace, "get" | "put" | "delete" | "list">;

/** One key as listed. */
export interface ListedKey extends KeyRecord {
  /** First 12 hex characters of the key's SHA-256. */
  sha256Prefix: string;
}

/** Refusals of the key functions. */
export type KeyRefusal = "bad_body" | "unknown_plan" | "name_taken" | "not_found" | "ambiguous";

/** Every key of the store (64-hex KV keys only), with its hash. */
async function allKeys(store: KeyStore): Promise<Array<{ sha256: string; record: KeyRecord | null }>> {
  const out: Array<{ sha256: string; record: KeyRecord | null }> = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_LIST_PAGES; page++) {
    const res = await store.list(cursor === undefined ? {} : { cursor });
    for (const k of res.keys) if (KEY_HASH.test(k.name)) out.push({ sha256: k.name, record: readKeyRecord(k.metadata) });
    if (res.list_complete) break;
    cursor = res.cursor;
  }
  // Entries written without metadata: their value holds the record.
  for (const e of out) if (e.record === null) e.record = readKeyRecord(await store.get(e.sha256, "json").catch(() => null));
  return out;
}

/** The issued keys: name, plan, created, SHA-256 prefix (never the key, never the whole hash). */
export async function listKeys(store: KeyStore): Promise<ListedKey[]> {
  return (await allKeys(store)).map((e) => ({ name: e.record?.name ?? "?", ...(e.record?.plan !== undefined ? { plan: e.record.plan } : {}), ...(e.record?.created !== undefined ? { created: e.record.created } : {}), sha256Prefix: e.sha256.slice(0, HASH_PREFIX_CHARS) }));
}

/**
 * Issue a key: `{ name, plan? }` (a plan the policy names; a name no other key has).
 * @returns the key (shown only this once), its record and SHA-256; or a refusal naming the problem
 */
export async function issueKey(store: KeyStore, policy: Policy, body: unknown, nowMs: number): Promise<Result<{ key: string; sha256: string; record: KeyRecord }, KeyRefusal>> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return refuse("bad_body", 'the body must be a JSON object {"name": …, "plan": …}');
  const extra = Object.keys(body).filter((k) => k !== "name" && k !== "plan");
  if (extra.length > 0) return refuse("bad_body", `unknown member ${JSON.stringify(extra[0])}`);
  const { name, plan } = body as { name?: unknown; plan?: unknown };
  if (typeof name !== "string" || !KEY_NAME.test(name)) return refuse("bad_body", "name must be 1-64 printable ASCII characters");
  if (plan !== undefined && (typeof plan !== "string" || !KEY_PLAN.test(plan))) return refuse("bad_body", "plan must match [A-Za-z0-9][A-Za-z0-9_.-]{0,31}");
  // A plan the policy does not name would silently mean the default plan: refused instead.
  if (plan !== undefined && !Object.hasOwn(policy.plans, plan)) return refuse("unknown_plan", `the policy has no plan ${JSON.stringify(plan)} (plans: ${Object.keys(policy.plans).join(", ")})`);
  if ((await allKeys(store)).some((e) => e.record?.name === name)) return refuse("name_taken", `a key named ${JSON.stringify(name)} exists; revoke it first or choose another name`);
  const key = newApiKey();
  const sha256 = await apiKeyHash(key);
  const record = keyRecord(name, plan as string | undefined, nowMs);
  const json = JSON.stringify(record);
  await store.put(sha256, json, { metadata: record });
  return { ok: true, key, sha256, record };
}

/**
 * Revoke keys: `target` is a whole SHA-256 (64 hex), a key name (every key of that name), or
 * a hash prefix of ≥ 12 hex characters matching exactly one key.
 * @returns the revoked keys' hash prefixes and the time within which every isolate stops accepting them
 */
export async function revokeKeys(store: KeyStore, target: string): Promise<Result<{ revoked: string[]; effectiveWithinMs: number }, KeyRefusal>> {
  let doomed: string[];
  if (KEY_HASH.test(target)) {
    doomed = (await store.get(target)) === null ? [] : [target];
  } else {
    const all = await allKeys(store);
    doomed = all.filter((e) => e.record?.name === target).map((e) => e.sha256);
    if (doomed.length === 0 && /^[0-9a-f]{12,63}$/.test(target)) {
      doomed = all.filter((e) => e.sha256.startsWith(target)).map((e) => e.sha256);
      if (doomed.length > 1) return refuse("ambiguous", `${doomed.length} keys start with ${target}: give more of the hash`);
    }
  }
  if (doomed.length === 0) return refuse("not_found", `no key named or hashed ${JSON.stringify(target)}`);
  for (const h of doomed) await store.delete(h);
  return { ok: true, revoked: doomed.map((h) => h.slice(0, HASH_PREFIX_CHARS)), effectiveWithinMs: KEY_MEMO_TTL_MS + 60_000 };
}
