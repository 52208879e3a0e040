/**
 * The isolate's side of the origin ceiling (docs/allocation.md, "Origin leases"): the units
 * of the origin ceiling this isolate holds, per admission class, leased from its shard
 * (shared/limits/origin-shard.ts), so that most forwarded requests are admitted with no
 * Durable Object call at all.
 *
 * Per request (`admit`): the request's units (one per JSON-RPC message) come out of the
 * class's leases, oldest first, if they hold enough. Otherwise:
 * - `paid` and `verified` ask the shard synchronously (`ask`: `call` with a `need`), or join a
 *   call already in flight for the class (`wait`, then `retry`): they are never refused because
 *   this isolate's lease happened to be empty, only when the shard has no room for them;
 * - `worked` and `free` are refused locally (`refused`: a 402 with the congestion) when the
 *   shard's last answer said the class has no room, or when the load level is at
 *   `askBelowLevel` or above and a call asked for the class within the last 1 / `minRate`
 *   seconds; a background call asks again at most once per `emptyRetryMs`. Otherwise (room,
 *   and no congestion, or a class no call asked for lately) they ask as above: an empty lease
 *   is then only fragmentation, and a class too slow here to keep a lease (one proof-of-work
 *   payer) is not refused for want of one (at most `minRate` such calls a second).
 * In the background (`due`, then `call` without a need), the isolate renews its leases when
 * they hold less than `renewAt` of their targets (a horizon of each class's rate, see
 * `OriginLeaseSettings`), counting only leases with more than half their life left, so a lease
 * is replaced before it runs out or ends; one call renews every class.
 * Each call reports the units spent since the last one (the shard can refill in their place)
 * and hands back the units of older leases the newest one makes unnecessary.
 *
 * A request's units are taken at once (`admit`) and are *pending* until the request is
 * forwarded (`confirm`: spent, reported with the next call) or refused by a later layer
 * (`giveBack`: back in the lease).
 *
 * Invariants (test/unit/shared/limits/origin-lease.interleavings.test.ts, with real shards and the root): a unit is
 * spent only from a lease, only before `sent + ttlMs` by this isolate's clock (the shard ends
 * the lease no earlier), and at most once; what the isolate holds, has pending or has spent
 * unreported under a lease is never more than the shard counts out under it; units handed
 * back or given back are not spent again; a spent unit is reported at most once, a pending one
 * never. A dead isolate loses its leases: the shard forgets them when they end.
 *
 * Not shared between isolates; every method is synchronous.
 */
import { ADMISSION_CLASSES } from "./origin-classes.ts";
import type { GrantPart, IsolateCall, LeaseReport, ShardReply } from "./origin-shard.ts";

/** Settings of the isolate's leases (module defaults, `DEFAULT_ORIGIN_LEASE`; not in the policy). */
export interface OriginLeaseSettings {
  /**
   * A lease holds `horizon` milliseconds of the class's rate in this isolate, where the horizon
   * is what covers `unitsPerCall` units of all classes together, kept within
   * [`horizonMs`, `maxHorizonMs`]: a busy isolate renews often with short leases, a quiet one
   * holds longer ones, and either way one call serves about `unitsPerCall / 2` requests.
   */
  readonly horizonMs: number;
  readonly maxHorizonMs: number;
  readonly unitsPerCall: number;
  /** Renew when the young leases hold less than this share of the target (0–1). */
  readonly renewAt: number;
  /** A class the shard said has no room is asked for again at most this often (ms). */
  readonly emptyRetryMs: number;
  /** Slowest rate (units per second, in this isolate) for which a class gets a lease; slower ones ask per request. */
  readonly minRate: number;
  /**
   * Load level (0–1) from which `worked` and `free` requests that find their lease empty are
   * refused locally (402) instead of asking the shard: under congestion an empty lease means
   * the class has had its share, and a flood must not turn into shard calls. Set it to the
   * congestion curve's `start`.
   */
  readonly askBelowLevel: number;
}

/**
 * Defaults: leases of 24 units of the isolate's traffic (0.25–2 s of it), renewed when half is
 * left (about 12 requests per call, ≤ 0.1 calls per request), empty classes retried every half
 * second, free and worked refused locally from half load. The shard's `leaseTtlMs` should be
 * at least twice `maxHorizonMs`.
 */
export const DEFAULT_ORIGIN_LEASE: OriginLeaseSettings = {
  horizonMs: 250,
  maxHorizonMs: 2_000,
  unitsPerCall: 24,
  renewAt: 0.5,
  emptyRetryMs: 500,
  minRate: 1,
  askBelowLevel: 0.5,
};

/** One lease held. */
interface Held {
  readonly bucket: number;
  /** The shard's key and end for it (unix ms, shard clock). */
  readonly expiresMs: number;
  /** When this isolate stops spending it: the call's send time + ttl (this isolate's clock). */
  readonly localExpiresMs: number;
  /** Units left to spend. */
  units: number;
  /** Units spent (their request forwarded: `confirm`) and not yet reported. */
  spent: number;
  /** Units taken for requests not yet forwarded nor refused: never reported, so `giveBack` can always return them. */
  pending: number;
}

/** What one class holds. */
interface ClassHold {
  leases: Held[];
  /** Units asked since the last call (demand, refused included). */
  seen: number;
  /** Calls in flight that ask for this class. */
  pending: number;
  /** The shard's last word on whether the class has room (null: never asked). */
  room: boolean | null;
  /** Unix ms of the last call that asked for this class. */
  lastAskMs: number;
  /** Rate estimate: units counted in the current and the previous 1 s windows. */
  windowStartMs: number;
  count: number;
  previous: number;
}

/** Units taken for a request, and from where (to give them back if the request is refused later). */
export interface Receipt {
  readonly cls: number;
  readonly parts: ReadonlyArray<readonly [Held, number]>;
}

/** The decision of `admit` / `retry`. */
export type Admission =
  | { kind: "admitted"; receipt: Receipt }
  /** Ask the shard now: `call(now, { cls, units })`, then `settle`. */
  | { kind: "ask" }
  /** A call for this class is in flight: `retry` when it settles. */
  | { kind: "wait" }
  /** No room for this class at the origin: refuse (402 with the congestion). */
  | { kind: "refused" };

const ASK: Admission = Object.freeze({ kind: "ask" });
const WAIT: Admission = Object.freeze({ kind: "wait" });
const REFUSED: Admission = Object.freeze({ kind: "refused" });

/** A call sent and not settled yet. */
export interface SentCall {
  readonly call: IsolateCall;
  readonly sentAtMs: number;
  /** Classes this call asks for. */
  readonly classes: readonly number[];
}

/** The leases of the origin ceiling one isolate holds. */
export class OriginLeases {
  private readonly settings: OriginLeaseSettings;
  private readonly held: ClassHold[];
  private inFlight = 0;
  private ttlMs = 2_000;
  private levelSeen = 0;
  /** Units that ended unspent in this isolate's leases (for measurement). */
  expiredUnits = 0;

  constructor(settings: OriginLeaseSettings = DEFAULT_ORIGIN_LEASE) {
    this.settings = settings;
    this.held = ADMISSION_CLASSES.map(() => ({
      leases: [],
      seen: 0,
      pending: 0,
      room: null,
      lastAskMs: -Infinity,
      windowStartMs: 0,
      count: 0,
      previous: 0,
    }));
  }

  /** The load level (0–1) of the shard's last answer. */
  level(): number {
    return this.levelSeen;
  }

  /** The shard's last word on whether class `cls` has room (null: never asked). */
  room(cls: number): boolean | null {
    return this.held[cls]!.room;
  }

  /** Units class `cls` can spend now. */
  holding(cls: number, nowMs: number): number {
    let n = 0;
    for (const l of this.held[cls]!.leases) if (nowMs < l.localExpiresMs) n += l.units;
    return n;
  }

  /**
   * The leases held, for checks and measurement: per lease its class, bucket and key, the
   * units left (spendable only while `nowMs` is before its end here), the units spent and not
   * reported yet, and the units taken for requests still being decided.
   */
  leases(
    nowMs: number,
  ): Array<{ cls: number; bucket: number; expiresMs: number; units: number; spent: number; pending: number; spendable: boolean }> {
    return this.held.flatMap((h, cls) =>
      h.leases.map((l) => ({
        cls,
        bucket: l.bucket,
        expiresMs: l.expiresMs,
        units: l.units,
        spent: l.spent,
        pending: l.pending,
        spendable: nowMs < l.localExpiresMs,
      })),
    );
  }

  /**
   * Units per second class `cls` asked in this isolate: the last full 1 s window, or the
   * current one once it is 250 ms old or has seen 3 units over at least 50 ms (counted over
   * 250 ms at least: a burst of concurrent requests is not a rate), as caller leases do.
   */
  rate(cls: number, nowMs: number): number {
    const h = this.held[cls]!;
    this.roll(h, nowMs);
    const elapsed = nowMs - h.windowStartMs;
    const current = elapsed >= 250 || (h.count >= 3 && elapsed >= 50) ? (h.count * 1000) / Math.max(elapsed, 250) : 0;
    return Math.max(h.previous, current);
  }

  private roll(h: ClassHold, nowMs: number): void {
    if (nowMs - h.windowStartMs >= 1000) {
      h.previous = nowMs - h.windowStartMs >= 2000 ? 0 : h.count;
      h.count = 0;
      h.windowStartMs = nowMs;
    }
  }

  /** Forget ended leases (their unreported spends are kept until the next call reports them). */
  private prune(h: ClassHold, nowMs: number): void {
    if (h.leases.length === 0 || h.leases[0]!.localExpiresMs > nowMs) return;
    h.leases = h.leases.filter((l) => {
      if (nowMs < l.localExpiresMs) return true;
      this.expiredUnits += l.units;
      l.units = 0;
      return l.spent > 0 || l.pending > 0;
    });
  }

  /** Take `units` from the class's leases, oldest first, or nothing. */
  private take(cls: number, units: number, nowMs: number): Receipt | null {
    const h = this.held[cls]!;
    this.prune(h, nowMs);
    if (this.holding(cls, nowMs) < units) return null;
    const parts: Array<readonly [Held, number]> = [];
    let left = units;
    // Invariant: spent only from unexpired leases, only what they hold.
    for (const l of h.leases) {
      if (left === 0) break;
      if (nowMs >= l.localExpiresMs || l.units === 0) continue;
      const n = Math.min(l.units, left);
      l.units -= n;
      l.pending += n;
      left -= n;
      parts.push([l, n]);
    }
    return { cls, parts };
  }

  /**
   * Admit a request of class `cls` worth `units` (one per JSON-RPC message), counting it as
   * demand.
   * @param units integer ≥ 1
   */
  admit(cls: number, units: number, nowMs: number): Admission {
    const h = this.held[cls]!;
    this.roll(h, nowMs);
    h.count += units;
    h.seen += units;
    return this.decide(cls, units, nowMs, true);
  }

  /** Admit again a request that waited for a call in flight (its demand was counted); never `wait` again. */
  retry(cls: number, units: number, nowMs: number): Admission {
    return this.decide(cls, units, nowMs, false);
  }

  private decide(cls: number, units: number, nowMs: number, mayWait: boolean): Admission {
    const receipt = this.take(cls, units, nowMs);
    if (receipt) return { kind: "admitted", receipt };
    const h = this.held[cls]!;
    if (mayWait && h.pending > 0) return WAIT;
    // paid and verified are never refused for this isolate's fragment; the others ask only
    // while the shard has not said the class has no room, and the origin is not congested or
    // no call asked for the class for 1 / `minRate` s (a class too slow here to keep a lease:
    // one proof-of-work payer; at most `minRate` such calls a second).
    if (cls <= 1) return ASK;
    const quiet = nowMs - h.lastAskMs >= 1000 / this.settings.minRate;
    if (h.room !== false && (this.levelSeen < this.settings.askBelowLevel || quiet)) return ASK;
    return REFUSED;
  }

  /**
   * The request the units of `receipt` were taken for was forwarded to the origin: they are
   * spent, and the next call reports them.
   */
  confirm(receipt: Receipt): void {
    for (const [l, units] of receipt.parts) {
      const n = Math.min(units, l.pending);
      l.pending -= n;
      l.spent += n;
    }
  }

  /**
   * Give back the units of a request refused after it was admitted here (by the caller's
   * layers): to its leases, as far as they have not ended (units taken for a request are
   * never reported before `confirm`, so nothing else is lost). The request no longer counts
   * as demand on the origin either (as far as that was not reported yet): a runaway loop
   * refused by its own budget does not raise the load level, nor this isolate's leases.
   * @returns the units given back
   */
  giveBack(receipt: Receipt, nowMs: number): number {
    let n = 0;
    let asked = 0;
    for (const [l, units] of receipt.parts) {
      const taken = Math.min(units, l.pending);
      const back = nowMs < l.localExpiresMs ? taken : 0;
      l.pending -= taken;
      l.units += back;
      n += back;
      asked += units;
    }
    const h = this.held[receipt.cls]!;
    h.seen = Math.max(0, h.seen - asked);
    h.count = Math.max(0, h.count - asked);
    return n;
  }

  /** Reused by `targets` (every method is synchronous). */
  private readonly targetBuf: number[] = ADMISSION_CLASSES.map(() => 0);

  /**
   * What each class's lease should hold now: the horizon's worth of its rate, or nothing below
   * `minRate`. Returns a buffer that the next call overwrites.
   */
  private targets(nowMs: number): readonly number[] {
    const t = this.targetBuf;
    let all = 0;
    for (let k = 0; k < t.length; k++) all += t[k] = this.rate(k, nowMs);
    const { horizonMs, maxHorizonMs, unitsPerCall, minRate } = this.settings;
    const horizon = all > 0 ? Math.min(maxHorizonMs, Math.max(horizonMs, (unitsPerCall * 1000) / all)) : 0;
    for (let k = 0; k < t.length; k++) t[k] = t[k]! < minRate ? 0 : Math.ceil((t[k]! * horizon) / 1000);
    return t;
  }

  /** Units of class `cls` in leases with more than half their life left. */
  private young(cls: number, nowMs: number): number {
    let n = 0;
    for (const l of this.held[cls]!.leases) if (l.localExpiresMs - nowMs > this.ttlMs / 2) n += l.units;
    return n;
  }

  /**
   * Whether a background call is due now (none is in flight): the leases of all classes
   * together hold less than `renewAt` of their targets, or one class less than half that (so
   * the classes renew together, one call for all), or a class refused for lack of room is to
   * be asked about again.
   */
  due(nowMs: number): boolean {
    if (this.inFlight > 0) return false;
    let young = 0;
    let target = 0;
    const targets = this.targets(nowMs);
    for (let k = 0; k < this.held.length; k++) {
      const h = this.held[k]!;
      if (h.room === false) {
        if (h.seen > 0 && nowMs - h.lastAskMs >= this.settings.emptyRetryMs) return true;
        continue;
      }
      const t = targets[k]!;
      if (t === 0) continue;
      const y = this.young(k, nowMs);
      if (y < Math.max(1, (t * this.settings.renewAt) / 2)) return true;
      young += Math.min(y, t);
      target += t;
    }
    return target > 0 && young < target * this.settings.renewAt;
  }

  /**
   * The next call to the shard: reports (spent, handed back), demand, wants, and `need` for a
   * waiting request. Resets what it reports (a call that fails loses its reports: the shard
   * then counts those units as out until their leases end — safe).
   */
  call(nowMs: number, need?: { cls: number; units: number }): SentCall {
    const reports: LeaseReport[] = [];
    const classes: number[] = [];
    const targets = this.targets(nowMs);
    const want = this.held.map((h, k) => {
      this.prune(h, nowMs);
      const newest = h.leases.length > 0 ? h.leases[h.leases.length - 1]! : undefined;
      const older = h.leases.reduce((a, l) => a + (l === newest ? 0 : l.units), 0);
      // Older leases are handed back once the newest holds as much (it outlives them).
      const handBack = newest !== undefined && older > 0 && newest.units >= older;
      for (const l of h.leases) {
        const returned = handBack && l !== newest ? l.units : 0;
        if (l.spent > 0 || returned > 0) reports.push({ bucket: l.bucket, expiresMs: l.expiresMs, spent: l.spent, returned });
        l.spent = 0;
        l.units -= returned;
      }
      h.leases = h.leases.filter((l) => l.pending > 0 || (nowMs < l.localExpiresMs && (l.units > 0 || l === newest)));
      // A class without room is asked for at most once per emptyRetryMs (at least one unit, to learn whether room came back).
      const noRoom = h.room === false;
      const mayAsk = !noRoom || need?.cls === k || (h.seen > 0 && nowMs - h.lastAskMs >= this.settings.emptyRetryMs);
      const w = !mayAsk ? 0 : Math.max(noRoom ? 1 : 0, targets[k]! - this.young(k, nowMs));
      if (w > 0 || need?.cls === k) {
        classes.push(k);
        h.pending += 1;
        h.lastAskMs = nowMs;
      }
      return w;
    });
    const seen = this.held.map((h) => {
      const n = h.seen;
      h.seen = 0;
      return n;
    });
    this.inFlight += 1;
    return { call: { reports, seen, want, need }, sentAtMs: nowMs, classes };
  }

  /**
   * A call settled: install its grants (spendable until `sentAtMs + ttlMs` by this clock) and
   * the shard's word on room and load; with a `need`, take it out of what was granted.
   * @param reply the shard's answer, or null when the call failed or timed out
   * @returns the need's receipt when the isolate holds it now (granted by this reply, or by
   *   another that settled meanwhile), else null
   */
  settle(sent: SentCall, reply: ShardReply | null, nowMs: number): Receipt | null {
    this.inFlight -= 1;
    for (const k of sent.classes) this.held[k]!.pending -= 1;
    if (!reply) return null;
    this.ttlMs = reply.ttlMs;
    this.levelSeen = reply.level;
    reply.room.forEach((r, k) => {
      this.held[k]!.room = r;
    });
    const localExpiresMs = sent.sentAtMs + reply.ttlMs;
    for (const g of reply.grants) this.install(g, localExpiresMs);
    const need = sent.call.need;
    if (!need || need.units === 0) return null;
    // Granted whole in this reply, it is there to take (unless the lease already ended). Not
    // granted, the isolate may still hold enough: another call in flight meanwhile brought units.
    return this.take(need.cls, need.units, nowMs);
  }

  private install(g: GrantPart, localExpiresMs: number): void {
    const h = this.held[g.cls]!;
    const l: Held = { bucket: g.bucket, expiresMs: g.expiresMs, localExpiresMs, units: g.units, spent: 0, pending: 0 };
    let i = h.leases.length;
    while (i > 0 && h.leases[i - 1]!.localExpiresMs > localExpiresMs) i--;
    h.leases.splice(i, 0, l);
  }
}
