/** Bindings and vars of the gateway Worker (see wrangler.toml). */
import type { CallerState } from "./objects/caller-state.ts";
import type { OriginGate } from "./objects/origin-gate.ts";
import type { Stats } from "./observe/stats-object.ts";

/** The Workers Rate Limiting binding (`[[ratelimits]]`): `limit({ key })` → `{ success }`. */
export interface NetworkLimiter {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export interface Env {
  /** Durable Object namespace: one `CallerState` per caller identity. */
  CALLER_BUCKET: DurableObjectNamespace<CallerState>;
  /** Durable Object namespace of the origin ceiling (one object); needed when the policy sets `originCeiling`. */
  ORIGIN_GATE?: DurableObjectNamespace<OriginGate>;
  /** Optional network ceiling (Workers Rate Limiting binding), keyed by the caller's network. */
  TOLLBOOTH_NETWORK_LIMIT?: NetworkLimiter;
  /** Optional KV namespace of issued API keys: SHA-256 hex of the key → `{ name, plan }` (see `npm run keys`). */
  TOLLBOOTH_KEYS?: KVNamespace;
  /**
   * Base URL of the origin MCP server, e.g. `https://mcp-origin.internal` (paths are appended
   * unchanged). A placeholder host (`origin.example.com`, any `example.com`/`.net`/`.org`,
   * `.example`, `.invalid`) is refused. Not used when TOLLBOOTH_ROUTES is set.
   */
  ORIGIN_URL: string;
  /**
   * Optional: several origins behind this gateway, as a JSON array of routes (see
   * shared/policy/routes.ts and docs/routes.md). Unset: one origin, ORIGIN_URL.
   */
  TOLLBOOTH_ROUTES?: string;
  /** One or more comma-separated HMAC secrets (≥ 16 bytes each): the first signs, all verify. A secret. */
  TOLLBOOTH_SECRET: string;
  /** Optional secret shared with the origin for the `Tollbooth-Signature` header; defaults to the first TOLLBOOTH_SECRET (also when blank). */
  TOLLBOOTH_ORIGIN_SECRET?: string;
  /**
   * The Lightning backend's credential, when the policy sets `lightning` (L402): LND's
   * invoice macaroon in hex, or an LNbits invoice key. A secret (`wrangler secret put`).
   */
  TOLLBOOTH_LIGHTNING_SECRET?: string;
  /**
   * Optional: the `Authorization` value sent to the payment facilitator (e.g. `Bearer …`), when
   * the policy sets `facilitator` and the facilitator needs one. A secret.
   */
  TOLLBOOTH_FACILITATOR_AUTH?: string;
  /** Optional policy JSON (see shared/policy/index.ts); defaults apply to every field left out. With routes, what each route inherits. */
  TOLLBOOTH_POLICY?: string;
  /**
   * Durable Object namespace of the metrics (one `Stats` object, docs/observability.md): every
   * isolate flushes its per-minute aggregates into it at most once per
   * `TOLLBOOTH_METRICS_FLUSH_MS`. Without it the metrics are off (the decision log still works).
   */
  TOLLBOOTH_STATS?: DurableObjectNamespace<Stats>;
  /** Optional Workers Analytics Engine dataset: one data point per request (schema in docs/observability.md). */
  TOLLBOOTH_ANALYTICS?: AnalyticsEngineDataset;
  /** Optional var: milliseconds between an isolate's flushes into `Stats`, 100–20000 (default 5000); `0` turns the flushes off. */
  TOLLBOOTH_METRICS_FLUSH_MS?: string;
  /** Optional var: `on` (default) writes one decision log line per request (docs/observability.md); `off` none, the metrics still count. */
  TOLLBOOTH_DECISION_LOG?: string;
  /**
   * Optional var: N, one plain admitted request's decision line in N is written per isolate
   * (1–1000000, default 100; `1`: every line). Refusals, payments, solves and errors are always
   * written; the metrics count every request (docs/observability.md, "Sampling").
   */
  TOLLBOOTH_DECISION_LOG_SAMPLE?: string;
  /**
   * The operator's bearer token of the admin API and dashboard (docs/admin.md): ≥ 16 bytes,
   * e.g. `openssl rand -hex 32`. A secret (`wrangler secret put`). Unset: no admin paths.
   */
  TOLLBOOTH_ADMIN_TOKEN?: string;
  /** Path prefix of the admin API and dashboard; default `/admin`. Never the MCP endpoint. */
  TOLLBOOTH_ADMIN_PATH?: string;
  /** Workers Static Assets (`[assets]`, public/): the dashboard's script, style and uPlot. */
  ASSETS?: Fetcher;
  // Secrets a route names in `originSecret` (e.g. ORIGIN_SEARCH_SECRET) are read by name
  // from the string bindings (workers/index.ts), so they are not listed here.
}
