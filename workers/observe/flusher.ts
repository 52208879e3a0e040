/**
 * `statsFlusher(options)`: one isolate's aggregate of its decision records, flushed into the
 * `Stats` Durable Object at most once every `intervalMs` — never one call per request.
 *
 * The first record of an interval schedules one flush `intervalMs` later, through the
 * request's `waitUntil` (so the flush runs even when no other request follows: the end of
 * a burst); the records that arrive meanwhile join the same batch. A failed flush is
 * logged and its batch kept, merged into the next one (bounded as every batch is: at most
 * `MAX_BATCH_MINUTES` minutes, `MAX_CALLERS_PER_MINUTE` callers per minute,
 * `MAX_RECENT` records), and sent with the next flush, which the next record schedules.
 */
import { addRecord, emptyBatch, mergeBatch, type StatsBatch } from "./counters.ts";
import type { Stats } from "./stats-object.ts";
import type { DecisionRecord } from "./types.ts";

/** Name of the one `Stats` object every isolate flushes into (`idFromName`). */
export const STATS_OBJECT_NAME = "tollbooth-stats";
/** Default flush interval, ms. */
export const DEFAULT_FLUSH_MS = 5_000;
/** Shortest flush interval accepted, ms (0 turns flushing off). */
export const MIN_FLUSH_MS = 100;
/** Longest flush interval accepted, ms (a `waitUntil` lasts at most 30 s after the response). */
export const MAX_FLUSH_MS = 20_000;

/**
 * The flush interval of the var `TOLLBOOTH_METRICS_FLUSH_MS` (decimal ms; unset: the default).
 * @returns ms, or 0 (flushes off)
 * @throws TypeError naming the var when it is not 0 or an integer from `MIN_FLUSH_MS` to `MAX_FLUSH_MS`
 */
export function parseFlushMs(value: string | undefined): number {
  if (value === undefined || value.trim() === "") return DEFAULT_FLUSH_MS;
  const ms = /^\d{1,6}$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (ms !== 0 && !(ms >= MIN_FLUSH_MS && ms <= MAX_FLUSH_MS)) {
    throw new TypeError(
      `TOLLBOOTH_METRICS_FLUSH_MS must be 0 (off) or an integer from ${MIN_FLUSH_MS} to ${MAX_FLUSH_MS} (ms), got ${JSON.stringify(value)}`,
    );
  }
  return ms;
}

/** The one `Stats` object of a namespace (what the admin API reads, what isolates flush into). */
export function statsStub(namespace: DurableObjectNamespace<Stats>): DurableObjectStub<Stats> {
  return namespace.get(namespace.idFromName(STATS_OBJECT_NAME));
}

/** Options of `statsFlusher()`. */
export interface FlusherOptions {
  /** The `Stats` namespace (binding `TOLLBOOTH_STATS`). */
  stats: DurableObjectNamespace<Stats>;
  /** Milliseconds between flushes (`MIN_FLUSH_MS`–`MAX_FLUSH_MS`). */
  intervalMs: number;
}

/** An isolate's aggregate: `add` each record with the request's `waitUntil`; `flush` sends what is pending. */
export interface StatsFlusher {
  /**
   * Aggregate a record (counted whatever `recent` says); schedules a flush through `waitUntil`
   * when none is pending. `recent` false: the record is not among the latest decisions sent
   * (a plain admitted request sampled out, workers/observe/observe.ts). Default true.
   */
  add(record: DecisionRecord, waitUntil: ((p: Promise<unknown>) => void) | null, recent?: boolean): void;
  /** Send the pending batch now (no-op when empty). Never throws: a failure is logged and the batch kept. */
  flush(): Promise<void>;
}

/**
 * Build an isolate's flusher.
 * @throws TypeError when `intervalMs` is out of range or `stats` is not a namespace
 */
export function statsFlusher(options: FlusherOptions): StatsFlusher {
  if (!Number.isInteger(options.intervalMs) || options.intervalMs < MIN_FLUSH_MS || options.intervalMs > MAX_FLUSH_MS) {
    throw new TypeError(
      `statsFlusher(): option \`intervalMs\` must be an integer from ${MIN_FLUSH_MS} to ${MAX_FLUSH_MS} ms, got ${options.intervalMs}`,
    );
  }
  if (!options.stats || typeof options.stats.idFromName !== "function") {
    throw new TypeError("statsFlusher(): option `stats` must be the Stats Durable Object namespace");
  }
  const isolate = crypto.randomUUID();
  let pending: StatsBatch | null = null;
  let scheduled = false;

  const flush = async (): Promise<void> => {
    scheduled = false;
    const batch = pending;
    pending = null;
    if (!batch || batch.records === 0) return;
    try {
      await statsStub(options.stats).flush(batch);
    } catch (err) {
      // Kept for the next flush (bounded like any batch); the next record schedules it.
      console.error(`tollbooth: Stats.flush failed; ${batch.records} record(s) kept for the next flush`, err);
      // Records that arrived meanwhile are newer: the failed batch goes before them.
      const next = pending ?? emptyBatch(isolate);
      mergeBatch(next, batch);
      pending = next;
    }
  };

  return {
    add(record, waitUntil, recent = true) {
      pending ??= emptyBatch(isolate);
      addRecord(pending, record, recent);
      if (scheduled) return;
      scheduled = true;
      const done = new Promise<void>((resolve) => setTimeout(resolve, options.intervalMs)).then(flush);
      if (waitUntil) waitUntil(done);
    },
    flush,
  };
}
