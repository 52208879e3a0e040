/**
 * The admission step: one call to the caller's Durable Object (or none, when this isolate's
 * lease of the caller's units admits the request: shared/limits/lease.ts). The object, in
 * one synchronous step: the operator's block (403), the caller's ceiling (429), the session
 * and stream caps (429), the credential (redeemed once, or refused), then the free bucket:
 * over budget → the over-budget answer (402 with challenges whose difficulty adapts to the
 * caller's recent solves, or 429 in the plan's 429 mode; workers/refusal/over-budget.ts).
 * When the object throws or does not answer within `policy.storeTimeoutMs`, the request
 * fails closed (503, its reason the failure's kind: workers/objects/stores.ts `StoreFailure`)
 * or, with `onStoreError: "open"`, no credential, and an object that timed out or could not be
 * reached (never one overloaded, or one whose own code threw), goes on unmetered.
 */
import { signToken } from "../../shared/credentials/token.ts";
import type { LeaseAdmission } from "../../shared/limits/lease.ts";
import type { Plan } from "../../shared/policy/index.ts";
import { CREDITS_HEADER, TOKEN_HEADER } from "../../shared/wire/headers.ts";
import { gatewayUrls } from "../endpoints/urls.ts";
import type { AdmitResult } from "../objects/caller-state.ts";
import { type CallerStore, storeFailure } from "../objects/stores.ts";
import { blocked, tooMany, unavailable } from "../refusal/layers.ts";
import { describeRequest, overBudget } from "../refusal/over-budget.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { OfferContext } from "../schemes/contract.ts";
import { schemeOfReason } from "../schemes/registry.ts";
import type { Deps } from "./deps.ts";
import { giveBack, heldBy } from "./give-back.ts";
import type { Admitted, Carrying, Metered, OpenFailure, Unmetered } from "./state.ts";

/** What the caller's object, or this isolate's lease, decided. */
interface Taken {
  decision: AdmitResult;
  local: LeaseAdmission | null;
}

/** The caller's object failed in a way `onStoreError: "open"` covers: forwarded unmetered. */
interface Unmet {
  unmetered: OpenFailure;
}

/**
 * The decision for a request admitted from a lease: what the `RateLimit` fields report is
 * what this isolate's lease holds plus what the object had left at its last grant.
 */
function leaseDecision(plan: Plan, cost: number, local: LeaseAdmission, nowMs: number): AdmitResult {
  const result = (capacity: number, refill: number, remaining: number) => ({
    success: true,
    limit: capacity,
    remaining: Math.max(0, Math.floor(remaining)),
    reset: nowMs + Math.ceil((Math.max(0, capacity - remaining) / refill) * 1000),
    retryAfterSeconds: 0,
  });
  return {
    admitted: true,
    paidBy: cost > 0 ? "bucket" : "free",
    bucket: result(plan.bucket.capacity, plan.bucket.refillPerSecond, local.bucketRemaining),
    ceiling: result(plan.ceiling.capacity, plan.ceiling.refillPerSecond, local.ceilingRemaining),
  };
}

/** The decision: from this isolate's lease when it can, else from the caller's object (asking for a lease with it). */
async function take(
  s: Metered,
  deps: Pick<Deps, "leases" | "policy" | "sessionUses">,
  store: CallerStore,
): Promise<Taken | Unmet | Refusal> {
  const { caller, nowMs, plan } = s;
  // What the caller's free bucket is charged: the cost, or more for a free request under congestion (./origin-ceiling.ts).
  const cost = s.admit.cost;
  const leases = deps.leases;
  // Sessions used from the lease ride on this isolate's next call to the caller's object.
  const touched = () => {
    const uses = deps.sessionUses?.take(caller);
    return uses ? { touched: uses } : {};
  };
  // Leases: a request with no credential and no slot may be admitted from this isolate's
  // lease of the caller's units, with no Durable Object call (shared/limits/lease.ts).
  const leasable = leases !== null && !s.credential.carried && !s.slot;
  const local = leasable ? leases.admit(caller, cost, nowMs) : null;
  if (local) {
    if (s.admit.session) deps.sessionUses?.note(caller, s.admit.session);
    // Renewed in the background, when this request is the one to start it (kept alive even
    // when it holds enough: the renewal moves its expiry).
    if (leases!.startRenewal(caller, nowMs)) {
      const want = leases!.want(caller, nowMs, plan.bucket.capacity, plan.ceiling.capacity, true);
      const renewal = want
        ? store
            .renew({ nowMs, bucket: plan.bucket, ceiling: plan.ceiling, lease: want, ...touched() })
            .then((grant) => leases!.install(caller, grant, Date.now()))
        : Promise.resolve();
      s.ctx.defer(
        "CallerState.renew",
        renewal.finally(() => leases!.renewed(caller)),
      );
    }
    return { decision: leaseDecision(plan, cost, local, nowMs), local };
  }
  // At most one lease request in flight per caller: a burst's concurrent calls ask none.
  const want = leasable ? leases!.want(caller, nowMs, plan.bucket.capacity, plan.ceiling.capacity) : null;
  // This call carries the isolate's lease request (not only stale units handed back): it settles it.
  const asking = want !== null && (want.units > 0 || want.ceilingUnits > 0);
  try {
    const decision = await store.admit({ ...s.admit, ...(want ? { lease: want } : {}), ...touched() });
    if (decision.lease) leases!.install(caller, decision.lease, nowMs);
    else if (leasable && !decision.admitted && (decision.reason === "over_budget" || decision.reason === "ceiling")) {
      // A concurrent request of this caller may have brought a lease back meanwhile: the
      // units it holds were taken from the buckets this request found empty. Use them.
      const late = leases!.spend(caller, cost, nowMs);
      if (late) return { decision: leaseDecision(plan, cost, late, nowMs), local: late };
    }
    return { decision, local: null };
  } catch (err) {
    // A credential is never honoured unverified: its spend (credits, a challenge's single
    // use) lives in the store. Without a credential, "open" trades metering for availability
    // when the object could not be reached or did not answer; never when it is overloaded
    // (the caller's own flood: forwarding would reward it) or threw itself (a bug an input
    // may trigger at will).
    const kind = storeFailure(err);
    if (deps.policy.onStoreError === "open" && !s.credential.carried && (kind === "timeout" || kind === "unreachable")) {
      console.warn(`tollbooth: CallerState.admit failed (${kind}); forwarding unmetered (onStoreError "open") for ${caller}`, err);
      return { unmetered: kind };
    }
    // Fail closed: without the caller's state nothing is admitted. The cause is logged, not sent.
    console.error(`tollbooth: CallerState.admit failed (${kind})`, err);
    return unavailable("store", err);
  } finally {
    if (asking) leases!.renewed(caller);
  }
}

/**
 * Whether the caller is one the schemes' reserves are kept for (`OfferContext.trusted`): a
 * verified identity, or a request that proves a completed payment — a paid credential with no
 * settlement still to come (a payment that only verified and still has to settle proves
 * nothing: anyone can sign one with an empty wallet), or an access token bought by a payer.
 */
export function trustedCaller(s: Carrying): boolean {
  const proven =
    s.credential.settlement === undefined && !s.credential.refusedBy && (s.credential.payment !== undefined || s.caller !== s.identity.id);
  return s.identity.verified || proven;
}

/**
 * What the schemes offer in, for an over-budget answer with `reason`: at the caller's
 * difficulty (the object's answer, else the plan's, raised by the congestion's extra bits),
 * and the congestion's prices.
 */
export function offerContext(s: Carrying & { decision?: AdmitResult }, deps: Pick<Deps, "policy">, reason: string): OfferContext {
  const { plan, keyring, caller, nowMs, cost, url, congestion } = s;
  const what = describeRequest(s.request.method, url.pathname, s.body);
  const difficulty = s.decision?.difficulty ?? plan.challenge.difficulty;
  return {
    policy: deps.policy,
    plan,
    keyring,
    caller,
    nowMs,
    cost,
    url,
    what,
    reason,
    difficulty,
    congestion,
    network: s.identity.network,
    trusted: trustedCaller(s),
  };
}

/** The answer to a request the caller's object did not admit. */
async function refusalOf(s: Admitted, deps: Pick<Deps, "policy" | "schemes">): Promise<Refusal> {
  const { decision, plan, headers } = s;
  // An operator blocked the caller (docs/admin.md): refused before any credential was redeemed or the origin asked.
  if (decision.reason === "blocked") return blocked(decision.retryAfterSeconds ?? 1);
  if (decision.reason === "ceiling")
    return tooMany("ceiling", `over the safety ceiling of ${plan.ceiling.capacity} requests`, decision.ceiling.retryAfterSeconds, headers);
  if (decision.reason === "sessions" || decision.reason === "streams") {
    const max = decision.reason === "sessions" ? plan.limits.sessions : plan.limits.streams;
    const what = decision.reason === "sessions" ? "sessions" : "GET streams";
    const busy = decision.busy
      ? "; every open session is in use (a GET stream open on it, or being ended), none could be closed for this one"
      : "";
    return tooMany(
      decision.reason,
      `over the cap of ${max} open ${what} per caller${busy} (end one with DELETE, or close a stream)`,
      decision.retryAfterSeconds ?? 1,
      headers,
      { max },
    );
  }
  const reason = decision.reason ?? "over_budget";
  const status = (s.credential.refusedBy ?? schemeOfReason(deps.schemes, reason))?.refusalStatus(reason) ?? 402;
  const offer = offerContext(s, deps, reason);
  // The scheme's own words for its redemption refused by the caller's object, when it has some.
  const facts = s.admit.redeem
    ? {
        redemption: s.admit.redeem,
        difficulty: offer.difficulty,
        worth: decision.solutionCredits,
        cost: s.cost,
        challengeUrl: gatewayUrls(s.url).challengeUrl,
      }
    : null;
  const detail = (facts ? schemeOfReason(deps.schemes, reason)?.refusalDetail?.(reason, facts) : undefined) ?? s.credential.refusedDetail;
  const { schemes } = deps;
  // A free request refused by its own budget: the congestion's free share may be why.
  const refusedAt = s.cls === "free" && reason === "over_budget" ? "budget" : undefined;
  return overBudget({
    schemes,
    offer,
    body: s.body,
    retryAfterSeconds: decision.bucket.retryAfterSeconds,
    solves: decision.solves,
    headers,
    status,
    credits: decision.credits,
    refusedAt,
    ...(detail !== undefined ? { detail: { detail } } : {}),
  });
}

/**
 * The request admitted by the caller's object or lease (with the headers every answer to it
 * carries), the request to forward unmetered, or the object's refusal.
 */
export async function admission(
  s: Metered,
  deps: Pick<Deps, "callers" | "leases" | "policy" | "schemes" | "limitHeaders" | "blockedUntil" | "sessionUses">,
): Promise<Admitted | Unmetered | Refusal> {
  const { caller, identity, nowMs } = s;
  // A request that became a payer's through its access token: the identity it came from
  // must not be blocked. Asked in parallel with the payer's object (per-isolate memo, at
  // most BLOCK_MEMO_MS old); what the admit took is given back when it is.
  const identityBlock =
    caller !== identity.id && s.admit.redeem === undefined
      ? deps.blockedUntil(identity.id, nowMs).then(
          (until) => ({ ok: true as const, until }),
          (err: unknown) => ({ ok: false as const, err }),
        )
      : null;
  const store = deps.callers.of(caller);
  const taken = await take(s, deps, store);
  if ("unmetered" in taken) return { ...s, unmetered: taken.unmetered };
  if (taken instanceof Refusal) return taken;
  const admitted: Admitted = { ...s, store, decision: taken.decision, local: taken.local, headers: {} };
  const found = identityBlock ? await identityBlock : null;
  if (found && (!found.ok || found.until !== null)) {
    // Refused after all: the payer's token gets back what the admit took from it, and the slot.
    if (taken.decision.admitted) void giveBack(heldBy(admitted, deps, "charge"), s.ctx.defer);
    if (!found.ok) {
      console.error("tollbooth: CallerState.blocked failed", found.err);
      return unavailable("store", found.err);
    }
    return blocked((found.until! - nowMs) / 1000, {}, identity.id);
  }
  // Headers every answer to the request carries: rate-limit fields, the token its redemption minted, the credits left.
  const { decision } = taken;
  const claims = s.credential.tokenClaims;
  const headers = deps.limitHeaders(s.plan, decision, nowMs);
  // Invariant: the token says the credits the object minted (a solution redeemed below the
  // caller's current difficulty buys fewer than its challenge offered).
  if (decision.minted && claims) headers[TOKEN_HEADER] = await signToken(s.keyring, { ...claims, cr: decision.mintedCredits ?? claims.cr });
  if (decision.credits !== undefined) headers[CREDITS_HEADER] = String(decision.credits);
  const ready: Admitted = { ...admitted, headers };
  return decision.admitted ? ready : refusalOf(ready, deps);
}
