/**
 * The origin ceiling with no single object in the path (shared/limits/origin-lease.ts,
 * origin-shard.ts, origin-root.ts), checked together over random interleavings of isolates,
 * shards and the root: calls that arrive late, out of order or never, replies lost, isolates
 * that die, rebalancing at any moment. Whatever happens:
 * - the units spent at the origin in every window [t, t + T] are ≤ C + R × T;
 * - Σ of the shards' alive mass ≤ C, Σ committed ≤ (C, R), every shard's share ≤ its commitment;
 * - a request is admitted only with units granted, at most once;
 * - units of ended leases come back: once everyone is quiet, the shards hold the whole ceiling.
 * Then: paid requests are never refused for a fragment while the ceiling has room for them,
 * and steady traffic needs few calls per request.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONGESTION } from "../../../../shared/limits/congestion.ts";
import { MICRO, type MicroBucket } from "../../../../shared/limits/micro-units.ts";
import { advance, aliveTotal, DEFAULT_CLASS_POLICY } from "../../../../shared/limits/origin-classes.ts";
import { type Admission, OriginLeases, type Receipt, type SentCall } from "../../../../shared/limits/origin-lease.ts";
import {
  committedTotal,
  initialShares,
  newRoot,
  type RootSettings,
  type RootState,
  rootCall,
} from "../../../../shared/limits/origin-root.ts";
import {
  applyRootReply,
  newShard,
  type RootReport,
  rootReport,
  type ShardReply,
  type ShardSettings,
  type ShardState,
  shardCall,
  shardLimits,
} from "../../../../shared/limits/origin-shard.ts";
import { worstWindowExcess } from "../../../helpers/window-excess.ts";

const T0 = 1_800_000_000_000;
/** Fixed 500 ms leases (unitsPerCall 1: the horizon is its minimum). */
const LEASE_SETTINGS = {
  horizonMs: 500,
  maxHorizonMs: 500,
  unitsPerCall: 1,
  renewAt: 0.5,
  emptyRetryMs: 300,
  minRate: 1,
  askBelowLevel: 0.5,
};

type Step =
  | { kind: "request"; isolate: number; cls: number; units: number; gapMs: number; refusedLater: boolean }
  | { kind: "arrive"; index: number }
  | { kind: "land"; index: number; lose: boolean }
  | { kind: "report"; shard: number }
  | { kind: "rootLand"; index: number; lose: boolean }
  | { kind: "die"; isolate: number }
  | { kind: "tick"; gapMs: number }
  | { kind: "refuse"; index: number }
  | { kind: "roundTrip"; index: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 14,
    arbitrary: fc.record({
      kind: fc.constant("request" as const),
      isolate: fc.nat(5),
      cls: fc.nat(3),
      units: fc.integer({ min: 1, max: 4 }),
      gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 1500 })),
      refusedLater: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("arrive" as const), index: fc.nat(20) }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("land" as const), index: fc.nat(20), lose: fc.integer({ min: 0, max: 9 }).map((n) => n < 2) }),
  },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant("roundTrip" as const), index: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("report" as const), shard: fc.nat(3) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("rootLand" as const), index: fc.nat(5), lose: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("die" as const), isolate: fc.nat(5) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("tick" as const),
      gapMs: fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 3000 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("refuse" as const), index: fc.nat(10) }) },
);

interface InFlight {
  isolate: number;
  table: OriginLeases;
  sent: SentCall;
  reply: ShardReply | null;
  /** The waiting request's units, when the call carries a need. */
  needUnits: number;
  refusedLater: boolean;
}

/** The whole system, driven step by step; every spend recorded with its time. */
class System {
  now = T0;
  readonly shardSettings: ShardSettings;
  readonly rootSettings: RootSettings;
  readonly shards: ShardState[];
  readonly root: RootState;
  tables: OriginLeases[];
  readonly calls: InFlight[] = [];
  readonly rootCalls: Array<{ report: RootReport }> = [];
  readonly spends: Array<[number, number]> = [];
  /** Admitted requests a later layer will refuse (`refuse`). */
  toRefuse: Array<{ table: OriginLeases; receipt: Receipt; units: number; atMs: number }> = [];
  /** Requests waiting for a call in flight of their isolate. */
  waiting: Array<{ table: OriginLeases; isolate: number; s: Extract<Step, { kind: "request" }> }> = [];
  shardCalls = 0;
  admitted = 0;
  readonly refused = [0, 0, 0, 0];

  readonly ceiling: MicroBucket;

  constructor(ceiling: MicroBucket, S: number, isolates: number, ttlMs: number, minSharePpm: number, initialSharePpm = 1_000_000) {
    this.ceiling = ceiling;
    this.shardSettings = {
      classes: DEFAULT_CLASS_POLICY,
      leaseTtlMs: ttlMs,
      slotMs: 100,
      maxGrantPpm: 250_000,
      reportMs: 1000,
      pressedReportMs: 100,
      quietReportMs: 1000,
      quietBelowPpm: 0,
      quietBelowLevel: 0,
    };
    this.rootSettings = {
      ceiling,
      shards: S,
      classes: DEFAULT_CLASS_POLICY,
      minSharePpm,
      curve: DEFAULT_CONGESTION,
      staleMs: 5000,
      initialSharePpm,
      maxShrinkPpm: 1_000_000,
      demandMs: 1,
    };
    const shares = initialShares(ceiling, S, initialSharePpm);
    this.shards = shares.map((s) => newShard(s, this.shardSettings, this.now));
    this.root = newRoot(this.rootSettings, this.now);
    this.tables = Array.from({ length: isolates }, () => new OriginLeases(LEASE_SETTINGS));
  }

  shardOf(isolate: number): number {
    return isolate % this.shards.length;
  }

  private spend(units: number): void {
    this.spends.push([this.now, units]);
    this.admitted++;
  }

  /**
   * A request's units were admitted: they are spent at the origin now — or, for a request a later
   * layer (the caller's object, after a round trip) refuses, held until a `refuse` step gives
   * back what can be given back and counts the rest as spent.
   */
  private admittedWith(table: OriginLeases, receipt: Receipt, units: number, refusedLater: boolean): void {
    if (refusedLater) this.toRefuse.push({ table, receipt, units, atMs: this.now });
    else {
      table.confirm(receipt);
      this.spend(units);
    }
  }

  /** A later layer refused an admitted request: its units go back to the lease where they still can. */
  refuse(index: number): void {
    if (this.toRefuse.length === 0) return;
    const r = this.toRefuse.splice(index % this.toRefuse.length, 1)[0]!;
    const back = r.table.giveBack(r.receipt, this.now);
    expect(back).toBeLessThanOrEqual(r.units);
    // What could not be given back counts as spent, when it was taken (conservative: earlier is the stricter window).
    if (r.units - back > 0) this.spends.push([r.atMs, r.units - back]);
  }

  request(s: Extract<Step, { kind: "request" }>): void {
    this.now += s.gapMs;
    const i = s.isolate % this.tables.length;
    const table = this.tables[i]!;
    const a = table.admit(s.cls, s.units, this.now);
    this.decided(i, table, a, s);
    if (table.due(this.now))
      this.calls.push({ isolate: i, table, sent: table.call(this.now), reply: null, needUnits: 0, refusedLater: false });
  }

  /** Act on an admission decision: count it, ask the shard, or wait for the call in flight. */
  private decided(i: number, table: OriginLeases, a: Admission, s: Extract<Step, { kind: "request" }>): void {
    if (a.kind === "admitted") this.admittedWith(table, a.receipt, s.units, s.refusedLater);
    else if (a.kind === "ask")
      this.calls.push({
        isolate: i,
        table,
        sent: table.call(this.now, { cls: s.cls, units: s.units }),
        reply: null,
        needUnits: s.units,
        refusedLater: s.refusedLater,
      });
    else if (a.kind === "wait") this.waiting.push({ table, isolate: i, s });
    else this.refused[s.cls]!++;
  }

  /** A call reaches its shard, which answers at once (the reply travels until `land`). */
  arrive(index: number): void {
    const waiting = this.calls.filter((x) => x.reply === null);
    const c = waiting[index % Math.max(1, waiting.length)];
    if (!c) return;
    this.shardCalls++;
    c.reply = shardCall(this.shards[this.shardOf(c.isolate)]!, this.shardSettings, c.sent.call, this.now);
  }

  /** A call settles at its isolate: the reply lands, or the call failed (before or after the shard saw it). */
  land(index: number, lose: boolean): void {
    // A reply lands only after its call arrived; a call may fail at any point.
    const candidates = lose ? this.calls : this.calls.filter((x) => x.reply !== null);
    if (candidates.length === 0) return;
    const c = candidates[index % candidates.length]!;
    this.calls.splice(this.calls.indexOf(c), 1);
    const receipt = c.table.settle(c.sent, lose ? null : c.reply, this.now);
    if (c.needUnits > 0) {
      if (receipt) this.admittedWith(c.table, receipt, c.needUnits, c.refusedLater);
      // A need granted means units the isolate got (unless the reply came after the lease's end).
      if (!lose && c.reply?.needMet && c.table === this.tables[c.isolate] && this.now < c.sent.sentAtMs + c.reply.ttlMs)
        expect(receipt).not.toBeNull();
    }
    // Requests that waited for a call of this isolate try again (once; then they ask or are refused).
    const again = this.waiting.filter((w) => w.table === c.table);
    this.waiting = this.waiting.filter((w) => w.table !== c.table);
    for (const w of again) this.decided(w.isolate, w.table, w.table.retry(w.s.cls, w.s.units, this.now), w.s);
  }

  report(shard: number): void {
    const s = shard % this.shards.length;
    if (this.rootCalls.some((r) => r.report.shard === s)) return; // one report in flight per shard
    this.rootCalls.push({ report: rootReport(this.shards[s]!, this.shardSettings, s, this.now) });
  }

  rootLand(index: number, lose: boolean): void {
    if (this.rootCalls.length === 0) return;
    const { report } = this.rootCalls.splice(index % this.rootCalls.length, 1)[0]!;
    const reply = rootCall(this.root, this.rootSettings, report, this.now);
    if (!lose) applyRootReply(this.shards[report.shard]!, this.shardSettings, reply, this.now);
  }

  die(isolate: number): void {
    // Its leases are gone; calls in flight for it still reach the shard, and land nowhere.
    this.tables[isolate % this.tables.length] = new OriginLeases(LEASE_SETTINGS);
  }

  checkInvariants(): void {
    let alive = 0;
    for (const s of this.shards) {
      advance(s.origin, shardLimits(s, this.shardSettings), this.now);
      alive += aliveTotal(s.origin);
    }
    // Never over: what the isolates of a shard may still spend (or have spent unreported) under one
    // lease key is at most what the shard counts as out under that key, and nothing is spendable
    // under a key the shard has let end.
    this.shards.forEach((shard, si) => {
      const held = new Map<string, number>();
      this.tables.forEach((t, i) => {
        if (this.shardOf(i) !== si) return;
        for (const l of t.leases(this.now)) {
          if (l.expiresMs <= this.now) {
            expect(l.spendable && l.units > 0).toBe(false);
            continue;
          }
          const key = `${l.bucket}/${l.expiresMs}`;
          held.set(key, (held.get(key) ?? 0) + (l.spendable ? l.units : 0) + l.spent + l.pending);
        }
      });
      for (const [key, n] of held) {
        const [bucket, expiresMs] = key.split("/").map(Number);
        const out = shard.origin.buckets[bucket!]!.out.find((e) => e[0] === expiresMs)?.[1] ?? 0;
        expect(n).toBeLessThanOrEqual(out);
      }
    });
    const committed = committedTotal(this.root);
    expect(alive).toBeLessThanOrEqual(this.ceiling.cap);
    expect(committed.cap).toBeLessThanOrEqual(this.ceiling.cap);
    expect(committed.rate).toBeLessThanOrEqual(this.ceiling.rate);
    this.shards.forEach((s, i) => {
      expect(s.share.cap).toBeLessThanOrEqual(this.root.shards[i]!.committed.cap);
      expect(s.share.rate).toBeLessThanOrEqual(this.root.shards[i]!.committed.rate);
    });
  }

  /** Largest excess over C + R × T of any window between two spends (µunits); ≤ 0 when the ceiling held. */
  worstWindowExcess(): number {
    return worstWindowExcess(this.spends, this.ceiling);
  }
}

function run(sys: System, steps: Step[]): void {
  for (const s of steps) {
    switch (s.kind) {
      case "request":
        sys.request(s);
        break;
      case "arrive":
        sys.arrive(s.index);
        break;
      case "land":
        sys.land(s.index, s.lose);
        break;
      case "report":
        sys.report(s.shard);
        break;
      case "rootLand":
        sys.rootLand(s.index, s.lose);
        break;
      case "die":
        sys.die(s.isolate);
        break;
      case "tick":
        sys.now += s.gapMs;
        break;
      case "refuse":
        sys.refuse(s.index);
        break;
      case "roundTrip": {
        // One call goes to its shard and its reply comes straight back.
        const waiting = sys.calls.filter((x) => x.reply === null);
        if (waiting.length === 0) break;
        const c = waiting[s.index % waiting.length]!;
        sys.arrive(waiting.indexOf(c));
        sys.land(sys.calls.filter((x) => x.reply !== null).indexOf(c), false);
        break;
      }
    }
    sys.checkInvariants();
  }
}

describe("origin ceiling over shards and leases", () => {
  it("holds C + R × T in every window, over random interleavings of isolates, shards, reports and rebalancing", () => {
    fc.assert(
      fc.property(
        fc.record({
          capUnits: fc.oneof(
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 10 }) },
            { weight: 4, arbitrary: fc.integer({ min: 20, max: 300 }) },
          ),
          rate: fc.oneof(fc.integer({ min: 1_000, max: 10_000 }), fc.integer({ min: 10_000, max: 300_000 })),
        }), // units; µunits/ms = 1–300 units/s
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 200, max: 3000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.array(stepArb, { minLength: 20, maxLength: 400, size: "max" }),
        (c, S, isolates, ttlMs, minSharePpm, initialSharePpm, steps) => {
          const sys = new System({ cap: c.capUnits * MICRO, rate: c.rate }, S, isolates, ttlMs, minSharePpm, initialSharePpm);
          run(sys, steps);
          expect(sys.worstWindowExcess()).toBeLessThanOrEqual(0);
          while (sys.toRefuse.length > 0) sys.refuse(0);
          // Everyone quiet: calls and reports land, leases end, the buckets refill: the shards hold the whole committed ceiling.
          while (sys.calls.length > 0) {
            sys.arrive(0);
            sys.land(0, false);
          }
          while (sys.rootCalls.length > 0) sys.rootLand(0, false);
          sys.now += ttlMs + 200;
          // Quiet rounds of reports: the run's demand is reported, then none; shrinks are
          // confirmed by the next report, growths granted from what they freed.
          for (let round = 0; round < 4; round++) {
            for (let s = 0; s < S; s++) sys.report(s);
            while (sys.rootCalls.length > 0) sys.rootLand(0, false);
            sys.now += 1000;
          }
          sys.now += 3_600_000;
          sys.checkInvariants();
          for (const s of sys.shards) {
            expect(s.origin.buckets.every((b) => b.out.length === 0)).toBe(true);
            expect(aliveTotal(s.origin)).toBe(s.share.cap);
          }
          // After the quiet rounds every shrink is confirmed and every growth granted: nothing of the ceiling is lost.
          expect(sys.shards.reduce((a, s) => a + s.share.cap, 0)).toBe(sys.ceiling.cap);
          expect(sys.shards.reduce((a, s) => a + s.share.rate, 0)).toBe(sys.ceiling.rate);
        },
      ),
      { numRuns: 250 },
    );
  });

  it("steady traffic: 2 isolates at 200 paid + 200 free units/s each need ≤ 0.05 shard calls per request, and paid is never refused", () => {
    const sys = new System({ cap: 1000 * MICRO, rate: 1_000_000 }, 1, 2, 2000, 100_000);
    const steps: Step[] = [];
    for (let i = 0; i < 20_000; i++) {
      steps.push({ kind: "request", isolate: i % 2, cls: i % 4 < 2 ? 0 : 3, units: 1, gapMs: i % 2 === 0 ? 5 : 0, refusedLater: false });
      // Calls take a round trip of a few requests.
      if (i % 4 === 3) steps.push({ kind: "arrive", index: 0 }, { kind: "land", index: 0, lose: false });
      if (i % 2000 === 0) steps.push({ kind: "report", shard: 0 }, { kind: "rootLand", index: 0, lose: false });
    }
    run(sys, steps);
    expect(sys.refused[0]).toBe(0);
    expect(sys.shardCalls / 20_000).toBeLessThanOrEqual(0.05);
    expect(sys.worstWindowExcess()).toBeLessThanOrEqual(0);
  });

  it("a request refused by the caller's object after a renewal went out still gives all its units back", () => {
    const settings: ShardSettings = {
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
    const shard = newShard({ cap: 100 * MICRO, rate: 10_000 }, settings, T0);
    const t = new OriginLeases(LEASE_SETTINGS);
    const first = t.call(T0, { cls: 3, units: 5 });
    const receipt = t.settle(first, shardCall(shard, settings, first.call, T0), T0)!;
    expect(t.holding(3, T0)).toBe(0);
    // A renewal goes out while the request waits for the caller's object: it reports nothing of the pending units.
    const renewal = t.call(T0 + 10);
    expect(renewal.call.reports).toEqual([]);
    shardCall(shard, settings, renewal.call, T0 + 10);
    expect(t.giveBack(receipt, T0 + 20)).toBe(5);
    expect(t.holding(3, T0 + 20)).toBe(5);
    // Confirmed, the next call reports them spent, once.
    const again = t.admit(3, 5, T0 + 30);
    expect(again.kind).toBe("admitted");
    t.confirm((again as { receipt: Receipt }).receipt);
    expect(t.call(T0 + 40).call.reports).toEqual([{ bucket: 3, expiresMs: T0 + 2000, spent: 5, returned: 0 }]);
    expect(t.call(T0 + 50).call.reports).toEqual([]);
  });

  it("a class the shard has no room for is refused locally, and asked for again at most once per emptyRetryMs", () => {
    // A ceiling of 10 units, 1 unit/s: free drains it, then is refused without calls.
    const sys = new System({ cap: 10 * MICRO, rate: 1_000 }, 1, 1, 2000, 0);
    const steps: Step[] = [];
    for (let i = 0; i < 3000; i++) {
      steps.push({ kind: "request", isolate: 0, cls: 3, units: 1, gapMs: 1, refusedLater: false });
      steps.push({ kind: "arrive", index: 0 }, { kind: "land", index: 0, lose: false });
    }
    run(sys, steps);
    // 3 s at 1 unit/s on top of the 10 units: free may use all but the pool's 30 % floor (of 7.5 units in the pool).
    expect(sys.admitted).toBeLessThanOrEqual(10 + 3);
    expect(sys.refused[3]).toBeGreaterThan(2900);
    // One call per 300 ms (emptyRetryMs) at most once free has no room, plus the first few.
    expect(sys.shardCalls).toBeLessThanOrEqual(3000 / 300 + 15);
  });
});
