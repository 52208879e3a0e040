/**
 * `OriginGate`: the Durable Objects of the origin ceiling (`policy.originCeiling`,
 * docs/allocation.md). One class in the `ORIGIN_GATE` namespace, in two roles, by the method
 * called — one class and one binding for both, so a deployment needs no new migration nor
 * binding in any environment:
 * - **shards** (`shard:<i>`, i < S, workers/objects/origin-shards.ts): `shard(req)` serves an
 *   isolate's lease call (`shardCall`, shared/limits/origin-shard.ts); when a report is due
 *   (`reportDue`: a second old, 100 ms when paid or verified traffic found no room, 4 s while
 *   the shard is quiet) it reports to the root in the background (`rootReport` → `root` →
 *   `applyRootReply`), after a call or, when calls stopped, at its alarm, which it keeps
 *   while it has traffic or units out on lease;
 * - the **root** (`root`): `root(req)` serves a shard's report (`rootCall`,
 *   shared/limits/origin-root.ts): the shares of the ceiling and the load level.
 * No request waits on the root; a request waits on a shard only when its class's lease in
 * the isolate is empty and it may ask (paid, verified, or a class with room).
 *
 * Each object keeps its state (plain data) in memory and in one SQLite row, written at each
 * call, so an object restarted mid-traffic goes on where it was (a shard starting full again
 * while its leases are still out would let the origin get more than the ceiling). The
 * settings come with every call (the policy is the gateway's): an object whose stored state
 * was made under other settings starts afresh (the origin ceiling holds nothing worth keeping
 * across a change of policy). Clocks: the object's own (`Date.now()`), never the caller's.
 */
import { DurableObject } from "cloudflare:workers";
import type { BucketConfig } from "../../shared/limits/bucket.ts";
import type { CongestionCurve } from "../../shared/limits/congestion.ts";
import { microBucket } from "../../shared/limits/micro-units.ts";
import type { ClassPolicy } from "../../shared/limits/origin-classes.ts";
import {
  DEFAULT_ROOT_SETTINGS,
  initialShares,
  newRoot,
  type RootSettings,
  type RootState,
  rootCall,
} from "../../shared/limits/origin-root.ts";
import {
  applyRootReply,
  DEFAULT_SHARD_SETTINGS,
  type IsolateCall,
  newShard,
  nextReportMs,
  type RootReply,
  type RootReport,
  reportDue,
  rootReport,
  type ShardReply,
  type ShardSettings,
  type ShardState,
  shardCall,
} from "../../shared/limits/origin-shard.ts";

/** The origin ceiling's settings, sent with every call (built once per gateway, workers/objects/origin-shards.ts). */
export interface OriginConfig {
  /** Names these settings: state stored under another key is dropped. */
  key: string;
  /** The whole ceiling: capacity (units, one per JSON-RPC message) and refill (units per second). */
  ceiling: BucketConfig;
  /** Shards S (`shardsFor`). */
  shards: number;
  classes: ClassPolicy;
  curve: Pick<CongestionCurve, "riseSeconds" | "fallSeconds">;
  /** The root object's id in this namespace (`DurableObjectId.toString()`): where a shard reports. */
  root: string;
}

/** An isolate's call to shard `shard`. */
export interface ShardRequest {
  config: OriginConfig;
  shard: number;
  call: IsolateCall;
}

/** A shard's report to the root. */
export interface RootRequest {
  config: OriginConfig;
  report: RootReport;
}

/** What one object holds: a shard's or the root's state, with the settings it was made under. */
type Held =
  | { kind: "shard"; config: OriginConfig; shard: number; state: ShardState }
  | { kind: "root"; config: OriginConfig; state: RootState };

/** Milliseconds after a report is due that the shard's alarm makes it, when no isolate's call made it first (`arm`). */
const ALARM_SLACK_MS = 500;

/** Milliseconds a shard waits for the root before giving up a report (the next one is a second later). */
const ROOT_TIMEOUT_MS = 2_000;

const shardSettings = (c: OriginConfig): ShardSettings => ({ classes: c.classes, ...DEFAULT_SHARD_SETTINGS });
const rootSettings = (c: OriginConfig): RootSettings => ({
  ceiling: microBucket(c.ceiling),
  shards: c.shards,
  classes: c.classes,
  curve: c.curve,
  ...DEFAULT_ROOT_SETTINGS,
});

export class OriginGate extends DurableObject<{ ORIGIN_GATE?: DurableObjectNamespace<OriginGate> }> {
  private readonly sql: SqlStorage;
  /** The state, as last read or written (undefined: not read yet; null: none stored). */
  private held: Held | null | undefined;
  /** Unix ms of the alarm this instance set, or null. */
  private alarmAtMs: number | null = null;
  /** A report to the root is in flight. */
  private reporting = false;

  constructor(ctx: DurableObjectState, env: { ORIGIN_GATE?: DurableObjectNamespace<OriginGate> }) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // The single-bucket gate of earlier versions kept its bucket here: nothing to carry over.
    this.sql.exec(
      "DROP TABLE IF EXISTS bucket; CREATE TABLE IF NOT EXISTS origin (id INTEGER PRIMARY KEY CHECK (id = 0), held TEXT NOT NULL)",
    );
  }

  /**
   * Serve an isolate's lease call (shared/limits/origin-shard.ts `shardCall`) at this
   * object's clock.
   * @throws TypeError on a malformed call (nothing applied)
   */
  shard(req: ShardRequest): ShardReply {
    const nowMs = Date.now();
    let held = this.load();
    if (held?.kind !== "shard" || held.config.key !== req.config.key || held.shard !== req.shard) {
      const share = initialShares(microBucket(req.config.ceiling), req.config.shards, DEFAULT_ROOT_SETTINGS.initialSharePpm)[req.shard]!;
      held = { kind: "shard", config: req.config, shard: req.shard, state: newShard(share, shardSettings(req.config), nowMs) };
    }
    const reply = shardCall(held.state, shardSettings(held.config), req.call, nowMs);
    this.save(held);
    void this.report(held, nowMs);
    return reply;
  }

  /**
   * Serve a shard's report (shared/limits/origin-root.ts `rootCall`) at this object's clock.
   * @throws TypeError on a malformed report (nothing changed)
   */
  root(req: RootRequest): RootReply {
    const nowMs = Date.now();
    let held = this.load();
    if (held?.kind !== "root" || held.config.key !== req.config.key)
      held = { kind: "root", config: req.config, state: newRoot(rootSettings(req.config), nowMs) };
    const reply = rootCall(held.state, rootSettings(held.config), req.report, nowMs);
    this.save(held);
    return reply;
  }

  /** A shard's alarm: its report when due (awaited), and the next alarm while it has traffic. */
  override async alarm(): Promise<void> {
    this.alarmAtMs = null;
    const held = this.load();
    if (held?.kind === "shard") await this.report(held, Date.now());
  }

  /**
   * Report to the root when due, then keep an alarm while there is traffic. A call does not
   * wait for the report (the promise settles when the root's answer is applied, or failed).
   */
  private report(held: Held & { kind: "shard" }, nowMs: number): Promise<void> {
    const settings = shardSettings(held.config);
    const ns = this.env.ORIGIN_GATE;
    let done = Promise.resolve();
    if (!this.reporting && ns && reportDue(held.state, settings, nowMs)) {
      const report = rootReport(held.state, settings, held.shard, nowMs);
      this.save(held);
      this.reporting = true;
      const root = ns.get(ns.idFromString(held.config.root));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ROOT_TIMEOUT_MS} ms`)), ROOT_TIMEOUT_MS)),
      );
      done = Promise.race([root.root({ config: held.config, report }) as Promise<RootReply>, late])
        .then((reply) => {
          // Applied only to the state it answers (not to one started afresh meanwhile).
          if (this.held === held && applyRootReply(held.state, settings, reply, Date.now())) this.save(held);
        })
        .catch((err: unknown) => console.error("tollbooth: OriginGate root report failed", err))
        .finally(() => {
          clearTimeout(timer);
          this.reporting = false;
          this.arm(held, Date.now(), true);
        });
    }
    this.arm(held, nowMs);
    return done;
  }

  /**
   * An alarm for the next report, while the shard has had requests since its last one or has
   * units out on lease. The alarm is the fallback for when the isolates' calls stop: it is set
   * `ALARM_SLACK_MS` after the report is due (unless pressed), so that while calls flow one of
   * them makes the report, and is moved after each report (`reported`) instead of firing
   * once per report for nothing (an alarm is a billed invocation; moving it, a write). A
   * report that falls due before the alarm (the shard turned busy, or pressed) moves it earlier.
   */
  private arm(held: Held & { kind: "shard" }, nowMs: number, reported = false): void {
    const s = held.state;
    const busy = s.seen.some((n) => n > 0) || s.origin.buckets.some((b) => b.out.length > 0);
    if (!busy) return;
    const settings = shardSettings(held.config);
    const at = Math.max(nowMs + 10, nextReportMs(s, settings, nowMs) + (s.pressed ? 0 : ALARM_SLACK_MS));
    if (this.alarmAtMs === at || (this.alarmAtMs !== null && !reported && this.alarmAtMs < at)) return;
    this.alarmAtMs = at;
    void this.ctx.storage.setAlarm(at);
  }

  private load(): Held | null {
    if (this.held !== undefined) return this.held;
    const row = this.sql.exec<{ held: string }>("SELECT held FROM origin WHERE id = 0").toArray()[0];
    const held = row ? (JSON.parse(row.held) as Held) : null;
    // JSON has no -Infinity: "never" was stored as null.
    if (held?.kind === "shard") {
      held.state.reportedMs ??= -Infinity;
      // Rows stored before quiet reports had no `lastDemand`: busy until the next report says otherwise.
      held.state.lastDemand ??= Infinity;
    }
    if (held?.kind === "root") held.state.blockedAtMs ??= -Infinity;
    this.held = held;
    return held;
  }

  private save(held: Held): void {
    this.held = held;
    this.sql.exec("INSERT OR REPLACE INTO origin (id, held) VALUES (0, ?)", JSON.stringify(held));
  }
}
