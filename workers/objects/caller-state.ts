/**
 * `CallerState`: the Durable Object that holds one caller's state (one object per caller
 * identity, `idFromName(identity)`; unverified callers share their network's object), in
 * its SQLite storage:
 * - `limits`: one row holding the free token bucket and the safety-ceiling bucket (units
 *   and the unix ms they were computed at), written once per request;
 * - `spent`: ids of redeemed challenges, until they expire plus a clock margin (single use);
 * - `tokens`: access-token credit balances by token id, until they expire;
 * - `solves`: the decayed count of recent solves (adaptive difficulty);
 * - `slots`: open MCP sessions and GET SSE streams (per-caller caps), until released or expired;
 *   a session's last use (least recently used idle session: the one the gateway ends at the cap);
 * - `blocks`: an operator's block (admin API, docs/admin.md), until it ends.
 * The same class also holds the gateway-wide spent mark of one payment: the object named
 * `spent:<spend id>` (workers/objects/stores.ts `SPEND_SCOPE`), whose only method in use is `claim`.
 * See docs/durable-object.md. Every method runs to completion synchronously: a Durable
 * Object processes one call at a time, so each read-modify-write below is atomic.
 * A caller's state that holds nothing but full buckets is deleted by the alarm: no object
 * keeps rows forever for a caller seen once. Tables are created by the first call that may
 * write, not by the constructor: an object only read (an operator's lookup) stores nothing.
 */
import { DurableObject } from "cloudflare:workers";
import { type BucketConfig, type BucketState, fullBucket, type LimitResult, peek, refill, take } from "../../shared/limits/bucket.ts";
import { type AdaptiveConfig, addSolve, decayed, difficultyFor, NO_SOLVES, type SolveScore } from "../../shared/limits/difficulty.ts";
import { grantLease, type LeaseGrant, type LeaseWant } from "../../shared/limits/lease.ts";
import type { DenyReason, Redemption } from "../schemes/contract.ts";

export type { DenyReason, Redemption } from "../schemes/contract.ts";

/**
 * Credits a solution buys at redemption: its challenge asked `solvedBits` (the work is worth
 * 2^solvedBits hashes) and offered `credits`; the caller's difficulty is now `currentBits`.
 * At or above the current difficulty it buys all `credits`; each bit behind halves them
 * (floored): `floor(credits × 2^(solvedBits − currentBits))`. 0 means it buys nothing.
 * @param credits integer ≥ 0; solvedBits, currentBits: bits (integers 1–32)
 */
export function solutionWorth(credits: number, solvedBits: number, currentBits: number): number {
  if (solvedBits >= currentBits) return credits;
  return Math.floor(credits / 2 ** (currentBits - solvedBits));
}

/** The challenge settings of the caller's plan: base difficulty (bits) and adaptation. */
export interface ChallengeConfig {
  difficulty: number;
  adaptive: AdaptiveConfig;
}

/** A session or stream slot to open with the request (per-caller caps). */
export interface SlotRequest {
  kind: "session" | "stream";
  /** Random slot id chosen by the Worker. */
  id: string;
  /** Most slots of this kind open at once. */
  max: number;
  /** Unix ms after which the slot no longer counts (released or not). */
  expiresMs: number;
  /**
   * A session at the cap: pick the caller's least recently used idle session for the Worker to
   * end at the origin (`AdmitResult.evict`) instead of refusing (`limits.onSessionCap: "evict"`).
   */
  evict?: boolean;
  /** A stream: the `Mcp-Session-Id` its GET carries (a session with an open stream is not idle). */
  sessionId?: string;
}

/**
 * A request that used an MCP session: the `Mcp-Session-Id` it carried, when (unix ms, the
 * Worker's clock) and the `Mcp-Protocol-Version` it carried, if any (the eviction DELETE sends it).
 */
export interface SessionUse {
  sessionId: string;
  atMs: number;
  version?: string;
}

/** The session the Worker is to end at the origin (a DELETE on the caller's behalf) before it forwards the new `initialize`. */
export interface Eviction {
  /** The victim's slot (marked: counted neither as open nor as a victim again until `evicted`). */
  slotId: string;
  /** Its `Mcp-Session-Id` at the origin. */
  sessionId: string;
  /** The first `Mcp-Protocol-Version` a request of the session carried (not a DELETE); null when none was seen. */
  version: string | null;
  /** Unix ms its slot expires (`limits.sessionTtlSeconds` after it was opened). */
  expiresMs: number;
}

/**
 * How long a victim's mark holds without `evicted` (the isolate that was ending it died), in
 * ms: after it the slot counts as open and may be picked again. Longer than the eviction
 * DELETE's own bound (workers/proxy/end-session.ts `EVICTION_TIMEOUT_MS`, 10 s).
 */
export const EVICTION_STALE_MS = 60_000;
/** A session's last use is written at most once per this many ms (SQLite writes are per row). */
export const TOUCH_GRANULARITY_MS = 1_000;
/** Most session uses one call records (a lease's backlog beyond it is dropped). */
export const MAX_TOUCHES = 64;

/** One gated request, as the Worker asks the caller's object to decide it. */
export interface AdmitRequest {
  /** Units the request costs (integer ≥ 0). */
  cost: number;
  /** Unix milliseconds, read by the Worker after the body arrived (bucket refills use it). */
  nowMs: number;
  bucket: BucketConfig;
  ceiling: BucketConfig;
  /** The plan's challenge settings: the object answers with the caller's current difficulty. */
  challenge?: ChallengeConfig;
  /** A verified credential sent with the request (`Tollbooth-Solution`, an L402 credential), to redeem first. */
  redeem?: Redemption;
  /** Id of a verified access token sent with the request (`Tollbooth-Token`). */
  tokenId?: string;
  /** A credential the Worker already refused (e.g. `token_bad_signature`): deny with this reason after counting the ceiling. */
  refused?: DenyReason;
  /** A session (`initialize`) or GET stream slot to open; refused (`sessions` / `streams`) at the cap, or a session evicted (`slot.evict`). */
  slot?: SlotRequest;
  /** The session this request uses (its `Mcp-Session-Id`): its last use is set when the request is admitted. */
  session?: SessionUse;
  /** Sessions used by requests this isolate admitted from its lease since its last call (recorded first, whatever the decision). */
  touched?: SessionUse[];
  /**
   * A lease the isolate asks for with this request (shared/limits/lease.ts): granted from what the
   * buckets hold after the request, only to a request admitted without a credential; the
   * `returned` units of an expired lease are handed back either way.
   */
  lease?: LeaseWant;
}

/** The refusal `<prefix>_<what>` of a redemption's scheme (each scheme's union includes these). */
const refusal = (prefix: string, what: "spent" | "expired" | "exhausted" | "unknown" | "too_easy"): DenyReason =>
  `${prefix}_${what}` as DenyReason;

/** A credit balance a request spends: an access token's, or the one a redemption opened. */
interface Balance {
  tokenId: string;
  /** Whether the redemption minted it with this request. */
  minted: boolean;
  /** Credits it opened with (set when minted now). */
  mintedCredits?: number;
  /** Prefix of its refusals: `token`, or a reusable credential's scheme prefix. */
  tokenReason: string;
}

/** Why the object refuses a request, and what the refusal says besides (`AdmitResult` fields). */
interface Denial {
  reason: DenyReason;
  extra?: Partial<AdmitResult>;
}

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
  /**
   * Credits the minted balance opened with (set with `minted`): the redemption's `credits`, or
   * fewer for a solution whose challenge asked less than the caller's current difficulty.
   * The access token's `cr` claim is this number.
   */
  mintedCredits?: number;
  /**
   * For `solution_too_easy`: what the solution was worth at the caller's current difficulty
   * (`solutionWorth`): 0, or less than the request's cost.
   */
  solutionCredits?: number;
  /** Leading zero bits the caller's next challenge asks (when `challenge` was given). */
  difficulty?: number;
  /** The caller's decayed count of recent solves (why `difficulty` rose). */
  solves?: number;
  /** For `sessions` / `streams`: whole seconds until the oldest slot expires. */
  retryAfterSeconds?: number;
  /** For `sessions` with eviction on: every open session is in use (a GET stream open on it, or being ended), none could be evicted. */
  busy?: boolean;
  /** Admitted at the session cap: the session to end at the origin first (`evicted` reports how that went). */
  evict?: Eviction;
  /** The lease granted with the decision, when one was asked for. */
  lease?: LeaseGrant;
}

/** A caller's current state, for `GET /.well-known/tollbooth/status`. */
export interface StatusResult {
  bucket: LimitResult;
  ceiling: LimitResult;
  token: { credits: number; expiresMs: number } | null;
  difficulty?: number;
  solves?: number;
  sessions: number;
  streams: number;
  /** Whether the status request itself was within the ceiling (it counts against it). */
  admitted: boolean;
}

/** What to give back for a request the origin never answered (502, 504) or the origin ceiling refused. */
export interface RefundRequest {
  nowMs: number;
  bucket: BucketConfig;
  cost: number;
  paidBy: "free" | "bucket" | "token";
  tokenId?: string;
  /** A slot opened with the request, to release. */
  slotId?: string;
  /** The slot the request marked for eviction, when its eviction never ran: unmarked (it counts as open again). */
  unmark?: string;
}

/** A caller's state as the admin API shows it (`CallerState.inspect`). */
export interface InspectResult {
  /** Whether the object holds any row for the caller (false: never seen, or its idle state was dropped). */
  known: boolean;
  /** The bucket configs (and solve half-life, s) the object last metered with; null when none is stored. */
  configs: { bucket: BucketConfig; ceiling: BucketConfig; halfLifeSeconds: number } | null;
  /** The free bucket now (nothing taken: `success` true, `remaining` units, `reset` unix ms when full). */
  bucket: LimitResult;
  /** The safety ceiling now (as `bucket`). */
  ceiling: LimitResult;
  /** Unexpired access-token balances (at most 50, latest expiry first): `id` is the first 12 characters of the token's `jti`. */
  tokens: Array<{ id: string; credits: number; expiresMs: number }>;
  /** Open MCP sessions and GET streams. */
  sessions: number;
  streams: number;
  /** Spent marks held (single-use credentials redeemed and not yet expired). */
  spent: number;
  /** Decayed count of recent solves. */
  solves: number;
  /** Leading zero bits the caller's next challenge asks (when a challenge config was given). */
  difficulty?: number;
  /** Unix ms the operator's block ends, or null when not blocked. */
  blockedUntilMs: number | null;
  /** Unix ms of the cleanup alarm as this instance knows it, or null. */
  cleanupAtMs: number | null;
}

/** The object's tables (docs/durable-object.md). */
const TABLES = ["limits", "spent", "tokens", "solves", "slots", "config", "blocks"] as const;

/** Token balances `inspect` lists at most. */
const INSPECT_MAX_TOKENS = 50;

/** How long after the last expiry the cleanup alarm runs, in milliseconds. */
const CLEANUP_SLACK_MS = 1_000;
/**
 * A spent mark is kept this long after its challenge's expiry: longer than any skew
 * between a Worker's clock and the object's, so nothing can redeem the challenge once
 * its mark is gone (the object also refuses an expired challenge by its own clock).
 */
export const SPENT_MARGIN_MS = 60_000;
/** Scores below this count as no recent solves (the state may be dropped). */
const QUIET_SCORE = 0.01;

export class CallerState extends DurableObject {
  private readonly sql: SqlStorage;
  /** The `limits` row as last read or written by this instance (the only writer). */
  private limits: { free: BucketState | null; ceiling: BucketState | null } | undefined;
  /** The `solves` row as last read or written by this instance. */
  private solveScore: SolveScore | undefined;
  /** Unix ms of the scheduled alarm, as far as this instance knows. */
  private alarmAtMs: number | null = null;
  /** The configs last used, for the idle check of the alarm (full buckets drop the row). */
  private configs: { bucket: BucketConfig; ceiling: BucketConfig; halfLifeSeconds: number } | undefined;
  /** Unix ms the operator's block ends (null: none), as last read or written; undefined: not read yet. */
  private blockUntilMs: number | null | undefined;

  /**
   * Whether this object's tables exist, as far as this instance knows (undefined: not looked).
   * Tables are created by the first call that may write (`ready`), never by the constructor or
   * an operator's read: an object nobody wrote to stores nothing at all.
   */
  private tables: boolean | undefined;

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    this.sql = ctx.storage.sql;
    // Know the stored alarm before the first call, so a restart never pushes cleanup later.
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAtMs = await ctx.storage.getAlarm();
    });
  }

  /**
   * Make sure the tables exist before a call that may write (every request-path method and
   * `block`): `CREATE TABLE IF NOT EXISTS` once per instance, as a constructor would.
   */
  private ready(): void {
    if (this.tables) return;
    this.createTables();
    this.tables = true;
  }

  /**
   * Whether the object holds tables, without creating any (operator reads, the alarm): one
   * read of `sqlite_master` per instance until they exist. A partial set (an object written
   * by an older version) is completed: it is stored already.
   */
  private exists(): boolean {
    if (this.tables !== undefined) return this.tables;
    const n = this.sql
      .exec<{ n: number }>(
        `SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN (${TABLES.map((t) => `'${t}'`).join(", ")})`,
      )
      .one().n;
    if (n === 0) {
      this.tables = false;
      return false;
    }
    this.ready();
    return true;
  }

  private createTables(): void {
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS limits (id INTEGER PRIMARY KEY CHECK (id = 0), free_tokens REAL NOT NULL, free_ms INTEGER NOT NULL, ceiling_tokens REAL NOT NULL, ceiling_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS spent (id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS tokens (jti TEXT PRIMARY KEY, credits INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS solves (id INTEGER PRIMARY KEY CHECK (id = 0), score REAL NOT NULL, at_ms INTEGER NOT NULL, half_life_s INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS slots (id TEXT PRIMARY KEY, kind TEXT NOT NULL, session_id TEXT, expires_ms INTEGER NOT NULL, used_ms INTEGER, version TEXT, evicting_ms INTEGER);
      CREATE TABLE IF NOT EXISTS config (id INTEGER PRIMARY KEY CHECK (id = 0), json TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS blocks (id INTEGER PRIMARY KEY CHECK (id = 0), until_ms INTEGER NOT NULL);
    `);
    // A `slots` table written by an older version lacks the columns of session eviction.
    const columns = new Set(
      this.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('slots')")
        .toArray()
        .map((c) => c.name),
    );
    for (const [name, type] of [
      ["used_ms", "INTEGER"],
      ["version", "TEXT"],
      ["evicting_ms", "INTEGER"],
    ] as const) {
      if (!columns.has(name)) this.sql.exec(`ALTER TABLE slots ADD COLUMN ${name} ${type}`);
    }
  }

  /** Both buckets' stored states (null: never charged, i.e. full), read from SQLite once per instance. */
  private stored(): { free: BucketState | null; ceiling: BucketState | null } {
    if (this.limits) return this.limits;
    const row = this.sql
      .exec<{ free_tokens: number; free_ms: number; ceiling_tokens: number; ceiling_ms: number }>(
        "SELECT free_tokens, free_ms, ceiling_tokens, ceiling_ms FROM limits WHERE id = 0",
      )
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

  private solves(): SolveScore {
    if (this.solveScore) return this.solveScore;
    const row = this.sql.exec<{ score: number; at_ms: number }>("SELECT score, at_ms FROM solves WHERE id = 0").toArray()[0];
    this.solveScore = row ? { score: row.score, atMs: row.at_ms } : NO_SOLVES;
    return this.solveScore;
  }

  /** Remember the configs for the alarm's idle check (written only when they change). */
  private remember(bucket: BucketConfig, ceiling: BucketConfig, halfLifeSeconds: number): void {
    const c = this.configs;
    if (
      c &&
      c.bucket.capacity === bucket.capacity &&
      c.bucket.refillPerSecond === bucket.refillPerSecond &&
      c.ceiling.capacity === ceiling.capacity &&
      c.ceiling.refillPerSecond === ceiling.refillPerSecond &&
      c.halfLifeSeconds === halfLifeSeconds
    )
      return;
    this.configs = { bucket, ceiling, halfLifeSeconds };
    this.sql.exec("INSERT OR REPLACE INTO config (id, json) VALUES (0, ?)", JSON.stringify(this.configs));
  }

  /** Ask for an alarm at or before `atMs` (never pushes an earlier one later). */
  private scheduleAlarm(atMs: number): void {
    if (this.alarmAtMs !== null && this.alarmAtMs <= atMs) return;
    this.alarmAtMs = atMs;
    void this.ctx.storage.setAlarm(atMs);
  }

  /** The later of the Worker's clock and the object's own: expiry is judged by both. */
  private clock(nowMs: number): number {
    return Math.max(nowMs, Date.now());
  }

  private difficulty(challenge: ChallengeConfig | undefined, nowMs: number): { difficulty?: number; solves?: number } {
    if (!challenge) return {};
    const score = decayed(this.solves(), challenge.adaptive.halfLifeSeconds, nowMs);
    return { difficulty: difficultyFor(challenge.difficulty, challenge.adaptive, score), solves: Math.round(score * 100) / 100 };
  }

  /** Unix ms the caller's block ends when it is blocked at `clockMs`, else null (one SQLite read per instance). */
  private blockedUntil(clockMs: number): number | null {
    if (this.blockUntilMs === undefined) {
      this.blockUntilMs = this.sql.exec<{ until_ms: number }>("SELECT until_ms FROM blocks WHERE id = 0").toArray()[0]?.until_ms ?? null;
    }
    return this.blockUntilMs !== null && this.blockUntilMs > clockMs ? this.blockUntilMs : null;
  }

  /** Unexpired slots of a kind, less the sessions being ended (a fresh eviction mark): each pairs with a new session that waits for its end. */
  private openSlots(kind: "session" | "stream", nowMs: number): { count: number; oldestExpiresMs: number | null } {
    const row = this.sql
      .exec<{ n: number; oldest: number | null }>(
        "SELECT COUNT(*) AS n, MIN(expires_ms) AS oldest FROM slots WHERE kind = ? AND expires_ms > ? AND (evicting_ms IS NULL OR evicting_ms <= ?)",
        kind,
        nowMs,
        nowMs - EVICTION_STALE_MS,
      )
      .toArray()[0]!;
    return { count: row.n, oldestExpiresMs: row.oldest };
  }

  /**
   * The caller's least recently used idle session at `nowMs`: bound to an origin session id,
   * unexpired, not being ended, no unexpired GET stream slot carrying its id; null when none.
   */
  private idlestSession(nowMs: number): Eviction | null {
    const row = this.sql
      .exec<{ id: string; session_id: string; version: string | null; expires_ms: number }>(
        `SELECT id, session_id, version, expires_ms FROM slots AS s WHERE kind = 'session' AND session_id IS NOT NULL AND expires_ms > ? AND (evicting_ms IS NULL OR evicting_ms <= ?)
           AND NOT EXISTS (SELECT 1 FROM slots AS t WHERE t.kind = 'stream' AND t.session_id = s.session_id AND t.expires_ms > ?)
         ORDER BY used_ms ASC, expires_ms ASC LIMIT 1`,
        nowMs,
        nowMs - EVICTION_STALE_MS,
        nowMs,
      )
      .toArray()[0];
    return row ? { slotId: row.id, sessionId: row.session_id, version: row.version, expiresMs: row.expires_ms } : null;
  }

  /**
   * Record session uses: each session slot's last use (`used_ms`, written only when it moves
   * by at least `TOUCH_GRANULARITY_MS`) and the first protocol version its requests carried
   * (an MCP client sends the negotiated one from its first request after `initialize`; a later
   * one never replaces it, so a request the origin refuses for its version cannot spoil it).
   */
  private touch(uses: readonly SessionUse[]): void {
    for (const u of uses.slice(0, MAX_TOUCHES)) {
      if (u.version === undefined) {
        this.sql.exec(
          "UPDATE slots SET used_ms = ? WHERE kind = 'session' AND session_id = ? AND (used_ms IS NULL OR used_ms <= ?)",
          u.atMs,
          u.sessionId,
          u.atMs - TOUCH_GRANULARITY_MS,
        );
      } else {
        this.sql.exec(
          "UPDATE slots SET used_ms = MAX(COALESCE(used_ms, 0), ?), version = COALESCE(version, ?) WHERE kind = 'session' AND session_id = ? AND (used_ms IS NULL OR used_ms <= ? OR version IS NULL)",
          u.atMs,
          u.version,
          u.sessionId,
          u.atMs - TOUCH_GRANULARITY_MS,
        );
      }
    }
  }

  /**
   * Room for the slot a request opens: none at the cap (`reason`, with the seconds until the
   * oldest slot expires), or room (`victim`: at the session cap with eviction on, the idlest
   * session, to mark when the request is admitted).
   */
  private slotRoom(
    slot: SlotRequest,
    clockMs: number,
  ): { victim: Eviction | null } | { reason: "sessions" | "streams"; retryAfterSeconds: number; busy?: boolean } {
    // Invariant: at most `max` unexpired slots of a kind; counted and taken in this one step.
    // A session marked for eviction is not counted: the new session it makes room for is
    // forwarded only once the origin ended it.
    const open = this.openSlots(slot.kind, clockMs);
    if (open.count < slot.max) return { victim: null };
    const victim = slot.kind === "session" && slot.evict ? this.idlestSession(clockMs) : null;
    if (victim) return { victim };
    const retryAfterSeconds = Math.max(1, Math.ceil(((open.oldestExpiresMs ?? clockMs) - clockMs) / 1000));
    return { reason: slot.kind === "session" ? "sessions" : "streams", retryAfterSeconds, ...(slot.evict ? { busy: true } : {}) };
  }

  /**
   * Decide one request: ceiling first (every request counts, token or not), then the
   * session / stream cap (at the session cap with `slot.evict`, the idlest session is picked
   * and, when the request is admitted, marked and handed back in `evict`), then redeem a solution if one came with it (a proof of work priced
   * at the caller's difficulty now, `solutionWorth`; `<prefix>_too_easy` when it buys less
   * than `cost`), then charge the cost to the token (when one was sent) or to the free
   * bucket. Nothing is charged when the request is denied.
   * @throws TypeError when `cost` is not an integer ≥ 0
   */
  admit(req: AdmitRequest): AdmitResult {
    const { nowMs } = req;
    if (!Number.isSafeInteger(req.cost) || req.cost < 0) throw new TypeError(`admit(): cost ${req.cost} is not an integer ≥ 0`);
    this.ready();
    const clockMs = this.clock(nowMs);
    this.remember(req.bucket, req.ceiling, req.challenge?.adaptive.halfLifeSeconds ?? 600);
    const ceilingTake = take(this.load("ceiling", req.ceiling, nowMs), req.ceiling, 1, nowMs);
    const freeState = this.load("free", req.bucket, nowMs);
    const hardness = (): { difficulty?: number; solves?: number } => this.difficulty(req.challenge, nowMs);
    const deny = (reason: DenyReason, extra: Partial<AdmitResult> = {}): AdmitResult => {
      // Units of an expired lease come back even when this request is refused.
      if (req.lease && (req.lease.returned.units > 0 || req.lease.returned.ceilingUnits > 0))
        this.lease(req, { units: 0, ceilingUnits: 0, returned: req.lease.returned });
      return denied(reason, extra);
    };
    const denied = (reason: DenyReason, extra: Partial<AdmitResult>): AdmitResult => ({
      admitted: false,
      reason,
      bucket: take(freeState, req.bucket, req.cost, nowMs).result,
      ceiling: ceilingTake.result,
      ...hardness(),
      ...extra,
    });
    // Invariant: a caller an operator blocked is refused before anything else: nothing is
    // charged, no credential redeemed (its single use is not spent), no slot opened, and the
    // Worker never asks the origin (docs/admin.md).
    const blockedUntil = this.blockedUntil(clockMs);
    if (blockedUntil !== null) return deny("blocked", { retryAfterSeconds: Math.max(1, Math.ceil((blockedUntil - clockMs) / 1000)) });
    if (!ceilingTake.result.success) return deny("ceiling");

    // Sessions used by requests admitted from a lease: known before a victim is picked.
    if (req.touched) this.touch(req.touched);
    let victim: Eviction | null = null;
    if (req.slot && req.refused === undefined) {
      const room = this.slotRoom(req.slot, clockMs);
      if ("reason" in room) {
        this.save(freeState, ceilingTake.state);
        this.scheduleAlarm(this.idleAtMs(nowMs, req.bucket, req.ceiling) + CLEANUP_SLACK_MS);
        return deny(room.reason, { retryAfterSeconds: room.retryAfterSeconds, ...(room.busy ? { busy: true } : {}) });
      }
      victim = room.victim;
    }

    // Every request past the ceiling check counts against it, admitted or not; the free
    // bucket is written with it when the request is charged to it (one write either way).
    const freeTake =
      req.tokenId === undefined && !req.redeem && req.refused === undefined && req.cost > 0
        ? take(freeState, req.bucket, req.cost, nowMs)
        : null;
    this.save(freeTake?.result.success ? freeTake.state : freeState, ceilingTake.state);
    // Idle state is dropped by the alarm once both buckets are full again (computed from what was just saved).
    this.scheduleAlarm(this.idleAtMs(nowMs, req.bucket, req.ceiling) + CLEANUP_SLACK_MS);
    if (req.refused !== undefined) return deny(req.refused);

    let balance: Balance | undefined =
      req.tokenId !== undefined ? { tokenId: req.tokenId, minted: false, tokenReason: "token" } : undefined;
    if (req.redeem) {
      const redeemed = this.redeemIn(req, req.redeem, clockMs);
      if ("reason" in redeemed) return deny(redeemed.reason, redeemed.extra);
      balance = redeemed;
    }

    let result: AdmitResult;
    if (balance) {
      const paid = this.charge(req, balance, clockMs);
      if ("reason" in paid) return deny(paid.reason, paid.extra);
      const opened = balance.mintedCredits !== undefined ? { mintedCredits: balance.mintedCredits } : {};
      result = {
        admitted: true,
        paidBy: "token",
        bucket: peek(freeState, req.bucket, nowMs),
        ceiling: ceilingTake.result,
        credits: paid.credits,
        minted: balance.minted,
        ...opened,
      };
    } else if (!freeTake) {
      result = { admitted: true, paidBy: "free", bucket: peek(freeState, req.bucket, nowMs), ceiling: ceilingTake.result };
    } else if (!freeTake.result.success) {
      return deny("over_budget");
    } else {
      result = { admitted: true, paidBy: "bucket", bucket: freeTake.result, ceiling: ceilingTake.result };
    }
    if (req.session) this.touch([req.session]);
    if (req.slot) this.insertSlot(req.slot, nowMs, victim, result);
    if (req.lease && balance === undefined) result.lease = this.lease(req, req.lease);
    return result;
  }

  /** Insert an admitted request's slot (used now); mark its victim, and hand it to the Worker in `result.evict`. */
  private insertSlot(slot: SlotRequest, nowMs: number, victim: Eviction | null, result: AdmitResult): void {
    const sessionId = slot.kind === "stream" ? (slot.sessionId ?? null) : null;
    this.sql.exec(
      "INSERT OR REPLACE INTO slots (id, kind, session_id, expires_ms, used_ms) VALUES (?, ?, ?, ?, ?)",
      slot.id,
      slot.kind,
      sessionId,
      slot.expiresMs,
      nowMs,
    );
    this.scheduleAlarm(slot.expiresMs + CLEANUP_SLACK_MS);
    if (!victim) return;
    this.sql.exec("UPDATE slots SET evicting_ms = ? WHERE id = ?", this.clock(nowMs), victim.slotId);
    result.evict = victim;
  }

  /**
   * Redeem a credential: judged expired by the object's clock too, spent once (a reusable one
   * spends, later, the balance it opened), a solution priced at the caller's difficulty now.
   * @returns the balance it opened (minted now or before), or why it is refused
   */
  private redeemIn(req: AdmitRequest, r: Redemption, clockMs: number): Balance | Denial {
    // Invariant: a credential is judged expired by the object's clock as well as the Worker's
    // (a Worker whose clock was read before a slow body cannot redeem it late).
    if (clockMs >= r.spendUntilMs) return { reason: refusal(r.prefix, "expired") };
    // Invariant: an id is spent at most once; the check and the insert happen in this one
    // synchronous step, so concurrent redemptions open exactly one balance. The mark
    // outlives the credential by SPENT_MARGIN_MS, so it is never gone while the credential
    // could still pass either clock.
    const spent = this.sql.exec("SELECT 1 FROM spent WHERE id = ?", r.spendId).toArray().length > 0;
    if (spent && !r.reusable) return { reason: refusal(r.prefix, "spent") };
    // A reusable credential redeemed before spends the balance it opened then.
    const balance: Balance = { tokenId: r.jti, minted: false, tokenReason: r.reusable ? r.prefix : "token" };
    if (spent) return balance;
    // Invariant: a solution is priced at the caller's difficulty now, not when its challenge
    // was issued: challenges fetched in bulk while the caller was quiet buy no more than their
    // work is worth at redemption. One that buys less than the request costs (nothing, for
    // /verify) is refused `too_easy`: spent all the same (it never passes later, whatever
    // the difficulty does), no balance, not counted as a solve.
    const { nowMs } = req;
    const current = r.difficulty !== undefined ? this.difficulty(req.challenge, nowMs).difficulty : undefined;
    const credits = current !== undefined ? solutionWorth(r.credits, r.difficulty!, current) : r.credits;
    this.sql.exec("INSERT INTO spent (id, expires_ms) VALUES (?, ?)", r.spendId, r.spendUntilMs + SPENT_MARGIN_MS);
    if (credits < Math.max(1, req.cost)) {
      this.scheduleAlarm(r.spendUntilMs + SPENT_MARGIN_MS + CLEANUP_SLACK_MS);
      return { reason: refusal(r.prefix, "too_easy"), extra: { solutionCredits: credits } };
    }
    this.sql.exec("INSERT OR IGNORE INTO tokens (jti, credits, expires_ms) VALUES (?, ?, ?)", r.jti, credits, r.tokenExpiresMs);
    if (req.challenge && r.solve) {
      this.solveScore = addSolve(this.solves(), req.challenge.adaptive, nowMs);
      this.sql.exec(
        "INSERT OR REPLACE INTO solves (id, score, at_ms, half_life_s) VALUES (0, ?, ?, ?)",
        this.solveScore.score,
        this.solveScore.atMs,
        req.challenge.adaptive.halfLifeSeconds,
      );
    }
    this.scheduleAlarm(Math.min(r.spendUntilMs + SPENT_MARGIN_MS, r.tokenExpiresMs) + CLEANUP_SLACK_MS);
    return { ...balance, minted: true, mintedCredits: credits };
  }

  /** Charge `req.cost` to a balance, or why it cannot pay (`<tokenReason>_unknown`, `_expired`, `_exhausted`). */
  private charge(req: AdmitRequest, b: Balance, clockMs: number): { credits: number } | Denial {
    const row = this.sql
      .exec<{ credits: number; expires_ms: number }>("SELECT credits, expires_ms FROM tokens WHERE jti = ?", b.tokenId)
      .toArray()[0];
    if (!row) return { reason: refusal(b.tokenReason, "unknown") };
    const opened = b.mintedCredits !== undefined ? { mintedCredits: b.mintedCredits } : {};
    if (clockMs >= row.expires_ms) return { reason: refusal(b.tokenReason, "expired"), extra: { minted: b.minted, ...opened } };
    if (row.credits < req.cost)
      return { reason: refusal(b.tokenReason, "exhausted"), extra: { credits: row.credits, minted: b.minted, ...opened } };
    const credits = row.credits - req.cost;
    if (req.cost > 0) this.sql.exec("UPDATE tokens SET credits = ? WHERE jti = ?", credits, b.tokenId);
    return { credits };
  }

  /**
   * Take a lease out of the buckets (shared/limits/lease.ts `grantLease`): hand back `want.returned`,
   * then grant whole units the buckets hold. One row write.
   */
  private lease(req: Pick<AdmitRequest, "nowMs" | "bucket" | "ceiling">, want: LeaseWant): LeaseGrant {
    const { free, ceiling, grant } = grantLease(
      this.load("free", req.bucket, req.nowMs),
      this.load("ceiling", req.ceiling, req.nowMs),
      { bucket: req.bucket, ceiling: req.ceiling },
      want,
      req.nowMs,
    );
    this.save(free, ceiling);
    this.scheduleAlarm(this.idleAtMs(req.nowMs, req.bucket, req.ceiling) + CLEANUP_SLACK_MS);
    return grant;
  }

  /**
   * Renew an isolate's lease in the background (no request is decided; the ceiling is not
   * charged for the renewal itself): hand back `lease.returned`, grant what the buckets hold;
   * record the sessions the lease's requests used (`touched`).
   */
  renew(req: { nowMs: number; bucket: BucketConfig; ceiling: BucketConfig; lease: LeaseWant; touched?: SessionUse[] }): LeaseGrant {
    this.ready();
    if (req.touched) this.touch(req.touched);
    this.remember(req.bucket, req.ceiling, (this.configs ?? this.storedConfigs())?.halfLifeSeconds ?? 600);
    // Invariant: a blocked caller gets no new lease (units handed back are still taken back),
    // and the isolate's lease is revoked: it admits nothing more from it. A lease that is not
    // renewed meanwhile admits for what is left of its life (≤ LEASE_MS after its grant).
    if (this.blockedUntil(this.clock(req.nowMs)) !== null)
      return { ...this.lease(req, { units: 0, ceilingUnits: 0, returned: req.lease.returned }), revoked: true };
    return this.lease(req, req.lease);
  }

  /**
   * Redeem a verified credential for an access token without making a request
   * (`POST /.well-known/tollbooth/verify`). Counts against the ceiling. A reusable
   * credential redeemed before is admitted again with its balance (`credits`).
   */
  redeem(req: {
    nowMs: number;
    ceiling: BucketConfig;
    bucket: BucketConfig;
    challenge?: ChallengeConfig;
    redemption: Redemption;
  }): AdmitResult {
    return this.admit({
      cost: 0,
      nowMs: req.nowMs,
      bucket: req.bucket,
      ceiling: req.ceiling,
      ...(req.challenge ? { challenge: req.challenge } : {}),
      redeem: req.redemption,
    });
  }

  /**
   * Give back what a request paid when the origin never answered it (or the origin
   * ceiling refused it): its cost to the free bucket (capped at capacity) or to its token,
   * and its slot. The ceiling unit stays spent.
   */
  refund(req: RefundRequest): void {
    this.ready();
    if (req.cost > 0 && req.paidBy === "bucket") {
      const state = refill(this.load("free", req.bucket, req.nowMs), req.bucket, req.nowMs);
      const limits = this.stored();
      this.save(
        { tokens: Math.min(req.bucket.capacity, state.tokens + req.cost), updatedMs: state.updatedMs },
        limits.ceiling ?? { tokens: 0, updatedMs: req.nowMs },
      );
    } else if (req.cost > 0 && req.paidBy === "token" && req.tokenId !== undefined) {
      this.sql.exec("UPDATE tokens SET credits = credits + ? WHERE jti = ?", req.cost, req.tokenId);
    }
    if (req.slotId !== undefined) this.sql.exec("DELETE FROM slots WHERE id = ?", req.slotId);
    if (req.unmark !== undefined) this.sql.exec("UPDATE slots SET evicting_ms = NULL WHERE id = ?", req.unmark);
  }

  /**
   * Whether the caller is blocked now (read only: no row is written, no alarm moved). Asked
   * of the original identity when a payment or an access token makes the request a payer's
   * (workers/objects/stores.ts `blockChecker`), so a block follows the caller whatever it pays with.
   * @param req.nowMs the Worker's clock, unix ms (the later of it and the object's clock decides)
   * @returns `blockedUntilMs`: unix ms the block ends, or null when the caller is not blocked
   */
  blocked(req: { nowMs: number }): { blockedUntilMs: number | null } {
    if (!this.exists()) return { blockedUntilMs: null };
    return { blockedUntilMs: this.blockedUntil(this.clock(req.nowMs)) };
  }

  /**
   * Claim a spend id gateway-wide, once: called on the object named `spent:<spend id>`
   * (`SPEND_SCOPE`, workers/objects/stores.ts; no route prefix, so every route reaches the same one)
   * right before a payment is settled (`PaymentScheme.settle`). The check and the mark are one
   * synchronous step: of any number of concurrent claims, exactly one gets `claimed: true`.
   * The mark is kept until `untilMs` + `SPENT_MARGIN_MS`; the alarm then deletes the object's
   * state (nothing else lives in it).
   * @param req.spendId the redemption's `spendId` (a payment's: `<prefix>:<what identifies the payment>`)
   * @param req.untilMs unix ms at or after which the credential is refused anyway (its `spendUntilMs`)
   * @throws TypeError when `untilMs` is not a safe integer or `spendId` is empty
   */
  claim(req: { spendId: string; untilMs: number }): { claimed: boolean } {
    if (!Number.isSafeInteger(req.untilMs)) throw new TypeError(`claim(): untilMs ${req.untilMs} is not an integer`);
    if (typeof req.spendId !== "string" || req.spendId.length === 0) throw new TypeError("claim(): spendId is empty");
    this.ready();
    // Invariant: checked and marked in this one step (a Durable Object runs one call at a time).
    if (this.sql.exec("SELECT 1 FROM spent WHERE id = ?", req.spendId).toArray().length > 0) return { claimed: false };
    const expiresMs = req.untilMs + SPENT_MARGIN_MS;
    this.sql.exec("INSERT INTO spent (id, expires_ms) VALUES (?, ?)", req.spendId, expiresMs);
    this.scheduleAlarm(expiresMs + CLEANUP_SLACK_MS);
    return { claimed: true };
  }

  /**
   * Withdraw the balance a redemption opened (its payment did not complete: its settlement
   * failed, or its spend id was claimed on another route). The spent mark stays: the same
   * authorization cannot be redeemed again — unless `spendId` is given (the payment never
   * reached anything that could complete it, `PaymentScheme.retryable`): its mark is lifted too.
   */
  revoke(req: { jti: string; spendId?: string }): void {
    if (!this.exists()) return;
    this.sql.exec("DELETE FROM tokens WHERE jti = ?", req.jti);
    if (req.spendId !== undefined) this.sql.exec("DELETE FROM spent WHERE id = ?", req.spendId);
  }

  /**
   * Lift a gateway-wide claim (`claim`) whose payment never reached anything that could
   * complete it (`PaymentScheme.retryable`): the spend id may be claimed again.
   */
  unclaim(req: { spendId: string }): void {
    if (!this.exists()) return;
    this.sql.exec("DELETE FROM spent WHERE id = ?", req.spendId);
  }

  /** Attach the origin's `Mcp-Session-Id` to the session slot opened by its `initialize`. */
  bindSession(req: { slotId: string; sessionId: string }): void {
    if (!this.exists()) return;
    this.sql.exec("UPDATE slots SET session_id = ? WHERE id = ? AND kind = 'session'", req.sessionId, req.slotId);
  }

  /** Release a slot (a GET stream that ended; an `initialize` answered without a session). */
  release(req: { slotId: string }): void {
    if (!this.exists()) return;
    this.sql.exec("DELETE FROM slots WHERE id = ?", req.slotId);
  }

  /** Release the session slot of `sessionId`: the origin ended it (its DELETE answered 2xx, or it answered 404 for it). */
  endSession(req: { sessionId: string }): void {
    if (!this.exists()) return;
    this.sql.exec("DELETE FROM slots WHERE kind = 'session' AND session_id = ?", req.sessionId);
  }

  /**
   * How the eviction of the session slot `slotId` (`AdmitResult.evict`) went: `ended` (the
   * origin answered the gateway's DELETE 2xx or 404) releases it; otherwise its mark is
   * lifted and it counts as open again (the origin still holds it).
   */
  evicted(req: { slotId: string; ended: boolean }): void {
    if (!this.exists()) return;
    if (req.ended) this.sql.exec("DELETE FROM slots WHERE id = ? AND kind = 'session'", req.slotId);
    else this.sql.exec("UPDATE slots SET evicting_ms = NULL WHERE id = ?", req.slotId);
  }

  /**
   * The caller's buckets, difficulty, open slots and, when `tokenId` is given, that
   * token's balance. Takes one unit of the ceiling (status is metered like any request);
   * charges nothing else.
   */
  status(req: { nowMs: number; bucket: BucketConfig; ceiling: BucketConfig; challenge?: ChallengeConfig; tokenId?: string }): StatusResult {
    this.ready();
    const clockMs = this.clock(req.nowMs);
    const ceilingTake = take(this.load("ceiling", req.ceiling, req.nowMs), req.ceiling, 1, req.nowMs);
    const freeState = this.load("free", req.bucket, req.nowMs);
    if (ceilingTake.result.success) {
      this.save(freeState, ceilingTake.state);
      this.scheduleAlarm(this.idleAtMs(req.nowMs, req.bucket, req.ceiling) + CLEANUP_SLACK_MS);
    }
    const row = req.tokenId
      ? this.sql
          .exec<{ credits: number; expires_ms: number }>("SELECT credits, expires_ms FROM tokens WHERE jti = ?", req.tokenId)
          .toArray()[0]
      : undefined;
    return {
      admitted: ceilingTake.result.success,
      bucket: peek(freeState, req.bucket, req.nowMs),
      ceiling: ceilingTake.result,
      token: row && row.expires_ms > clockMs ? { credits: row.credits, expiresMs: row.expires_ms } : null,
      ...this.difficulty(req.challenge, req.nowMs),
      sessions: this.openSlots("session", clockMs).count,
      streams: this.openSlots("stream", clockMs).count,
    };
  }

  /** Unix ms at which both buckets will be full again (the caller's limits state is then the same as none). */
  private idleAtMs(nowMs: number, bucket: BucketConfig, ceiling: BucketConfig): number {
    const full = (s: BucketState | null, c: BucketConfig) =>
      s ? s.updatedMs + Math.ceil((Math.max(0, c.capacity - s.tokens) / c.refillPerSecond) * 1000) : nowMs;
    const limits = this.stored();
    return Math.max(nowMs, full(limits.free, bucket), full(limits.ceiling, ceiling));
  }

  /**
   * Cleanup: drop expired spent marks, token balances and slots; then, when the caller
   * holds nothing else, its buckets are full again and it has no recent solves, delete
   * the whole state (a caller seen once leaves nothing). Otherwise reschedule.
   */
  override async alarm(): Promise<void> {
    const now = Date.now();
    this.alarmAtMs = null;
    // Nothing stored: nothing to clean (an alarm left over from a deleted state).
    if (!this.exists()) return;
    this.sql.exec("DELETE FROM spent WHERE expires_ms <= ?", now);
    this.sql.exec("DELETE FROM tokens WHERE expires_ms <= ?", now);
    this.sql.exec("DELETE FROM slots WHERE expires_ms <= ?", now);
    this.sql.exec("DELETE FROM blocks WHERE until_ms <= ?", now);
    this.blockUntilMs = undefined;
    const next = this.sql
      .exec<{ at: number | null }>(
        "SELECT MIN(at) AS at FROM (SELECT MIN(expires_ms) AS at FROM spent UNION ALL SELECT MIN(expires_ms) FROM tokens UNION ALL SELECT MIN(expires_ms) FROM slots UNION ALL SELECT MIN(until_ms) FROM blocks)",
      )
      .toArray()[0]?.at;
    if (next != null) {
      this.scheduleAlarm(next + CLEANUP_SLACK_MS);
      return;
    }
    const configs = this.configs ?? this.storedConfigs();
    if (!configs) {
      if (this.stored().free === null) await this.forget();
      return;
    }
    const idleAt = this.idleAtMs(now, configs.bucket, configs.ceiling);
    const quietAt =
      this.solves().score > 0
        ? this.solves().atMs + Math.ceil(Math.log2(Math.max(1, this.solves().score / QUIET_SCORE)) * configs.halfLifeSeconds * 1000)
        : now;
    const at = Math.max(idleAt, quietAt);
    if (at > now) {
      this.scheduleAlarm(at + CLEANUP_SLACK_MS);
      return;
    }
    // Invariant: only state equal to "never seen" is dropped (full buckets, no tokens,
    // no spent marks, no open slots, no recent solves).
    await this.forget();
  }

  /** Delete the whole state; the object is then exactly as for a caller never seen. */
  private async forget(): Promise<void> {
    await this.ctx.storage.deleteAll();
    // Tables come back with the next write; until then the object stores nothing.
    this.tables = false;
    this.limits = { free: null, ceiling: null };
    this.solveScore = NO_SOLVES;
    this.configs = undefined;
    this.blockUntilMs = null;
  }

  // -------------------------------------------------------------------------------------------
  // Operator methods (admin API, workers/admin/): never called on the request path.

  /**
   * The caller's whole state, read only: nothing is written, no alarm is moved, so an
   * inspection neither creates rows for an unknown caller nor keeps an idle one alive.
   * Buckets are computed with the configs the object last metered with, else `bucket` /
   * `ceiling` (the caller's plan as the admin API knows it).
   * @param req.nowMs unix ms; req.bucket / req.ceiling: fallback configs; req.challenge: for the difficulty
   */
  inspect(req: { nowMs: number; bucket: BucketConfig; ceiling: BucketConfig; challenge?: ChallengeConfig }): InspectResult {
    const { nowMs } = req;
    // Invariant: an object without tables (never written, or its state deleted) is read as
    // "never seen" without creating any: looking up an invented id stores nothing.
    const stored = this.exists();
    if (!stored) {
      this.limits = { free: null, ceiling: null };
      this.solveScore = NO_SOLVES;
      this.blockUntilMs = null;
    }
    const count = (table: (typeof TABLES)[number]) =>
      stored ? this.sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`).one().n : 0;
    const known = TABLES.some((t) => count(t) > 0);
    const configs = this.configs ?? (stored ? this.storedConfigs() : undefined) ?? null;
    const bucket = configs?.bucket ?? req.bucket;
    const ceiling = configs?.ceiling ?? req.ceiling;
    const limits = this.stored();
    const tokens = stored
      ? this.sql
          .exec<{ jti: string; credits: number; expires_ms: number }>(
            "SELECT jti, credits, expires_ms FROM tokens WHERE expires_ms > ? ORDER BY expires_ms DESC LIMIT ?",
            nowMs,
            INSPECT_MAX_TOKENS,
          )
          .toArray()
          .map((r) => ({ id: r.jti.slice(0, 12), credits: r.credits, expiresMs: r.expires_ms }))
      : [];
    const challenge =
      req.challenge && configs
        ? { ...req.challenge, adaptive: { ...req.challenge.adaptive, halfLifeSeconds: configs.halfLifeSeconds } }
        : req.challenge;
    const blockedUntilMs = this.blockedUntil(nowMs);
    return {
      known,
      configs,
      bucket: peek(limits.free ?? fullBucket(bucket, nowMs), bucket, nowMs),
      ceiling: peek(limits.ceiling ?? fullBucket(ceiling, nowMs), ceiling, nowMs),
      tokens,
      sessions: stored ? this.openSlots("session", nowMs).count : 0,
      streams: stored ? this.openSlots("stream", nowMs).count : 0,
      spent: count("spent"),
      solves: Math.round(decayed(this.solves(), configs?.halfLifeSeconds ?? challenge?.adaptive.halfLifeSeconds ?? 600, nowMs) * 100) / 100,
      ...(challenge ? { difficulty: this.difficulty(challenge, nowMs).difficulty! } : {}),
      blockedUntilMs,
      cleanupAtMs: this.alarmAtMs,
    };
  }

  /**
   * Operator reset: both buckets full again and the recent solves forgotten (difficulty back
   * to the plan's base). Kept: token credit balances (paid for), open sessions and streams
   * (live), spent marks (single use is security) and a block. Writes nothing for an unknown caller.
   */
  reset(): { reset: boolean } {
    if (!this.exists()) return { reset: false };
    const had =
      this.sql.exec<{ n: number }>("SELECT (SELECT COUNT(*) FROM limits) + (SELECT COUNT(*) FROM solves) AS n").toArray()[0]!.n > 0;
    if (!had) return { reset: false };
    this.sql.exec("DELETE FROM limits");
    this.sql.exec("DELETE FROM solves");
    this.limits = { free: null, ceiling: null };
    this.solveScore = NO_SOLVES;
    // Let the alarm drop the state soon if nothing else is left.
    this.scheduleAlarm(Date.now() + CLEANUP_SLACK_MS);
    return { reset: true };
  }

  /**
   * Operator block until `untilMs` (unix ms): every request and redemption of this caller is
   * refused (`blocked`) until then; renewals grant no lease. Replaces an earlier block.
   * The state is kept at least until the block ends (the alarm then drops it if idle).
   * @throws TypeError when `untilMs` is not a safe integer
   */
  block(req: { untilMs: number }): { blockedUntilMs: number } {
    if (!Number.isSafeInteger(req.untilMs)) throw new TypeError(`block(): untilMs ${req.untilMs} is not an integer`);
    this.ready();
    this.sql.exec("INSERT OR REPLACE INTO blocks (id, until_ms) VALUES (0, ?)", req.untilMs);
    this.blockUntilMs = req.untilMs;
    this.scheduleAlarm(req.untilMs + CLEANUP_SLACK_MS);
    return { blockedUntilMs: req.untilMs };
  }

  /** Operator unblock: the caller is admitted again as its buckets allow. @returns whether a block was lifted */
  unblock(): { unblocked: boolean } {
    if (!this.exists()) return { unblocked: false };
    const had = this.blockedUntil(Date.now()) !== null;
    const rows = this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM blocks").toArray()[0]!.n;
    if (rows === 0) return { unblocked: false };
    this.sql.exec("DELETE FROM blocks");
    this.blockUntilMs = null;
    this.scheduleAlarm(Date.now() + CLEANUP_SLACK_MS);
    return { unblocked: had };
  }

  private storedConfigs(): { bucket: BucketConfig; ceiling: BucketConfig; halfLifeSeconds: number } | undefined {
    const row = this.sql.exec<{ json: string }>("SELECT json FROM config WHERE id = 0").toArray()[0];
    if (!row) return undefined;
    this.configs = JSON.parse(row.json) as { bucket: BucketConfig; ceiling: BucketConfig; halfLifeSeconds: number };
    return this.configs;
  }
}
