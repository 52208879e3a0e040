/**
 * The congestion curve (shared/limits/congestion.ts): nothing changes below `start`; above it
 * the free share falls, bits and prices rise, monotonically, to their maxima at full load;
 * prices are exact integers rounded up; the level rises fast and falls slowly.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkCongestionCurve,
  congestion,
  congestionData,
  DEFAULT_CONGESTION,
  freeCost,
  scaleAtomic,
  scaleSats,
  smoothLevel,
} from "../../../../shared/limits/congestion.ts";

describe("congestion", () => {
  it("changes nothing below start and reaches the maxima at full load", () => {
    expect(congestion(0.49, DEFAULT_CONGESTION)).toEqual({
      level: 0.49,
      freeShare: 1,
      extraBits: 0,
      priceFactor: 1,
      priceFactorPpm: 1_000_000,
    });
    expect(congestion(1, DEFAULT_CONGESTION)).toEqual({
      level: 1,
      freeShare: 0.1,
      extraBits: 4,
      priceFactor: 4,
      priceFactorPpm: 4_000_000,
    });
    // Halfway up the curve: half the free budget gone (0.55), 2 bits, twice the price.
    expect(congestion(0.75, DEFAULT_CONGESTION)).toEqual({
      level: 0.75,
      freeShare: 0.55,
      extraBits: 2,
      priceFactor: 2,
      priceFactorPpm: 2_000_000,
    });
    expect(congestion(7, DEFAULT_CONGESTION).level).toBe(1);
    expect(congestion(Number.NaN, DEFAULT_CONGESTION).freeShare).toBe(1);
  });

  it("is monotone in the load level", () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), (a, b) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const x = congestion(lo, DEFAULT_CONGESTION);
        const y = congestion(hi, DEFAULT_CONGESTION);
        expect(y.freeShare).toBeLessThanOrEqual(x.freeShare);
        expect(y.extraBits).toBeGreaterThanOrEqual(x.extraBits);
        expect(y.priceFactorPpm).toBeGreaterThanOrEqual(x.priceFactorPpm);
      }),
    );
  });
});

describe("prices and costs", () => {
  it("scales sats and atomic units exactly, rounding up", () => {
    expect(scaleSats(100, 2_000_000)).toBe(200);
    expect(scaleSats(3, 1_500_000)).toBe(5); // 4.5 → 5
    expect(scaleAtomic("10000", 1_189_207)).toBe("11893"); // 11892.07 → 11893
    expect(scaleAtomic("123456789012345678901234567890", 4_000_000)).toBe("493827156049382715604938271560");
    expect(() => scaleAtomic("1e3", 1_000_000)).toThrow(SyntaxError);
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 10n ** 30n }), fc.integer({ min: 1_000_000, max: 1_000_000_000 }), (amount, ppm) => {
        const scaled = BigInt(scaleAtomic(amount.toString(), ppm));
        // The smallest integer ≥ amount × ppm / 10^6.
        expect(scaled * 1_000_000n).toBeGreaterThanOrEqual(amount * BigInt(ppm));
        expect((scaled - 1n) * 1_000_000n).toBeLessThan(amount * BigInt(ppm));
      }),
    );
  });

  it("a free request costs ceil(cost / share) of the free bucket, never above its capacity, 0 for cost 0", () => {
    expect(freeCost(1, 1, 10)).toBe(1);
    expect(freeCost(1, 0.55, 10)).toBe(2);
    expect(freeCost(3, 0.1, 10)).toBe(10);
    expect(freeCost(0, 0.1, 10)).toBe(0);
    expect(freeCost(1, 1 / 3, 10)).toBe(3);
  });
});

describe("smoothLevel", () => {
  it("follows a rise with riseSeconds and a fall with fallSeconds", () => {
    expect(smoothLevel(0, 1, 2000, DEFAULT_CONGESTION)).toBeCloseTo(1 - Math.exp(-1), 12);
    expect(smoothLevel(1, 0, 15_000, DEFAULT_CONGESTION)).toBeCloseTo(Math.exp(-1), 12);
    expect(smoothLevel(0.3, 5, 0, DEFAULT_CONGESTION)).toBe(0.3);
  });
});

describe("checkCongestionCurve and congestionData", () => {
  it("names the bad field", () => {
    expect(() => checkCongestionCurve({ ...DEFAULT_CONGESTION, start: 1 })).toThrow(
      "allocation.congestion.start: 1 is not a level in [0, 1)",
    );
    expect(() => checkCongestionCurve({ ...DEFAULT_CONGESTION, maxExtraBits: 2.5 })).toThrow("allocation.congestion.maxExtraBits");
    expect(() => checkCongestionCurve({ ...DEFAULT_CONGESTION, minFreeShare: 0 })).toThrow("allocation.congestion.minFreeShare");
    expect(() => checkCongestionCurve(DEFAULT_CONGESTION)).not.toThrow();
  });

  it("says the level, what it changed and why", () => {
    expect(congestionData(congestion(0.9, DEFAULT_CONGESTION), "origin")).toEqual({
      level: 0.9,
      freeShare: 0.28,
      extraBits: 3,
      priceFactor: 3.031,
      why: "the origin is at 90 % of its ceiling: this request's class has no room now; paid and verified traffic is served first",
    });
  });
});
