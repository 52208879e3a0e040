/**
 * The load test's workload, shared by the test (test/load/load.test.ts) and its driver
 * process (test/load/driver.ts): the policy, the request mix and its prices, and the
 * shapes the driver reports in.
 */

/**
 * The policy the gateway runs with: a 20-unit burst, 0.5 unit/s (35 units over a 30 s
 * run), get-sum 10, echo 1, ping and tools/list 0 (defaults). The expensive call spends
 * most of a caller's allowance in few requests (a 2-core machine's local `wrangler dev`
 * serves about 120 requests/s in all, so 200 callers get about a third of a request per
 * second each); the cheap one measures the rest to the unit (the drain in
 * test/load/driver.ts), so ±5 % (1.75 units) is a real bound.
 */
export const LOAD_POLICY = {
  bucket: { capacity: 20, refillPerSecond: 0.5 },
  // High enough never to answer 429 for this load: the test is about the free bucket.
  ceiling: { capacity: 10_000, refillPerSecond: 1_000 },
  costs: { tools: { echo: 1, "get-sum": 10 } },
} as const;

/** What the parent asks for. */
export interface DriverConfig {
  /** MCP endpoint of the gateway, e.g. `http://127.0.0.1:8787/mcp`. */
  url: string;
  /** API keys, one per caller (distinct). */
  keys: string[];
  /** Length of each caller's paced run, milliseconds (the handshakes come before it, its drain after it). */
  durationMs: number;
  /** The callers' paced runs start spread evenly over this many milliseconds (so their drains do not pile up). */
  staggerMs: number;
  /** Requests per second each caller offers (paced; never more than one in flight). */
  ratePerSecond: number;
  /** Per-request timeout, milliseconds. */
  timeoutMs: number;
}

/** One request of the mix: the JSON-RPC method, its params, and what {@link LOAD_POLICY} charges for it. */
export interface MixEntry {
  label: "get-sum" | "echo" | "ping" | "tools/list";
  method: string;
  params?: Record<string, unknown>;
  /** Units under LOAD_POLICY (written out here, not computed by shared/policy.ts). */
  cost: number;
}

/** The request mix each caller cycles through (starting at a caller-specific offset): 42 units per 8 requests. */
export const MIX: readonly MixEntry[] = [
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 2, b: 3 } }, cost: 10 },
  { label: "echo", method: "tools/call", params: { name: "echo", arguments: { message: "load" } }, cost: 1 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 4, b: 5 } }, cost: 10 },
  { label: "ping", method: "ping", cost: 0 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 6, b: 7 } }, cost: 10 },
  { label: "echo", method: "tools/call", params: { name: "echo", arguments: { message: "load" } }, cost: 1 },
  { label: "get-sum", method: "tools/call", params: { name: "get-sum", arguments: { a: 8, b: 9 } }, cost: 10 },
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
}

/** What one caller did. */
export interface CallerReport {
  key: string;
  /** The paced requests and the drain, in order (the handshake is not included). */
  samples: Sample[];
  /** Errors (no HTTP status), as messages. */
  errors: string[];
}

/** The driver's output. */
export interface DriverReport {
  callers: CallerReport[];
  /** Time the handshakes took, ms. */
  handshakeMs: number;
  /** When the paced run started, ms on the samples' clock. */
  startMs: number;
  /** Wall time of the paced run and the drain, ms. */
  wallMs: number;
}

/** The line the driver prints on stdout when the paced run starts (the report follows on the next line). */
export const START_LINE = "load: start";

