/**
 * The cost model of `npm run bench:gateway`: what a path costs on Cloudflare's Workers Paid
 * plan, from the operations the bench counted per admitted request and the list prices of
 * bench/prices.ts.
 *
 * - {@link costPerMillion}: US dollars per million admitted requests at the marginal
 *   (beyond-included) prices: Σ units per request × price per million units.
 * - {@link monthlyCost}: US dollars for a month of N requests: the $5 base plus, per item,
 *   (N × units per request − the plan's included amount, at least 0) × price. The included
 *   amounts are the account's: the projection assumes the gateway is all the account runs.
 */
import { BASE_USD_PER_MONTH, DO_BILLED_GB, PRICES, type PriceKey } from "./prices.ts";

/** Billed operations per admitted request (each ≥ 0). */
export interface Ops {
  /** Workers requests (1: the request itself). */
  workerRequests: number;
  /** Workers CPU time, ms. */
  cpuMs: number;
  /** Durable Object requests (RPC calls to CallerState / OriginGate / the limiter, `Stats` flushes). */
  doRequests: number;
  /** Seconds Durable Objects are active (billed at 128 MB each). */
  doActiveSeconds: number;
  /** SQLite rows written in Durable Objects (`setAlarm` counts as one). */
  doRowsWritten: number;
  /** Workers KV reads. */
  kvReads: number;
  /** Workers Logs events: the invocation log plus each console line. */
  logEvents: number;
  /** Analytics Engine data points. */
  aePoints: number;
  /** Rate Limiting binding calls (priced at $0: none listed). */
  rateLimitCalls: number;
}

/** Units of each priced item per admitted request. */
function unitsPerRequest(ops: Ops): Record<PriceKey, number> {
  return {
    workerRequests: ops.workerRequests,
    workerCpuMs: ops.cpuMs,
    doRequests: ops.doRequests,
    doDuration: ops.doActiveSeconds * DO_BILLED_GB,
    doRowsWritten: ops.doRowsWritten,
    kvReads: ops.kvReads,
    logEvents: ops.logEvents,
    aePoints: ops.aePoints,
    rateLimitCalls: ops.rateLimitCalls,
  };
}

/** A cost, in US dollars, in total and by priced item. */
export interface Cost {
  usd: number;
  byItem: Record<PriceKey, number>;
}

/**
 * US dollars per million admitted requests at the marginal prices (nothing included).
 * @throws RangeError when an operation count is negative or not finite
 */
export function costPerMillion(ops: Ops): Cost {
  check(ops);
  const units = unitsPerRequest(ops);
  const byItem = {} as Record<PriceKey, number>;
  let usd = 0;
  for (const key of Object.keys(PRICES) as PriceKey[]) {
    byItem[key] = units[key] * PRICES[key].usdPerMillion;
    usd += byItem[key];
  }
  return { usd, byItem };
}

/**
 * US dollars for a month of `requests` admitted requests: the plan's base price plus each
 * item beyond its included amount.
 * @param requests admitted requests in the month (≥ 0)
 * @throws RangeError when `requests` or an operation count is negative or not finite
 */
export function monthlyCost(ops: Ops, requests: number): Cost {
  check(ops);
  if (!(Number.isFinite(requests) && requests >= 0)) throw new RangeError(`requests must be a finite number ≥ 0, got ${requests}`);
  const units = unitsPerRequest(ops);
  const byItem = {} as Record<PriceKey, number>;
  let usd = BASE_USD_PER_MONTH;
  for (const key of Object.keys(PRICES) as PriceKey[]) {
    const billed = Math.max(0, units[key] * requests - PRICES[key].includedPerMonth);
    byItem[key] = (billed / 1e6) * PRICES[key].usdPerMillion;
    usd += byItem[key];
  }
  return { usd, byItem };
}

function check(ops: Ops): void {
  for (const [k, v] of Object.entries(ops)) {
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`ops.${k} must be a finite number ≥ 0, got ${v}`);
  }
}
