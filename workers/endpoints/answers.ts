/**
 * What tollbooth's own endpoints share: the caller a request is answered for, and their
 * refusals as problem JSON (workers/refusal/problem.ts), recorded by the dispatcher
 * (./index.ts) as `own_endpoint`, or `rate_limited` over the caller's ceiling.
 */
import type { Keyring } from "../../shared/credentials/keys.ts";
import type { Identity } from "../../shared/identity/index.ts";
import type { Congestion } from "../../shared/limits/congestion.ts";
import type { Plan } from "../../shared/policy/index.ts";
import type { DecisionFields } from "../observe/observe.ts";
import { toProblem } from "../refusal/problem.ts";
import { Refusal } from "../refusal/refusal.ts";

/** Who an endpoint answers (identified once its body, if any, has arrived). */
export interface Asker {
  /** Unix ms, read after the body arrived. */
  nowMs: number;
  identity: Identity;
  /** The caller: the identity's id (a payment naming its payer makes `/verify` buy for the payer). */
  caller: string;
  /** The caller's plan, its challenge's difficulty raised by the origin's congestion (workers/pipeline/identity.ts `pricedPlan`). */
  plan: Plan;
  /** The origin's congestion (its prices: `SchemeContext.congestion`); null without an origin ceiling. */
  congestion: Congestion | null;
  keyring: Keyring;
  /** Add fields to the request's decision record. */
  note: (fields: DecisionFields) => void;
}

/**
 * A refusal of these endpoints, as problem JSON `{ error, message, ...extra }`.
 * @param retryAfter whole seconds of `Retry-After`, sent after `headers`
 */
export function problem(
  status: number,
  error: string,
  message: string,
  extra?: Record<string, unknown>,
  headers?: Record<string, string>,
  retryAfter?: number,
): Response {
  return toProblem(
    new Refusal({
      status,
      code: error,
      message,
      ...(extra ? { data: extra } : {}),
      ...(headers ? { headers } : {}),
      ...(retryAfter !== undefined ? { retryAfter } : {}),
    }),
  );
}

/** 429 over the caller's safety ceiling (the endpoints count against it too). */
export function overCeiling(retryAfterSeconds: number, headers: Record<string, string>): Response {
  const retryAfter = Math.max(1, retryAfterSeconds);
  return problem(
    429,
    "too_many_requests",
    `Over the safety ceiling; retry after ${retryAfter} s`,
    { retryAfter, layer: "ceiling" },
    headers,
    retryAfter,
  );
}

/** 403 of a caller an operator blocked (docs/admin.md). */
export function blocked(retryAfterSeconds: number, headers: Record<string, string> = {}): Response {
  const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
  return problem(403, "blocked", "This caller is blocked by the operator", { reason: "blocked", retryAfter }, headers, retryAfter);
}
