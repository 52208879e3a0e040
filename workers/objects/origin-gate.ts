/**
 * `OriginGate`: the Durable Object that holds the origin ceiling — one token bucket for
 * every request forwarded to the origin, all callers together (`policy.originCeiling`).
 * One object (`idFromName(ORIGIN_GATE_NAME)`, "origin", see workers/objects/stores.ts); its bucket is written once per forwarded request,
 * in the same synchronous step that reads it, so concurrent isolates never overshoot.
 * It survives eviction and restarts like `CallerState` (SQLite).
 */
import { DurableObject } from "cloudflare:workers";
import { type BucketConfig, type BucketState, fullBucket, type LimitResult, take } from "../../shared/limits/bucket.ts";

export class OriginGate extends DurableObject {
  private readonly sql: SqlStorage;
  private state: BucketState | null | undefined;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    this.sql = ctx.storage.sql;
    this.sql.exec(
      "CREATE TABLE IF NOT EXISTS bucket (id INTEGER PRIMARY KEY CHECK (id = 0), tokens REAL NOT NULL, updated_ms INTEGER NOT NULL)",
    );
  }

  /**
   * Take one request from the origin ceiling.
   * @param req.nowMs unix milliseconds; `req.ceiling` capacity (requests) and refill (requests per second)
   * @returns the limiter's answer (`success` false: over the origin ceiling, nothing taken)
   */
  take(req: { nowMs: number; ceiling: BucketConfig }): LimitResult {
    if (this.state === undefined) {
      const row = this.sql.exec<{ tokens: number; updated_ms: number }>("SELECT tokens, updated_ms FROM bucket WHERE id = 0").toArray()[0];
      this.state = row ? { tokens: row.tokens, updatedMs: row.updated_ms } : null;
    }
    const t = take(this.state ?? fullBucket(req.ceiling, req.nowMs), req.ceiling, 1, req.nowMs);
    if (t.result.success) {
      this.sql.exec("INSERT OR REPLACE INTO bucket (id, tokens, updated_ms) VALUES (0, ?, ?)", t.state.tokens, t.state.updatedMs);
      this.state = t.state;
    }
    return t.result;
  }
}
