/**
 * API keys through the admin API, on the `TOLLBOOTH_KEYS` KV namespace, in the format of
 * shared/identity/api-keys.ts (the one `npm run keys` uses): issue (the key is answered once, only its
 * SHA-256 is stored), list (names, plans, hash prefixes — never a key), revoke.
 * A revoked key keeps working in an isolate that looked it up within the last 30 s
 * (`KEY_MEMO_TTL_MS`, shared/identity/index.ts), plus KV's own propagation (up to about 60 s).
 */
import {
  apiKeyHash,
  KEY_HASH,
  KEY_NAME,
  KEY_PLAN,
  type KeyMatch,
  type KeyRecord,
  keyRecord,
  matchKeyTarget,
  newApiKey,
  readKeyRecord,
  SHOWN_HASH_CHARS,
} from "../../shared/identity/api-keys.ts";
import { KEY_MEMO_TTL_MS } from "../../shared/identity/index.ts";
import type { Policy } from "../../shared/policy/index.ts";
import { type Result, refuse } from "../../shared/result.ts";

/** Characters of the SHA-256 hex shown by the listing (as `npm run keys -- list`). */
export const HASH_PREFIX_CHARS = SHOWN_HASH_CHARS;
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
  return (await allKeys(store)).map((e) => ({
    name: e.record?.name ?? "?",
    ...(e.record?.plan !== undefined ? { plan: e.record.plan } : {}),
    ...(e.record?.created !== undefined ? { created: e.record.created } : {}),
    sha256Prefix: e.sha256.slice(0, HASH_PREFIX_CHARS),
  }));
}

/**
 * Issue a key: `{ name, plan? }` (a plan the policy names; a name no other key has).
 * @returns the key (shown only this once), its record and SHA-256; or a refusal naming the problem
 */
export async function issueKey(
  store: KeyStore,
  policy: Policy,
  body: unknown,
  nowMs: number,
): Promise<Result<{ key: string; sha256: string; record: KeyRecord }, KeyRefusal>> {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    return refuse("bad_body", 'the body must be a JSON object {"name": …, "plan": …}');
  const extra = Object.keys(body).filter((k) => k !== "name" && k !== "plan");
  if (extra.length > 0) return refuse("bad_body", `unknown member ${JSON.stringify(extra[0])}`);
  const { name, plan } = body as { name?: unknown; plan?: unknown };
  if (typeof name !== "string" || !KEY_NAME.test(name)) return refuse("bad_body", "name must be 1-64 printable ASCII characters");
  if (plan !== undefined && (typeof plan !== "string" || !KEY_PLAN.test(plan)))
    return refuse("bad_body", "plan must match [A-Za-z0-9][A-Za-z0-9_.-]{0,31}");
  // A plan the policy does not name would silently mean the default plan: refused instead.
  if (plan !== undefined && !Object.hasOwn(policy.plans, plan))
    return refuse("unknown_plan", `the policy has no plan ${JSON.stringify(plan)} (plans: ${Object.keys(policy.plans).join(", ")})`);
  if ((await allKeys(store)).some((e) => e.record?.name === name))
    return refuse("name_taken", `a key named ${JSON.stringify(name)} exists; revoke it first or choose another name`);
  const key = newApiKey();
  const sha256 = await apiKeyHash(key);
  const record = keyRecord(name, plan as string | undefined, nowMs);
  const json = JSON.stringify(record);
  await store.put(sha256, json, { metadata: record });
  return { ok: true, key, sha256, record };
}

/** What `revokeKeys` answers: the key revoked, or why none was (an ambiguous target lists its matches). */
export type RevokeResult =
  | { ok: true; revoked: string[]; matchedBy: KeyMatch["matchedBy"]; effectiveWithinMs: number }
  | { ok: false; reason: "not_found"; detail: string }
  | { ok: false; reason: "ambiguous"; detail: string; matches: KeyMatch[] };

/**
 * Revoke one key: `target` is its whole SHA-256 (64 hex), its exact name, or a prefix of
 * its hash (12–63 hex), matched as shared/identity/api-keys.ts `matchKeyTarget` says — a whole hash
 * first; then names and hash prefixes together, which must name exactly one key. A target
 * that is one key's name and another's hash prefix, or the prefix (or name) of several keys,
 * revokes nothing: `ambiguous`, with the matches (name, hash prefix, how each matched).
 * @returns the revoked key's hash prefix and the time within which every isolate stops accepting it
 */
export async function revokeKeys(store: KeyStore, target: string): Promise<RevokeResult> {
  let doomed: string;
  let matchedBy: KeyMatch["matchedBy"];
  // A whole hash names its key exactly: no listing needed.
  if (KEY_HASH.test(target) && (await store.get(target)) !== null) {
    doomed = target;
    matchedBy = "hash";
  } else {
    const found = matchKeyTarget(
      (await allKeys(store)).map((e) => ({ sha256: e.sha256, name: e.record?.name ?? null })),
      target,
    );
    if (found.kind === "none")
      return { ok: false, reason: "not_found", detail: `no key with the hash, name or hash prefix ${JSON.stringify(target)}` };
    if (found.kind === "ambiguous") {
      const list = found.matches
        .map((m) => `${m.name === null ? "(no name)" : JSON.stringify(m.name)} ${m.sha256Prefix} (by ${m.matchedBy})`)
        .join(", ");
      return {
        ok: false,
        reason: "ambiguous",
        detail: `${JSON.stringify(target)} matches ${found.matches.length} keys: ${list}; nothing was revoked: give a whole hash or more of it`,
        matches: found.matches,
      };
    }
    doomed = found.sha256;
    matchedBy = found.match.matchedBy;
  }
  await store.delete(doomed);
  return { ok: true, revoked: [doomed.slice(0, HASH_PREFIX_CHARS)], matchedBy, effectiveWithinMs: KEY_MEMO_TTL_MS + 60_000 };
}
