/**
 * The caller's Durable Object in the simulation (bench/sim/): what `CallerBucket` decides for
 * the requests the simulation sends, with the gateway's own arithmetic — the token buckets of
 * shared/limits/bucket.ts, the leases of shared/limits/lease.ts (`grantLease`) and the adaptive
 * difficulty of shared/limits/difficulty.ts. Sessions, blocks and credential formats are not
 * modelled: a credential here is a balance of credits.
 */
import { type BucketState, fullBucket, take } from "../../shared/limits/bucket.ts";
import { type AdaptiveConfig, addSolve, decayed, difficultyFor, NO_SOLVES, type SolveScore } from "../../shared/limits/difficulty.ts";
import { grantLease, type LeaseGrant, type LeaseWant } from "../../shared/limits/lease.ts";
import type { SimPlan } from "./population.ts";

/** The policy's default adaptive difficulty. */
export const ADAPTIVE: AdaptiveConfig = { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 };
/** The policy's default base difficulty (bits) and credits per solve. */
export const BASE_BITS = 16;
export const SOLVE_CREDITS = 20;

/** A decision of the caller's object. */
export interface CallerDecision {
  admitted: boolean;
  reason?: "ceiling" | "over_budget" | "token_exhausted";
  lease?: LeaseGrant;
}

/** One caller's object. */
export class CallerObject {
  private free: BucketState;
  private ceiling: BucketState;
  /** Credits of the caller's balance (bought, or minted by solves). */
  credits: number;
  private score: SolveScore = NO_SOLVES;
  readonly plan: SimPlan;

  constructor(plan: SimPlan, nowMs: number, credits = 0) {
    this.plan = plan;
    this.free = fullBucket(plan.bucket, nowMs);
    this.ceiling = fullBucket(plan.ceiling, nowMs);
    this.credits = credits;
  }

  /** A request without a credential: the ceiling, then `cost` from the free bucket; a lease from what is left when asked. */
  admitFree(cost: number, want: LeaseWant | null, nowMs: number): CallerDecision {
    const c = take(this.ceiling, this.plan.ceiling, 1, nowMs);
    if (!c.result.success) return this.withReturns({ admitted: false, reason: "ceiling" }, want, nowMs);
    this.ceiling = c.state;
    if (cost > 0) {
      const f = take(this.free, this.plan.bucket, cost, nowMs);
      if (!f.result.success) return this.withReturns({ admitted: false, reason: "over_budget" }, want, nowMs);
      this.free = f.state;
    }
    if (!want) return { admitted: true };
    return { admitted: true, lease: this.lease(want, nowMs) };
  }

  /** A request spending the caller's balance: the ceiling, then `cost` credits. */
  spend(cost: number, nowMs: number): CallerDecision {
    const c = take(this.ceiling, this.plan.ceiling, 1, nowMs);
    if (!c.result.success) return { admitted: false, reason: "ceiling" };
    this.ceiling = c.state;
    if (this.credits < cost) return { admitted: false, reason: "token_exhausted" };
    this.credits -= cost;
    return { admitted: true };
  }

  /** A background lease renewal (`CallerBucket.renew`). */
  renew(want: LeaseWant, nowMs: number): LeaseGrant {
    return this.lease(want, nowMs);
  }

  /** Redeem a solved challenge: `SOLVE_CREDITS` credits and one more recent solve. */
  redeem(nowMs: number): void {
    this.credits += SOLVE_CREDITS;
    this.score = addSolve(this.score, ADAPTIVE, nowMs);
  }

  /** Bits the caller's next challenge asks (before the congestion's extra bits). */
  difficulty(nowMs: number): number {
    return difficultyFor(BASE_BITS, ADAPTIVE, decayed(this.score, ADAPTIVE.halfLifeSeconds, nowMs));
  }

  private lease(want: LeaseWant, nowMs: number): LeaseGrant {
    const g = grantLease(this.free, this.ceiling, { bucket: this.plan.bucket, ceiling: this.plan.ceiling }, want, nowMs);
    this.free = g.free;
    this.ceiling = g.ceiling;
    return g.grant;
  }

  /** A refused request still takes back the units of an expired lease it carried. */
  private withReturns(d: CallerDecision, want: LeaseWant | null, nowMs: number): CallerDecision {
    if (want && (want.returned.units > 0 || want.returned.ceilingUnits > 0))
      this.lease({ units: 0, ceilingUnits: 0, returned: want.returned }, nowMs);
    return d;
  }
}
