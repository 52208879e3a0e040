/**
 * One Workers Analytics Engine data point per request (binding `TOLLBOOTH_ANALYTICS`), read
 * back with the Analytics Engine SQL API (docs/observability.md has the schema and queries).
 * Positions are fixed: a column's meaning never changes once written.
 *
 * | column | value |
 * |---|---|
 * | `index1` | caller, shortened (the sampling key) |
 * | `blob1`…`blob11` | decision, reason, scheme, method, rpc, tool, plan, network, route, paid unit (`sats`/`atomic`), origin error (`unreachable`/`timeout`) |
 * | `double1`…`double9` | status, origin status (0: not asked), latency ms, cost, difficulty (0: none), amount paid (0: none), credits left (-1: none), redeemed (0/1), leased (0/1) |
 */
import type { DecisionRecord } from "./types.ts";

/** Longest blob written, in characters (Analytics Engine caps a data point's blobs at 16 KB in all). */
const BLOB_MAX = 256;

/** The data point of a record (`AnalyticsEngineDataset.writeDataPoint`'s argument). */
export function dataPoint(r: DecisionRecord): { indexes: string[]; blobs: string[]; doubles: number[] } {
  const blob = (s: string | undefined) => (s ?? "").slice(0, BLOB_MAX);
  const amount = r.paid ? Number(r.paid.amount) : 0;
  return {
    // An index is at most 96 bytes; a shortened caller is far below.
    indexes: [r.caller.slice(0, 32)],
    blobs: [r.decision, r.reason, r.scheme, r.method, r.rpc, r.tool, r.plan, r.network, r.route, r.paid?.unit, r.originError].map(blob),
    doubles: [
      r.status,
      r.originStatus ?? 0,
      r.latencyMs,
      r.cost,
      r.difficulty ?? 0,
      Number.isFinite(amount) ? amount : 0,
      r.credits ?? -1,
      r.redeemed ? 1 : 0,
      r.leased ? 1 : 0,
    ],
  };
}

/** Write a record's data point; a failure is logged, never thrown (observability never fails a request). */
export function writeRecord(dataset: AnalyticsEngineDataset, r: DecisionRecord): void {
  try {
    dataset.writeDataPoint(dataPoint(r));
  } catch (err) {
    console.error("tollbooth: Analytics Engine writeDataPoint failed", err);
  }
}
