/**
 * `Stats`: the Durable Object (one per deployment, `statsStub()`, binding `TOLLBOOTH_STATS`)
 * that holds the gateway's metrics, fed by every isolate's flushes (workers/observe/flusher.ts),
 * in its SQLite storage:
 * - `minutes`: per-minute counters and latency histogram (the last `RETAIN_MINUTES` minutes;
 *   older rows are deleted by each flush);
 * - `totals`, `latency_totals`: monotonic sums since the object was created (Prometheus counters);
 * - `callers`, `callers_error`: per minute, a Misra–Gries summary of the shortened callers'
 *   requests (at most `MAX_CALLERS_PER_MINUTE` rows, and its error; counters.ts
 *   `addCallers`): state does not grow per invented caller, and a heavy caller is named
 *   however many light ones arrive;
 * - `recent`: the latest `MAX_RECENT` decision records the isolates kept whole (every refusal,
 *   payment, solve and error; plain admitted requests sampled as the decision log is:
 *   workers/observe/observe.ts), one row each;
 * - `hours`: per clock hour, the money counters (`HOUR_COUNTERS`: payments, amounts paid,
 *   credentials redeemed), the last `RETAIN_HOURS` hours (what a day brought in).
 * A flush writes one row per minute it carries, per counter name, per latency bucket and per
 * caller of its summaries (aggregated in the isolate: never one row per request), plus its
 * kept records: with the default sampling a few dozen rows per flush, whatever its requests.
 * Each method runs synchronously to completion (a Durable Object handles one call at a
 * time), so every read-modify-write below is atomic.
 */
import { DurableObject } from "cloudflare:workers";
import {
  bump,
  counterKey,
  emptyLatency,
  hourCountersOf,
  MAX_CALLERS_PER_MINUTE,
  MAX_RECENT,
  minuteOf,
  percentiles,
  type StatsBatch,
} from "./counters.ts";
import type { CallerCount, Counters, DecisionRecord, HourStats, MinuteStats, StatsSnapshot } from "./types.ts";

/** Minutes of per-minute rows kept (the dashboard shows the last 60). */
export const RETAIN_MINUTES = 120;
/** Hours of per-hour money rows kept. */
export const RETAIN_HOURS = 48;
/** Hours `snapshot()` returns in `hours` (a day, the current hour included). */
export const DAY_HOURS = 24;
/** Milliseconds in an hour. */
const HOUR_MS = 3_600_000;
/** The unix ms of the clock hour `ms` falls in. */
const hourOf = (ms: number): number => Math.floor(ms / HOUR_MS) * HOUR_MS;

/** Callers listed by `snapshot()`. */
export const TOP_CALLERS = 20;

/** Arguments of `Stats.snapshot()`. */
export interface SnapshotRequest {
  /** Unix ms of "now" (the last minute of the window is the one holding it). */
  nowMs: number;
  /** Minutes in the window, 1–`RETAIN_MINUTES` (clamped). */
  minutes: number;
}

export class Stats extends DurableObject {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS minutes (start_ms INTEGER PRIMARY KEY, counters TEXT NOT NULL, latency TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value REAL NOT NULL);
      CREATE TABLE IF NOT EXISTS latency_totals (bucket INTEGER PRIMARY KEY, count INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS callers (start_ms INTEGER NOT NULL, caller TEXT NOT NULL, requests INTEGER NOT NULL, admitted INTEGER NOT NULL, refused INTEGER NOT NULL, PRIMARY KEY (start_ms, caller));
      CREATE TABLE IF NOT EXISTS callers_error (start_ms INTEGER PRIMARY KEY, error INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS recent (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS hours (start_ms INTEGER PRIMARY KEY, counters TEXT NOT NULL);
    `);
  }

  /**
   * Add an isolate's batch: per-minute counters, latency and callers, the totals, the
   * recent records; then drop minutes older than `RETAIN_MINUTES` before the newest.
   * @returns the object's flush count so far
   */
  flush(batch: StatsBatch): { flushes: number } {
    const flushCounter = counterKey("stats_flushes_total");
    const entries = Object.entries(batch.minutes ?? {})
      .map(([key, m]) => [minuteOf(Number(key)), m] as const)
      .filter(([startMs]) => Number.isFinite(startMs));
    // The flush itself is counted in the minute of its newest records, in that minute's one write.
    const newest = Math.max(0, ...entries.map(([startMs]) => startMs));
    const totals: Counters = { [flushCounter]: 1 };
    const latencyTotals = emptyLatency();
    for (const [startMs, m] of entries) {
      const row = this.sql
        .exec<{ counters: string; latency: string }>("SELECT counters, latency FROM minutes WHERE start_ms = ?", startMs)
        .toArray()[0];
      const counters: Counters = row ? JSON.parse(row.counters) : {};
      const latency: number[] = row ? JSON.parse(row.latency) : emptyLatency();
      for (const [k, v] of Object.entries(m.counters)) {
        bump(counters, k, v);
        bump(totals, k, v);
      }
      m.latency.forEach((n, i) => {
        if (i >= latency.length) return;
        latency[i]! += n;
        latencyTotals[i]! += n;
      });
      if (startMs === newest) bump(counters, flushCounter);
      this.sql.exec(
        "INSERT OR REPLACE INTO minutes (start_ms, counters, latency) VALUES (?, ?, ?)",
        startMs,
        JSON.stringify(counters),
        JSON.stringify(latency),
      );
      this.addCallers(startMs, m.callers, m.callersError);
      this.addHour(startMs, m.counters);
    }
    for (const [name, value] of Object.entries(totals)) {
      this.sql.exec(
        "INSERT INTO totals (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        name,
        value,
      );
    }
    latencyTotals.forEach((n, i) => {
      if (n > 0)
        this.sql.exec(
          "INSERT INTO latency_totals (bucket, count) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET count = count + excluded.count",
          i,
          n,
        );
    });
    for (const r of (batch.recent ?? []).slice(-MAX_RECENT)) this.sql.exec("INSERT INTO recent (record) VALUES (?)", JSON.stringify(r));
    this.sql.exec("DELETE FROM recent WHERE seq <= (SELECT MAX(seq) FROM recent) - ?", MAX_RECENT);
    // Retention: keep RETAIN_MINUTES minutes before the newest one held.
    const latest = this.sql.exec<{ m: number | null }>("SELECT MAX(start_ms) AS m FROM minutes").one().m;
    if (latest !== null) {
      const cutoff = latest - RETAIN_MINUTES * 60_000;
      this.sql.exec("DELETE FROM minutes WHERE start_ms <= ?", cutoff);
      this.sql.exec("DELETE FROM callers WHERE start_ms <= ?", cutoff);
      this.sql.exec("DELETE FROM callers_error WHERE start_ms <= ?", cutoff);
      this.sql.exec("DELETE FROM hours WHERE start_ms <= ?", hourOf(latest) - RETAIN_HOURS * HOUR_MS);
    }
    return { flushes: this.sql.exec<{ value: number }>("SELECT value FROM totals WHERE name = ?", flushCounter).one().value };
  }

  /** Add a minute's money counters (`HOUR_COUNTERS`) to its clock hour's row (none written when it has none). */
  private addHour(minuteMs: number, counters: Counters): void {
    const money = Object.entries(hourCountersOf(counters));
    if (money.length === 0) return;
    const startMs = hourOf(minuteMs);
    const row = this.sql.exec<{ counters: string }>("SELECT counters FROM hours WHERE start_ms = ?", startMs).toArray()[0];
    const sums: Counters = row ? JSON.parse(row.counters) : {};
    for (const [k, v] of money) bump(sums, k, v);
    this.sql.exec("INSERT OR REPLACE INTO hours (start_ms, counters) VALUES (?, ?)", startMs, JSON.stringify(sums));
  }

  /** The last `DAY_HOURS` clock hours' money rows up to the one holding `nowMs`, oldest first, empty hours included. */
  private hoursUpTo(nowMs: number): HourStats[] {
    const last = hourOf(nowMs);
    const first = last - (DAY_HOURS - 1) * HOUR_MS;
    const rows = new Map(
      this.sql
        .exec<{ start_ms: number; counters: string }>(
          "SELECT start_ms, counters FROM hours WHERE start_ms >= ? AND start_ms <= ?",
          first,
          last,
        )
        .toArray()
        .map((r) => [r.start_ms, JSON.parse(r.counters) as Counters]),
    );
    const hours: HourStats[] = [];
    for (let t = first; t <= last; t += HOUR_MS) hours.push({ startMs: t, counters: rows.get(t) ?? {} });
    return hours;
  }

  /**
   * Merge an isolate's summary of a minute's callers into the minute's (counters.ts
   * `addCallers`, in SQL): counts added; past `MAX_CALLERS_PER_MINUTE` rows, the
   * (k + 1)-th largest count taken off every row, rows at 0 deleted, the minute's error grown by it.
   */
  private addCallers(startMs: number, callers: StatsBatch["minutes"][string]["callers"], error = 0): void {
    for (const [caller, row] of Object.entries(callers ?? {})) {
      this.sql.exec(
        `INSERT INTO callers (start_ms, caller, requests, admitted, refused) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (start_ms, caller) DO UPDATE SET requests = requests + excluded.requests, admitted = admitted + excluded.admitted, refused = refused + excluded.refused`,
        startMs,
        String(caller).slice(0, 64),
        row.requests,
        row.admitted,
        row.refused,
      );
    }
    const cut =
      this.sql
        .exec<{ requests: number }>(
          "SELECT requests FROM callers WHERE start_ms = ? ORDER BY requests DESC LIMIT 1 OFFSET ?",
          startMs,
          MAX_CALLERS_PER_MINUTE,
        )
        .toArray()[0]?.requests ?? 0;
    if (cut > 0) {
      this.sql.exec(
        "UPDATE callers SET requests = requests - ?, admitted = MAX(0, admitted - ?), refused = MAX(0, refused - ?) WHERE start_ms = ?",
        cut,
        cut,
        cut,
        startMs,
      );
      this.sql.exec("DELETE FROM callers WHERE start_ms = ? AND requests <= 0", startMs);
    }
    const grown = (Number(error) || 0) + cut;
    if (grown > 0)
      this.sql.exec(
        "INSERT INTO callers_error (start_ms, error) VALUES (?, ?) ON CONFLICT (start_ms) DO UPDATE SET error = error + excluded.error",
        startMs,
        grown,
      );
  }

  /** The metrics for the admin API: the window's minutes (oldest first, empty ones included), totals, percentiles, top callers, recent records. */
  snapshot(req: SnapshotRequest): StatsSnapshot {
    const count = Math.min(RETAIN_MINUTES, Math.max(1, Math.floor(Number(req.minutes) || 1)));
    const last = minuteOf(Number(req.nowMs) || Date.now());
    const first = last - (count - 1) * 60_000;
    const rows = new Map(
      this.sql
        .exec<{ start_ms: number; counters: string; latency: string }>(
          "SELECT start_ms, counters, latency FROM minutes WHERE start_ms >= ? AND start_ms <= ?",
          first,
          last,
        )
        .toArray()
        .map((r) => [r.start_ms, r]),
    );
    const minutes: MinuteStats[] = [];
    const window = emptyLatency();
    for (let t = first; t <= last; t += 60_000) {
      const r = rows.get(t);
      const latency: number[] = r ? JSON.parse(r.latency) : emptyLatency();
      for (const [i, n] of latency.entries()) window[i]! += n;
      minutes.push({ startMs: t, counters: r ? JSON.parse(r.counters) : {}, latency });
    }
    const totals: Counters = {};
    for (const r of this.sql.exec<{ name: string; value: number }>("SELECT name, value FROM totals ORDER BY name"))
      totals[r.name] = r.value;
    const latencyTotals = emptyLatency();
    for (const r of this.sql.exec<{ bucket: number; count: number }>("SELECT bucket, count FROM latency_totals")) {
      if (r.bucket < latencyTotals.length) latencyTotals[r.bucket] = r.count;
    }
    // Every caller's true count in the window is at most its summed count plus the minutes' errors.
    const error =
      this.sql
        .exec<{ e: number | null }>("SELECT SUM(error) AS e FROM callers_error WHERE start_ms >= ? AND start_ms <= ?", first, last)
        .one().e ?? 0;
    const topCallers: CallerCount[] = this.sql
      .exec<{ caller: string; requests: number; admitted: number; refused: number }>(
        "SELECT caller, SUM(requests) AS requests, SUM(admitted) AS admitted, SUM(refused) AS refused FROM callers WHERE start_ms >= ? AND start_ms <= ? GROUP BY caller ORDER BY requests DESC, caller LIMIT ?",
        first,
        last,
        TOP_CALLERS,
      )
      .toArray()
      .map((r) => ({ caller: r.caller, requests: r.requests, admitted: r.admitted, refused: r.refused, error }));
    const recent = this.sql
      .exec<{ record: string }>("SELECT record FROM recent ORDER BY seq DESC LIMIT ?", MAX_RECENT)
      .toArray()
      .map((r) => JSON.parse(r.record) as DecisionRecord);
    const nowMs = Number(req.nowMs) || Date.now();
    return { nowMs, minutes, totals, hours: this.hoursUpTo(nowMs), latencyTotals, latencyMs: percentiles(window), topCallers, recent };
  }
}
