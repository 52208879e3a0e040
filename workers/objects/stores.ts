/**
 * The Durable Objects as the gateway reaches them: stubs of the caller's state and of the
 * origin ceiling whose every call is bounded by `policy.storeTimeoutMs` (a call that does
 * not settle in time rejects with `StoreTimeoutError`), the per-isolate memo of callers'
 * blocks, and the names of the objects that are no caller's.
 */
import type { BucketConfig, LimitResult } from "../../shared/limits/bucket.ts";
import type { LeaseGrant } from "../../shared/limits/lease.ts";
import type { AdmitRequest, AdmitResult, CallerState, RefundRequest, StatusResult } from "./caller-state.ts";
import type { OriginGate } from "./origin-gate.ts";

/** Name of the single origin-ceiling object (`ORIGIN_GATE.idFromName`). */
export const ORIGIN_GATE_NAME = "origin";

type RedeemRequest = Parameters<CallerState["redeem"]>[0];
type StatusRequest = Parameters<CallerState["status"]>[0];

/** The calls the gateway makes on a caller's `CallerState` (see workers/objects/caller-state.ts). */
export interface CallerStore {
  admit(req: AdmitRequest): Promise<AdmitResult>;
  redeem(req: RedeemRequest): Promise<AdmitResult>;
  status(req: StatusRequest): Promise<StatusResult>;
  refund(req: RefundRequest): Promise<void>;
  revoke(req: { jti: string; spendId?: string }): Promise<void>;
  renew(req: Parameters<CallerState["renew"]>[0]): Promise<LeaseGrant>;
  bindSession(req: { slotId: string; sessionId: string }): Promise<void>;
  release(req: { slotId: string }): Promise<void>;
  endSession(req: { sessionId: string }): Promise<void>;
  blocked(req: { nowMs: number }): Promise<{ blockedUntilMs: number | null }>;
  claim(req: { spendId: string; untilMs: number }): Promise<{ claimed: boolean }>;
  unclaim(req: { spendId: string }): Promise<void>;
}

/**
 * The caller state as the gateway reaches it: `CallerState` stubs whose every call is
 * bounded by `policy.storeTimeoutMs` (it rejects with `StoreTimeoutError` after that).
 */
export interface StoreNamespace {
  /** The store of the caller named `identity` (an `Identity.id`). */
  of(identity: string): CallerStore;
}

/** A `CallerState` / `OriginGate` call that did not settle within `storeTimeoutMs`. */
export class StoreTimeoutError extends Error {
  /** @param ms the bound that passed, milliseconds */
  constructor(ms: number) {
    super(`Durable Object did not answer within ${ms} ms`);
    this.name = "StoreTimeoutError";
  }
}

/**
 * Prefix of the `CallerState` names holding gateway-wide spent marks (`spent:<spend id>`):
 * never a caller id (shared/identity/index.ts) nor a route's scope (`route:<name>/…`), so the
 * objects are the same for every route and reachable by no caller.
 */
export const SPEND_SCOPE = "spent:";

/** Milliseconds an isolate reuses the answer of a caller's `blocked` check (`blockChecker`): a block or unblock applies within this. */
export const BLOCK_MEMO_MS = 5_000;
/** Callers whose `blocked` answer an isolate remembers at most (the oldest is forgotten first). */
export const BLOCK_MEMO_MAX = 10_000;

/**
 * Per-isolate memo of callers' blocks: `check(identity, nowMs)` asks `lookup` (the caller's
 * `CallerState.blocked`) at most once per `ttlMs` per identity (concurrent checks share one
 * call) and answers the unix ms the block ends, or null. A failed lookup is not remembered
 * (the next check asks again) and rejects the check. At most `max` identities are kept.
 * @param ttlMs how long an answer is reused, ms (default `BLOCK_MEMO_MS`, 5 000)
 */
export function blockChecker(
  lookup: (identity: string, nowMs: number) => Promise<number | null>,
  ttlMs = BLOCK_MEMO_MS,
  max = BLOCK_MEMO_MAX,
): (identity: string, nowMs: number) => Promise<number | null> {
  const memo = new Map<string, { atMs: number; until: Promise<number | null> }>();
  return async (identity, nowMs) => {
    let entry = memo.get(identity);
    if (!entry || nowMs - entry.atMs >= ttlMs) {
      memo.delete(identity);
      if (memo.size >= max) memo.delete(memo.keys().next().value!);
      const until = lookup(identity, nowMs);
      entry = { atMs: nowMs, until };
      memo.set(identity, entry);
      const mine = entry;
      until.catch(() => {
        if (memo.get(identity) === mine) memo.delete(identity);
      });
    }
    const until = await entry.until;
    return until !== null && until > nowMs ? until : null;
  };
}

/**
 * Settle like `call`, or reject with `StoreTimeoutError` after `ms` milliseconds
 * (the call itself is not cancelled: a Durable Object call cannot be).
 */
export function bounded<T>(call: () => Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(ms)), ms);
  });
  return Promise.race([Promise.resolve().then(call), timeout]).finally(() => clearTimeout(timer));
}

/** `CallerState` stubs whose calls are bounded by `timeoutMs` milliseconds. */
export function boundedStore(ns: DurableObjectNamespace<CallerState>, timeoutMs: number): StoreNamespace {
  return {
    of(identity) {
      const stub = ns.get(ns.idFromName(identity));
      return {
        admit: (req) => bounded(() => stub.admit(req) as Promise<AdmitResult>, timeoutMs),
        redeem: (req) => bounded(() => stub.redeem(req) as Promise<AdmitResult>, timeoutMs),
        status: (req) => bounded(() => stub.status(req) as Promise<StatusResult>, timeoutMs),
        refund: (req) => bounded(() => stub.refund(req) as Promise<void>, timeoutMs),
        revoke: (req) => bounded(() => stub.revoke(req) as Promise<void>, timeoutMs),
        renew: (req) => bounded(() => stub.renew(req) as Promise<LeaseGrant>, timeoutMs),
        bindSession: (req) => bounded(() => stub.bindSession(req) as Promise<void>, timeoutMs),
        release: (req) => bounded(() => stub.release(req) as Promise<void>, timeoutMs),
        endSession: (req) => bounded(() => stub.endSession(req) as Promise<void>, timeoutMs),
        blocked: (req) => bounded(() => stub.blocked(req) as Promise<{ blockedUntilMs: number | null }>, timeoutMs),
        claim: (req) => bounded(() => stub.claim(req) as Promise<{ claimed: boolean }>, timeoutMs),
        unclaim: (req) => bounded(() => stub.unclaim(req) as Promise<void>, timeoutMs),
      };
    },
  };
}

/** The origin ceiling's `take`, bounded by `timeoutMs`; null without a ceiling. */
export function originCeiling(
  ns: DurableObjectNamespace<OriginGate> | undefined,
  ceiling: BucketConfig | null,
  timeoutMs: number,
): ((nowMs: number) => Promise<LimitResult>) | null {
  if (!ceiling) return null;
  if (!ns || typeof ns.idFromName !== "function")
    throw new TypeError(
      "tollbooth(): option `originGate` (the ORIGIN_GATE Durable Object binding) is required when the policy sets originCeiling",
    );
  const id = ns.idFromName(ORIGIN_GATE_NAME);
  // A stub is an I/O object of the request that made it: one per call.
  return (nowMs) => bounded(() => ns.get(id).take({ nowMs, ceiling }) as Promise<LimitResult>, timeoutMs);
}
