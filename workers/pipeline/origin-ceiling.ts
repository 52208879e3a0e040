/**
 * The origin-ceiling step (`policy.originCeiling`, off by default): every request forwarded
 * to the origin, all callers together, counted on one `OriginGate` object. Taken only for a
 * request the caller's own layers admitted, so a caller over its budget cannot use up
 * everyone's capacity. Over it: 429 (`layer: "origin"`), and what admitting the request took
 * is given back (a payment still to complete buys nothing: its balance is withdrawn and no
 * token is handed out; a token's credits come back, and its `Tollbooth-Credits` says so).
 * The object failing: 503, given back the same way.
 */
import { CREDITS_HEADER, TOKEN_HEADER } from "../../shared/wire/headers.ts";
import { tooMany, unavailable } from "../refusal/layers.ts";
import type { Refusal } from "../refusal/refusal.ts";
import type { Deps } from "./deps.ts";
import { giveBack, heldBy } from "./give-back.ts";
import type { Admitted } from "./state.ts";

/** The request, on (room at the origin, or no ceiling); or the 429 / 503 of the origin ceiling. */
export async function originCeiling(s: Admitted, deps: Pick<Deps, "originTake" | "leases" | "policy">): Promise<Admitted | Refusal> {
  if (!deps.originTake) return s;
  let room;
  try {
    room = await deps.originTake(s.nowMs);
  } catch (err) {
    void giveBack(heldBy(s, deps, "taken"), s.ctx.defer);
    console.error("tollbooth: OriginGate.take failed", err);
    return unavailable("origin_gate");
  }
  if (room.success) return s;
  const held = heldBy(s, deps, "taken");
  void giveBack(held, s.ctx.defer);
  const headers = { ...s.headers };
  if (held.kind === "payment") {
    // Invariant: a payment not settled buys nothing. Its balance is withdrawn (its spent
    // mark stays: the client signs a new authorization) and no token is handed out.
    delete headers[TOKEN_HEADER];
    delete headers[CREDITS_HEADER];
  }
  // The refund gives the token its credits back: say what it will hold.
  const { decision } = s;
  if (decision.paidBy === "token" && decision.credits !== undefined && headers[CREDITS_HEADER] !== undefined)
    headers[CREDITS_HEADER] = String(decision.credits + s.cost);
  return tooMany(
    "origin",
    `the origin is at its ceiling of ${deps.policy.originCeiling!.capacity} requests (all callers)`,
    room.retryAfterSeconds,
    headers,
  );
}
