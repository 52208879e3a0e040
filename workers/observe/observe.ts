/**
 * `observe(options)`: the outermost Hono middleware. For each request it creates the
 * `DecisionRecord` (c.var.record), lets the gateway decide (`tollbooth()` fills what only it
 * knows through `note()` / `decided()`, the proxy the origin's status), then fills the status
 * and latency (to the response headers: a stream's body is not waited for) and emits it:
 * - one JSON log line, `{"tollbooth":"decision",…record}` (Workers Logs, `wrangler tail`,
 *   `npm start`), for every request but the plain admitted ones, which are sampled: one in
 *   `logSample` per isolate (`TOLLBOOTH_DECISION_LOG_SAMPLE`, default 100; `keptWhole`,
 *   `admittedSampler`); the same records, and only those, go to `Stats`' latest decisions;
 * - one Analytics Engine data point, when `analytics` is bound (workers/observe/analytics.ts);
 * - into the isolate's aggregate, flushed to the `Stats` object at most once per
 *   `flushMs`, when `stats` is bound (workers/observe/flusher.ts): every record counted.
 * Invariant: no header, token, solution, macaroon, signature or full caller id is ever put
 * in a record: callers are shortened (`shortCaller`), and only the fields below exist.
 */
import type { Context, MiddlewareHandler } from "hono";
import { writeRecord } from "./analytics.ts";
import { shortCaller } from "./counters.ts";
import { DEFAULT_FLUSH_MS, type StatsFlusher, statsFlusher } from "./flusher.ts";
import type { Stats } from "./stats-object.ts";
import { type DecisionRecord, MAX_PATH_CHARS } from "./types.ts";

/** The marker every decision log line starts with: `{"tollbooth":"decision",`. */
export const LOG_MARKER = "decision";

/** Options of `observe()`. */
export interface ObserveOptions {
  /** The `Stats` namespace (`TOLLBOOTH_STATS`); without it the metrics are off (the log still works). */
  stats?: DurableObjectNamespace<Stats> | undefined;
  /** The Analytics Engine dataset (`TOLLBOOTH_ANALYTICS`), optional. */
  analytics?: AnalyticsEngineDataset | undefined;
  /** Milliseconds between an isolate's flushes into `Stats` (100–20000; 0: no flushes). Default 5000. */
  flushMs?: number | undefined;
  /** Where log lines go (default `console.log`); `false`: no decision log line (the metrics still count every request). */
  log?: ((line: string) => void) | false | undefined;
  /**
   * One plain admitted request's line in `logSample` is written (and kept in `Stats`' latest
   * decisions), per isolate; every other record always is (`keptWhole`). 1: every line.
   * Default `DEFAULT_DECISION_LOG_SAMPLE` (100). The metrics count every request whatever it is.
   */
  logSample?: number | undefined;
  /** Uniform [0, 1) source for the sampler's gaps (default `Math.random`; tests fix it). */
  random?: (() => number) | undefined;
}

/** Default of `TOLLBOOTH_DECISION_LOG_SAMPLE`: one plain admitted request's line in 100, per isolate. */
export const DEFAULT_DECISION_LOG_SAMPLE = 100;
/** Largest `TOLLBOOTH_DECISION_LOG_SAMPLE` accepted. */
export const MAX_DECISION_LOG_SAMPLE = 1_000_000;

/**
 * The var `TOLLBOOTH_DECISION_LOG_SAMPLE`: N, one plain admitted request's decision line in
 * N is written, per isolate (unset or blank: `DEFAULT_DECISION_LOG_SAMPLE`); `1`: every line.
 * Refusals, payments, solves, errors and own-endpoint answers are always written.
 * @returns N, an integer from 1 to `MAX_DECISION_LOG_SAMPLE`
 * @throws TypeError naming the var for anything else (`0.01`, `0`, `1e3`, `ten`)
 */
export function parseDecisionLogSample(value: string | undefined): number {
  const v = (value ?? "").trim();
  if (v === "") return DEFAULT_DECISION_LOG_SAMPLE;
  const n = /^\d{1,7}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= MAX_DECISION_LOG_SAMPLE)) {
    throw new TypeError(
      `TOLLBOOTH_DECISION_LOG_SAMPLE must be an integer from 1 (every line) to ${MAX_DECISION_LOG_SAMPLE} (one admitted request's line in N), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * Whether a record is always logged and kept: everything but a plain admitted request — a
 * refusal (402, 429, 400…, 403 blocked), an error (503, 500, an origin that failed: its
 * status ≥ 500, 502 unreachable, 504 timeout), a request forwarded unmetered (its object
 * failed), a payment or a solve (`paid`, `redeemed`), an answer of tollbooth's own endpoints.
 */
export function keptWhole(r: DecisionRecord): boolean {
  if (r.decision !== "admitted") return true;
  return r.redeemed === true || r.paid !== undefined || r.originError !== undefined || (r.originStatus ?? 0) >= 500 || r.status >= 500;
}

/**
 * A per-isolate sampler of plain admitted requests, one in `every` on average: the
 * `every`-th call says yes (so fewer than `every` admitted requests are never sampled),
 * then each gap is drawn uniformly from 1 to 2 × `every` − 1 (mean `every`). Counting
 * rather than a coin per request makes the rate exact and the first line predictable;
 * drawing the gaps keeps a periodic pattern of callers (16 clients in turn) from being
 * sampled on one of them only. `every` = 1: always yes.
 * @param every N ≥ 1 (an integer)
 * @param random uniform [0, 1) source for the gaps
 */
export function admittedSampler(every: number, random: () => number = Math.random): () => boolean {
  let countdown = every;
  return () => {
    countdown--;
    if (countdown > 0) return false;
    countdown = every <= 1 ? 1 : 1 + Math.floor(random() * (2 * every - 1));
    return true;
  };
}

/**
 * The var `TOLLBOOTH_DECISION_LOG`: `on` (default, also unset or empty) writes one decision
 * line per request; `off` writes none (metrics and Analytics Engine still count every request).
 * @returns whether the decision log is on
 * @throws TypeError naming the var for any other value
 */
export function parseDecisionLog(value: string | undefined): boolean {
  const v = (value ?? "").trim().toLowerCase();
  if (v === "" || v === "on") return true;
  if (v === "off") return false;
  throw new TypeError(`TOLLBOOTH_DECISION_LOG must be "on" or "off", got ${JSON.stringify(value)}`);
}

/**
 * The path a record shows for a request that is not a JSON-RPC message: the URL's pathname
 * as the WHATWG URL parser spells it (percent-encoded: no control character, no space; the
 * query string left out, where tokens travel), cut to `MAX_PATH_CHARS` with `…`.
 */
export function recordPath(url: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return "";
  }
  return path.length > MAX_PATH_CHARS ? `${path.slice(0, MAX_PATH_CHARS - 1)}…` : path;
}

/** Hono variables set by `observe()`. */
export interface ObserveVariables {
  record: DecisionRecord;
}

/** The request's record, when `observe()` runs before (absent when the middleware is used alone). */
function recordOf(c: Context): DecisionRecord | undefined {
  return (c.var as Partial<ObserveVariables>).record;
}

/** What the gateway says about a request (any record field but the ones `observe()` measures). */
export type DecisionFields = Partial<Omit<DecisionRecord, "status" | "latencyMs">>;

/** Fill record fields known so far (identity, plan, cost, …); `caller` is shortened here. No-op without `observe()`. */
export function note(c: Context, fields: DecisionFields): void {
  const record = recordOf(c);
  if (!record) return;
  for (const [k, v] of Object.entries(fields))
    if (v !== undefined) (record as unknown as Record<string, unknown>)[k] = k === "caller" ? shortCaller(String(v)) : v;
}

/** Record how a request ended (one call per exit of the gateway) and return its response unchanged. */
export function decided(c: Context, fields: DecisionFields & Pick<DecisionRecord, "decision">, response: Response): Response {
  note(c, fields);
  return response;
}

/**
 * Emit a finished record: the log line, the Analytics Engine point, the isolate's aggregate
 * (flushed through `waitUntil`, when given). Never throws: observability never fails a request.
 */
export type EmitDecision = (record: DecisionRecord, waitUntil: ((p: Promise<unknown>) => void) | null) => void;

/** The middleware, with `emit` for answers given outside it (the router's own, workers/gateway/router.ts): one instance, one flusher per isolate. */
export type Observer = MiddlewareHandler & { emit: EmitDecision };

/** The request's `waitUntil`, or null when the app is called without an execution context. */
function waitUntilOf(c: Context): ((p: Promise<unknown>) => void) | null {
  try {
    const ctx = c.executionCtx;
    return (p) => ctx.waitUntil(p);
  } catch {
    // No execution context (the app called directly): the flush timer runs on its own.
    return null;
  }
}

/**
 * Build the middleware.
 * @throws TypeError naming a bad option (`flushMs`, `stats`)
 */
export function observe(options: ObserveOptions = {}): Observer {
  const flushMs = options.flushMs ?? DEFAULT_FLUSH_MS;
  if (typeof flushMs !== "number" || !Number.isInteger(flushMs))
    throw new TypeError(`observe(): option \`flushMs\` must be an integer, got ${String(flushMs)}`);
  let flusher: StatsFlusher | null = null;
  if (options.stats && flushMs !== 0) {
    try {
      flusher = statsFlusher({ stats: options.stats, intervalMs: flushMs });
    } catch (err) {
      throw new TypeError(`observe(): ${(err as Error).message.replace(/^statsFlusher\(\): /, "")}`);
    }
  }
  const log = options.log === false ? null : (options.log ?? ((line: string) => console.log(line)));
  const analytics = options.analytics;
  const every = options.logSample ?? DEFAULT_DECISION_LOG_SAMPLE;
  if (!Number.isInteger(every) || every < 1 || every > MAX_DECISION_LOG_SAMPLE)
    throw new TypeError(`observe(): option \`logSample\` must be an integer from 1 to ${MAX_DECISION_LOG_SAMPLE}, got ${String(every)}`);
  const sampled = admittedSampler(every, options.random);

  const emit: EmitDecision = (record, waitUntil) => {
    try {
      // Invariant: sampling chooses which lines are written and which records `Stats` keeps
      // whole; the counters, the latency, the callers and Analytics Engine count every record.
      const whole = keptWhole(record);
      const kept = whole || sampled();
      if (kept && !whole && every > 1) record.sampleInterval = every;
      if (log && kept) log(JSON.stringify({ tollbooth: LOG_MARKER, ...record }));
      if (analytics) writeRecord(analytics, record);
      if (flusher) flusher.add(record, waitUntil, kept);
    } catch (err) {
      // Observability never fails a request.
      console.error("tollbooth: recording the decision failed", err);
    }
  };

  const middleware: MiddlewareHandler = async function observe(c, next) {
    const started = Date.now();
    // What a request is until the gateway says otherwise: a request that fails unexpectedly
    // (an exception answered 500) keeps this.
    const record: DecisionRecord = {
      time: started,
      caller: "anonymous",
      network: "",
      plan: "",
      method: c.req.method,
      cost: 0,
      decision: "unavailable",
      reason: "internal_error",
      status: 0,
      latencyMs: 0,
    };
    c.set("record", record);
    await next();
    record.status = c.res.status;
    record.latencyMs = Math.max(0, Date.now() - started);
    if (record.rpc === undefined) record.path = recordPath(c.req.url);
    emit(record, flusher ? waitUntilOf(c) : null);
  };
  return Object.assign(middleware, { emit });
}
