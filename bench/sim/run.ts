/**
 * One simulation run (bench/sim/): builds the world — locations, isolates, origin shards and
 * root, 100,000 callers — and plays `minutes` of simulated time in 1 ms steps with the
 * gateway's real admission code. `index.ts` prints it; test/unit/bench/sim.test.ts runs it small.
 */
import { type CongestionCurve, congestion, DEFAULT_CONGESTION } from "../../shared/limits/congestion.ts";
import { MICRO, type MicroBucket, microBucket } from "../../shared/limits/micro-units.ts";
import { type ClassPolicy, DEFAULT_CLASS_POLICY } from "../../shared/limits/origin-classes.ts";
import { DEFAULT_ORIGIN_LEASE, type OriginLeaseSettings } from "../../shared/limits/origin-lease.ts";
import { DEFAULT_ROOT_SETTINGS, initialShares, newRoot, type RootSettings, rootCall } from "../../shared/limits/origin-root.ts";
import {
  applyRootReply,
  DEFAULT_SHARD_SETTINGS,
  newShard,
  reportDue,
  rootReport,
  type ShardSettings,
} from "../../shared/limits/origin-shard.ts";
import { CallerObject } from "./caller-object.ts";
import { callObject, Isolate, request, type SimCaller, type SimContext } from "./gateway.ts";
import { floodShape, KIND_SPECS, SINGLE } from "./population.ts";
import { aliasSampler, below, poisson, seeded } from "./random.ts";
import { Stats } from "./stats.ts";
import { Calendar, makeLocations, SimObject } from "./world.ts";

/** What to simulate. */
export interface SimConfig {
  seed: number;
  /** Simulated minutes. */
  minutes: number;
  /** Requests per second with the flood (the rates of population.ts are scaled to it). */
  rps: number;
  locations: number;
  isolatesPerLocation: number;
  /** Origin shards S. */
  shards: number;
  /** The origin ceiling: refill (units/s) and capacity (units). */
  ceiling: { capacity: number; refillPerSecond: number };
  /** The flood runs over this part of the run (fractions of its length). */
  flood: { from: number; to: number };
  classes: ClassPolicy;
  curve: CongestionCurve;
  lease: OriginLeaseSettings;
  shard: Omit<ShardSettings, "classes">;
  root: { minSharePpm: number; staleMs: number; initialSharePpm: number; maxShrinkPpm: number; demandMs: number };
  /** The gateway's wait for an object (`storeTimeoutMs`). */
  timeoutMs: number;
}

/** The defaults: the scale (100,000 requests/s for 10 minutes, 320 locations × 4 isolates), a ceiling of half the peak (R = rps / 2 units/s) with 2 s of burst (C = 2R). */
export function defaultConfig(over: Partial<SimConfig> = {}): SimConfig {
  const rps = over.rps ?? 100_000;
  return {
    seed: 1,
    minutes: 10,
    rps,
    locations: 320,
    isolatesPerLocation: 4,
    shards: 16,
    ceiling: { capacity: Math.max(1, Math.round(rps)), refillPerSecond: Math.max(1, Math.round(rps / 2)) },
    flood: { from: 0.1, to: 0.7 },
    classes: DEFAULT_CLASS_POLICY,
    curve: DEFAULT_CONGESTION,
    lease: DEFAULT_ORIGIN_LEASE,
    shard: DEFAULT_SHARD_SETTINGS,
    root: { ...DEFAULT_ROOT_SETTINGS },
    timeoutMs: 500,
    ...over,
  };
}

/** What a run measured. */
export interface SimResult {
  config: SimConfig;
  stats: Stats;
  ceiling: MicroBucket;
  /** Worst caller: admitted over allowed (≤ 1 when every caller stayed within its allowance). */
  worstCaller: { ratio: number; kind: string; what: string };
  /** Calls still in the calendar when the run ended are not counted. */
  durationMs: number;
}

/** Run the simulation. */
export function runSim(config: SimConfig): SimResult {
  const rand = seeded(config.seed);
  const durationMs = Math.round(config.minutes * 60_000);
  const cal = new Calendar();
  const locs = makeLocations(rand, config.locations);
  const stats = new Stats(durationMs);
  const ceiling = microBucket(config.ceiling);
  const shardSettings: ShardSettings = { classes: config.classes, ...config.shard };
  const rootSettings: RootSettings = { ceiling, shards: config.shards, classes: config.classes, curve: config.curve, ...config.root };

  // Origin shards: each isolate picks one at random when it starts (a hot location's isolates
  // spread over several shards); a shard lives where its first isolate is.
  const isolates: Isolate[] = [];
  for (let l = 0; l < config.locations; l++)
    for (let i = 0; i < config.isolatesPerLocation; i++) isolates.push(new Isolate(l, below(rand, config.shards), config.lease));
  const shares = initialShares(ceiling, config.shards, config.root.initialSharePpm);
  const shards = shares.map((share, s) => ({
    obj: new SimObject(`shard ${s}`, isolates.find((i) => i.shard === s)?.loc ?? 0),
    state: newShard(share, shardSettings, 0),
  }));
  const root = { obj: new SimObject("root", 0), state: newRoot(rootSettings, 0) };

  // Callers: kinds in order, homes by location weight, some spread over a second location.
  const total = KIND_SPECS.reduce((a, k) => a + k.count, 0);
  const pickLoc = aliasSampler(Array.from(locs.weight));
  const callers: SimCaller[] = [];
  const home = new Int32Array(total);
  const second = new Int32Array(total).fill(-1);
  for (const spec of KIND_SPECS) {
    for (let j = 0; j < spec.count; j++) {
      const index = callers.length;
      home[index] = pickLoc(rand);
      if (rand() < spec.spread) second[index] = pickLoc(rand);
      callers.push({
        index,
        id: `${spec.kind}:${j}`,
        spec,
        vip: spec.kind === "paying" || spec.kind === "verified",
        solver: rand() < spec.solvers,
      });
    }
  }
  const objects = new Map<number, { obj: SimObject; state: CallerObject }>();
  const ctx: SimContext = {
    cal,
    locs,
    stats,
    rand,
    curve: config.curve,
    shardSettings,
    shards,
    timeoutMs: config.timeoutMs,
    credits: new Float64Array(total),
    solvingUntil: new Float64Array(total),
    admittedRequests: new Float64Array(total),
    freeUnits: new Float64Array(total),
    callerObject(i) {
      let o = objects.get(i);
      if (!o) {
        const c = callers[i]!;
        o = {
          obj: new SimObject(`caller ${c.id}`, home[i]!),
          state: new CallerObject(c.spec.plan, cal.now, c.spec.kind === "paying" ? Number.POSITIVE_INFINITY : 0),
        };
        objects.set(i, o);
      }
      return o;
    },
  };

  // Shard reports to the root: an alarm checks every 100 ms whether one is due (`reportDue`:
  // a second since the last, or 100 ms when paid or verified traffic found no room).
  const report = (s: number) => {
    const shard = shards[s]!;
    if (reportDue(shard.state, shardSettings, cal.now)) {
      const r = rootReport(shard.state, shardSettings, s, cal.now);
      callObject(
        ctx,
        shard.obj.loc,
        root.obj,
        "root",
        (t) => rootCall(root.state, rootSettings, r, t),
        (reply) => {
          if (reply) applyRootReply(shard.state, shardSettings, reply, cal.now);
          stats.peakLevel = Math.max(stats.peakLevel, root.state.level);
        },
      );
    }
    cal.at(cal.now + 100, () => report(s));
  };
  for (let s = 0; s < config.shards; s++) cal.at(1 + s * 5, () => report(s));

  const scale = config.rps / 100_000;
  const floodFrom = config.flood.from * durationMs;
  const floodTo = config.flood.to * durationMs;
  let first = 0;
  const kinds = KIND_SPECS.map((spec) => {
    const base = first;
    first += spec.count;
    return { spec, base, perMs: (spec.count * spec.rps * scale) / 1000 };
  });
  for (let t = 1; t <= durationMs; t++) {
    cal.run(t);
    for (const k of kinds) {
      if (k.spec.kind === "flood" && (t < floodFrom || t >= floodTo)) continue;
      const n = poisson(rand, k.perMs);
      for (let a = 0; a < n; a++) {
        const i = k.base + below(rand, k.spec.count);
        if (ctx.solvingUntil[i]! > t) continue; // busy solving: it does not send meanwhile
        const loc = second[i]! >= 0 && rand() < 0.5 ? second[i]! : home[i]!;
        const iso = isolates[loc * config.isolatesPerLocation + below(rand, config.isolatesPerLocation)]!;
        request(ctx, iso, callers[i]!, k.spec.kind === "flood" ? floodShape(rand()) : SINGLE);
      }
    }
    if (t % 30_000 === 0) {
      const c = congestion(root.state.level, config.curve);
      stats.closeRow(t / 1000 - 30, 30, {
        level: root.state.level,
        freeShare: c.freeShare,
        extraBits: c.extraBits,
        priceFactor: c.priceFactor,
      });
    }
  }
  stats.expiredLeaseUnits = isolates.reduce((a, i) => a + i.leases.expiredUnits, 0);

  // Each caller against its allowance over the run: requests (its ceiling) and free-bucket units.
  const seconds = durationMs / 1000;
  let worstCaller = { ratio: 0, kind: "", what: "" };
  for (const c of callers) {
    const plan = c.spec.plan;
    const req = ctx.admittedRequests[c.index]! / (plan.ceiling.capacity + plan.ceiling.refillPerSecond * seconds);
    const free = ctx.freeUnits[c.index]! / (plan.bucket.capacity + plan.bucket.refillPerSecond * seconds);
    if (req > worstCaller.ratio)
      worstCaller = {
        ratio: req,
        kind: c.spec.kind,
        what: `${ctx.admittedRequests[c.index]} requests of ${plan.ceiling.capacity} + ${plan.ceiling.refillPerSecond}/s`,
      };
    if (free > worstCaller.ratio)
      worstCaller = {
        ratio: free,
        kind: c.spec.kind,
        what: `${ctx.freeUnits[c.index]} free units of ${plan.bucket.capacity} + ${plan.bucket.refillPerSecond}/s`,
      };
  }
  return { config, stats, ceiling, worstCaller, durationMs };
}

/** Origin units per second the ceiling allows in a window of `ms`: C + R × T (units). */
export function windowAllowance(ceiling: MicroBucket, ms: number): number {
  return (ceiling.cap + ceiling.rate * ms) / MICRO;
}
