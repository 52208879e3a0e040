/**
 * The token bucket's arithmetic (shared/limits/bucket.ts): refill is continuous, capped at the
 * capacity and never runs backwards; a take is admitted only when the bucket holds its cost;
 * `retryAfterSeconds` and `reset` are exact (the same take succeeds after that wait, not a
 * second earlier).
 */
import { describe, expect, it } from "vitest";
import { type BucketConfig, type BucketState, fullBucket, peek, refill, take } from "../../../../shared/limits/bucket.ts";

const T0 = 1_700_000_000_000;
const cfg: BucketConfig = { capacity: 10, refillPerSecond: 0.5 };

/** Deterministic pseudo-random numbers (LCG) so a failure can be replayed. */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("fullBucket", () => {
  it("starts a new caller with the whole capacity", () => {
    expect(fullBucket(cfg, T0)).toEqual({ tokens: 10, updatedMs: T0 });
  });
});

describe("refill", () => {
  it("adds refillPerSecond units per elapsed second", () => {
    expect(refill({ tokens: 3, updatedMs: T0 }, cfg, T0 + 4000)).toEqual({ tokens: 5, updatedMs: T0 + 4000 });
  });

  it("refills continuously, in fractions of a unit", () => {
    const s = refill({ tokens: 0, updatedMs: T0 }, { capacity: 5, refillPerSecond: 1 }, T0 + 250);
    expect(s.tokens).toBeCloseTo(0.25, 12);
    const t = refill({ tokens: 0, updatedMs: T0 }, cfg, T0 + 1);
    expect(t.tokens).toBeCloseTo(0.0005, 12);
  });

  it("never goes above the capacity", () => {
    expect(refill({ tokens: 9, updatedMs: T0 }, cfg, T0 + 60_000).tokens).toBe(10);
    expect(refill({ tokens: 0, updatedMs: T0 }, cfg, T0 + 365 * 86_400_000).tokens).toBe(10);
  });

  it("adds nothing for no elapsed time", () => {
    expect(refill({ tokens: 2.5, updatedMs: T0 }, cfg, T0)).toEqual({ tokens: 2.5, updatedMs: T0 });
  });

  it("adds nothing when the clock goes backwards, and does not move the state's time back", () => {
    const back = refill({ tokens: 2, updatedMs: T0 }, cfg, T0 - 10_000);
    expect(back.tokens).toBe(2);
    expect(back.updatedMs).toBe(T0);
    // Going forward again only credits time after the original timestamp (no double counting).
    expect(refill(back, cfg, T0 + 2000).tokens).toBe(3);
  });

  it("gives the same tokens whether refilled in one step or many", () => {
    const cfg3: BucketConfig = { capacity: 100, refillPerSecond: 1 };
    let s: BucketState = { tokens: 0, updatedMs: T0 };
    for (let i = 1; i <= 10; i++) s = refill(s, cfg3, T0 + i * 1000);
    expect(s.tokens).toBeCloseTo(refill({ tokens: 0, updatedMs: T0 }, cfg3, T0 + 10_000).tokens, 9);
  });
});

describe("take", () => {
  it("admits and deducts the cost when the bucket holds enough", () => {
    const { state, result } = take(fullBucket(cfg, T0), cfg, 3, T0);
    expect(result.success).toBe(true);
    expect(result.limit).toBe(10);
    expect(result.remaining).toBe(7);
    expect(result.retryAfterSeconds).toBe(0);
    expect(state).toEqual({ tokens: 7, updatedMs: T0 });
  });

  it("admits a take of exactly the tokens held, leaving zero", () => {
    const { state, result } = take({ tokens: 4, updatedMs: T0 }, cfg, 4, T0);
    expect(result.success).toBe(true);
    expect(result.remaining).toBe(0);
    expect(state.tokens).toBe(0);
  });

  it("refuses, takes nothing, and reports what the bucket holds when it is short", () => {
    const { state, result } = take({ tokens: 2, updatedMs: T0 }, cfg, 3, T0 + 1000);
    expect(result.success).toBe(false);
    expect(result.limit).toBe(10);
    // Refilled to 2.5 and nothing taken.
    expect(state.tokens).toBe(2.5);
    expect(result.remaining).toBe(2);
    expect(result.retryAfterSeconds).toBeGreaterThan(0);
  });

  it("refills before deciding", () => {
    const empty: BucketState = { tokens: 0, updatedMs: T0 };
    expect(take(empty, cfg, 1, T0 + 1999).result.success).toBe(false);
    expect(take(empty, cfg, 1, T0 + 2000).result.success).toBe(true);
  });

  it("drains a full bucket in exactly `capacity` unit takes at one instant", () => {
    let s = fullBucket(cfg, T0);
    for (let i = 0; i < 10; i++) {
      const r = take(s, cfg, 1, T0);
      expect(r.result.success).toBe(true);
      expect(r.result.remaining).toBe(9 - i);
      s = r.state;
    }
    expect(take(s, cfg, 1, T0).result.success).toBe(false);
  });

  it("reports remaining as whole units (rounded down)", () => {
    const { result } = take({ tokens: 0, updatedMs: T0 }, cfg, 0, T0 + 3900); // 1.95 units
    expect(result.remaining).toBe(1);
  });

  describe("cost 0", () => {
    it("is always admitted, even from an empty bucket, and changes nothing", () => {
      const empty: BucketState = { tokens: 0, updatedMs: T0 };
      const { state, result } = take(empty, cfg, 0, T0);
      expect(result.success).toBe(true);
      expect(result.retryAfterSeconds).toBe(0);
      expect(result.remaining).toBe(0);
      expect(state).toEqual(empty);
    });
  });

  describe("retryAfterSeconds", () => {
    it("is the wait after which the same take succeeds (worked example)", () => {
      // 0.5 units/s, 0 held, cost 3: 6 s.
      const empty: BucketState = { tokens: 0, updatedMs: T0 };
      const { result } = take(empty, cfg, 3, T0);
      expect(result.retryAfterSeconds).toBe(6);
      expect(take(empty, cfg, 3, T0 + 6000).result.success).toBe(true);
      expect(take(empty, cfg, 3, T0 + 5000).result.success).toBe(false);
    });

    it("rounds a fractional wait up to whole seconds", () => {
      // 1.2 units held, 0.5/s, cost 2: 0.8 missing = 1.6 s → 2 s.
      const s: BucketState = { tokens: 1.2, updatedMs: T0 };
      expect(take(s, cfg, 2, T0).result.retryAfterSeconds).toBe(2);
    });

    it("still holds when the clock reading is behind the stored state (clock went backwards)", () => {
      // State last written at T0 + 5 s (e.g. by a Worker whose clock runs ahead); this
      // request's clock says T0. Retrying after retryAfterSeconds by this same clock must succeed.
      const state: BucketState = { tokens: 0, updatedMs: T0 + 5000 };
      const { state: next, result } = take(state, cfg, 1, T0);
      expect(result.success).toBe(false);
      const n = result.retryAfterSeconds;
      expect(take(next, cfg, 1, T0 + n * 1000).result.success, `retryAfterSeconds=${n}`).toBe(true);
    });

    it("is exact: after that many seconds the take succeeds, one second earlier it does not (simulation)", () => {
      const configs: BucketConfig[] = [
        { capacity: 10, refillPerSecond: 0.5 },
        { capacity: 5, refillPerSecond: 0.1 },
        { capacity: 3, refillPerSecond: 1 / 3 },
        { capacity: 7, refillPerSecond: 0.3 },
        { capacity: 100, refillPerSecond: 7 },
        { capacity: 60, refillPerSecond: 10 },
        { capacity: 9, refillPerSecond: 2.5 },
        { capacity: 1, refillPerSecond: 0.01 },
      ];
      let refusals = 0;
      for (const [k, config] of configs.entries()) {
        const rand = lcg(1000 + k);
        let state = fullBucket(config, T0);
        let now = T0;
        for (let step = 0; step < 400; step++) {
          now += Math.floor(rand() * 3000);
          const cost = 1 + Math.floor(rand() * config.capacity);
          const { state: next, result } = take(state, config, cost, now);
          if (!result.success) {
            refusals++;
            const n = result.retryAfterSeconds;
            const ctx = `${JSON.stringify(config)} tokens=${next.tokens} cost=${cost} n=${n}`;
            expect(Number.isInteger(n), ctx).toBe(true);
            expect(n, ctx).toBeGreaterThanOrEqual(1);
            // Retrying from the state the limiter returned (what the Durable Object stores).
            expect(take(next, config, cost, now + n * 1000).result.success, ctx).toBe(true);
            expect(take(next, config, cost, now + (n - 1) * 1000).result.success, ctx).toBe(false);
          } else {
            expect(result.retryAfterSeconds).toBe(0);
          }
          state = next;
        }
      }
      expect(refusals).toBeGreaterThan(100);
    });
  });

  describe("reset", () => {
    it("is now when the bucket is full", () => {
      expect(peek(fullBucket(cfg, T0), cfg, T0).reset).toBe(T0);
    });

    it("is the instant the bucket is full again", () => {
      const { state, result } = take(fullBucket(cfg, T0), cfg, 3, T0);
      // 3 units at 0.5/s: 6 s.
      expect(result.reset).toBe(T0 + 6000);
      expect(refill(state, cfg, result.reset).tokens).toBe(10);
      expect(refill(state, cfg, result.reset - 1).tokens).toBeLessThan(10);
    });

    it("rounds up to whole milliseconds, never early (simulation)", () => {
      const configs: BucketConfig[] = [
        { capacity: 10, refillPerSecond: 0.3 },
        { capacity: 3, refillPerSecond: 1 / 3 },
        { capacity: 50, refillPerSecond: 7 },
      ];
      for (const [k, config] of configs.entries()) {
        const rand = lcg(77 + k);
        let state = fullBucket(config, T0);
        let now = T0;
        for (let step = 0; step < 200; step++) {
          now += Math.floor(rand() * 2000);
          const { state: next, result } = take(state, config, 1 + Math.floor(rand() * 3), now);
          expect(result.reset).toBeGreaterThanOrEqual(now);
          expect(Number.isInteger(result.reset)).toBe(true);
          expect(refill(next, config, result.reset).tokens).toBe(config.capacity);
          state = next;
        }
      }
    });
  });
});

describe("peek", () => {
  it("reports the refilled state without taking anything", () => {
    const s: BucketState = { tokens: 1, updatedMs: T0 };
    const r = peek(s, cfg, T0 + 4000);
    expect(r.success).toBe(true);
    expect(r.remaining).toBe(3);
    expect(r.limit).toBe(10);
    expect(r.retryAfterSeconds).toBe(0);
    // Peeking twice gives the same answer (nothing was consumed).
    expect(peek(s, cfg, T0 + 4000)).toEqual(r);
  });
});
