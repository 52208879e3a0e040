/**
 * `RateLimit-Policy` and `RateLimit` fields, draft-ietf-httpapi-ratelimit-headers-10
 * (Structured Field lists, RFC 9651): `RateLimit-Policy: "free";q=10;w=20` (q quota
 * units, w window in seconds) and `RateLimit: "free";r=3;t=14` (r remaining units,
 * t seconds until the quota is fully available again).
 *
 * For a token bucket the window is the time an empty bucket takes to fill:
 * `ceil(capacity / refillPerSecond)`.
 */
import type { BucketConfig, LimitResult } from "./bucket.ts";

/** A named bucket and, optionally, its current answer. */
export interface NamedLimit {
  name: string;
  config: BucketConfig;
  result?: LimitResult;
}

/** `RateLimit-Policy` field value for the given buckets. */
export function rateLimitPolicy(limits: NamedLimit[]): string {
  return limits.map((l) => `"${l.name}";q=${l.config.capacity};w=${Math.ceil(l.config.capacity / l.config.refillPerSecond)}`).join(", ");
}

/**
 * `RateLimit` field value for the buckets that have a result.
 * @param nowMs unix milliseconds, to turn `reset` into delta seconds
 */
export function rateLimit(limits: NamedLimit[], nowMs: number): string {
  return limits
    .filter((l) => l.result)
    .map((l) => `"${l.name}";r=${Math.max(0, l.result!.remaining)};t=${Math.max(0, Math.ceil((l.result!.reset - nowMs) / 1000))}`)
    .join(", ");
}
