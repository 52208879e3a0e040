/**
 * Refusals of the gateway's layers on the MCP endpoint that several steps give: a layer's
 * 429, the 503 of a state that could not be reached, the 403 of a blocked caller.
 */
import { ErrorCode } from "../../shared/jsonrpc.ts";
import { storeFailure } from "../objects/stores.ts";
import { Refusal } from "./refusal.ts";

/**
 * 429 of a layer (`network`, `ceiling`, `sessions`, `streams`, `origin`): an integer
 * `Retry-After` (≥ 1) and `error.data` naming the layer, then `extra`.
 * @param retryAfterSeconds seconds until the layer admits again (rounded up, at least 1)
 * @param headers rate-limit fields to send before `Retry-After`
 */
export function tooMany(
  layer: string,
  message: string,
  retryAfterSeconds: number,
  headers: Record<string, string> = {},
  extra: Record<string, unknown> = {},
): Refusal {
  const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
  return new Refusal({
    status: 429,
    code: layer,
    rpcCode: ErrorCode.TooManyRequests,
    message: `Too many requests: ${message}; retry after ${retryAfter} s`,
    data: { reason: layer, layer, retryAfter, ...extra },
    headers,
    retryAfter,
    reason: { decision: "rate_limited", reason: layer },
  });
}

/** `Retry-After` of a 503 for an overloaded Durable Object, seconds: long enough for its queue to drain. */
export const OVERLOADED_RETRY_AFTER_S = 5;

/**
 * 503 when the rate-limit state (a caller's object, the origin ceiling, a spend's claim) failed:
 * nothing is admitted without it. `error.data.reason` says how (`StoreFailure`: `overloaded`,
 * `timeout`, `error`, `unreachable`); `Retry-After` is `OVERLOADED_RETRY_AFTER_S` for an
 * overloaded object (a retry at once deepens the overload), else 1. The cause is logged, not sent.
 * @param object for the decision record's reason, `<object>_<kind>`: `store` or `origin_gate`
 * @param err what the call threw (workers/objects/stores.ts `storeFailure` reads its flags)
 */
export function unavailable(object: "store" | "origin_gate", err: unknown): Refusal {
  const kind = storeFailure(err);
  const overloaded = kind === "overloaded";
  const retryAfter = overloaded ? OVERLOADED_RETRY_AFTER_S : 1;
  const message = `Service unavailable: the rate-limit state ${overloaded ? "is overloaded" : "could not be reached"}; retry after ${retryAfter} s`;
  return new Refusal({
    status: 503,
    code: "unavailable",
    rpcCode: ErrorCode.Unavailable,
    message,
    data: { reason: kind, retryAfter },
    retryAfter,
    reason: { decision: "unavailable", reason: `${object}_${kind}` },
  });
}

/**
 * 403 of a caller an operator blocked (docs/admin.md): refused before any credential is
 * redeemed or the origin asked.
 * @param retryAfterSeconds seconds until the block ends (rounded up, at least 1)
 * @param caller the caller it is recorded as (the identity the request came from, when a payer was found blocked through it)
 */
export function blocked(retryAfterSeconds: number, headers: Record<string, string> = {}, caller?: string): Refusal {
  const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
  return new Refusal({
    status: 403,
    code: "blocked",
    rpcCode: ErrorCode.Forbidden,
    message: `Forbidden: this caller is blocked by the operator; retry after ${retryAfter} s`,
    data: { reason: "blocked", retryAfter },
    headers,
    retryAfter,
    reason: { ...(caller !== undefined ? { caller } : {}), decision: "blocked", reason: "blocked" },
  });
}
