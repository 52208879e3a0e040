/**
 * `CallerBucket`: the Durable Object that holds one caller's state (one object per caller
 * identity, `idFromName(identity)`), in its SQLite storage:
 * - `limits`: one row holding the free token bucket and the safety-ceiling bucket (units
 *   and the unix ms they were computed at), written once per request;
 * - `spent`: ids of redeemed challenges, until they expire (single use);
 * - `tokens`: access-token credit balances by token id, until they expire.
 * See docs/durable-object.md. Every method runs to completion synchronously: a Durable
 * Object processes one call at a time, so each read-modify-write below is atomic.
 */
import { DurableObject } from "cloudflare:workers";
import { fullBucket, peek, take, type BucketConfig, type BucketState, type LimitResult } from "../shared/bucket.ts";

/** A solution to redeem: the challenge id and what the minted token carries. */
export interface Redemption {
  /** Challenge id (spent once). */
  challengeId: string;
  /** Challenge expiry, unix milliseconds: the spent mark is kept until then. */
  challengeExpiresMs: number;
  /** Id of the token to mint. */
  jti: string;
  /** Credits of the token. */
  credits: number;
  /** Token expiry, unix milliseconds. */
  tokenExpiresMs: number;
}

/** One gated request, as the Worker asks the caller's object to decide it. */
export interface AdmitRequest {
  /** Units the request costs (integer ≥ 0). */
  cost: number;
  /** Unix milliseconds. */
  nowMs: number;
  bucket: BucketConfig;
  ceiling: BucketConfig;
  /** A verified solution sent with the request (`Tollbooth-Solution`), to redeem first. */
  redeem?: Redemption;
  /** Id of a verified access token sent with the request (`Tollbooth-Token`). */
  tokenId?: string;
  /** A credential the Worker already refused (e.g. `token_bad_signature`): deny with this reason after counting the ceiling. */
  refused?: string;
}

/**
 * Why a request was not admitted: `over_budget`, `ceiling`, `solution_spent`,
 * `token_unknown`, `token_expired`, `token_exhausted`, or a reason the Worker passed in
 * `refused` (`token_<TokenError>`, `solution_<SolutionError>`).
 */
export type DenyReason = string;

/** The decision for one request. */
export interface AdmitResult {
  admitted: boolean;
  reason?: DenyReason;
  /** What paid: nothing (cost 0), the free bucket, or the token's credits. */
  paidBy?: "free" | "bucket" | "token";
  bucket: LimitResult;
  ceiling: LimitResult;
  /** Credits left on the token used or minted, when there is one. */
  credits?: number;
  /** Whether `redeem` minted its token (the Worker then signs and returns it). */
  minted?: boolean;
}

/** A caller's current state, for `GET /.well-known/tollbooth/status`. */
export interface StatusResult {
  bucket: LimitResult;
  ceiling: LimitResult;
  token: { credits: number; expiresMs: number } | null;
}

/** How long after the last expiry the cleanup alarm runs, in milliseconds. */
const CLEANUP_SLACK_MS = 1_000;

export class CallerBucket extends DurableObject {
  private readonly sql: SqlStorage;
  /** The `limits` row as last read or written by this instance (the only writer). */
  private limits: { free: BucketState | null; ceiling: BucketState | null } | undefined;
  /** Unix ms of the scheduled cleanup alarm, as far as this instance knows. */
  private alarmAtMs: number | null = null;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY CHECK (id = 0), free_tokens REAL NOT NULL, free_ms INTEGER NOT NULL, ceiling_tokens REAL NOT NULL, ceiling_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS spent (id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, credits INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
    `);
    // Know the stored alarm before the first call, so a restart never pushes cleanup later.
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAtMs = await ctx.storage.getAlarm();
    });
  }

  /** Both buckets' stored states (null: never charged, i.e. full), read from SQLite once per instance. */
  private stored(): { free: BucketState | null; ceiling: BucketState | null } {
    if (this.limits) return this.limits;
    const row = this.sql
      .exec<{ free_tokens: number; free_ms: number; ceiling_tokens: number; ceiling_ms: number }>("SELECT free_tokens, free_ms, ceiling_tokens, ceiling_ms FROM limits WHERE id = 0")
      .toArray()[0];
    this.limits = row
      ? { free: { tokens: row.free_tokens, updatedMs: row.free_ms }, ceiling: { tokens: row.ceiling_tokens, updatedMs: row.ceiling_ms } }
      : { free: null, ceiling: null };
    return this.limits;
  }

  private load(name: "free" | "ceiling", config: BucketConfig, nowMs: number): BucketState {
    return this.stored()[name] ?? fullBucket(config, nowMs);
  }

  /** Write both buckets in one statement: a request costs at most one row write. */
  private save(free: BucketState, ceiling: BucketState): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO limits (id, free_tokens, free_ms, ceiling_tokens, ceiling_ms) VALUES (0, ?, ?, ?, ?)",
      free.tokens,
      free.updatedMs,
      ceiling.tokens,
      ceiling.updatedMs,
    );
    this.limits = { free, ceiling };
  }

  private scheduleCleanup(atMs: number): void {
    if (this.alarmAtMs !== null && this.alarmAtMs <= atMs) return;
    this.alarmAtMs = atMs;
    void this.ctx.storage.setAlarm(atMs);
  }

  /**
   * Decide one request: ceiling first (every request counts, token or not), then redeem a
   * solution if one came with it, then charge the cost to the token (when one was sent)
   * or to the free bucket. Nothing is charged when the request is denied.
   * @throws TypeError when `cost` is not an integer ≥ 0
   */
  admit(req: AdmitRequest): AdmitResult {
    const { nowMs } = req;
    if (!Number.isSafeInteger(req.cost) || req.cost < 0) throw new TypeError(`admit(): cost ${req.cost} is not an integer ≥ 0`);
    const ceilingTake = take(this.load("ceiling", req.ceiling, nowMs), req.ceiling, 1, nowMs);
    const freeState = this.load("free", req.bucket, nowMs);
    const deny = (reason: DenyReason, extra: Partial<AdmitResult> = {}): AdmitResult => ({
      admitted: false,
      reason,
      bucket: take(freeState, req.bucket, req.cost, nowMs).result,
      ceiling: ceilingTake.result,
      ...extra,
    });
    if (!ceilingTake.result.success) return deny("ceiling");
    // Every request past the ceiling check counts against it, admitted or not; the free
    // bucket is written with it when the request is charged to it (one write either way).
    const freeTake = req.tokenId === undefined && !req.redeem && req.refused === undefined && req.cost > 0 ? take(freeState, req.bucket, req.cost, nowMs) : null;
    this.save(freeTake?.result.success ? freeTake.state : freeState, ceilingTake.state);
    if (req.refused !== undefined) return deny(req.refused);

    let tokenId = req.tokenId;
    let minted = false;
    if (req.redeem) {
      const r = req.redeem;
      // Invariant: a challenge id is spent at most once; the check and the insert happen
      // in this one synchronous step, so concurrent redemptions yield exactly one token.
      if (this.sql.exec("SELECT 1 FROM spent WHERE id = ?", r.challengeId).toArray().length > 0) return deny("solution_spent");
      this.sql.exec("INSERT INTO spent (id, expires_ms) VALUES (?, ?)", r.challengeId, r.challengeExpiresMs);
      this.sql.exec("INSERT INTO tokens (jti, credits, expires_ms) VALUES (?, ?, ?)", r.jti, r.credits, r.tokenExpiresMs);
      this.scheduleCleanup(Math.max(r.challengeExpiresMs, r.tokenExpiresMs) + CLEANUP_SLACK_MS);
      tokenId = r.jti;
      minted = true;
    }

    if (tokenId !== undefined) {
      const row = this.sql.exec<{ credits: number; expires_ms: number }>("SELECT credits, expires_ms FROM tokens WHERE jti = ?", tokenId).toArray()[0];
      if (!row) return deny("token_unknown");
      if (nowMs >= row.expires_ms) return deny("token_expired", { minted });
      if (row.credits < req.cost) return deny("token_exhausted", { credits: row.credits, minted });
      const credits = row.credits - req.cost;
      if (req.cost > 0) this.sql.exec("UPDATE tokens SET credits = ? WHERE jti = ?", credits, tokenId);
      return { admitted: true, paidBy: "token", bucket: peek(freeState, req.bucket, nowMs), ceiling: ceilingTake.result, credits, minted };
    }

    if (!freeTake) return { admitted: true, paidBy: "free", bucket: peek(freeState, req.bucket, nowMs), ceiling: ceilingTake.result };
    if (!freeTake.result.success) return deny("over_budget");
    return { admitted: true, paidBy: "bucket", bucket: freeTake.result, ceiling: ceilingTake.result };
  }

  /**
   * Redeem a verified solution for a token without making a request
   * (`POST /.well-known/tollbooth/verify`). Counts against the ceiling.
   */
  redeem(req: { nowMs: number; ceiling: BucketConfig; bucket: BucketConfig; redemption: Redemption }): AdmitResult {
    return this.admit({ cost: 0, nowMs: req.nowMs, bucket: req.bucket, ceiling: req.ceiling, redeem: req.redemption });
  }

  /** The caller's buckets and, when `tokenId` is given, that token's balance. Charges nothing. */
  status(req: { nowMs: number; bucket: BucketConfig; ceiling: BucketConfig; tokenId?: string }): StatusResult {
    const row = req.tokenId
      ? this.sql.exec<{ credits: number; expires_ms: number }>("SELECT credits, expires_ms FROM tokens WHERE jti = ?", req.tokenId).toArray()[0]
      : undefined;
    return {
      bucket: peek(this.load("free", req.bucket, req.nowMs), req.bucket, req.nowMs),
      ceiling: peek(this.load("ceiling", req.ceiling, req.nowMs), req.ceiling, req.nowMs),
      token: row && row.expires_ms > req.nowMs ? { credits: row.credits, expiresMs: row.expires_ms } : null,
    };
  }

  /** Cleanup: drop expired spent marks and token balances; reschedule for what remains. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAtMs = null;
    this.sql.exec("DELETE FROM spent WHERE expires_ms <= ?", now);
    this.sql.exec("DELETE FROM tokens WHERE expires_ms <= ?", now);
    const next = this.sql
      .exec<{ at: number | null }>("SELECT MIN(at) AS at FROM (SELECT MIN(expires_ms) AS at FROM spent UNION ALL SELECT MIN(expires_ms) FROM tokens)")
      .toArray()[0]?.at;
    if (next != null) this.scheduleCleanup(next + CLEANUP_SLACK_MS);
  }
}
