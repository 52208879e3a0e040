/** Bindings and vars of the gateway Worker (see wrangler.toml). */
import type { CallerBucket } from "./caller-bucket.ts";
import type { OriginGate } from "./origin-gate.ts";

/** The Workers Rate Limiting binding (`[[ratelimits]]`): `limit({ key })` → `{ success }`. */
export interface NetworkLimiter {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export interface Env {
  /** Durable Object namespace: one `CallerBucket` per caller identity. */
  CALLER_BUCKET: DurableObjectNamespace<CallerBucket>;
  /** Durable Object namespace of the origin ceiling (one object); needed when the policy sets `originCeiling`. */
  ORIGIN_GATE?: DurableObjectNamespace<OriginGate>;
  /** Optional network ceiling (Workers Rate Limiting binding), keyed by the caller's network. */
  TOLLBOOTH_NETWORK_LIMIT?: NetworkLimiter;
  /** Optional KV namespace of issued API keys: SHA-256 hex of the key → `{ name, plan }` (see `npm run keys`). */
  TOLLBOOTH_KEYS?: KVNamespace;
  /** Base URL of the origin MCP server, e.g. `https://mcp-origin.internal` (paths are appended unchanged). */
  ORIGIN_URL: string;
  /** One or more comma-separated HMAC secrets (≥ 16 bytes each): the first signs, all verify. A secret. */
  TOLLBOOTH_SECRET: string;
  /** Optional secret shared with the origin for the `Tollbooth-Signature` header; defaults to the first TOLLBOOTH_SECRET. */
  TOLLBOOTH_ORIGIN_SECRET?: string;
  /**
   * The Lightning backend's credential, when the policy sets `lightning` (L402): LND's
   * invoice macaroon in hex, or an LNbits invoice key. A secret (`wrangler secret put`).
   */
  TOLLBOOTH_LIGHTNING_SECRET?: string;
  /** Optional policy JSON (see shared/policy.ts); defaults apply to every field left out. */
  TOLLBOOTH_POLICY?: string;
}
