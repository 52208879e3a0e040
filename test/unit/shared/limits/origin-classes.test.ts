/**
 * Admission classes on one shard (shared/limits/origin-classes.ts, leased-bucket.ts):
 * - whatever the interleaving of lends, spends, reports, hand-backs and lease ends, the units
 *   spent in every window [t, t + T] are ≤ cap + rate × T, and nothing is lent that the
 *   buckets do not hold;
 * - under saturation the lowest class is refused first: a class never takes the pool below its
 *   floor, a higher class within its reach is always served, and every class gets at least its
 *   guarantee.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { alive, settle } from "../../../../shared/limits/leased-bucket.ts";
import { MICRO, type MicroBucket } from "../../../../shared/limits/micro-units.ts";
import {
  admissionClass,
  advance,
  aliveTotal,
  available,
  type ClassPolicy,
  checkClassPolicy,
  classLimits,
  DEFAULT_CLASS_POLICY,
  fullOrigin,
  lendClass,
  POOL,
} from "../../../../shared/limits/origin-classes.ts";
import { worstWindowExcess } from "../../../helpers/window-excess.ts";

const T0 = 1_800_000_000_000;

const policyArb: fc.Arbitrary<ClassPolicy> = fc
  .tuple(
    fc.array(fc.integer({ min: 0, max: 250 }), { minLength: 4, maxLength: 4 }),
    fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 4, maxLength: 4 }),
  )
  .map(([g, r]) => {
    const reserves = [...r].sort((a, b) => a - b);
    reserves[0] = 0;
    const c = (i: number) => ({ guarantee: g[i]! / 1000, reserve: reserves[i]! / 1000 });
    return { paid: c(0), verified: c(1), worked: c(2), free: c(3) };
  });

type Op =
  | { kind: "lend"; cls: number; units: number; gapMs: number; all: boolean }
  | { kind: "spend"; lease: number; units: number; gapMs: number }
  | { kind: "report"; lease: number; handBack: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("lend" as const),
      cls: fc.nat(3),
      units: fc.integer({ min: 1, max: 40 }),
      gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })),
      all: fc.boolean(),
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("spend" as const),
      lease: fc.nat(30),
      units: fc.integer({ min: 1, max: 10 }),
      gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("report" as const), lease: fc.nat(30), handBack: fc.boolean() }) },
);

describe("one shard: the ceiling holds in every window", () => {
  it("over random lends, spends, reports, hand-backs and lease ends", () => {
    fc.assert(
      fc.property(
        policyArb,
        fc.record({ capUnits: fc.integer({ min: 1, max: 300 }), rate: fc.integer({ min: 1000, max: 300_000 }) }), // 1–300 units/s
        fc.integer({ min: 100, max: 3000 }),
        fc.array(opArb, { minLength: 20, maxLength: 300, size: "max" }),
        (policy, c, ttlMs, ops) => {
          const share = { cap: c.capUnits * MICRO, rate: c.rate };
          const limits = classLimits(share, policy);
          expect(limits.buckets.reduce((a, b) => a + b.cap, 0)).toBe(share.cap);
          expect(limits.buckets.reduce((a, b) => a + b.rate, 0)).toBe(share.rate);
          const state = fullOrigin(limits, T0);
          let now = T0;
          const leases: Array<{ bucket: number; expiresMs: number; units: number; spent: number }> = [];
          const spends: Array<[number, number]> = [];
          for (const op of ops) {
            if (op.kind !== "report") now += op.gapMs;
            advance(state, limits, now);
            if (op.kind === "lend") {
              const before = state.buckets.map((b) => b.tokens);
              const floor = limits.floors[op.cls]!;
              const got = lendClass(state, limits, op.cls, op.units, now + ttlMs, op.all);
              // Invariant: whole units the buckets held, taken out of them; the pool kept the class's floor.
              expect(got.guaranteed * MICRO).toBeLessThanOrEqual(before[op.cls]!);
              expect(state.buckets[op.cls]!.tokens).toBe(before[op.cls]! - got.guaranteed * MICRO);
              expect(state.buckets[POOL]!.tokens).toBe(before[POOL]! - got.pooled * MICRO);
              if (got.pooled > 0) expect(state.buckets[POOL]!.tokens).toBeGreaterThanOrEqual(floor);
              if (op.all) expect([0, op.units]).toContain(got.guaranteed + got.pooled);
              if (got.guaranteed > 0) leases.push({ bucket: op.cls, expiresMs: now + ttlMs, units: got.guaranteed, spent: 0 });
              if (got.pooled > 0) leases.push({ bucket: POOL, expiresMs: now + ttlMs, units: got.pooled, spent: 0 });
            } else if (op.kind === "spend") {
              const l = leases[op.lease % Math.max(1, leases.length)];
              // An isolate spends only before the lease ends.
              if (l && now < l.expiresMs && l.units > 0) {
                const n = Math.min(l.units, op.units);
                l.units -= n;
                l.spent += n;
                spends.push([now, n]);
              }
            } else {
              const l = leases[op.lease % Math.max(1, leases.length)];
              if (l) {
                const back = op.handBack && now < l.expiresMs ? l.units : 0;
                settle(state.buckets[l.bucket]!, l.expiresMs, l.spent, back);
                l.spent = 0;
                l.units -= back;
              }
            }
            // Invariant: the alive mass never exceeds the capacity, of the shard and of each bucket.
            expect(aliveTotal(state)).toBeLessThanOrEqual(share.cap);
            state.buckets.forEach((b, i) => {
              expect(alive(b)).toBeLessThanOrEqual(limits.buckets[i]!.cap);
            });
          }
          expect(worstWindowExcess(spends, share)).toBeLessThanOrEqual(0);
          // Units of ended leases come back: once every lease has ended and the buckets refilled, the shard is full.
          advance(state, limits, now + ttlMs + limits.fullMs + 1);
          expect(state.buckets.every((b) => b.out.length === 0)).toBe(true);
          expect(state.buckets.map((b) => b.tokens)).toEqual(limits.buckets.map((b) => b.cap));
        },
      ),
      { numRuns: 300 },
    );
  });
});

/**
 * Saturation: every ms each class asks for its demand (1-unit takes, in a random order each
 * ms), spends at once and reports it. Returns the units each class got.
 */
function saturate(policy: ClassPolicy, share: MicroBucket, demandPerMs: number[], orders: number[][], ms: number) {
  const limits = classLimits(share, policy);
  const state = fullOrigin(limits, T0);
  const got = [0, 0, 0, 0];
  const refused = [0, 0, 0, 0];
  const owed = [0, 0, 0, 0];
  for (let t = 1; t <= ms; t++) {
    const now = T0 + t;
    advance(state, limits, now);
    const order = orders[t % orders.length]!;
    for (let k = 0; k < 4; k++) owed[k]! += demandPerMs[k]!;
    // Interleave 1-unit asks of the classes in this ms's order until each asked its demand.
    let asking = true;
    while (asking) {
      asking = false;
      for (const k of order) {
        if (owed[k]! < 1) continue;
        asking = true;
        owed[k]! -= 1;
        const g = lendClass(state, limits, k, 1, now + 1000, true);
        const n = g.guaranteed + g.pooled;
        if (n === 0) refused[k]!++;
        got[k]! += n;
        if (g.guaranteed) settle(state.buckets[k]!, now + 1000, 1, 0);
        if (g.pooled) settle(state.buckets[POOL]!, now + 1000, 1, 0);
      }
    }
  }
  return { got, refused, state, limits };
}

describe("one shard: priority under saturation", () => {
  const share = { cap: 200 * MICRO, rate: 100_000 }; // 200 units, 100 units/s
  const orderArb = fc.array(fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 20 });

  it("paid within its guarantee and the pool is never refused, whatever the lower classes ask", () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 0.95, noNaN: true }), orderArb, (f, orders) => {
        const p = DEFAULT_CLASS_POLICY;
        // units per ms paid can always be served: its guarantee plus the pool's refill.
        const reach =
          ((p.paid.guarantee + (1 - p.paid.guarantee - p.verified.guarantee - p.worked.guarantee - p.free.guarantee)) * share.rate) / MICRO;
        const r = saturate(p, share, [f * reach, 1, 1, 1], orders, 20_000);
        expect(r.refused[0]).toBe(0);
      }),
      { numRuns: 40 },
    );
  });

  it("the lowest class is refused first: with every class over-asking, free gets its guarantee and no more than its share of the pool above its floor", () => {
    fc.assert(
      fc.property(orderArb, (orders) => {
        const p = DEFAULT_CLASS_POLICY;
        const seconds = 20;
        const r = saturate(p, share, [1, 1, 1, 1], orders, seconds * 1000);
        const R = (share.rate * 1000) / MICRO; // units per second
        // Paid takes the pool from the top, verified next: free and worked live on their guarantees.
        expect(r.got[3]).toBeGreaterThanOrEqual(Math.floor(p.free.guarantee * R * seconds) - 1);
        expect(r.got[3]).toBeLessThanOrEqual(Math.ceil(p.free.guarantee * R * seconds + 200 * (1 - 0.3)));
        expect(r.got[2]).toBeGreaterThanOrEqual(Math.floor(p.worked.guarantee * R * seconds) - 1);
        expect(r.got[0]).toBeGreaterThan(r.got[1]!);
        expect(r.got[1]).toBeGreaterThan(r.got[2]!);
        // Work-conserving: everything the ceiling allowed was given out.
        expect(r.got.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(Math.floor(R * seconds));
      }),
      { numRuns: 20 },
    );
  });

  it("a class alone gets the whole ceiling (its guarantee, the pool, and the overflow of the idle guarantees)", () => {
    const seconds = 20;
    const r = saturate(DEFAULT_CLASS_POLICY, share, [0, 0, 0, 1], [[0, 1, 2, 3]], seconds * 1000);
    // free leaves 30 % of the pool in it, which it never reaches: what refills it overflows to free.
    expect(r.got[3]).toBeGreaterThanOrEqual(100 * seconds);
    expect(r.got[3]).toBeLessThanOrEqual(100 * seconds + 200);
  });

  it("available() says exactly what an all-or-nothing lend can get", () => {
    const limits = classLimits(share, DEFAULT_CLASS_POLICY);
    const state = fullOrigin(limits, T0);
    for (let k = 0; k < 4; k++) {
      const a = available(state, limits, k);
      expect(lendClass(structuredClone(state), limits, k, a + 1, T0 + 1, true)).toEqual({ guaranteed: 0, pooled: 0 });
      const g = lendClass(structuredClone(state), limits, k, a, T0 + 1, true);
      expect(g.guaranteed + g.pooled).toBe(a);
    }
  });
});

describe("checkClassPolicy", () => {
  it("refuses guarantees above 1 and reserves that fall with priority", () => {
    expect(() => checkClassPolicy({ ...DEFAULT_CLASS_POLICY, paid: { guarantee: 0.9, reserve: 0 } })).toThrow(
      "the guarantees add up to 1.1, more than 1",
    );
    expect(() => checkClassPolicy({ ...DEFAULT_CLASS_POLICY, free: { guarantee: 0.05, reserve: 0.1 } })).toThrow(
      "allocation.classes.free.reserve: 0.1 is below the reserve of a higher class (0.15)",
    );
    expect(() => checkClassPolicy({ ...DEFAULT_CLASS_POLICY, worked: { guarantee: -1, reserve: 0.2 } })).toThrow(
      "allocation.classes.worked.guarantee: -1 is not a fraction in [0, 1]",
    );
  });
});

describe("admissionClass", () => {
  it("is the highest class that applies", () => {
    expect(admissionClass({ paid: true, verified: true, worked: true })).toBe("paid");
    expect(admissionClass({ paid: false, verified: true, worked: true })).toBe("verified");
    expect(admissionClass({ paid: false, verified: false, worked: true })).toBe("worked");
    expect(admissionClass({ paid: false, verified: false, worked: false })).toBe("free");
  });
});
