/**
 * Admission leases (shared/limits/lease.ts): random interleavings of requests across several
 * simulated isolates, grants, background renewals that land late, expiries and isolate
 * deaths never admit more than the caller's buckets allow over the whole run; a steady
 * caller needs few calls to its object. The object is modelled here from its contract
 * (docs/durable-object.md): a request takes one ceiling unit and its cost from the free
 * bucket, then a lease is granted from what is left.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type BucketConfig, type BucketState, fullBucket, take } from "../../../../shared/limits/bucket.ts";
import { grantLease, LEASE_MS, LeaseTable, type LeaseWant, MAX_LEASE_SHARE, RECALL_MS } from "../../../../shared/limits/lease.ts";

/** The caller's object, as its contract says: one ceiling unit and the cost per request, then a lease. */
class ObjectModel {
  free: BucketState;
  ceiling: BucketState;
  calls = 0;
  readonly config: { bucket: BucketConfig; ceiling: BucketConfig };
  constructor(config: { bucket: BucketConfig; ceiling: BucketConfig }, nowMs: number) {
    this.config = config;
    this.free = fullBucket(config.bucket, nowMs);
    this.ceiling = fullBucket(config.ceiling, nowMs);
  }
  admit(cost: number, nowMs: number, want: LeaseWant | null) {
    this.calls++;
    const c = take(this.ceiling, this.config.ceiling, 1, nowMs);
    let admitted = false;
    if (c.result.success) {
      this.ceiling = c.state;
      const f = take(this.free, this.config.bucket, cost, nowMs);
      if (f.result.success) {
        this.free = f.state;
        admitted = true;
      }
    }
    const lease = want ? this.grant(admitted ? want : { units: 0, ceilingUnits: 0, returned: want.returned }, nowMs) : null;
    return { admitted, lease: admitted ? lease : null };
  }
  grant(want: LeaseWant, nowMs: number) {
    const g = grantLease(this.free, this.ceiling, this.config, want, nowMs);
    this.free = g.free;
    this.ceiling = g.ceiling;
    return g.grant;
  }
}

type Step =
  | { kind: "request"; isolate: number; cost: number; gapMs: number }
  | { kind: "die"; isolate: number }
  | { kind: "land"; index: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant("request" as const),
      isolate: fc.nat(3),
      cost: fc.integer({ min: 0, max: 3 }),
      gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 60 }), fc.integer({ min: 0, max: 3_000 })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("die" as const), isolate: fc.nat(3) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("land" as const), index: fc.nat(10) }) },
);

/** Run `steps` against `isolates` lease tables and one object; count what was admitted. */
function simulate(config: { bucket: BucketConfig; ceiling: BucketConfig }, steps: Step[]) {
  const t0 = 1_800_000_000_000;
  let now = t0;
  const object = new ObjectModel(config, now);
  const tables = [new LeaseTable(), new LeaseTable(), new LeaseTable(), new LeaseTable()];
  const caller = "ip:198.51.100.7";
  /** Renewals sent and not landed yet: the table they belong to, and the want. */
  const inFlight: Array<{ table: LeaseTable; want: LeaseWant | null }> = [];
  let units = 0;
  let requests = 0;
  for (const s of steps) {
    if (s.kind === "die") {
      // Its unexpired lease is lost with it; a renewal in flight for it lands nowhere (but the object granted it).
      tables[s.isolate] = new LeaseTable();
      continue;
    }
    if (s.kind === "land") {
      const r = inFlight.splice(s.index % Math.max(1, inFlight.length), 1)[0];
      if (!r) continue;
      if (r.want) {
        object.calls++;
        const grant = object.grant(r.want, now);
        r.table.install(caller, grant, now);
      }
      r.table.renewed(caller);
      continue;
    }
    now += s.gapMs;
    const table = tables[s.isolate]!;
    if (table.admit(caller, s.cost, now)) {
      units += s.cost;
      requests++;
      if (table.startRenewal(caller, now))
        inFlight.push({ table, want: table.want(caller, now, config.bucket.capacity, config.ceiling.capacity, true) });
      continue;
    }
    const want = table.want(caller, now, config.bucket.capacity, config.ceiling.capacity);
    const r = object.admit(s.cost, now, want);
    if (r.admitted) {
      units += s.cost;
      requests++;
    }
    if (r.lease) table.install(caller, r.lease, now);
    // The call that carried the want settled (as admission.ts does in `finally`).
    if (want && (want.units > 0 || want.ceilingUnits > 0)) table.renewed(caller);
  }
  const seconds = (now - t0) / 1000;
  return {
    units,
    requests,
    unitAllowance: config.bucket.capacity + config.bucket.refillPerSecond * seconds,
    requestAllowance: config.ceiling.capacity + config.ceiling.refillPerSecond * seconds,
    calls: object.calls,
  };
}

describe("leases never admit more than the buckets allow", () => {
  it("over random interleavings of 4 isolates, late renewals, expiries and deaths", () => {
    fc.assert(
      fc.property(
        fc.record({
          capacity: fc.integer({ min: 1, max: 60 }),
          refill: fc.oneof(fc.constant(0.0001), fc.double({ min: 0.1, max: 50, noNaN: true })),
        }),
        fc.record({ capacity: fc.integer({ min: 1, max: 120 }), refill: fc.double({ min: 0.5, max: 50, noNaN: true }) }),
        fc.array(step, { minLength: 1, maxLength: 400 }),
        (b, c, steps) => {
          const config = {
            bucket: { capacity: b.capacity, refillPerSecond: b.refill },
            ceiling: { capacity: c.capacity, refillPerSecond: c.refill },
          };
          const r = simulate(config, steps);
          // Invariant: everything admitted anywhere came out of the buckets.
          expect(r.units).toBeLessThanOrEqual(r.unitAllowance + 1e-6);
          expect(r.requests).toBeLessThanOrEqual(r.requestAllowance + 1e-6);
        },
      ),
      { numRuns: 400 },
    );
  });

  it("a caller sending 20 requests/s from one isolate needs at most 0.1 object calls per admitted request", () => {
    const steps: Step[] = [];
    for (let i = 0; i < 2_000; i++) {
      steps.push({ kind: "request", isolate: 0, cost: 1, gapMs: 50 });
      // Renewals land 1–2 requests later (a real round trip).
      if (i % 2 === 1) steps.push({ kind: "land", index: 0 });
    }
    const r = simulate({ bucket: { capacity: 100, refillPerSecond: 25 }, ceiling: { capacity: 60, refillPerSecond: 30 } }, steps);
    expect(r.requests).toBe(2_000);
    expect(r.calls / r.requests).toBeLessThanOrEqual(0.1);
  });

  for (const perSecond of [2, 5, 10]) {
    it(`an ordinary agent at ${perSecond} requests/s from one isolate needs at most 0.1 object calls per admitted request`, () => {
      const steps: Step[] = [];
      const gap = 1000 / perSecond;
      for (let i = 0; i < 60 * perSecond; i++) {
        // Jittered arrivals (±40 %), renewals landing one request later.
        steps.push({ kind: "request", isolate: 0, cost: 1, gapMs: Math.round(gap * (0.6 + 0.8 * (((i * 7919) % 101) / 100))) });
        steps.push({ kind: "land", index: 0 });
      }
      const r = simulate({ bucket: { capacity: 200, refillPerSecond: 20 }, ceiling: { capacity: 200, refillPerSecond: 20 } }, steps);
      expect(r.requests).toBe(60 * perSecond);
      expect(r.calls / r.requests).toBeLessThanOrEqual(0.1);
    });
  }

  it("a burst of three requests at each of two isolates leaves the caller's next request elsewhere its budget (a lease holds at most a quarter of the bucket)", () => {
    // A verified caller at under 1 request/s: three requests over 50 ms at one isolate read as
    // 12 requests/s there and get a lease; the same at a second isolate. With leases of up to
    // half the 60-unit bucket the two took 60 units between them, and the caller's 7th request,
    // at a third isolate, was refused over budget after 6 (docs/allocation.md).
    const burst = (isolate: number): Step[] => [
      { kind: "request", isolate, cost: 1, gapMs: 300 },
      { kind: "request", isolate, cost: 1, gapMs: 25 },
      { kind: "request", isolate, cost: 1, gapMs: 25 },
    ];
    const steps = [...burst(0), ...burst(1), { kind: "request" as const, isolate: 2, cost: 1, gapMs: 300 }];
    const r = simulate({ bucket: { capacity: 60, refillPerSecond: 1 }, ceiling: { capacity: 60, refillPerSecond: 10 } }, steps);
    expect(r.requests).toBe(7);
  });

  it("a lease never asks nor is granted more than a quarter of a bucket's capacity", () => {
    expect(MAX_LEASE_SHARE).toBe(0.25);
    const table = new LeaseTable();
    const now = 1_800_000_000_000;
    for (let i = 0; i < 40; i++) table.admit("c", 1, now + i * 10);
    const want = table.want("c", now + 400, 60, 100)!;
    expect([want.units, want.ceilingUnits]).toEqual([15, 25]);
    const config = { bucket: { capacity: 60, refillPerSecond: 1 }, ceiling: { capacity: 100, refillPerSecond: 10 } };
    const full = { tokens: 60, updatedMs: now };
    const g = grantLease(
      full,
      { tokens: 100, updatedMs: now },
      config,
      { units: 60, ceilingUnits: 100, returned: { units: 0, ceilingUnits: 0 } },
      now,
    );
    expect([g.grant.units, g.grant.ceilingUnits]).toEqual([15, 25]);
    expect(g.free.tokens).toBe(45);
  });

  it("an agent back from a pause asks for its lease with its first call (its last rate recalled), not after a pause longer than RECALL_MS", () => {
    const table = new LeaseTable();
    let now = 1_800_000_000_000;
    for (let i = 0; i < 10; i++) table.admit("c", 1, (now += 100));
    const first = table.want("c", now, 1000, 1000)!;
    expect(first.units).toBeGreaterThan(0);
    table.install(
      "c",
      { units: first.units, ceilingUnits: first.ceilingUnits, expiresMs: now + LEASE_MS, bucketLeft: 0, ceilingLeft: 0 },
      now,
    );
    table.renewed("c");
    // 20 s of thinking: the lease expired; the first request back goes to the object…
    now += 20_000;
    expect(table.admit("c", 1, now)).toBeNull();
    // …asking for a lease at the rate it had, and handing back what it did not spend.
    const back = table.want("c", now, 1000, 1000)!;
    expect(back.units).toBe(first.units);
    expect(back.returned.units).toBe(first.units - 0);
    table.renewed("c");
    // After a longer pause nothing is recalled: a lease needs the rate measured again.
    now += RECALL_MS + LEASE_MS;
    table.admit("c", 1, now);
    expect(table.want("c", now, 1000, 1000)).toBeNull();
  });

  it("one lease request in flight per caller: a burst's concurrent calls ask for none until it settles", () => {
    const table = new LeaseTable();
    const now = 1_800_000_000_000;
    for (let i = 0; i < 5; i++) table.admit("c", 1, now + i * 20);
    const first = table.want("c", now + 100, 1000, 1000);
    expect(first!.units).toBeGreaterThan(0);
    expect(table.want("c", now + 101, 1000, 1000)).toBeNull();
    table.renewed("c");
    expect(table.want("c", now + 102, 1000, 1000)!.units).toBeGreaterThan(0);
  });

  it("a caller whose bursts land on three isolates at once keeps a quarter of its budget for a fourth (a lease holds at most ¼ of the bucket)", () => {
    // Three requests within 60 ms at each isolate: a rate of 12/s, a lease target of 60 units,
    // the whole bucket. With leases of up to half of it, two isolates emptied it and the third
    // isolate's requests were refused over budget, though the caller had used 9 of 60 units.
    const burst = (isolate: number): Step[] => [0, 30, 30].map((gapMs) => ({ kind: "request" as const, isolate, cost: 1, gapMs }));
    const steps = [...burst(0), ...burst(1), ...burst(2), { kind: "request" as const, isolate: 3, cost: 1, gapMs: 10 }];
    const r = simulate({ bucket: { capacity: 60, refillPerSecond: 0.0001 }, ceiling: { capacity: 60, refillPerSecond: 0.0001 } }, steps);
    expect(r.requests).toBe(10);
  });

  it("a caller seen once a minute gets no lease: every request asks the object, as without leases", () => {
    const steps: Step[] = Array.from({ length: 20 }, () => ({ kind: "request" as const, isolate: 0, cost: 1, gapMs: 60_000 }));
    const r = simulate({ bucket: { capacity: 10, refillPerSecond: 0.5 }, ceiling: { capacity: 60, refillPerSecond: 10 } }, steps);
    expect(r.calls).toBe(20);
    expect(r.requests).toBe(20);
  });

  it("an expired lease is never spent, and its units go back to the object at the next call", () => {
    const table = new LeaseTable();
    const now = 1_800_000_000_000;
    for (let i = 0; i < 10; i++) table.admit("c", 1, now + i * 10);
    table.install("c", { units: 5, ceilingUnits: 5, expiresMs: now + LEASE_MS, bucketLeft: 0, ceilingLeft: 0 }, now);
    expect(table.admit("c", 1, now + 100)).not.toBeNull();
    expect(table.admit("c", 1, now + LEASE_MS)).toBeNull();
    const want = table.want("c", now + LEASE_MS + 1, 100, 100);
    expect(want?.returned).toEqual({ units: 4, ceilingUnits: 4 });
    // Handed back once only.
    expect(table.want("c", now + LEASE_MS + 2, 100, 100)?.returned ?? { units: 0, ceilingUnits: 0 }).toEqual({ units: 0, ceilingUnits: 0 });
  });
});
