/**
 * An origin shard: the object side of the origin ceiling's leases (docs/allocation.md).
 *
 * The origin ceiling is split over S shard objects; each holds a share of its capacity and
 * refill (`share`), divided among the admission classes (shared/limits/origin-classes.ts).
 * Isolates lease units from one shard (`shardCall`): one call reports what the isolate spent
 * and hands back what it will not spend, says how much each class asked (demand), and takes
 * new leases, for every class at once. About once a second (sooner when pressed, every few
 * seconds when quiet: `nextReportMs`)
 * the shard reports its demand and the share it uses to the root object and gets its next
 * share and the load level back (`rootReport`, `applyRootReply`, shared/limits/origin-root.ts).
 *
 * State is plain data (`ShardState`, one JSON row); every function updates it in place and is
 * synchronous, as a Durable Object runs one call at a time.
 *
 * Invariants (test/unit/shared/limits/origin-lease.interleavings.test.ts, test/unit/shared/limits/origin-root.test.ts):
 * - a grant is whole units the shard's buckets hold, taken out of them (never over);
 * - units an isolate reports spent or hands back are clamped to what is out on that lease;
 *   reports on leases that ended change nothing;
 * - the shard counts a lease out until `ttlMs` after the grant, rounded up to `slotMs`; the
 *   isolate counts it from when it *sent* the call, so it stops spending first, whatever the
 *   two clocks read, as long as they run at the same rate;
 * - the share the shard reports as used is never below its alive mass, so the root never
 *   hands out capacity the shard may still spend.
 */

import { settle } from "./leased-bucket.ts";
import { MICRO, type MicroBucket, mulPpm, PPM } from "./micro-units.ts";
import {
  ADMISSION_CLASSES,
  advance,
  aliveTotal,
  available,
  type ClassLimits,
  type ClassPolicy,
  classLimits,
  fullOrigin,
  lendClass,
  type OriginState,
  POOL,
  trimToLimits,
} from "./origin-classes.ts";

/** Settings every shard of a ceiling shares: the classes from the policy's `allocation`, the rest `DEFAULT_SHARD_SETTINGS`. */
export interface ShardSettings {
  readonly classes: ClassPolicy;
  /** Milliseconds a lease may be spent after the isolate sent the call that got it. */
  readonly leaseTtlMs: number;
  /** Lease ends are rounded up to a multiple of this (ms): the shard keeps one entry per slot. */
  readonly slotMs: number;
  /** Most of the shard's capacity one grant of one class may take, parts per million. */
  readonly maxGrantPpm: number;
  /** Milliseconds between two reports to the root… */
  readonly reportMs: number;
  /** …or, after a paid or verified request found no room, at least this many… */
  readonly pressedReportMs: number;
  /**
   * …or, while the shard is quiet, this many (less than the root's `staleMs`, so a quiet
   * shard's demand never counts as gone): quiet is the units asked since the last report
   * under `quietBelowPpm` of the share's refill over that time (at least `reportMs` of it),
   * and the root's load level under `quietBelowLevel`. A shard far below its share and an
   * uncongested origin have nothing for the root to move; a flood here makes the shard busy
   * (a report one `reportMs` after the last), and one elsewhere raises the level every shard
   * learns at its next report.
   */
  readonly quietReportMs: number;
  /** Demand under this share of the refill, parts per million, is quiet (see `quietReportMs`). */
  readonly quietBelowPpm: number;
  /** A load level (0–1) under this is quiet (see `quietReportMs`); keep it below the congestion curve's `start`. */
  readonly quietBelowLevel: number;
}

/**
 * Defaults: leases of at most 4 s (twice the isolates' longest horizon), 100 ms slots, one
 * grant ≤ 1/16 of the shard's capacity, a report to the root every second, 100 ms after the
 * last one when paid or verified traffic found no room, every 4 s while the shard asks less
 * than a quarter of its share's refill and the load level is under 0.25 (the root's `staleMs`
 * is 5 s; the congestion curve starts at 0.5).
 */
export const DEFAULT_SHARD_SETTINGS: Omit<ShardSettings, "classes"> = {
  leaseTtlMs: 4_000,
  slotMs: 100,
  maxGrantPpm: 62_500,
  reportMs: 1_000,
  pressedReportMs: 100,
  quietReportMs: 4_000,
  quietBelowPpm: 250_000,
  quietBelowLevel: 0.25,
};

/** A shard's state (plain data). */
export interface ShardState {
  /** The share of the ceiling in force (µunits, µunits/ms). */
  share: MicroBucket;
  origin: OriginState;
  /** Units asked per class since the last report to the root. */
  seen: number[];
  /** Unix ms `seen` started counting. */
  seenSinceMs: number;
  /** The load level from the root (0–1). */
  level: number;
  /** Sequence number of the last report sent to the root (a reply to an older one is ignored). */
  seq: number;
  /** Unix ms of the last report to the root (−Infinity: none yet). */
  reportedMs: number;
  /** A paid or verified need was refused since the last report (the share is short where paid traffic is), or the root asked for a report soon. */
  pressed: boolean;
  /** Units per second all classes asked over the last report's interval, a `reportMs` at least (0 before the first; for `nextReportMs`). */
  lastDemand: number;
}

/** What an isolate says of one lease it holds. */
export interface LeaseReport {
  /** The bucket the lease came from: a class index (its guarantee) or `POOL`. */
  bucket: number;
  /** The lease's end as the shard granted it (unix ms): its key. */
  expiresMs: number;
  /** Units spent since the last report (integer ≥ 0). */
  spent: number;
  /** Units handed back unspent (integer ≥ 0); the isolate no longer spends them. */
  returned: number;
}

/** One call of an isolate to its shard. Arrays are per class, in `ADMISSION_CLASSES` order. */
export interface IsolateCall {
  reports: LeaseReport[];
  /** Units each class asked of the origin in the isolate since its last call, refused ones included. */
  seen: number[];
  /** Units each class would like on lease (best effort). */
  want: number[];
  /** Units a waiting request needs now: granted whole or not at all (`needMet`). */
  need?: { cls: number; units: number } | undefined;
}

/** Units lent for one class from one bucket. */
export interface GrantPart {
  cls: number;
  bucket: number;
  /** The lease's key and end (unix ms, shard clock). */
  expiresMs: number;
  units: number;
}

/** The shard's answer. */
export interface ShardReply {
  grants: GrantPart[];
  /** Whether `need` was granted (true when there was none). */
  needMet: boolean;
  /** Per class: whether a take of one unit could succeed now, after this call's grants. */
  room: boolean[];
  /** The load level (0–1) the shard last had from the root. */
  level: number;
  /** Milliseconds the isolate may spend these leases, counted from when it sent the call. */
  ttlMs: number;
}

/** A shard's report to the root. */
export interface RootReport {
  shard: number;
  seq: number;
  /** The share in force, its capacity raised to the shard's alive mass when that is larger (after a shrink, until it drains). */
  using: MicroBucket;
  /** Units per second each class asked since the last report… */
  demand: number[];
  /** …which was this many milliseconds ago (the root weighs a short measure less). */
  overMs: number;
}

/** The root's answer (shared/limits/origin-root.ts). */
export interface RootReply {
  seq: number;
  share: MicroBucket;
  level: number;
  /** Report again after `pressedReportMs`, not `reportMs`: another shard waits for capacity this one holds. */
  soon: boolean;
}

const limitsCache = new WeakMap<MicroBucket, ClassLimits>();
/** The class limits of the share in force (computed once per share object). */
export function shardLimits(state: ShardState, settings: ShardSettings): ClassLimits {
  let l = limitsCache.get(state.share);
  if (!l) {
    l = classLimits(state.share, settings.classes);
    limitsCache.set(state.share, l);
  }
  return l;
}

/** A new shard holding `share`, every bucket full. */
export function newShard(share: MicroBucket, settings: ShardSettings, nowMs: number): ShardState {
  const state: ShardState = {
    share,
    origin: { buckets: [], updatedMs: nowMs },
    seen: ADMISSION_CLASSES.map(() => 0),
    seenSinceMs: nowMs,
    level: 0,
    seq: 0,
    reportedMs: -Infinity,
    pressed: false,
    lastDemand: 0,
  };
  state.origin = fullOrigin(shardLimits(state, settings), nowMs);
  return state;
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/**
 * Check an isolate's call before anything is applied.
 * @throws TypeError naming the bad field
 */
export function checkIsolateCall(call: IsolateCall): void {
  const K = ADMISSION_CLASSES.length;
  if (!Array.isArray(call.reports)) throw new TypeError("reports: expected an array");
  for (const [i, r] of call.reports.entries()) {
    if (!(Number.isInteger(r.bucket) && r.bucket >= 0 && r.bucket <= POOL))
      throw new TypeError(`reports.${i}.bucket: ${r.bucket} is not a bucket index 0–${POOL}`);
    if (!Number.isSafeInteger(r.expiresMs)) throw new TypeError(`reports.${i}.expiresMs: not an integer`);
    if (!isCount(r.spent) || !isCount(r.returned)) throw new TypeError(`reports.${i}: spent and returned must be integers ≥ 0`);
  }
  for (const f of ["seen", "want"] as const) {
    if (!Array.isArray(call[f]) || call[f].length !== K || !call[f].every(isCount))
      throw new TypeError(`${f}: expected ${K} integers ≥ 0 (one per class)`);
  }
  if (call.need !== undefined && !(Number.isInteger(call.need.cls) && call.need.cls >= 0 && call.need.cls < K && isCount(call.need.units)))
    throw new TypeError("need: expected { cls: a class index, units: an integer ≥ 0 }");
}

/**
 * Serve one isolate call at `nowMs`: bring the buckets to now, apply the reports, count the
 * demand, grant `need` (whole or nothing), then the wants by class priority (each at most
 * `maxGrantPpm` of the share's capacity).
 * @param nowMs the shard's clock, unix ms (integer)
 * @throws TypeError on a malformed call (nothing applied)
 */
export function shardCall(state: ShardState, settings: ShardSettings, call: IsolateCall, nowMs: number): ShardReply {
  checkIsolateCall(call);
  const limits = shardLimits(state, settings);
  advance(state.origin, limits, nowMs);
  for (const r of call.reports) settle(state.origin.buckets[r.bucket]!, r.expiresMs, r.spent, r.returned);
  call.seen.forEach((n, k) => {
    state.seen[k]! += n;
  });
  const expiresMs = Math.ceil((nowMs + settings.leaseTtlMs) / settings.slotMs) * settings.slotMs;
  const grants: GrantPart[] = [];
  const give = (cls: number, units: number, all: boolean): boolean => {
    const got = lendClass(state.origin, limits, cls, units, expiresMs, all);
    if (got.guaranteed > 0) grants.push({ cls, bucket: cls, expiresMs, units: got.guaranteed });
    if (got.pooled > 0) grants.push({ cls, bucket: POOL, expiresMs, units: got.pooled });
    return got.guaranteed + got.pooled === units;
  };
  const needMet = call.need === undefined || call.need.units === 0 || give(call.need.cls, call.need.units, true);
  if (!needMet && call.need!.cls <= 1) state.pressed = true;
  const maxGrant = Math.max(1, mulPpm(Math.floor(state.share.cap / MICRO), settings.maxGrantPpm));
  call.want.forEach((w, k) => {
    if (w > 0) give(k, Math.min(w, maxGrant), false);
  });
  const room = ADMISSION_CLASSES.map((_, k) => available(state.origin, limits, k) >= 1);
  return { grants, needMet, room, level: state.level, ttlMs: settings.leaseTtlMs };
}

/**
 * When the shard's next report to the root is due (unix ms; −Infinity before the first): its
 * last report plus `pressedReportMs` when a paid or verified request found no room since (the
 * shard's share is short where paid traffic is: the root moves capacity to it within a round
 * trip instead of a second) or the root asked for it (`RootReply.soon`: this shard holds
 * capacity another waits for); else plus `quietReportMs` while the shard is quiet at `nowMs`
 * (see `ShardSettings.quietReportMs`), `reportMs` when it is not. With no more traffic the
 * shard only gets quieter, so the answer never moves earlier until the next request.
 */
export function nextReportMs(state: ShardState, settings: ShardSettings, nowMs: number): number {
  if (state.pressed) return state.reportedMs + settings.pressedReportMs;
  return state.reportedMs + (quiet(state, settings, nowMs) ? settings.quietReportMs : settings.reportMs);
}

/**
 * Whether the shard is quiet at `nowMs` (see `ShardSettings.quietReportMs`): the level under
 * `quietBelowLevel`, and both the last report's demand and the units asked since under
 * `quietBelowPpm` of the share's refill (so a shard whose traffic just stopped reports that
 * at the usual pace).
 */
function quiet(state: ShardState, settings: ShardSettings, nowMs: number): boolean {
  if (state.level >= settings.quietBelowLevel) return false;
  // The share's refill in units per second (µunits/ms × 1000 / MICRO), and its quiet part.
  const below = (state.share.rate * 1000 * settings.quietBelowPpm) / PPM / MICRO;
  if (state.lastDemand >= below) return false;
  let asked = 0;
  for (const n of state.seen) asked += n;
  // Counted over a `reportMs` at least: a few units just after a report are not a rate.
  const overMs = Math.max(settings.reportMs, nowMs - state.seenSinceMs);
  return (asked * 1000) / overMs < below;
}

/**
 * Whether the shard should report to the root now (in the background: an alarm, or after the
 * call that found it due): `nowMs` is at or past `nextReportMs`.
 */
export function reportDue(state: ShardState, settings: ShardSettings, nowMs: number): boolean {
  return nowMs >= nextReportMs(state, settings, nowMs);
}

/**
 * The background report to the root at `nowMs` (when `reportDue`): the share in force
 * (its capacity raised, after a shrink, to the alive mass while that is larger) and the demand per class
 * in units per second since the last report. Starts a new report sequence.
 * @param shard this shard's index (0 … S − 1)
 */
export function rootReport(state: ShardState, settings: ShardSettings, shard: number, nowMs: number): RootReport {
  const limits = shardLimits(state, settings);
  advance(state.origin, limits, nowMs);
  // A smaller share takes effect on the tokens a report after it came: they had a round to be lent.
  trimToLimits(state.origin, limits);
  const overMs = Math.max(1, nowMs - state.seenSinceMs);
  const seconds = overMs / 1000;
  const demand = state.seen.map((n) => n / seconds);
  // Over a `reportMs` at least, as `quiet` counts: the first report comes right after the shard's first call.
  state.lastDemand = (state.seen.reduce((a, n) => a + n, 0) * 1000) / Math.max(settings.reportMs, overMs);
  state.seen = state.seen.map(() => 0);
  state.seenSinceMs = nowMs;
  state.seq += 1;
  state.reportedMs = nowMs;
  state.pressed = false;
  return {
    shard,
    seq: state.seq,
    using: { cap: Math.max(state.share.cap, aliveTotal(state.origin)), rate: state.share.rate },
    demand,
    overMs,
  };
}

/**
 * Apply the root's answer to the latest report: refill to `nowMs` at the old share, then take
 * the new one and the load level. Under a smaller share the buckets keep what they hold until
 * the next report and lend it (a shrink does not refuse, at once, traffic the shard could
 * still serve); they refill only once below the new capacities. The next report drops the
 * tokens above them, and reports the alive mass as the share used while that is larger, so
 * the root hands that capacity to no other shard meanwhile.
 * @returns false (nothing applied) when the answer is to an older report
 */
export function applyRootReply(state: ShardState, settings: ShardSettings, reply: RootReply, nowMs: number): boolean {
  if (reply.seq !== state.seq) return false;
  advance(state.origin, shardLimits(state, settings), nowMs);
  state.share = { cap: reply.share.cap, rate: reply.share.rate };
  state.level = reply.level;
  if (reply.soon) state.pressed = true;
  return true;
}
