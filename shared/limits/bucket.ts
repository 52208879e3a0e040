/**
 * Token bucket math (pure; the Durable Object stores the state).
 *
 * A bucket holds at most `capacity` units and gains `refillPerSecond` units per second,
 * continuously. A request of cost `c` is admitted when the bucket holds at least `c`.
 * Pros: allows bursts up to the capacity, smooth long-run rate, O(1) state (two numbers),
 * exact refill without timers. Cons: the burst is the whole capacity at once, and a
 * caller idle for `capacity / refillPerSecond` seconds gets the full burst back.
 */

/** Capacity (units) and refill rate (units per second). */
export interface BucketConfig {
  readonly capacity: number;
  readonly refillPerSecond: number;
}

/** Stored state: units held (fractional) as of `updatedMs` (unix milliseconds). */
export interface BucketState {
  readonly tokens: number;
  readonly updatedMs: number;
}

/** The answer of a limiter, in the shape of upstash/ratelimit-js. */
export interface LimitResult {
  /** Whether the request was admitted (and its cost taken). */
  success: boolean;
  /** The capacity. */
  limit: number;
  /** Whole units left after this request. */
  remaining: number;
  /** Unix milliseconds at which the bucket will be full again. */
  reset: number;
  /** Whole seconds until a request of this cost would be admitted; 0 when admitted. */
  retryAfterSeconds: number;
}

/** A full bucket as of `nowMs`: the state of a caller never seen before. */
export function fullBucket(config: BucketConfig, nowMs: number): BucketState {
  return { tokens: config.capacity, updatedMs: nowMs };
}

/**
 * The state after refilling up to `nowMs`. A clock that went backwards adds nothing.
 * @param nowMs unix milliseconds
 */
export function refill(state: BucketState, config: BucketConfig, nowMs: number): BucketState {
  const elapsedMs = Math.max(0, nowMs - state.updatedMs);
  const tokens = Math.min(config.capacity, state.tokens + (elapsedMs / 1000) * config.refillPerSecond);
  return { tokens, updatedMs: Math.max(nowMs, state.updatedMs) };
}

/**
 * Refill, then take `cost` units if the bucket holds them.
 * @param cost units, an integer ≥ 0 (0 is always admitted and changes nothing)
 * @param nowMs unix milliseconds
 * @returns the new state and the limiter's answer
 */
export function take(state: BucketState, config: BucketConfig, cost: number, nowMs: number): { state: BucketState; result: LimitResult } {
  const current = refill(state, config, nowMs);
  const success = current.tokens >= cost;
  const next = success ? { tokens: current.tokens - cost, updatedMs: current.updatedMs } : current;
  const missing = success ? 0 : cost - current.tokens;
  // Times are counted from the state's own clock, which may be ahead of `nowMs`.
  const aheadMs = current.updatedMs - nowMs;
  return {
    state: next,
    result: {
      success,
      limit: config.capacity,
      remaining: Math.floor(next.tokens),
      reset: current.updatedMs + Math.ceil(((config.capacity - next.tokens) / config.refillPerSecond) * 1000),
      retryAfterSeconds: Math.ceil(aheadMs / 1000 + missing / config.refillPerSecond),
    },
  };
}

/** The limiter's answer for the current state without taking anything (for status and headers). */
export function peek(state: BucketState, config: BucketConfig, nowMs: number): LimitResult {
  return take(state, config, 0, nowMs).result;
}
