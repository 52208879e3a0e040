/**
 * Admission classes at the origin ceiling (docs/allocation.md): every forwarded request has a
 * class, from what admitted it, and the origin's capacity is shared among the classes by
 * priority with a guaranteed share each.
 *
 * Classes, highest priority first: `paid` (credits bought with money: L402, x402, a paid
 * plan), `verified` (a JWT or issued key within its plan's budget), `worked` (a proof-of-work
 * solution or the access token it bought), `free` (network buckets, unverified callers).
 *
 * The structure (one per origin shard, on the shard's share of the ceiling, `cap` µunits and
 * `rate` µunits/ms):
 * - one **guaranteed bucket** per class k: capacity `g_k × cap`, refill `g_k × rate`;
 * - one shared **pool**: capacity and refill the rest, `(1 − Σg) × …`, exactly (integer parts);
 * - the refill of a full guaranteed bucket overflows into the pool (work-conserving: the total
 *   inflow is `rate` per ms whatever the demand, and the total capacity is `cap`);
 * - a class-k take comes from its guaranteed bucket first, then from the pool only down to the
 *   pool's **floor for k** (`reserve_k × pool capacity`; floors rise as priority falls — trunk
 *   reservation): under saturation the lowest class meets its floor first, and a lower class
 *   never takes what is reserved for a higher one.
 * Every bucket is a `LeasedBucket` (units go out on lease to isolates), so over any window of
 * T ms the units spent from one shard are ≤ cap + rate × T (shared/limits/leased-bucket.ts).
 */
import { alive, dropExpired, fill, fullLeased, type LeasedBucket, lend, lendable, nextExpiry, trim } from "./leased-bucket.ts";
import { type MicroBucket, mulPpm, PPM, toPpm } from "./micro-units.ts";

/** The admission classes, highest priority first. */
export const ADMISSION_CLASSES = ["paid", "verified", "worked", "free"] as const;
/** An admission class. */
export type AdmissionClass = (typeof ADMISSION_CLASSES)[number];
/** Index of each class in `ADMISSION_CLASSES` (0 = highest priority); the index of the pool is `ADMISSION_CLASSES.length`. */
export const CLASS_INDEX: Readonly<Record<AdmissionClass, number>> = { paid: 0, verified: 1, worked: 2, free: 3 };
/** Index of the shared pool among a shard's buckets. */
export const POOL = ADMISSION_CLASSES.length;

/** What admitted a request, as the gateway knows it before the origin ceiling (docs/allocation.md, "Per request"). */
export interface AdmittedBy {
  /** A credential bought with money: an L402 macaroon, an x402 payment, an access token or balance opened by one, or a plan the operator marks paid. */
  readonly paid: boolean;
  /** A verified identity (a JWT, an issued API key) spending its plan's budget. */
  readonly verified: boolean;
  /** A proof-of-work solution, or an access token minted from one. */
  readonly worked: boolean;
}

/**
 * The class of a request: the highest that applies — `paid`, else `verified`, else `worked`,
 * else `free` (network buckets, unverified callers). A request that costs nothing keeps the
 * class of what it carries: a paying customer's `tools/list` is not shed as free traffic
 * (it still counts at the origin and against the caller's own ceiling).
 */
export function admissionClass(by: AdmittedBy): AdmissionClass {
  return by.paid ? "paid" : by.verified ? "verified" : by.worked ? "worked" : "free";
}

/** One class's settings: fractions in [0, 1]. */
export interface ClassShare {
  /** Share of the origin ceiling (capacity and refill) only this class may use. */
  readonly guarantee: number;
  /** Share of the pool's capacity this class must leave in it (for the classes above). */
  readonly reserve: number;
}

/** Every class's settings (`allocation.classes` in the policy). */
export type ClassPolicy = Readonly<Record<AdmissionClass, ClassShare>>;

/**
 * Defaults: paid and verified first. Small guarantees for `worked` and `free` so they never
 * starve entirely; the pool (70 %) goes to whoever asks, by priority: `verified` leaves 5 % of
 * it for `paid`, `worked` leaves 15 %, `free` leaves 30 %.
 */
export const DEFAULT_CLASS_POLICY: ClassPolicy = {
  paid: { guarantee: 0.1, reserve: 0 },
  verified: { guarantee: 0.1, reserve: 0.05 },
  worked: { guarantee: 0.05, reserve: 0.15 },
  free: { guarantee: 0.05, reserve: 0.3 },
};

/**
 * Check a class policy.
 * @throws TypeError naming the class and field: a fraction outside [0, 1], guarantees adding
 *   up to more than 1, or a reserve lower than that of a class above (a lower class would
 *   take what a higher one is left)
 */
export function checkClassPolicy(policy: ClassPolicy): void {
  let sum = 0;
  let previous = 0;
  for (const k of ADMISSION_CLASSES) {
    const c = policy[k];
    if (!c) throw new TypeError(`allocation.classes.${k}: missing`);
    for (const f of ["guarantee", "reserve"] as const) {
      if (!(c[f] >= 0 && c[f] <= 1)) throw new TypeError(`allocation.classes.${k}.${f}: ${c[f]} is not a fraction in [0, 1]`);
    }
    sum += toPpm(c.guarantee);
    if (c.reserve < previous)
      throw new TypeError(
        `allocation.classes.${k}.reserve: ${c.reserve} is below the reserve of a higher class (${previous}); reserves rise as priority falls`,
      );
    previous = c.reserve;
  }
  if (sum > PPM) throw new TypeError(`allocation.classes: the guarantees add up to ${sum / PPM}, more than 1`);
}

/** A shard's buckets in exact form: `buckets[k]` the guarantee of class k, `buckets[POOL]` the pool; `floors[k]` µunits the pool keeps for a class-k take. */
export interface ClassLimits {
  readonly share: MicroBucket;
  readonly buckets: readonly MicroBucket[];
  readonly floors: readonly number[];
  /** Milliseconds after which every bucket is full whatever it held (refill longer than this adds nothing). */
  readonly fullMs: number;
}

/**
 * The buckets of a share of the ceiling under `policy`: integer parts that add up exactly to
 * `share.cap` and `share.rate` (the pool takes what the guarantees' rounding leaves).
 * @throws TypeError as `checkClassPolicy`
 */
export function classLimits(share: MicroBucket, policy: ClassPolicy): ClassLimits {
  checkClassPolicy(policy);
  const buckets: MicroBucket[] = ADMISSION_CLASSES.map((k) => {
    const g = toPpm(policy[k].guarantee);
    return { cap: mulPpm(share.cap, g), rate: mulPpm(share.rate, g) };
  });
  const pool = { cap: share.cap - buckets.reduce((a, b) => a + b.cap, 0), rate: share.rate - buckets.reduce((a, b) => a + b.rate, 0) };
  buckets.push(pool);
  const floors = ADMISSION_CLASSES.map((k) => mulPpm(pool.cap, toPpm(policy[k].reserve)));
  // Every guaranteed bucket fills on its own rate; the pool at least on the whole rate once they are full.
  let fullMs = share.rate > 0 ? Math.ceil(share.cap / share.rate) : 0;
  for (const b of buckets) if (b.rate > 0) fullMs = Math.max(fullMs, Math.ceil(b.cap / b.rate));
  return { share, buckets, floors, fullMs: 2 * fullMs + 1 };
}

/** A shard's origin state: the buckets (guarantees, then the pool) as of `updatedMs` (unix ms). Plain data. */
export interface OriginState {
  buckets: LeasedBucket[];
  updatedMs: number;
}

/** Every bucket full as of `nowMs`. */
export function fullOrigin(limits: ClassLimits, nowMs: number): OriginState {
  return { buckets: limits.buckets.map((b) => fullLeased(b.cap)), updatedMs: nowMs };
}

/**
 * Refill every bucket for `dt` ms (no lease ends inside): guarantees first, their overflow into
 * the pool, and never more than lifts the shard's alive mass to its share's capacity (that
 * bounds it only after a smaller share left a bucket above its own capacity: the others then make
 * up for it, so the shard as a whole never holds more than its share).
 */
function refillFor(state: OriginState, limits: ClassLimits, dt: number): void {
  const ms = Math.min(dt, limits.fullMs);
  let room = limits.share.cap - aliveTotal(state);
  let overflow = 0;
  for (let k = 0; k < POOL; k++) {
    const amount = limits.buckets[k]!.rate * ms;
    const added = fill(state.buckets[k]!, limits.buckets[k]!.cap, amount, room);
    room -= added;
    overflow += amount - added;
  }
  fill(state.buckets[POOL]!, limits.buckets[POOL]!.cap, limits.buckets[POOL]!.rate * ms + overflow, room);
}

/**
 * Bring the state to `nowMs`: refill up to each lease end in turn, forget the leases that
 * ended, refill to `nowMs`. Integer arithmetic throughout: nothing is created or lost by
 * rounding. A clock that went backwards changes nothing.
 * @param nowMs unix ms (an integer)
 */
export function advance(state: OriginState, limits: ClassLimits, nowMs: number): void {
  while (state.updatedMs < nowMs) {
    let next = Infinity;
    for (const b of state.buckets) next = Math.min(next, nextExpiry(b));
    const until = Math.min(next, nowMs);
    if (until > state.updatedMs) refillFor(state, limits, until - state.updatedMs);
    state.updatedMs = Math.max(state.updatedMs, until);
    if (until === next) for (const b of state.buckets) dropExpired(b, until);
  }
}

/**
 * Drop the tokens a smaller share no longer holds: each bucket keeps at most its capacity less
 * what it has out on lease (units out stay out).
 */
export function trimToLimits(state: OriginState, limits: ClassLimits): void {
  state.buckets.forEach((b, i) => {
    trim(b, limits.buckets[i]!.cap);
  });
}

/** Whole units a class-`k` take could get now: its guarantee, then the pool above its floor. */
export function available(state: OriginState, limits: ClassLimits, k: number): number {
  return lendable(state.buckets[k]!, 0) + lendable(state.buckets[POOL]!, limits.floors[k]!);
}

/** What a lend of class k gave, by bucket. */
export interface ClassLend {
  /** Units from the class's guaranteed bucket (bucket index k). */
  guaranteed: number;
  /** Units from the pool (bucket index POOL). */
  pooled: number;
}

/**
 * Lend up to `units` whole units to class `k` (call `advance` first): from its guarantee, then
 * from the pool down to its floor. With `all`, lend `units` or nothing.
 * @param expiresMs unix ms the lease ends
 */
export function lendClass(state: OriginState, limits: ClassLimits, k: number, units: number, expiresMs: number, all = false): ClassLend {
  if (units <= 0 || (all && available(state, limits, k) < units)) return { guaranteed: 0, pooled: 0 };
  const guaranteed = lend(state.buckets[k]!, units, 0, expiresMs);
  const pooled = lend(state.buckets[POOL]!, units - guaranteed, limits.floors[k]!, expiresMs);
  return { guaranteed, pooled };
}

/** Alive mass of the whole shard (µunits): in hand plus out on lease, every bucket. */
export function aliveTotal(state: OriginState): number {
  return state.buckets.reduce((a, b) => a + alive(b), 0);
}
