/** Bindings and vars of the gateway Worker (see wrangler.toml). */
import type { CallerBucket } from "./caller-bucket.ts";

export interface Env {
  /** Durable Object namespace: one `CallerBucket` per caller identity. */
  CALLER_BUCKET: DurableObjectNamespace<CallerBucket>;
  /** Base URL of the origin MCP server, e.g. `https://mcp-origin.internal` (paths are appended unchanged). */
  ORIGIN_URL: string;
  /** One or more comma-separated HMAC secrets (≥ 16 bytes each): the first signs, all verify. A secret. */
  TOLLBOOTH_SECRET: string;
  /** Optional secret shared with the origin for the `Tollbooth-Signature` header; defaults to the first TOLLBOOTH_SECRET. */
  TOLLBOOTH_ORIGIN_SECRET?: string;
  /** Optional policy JSON (see shared/policy.ts); defaults apply to every field left out. */
  TOLLBOOTH_POLICY?: string;
}
