/**
 * The origin-ceiling step (`policy.originCeiling`, off by default; docs/allocation.md), before
 * the caller's own layers: the request's admission class — `paid` (money: a payment, or a
 * token it bought), `verified` (a JWT or issued API key), `worked` (a proof of work, or its
 * token), else `free` — and its units of the ceiling, one per JSON-RPC message (a batch of
 * four takes four; cost-0 messages count: the origin does their work), from this isolate's
 * lease of its class, or from its shard (workers/objects/origin-shards.ts): most requests
 * with no Durable Object call. A request a later step refuses gives its units back; one
 * forwarded spends them (./decide.ts).
 * Refused (its class has no room at the origin now; the lowest class is refused first):
 * - `paid`: 429 `origin` with `Retry-After`: even paid traffic exceeds the ceiling;
 * - the others: 402 `origin` offering the ways up that have room (free: work or pay;
 *   worked and verified: pay), with `error.data.congestion` (the load level and why).
 * A free request admitted here pays the congestion's free share at its caller's free bucket
 * (`freeCost`: free callers meet a 402 earlier). The shard failing: 503.
 */
import { congestionData, freeCost } from "../../shared/limits/congestion.ts";
import { type AdmissionClass, admissionClass } from "../../shared/limits/origin-classes.ts";
import { tooMany, unavailable } from "../refusal/layers.ts";
import { overBudget } from "../refusal/over-budget.ts";
import type { Refusal } from "../refusal/refusal.ts";
import { offerContext } from "./admission.ts";
import type { Deps } from "./deps.ts";
import type { Carrying, Metered } from "./state.ts";

/** The admission class of a request: from its credential (when it verified) and its identity. */
export function classOf(s: Pick<Carrying, "credential" | "identity">): AdmissionClass {
  const cls = s.credential.cls;
  return admissionClass({ paid: cls === "paid", verified: s.identity.verified, worked: cls === "worked" });
}

/** The request with its class and units of the origin ceiling (none without one); or the refusal of the origin ceiling. */
export async function originCeiling(s: Carrying, deps: Pick<Deps, "origin" | "policy" | "schemes">): Promise<Metered | Refusal> {
  const cls = classOf(s);
  const origin = deps.origin;
  if (!origin) return { ...s, cls, origin: null };
  const units = s.body ? s.body.messages.length : 1;
  let receipt;
  try {
    receipt = await origin.admit(cls, units, s.nowMs, s.ctx.defer);
  } catch (err) {
    console.error("tollbooth: OriginGate.shard failed", err);
    return unavailable("origin_gate", err);
  }
  if (!receipt) return refused(s, deps, cls, units);
  const c = s.congestion;
  // A free request takes `ceil(cost / freeShare)` of its free bucket (at most its capacity).
  const admit = cls === "free" && c ? { ...s.admit, cost: freeCost(s.admit.cost, c.freeShare, s.plan.bucket.capacity) } : s.admit;
  return { ...s, cls, origin: receipt, admit };
}

/** The answer to a request whose class has no room at the origin: 429 for `paid`, else a 402 with the ways up. */
async function refused(
  s: Carrying,
  deps: Pick<Deps, "origin" | "policy" | "schemes">,
  cls: AdmissionClass,
  units: number,
): Promise<Refusal> {
  const origin = deps.origin!;
  const congestion = origin.congestion();
  const { capacity, refillPerSecond } = deps.policy.originCeiling!;
  const data = { congestion: congestionData(congestion, "origin") };
  const atCeiling = `the origin is at its ceiling (${capacity} messages, ${refillPerSecond} per second, all callers)`;
  if (cls === "paid") return tooMany("origin", `${atCeiling}, paid traffic included`, origin.retryAfterSeconds(units), {}, data);
  // The ways up that had room at the shard's last answer: from free, work or money; from worked or verified, money.
  const up = cls === "free" ? ["worked", "paid"] : ["paid"];
  const schemes = deps.schemes.filter((x) => up.includes(x.admits) && origin.room(x.admits) !== false);
  if (schemes.length === 0) return tooMany("origin", `${atCeiling}; no way up has room now`, 1, {}, data);
  const offer = { ...offerContext(s, deps, "origin"), congestion };
  return overBudget({ schemes, offer, body: s.body, retryAfterSeconds: 1, headers: {}, detail: { layer: "origin" }, refusedAt: "origin" });
}
