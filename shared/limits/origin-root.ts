/**
 * The root of the origin ceiling (docs/allocation.md, "Shards"): it divides the ceiling's
 * capacity C and refill R among the S shard objects by their demand, and computes the load
 * level ℓ that prices congestion. No request waits on it: each shard reports about once a
 * second in the background (`rootCall`; every 4 s while quiet, `nextReportMs` in
 * shared/limits/origin-shard.ts), so the root serves at most S calls per second.
 *
 * Shares follow demand: the root allocates R among the classes as a shard would (each class
 * its guarantee, then the rest by priority, shared/limits/origin-classes.ts), then gives each
 * shard its part of each class's allocation in proportion to that class's demand there, and
 * any spare capacity evenly; every shard keeps at least `minSharePpm / S` (so a shard whose
 * traffic just began is never at zero). A shard shrinks by at most `maxShrinkPpm` of its share
 * per report: demand reported a second apart by different shards (a flood that just stopped
 * here and not yet there) moves shares gradually, and a shard never loses much more capacity
 * at once than its leases out can give back.
 *
 * **The ceiling holds whatever the balance** (test/unit/shared/limits/origin-root.test.ts): the root keeps,
 * per shard, the share it has *committed* — the most the shard may be using — and
 * Σ committed ≤ (C, R) at all times. A shard's report says the share it uses now (`using`:
 * what it has in force, its capacity raised to its alive mass after a shrink); that becomes
 * its commitment. A shrink is answered at once but stays committed until the shard's next
 * report confirms it; a growth is granted only out of what no other shard has committed. So
 * capacity freed by one shard reaches another one report later: while a shard waits for
 * capacity others hold, the root asks those above their target to report again soon (`soon`),
 * so that takes a few hundred milliseconds, not seconds.
 *
 * State is plain data (`RootState`, one row of S entries); `rootCall` updates it in place.
 */
import { type CongestionCurve, smoothLevel } from "./congestion.ts";
import { apportion, type MicroBucket, mulPpm, PPM } from "./micro-units.ts";
import { ADMISSION_CLASSES, type ClassPolicy, checkClassPolicy } from "./origin-classes.ts";
import type { RootReply, RootReport } from "./origin-shard.ts";

/** The root's settings. */
export interface RootSettings {
  /** The whole origin ceiling (µunits, µunits/ms). */
  readonly ceiling: MicroBucket;
  /** Number of shards S (≥ 1). */
  readonly shards: number;
  readonly classes: ClassPolicy;
  /** Part of the ceiling spread evenly over the shards whatever their demand, parts per million. */
  readonly minSharePpm: number;
  readonly curve: Pick<CongestionCurve, "riseSeconds" | "fallSeconds">;
  /** A shard that has not reported for this long (ms) counts as having no demand. */
  readonly staleMs: number;
  /** Part of the ceiling the shards start with, before any report, parts per million (`initialShares`). */
  readonly initialSharePpm: number;
  /** Most a shard's share shrinks at one report, parts per million of it. */
  readonly maxShrinkPpm: number;
  /** Time constant (ms) of the smoothing of each shard's demand: a report measured over a short time moves it little. */
  readonly demandMs: number;
}

/** Defaults: 10 % of the ceiling spread evenly, a shard silent for 5 s has no demand, shards start with the whole ceiling split evenly and shrink by at most 20 % per report, demand smoothed over 1 s. */
export const DEFAULT_ROOT_SETTINGS = {
  minSharePpm: 100_000,
  staleMs: 5_000,
  initialSharePpm: 1_000_000,
  maxShrinkPpm: 200_000,
  demandMs: 1_000,
} as const;

/** What the root knows of one shard. */
export interface ShardEntry {
  /** The share the shard last said it uses. */
  using: MicroBucket;
  /** The most the shard may be using now (≥ `using`). */
  committed: MicroBucket;
  /** Units per second each class asked at the shard, smoothed over its reports (time constant `demandMs`). */
  demand: number[];
  /** Unix ms of its last report (0: never). */
  atMs: number;
}

/** The root's state (plain data). */
export interface RootState {
  shards: ShardEntry[];
  /** The smoothed load level ℓ (0–1) and when it was computed (unix ms). */
  level: number;
  levelAtMs: number;
  /** Unix ms a shard last got less than its target because others held it (−Infinity: never). */
  blockedAtMs: number;
}

/**
 * The shares every shard starts with, before any report: `initialSharePpm` of the ceiling split
 * evenly, exactly; the rest is left uncommitted, so the first reports can grow the shards
 * where the traffic is at once, without waiting for others to shrink. A new shard object
 * takes `initialShares(…)[index]`; the root starts from the same split.
 */
export function initialShares(ceiling: MicroBucket, shards: number, initialSharePpm: number): MicroBucket[] {
  const even = Array.from({ length: shards }, () => 1);
  const caps = apportion(mulPpm(ceiling.cap, initialSharePpm), even);
  const rates = apportion(mulPpm(ceiling.rate, initialSharePpm), even);
  return caps.map((cap, i) => ({ cap, rate: rates[i]! }));
}

/** Least capacity (units) a shard should hold: an isolate's leases take about 1.5 × `unitsPerCall` (docs/allocation.md, "Sizing"). */
export const MIN_SHARD_UNITS = 100;

/**
 * The shards a ceiling of `capacity` units is split over: the policy's `shards`, fewer when the
 * ceiling is small, so that each holds at least `MIN_SHARD_UNITS` (a ceiling of 3 units has one
 * shard, not 16 shards of 0.19 units each, none of which could lend one).
 * @param capacity the ceiling's capacity, units (integer ≥ 1)
 * @param shards `allocation.shards` (integer ≥ 1)
 */
export function shardsFor(capacity: number, shards: number): number {
  return Math.max(1, Math.min(shards, Math.floor(capacity / MIN_SHARD_UNITS)));
}

/** The whole ceiling split evenly over the shards, exactly. */
export function staticShares(ceiling: MicroBucket, shards: number): MicroBucket[] {
  return initialShares(ceiling, shards, PPM);
}

/**
 * Check the settings.
 * @throws TypeError naming the bad field
 */
export function checkRootSettings(s: RootSettings): void {
  if (!(Number.isInteger(s.shards) && s.shards >= 1 && s.shards <= 1024))
    throw new TypeError(`allocation.shards: ${s.shards} is not an integer in [1, 1024]`);
  if (!(Number.isInteger(s.minSharePpm) && s.minSharePpm >= 0 && s.minSharePpm <= PPM))
    throw new TypeError(`minSharePpm: ${s.minSharePpm} is not in [0, 1000000]`);
  if (!(Number.isInteger(s.maxShrinkPpm) && s.maxShrinkPpm >= 0 && s.maxShrinkPpm <= PPM))
    throw new TypeError(`maxShrinkPpm: ${s.maxShrinkPpm} is not in [0, 1000000]`);
  if (!(Number.isInteger(s.initialSharePpm) && s.initialSharePpm >= 0 && s.initialSharePpm <= PPM))
    throw new TypeError(`initialSharePpm: ${s.initialSharePpm} is not in [0, 1000000]`);
  checkClassPolicy(s.classes);
}

/** A root that has heard from no shard: every shard committed to its initial share (`initialShares`). */
export function newRoot(settings: RootSettings, nowMs: number): RootState {
  checkRootSettings(settings);
  const shares = initialShares(settings.ceiling, settings.shards, settings.initialSharePpm);
  return {
    shards: shares.map((s) => ({ using: s, committed: s, demand: ADMISSION_CLASSES.map(() => 0), atMs: 0 })),
    level: 0,
    levelAtMs: nowMs,
    blockedAtMs: -Infinity,
  };
}

/**
 * The shares the shards should have for `demands` (per shard, per class, units per second):
 * integer parts adding up exactly to the ceiling (see the module's description).
 */
export function allocate(settings: RootSettings, demands: readonly (readonly number[])[]): MicroBucket[] {
  const S = settings.shards;
  const K = ADMISSION_CLASSES.length;
  const R = settings.ceiling.rate / 1000; // units per second
  const D = ADMISSION_CLASSES.map((_, k) => demands.reduce((a, d) => a + (d[k] ?? 0), 0));
  // Each class its guarantee first, then the rest of R by priority.
  const a = ADMISSION_CLASSES.map((name, k) => Math.min(D[k]!, settings.classes[name].guarantee * R));
  let rest = R - a.reduce((x, y) => x + y, 0);
  for (let k = 0; k < K && rest > 0; k++) {
    const more = Math.min(D[k]! - a[k]!, rest);
    a[k]! += more;
    rest -= more;
  }
  const weights = demands.map((d) => {
    let w = 0;
    for (let k = 0; k < K; k++) if (D[k]! > 0) w += (a[k]! * (d[k] ?? 0)) / D[k]!;
    // Spare capacity is spread evenly: demand measured a second ago must not move it about.
    return w + rest / S;
  });
  const wsum = weights.reduce((x, y) => x + y, 0);
  const even = settings.minSharePpm / PPM / S;
  const blended = weights.map((w) => even + (1 - settings.minSharePpm / PPM) * (wsum > 0 ? w / wsum : 1 / S));
  const caps = apportion(settings.ceiling.cap, blended);
  const rates = apportion(settings.ceiling.rate, blended);
  return caps.map((cap, i) => ({ cap, rate: rates[i]! }));
}

/**
 * Check a shard's report.
 * @throws TypeError naming the bad field
 */
export function checkRootReport(settings: RootSettings, r: RootReport): void {
  if (!(Number.isInteger(r.shard) && r.shard >= 0 && r.shard < settings.shards))
    throw new TypeError(`shard: ${r.shard} is not a shard index 0–${settings.shards - 1}`);
  if (!Number.isSafeInteger(r.seq)) throw new TypeError("seq: not an integer");
  if (!(Number.isSafeInteger(r.using?.cap) && r.using.cap >= 0 && Number.isSafeInteger(r.using.rate) && r.using.rate >= 0))
    throw new TypeError("using: expected { cap, rate }, integers ≥ 0");
  if (!(Array.isArray(r.demand) && r.demand.length === ADMISSION_CLASSES.length && r.demand.every((x) => x >= 0 && Number.isFinite(x))))
    throw new TypeError(`demand: expected ${ADMISSION_CLASSES.length} numbers ≥ 0`);
  if (!(r.overMs >= 0 && Number.isFinite(r.overMs))) throw new TypeError("overMs: expected a number of milliseconds ≥ 0");
}

/**
 * One shard's report at `nowMs`: record what it uses and asks, update ℓ, and answer its next
 * share — a shrink at once, a growth up to what the other shards leave uncommitted.
 * @throws TypeError on a malformed report (nothing changed)
 */
export function rootCall(state: RootState, settings: RootSettings, report: RootReport, nowMs: number): RootReply {
  checkRootReport(settings, report);
  const me = state.shards[report.shard]!;
  // What the shard reports it uses is what it has in force: its confirmation of any earlier answer.
  me.using = { cap: report.using.cap, rate: report.using.rate };
  me.committed = me.using;
  const w = 1 - Math.exp(-Math.max(0, report.overMs) / Math.max(1, settings.demandMs));
  me.demand = me.demand.map((d, k) => d + (report.demand[k]! - d) * w);
  me.atMs = nowMs;

  const fresh = state.shards.map((e) => (nowMs - e.atMs <= settings.staleMs && e.atMs > 0 ? e.demand : e.demand.map(() => 0)));
  const asked = fresh.reduce((a, d) => a + d.reduce((x, y) => x + y, 0), 0);
  state.level = smoothLevel(state.level, asked / (settings.ceiling.rate / 1000), nowMs - state.levelAtMs, settings.curve);
  state.levelAtMs = Math.max(state.levelAtMs, nowMs);

  const target = allocate(settings, fresh)[report.shard]!;
  const others = (f: "cap" | "rate") => state.shards.reduce((a, e, i) => (i === report.shard ? a : a + e.committed[f]), 0);
  const next = (f: "cap" | "rate") =>
    target[f] <= me.using[f]
      ? Math.max(target[f], me.using[f] - mulPpm(me.using[f], settings.maxShrinkPpm))
      : Math.max(me.using[f], Math.min(target[f], settings.ceiling[f] - others(f)));
  const share = { cap: next("cap"), rate: next("rate") };
  me.committed = { cap: Math.max(me.using.cap, share.cap), rate: Math.max(me.using.rate, share.rate) };
  if (share.cap < target.cap || share.rate < target.rate) state.blockedAtMs = nowMs;
  // While some shard waits for capacity others hold, those that hold more than their target report again soon.
  const soon = nowMs - state.blockedAtMs < 1000 && (me.using.cap > target.cap || me.using.rate > target.rate);
  return { seq: report.seq, share, level: state.level, soon };
}

/** Σ committed over the shards (for checks: never above the ceiling). */
export function committedTotal(state: RootState): MicroBucket {
  return state.shards.reduce((a, e) => ({ cap: a.cap + e.committed.cap, rate: a.rate + e.committed.rate }), { cap: 0, rate: 0 });
}
