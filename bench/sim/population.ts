/**
 * Who calls in the simulation (bench/sim/): 100,000 callers of five kinds, their plans, rates
 * and requests. Rates are given at 100,000 requests/s and scaled to the run's `rps`.
 */
import type { BucketConfig } from "../../shared/limits/bucket.ts";
import type { AdmissionClass } from "../../shared/limits/origin-classes.ts";

/** A plan as the caller's object applies it: the free bucket and the per-caller safety ceiling. */
export interface SimPlan {
  bucket: BucketConfig;
  ceiling: BucketConfig;
}

/** The default plan (unverified callers, networks): the policy's defaults. */
export const FREE_PLAN: SimPlan = { bucket: { capacity: 10, refillPerSecond: 0.5 }, ceiling: { capacity: 60, refillPerSecond: 10 } };
/** An API-key plan (verified callers). */
export const PRO_PLAN: SimPlan = { bucket: { capacity: 60, refillPerSecond: 5 }, ceiling: { capacity: 120, refillPerSecond: 20 } };
/** A paying customer's plan: credits bought (L402 / x402), under a generous safety ceiling. */
export const PAID_PLAN: SimPlan = { bucket: { capacity: 10, refillPerSecond: 0.5 }, ceiling: { capacity: 200, refillPerSecond: 50 } };

/** The kinds of callers. */
export const KINDS = ["paying", "verified", "runaway", "honest", "flood"] as const;
export type Kind = (typeof KINDS)[number];

/** One kind of caller. */
export interface KindSpec {
  kind: Kind;
  /** Number of callers of this kind. */
  count: number;
  /** Requests per second of each caller at 100,000 requests/s in all (during the flood, for `flood`). */
  rps: number;
  /** The class its requests have at the origin without a proof-of-work token. */
  cls: AdmissionClass;
  plan: SimPlan;
  /** Share of its callers whose requests spread over two locations. */
  spread: number;
  /** Share of its callers that solve proofs of work when refused (then `worked` while their credits last), and their hash rate (hashes/s). */
  solvers: number;
  hashRate: number;
}

/** 100,000 callers; 25,910 requests/s without the flood, 100,000 with it. */
export const KIND_SPECS: readonly KindSpec[] = [
  { kind: "paying", count: 2_444, rps: 2.5, cls: "paid", plan: PAID_PLAN, spread: 0.1, solvers: 0, hashRate: 0 },
  { kind: "verified", count: 12_000, rps: 0.9, cls: "verified", plan: PRO_PLAN, spread: 0.1, solvers: 0, hashRate: 0 },
  { kind: "runaway", count: 20, rps: 200, cls: "verified", plan: PRO_PLAN, spread: 1, solvers: 0, hashRate: 0 },
  // Honest agents without a key: within the free budget; refused (402), they solve on one CPU core.
  { kind: "honest", count: 20_000, rps: 0.25, cls: "free", plan: FREE_PLAN, spread: 0, solvers: 1, hashRate: 10.64e6 },
  // The flood: 65,536 networks; a tenth solve on GPUs (2^30 hashes/s).
  { kind: "flood", count: 65_536, rps: 74_090 / 65_536, cls: "free", plan: FREE_PLAN, spread: 0, solvers: 0.1, hashRate: 2 ** 30 },
];

/** A request's shape: cost (units of the caller's budget) and messages (units at the origin). */
export interface RequestShape {
  cost: number;
  messages: number;
}

/**
 * A flood request: 40 % `tools/list` (cost 0), 40 % one `tools/call` (cost 1), 20 % a batch of
 * four `tools/call` (cost 4, four messages at the origin).
 */
export function floodShape(u: number): RequestShape {
  return u < 0.4 ? LIST : u < 0.8 ? SINGLE : BATCH;
}

const LIST: RequestShape = { cost: 0, messages: 1 };
const BATCH: RequestShape = { cost: 4, messages: 4 };

/** Every other kind sends single `tools/call` requests of cost 1. */
export const SINGLE: RequestShape = { cost: 1, messages: 1 };
