/**
 * The gateway's path for one request in the simulation (bench/sim/), as the lead is to wire it
 * into workers/ (docs/allocation.md, "Per request"):
 * 1. the request's class, from what it carries (a paid balance → paid, an API key → verified,
 *    a proof-of-work balance → worked, nothing → free);
 * 2. the origin ceiling, first and usually locally (shared/limits/origin-lease.ts): the
 *    request's messages out of the isolate's lease for its class; else a call to the isolate's
 *    shard (paid, verified, or a class that had room), or a local 402 (no room);
 * 3. the caller's own layers: a free or verified request against the caller's buckets — from
 *    the caller's lease in this isolate (shared/limits/lease.ts) or by a call to its object —
 *    with the free share of congestion applied to free costs; a paid or worked request spends
 *    its balance in the caller's object. Refused there, the request gives its origin units back.
 * Callers refused with a 402 that can solve a proof of work do (at the difficulty the caller's
 * object asks plus the congestion's extra bits) and come back as `worked`.
 */
import { type CongestionCurve, congestion, freeCost } from "../../shared/limits/congestion.ts";
import { LeaseTable } from "../../shared/limits/lease.ts";
import { type Admission, type OriginLeaseSettings, OriginLeases, type Receipt } from "../../shared/limits/origin-lease.ts";
import { type ShardSettings, type ShardState, shardCall } from "../../shared/limits/origin-shard.ts";
import type { CallerObject } from "./caller-object.ts";
import type { KindSpec, RequestShape } from "./population.ts";
import type { Random } from "./random.ts";
import type { CallKind, Refusal, Stats } from "./stats.ts";
import { type Calendar, type Locations, SERVICE_MS, type SimObject } from "./world.ts";

/** An isolate: where it runs, the shard it leases from, its origin leases and its callers' leases. */
export class Isolate {
  readonly leases: OriginLeases;
  readonly callers = new LeaseTable();
  /** Requests waiting for a call in flight, per class. */
  readonly waiters: Array<Array<() => void>> = [[], [], [], []];
  readonly loc: number;
  readonly shard: number;
  constructor(loc: number, shard: number, settings: OriginLeaseSettings) {
    this.loc = loc;
    this.shard = shard;
    this.leases = new OriginLeases(settings);
  }
}

/** Everything the request path reaches. */
export interface SimContext {
  cal: Calendar;
  locs: Locations;
  stats: Stats;
  rand: Random;
  curve: CongestionCurve;
  shardSettings: ShardSettings;
  shards: Array<{ obj: SimObject; state: ShardState }>;
  /** The caller's object (created at the caller's home location on first use). */
  callerObject(caller: number): { obj: SimObject; state: CallerObject };
  /** Milliseconds the gateway waits for an object (`storeTimeoutMs`). */
  timeoutMs: number;
  /** Client side, per caller: credits of its proof-of-work balance, and until when it is busy solving (ms). */
  credits: Float64Array;
  solvingUntil: Float64Array;
  /** Per caller, what its own layers admitted: requests (its ceiling) and units of its free bucket. */
  admittedRequests: Float64Array;
  freeUnits: Float64Array;
}

/** One caller as the request path sees it. */
export interface SimCaller {
  index: number;
  id: string;
  spec: KindSpec;
  /** Paying or (non-runaway) verified: its refusals are counted apart (the Done-when line). */
  vip: boolean;
  solver: boolean;
}

/**
 * A Durable Object call from an isolate at `fromLoc`: half a round trip there, the object's
 * queue, `handler` at the object's clock, half a round trip back; null when the answer would
 * come after `timeoutMs` (the object still did the work).
 */
export function callObject<T>(
  ctx: SimContext,
  fromLoc: number,
  obj: SimObject,
  kind: CallKind,
  handler: (nowMs: number) => T,
  onReply: (r: T | null) => void,
): void {
  ctx.stats.calls[kind]++;
  const sent = ctx.cal.now;
  const half = ctx.locs.rtt(fromLoc, obj.loc) / 2;
  ctx.cal.at(sent + half, () => {
    const start = obj.serve(ctx.cal.now, kind === "shard" ? [ctx.stats.busiest, ctx.stats.busiestShard] : [ctx.stats.busiest]);
    const r = handler(Math.floor(start));
    const replyAt = start + SERVICE_MS + half;
    if (replyAt - sent > ctx.timeoutMs) ctx.cal.at(sent + ctx.timeoutMs, () => onReply(null));
    else ctx.cal.at(replyAt, () => onReply(r));
  });
}

/**
 * A call from `iso` to its shard, with `need` for a waiting request: settles the isolate's
 * leases, then runs `onNeed` with the need's receipt (null: not granted; undefined: the call
 * failed), then the requests that waited for it.
 */
function askShard(
  ctx: SimContext,
  iso: Isolate,
  need: { cls: number; units: number } | undefined,
  onNeed: (r: Receipt | null | undefined) => void,
): void {
  const sent = iso.leases.call(ctx.cal.now, need);
  const shard = ctx.shards[iso.shard]!;
  callObject(
    ctx,
    iso.loc,
    shard.obj,
    "shard",
    (nowMs) => shardCall(shard.state, ctx.shardSettings, sent.call, nowMs),
    (reply) => {
      const receipt = iso.leases.settle(sent, reply, ctx.cal.now);
      onNeed(reply ? receipt : undefined);
      for (const k of sent.classes) {
        const w = iso.waiters[k]!;
        iso.waiters[k] = [];
        for (const fn of w) fn();
      }
    },
  );
}

/** The class of a caller's request: 0 paid, 1 verified, 2 worked, 3 free. */
function classOf(ctx: SimContext, c: SimCaller): number {
  if (c.spec.cls === "paid") return 0;
  if (c.spec.cls === "verified") return 1;
  return ctx.credits[c.index]! > 0 ? 2 : 3;
}

/** Start solving a challenge (a caller refused with a 402 that can solve), then redeem it in the caller's object. */
function solve(ctx: SimContext, iso: Isolate, c: SimCaller): void {
  const now = ctx.cal.now;
  if (!c.solver || ctx.solvingUntil[c.index]! > now) return;
  const o = ctx.callerObject(c.index);
  const bits = o.state.difficulty(now) + congestion(iso.leases.level(), ctx.curve).extraBits;
  const ms = Math.max(1, (2 ** bits / c.spec.hashRate) * 1000);
  ctx.solvingUntil[c.index] = now + ms;
  ctx.cal.at(now + ms, () => {
    ctx.stats.solves++;
    callObject(
      ctx,
      iso.loc,
      o.obj,
      "caller",
      (t) => o.state.redeem(t),
      (r) => {
        if (r !== null) ctx.credits[c.index] = o.state.credits;
        ctx.solvingUntil[c.index] = 0;
      },
    );
  });
}

/** A request refused for `why` (a free caller that can solve a proof of work starts one). */
function refuse(ctx: SimContext, iso: Isolate, c: SimCaller, cls: number, why: Refusal): void {
  // Where a paying or verified caller was refused, for the table's samples (built only for them).
  const where = c.vip
    ? `isolate at ${iso.loc}, shard ${iso.shard}: holding ${iso.leases.holding(cls, ctx.cal.now)}, room ${iso.leases.room(cls)}`
    : "";
  ctx.stats.refuse(cls, why, c.vip, ctx.cal.now, where);
  if (cls === 3 && (why === "origin" || why === "budget")) solve(ctx, iso, c);
}

/** A request forwarded to the origin: its units are spent. */
function forward(ctx: SimContext, iso: Isolate, c: SimCaller, cls: number, shape: RequestShape, receipt: Receipt): void {
  iso.leases.confirm(receipt);
  ctx.stats.forward(cls, shape.messages, ctx.cal.now);
  ctx.admittedRequests[c.index]! += 1;
}

/** The caller's own layers, once the origin admitted the request's messages (`receipt`). */
function callerLayer(ctx: SimContext, iso: Isolate, c: SimCaller, cls: number, shape: RequestShape, receipt: Receipt): void {
  const { cal } = ctx;
  if (cls === 0 || cls === 2) {
    // A balance (paid credits, or a proof of work's): spent in the caller's object.
    const o = ctx.callerObject(c.index);
    callObject(
      ctx,
      iso.loc,
      o.obj,
      "caller",
      (t) => o.state.spend(shape.cost, t),
      (d) => {
        if (d?.admitted) return forward(ctx, iso, c, cls, shape, receipt);
        iso.leases.giveBack(receipt, cal.now);
        if (cls === 2 && d?.reason === "token_exhausted") ctx.credits[c.index] = 0;
        else if (cls === 2 && d) ctx.credits[c.index] = o.state.credits;
        refuse(ctx, iso, c, cls, d === null ? "unavailable" : d.reason === "ceiling" ? "ceiling" : "budget");
      },
    );
    if (cls === 2) ctx.credits[c.index] = Math.max(0, ctx.credits[c.index]! - shape.cost);
    return;
  }
  // The free bucket: free requests pay the free share of congestion.
  const plan = c.spec.plan;
  const cost = cls === 3 ? freeCost(shape.cost, congestion(iso.leases.level(), ctx.curve).freeShare, plan.bucket.capacity) : shape.cost;
  const now = cal.now;
  if (iso.callers.admit(c.id, cost, now)) {
    ctx.freeUnits[c.index]! += cost;
    forward(ctx, iso, c, cls, shape, receipt);
    if (iso.callers.startRenewal(c.id, now)) {
      const want = iso.callers.want(c.id, now, plan.bucket.capacity, plan.ceiling.capacity, true);
      if (!want) iso.callers.renewed(c.id);
      else {
        const o = ctx.callerObject(c.index);
        callObject(
          ctx,
          iso.loc,
          o.obj,
          "caller",
          (t) => o.state.renew(want, t),
          (g) => {
            if (g) iso.callers.install(c.id, g, cal.now);
            iso.callers.renewed(c.id);
          },
        );
      }
    }
    return;
  }
  const want = iso.callers.want(c.id, now, plan.bucket.capacity, plan.ceiling.capacity);
  // The call carries the isolate's lease request: it settles it, whatever the answer (admission.ts).
  const asking = want !== null && (want.units > 0 || want.ceilingUnits > 0);
  const o = ctx.callerObject(c.index);
  callObject(
    ctx,
    iso.loc,
    o.obj,
    "caller",
    (t) => o.state.admitFree(cost, want, t),
    (d) => {
      if (d?.lease) iso.callers.install(c.id, d.lease, cal.now);
      if (asking) iso.callers.renewed(c.id);
      if (d?.admitted) {
        ctx.freeUnits[c.index]! += cost;
        return forward(ctx, iso, c, cls, shape, receipt);
      }
      iso.leases.giveBack(receipt, cal.now);
      refuse(ctx, iso, c, cls, d === null ? "unavailable" : d.reason === "ceiling" ? "ceiling" : "budget");
    },
  );
}

/** Act on the origin ceiling's decision for a request. */
function origin(ctx: SimContext, iso: Isolate, c: SimCaller, cls: number, shape: RequestShape, a: Admission): void {
  switch (a.kind) {
    case "admitted":
      callerLayer(ctx, iso, c, cls, shape, a.receipt);
      return;
    case "wait":
      iso.waiters[cls]!.push(() => origin(ctx, iso, c, cls, shape, iso.leases.retry(cls, shape.messages, ctx.cal.now)));
      return;
    case "ask":
      askShard(ctx, iso, { cls, units: shape.messages }, (r) => {
        if (r) callerLayer(ctx, iso, c, cls, shape, r);
        else refuse(ctx, iso, c, cls, r === undefined ? "unavailable" : "origin");
      });
      return;
    case "refused":
      refuse(ctx, iso, c, cls, "origin");
      return;
  }
}

const NOTHING = () => {};

/** One request of caller `c` at isolate `iso`. */
export function request(ctx: SimContext, iso: Isolate, c: SimCaller, shape: RequestShape): void {
  ctx.stats.arrived(c.spec.kind);
  const cls = classOf(ctx, c);
  origin(ctx, iso, c, cls, shape, iso.leases.admit(cls, shape.messages, ctx.cal.now));
  if (iso.leases.due(ctx.cal.now)) askShard(ctx, iso, undefined, NOTHING);
}
