/**
 * Admission leases (docs/durable-object.md, "Leases"): a Worker isolate that sees a caller
 * often holds a few of the caller's units — from its free token bucket and from its safety
 * ceiling — taken out of the caller's Durable Object in one step, and admits the caller's
 * in-budget requests against them with no Durable Object call until they run out or expire.
 *
 * Invariants (checked by test/unit/shared/limits/lease.test.ts over random interleavings of
 * isolates):
 * - the object grants a lease only from what its buckets hold (`grantLease` takes the units
 *   out of them, as admitted requests would), so everything admitted anywhere — by the
 *   object and by every lease — never exceeds what the buckets gave out: leases only make a
 *   caller admit less, never more;
 * - an isolate admits from a lease only before the lease's expiry by its own clock; units of
 *   an expired lease are handed back at the next call to the object (and capped at the
 *   bucket's capacity there), so a lease that lapses under-serves, never over-serves;
 * - an isolate that dies loses its unexpired units (the caller is under-served by at most
 *   one lease), and the object's state holds no per-lease record, so eviction or restart of
 *   the object loses nothing;
 * - a lease never holds more than `MAX_LEASE_SHARE` (¼) of either bucket's capacity — asked
 *   (`want`) and granted (`grantLease`) — and an isolate has at most one lease request in
 *   flight per caller, so the units one isolate holds away from the object (stranded, should
 *   the caller's next requests arrive elsewhere) are at most a quarter of its buckets;
 * - units a concurrent answer brought are spent by a request the object refused for want of
 *   them (over budget, or over the ceiling): they came out of the same buckets.
 * Lease size follows the caller's rate in the isolate: `LEASE_MS` (10 s) of it, renewed in
 * the background when three quarters are spent or three quarters of its life are gone, so an
 * agent at 2 requests/s makes about one object call per 15 requests; an agent back from a
 * pause of up to `RECALL_MS` asks with its first call; a caller never seen at
 * `MIN_RATE_PER_SECOND` gets none and is decided by the object, exactly as without leases.
 */
import { type BucketConfig, type BucketState, refill, take } from "./bucket.ts";

/** Milliseconds a lease may be spent after it is granted (and the time of the caller's rate a lease is sized to). */
export const LEASE_MS = 10_000;
/** Slowest rate (requests per second, in this isolate) for which a caller gets a lease. */
export const MIN_RATE_PER_SECOND = 1;
/** A lease is renewed in the background when it holds less than this share of what it held after its last grant… */
export const RENEW_AT = 0.25;
/** …or when it is within this many milliseconds of its expiry (the last quarter of its life). */
export const RENEW_BEFORE_MS = LEASE_MS / 4;
/** Requests within the current 1 s window after which a caller's rate is estimated at once… */
export const QUICK_COUNT = 3;
/** …when they span at least this many milliseconds. */
export const QUICK_MIN_MS = 50;
/**
 * Milliseconds an isolate remembers a caller's last measured rate (≥ `MIN_RATE_PER_SECOND`)
 * after asking a lease with it: an agent that pauses (a model thinking) and comes back asks
 * for its lease with its first call, not after three requests have measured its rate again.
 */
export const RECALL_MS = 60_000;
/**
 * Most of a bucket's capacity one isolate's lease holds (and one grant gives): a quarter, so a
 * caller whose requests land on a few isolates at once never has its whole budget stranded in
 * their leases while it asks another isolate (two leases of half the bucket emptied it).
 */
export const MAX_LEASE_SHARE = 0.25;
/** Most callers one isolate holds leases for (the least recently used is dropped first). */
export const MAX_LEASED_CALLERS = 4096;

/** What a lease request asks of the object (units of the free bucket and of the ceiling). */
export interface LeaseWant {
  /** Units of the free bucket wanted (≥ 0). */
  units: number;
  /** Requests of the ceiling wanted (≥ 0). */
  ceilingUnits: number;
  /** Units of an expired lease handed back (never spent). */
  returned: { units: number; ceilingUnits: number };
}

/** What the object granted. */
export interface LeaseGrant {
  units: number;
  ceilingUnits: number;
  /** Unix ms after which the isolate must not spend it. */
  expiresMs: number;
  /** Units left in the free bucket after the grant (for `RateLimit` fields). */
  bucketLeft: number;
  /** Requests left in the ceiling after the grant. */
  ceilingLeft: number;
  /** The caller is blocked (an operator's block): the isolate drops what its lease holds, at once. */
  revoked?: boolean;
}

/** Most units of a bucket of `capacity` one lease holds: `MAX_LEASE_SHARE` of it, whole units. */
export function leaseCap(capacity: number): number {
  return Math.floor(capacity * MAX_LEASE_SHARE);
}

/**
 * The object's side: hand back `want.returned` (capped at capacity), then take the lease out
 * of the buckets — whole units only, never more than they hold, nor more than
 * `MAX_LEASE_SHARE` of their capacity. A grant of 0 units still moves the expiry (a renewal
 * that only keeps the isolate's lease alive).
 * @param nowMs unix ms (the Worker's clock, as every bucket operation of the object uses)
 * @returns the new bucket states and the grant (0 units when the buckets are empty)
 */
export function grantLease(
  free: BucketState,
  ceiling: BucketState,
  config: { bucket: BucketConfig; ceiling: BucketConfig },
  want: LeaseWant,
  nowMs: number,
): { free: BucketState; ceiling: BucketState; grant: LeaseGrant } {
  const back = (s: BucketState, c: BucketConfig, n: number): BucketState => {
    const r = refill(s, c, nowMs);
    return { tokens: Math.min(c.capacity, r.tokens + Math.max(0, n)), updatedMs: r.updatedMs };
  };
  let f = back(free, config.bucket, want.returned.units);
  let c = back(ceiling, config.ceiling, want.returned.ceilingUnits);
  // Invariant: a grant is whole units the bucket holds now, taken out of it, at most a quarter of its capacity.
  const units = Math.max(0, Math.min(Math.floor(want.units), Math.floor(f.tokens), leaseCap(config.bucket.capacity)));
  const ceilingUnits = Math.max(0, Math.min(Math.floor(want.ceilingUnits), Math.floor(c.tokens), leaseCap(config.ceiling.capacity)));
  if (units > 0) f = take(f, config.bucket, units, nowMs).state;
  if (ceilingUnits > 0) c = take(c, config.ceiling, ceilingUnits, nowMs).state;
  return { free: f, ceiling: c, grant: { units, ceilingUnits, expiresMs: nowMs + LEASE_MS, bucketLeft: f.tokens, ceilingLeft: c.tokens } };
}

/** One caller's lease in one isolate. */
interface Held {
  units: number;
  ceilingUnits: number;
  expiresMs: number;
  /** Units (and ceiling units) the lease held right after its last grant (the renewal threshold's base); 0: never granted. */
  granted: number;
  grantedCeiling: number;
  /** What the object had left at the last grant. */
  bucketLeft: number;
  ceilingLeft: number;
  /** Units of expired leases, to hand back at the next call to the object. */
  stale: { units: number; ceilingUnits: number };
  /** A call carrying this isolate's lease request (`want`) is in flight: no second one is asked meanwhile. */
  renewing: boolean;
  /** The last rate measured at `MIN_RATE_PER_SECOND` or more when a lease was asked (requests/s), and until when it is remembered (unix ms). */
  recallRate: number;
  recallUntilMs: number;
  /** Rate estimate: requests counted in the current and previous 1 s windows. */
  windowStartMs: number;
  count: number;
  previous: number;
}

/** What admitting from a lease reports (for `RateLimit` fields). */
export interface LeaseAdmission {
  /** Units this isolate's lease still holds plus what the object had left at the grant. */
  bucketRemaining: number;
  ceilingRemaining: number;
}

/**
 * The isolate's side: the leases it holds, per caller. Not shared between isolates; every
 * method is synchronous (a Worker isolate runs one piece of JavaScript at a time).
 */
export class LeaseTable {
  private readonly held = new Map<string, Held>();

  /** The entry of `caller`, created (and made most recent) on use. */
  private entry(caller: string, nowMs: number): Held {
    let h = this.held.get(caller);
    if (h) {
      this.held.delete(caller);
    } else {
      if (this.held.size >= MAX_LEASED_CALLERS) this.held.delete(this.held.keys().next().value!);
      h = {
        units: 0,
        ceilingUnits: 0,
        expiresMs: 0,
        granted: 0,
        grantedCeiling: 0,
        bucketLeft: 0,
        ceilingLeft: 0,
        stale: { units: 0, ceilingUnits: 0 },
        renewing: false,
        recallRate: 0,
        recallUntilMs: 0,
        windowStartMs: nowMs,
        count: 0,
        previous: 0,
      };
    }
    this.held.set(caller, h);
    return h;
  }

  /** Move an expired lease's units to `stale` (they are never spent after expiry). */
  private expire(h: Held, nowMs: number): void {
    if (nowMs >= h.expiresMs && (h.units > 0 || h.ceilingUnits > 0)) {
      h.stale.units += h.units;
      h.stale.ceilingUnits += h.ceilingUnits;
      h.units = 0;
      h.ceilingUnits = 0;
    }
  }

  /**
   * Count a request of `caller` (the rate estimate) and admit it from the lease when the lease
   * is unexpired and holds `cost` units and one ceiling unit.
   * @returns what remains, or null when the request must go to the object
   */
  admit(caller: string, cost: number, nowMs: number): LeaseAdmission | null {
    const h = this.entry(caller, nowMs);
    if (nowMs - h.windowStartMs >= 1000) {
      h.previous = nowMs - h.windowStartMs >= 2000 ? 0 : h.count;
      h.count = 0;
      h.windowStartMs = nowMs;
    }
    h.count++;
    this.expire(h, nowMs);
    // Invariant: a lease is spent only before its expiry, and only what it holds.
    if (nowMs >= h.expiresMs || h.units < cost || h.ceilingUnits < 1) return null;
    h.units -= cost;
    h.ceilingUnits -= 1;
    return { bucketRemaining: h.units + h.bucketLeft, ceilingRemaining: h.ceilingUnits + h.ceilingLeft };
  }

  /**
   * Admit from the lease without counting a request (the request was counted when it was
   * first seen): for a request the object refused over budget while a concurrent answer
   * brought this isolate a lease taken from the same bucket.
   * @returns what remains, or null when the lease cannot hold it
   */
  spend(caller: string, cost: number, nowMs: number): LeaseAdmission | null {
    const h = this.held.get(caller);
    if (!h) return null;
    this.expire(h, nowMs);
    if (nowMs >= h.expiresMs || h.units < cost || h.ceilingUnits < 1) return null;
    h.units -= cost;
    h.ceilingUnits -= 1;
    return { bucketRemaining: h.units + h.bucketLeft, ceilingRemaining: h.ceilingUnits + h.ceilingLeft };
  }

  /** Give back units admitted from the lease whose request the origin never answered. */
  refund(caller: string, cost: number, nowMs: number): void {
    const h = this.held.get(caller);
    if (h && nowMs < h.expiresMs) h.units += cost;
    else if (h) h.stale.units += cost;
  }

  /**
   * Requests per second of `caller` in this isolate: the last complete 1 s window, or the
   * current one once it is 250 ms old or has seen `QUICK_COUNT` requests over at least
   * `QUICK_MIN_MS` (a caller that comes back busy gets a lease from its third request, not
   * after a quarter second; a burst of concurrent requests is not a rate).
   */
  rate(caller: string, nowMs: number): number {
    const h = this.held.get(caller);
    if (!h) return 0;
    const elapsed = nowMs - h.windowStartMs;
    // Requests arriving together (a burst within QUICK_MIN_MS) say nothing of a rate yet.
    const current = elapsed >= 250 || (h.count >= QUICK_COUNT && elapsed >= QUICK_MIN_MS) ? (h.count * 1000) / Math.max(elapsed, 250) : 0;
    return Math.max(h.previous, current);
  }

  /**
   * What to ask the object for with `caller`'s next call: a lease sized to `LEASE_MS` of its
   * rate (none below `MIN_RATE_PER_SECOND`; a rate measured within `RECALL_MS` stands in while
   * a caller back from a pause has not been measured again), at most `MAX_LEASE_SHARE` of each capacity, less
   * what the lease holds; and the stale units to hand back (taken out here: the caller passes
   * them to the object exactly once). While a call carrying an earlier want is in flight
   * (`renewing`, until `renewed`), nothing more is asked: concurrent requests of a burst do
   * not each take a lease. A want that asks units marks the call in flight: call `renewed`
   * once it settles, granted or not.
   * @param capacity the free bucket's capacity; `ceilingCapacity` the ceiling's
   * @param refresh ask even for 0 units when the lease is unexpired (a renewal that keeps it alive)
   * @returns the want, or null when no lease is wanted and nothing is to be handed back
   */
  want(caller: string, nowMs: number, capacity: number, ceilingCapacity: number, refresh = false): LeaseWant | null {
    const h = this.held.get(caller);
    if (!h) return null;
    this.expire(h, nowMs);
    const measured = this.rate(caller, nowMs);
    if (measured >= MIN_RATE_PER_SECOND) {
      h.recallRate = measured;
      h.recallUntilMs = nowMs + RECALL_MS;
    }
    // A caller back from a pause (its rate not measured again yet) asks with the rate it had.
    const rate = measured >= MIN_RATE_PER_SECOND ? measured : nowMs < h.recallUntilMs ? h.recallRate : 0;
    const target = rate >= MIN_RATE_PER_SECOND && !h.renewing ? Math.ceil((rate * LEASE_MS) / 1000) : 0;
    const live = nowMs < h.expiresMs;
    const units = Math.max(0, Math.min(target, leaseCap(capacity)) - (live ? h.units : 0));
    const ceilingUnits = Math.max(0, Math.min(target, leaseCap(ceilingCapacity)) - (live ? h.ceilingUnits : 0));
    const returned = h.stale;
    const keepAlive = refresh && live && !h.renewing;
    if (units === 0 && ceilingUnits === 0 && returned.units === 0 && returned.ceilingUnits === 0 && !keepAlive) return null;
    h.stale = { units: 0, ceilingUnits: 0 };
    if (units > 0 || ceilingUnits > 0 || keepAlive) h.renewing = true;
    return { units, ceilingUnits, returned };
  }

  /**
   * Add a grant to `caller`'s lease (the expiry moves to the grant's); the renewal threshold is
   * what it then holds. A `revoked` grant (the caller is blocked) empties the lease: its units
   * are dropped, never spent nor handed back.
   */
  install(caller: string, grant: LeaseGrant, nowMs: number): void {
    const h = this.entry(caller, nowMs);
    this.expire(h, nowMs);
    if (grant.revoked) {
      h.units = 0;
      h.ceilingUnits = 0;
    }
    h.units += grant.units;
    h.ceilingUnits += grant.ceilingUnits;
    h.expiresMs = grant.expiresMs;
    h.granted = Math.max(h.units, 1);
    h.grantedCeiling = Math.max(h.ceilingUnits, 1);
    h.bucketLeft = grant.bucketLeft;
    h.ceilingLeft = grant.ceilingLeft;
  }

  /**
   * Whether to renew `caller`'s lease now, in the background: it is being used, no lease
   * request is in flight, and it holds less than `RENEW_AT` of what it held after its last
   * grant or is within `RENEW_BEFORE_MS` of its expiry. Ask with `want(…, refresh = true)`
   * (which marks the call in flight) and call `renewed` when it settles.
   */
  startRenewal(caller: string, nowMs: number): boolean {
    const h = this.held.get(caller);
    if (!h || h.renewing || h.granted === 0) return false;
    const low = h.units < h.granted * RENEW_AT || h.ceilingUnits < h.grantedCeiling * RENEW_AT;
    const old = nowMs >= h.expiresMs - RENEW_BEFORE_MS;
    return low || old;
  }

  /** A call that carried `caller`'s want settled (granted, refused or failed): another may be asked. */
  renewed(caller: string): void {
    const h = this.held.get(caller);
    if (h) h.renewing = false;
  }

  /**
   * Units of `caller`'s lease a request it cannot be admitted from should not strand: when a
   * request goes to the object, the unexpired lease stays; nothing to do. Exposed for tests.
   */
  holding(
    caller: string,
  ): { units: number; ceilingUnits: number; expiresMs: number; stale: { units: number; ceilingUnits: number } } | undefined {
    const h = this.held.get(caller);
    return h ? { units: h.units, ceilingUnits: h.ceilingUnits, expiresMs: h.expiresMs, stale: { ...h.stale } } : undefined;
  }
}
