/**
 * The root of the origin ceiling (shared/limits/origin-root.ts): shares follow demand, and the
 * ceiling holds whatever the balance — Σ committed ≤ (C, R) after every report, and a shard
 * that still holds units out on lease after a shrink keeps them counted until they drain.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONGESTION } from "../../../../shared/limits/congestion.ts";
import { MICRO } from "../../../../shared/limits/micro-units.ts";
import { aliveTotal, DEFAULT_CLASS_POLICY } from "../../../../shared/limits/origin-classes.ts";
import {
  allocate,
  committedTotal,
  initialShares,
  newRoot,
  type RootSettings,
  rootCall,
  staticShares,
} from "../../../../shared/limits/origin-root.ts";
import { applyRootReply, newShard, rootReport, type ShardSettings, shardCall } from "../../../../shared/limits/origin-shard.ts";

const T0 = 1_800_000_000_000;
const shardSettings: ShardSettings = {
  classes: DEFAULT_CLASS_POLICY,
  leaseTtlMs: 2000,
  slotMs: 100,
  maxGrantPpm: 1_000_000,
  reportMs: 1000,
  pressedReportMs: 100,
  quietReportMs: 1000,
  quietBelowPpm: 0,
  quietBelowLevel: 0,
};
const settings = (S: number, minSharePpm = 100_000, initialSharePpm = 1_000_000): RootSettings => ({
  ceiling: { cap: 1000 * MICRO, rate: 1_000_000 },
  shards: S,
  classes: DEFAULT_CLASS_POLICY,
  minSharePpm,
  curve: DEFAULT_CONGESTION,
  staleMs: 5000,
  initialSharePpm,
  maxShrinkPpm: 1_000_000,
  demandMs: 1,
});

describe("allocate", () => {
  it("gives the shard where paid traffic waits the share paid is due, and every shard its minimum", () => {
    const s = settings(4);
    // 1000 units/s of ceiling; shard 0 asks 600 paid, shard 1 asks 5000 free, shards 2 and 3 nothing.
    const shares = allocate(s, [
      [600, 0, 0, 0],
      [0, 0, 0, 5000],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
    expect(shares.reduce((a, x) => a + x.cap, 0)).toBe(1000 * MICRO);
    expect(shares.reduce((a, x) => a + x.rate, 0)).toBe(1_000_000);
    // paid gets all it asks (600); free the rest (400); 10 % spread evenly (25 each).
    expect(shares[0]!.rate).toBe(25_000 + 0.9 * 600_000);
    expect(shares[1]!.rate).toBe(25_000 + 0.9 * 400_000);
    expect(shares[2]!.rate).toBe(25_000);
  });

  it("splits evenly when nobody asks anything", () => {
    expect(
      allocate(settings(3, 0), [
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ]),
    ).toEqual(staticShares(settings(3).ceiling, 3));
  });
});

describe("rootCall", () => {
  it("keeps Σ committed within the ceiling over random reports, demands, losses and shard orders", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.array(
          fc.record({
            shard: fc.nat(5),
            demand: fc.array(fc.oneof(fc.constant(0), fc.double({ min: 0, max: 5000, noNaN: true })), { minLength: 4, maxLength: 4 }),
            lose: fc.boolean(),
            gapMs: fc.integer({ min: 0, max: 3000 }),
          }),
          { minLength: 1, maxLength: 120, size: "max" },
        ),
        (S, minSharePpm, initialSharePpm, reports) => {
          const s = settings(S, minSharePpm, initialSharePpm);
          let now = T0;
          const root = newRoot(s, now);
          const shards = initialShares(s.ceiling, S, initialSharePpm).map((share) => newShard(share, shardSettings, now));
          for (const r of reports) {
            now += r.gapMs;
            const i = r.shard % S;
            shards[i]!.seen = r.demand.map((d) => Math.round(d));
            const report = rootReport(shards[i]!, shardSettings, i, now);
            const reply = rootCall(root, s, report, now);
            if (!r.lose) expect(applyRootReply(shards[i]!, shardSettings, reply, now)).toBe(true);
            const c = committedTotal(root);
            expect(c.cap).toBeLessThanOrEqual(s.ceiling.cap);
            expect(c.rate).toBeLessThanOrEqual(s.ceiling.rate);
            shards.forEach((sh, j) => {
              expect(sh.share.cap).toBeLessThanOrEqual(root.shards[j]!.committed.cap);
              expect(sh.share.rate).toBeLessThanOrEqual(root.shards[j]!.committed.rate);
            });
            expect(root.level).toBeGreaterThanOrEqual(0);
            expect(root.level).toBeLessThanOrEqual(1);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a shard that shrank while its units are out on lease keeps them committed: the other shard cannot grow into them", () => {
    const s = settings(2, 0);
    let now = T0;
    const root = newRoot(s, now);
    const shards = staticShares(s.ceiling, 2).map((share) => newShard(share, shardSettings, now));
    // Shard 0 lends its whole share (500 units, every class's part) to an isolate, which holds it unspent.
    const call = { reports: [], seen: [0, 0, 0, 0], want: [500, 500, 500, 500] };
    const grant = shardCall(shards[0]!, shardSettings, call, now);
    expect(grant.grants.reduce((a, g) => a + g.units, 0)).toBe(500);
    // All demand moves to shard 1: shard 0 is told to shrink to nothing.
    now += 100;
    shards[1]!.seen = [0, 0, 0, 10_000];
    applyRootReply(shards[1]!, shardSettings, rootCall(root, s, rootReport(shards[1]!, shardSettings, 1, now), now), now);
    applyRootReply(shards[0]!, shardSettings, rootCall(root, s, rootReport(shards[0]!, shardSettings, 0, now), now), now);
    expect(shards[0]!.share.cap).toBe(0);
    // Shard 0 still has 500 units out: it reports them as used, so shard 1 may not grow past the other half.
    for (let round = 0; round < 3; round++) {
      now += 100;
      shards[1]!.seen = [0, 0, 0, 10_000];
      applyRootReply(shards[0]!, shardSettings, rootCall(root, s, rootReport(shards[0]!, shardSettings, 0, now), now), now);
      applyRootReply(shards[1]!, shardSettings, rootCall(root, s, rootReport(shards[1]!, shardSettings, 1, now), now), now);
    }
    expect(shards[1]!.share.cap).toBe(500 * MICRO);
    expect(aliveTotal(shards[0]!.origin) + shards[1]!.share.cap).toBeLessThanOrEqual(s.ceiling.cap);
    // Once the lease has ended, shard 1 grows into what shard 0 held.
    now += 2100;
    for (let round = 0; round < 2; round++) {
      now += 1000;
      shards[1]!.seen = [0, 0, 0, 10_000];
      applyRootReply(shards[0]!, shardSettings, rootCall(root, s, rootReport(shards[0]!, shardSettings, 0, now), now), now);
      applyRootReply(shards[1]!, shardSettings, rootCall(root, s, rootReport(shards[1]!, shardSettings, 1, now), now), now);
    }
    expect(shards[1]!.share.cap).toBe(1000 * MICRO);
  });

  it("ignores an answer to an older report", () => {
    const s = settings(1);
    const shard = newShard(s.ceiling, shardSettings, T0);
    const root = newRoot(s, T0);
    const old = rootCall(root, s, rootReport(shard, shardSettings, 0, T0), T0);
    rootReport(shard, shardSettings, 0, T0 + 1000);
    expect(applyRootReply(shard, shardSettings, old, T0 + 1000)).toBe(false);
  });

  it("refuses a malformed report, naming the field", () => {
    const s = settings(2);
    const root = newRoot(s, T0);
    expect(() => rootCall(root, s, { shard: 2, seq: 1, using: { cap: 0, rate: 0 }, demand: [0, 0, 0, 0], overMs: 1000 }, T0)).toThrow(
      "shard: 2 is not a shard index 0–1",
    );
    expect(() => rootCall(root, s, { shard: 0, seq: 1, using: { cap: 0, rate: 0 }, demand: [0, 0, -1, 0], overMs: 1000 }, T0)).toThrow(
      "demand: expected 4 numbers ≥ 0",
    );
  });

  it("the load level rises quickly with demand above the ceiling and falls back slowly", () => {
    const s = settings(1);
    const shard = newShard(s.ceiling, shardSettings, T0);
    const root = newRoot(s, T0);
    let now = T0;
    const step = (demand: number) => {
      now += 1000;
      shard.seen = [0, 0, 0, demand];
      return rootCall(root, s, rootReport(shard, shardSettings, 0, now), now).level;
    };
    const up = [1, 2, 3, 4, 5, 6].map(() => step(2000));
    expect(up[1]).toBeGreaterThan(0.6); // 2 s of twice the ceiling: 1 − e^(−1)
    expect(up[5]).toBeGreaterThan(0.95);
    const down = Array.from({ length: 15 }, () => step(0));
    expect(down[0]).toBeGreaterThan(0.85); // 1 s of nothing: still high (15 s to fall)
    expect(down[14]).toBeLessThan(0.4);
  });
});
