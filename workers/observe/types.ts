/**
 * What tollbooth records about each request it decides (the decision log, the metrics,
 * the admin API and its dashboard read these shapes). One `DecisionRecord` per request,
 * written as one JSON log line; counters aggregated per minute by the `Stats` Durable
 * Object (workers/observe/stats-object.ts).
 */

/**
 * How a request ended, as the caller saw it:
 * - `admitted`: forwarded to the origin (free bucket, access-token credits or a payment);
 * - `admitted_unmetered`: forwarded without metering (the store was down, `onStoreError: "open"`);
 * - `payment_required`: 402 (or 401 for a refused L402 credential) offering ways through;
 * - `rate_limited`: 429 from a layer (`reason` names it: network, ceiling, sessions, streams, origin, over_budget in 429 mode);
 * - `bad_request`: refused for its form (400, 403, 405, 408, 413, 415);
 * - `unavailable`: 503 (the rate-limit state or a payment service could not be reached);
 * - `blocked`: 403 for a caller an operator blocked;
 * - `own_endpoint`: tollbooth's own endpoints (`/.well-known/tollbooth/…`).
 */
export type Decision =
  | "admitted"
  | "admitted_unmetered"
  | "payment_required"
  | "rate_limited"
  | "bad_request"
  | "unavailable"
  | "blocked"
  | "own_endpoint";

/** One request's decision: one JSON line in the log (Workers Logs, `wrangler tail`). No secret or full credential ever appears in it. */
export interface DecisionRecord {
  /** Unix ms when the gateway read the request (after its body arrived). */
  time: number;
  /** The route's name when the gateway fronts several origins; absent for the single-origin configuration. */
  route?: string;
  /** The caller identity shortened (`shortCaller`, workers/observe/counters.ts): a network or payer address whole (`ip:203.0.113.0/24`, `evm:0x…`), a credential hash cut to 12 hex characters (`key:3f9a0c1d2e4b…`). */
  caller: string;
  /** The caller's network (`CF-Connecting-IP` reduced to the policy's prefix). */
  network: string;
  /** The caller's plan name. */
  plan: string;
  /** HTTP method. */
  method: string;
  /**
   * The request's path (percent-encoded as sent, no query string, cut to `MAX_PATH_CHARS`
   * with `…`), on a request that is not a JSON-RPC message (no `rpc`): a GET, a DELETE, a
   * path other than the MCP endpoint. Absent when `rpc` is set.
   */
  path?: string;
  /** JSON-RPC method of a single message (`tools/call`), `batch` for a batch, absent for no body. */
  rpc?: string;
  /** Tool name of a `tools/call`. */
  tool?: string;
  /** Units charged (or that would have been). */
  cost: number;
  decision: Decision;
  /** The refusal's reason (`over_budget`, `network`, `solution_spent`, …), or what paid an admitted request (`bucket`, `token`, a scheme's `prefix` such as `solution`, `free`). */
  reason?: string;
  /** The payment scheme whose credential the request carried (its `type`, e.g. `pow`), or `token` for an access token. */
  scheme?: string;
  /** Difficulty (leading zero bits) of the challenge offered, on a 402. */
  difficulty?: number;
  /** Whether a credential was redeemed by this request (a solved challenge, a payment's first use). */
  redeemed?: boolean;
  /** Amount paid by this request's payment, in the scheme's unit: `sats`, or `atomic` units of an asset. */
  paid?: { scheme: string; amount: string; unit: "sats" | "atomic" };
  /** Access-token credits left after this request. */
  credits?: number;
  /** HTTP status the caller got. */
  status: number;
  /** The origin's HTTP status, when the origin was asked. */
  originStatus?: number;
  /**
   * Set when the origin was asked and never answered: `unreachable` (the proxy's 502) or
   * `timeout` (no response headers within `originTimeoutMs`: the proxy's 504). `originStatus`
   * is then absent: `status` is the proxy's own.
   */
  originError?: "unreachable" | "timeout";
  /** Milliseconds from the request's arrival to the response headers (whole gateway path, origin included). */
  latencyMs: number;
  /** Whether the request was decided from this isolate's lease (no Durable Object call). */
  leased?: boolean;
  /**
   * Set on a plain admitted request's record kept by sampling (`TOLLBOOTH_DECISION_LOG_SAMPLE`
   * = N > 1): the line stands for about N admitted requests (weight by it when counting lines).
   * Absent on records always kept (refusals, payments, solves, errors) and when N is 1.
   */
  sampleInterval?: number;
}

/**
 * Counters of one minute, by name: Prometheus-style keys with labels in a fixed order,
 * e.g. `requests_total{decision="admitted"}`, `payment_required_total{scheme="pow"}`,
 * `rate_limited_total{layer="network"}`, `redeemed_total{scheme="pow"}`,
 * `paid_total{scheme="<type>",unit="sats"}`, `origin_errors_total{status="502"}`.
 * The full list (every name and label) is `COUNTER_HELP` in workers/observe/counters.ts
 * and docs/observability.md. `payment_required_total` is labelled `scheme` (the scheme
 * whose credential was refused: a scheme's `type`, `token`, or `none` for a request
 * that carried none) then `reason` (`over_budget`, `solution_spent`, …).
 */
export type Counters = Record<string, number>;

/** Longest `DecisionRecord.path`, in characters (a longer path is cut to this, its last character `…`). */
export const MAX_PATH_CHARS = 120;

/** Upper bounds (ms) of the latency histogram buckets; the last bucket is +Inf. */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] as const;

/** One minute of aggregates. */
export interface MinuteStats {
  /** Unix ms of the minute's start (a multiple of 60 000). */
  startMs: number;
  counters: Counters;
  /** Count of requests per latency bucket: `LATENCY_BUCKETS_MS.length + 1` entries (the last is +Inf). */
  latency: number[];
}

/**
 * One clock hour of the money counters (`HOUR_COUNTERS`, workers/observe/counters.ts:
 * `payments_total`, `paid_total`, `redeemed_total`), kept `RETAIN_HOURS` hours so that the
 * admin API can say what a day brought in (the per-minute rows last two hours only).
 */
export interface HourStats {
  /** Unix ms of the hour's start (a multiple of 3 600 000). */
  startMs: number;
  /** The hour's money counters, keyed as `MinuteStats.counters` (e.g. `paid_total{scheme="…",unit="sats"}`). */
  counters: Counters;
}

/**
 * A caller's requests within the snapshot's window, from the per-minute summaries of callers
 * (Misra–Gries, workers/observe/counters.ts `addCallers`): each count is at most the true
 * one and at least the true one minus `error`.
 */
export interface CallerCount {
  /** Shortened caller id (as in `DecisionRecord.caller`). */
  caller: string;
  requests: number;
  admitted: number;
  /** 402s and 429s. */
  refused: number;
  /** The window's error bound (the same for every caller): its true requests lie in [`requests`, `requests + error`]; a caller not listed made at most `error` plus the last listed count. */
  error: number;
}

/** What the `Stats` object answers for the metrics paths and the dashboard. */
export interface StatsSnapshot {
  /** Unix ms when the snapshot was taken. */
  nowMs: number;
  /** The minutes asked for, oldest first; minutes with no traffic are present with empty counters. */
  minutes: MinuteStats[];
  /** Sum of every counter since the object was created (Prometheus counters: monotonic). */
  totals: Counters;
  /**
   * The last `DAY_HOURS` (24) clock hours of money counters, oldest first, the current
   * (partial) hour last; hours with nothing recorded are present with empty counters.
   */
  hours: HourStats[];
  /** Latency histogram since the object was created (as `MinuteStats.latency`). */
  latencyTotals: number[];
  /** Latency percentiles (ms) over the window, from the histogram (upper bound of the bucket). */
  latencyMs: { p50: number; p90: number; p99: number };
  /** Callers with the most requests in the window, most first (at most 20). */
  topCallers: CallerCount[];
  /** The latest decisions flushed (newest first, at most 200): every record but plain admitted ones, which are sampled as the decision log is (`sampleInterval`). */
  recent: DecisionRecord[];
}
