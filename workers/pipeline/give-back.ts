/**
 * `giveBack`: the one way anything a request took is returned — for a request refused after
 * it was charged (the block of the identity a payer's token came from),
 * a payment that did not complete (its settlement failed, or its spend id was claimed
 * elsewhere), a request the origin never answered (the proxy's 502 / 504), a stream that
 * ended or a session the origin did not open.
 * - `origin`: the origin ceiling's units of a request refused after that step (by the caller's
 *   layers or its payment), back to this isolate's lease of them (no Durable Object call);
 * - `lease`: units of this isolate's lease, back to the lease (no Durable Object call);
 * - `charge`: the cost to what paid it in the caller's object (the free bucket or the token's
 *   credits), and its slot, and the mark of a session it was to evict (`CallerState.refund`);
 * - `payment`: the balance a redemption opened, withdrawn (`CallerState.revoke`: its spent
 *   mark stays, so the same authorization cannot buy again); with `lift` (the payment never
 *   reached anything that could complete it, `PaymentScheme.retryable`), its spent mark in the
 *   caller's object and its gateway-wide claim are lifted too, so the same credential may come again;
 * - `slot`: a session or stream slot, released (`CallerState.release`).
 */
import type { LeaseTable } from "../../shared/limits/lease.ts";
import type { RefundRequest } from "../objects/caller-state.ts";
import type { OriginShards, Receipt } from "../objects/origin-shards.ts";
import type { CallerStore } from "../objects/stores.ts";
import type { Deps } from "./deps.ts";
import type { Admitted, Defer } from "./state.ts";

/** Something a request holds that can be given back. */
export type Held =
  | { kind: "origin"; origin: OriginShards; receipt: Receipt }
  | { kind: "lease"; leases: LeaseTable; caller: string; cost: number }
  | { kind: "charge"; store: CallerStore; refund: RefundRequest }
  | { kind: "payment"; store: CallerStore; jti: string; lift?: { spendId: string; release: (spendId: string) => Promise<void> } }
  | { kind: "slot"; store: CallerStore; slotId: string };

/**
 * Give `held` back. Durable Object calls run in the background through `defer` when given
 * (the request does not wait for them); the promise returned settles when the work is done,
 * never rejects (a failure is logged as `tollbooth: CallerState.<method> failed`).
 */
export function giveBack(held: Held, defer?: Defer): Promise<void> {
  let what: string;
  let work: Promise<unknown>;
  switch (held.kind) {
    case "origin":
      held.origin.giveBack(held.receipt);
      return Promise.resolve();
    case "lease":
      held.leases.refund(held.caller, held.cost, Date.now());
      return Promise.resolve();
    case "charge":
      [what, work] = ["CallerState.refund", held.store.refund(held.refund)];
      break;
    case "payment": {
      const { lift } = held;
      const revoke = held.store.revoke({ jti: held.jti, ...(lift ? { spendId: lift.spendId } : {}) });
      [what, work] = lift
        ? ["CallerState.revoke/unclaim", Promise.all([revoke, lift.release(lift.spendId)])]
        : ["CallerState.revoke", revoke];
      break;
    }
    case "slot":
      [what, work] = ["CallerState.release", held.store.release({ slotId: held.slotId })];
      break;
  }
  const done = work.then(
    () => {},
    (err: unknown) => console.error(`tollbooth: ${what} failed`, err),
  );
  defer?.(what, done);
  return done;
}

/**
 * What an admitted request holds, to give back:
 * - `charge`: what it was charged — its lease's units, or its cost and slot in the caller's object;
 * - `taken`: what admitting it took — its redemption's balance when it carries a payment
 *   still to complete (`payment`), else its `charge`;
 * - `slot`: its session or stream slot.
 */
export function heldBy(s: Admitted, deps: Pick<Deps, "leases">, what: "charge" | "taken" | "slot"): Held {
  if (what === "slot") return { kind: "slot", store: s.store, slotId: s.slot!.id };
  if (what === "taken" && !s.local && s.credential.settlement && s.admit.redeem)
    return { kind: "payment", store: s.store, jti: s.admit.redeem.jti };
  // What was charged: `admit.cost` (a free request under congestion is charged more than its cost).
  if (s.local) return { kind: "lease", leases: deps.leases!, caller: s.caller, cost: s.admit.cost };
  const tokenId = s.admit.tokenId ?? s.admit.redeem?.jti;
  const refund: RefundRequest = {
    nowMs: Date.now(),
    bucket: s.plan.bucket,
    cost: s.admit.cost,
    paidBy: s.decision.paidBy ?? "free",
    ...(tokenId !== undefined ? { tokenId } : {}),
    ...(s.slot ? { slotId: s.slot.id } : {}),
    // A session the admit marked for eviction whose eviction never ran counts as open again.
    ...(s.decision.evict ? { unmark: s.decision.evict.slotId } : {}),
  };
  return { kind: "charge", store: s.store, refund };
}
