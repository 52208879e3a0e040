/**
 * The admin API's view of one caller: its id checked against the forms the gateway uses
 * (shared/identity/index.ts), its plan as far as it can be known, and its `CallerState` state
 * (`inspect`, `reset`, `block`, `unblock`).
 */

import { readKeyRecord } from "../../shared/identity/api-keys.ts";
import { networkOf } from "../../shared/identity/index.ts";
import type { Policy } from "../../shared/policy/index.ts";
import { planFor } from "../../shared/policy/index.ts";
import { type Result, refuse } from "../../shared/result.ts";
import type { InspectResult } from "../objects/caller-state.ts";
import { shortCaller } from "../observe/counters.ts";
import type { DecisionRecord } from "../observe/types.ts";
import { PAYERS } from "../schemes/registry.ts";

/** Longest caller id (a Durable Object name of the gateway is ≤ 64 characters). */
const MAX_ID_CHARS = 64;
/** Longest block, in seconds (30 days). */
export const MAX_BLOCK_SECONDS = 30 * 24 * 3600;
/** Recent decisions shown per caller at most. */
const MAX_RECENT = 50;

/**
 * The strategy a caller id was made by, or the kind of a scheme's payer id (its prefix
 * without the colon, `SchemeModule.payers`).
 */
export type CallerKind = "ip" | "key" | "jwt" | "auth" | "anonymous" | (string & {});

/** An id made by an identity strategy: its prefix (`key:`, …), then one kind of rest. */
const STRATEGY_KINDS = ["ip", "key", "jwt", "auth"];
/** `<kind>:<rest>` of every kind the gateway makes, payers' included. */
const ID_FORM = new RegExp(`^(${[...STRATEGY_KINDS, ...PAYERS.map((p) => p.prefix.slice(0, -1))].join("|")}):(.+)$`);
/** The forms, for people. */
const ID_FORMS = `ip:<network>, key:<32 hex>, jwt:<32 hex>, auth:<32 hex>, ${PAYERS.map((p) => `${p.spelled}, `).join("")}`;

/**
 * Check a caller id as the gateway spells it: `ip:<network>` in the canonical form of
 * shared/identity/network.ts (e.g. `ip:203.0.113.7`, `ip:10.1.0.0/16`, `ip:2001:db8::/64`),
 * `key:` / `jwt:` / `auth:` + 32 lowercase hex, a payment scheme's payer id (its `pattern`),
 * or `anonymous`.
 * @returns the id and its kind, or `{ ok: false, reason: "bad_caller_id", detail }` naming the problem
 */
export function parseCallerId(id: string): Result<{ id: string; kind: CallerKind }, "bad_caller_id"> {
  if (id.length === 0 || id.length > MAX_ID_CHARS) return refuse("bad_caller_id", `a caller id has 1-${MAX_ID_CHARS} characters`);
  if (id === "anonymous") return { ok: true, id, kind: "anonymous" };
  const m = ID_FORM.exec(id);
  if (!m) return refuse("bad_caller_id", `a caller id is ${ID_FORMS.slice(0, -2)} or anonymous`);
  const kind = m[1] as CallerKind;
  const rest = m[2]!;
  const payer = PAYERS.find((p) => p.prefix === `${kind}:`);
  if (payer) return payer.pattern.test(id) ? { ok: true, id, kind } : refuse("bad_caller_id", payer.malformed);
  if (kind !== "ip")
    return /^[0-9a-f]{32}$/.test(rest) ? { ok: true, id, kind } : refuse("bad_caller_id", `${kind}: takes 32 lowercase hex digits`);
  const net = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(rest);
  const prefix = net?.[2] === undefined ? undefined : Number(net[2]);
  if (prefix !== undefined && prefix > 128) return refuse("bad_caller_id", "a network prefix is at most 128 bits");
  // The canonical spelling: what networkOf gives for the address at the id's own prefix.
  const canonical = net ? (networkOf(net[1]!, prefix ?? 32, prefix ?? 128) ?? null) : null;
  if (canonical === null) return refuse("bad_caller_id", "ip: takes an IPv4 or IPv6 network, e.g. ip:203.0.113.7 or ip:10.1.0.0/16");
  if (canonical !== rest) return refuse("bad_caller_id", `not the gateway's spelling of this network: use ip:${canonical}`);
  return { ok: true, id, kind };
}

/** A caller's plan as the admin API knows it, and where that knowledge came from. */
export interface KnownPlan {
  name: string;
  /**
   * `key`: the issued key's entry (KV or `identity.apiKeys`); `unverified`: the caller's
   * strategy never carries a plan (the default plan); `object`: the plans whose limits match
   * what the caller's object last metered with; `default`: nothing known, the default plan.
   */
  source: "key" | "unverified" | "object" | "default";
  /** The key's name (`key` source). */
  keyName?: string;
  /** Other plans with the same limits (`object` source). */
  alsoMatches?: string[];
}

/** What the plan lookup reads: the key store's `list` (one call, by hash prefix). */
export interface KeyLister {
  list(options: { prefix: string; limit?: number }): Promise<{ keys: Array<{ name: string; metadata?: unknown }> }>;
}

/**
 * The plan of a `key:` caller from the key store (one `list` by hash prefix), or null when
 * it is not an issued key (an `api-key-unverified` caller).
 */
export async function keyPlan(policy: Policy, hex32: string, keys: KeyLister | undefined): Promise<KnownPlan | null> {
  const listed = policy.identity.apiKeys.find((k) => k.sha256.startsWith(hex32));
  if (listed) return { name: planFor(policy, listed.plan).name, source: "key", keyName: listed.name };
  if (!keys) return null;
  const found = await keys.list({ prefix: hex32, limit: 10 });
  for (const k of found.keys) {
    const record = readKeyRecord(k.metadata);
    if (record) return { name: planFor(policy, record.plan).name, source: "key", keyName: record.name };
  }
  return null;
}

/** Plans whose free bucket and ceiling equal `configs` (what the caller's object last metered with). */
export function plansMatching(policy: Policy, configs: InspectResult["configs"]): string[] {
  if (!configs) return [];
  const same = (a: { capacity: number; refillPerSecond: number }, b: { capacity: number; refillPerSecond: number }) =>
    a.capacity === b.capacity && a.refillPerSecond === b.refillPerSecond;
  return Object.values(policy.plans)
    .filter((p) => same(p.bucket, configs.bucket) && same(p.ceiling, configs.ceiling))
    .map((p) => p.name);
}

/**
 * Whether a decision record is `id`'s: its caller is `id` shortened as the decision log
 * shortens it (`shortCaller`, workers/observe/counters.ts). Networks and payer addresses are
 * kept whole; two hashed ids sharing their first 12 hex characters are not told apart (2⁻⁴⁸).
 */
export function recordIsOf(record: Pick<DecisionRecord, "caller">, id: string): boolean {
  return record.caller === shortCaller(id);
}

/** The caller's recent decisions from a snapshot's `recent` (newest first, at most 50). */
export function recentOf(recent: readonly DecisionRecord[], id: string): DecisionRecord[] {
  return recent.filter((r) => recordIsOf(r, id)).slice(0, MAX_RECENT);
}

/**
 * Check a block body: `{ "seconds": n }`, an integer 1 … 2 592 000 (30 days).
 * @returns the seconds, or a refusal naming the problem
 */
export function parseBlockBody(value: unknown): Result<{ seconds: number }, "bad_body"> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return refuse("bad_body", 'the body must be a JSON object {"seconds": n}');
  const extra = Object.keys(value).filter((k) => k !== "seconds");
  if (extra.length > 0) return refuse("bad_body", `unknown member ${JSON.stringify(extra[0])}`);
  const seconds = (value as { seconds?: unknown }).seconds;
  if (typeof seconds !== "number" || !Number.isSafeInteger(seconds) || seconds < 1 || seconds > MAX_BLOCK_SECONDS) {
    return refuse("bad_body", `seconds must be an integer from 1 to ${MAX_BLOCK_SECONDS} (30 days)`);
  }
  return { ok: true, seconds };
}
