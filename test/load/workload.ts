/**
 * The load test's workload, shared by the test (test/load/load.test.ts) and its driver
 * process (test/load/driver.ts): the policy, the request mix and its prices, and the
 * shapes the driver reports in.
 */

/**
 * The policy the gateway runs with: a 20-unit burst, 0.5 unit/s (35 units over a 30 s
 * run), get-sum 10, echo 1, ping and tools/list 0 (defaults). The expensive call spends
 * most of a caller's allowance in few requests (a 2-core machine's local `wrangler dev`
 * serves about 120 requests/s in all, and every caller comes from 127.0.0.1, so 200
 * callers get 0.3 requests per second each: 60/s); the cheap one measures the rest to the
 * unit (the drain in test/load/driver.ts), so ±5 % (1.75 units) is a real bound.
 */
export const LOAD_POLICY = {
  bucket: { capacity: 20, refillPerSecond: 0.5 },
  // High enough never to answer 429 for this load: the test is about the free bucket.
  ceiling: { capacity: 10_000, refillPerSecond: 1_000 },
  costs: { tools: { echo: 1, "get-sum": 10 } },
  // The default, written out: a 402's challenge `expires` minus this is the second the gateway decided in.
  challenge: { ttlSeconds: 120 },
} as const;

/** What the parent asks for. */
export interface DriverConfig {
  /** MCP endpoint of the gateway, e.g. `http://127.0.0.1:8787/mcp`. */
  url: string;
  /** API keys, one per caller (distinct). */
  keys: string[];
  /** Length of each caller's scheduled run, milliseconds (the handshakes come before it, its drain after it). */
  durationMs: number;
  /** The callers' scheduled runs start spread evenly over this many milliseconds (so their drains do not pile up). */
  staggerMs: number;
  /**
   * Requests per second each caller offers, open loop: request i is sent at its start +
   * i / ratePerSecond whether or not the earlier ones were answered (several may be in
   * flight), so what is offered does not depend on how fast the machine answers.
   */
  ratePerSecond: number;
  /** Per-request timeout, milliseconds. */
  timeoutMs: number;
  /** After its run (every request answered), each caller drains its bucket (see test/load/driver.ts). */
  drain: boolean;
  /** The gateway's challenge lifetime, seconds: the stamp of a 402 is its challenge's `expires` minus this. */
  challengeTtlSeconds: number;
}

/** One request of the mix: the JSON-RPC method, its params, and what {@link LOAD_POLICY} charges for it. */
export interface MixEntry {
  label: "get-sum" | "echo" | "ping" | "tools/list";
  method: string;
  params?: Record<string, unknown>;
  /** Units under LOAD_POLICY (written out here, not computed by shared/policy/index.ts). */
  cost: number;
}

/**
 * The request mix each caller cycles through (starting at a caller-specific offset): 61 units
 * per 9 requests, so the 9 requests of a 30 s run at 0.3/s (one cycle, whatever the offset)
 * offer 61 units, 1.7 × the 35 units the policy allows in 30 s, at 60 requests/s for 200
 * callers.
 */
export const MIX: readonly MixEntry[] = [
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 2, b: 3 } }, cost: 10 },
  { label: "echo", method: "tools/call", params: { name: "echo", arguments: { message: "load" } }, cost: 1 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 4, b: 5 } }, cost: 10 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 6, b: 7 } }, cost: 10 },
  { label: "ping", method: "ping", cost: 0 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 8, b: 9 } }, cost: 10 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 1, b: 1 } }, cost: 10 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 3, b: 3 } }, cost: 10 },
  { label: "tools/list", method: "tools/list", cost: 0 },
];

/** Index in {@link MIX} of the cost-1 call the drain sends. */
export const DRAIN = 1;

/** One answered (or failed) request. */
export interface Sample {
  /** Index into {@link MIX}. */
  mix: number;
  /** Send time, ms since the driver's time origin (performance.now()). */
  sentMs: number;
  /** Answer time (or failure time), same clock. */
  doneMs: number;
  /** HTTP status, or 0 when the request failed without one (connection error, timeout). */
  status: number;
  /** The request's JSON-RPC id (to find it among what the origin received). */
  id?: number;
  /** A 402's gateway stamp: the unix second in which the gateway refused it (challenge `expires` − its lifetime). */
  stampS?: number;
  /** True for the drain's requests (after the scheduled run). */
  drain?: boolean;
}

/** What one caller did. */
export interface CallerReport {
  key: string;
  /** The scheduled requests (in send order) and the drain (the handshake is not included). */
  samples: Sample[];
  /** Cost of the requests its schedule offered (the drain not included). */
  scheduledCost: number;
  /** Errors (no HTTP status), as messages. */
  errors: string[];
}

/** The driver's output. */
export interface DriverReport {
  callers: CallerReport[];
  /** Time the handshakes took, ms. */
  handshakeMs: number;
  /** When the scheduled run started, ms on the samples' clock. */
  startMs: number;
  /** Wall time of the scheduled run and the drain, ms. */
  wallMs: number;
  /** The driver's `performance.timeOrigin` (unix ms of its clock's zero), to put its times on the gateway's clock. */
  timeOrigin: number;
}

/** The line the driver prints on stdout when the scheduled run starts (the report follows on the next line). */
export const START_LINE = "load: start";
