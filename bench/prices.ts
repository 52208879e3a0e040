/**
 * Cloudflare's list prices on the Workers Paid plan, for the cost model of
 * `npm run bench:gateway` (bench/cost.ts). Every price says where it was read and when:
 * - `reference`: /work/shared/reference.md, "What Cloudflare bills" (the project's notes; it
 *   says to check the pricing pages before quoting);
 * - `cloudflare page`: the text of Cloudflare's own documentation page, as stored by the
 *   search tool (docs corpus) on the date given;
 * - `third-party page`: another site quoting Cloudflare's page (used where the stored copy of
 *   Cloudflare's page did not show the figure); the URL given is Cloudflare's page it quotes,
 *   `via` the page it was read on.
 * Prices change: check each URL before quoting a dollar figure.
 */

/** Where a price was read. */
export type PriceSource = "reference" | "cloudflare page" | "third-party page";

/** One billed item. */
export interface Price {
  /** What is billed, e.g. "Workers requests". */
  item: string;
  /** The unit counted, e.g. "request", "CPU ms", "GB-s". */
  unit: string;
  /** US dollars per million units beyond the included amount. */
  usdPerMillion: number;
  /** Units included per month in the plan (not billed). */
  includedPerMonth: number;
  /** Cloudflare's pricing page. */
  url: string;
  /** Date the figure was read (YYYY-MM-DD). */
  read: string;
  from: PriceSource;
  /** The page the figure was read on, when not `url` (a third-party page, the reference file). */
  via?: string;
  /** What the page says, shortened. */
  quote: string;
}

/** The Workers Paid plan's monthly base price, US dollars. */
export const BASE_USD_PER_MONTH = 5;
/** Where the base price is from. */
export const BASE_SOURCE = {
  url: "https://developers.cloudflare.com/workers/platform/pricing/",
  read: "2026-12-07",
  from: "third-party page" as PriceSource,
  via: 'https://github.com/cloudflare/cloudflare-docs/issues/24138 (quoting the Durable Objects pricing page\'s example: "+ minimum $5/mo usage"); https://github.com/halideworks/onelight/wiki/Pricing ("Paid ($5/mo base)", rates read 2026-08-03)',
};

/** Memory a Durable Object is billed for, GB (128 MB, whatever it uses). */
export const DO_BILLED_GB = 0.128;

/** The prices the cost model uses, by key. */
export const PRICES = {
  workerRequests: {
    item: "Workers requests",
    unit: "request",
    usdPerMillion: 0.3,
    includedPerMonth: 10_000_000,
    url: "https://developers.cloudflare.com/workers/platform/pricing/",
    read: "2026-12-07",
    from: "reference",
    via: '/work/shared/reference.md (also https://github.com/halideworks/onelight/wiki/Pricing: "10M/mo, then $0.30/M")',
    quote: "$0.30 per million requests beyond 10 M/month",
  },
  workerCpuMs: {
    item: "Workers CPU time",
    unit: "CPU ms",
    usdPerMillion: 0.02,
    includedPerMonth: 30_000_000,
    url: "https://developers.cloudflare.com/workers/platform/pricing/",
    read: "2026-12-07",
    from: "reference",
    via: '/work/shared/reference.md (also https://github.com/halideworks/onelight/wiki/Pricing: "30M CPU-ms/mo, then $0.02/M")',
    quote: "$0.02 per million CPU-ms beyond 30 M CPU-ms/month",
  },
  doRequests: {
    item: "Durable Objects requests",
    unit: "request",
    usdPerMillion: 0.15,
    includedPerMonth: 1_000_000,
    url: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    read: "2026-12-07",
    from: "cloudflare page",
    quote:
      "Requests: 1 million, + $0.15/million (HTTP requests, RPC sessions, WebSocket messages, alarm invocations); every RPC method call on a stub is one request",
  },
  doDuration: {
    item: "Durable Objects duration",
    unit: "GB-s",
    usdPerMillion: 12.5,
    includedPerMonth: 400_000,
    url: "https://developers.cloudflare.com/durable-objects/platform/pricing/",
    read: "2026-12-07",
    from: "cloudflare page",
    quote:
      "Duration: 400,000 GB-s, + $12.50/million GB-s; wall-clock time while active or idle but unable to hibernate; 128 MB billed per object",
  },
  doRowsWritten: {
    item: "Durable Objects SQLite rows written",
    unit: "row",
    usdPerMillion: 1.0,
    includedPerMonth: 50_000_000,
    url: "https://developers.cloudflare.com/durable-objects/platform/pricing/#sqlite-storage-backend",
    read: "2026-12-07",
    from: "third-party page",
    via: "https://www.oflight.co.jp/en/columns/cloudflare-durable-objects-2026-07 (2026-07-04)",
    quote: "SQLite row writes: 50M/month included, then $1.00 / 1M; setAlarm() counts as one row write",
  },
  kvReads: {
    item: "Workers KV reads",
    unit: "read",
    usdPerMillion: 0.5,
    includedPerMonth: 10_000_000,
    url: "https://developers.cloudflare.com/kv/platform/pricing/",
    read: "2026-12-07",
    from: "third-party page",
    via: "https://raw.githubusercontent.com/api-evangelist/cloudflare-kv/refs/heads/main/finops/cloudflare-kv-finops.yml",
    quote: "Key reads: $0.50 per million beyond 10 M/month (Paid); unsuccessful reads count",
  },
  logEvents: {
    item: "Workers Logs events",
    unit: "event",
    usdPerMillion: 0.6,
    includedPerMonth: 20_000_000,
    url: "https://developers.cloudflare.com/workers/platform/pricing/#workers-logs",
    read: "2026-12-07",
    from: "cloudflare page",
    via: "Cloudflare's Workers tracing docs, which quote the Workers Logs pricing (search tool, code index)",
    quote: "Workers Paid: 20 million included per month +$0.60 per additional million events",
  },
  aePoints: {
    item: "Analytics Engine data points",
    unit: "data point",
    usdPerMillion: 0.25,
    includedPerMonth: 10_000_000,
    url: "https://developers.cloudflare.com/analytics/analytics-engine/pricing/",
    read: "2026-12-07",
    from: "cloudflare page",
    quote: "Workers Paid: 10 million included per month (+$0.25 per additional million); every writeDataPoint() is one",
  },
  rateLimitCalls: {
    item: "Workers Rate Limiting binding calls",
    unit: "call",
    usdPerMillion: 0,
    includedPerMonth: 0,
    url: "https://developers.cloudflare.com/workers/runtime-apis/bindings/rate-limit/",
    read: "2026-12-07",
    from: "cloudflare page",
    quote: "no price listed for the binding (the network ceiling's limit() call); counted at $0",
  },
} as const satisfies Record<string, Price>;

/** A key of {@link PRICES}. */
export type PriceKey = keyof typeof PRICES;
