/**
 * Exact fixed point (shared/limits/micro-units.ts): products and splits are exact integers,
 * checked against BigInt arithmetic; parts always add up to the whole.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { apportion, MICRO, microBucket, mulPpm, toPpm } from "../../../../shared/limits/micro-units.ts";

describe("mulPpm", () => {
  it("is floor(x × ppm / 10^6) exactly, up to 2^53", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 1_000_000 }), (x, ppm) => {
        expect(BigInt(mulPpm(x, ppm))).toBe((BigInt(x) * BigInt(ppm)) / 1_000_000n);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("apportion", () => {
  it("gives integer parts ≥ 0 that add up to the total, each within 1 of its exact share", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e15 }),
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (total, weights) => {
          const parts = apportion(total, weights);
          expect(parts.reduce((a, b) => a + b, 0)).toBe(total);
          const sum = weights.reduce((a, b) => a + b, 0);
          parts.forEach((p, i) => {
            expect(Number.isInteger(p) && p >= 0).toBe(true);
            const exact = sum > 0 ? (total * weights[i]!) / sum : total / weights.length;
            // Floating error of the exact share itself is ~1e-16 × total.
            expect(Math.abs(p - exact)).toBeLessThanOrEqual(1 + total * 1e-12);
          });
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("splits evenly when every weight is 0, remainders to the lower indexes", () => {
    expect(apportion(10, [0, 0, 0])).toEqual([4, 3, 3]);
  });

  it("refuses no weights or a negative one", () => {
    expect(() => apportion(1, [])).toThrow(RangeError);
    expect(() => apportion(1, [1, -1])).toThrow("weight -1 is not a finite number ≥ 0");
  });
});

describe("microBucket", () => {
  it("holds capacity in µunits and the rate in µunits per ms (thousandths of a unit per second)", () => {
    expect(microBucket({ capacity: 50_000, refillPerSecond: 50_000 })).toEqual({ cap: 50_000 * MICRO, rate: 50_000_000 });
    expect(microBucket({ capacity: 1, refillPerSecond: 0.001 })).toEqual({ cap: MICRO, rate: 1 });
  });

  it("refuses what it cannot hold exactly", () => {
    expect(() => microBucket({ capacity: 1.5, refillPerSecond: 1 })).toThrow(
      "capacity 1.5: expected an integer in [1, 1000000000] (units)",
    );
    expect(() => microBucket({ capacity: 2e9, refillPerSecond: 1 })).toThrow(RangeError);
    expect(() => microBucket({ capacity: 10, refillPerSecond: 0.0001 })).toThrow("refillPerSecond 0.0001");
  });

  it("toPpm refuses a fraction outside [0, 1]", () => {
    expect(toPpm(0.05)).toBe(50_000);
    expect(() => toPpm(1.2)).toThrow(RangeError);
  });
});
