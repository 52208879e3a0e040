/**
 * The settlement step: a payment to complete (`PaymentScheme.settle`) is completed only once
 * everything else admitted the request, and before the origin is asked: a request whose
 * payment does not complete never reaches it.
 * Invariant: a payment reaches its settlement at most once across every route: its spend id
 * is claimed, in one step of the one object every route shares, right before the scheme
 * settles it. Lost to another request (another route, or a replay), it is refused
 * `<prefix>_spent`; a failed settlement is refused with its reason (the over-budget answer,
 * with fresh challenges). Either way the balance the redemption opened is withdrawn; when the
 * scheme says its payment was left untouched (`retryable`: its service did not answer a check
 * made before submitting), its spent marks are lifted before the answer, so the same
 * credential may be sent again.
 */
import { refuse } from "../../shared/result.ts";
import { CREDITS_HEADER, TOKEN_HEADER } from "../../shared/wire/headers.ts";
import { unavailable } from "../refusal/layers.ts";
import { overBudget } from "../refusal/over-budget.ts";
import type { Refusal } from "../refusal/refusal.ts";
import { offerContext } from "./admission.ts";
import type { Deps } from "./deps.ts";
import { giveBack } from "./give-back.ts";
import type { Admitted, Cleared } from "./state.ts";

/** The request cleared for the origin (its payment settled, when it carries one), or why its payment did not complete. */
export async function settlement(
  s: Admitted,
  deps: Pick<Deps, "policy" | "schemes" | "claimSpend" | "releaseSpend">,
): Promise<Cleared | Refusal> {
  const pending = s.credential.settlement;
  const redemption = s.admit.redeem;
  if (!pending || !redemption) return s;
  const payment = { kind: "payment" as const, store: s.store, jti: redemption.jti };
  let claimed: boolean;
  try {
    claimed = await deps.claimSpend(redemption.spendId, redemption.spendUntilMs);
  } catch (err) {
    void giveBack(payment, s.ctx.defer);
    console.error("tollbooth: CallerState.claim failed", err);
    return unavailable("store", err);
  }
  const { plan, keyring, caller, nowMs, cost } = s;
  // At the price its payment was verified at (the congestion when the request arrived).
  const done = claimed
    ? await pending.scheme.settle!(pending.credential, {
        policy: deps.policy,
        plan,
        keyring,
        caller,
        nowMs,
        cost,
        congestion: s.congestion,
      })
    : refuse("spent");
  if (done.ok) return { ...s, headers: { ...s.headers, ...done.headers }, receipt: done.receipt };
  if (claimed && pending.scheme.retryable?.(done.reason) === true)
    await giveBack({ ...payment, lift: { spendId: redemption.spendId, release: deps.releaseSpend } }, s.ctx.defer);
  else void giveBack(payment, s.ctx.defer);
  const headers = { ...s.headers };
  delete headers[TOKEN_HEADER];
  delete headers[CREDITS_HEADER];
  const reason = `${pending.scheme.prefix}_${done.reason}`;
  const offer = offerContext(s, deps, reason);
  const { decision } = s;
  const detail = done.detail !== undefined ? { detail: { detail: done.detail } } : {};
  return overBudget({
    schemes: deps.schemes,
    offer,
    body: s.body,
    retryAfterSeconds: decision.bucket.retryAfterSeconds,
    solves: decision.solves,
    headers,
    status: pending.scheme.refusalStatus(reason),
    ...detail,
  });
}
