/**
 * A token bucket whose units may be out on lease (one bucket of an origin shard,
 * shared/limits/origin-classes.ts). Plain data, updated in place, JSON-serialisable.
 *
 * - `tokens`: µunits in hand (integer ≥ 0, shared/limits/micro-units.ts).
 * - `out`: whole units lent to isolates and not yet reported spent or handed back, grouped by
 *   the time their leases end (`[expiresMs, units]`, ascending, unix ms).
 *
 * The bucket's **alive** mass is `tokens + out` (in µunits): everything that may still be
 * spent. The one invariant, kept by every function here: refill never lifts the alive mass
 * above the capacity (`fill`), so at any instant `alive ≤ cap` (or ≤ an older, larger cap,
 * until the bucket drains below the new one). Units spent by an isolate leave `out` when it
 * reports them (`settle`) or when their lease ends (`dropExpired`); an isolate never spends
 * a unit after its lease ends. Hence the units spent over any window [t, t + T] are at most
 * the alive mass at t plus the refill during the window: **≤ cap + rate × T**, as for a
 * bucket with no leases (test/unit/shared/limits/origin-classes.test.ts checks it over every window).
 * Units handed back before their lease ends move from `out` to `tokens` (alive unchanged);
 * units of a lease that ended are never credited back (they were counted as alive until then).
 */
import { MICRO } from "./micro-units.ts";

/** One leased bucket: µunits in hand and whole units out on lease, by lease end (unix ms). */
export interface LeasedBucket {
  tokens: number;
  out: Array<[expiresMs: number, units: number]>;
}

/** A full bucket of capacity `cap` µunits, nothing lent. */
export function fullLeased(cap: number): LeasedBucket {
  return { tokens: cap, out: [] };
}

/** Whole units out on lease. */
export function outUnits(b: LeasedBucket): number {
  let n = 0;
  for (const e of b.out) n += e[1];
  return n;
}

/** Alive mass, µunits: what is in hand plus what is out on lease. */
export function alive(b: LeasedBucket): number {
  return b.tokens + outUnits(b) * MICRO;
}

/**
 * Refill: add up to `amount` µunits without lifting the alive mass above `cap`, and at most
 * `limit` µunits (what a shard as a whole still has room for).
 * @returns the µunits added (the rest did not fit: the caller may pass it on as overflow)
 */
export function fill(b: LeasedBucket, cap: number, amount: number, limit = Infinity): number {
  const added = Math.max(0, Math.min(amount, cap - alive(b), limit));
  b.tokens += added;
  return added;
}

/** Drop tokens so that the alive mass is at most `cap` where it can be (units out on lease stay out). */
export function trim(b: LeasedBucket, cap: number): void {
  b.tokens = Math.max(0, Math.min(b.tokens, cap - outUnits(b) * MICRO));
}

/**
 * Lend up to `units` whole units, keeping at least `floor` µunits in hand; the units lent are
 * out until `expiresMs`.
 * @param units whole units wanted (integer ≥ 0)
 * @param floor µunits that must stay in hand (a reserve for higher classes), ≥ 0
 * @param expiresMs unix ms the lease ends (the isolate stops spending it no later)
 * @returns the units lent (0 … `units`)
 */
export function lend(b: LeasedBucket, units: number, floor: number, expiresMs: number): number {
  const g = Math.max(0, Math.min(units, Math.floor((b.tokens - floor) / MICRO)));
  if (g === 0) return 0;
  b.tokens -= g * MICRO;
  let i = b.out.length;
  while (i > 0 && b.out[i - 1]![0] > expiresMs) i--;
  if (i > 0 && b.out[i - 1]![0] === expiresMs) b.out[i - 1]![1] += g;
  else b.out.splice(i, 0, [expiresMs, g]);
  return g;
}

/** Whole units that `lend(b, ·, floor, ·)` could lend now. */
export function lendable(b: LeasedBucket, floor: number): number {
  return Math.max(0, Math.floor((b.tokens - floor) / MICRO));
}

/**
 * An isolate's report on units of the leases ending at `expiresMs`: `spent` units were spent
 * (they leave `out`), `returned` units were never spent and are handed back (they move to
 * `tokens`). Both are clamped to what is out for that time; a report for a lease that has
 * already ended finds nothing and changes nothing.
 * @returns the units credited back to `tokens`
 */
export function settle(b: LeasedBucket, expiresMs: number, spent: number, returned: number): number {
  const i = b.out.findIndex((e) => e[0] === expiresMs);
  if (i < 0) return 0;
  const e = b.out[i]!;
  const s = Math.min(Math.max(0, spent), e[1]);
  const r = Math.min(Math.max(0, returned), e[1] - s);
  e[1] -= s + r;
  b.tokens += r * MICRO;
  if (e[1] === 0) b.out.splice(i, 1);
  return r;
}

/** Forget the leases that ended at or before `nowMs`. @returns the units dropped */
export function dropExpired(b: LeasedBucket, nowMs: number): number {
  let n = 0;
  let k = 0;
  while (k < b.out.length && b.out[k]![0] <= nowMs) n += b.out[k++]![1];
  if (k > 0) b.out.splice(0, k);
  return n;
}

/** Unix ms the earliest lease ends, or Infinity. */
export function nextExpiry(b: LeasedBucket): number {
  return b.out.length > 0 ? b.out[0]![0] : Infinity;
}
