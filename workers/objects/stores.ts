/**
 * The Durable Objects as the gateway reaches them: stubs of the caller's state whose every
 * call is bounded by `policy.storeTimeoutMs` (a call that does not settle in time rejects
 * with `StoreTimeoutError`; the origin ceiling's shards are reached the same way, through
 * ./origin-shards.ts), the kinds of failure read from the runtime's error flags
 * (`storeFailure`) and the one retry of an idempotent call (`idempotent`), the per-isolate
 * memo of callers' blocks, and the names of the objects
 * that are no caller's.
 */
import type { LeaseGrant } from "../../shared/limits/lease.ts";
import type { AdmitRequest, AdmitResult, CallerState, RefundRequest, StatusResult } from "./caller-state.ts";

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
  evicted(req: { slotId: string; ended: boolean }): Promise<void>;
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
 * How a Durable Object call failed, from the flags the runtime sets on its errors
 * (Cloudflare, Durable Objects "Error handling" and "Automatic retries"):
 * - `overloaded`: `.overloaded` — the object cannot keep up; never retried (a retry deepens the overload);
 * - `timeout`: no answer within `storeTimeoutMs` (`StoreTimeoutError`);
 * - `error`: `.remote` without `.retryable` — thrown by the object itself (its code, or its
 *   memory or CPU limits): a bug or a limit to look at, not a transient;
 * - `unreachable`: anything else (the object was reset or moved, the connection dropped,
 *   `.retryable`): the runtime already retried what never reached the object.
 */
export type StoreFailure = "overloaded" | "timeout" | "error" | "unreachable";

/** The kind of a Durable Object call's failure (see `StoreFailure`); never throws. */
export function storeFailure(err: unknown): StoreFailure {
  if (err instanceof StoreTimeoutError) return "timeout";
  const flags = (typeof err === "object" && err !== null ? err : {}) as { overloaded?: unknown; remote?: unknown; retryable?: unknown };
  if (flags.overloaded === true) return "overloaded";
  return flags.remote === true && flags.retryable !== true ? "error" : "unreachable";
}

/** Milliseconds before the one retry of an idempotent call (`idempotent`). */
export const RETRY_DELAY_MS = 20;

/**
 * An idempotent call (a read, or a write whose repetition changes nothing: `blocked`,
 * `revoke`, `bindSession`, `release`, `endSession`), retried once on a fresh stub (an error
 * can leave a stub broken) when it failed `.retryable` and not `.overloaded`. Every other
 * call (an admission, a redemption, a refund, a spend's claim) is never retried by the
 * gateway: the runtime retries only what never reached the object, and a second admission
 * or claim would charge or refuse twice.
 * @param call one attempt
 * @param renew called before the retry (a fresh stub: an error may leave a stub broken)
 */
export async function idempotent<T>(call: () => Promise<T>, renew: () => void = () => {}): Promise<T> {
  try {
    return await call();
  } catch (err) {
    const flags = err as { retryable?: unknown; overloaded?: unknown } | null;
    if (flags?.retryable !== true || flags.overloaded === true) throw err;
    await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
    renew();
    return call();
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

/**
 * `CallerState` stubs whose calls are bounded by `timeoutMs` milliseconds (a retry included:
 * the idempotent calls are retried once, `idempotent`; the others never).
 */
export function boundedStore(ns: DurableObjectNamespace<CallerState>, timeoutMs: number): StoreNamespace {
  return {
    of(identity) {
      const id = ns.idFromName(identity);
      let stub = ns.get(id);
      type Call = (s: typeof stub) => Promise<unknown>;
      const once = <T>(call: Call) => bounded(() => call(stub) as Promise<T>, timeoutMs);
      const again = <T>(call: Call) =>
        bounded(
          () =>
            idempotent(
              () => call(stub) as Promise<T>,
              () => (stub = ns.get(id)),
            ),
          timeoutMs,
        );
      return {
        admit: (req) => once(($) => $.admit(req)),
        redeem: (req) => once(($) => $.redeem(req)),
        status: (req) => once(($) => $.status(req)),
        refund: (req) => once(($) => $.refund(req)),
        revoke: (req) => again(($) => $.revoke(req)),
        renew: (req) => once(($) => $.renew(req)),
        bindSession: (req) => again(($) => $.bindSession(req)),
        release: (req) => again(($) => $.release(req)),
        endSession: (req) => again(($) => $.endSession(req)),
        evicted: (req) => again(($) => $.evicted(req)),
        blocked: (req) => again(($) => $.blocked(req)),
        claim: (req) => once(($) => $.claim(req)),
        unclaim: (req) => once(($) => $.unclaim(req)),
      };
    },
  };
}
