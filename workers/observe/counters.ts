/**
 * What one `DecisionRecord` adds to the metrics (pure functions, shared by the isolate's
 * aggregate and the `Stats` object): counter keys with their increments, the latency
 * bucket, the caller's top-caller row; and the batch an isolate flushes to `Stats`.
 * Every label value comes from a bounded set the gateway chose (decisions, layers,
 * reasons, schemes, statuses): nothing a caller sends (a tool or method name, a header)
 * becomes a label, so the number of counter keys stays bounded whatever callers invent.
 */
import { PAYERS, SCHEMES } from "../schemes/registry.ts";
import { type Counters, type DecisionRecord, LATENCY_BUCKETS_MS } from "./types.ts";

/** `items` as prose: `a`, `a or b`, `a, b or c`… with `last` before the last one. */
function listed(items: readonly string[], last: string): string {
  return items.length < 2 ? items.join("") : `${items.slice(0, -1).join(", ")} ${last} ${items.at(-1)}`;
}

/** What the registered schemes add to the help text: their names and words (`SchemeModule.words`). */
const paying = SCHEMES.filter((s) => s.words.paidIn !== undefined);
const unauthorized = SCHEMES.flatMap((s) => (s.words.refusedWith401 ? [s.words.refusedWith401] : []));

/**
 * Every counter name (without labels), with its labels in order and its help text (the
 * Prometheus `# HELP` line, prefixed `tollbooth_` there). docs/observability.md lists the same.
 */
export const COUNTER_HELP: Readonly<Record<string, { labels: readonly string[]; help: string }>> = {
  requests_total: {
    labels: ["decision"],
    help: "Requests decided, by decision (admitted, payment_required, rate_limited, bad_request, unavailable, blocked, own_endpoint, admitted_unmetered).",
  },
  admitted_total: {
    labels: ["paid_by"],
    help: `Requests forwarded to the origin, by what paid: bucket, token, ${SCHEMES.map((s) => `${s.prefix}, `).join("")}free (cost 0), unmetered (store down, onStoreError open).`,
  },
  payment_required_total: {
    labels: ["scheme", "reason"],
    help: `402${unauthorized.length ? ` (and 401 for a refused ${listed(unauthorized, "or")} credential)` : ""} answers, by the scheme of the refused credential (none: no credential) and the reason.`,
  },
  rate_limited_total: {
    labels: ["layer"],
    help: "429 answers, by layer: network, ceiling, sessions, streams, origin, over_budget (a plan in 429 mode).",
  },
  bad_request_total: { labels: ["status"], help: "Requests refused for their form, by status (400, 403, 405, 408, 413, 415)." },
  redeemed_total: { labels: ["scheme"], help: `Credentials redeemed: ${SCHEMES.map((s) => s.words.redeemed).join(", ")}.` },
  payments_total: { labels: ["scheme"], help: `Payments received (${paying.map((s) => s.type).join(", ")}).` },
  paid_total: {
    labels: ["scheme", "unit"],
    help: `Amount received: ${listed(
      paying.map((s) => s.words.paidIn!),
      "or",
    )}.`,
  },
  store_failures_total: {
    labels: ["reason"],
    help: "Durable Object calls that failed, by object (store, origin_gate) and kind (overloaded, timeout, error, unreachable).",
  },
  origin_errors_total: {
    labels: ["status"],
    help: "Admitted requests the origin failed: its status >= 500, or the proxy's 502 (unreachable) / 504 (no answer in time).",
  },
  stats_flushes_total: {
    labels: [],
    help: "Batches flushed into the Stats object by the gateway's isolates (at most one per isolate per flush interval).",
  },
};

/**
 * The counter key of the latency histogram's sum: the requests' `latencyMs` added up (ms), per
 * minute and in the totals. Not a counter family of its own: Prometheus reads it as
 * `tollbooth_request_duration_seconds_sum` (workers/observe/prometheus.ts).
 */
export const LATENCY_SUM_KEY = "request_duration_ms_sum";

/** The counters also kept per clock hour (`Stats`' `hours`, `RETAIN_HOURS` of them): what money and solves came in. */
export const HOUR_COUNTERS: readonly string[] = ["payments_total", "paid_total", "redeemed_total"];

/** The entries of `counters` whose name (the key before `{`) is one of `HOUR_COUNTERS`. */
export function hourCountersOf(counters: Counters): Counters {
  const out: Counters = {};
  for (const [key, n] of Object.entries(counters)) {
    const brace = key.indexOf("{");
    if (HOUR_COUNTERS.includes(brace === -1 ? key : key.slice(0, brace))) out[key] = n;
  }
  return out;
}

/** Escape a label value (Prometheus text format 0.0.4: backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** A counter key: `name{label="value",…}` with the labels in `COUNTER_HELP`'s order (`name` alone when it has none). */
export function counterKey(name: string, ...values: string[]): string {
  const labels = COUNTER_HELP[name]?.labels ?? [];
  if (labels.length === 0) return name;
  return `${name}{${labels.map((l, i) => `${l}="${escapeLabel(values[i] ?? "")}"`).join(",")}}`;
}

/** Add `by` to `counters[key]`. */
export function bump(counters: Counters, key: string, by = 1): void {
  counters[key] = (counters[key] ?? 0) + by;
}

/** A label value from a bounded vocabulary: lowercase word characters, at most 40; anything else is `other`. */
function bounded(value: string | undefined, fallback: string): string {
  if (value === undefined || value === "") return fallback;
  return /^[a-z0-9_]{1,40}$/.test(value) ? value : "other";
}

/** The counters one record adds (key → increment). */
export function countersOf(r: DecisionRecord): Counters {
  const out: Counters = {};
  bump(out, counterKey("requests_total", r.decision));
  switch (r.decision) {
    case "admitted":
      bump(out, counterKey("admitted_total", bounded(r.reason, "free")));
      break;
    case "admitted_unmetered":
      bump(out, counterKey("admitted_total", "unmetered"));
      break;
    case "payment_required":
      bump(out, counterKey("payment_required_total", bounded(r.scheme, "none"), bounded(r.reason, "over_budget")));
      break;
    case "rate_limited":
      bump(out, counterKey("rate_limited_total", bounded(r.reason, "other")));
      break;
    case "bad_request":
      bump(out, counterKey("bad_request_total", String(r.status)));
      break;
  }
  if ((r.decision === "unavailable" || r.decision === "admitted_unmetered") && /^(store|origin_gate)_/.test(r.reason ?? ""))
    bump(out, counterKey("store_failures_total", bounded(r.reason, "other")));
  if (r.redeemed) bump(out, counterKey("redeemed_total", bounded(r.scheme, "other")));
  if (r.paid) {
    const amount = Number(r.paid.amount);
    bump(out, counterKey("payments_total", bounded(r.paid.scheme, "other")));
    if (Number.isFinite(amount) && amount > 0) bump(out, counterKey("paid_total", bounded(r.paid.scheme, "other"), r.paid.unit), amount);
  }
  if (r.originError !== undefined || (r.originStatus !== undefined && r.originStatus >= 500)) {
    bump(out, counterKey("origin_errors_total", String(r.originStatus ?? r.status)));
  }
  return out;
}

/** Index of the latency bucket of `ms` in `LATENCY_BUCKETS_MS` (its length: the +Inf bucket). */
export function latencyBucket(ms: number): number {
  const i = LATENCY_BUCKETS_MS.findIndex((bound) => ms <= bound);
  return i === -1 ? LATENCY_BUCKETS_MS.length : i;
}

/** An empty latency histogram (`LATENCY_BUCKETS_MS.length + 1` zeros). */
export const emptyLatency = (): number[] => new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);

/**
 * Latency percentiles (ms) of a histogram: the upper bound of the bucket holding the
 * quantile; a quantile in the +Inf bucket reads as the last finite bound (at least that);
 * 0 when the histogram is empty.
 */
export function percentiles(latency: readonly number[]): { p50: number; p90: number; p99: number } {
  const total = latency.reduce((a, b) => a + b, 0);
  const at = (q: number) => {
    if (total === 0) return 0;
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let i = 0; i < latency.length; i++) {
      seen += latency[i] ?? 0;
      if (seen >= rank) return LATENCY_BUCKETS_MS[Math.min(i, LATENCY_BUCKETS_MS.length - 1)]!;
    }
    return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1]!;
  };
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

/** Prefixes of the ids kept whole by `shortCaller`: networks, and payers' (public addresses). */
const PUBLIC_PREFIXES = ["ip:", ...PAYERS.map((p) => p.prefix)];

/**
 * A caller identity shortened for logs and metrics. A network (`ip:203.0.113.0/24`,
 * `ip:2001:db8:1:2::/64`) and a scheme's payer id (a public address) are public and kept whole:
 * cutting them would merge distinct callers (two /24s share their first 12 characters). Any
 * other id is a hash of a credential (`key:`, `auth:`, `jwt:`): its strategy prefix and 12 hex
 * characters (48 bits) of the rest, `…` marking the cut (`key:3f9a0c1d2e4b…`).
 * Invariant: a full credential-derived id (a key's or token's hash) never leaves the gateway.
 */
export function shortCaller(id: string): string {
  const colon = id.indexOf(":");
  const prefix = colon === -1 ? "" : id.slice(0, colon + 1);
  const rest = colon === -1 ? id : id.slice(colon + 1);
  if (PUBLIC_PREFIXES.includes(prefix) && rest.length <= 64) return id;
  return prefix.slice(0, 16) + (rest.length > 12 ? `${rest.slice(0, 12)}…` : rest);
}

/** The unix ms of the minute `ms` falls in. */
export const minuteOf = (ms: number): number => Math.floor(ms / 60_000) * 60_000;

/**
 * A caller's counts in one minute, as a Misra–Gries summary holds them (`addCallers`): each
 * is at most the caller's true count and at least that minus the summary's `callersError`;
 * `admitted` and `refused` are each at most `requests`.
 */
export interface CallerRow {
  requests: number;
  admitted: number;
  refused: number;
}

/** One minute of an isolate's aggregate. */
export interface BatchMinute {
  counters: Counters;
  latency: number[];
  /** Per shortened caller: a Misra–Gries summary of at most `MAX_CALLERS_PER_MINUTE` counters (`addCallers`). */
  callers: Record<string, CallerRow>;
  /** The summary's error: any caller's true count exceeds its count in `callers` (0 when absent) by at most this. Absent: 0. */
  callersError?: number;
}

/** What an isolate flushes into the `Stats` object (structured-cloneable, an RPC argument). */
export interface StatsBatch {
  /** Random id of the sending isolate's aggregate (for the operator's logs). */
  isolate: string;
  /** Aggregates by minute start (unix ms, a multiple of 60 000, as a decimal string key). */
  minutes: Record<string, BatchMinute>;
  /** The latest records kept whole (plain admitted ones sampled: `addRecord`), oldest first, at most `MAX_RECENT`. */
  recent: DecisionRecord[];
  /** Records aggregated into the batch. */
  records: number;
}

/**
 * Counters of the per-minute summary of callers (Misra–Gries, k): a minute of N requests
 * names every caller that made more than N / (k + 1) of them, whatever number of names arrive.
 */
export const MAX_CALLERS_PER_MINUTE = 200;
/** Most decision records kept (per batch, and in the `Stats` object). */
export const MAX_RECENT = 200;
/** Most minutes a batch holds (a batch kept over failed flushes drops its oldest beyond). */
export const MAX_BATCH_MINUTES = 60;

/** An empty batch. */
export function emptyBatch(isolate: string): StatsBatch {
  return { isolate, minutes: {}, recent: [], records: 0 };
}

/** Whether a record counts as refused for its caller (a 402 or a 429). */
const refusedRecord = (r: DecisionRecord) => r.decision === "payment_required" || r.decision === "rate_limited";

/**
 * Add one record to a batch (bounded: callers per minute, recent records, minutes): its
 * counters, latency and caller always; the record itself to `recent` only when `recent` is
 * true (default; false for a plain admitted request the decision log's sampling left out).
 */
export function addRecord(batch: StatsBatch, r: DecisionRecord, recent = true): void {
  const key = String(minuteOf(r.time));
  let m = batch.minutes[key];
  if (!m) {
    m = batch.minutes[key] = { counters: {}, latency: emptyLatency(), callers: {} };
    trimMinutes(batch);
  }
  for (const [k, v] of Object.entries(countersOf(r))) bump(m.counters, k, v);
  m.latency[latencyBucket(r.latencyMs)]!++;
  bump(m.counters, LATENCY_SUM_KEY, Math.max(0, r.latencyMs) || 0);
  addCallers(m, {
    [r.caller]: {
      requests: 1,
      admitted: r.decision === "admitted" || r.decision === "admitted_unmetered" ? 1 : 0,
      refused: refusedRecord(r) ? 1 : 0,
    },
  });
  if (recent) {
    batch.recent.push(r);
    if (batch.recent.length > MAX_RECENT) batch.recent.splice(0, batch.recent.length - MAX_RECENT);
  }
  batch.records++;
}

/**
 * Add callers' counts (one record's, or another summary and its `error`) to a minute's
 * Misra–Gries summary (Misra & Gries 1982; mergeable: Agarwal et al., "Mergeable
 * Summaries", 2012): counts are added; past `MAX_CALLERS_PER_MINUTE` names, the
 * (k + 1)-th largest count is taken off every counter (and off `admitted`, `refused`, down
 * to 0), counters at 0 are dropped, and the minute's `callersError` grows by it. So a
 * caller's count never exceeds its true count, falls short of it by at most
 * `callersError` ≤ N / (k + 1), and a flood of one-request names cannot hide a caller
 * that made more requests than that (the first 200 names seen are no longer kept first).
 */
export function addCallers(m: BatchMinute, rows: Record<string, CallerRow>, error = 0): void {
  for (const [name, row] of Object.entries(rows)) {
    const c = m.callers[name] ?? { requests: 0, admitted: 0, refused: 0 };
    m.callers[name] = c;
    c.requests += row.requests;
    c.admitted += row.admitted;
    c.refused += row.refused;
  }
  m.callersError = (m.callersError ?? 0) + error;
  const counts = Object.values(m.callers).map((c) => c.requests);
  if (counts.length <= MAX_CALLERS_PER_MINUTE) return;
  const cut = counts.sort((a, b) => b - a)[MAX_CALLERS_PER_MINUTE]!;
  for (const [name, c] of Object.entries(m.callers)) {
    c.requests -= cut;
    c.admitted = Math.max(0, c.admitted - cut);
    c.refused = Math.max(0, c.refused - cut);
    if (c.requests <= 0) delete m.callers[name];
  }
  m.callersError += cut;
}

/** Drop a batch's oldest minutes beyond `MAX_BATCH_MINUTES`. */
function trimMinutes(batch: StatsBatch): void {
  const keys = Object.keys(batch.minutes).sort((a, b) => Number(a) - Number(b));
  for (const k of keys.slice(0, Math.max(0, keys.length - MAX_BATCH_MINUTES))) delete batch.minutes[k];
}

/** Merge `from` into `into` (a batch whose flush failed, kept for the next), within the same bounds. */
export function mergeBatch(into: StatsBatch, from: StatsBatch): void {
  for (const [key, m] of Object.entries(from.minutes)) {
    into.minutes[key] ??= { counters: {}, latency: emptyLatency(), callers: {} };
    const t = into.minutes[key];
    for (const [k, v] of Object.entries(m.counters)) bump(t.counters, k, v);
    for (const [i, n] of m.latency.entries()) t.latency[i] = (t.latency[i] ?? 0) + n;
    addCallers(t, m.callers, m.callersError);
  }
  trimMinutes(into);
  into.recent = [...from.recent, ...into.recent].slice(-MAX_RECENT);
  into.records += from.records;
}
