/**
 * `Deps`: what the steps of the decision and tollbooth's own endpoints depend on — the
 * policy, the keyring, the identity resolver, the payment schemes and the stores they
 * reach (every Durable Object call bounded by `policy.storeTimeoutMs`) — built once per
 * `tollbooth()` from its options (`buildDeps`).
 */
import type { Keyring } from "../../shared/credentials/keys.ts";
import { importKeyring, parseSecrets } from "../../shared/credentials/keys.ts";
import { tokenVerifier } from "../../shared/credentials/token.ts";
import { type Identity, identityResolver } from "../../shared/identity/index.ts";
import { LeaseTable } from "../../shared/limits/lease.ts";
import { type NamedLimit, rateLimit, rateLimitPolicy } from "../../shared/limits/ratelimit-headers.ts";
import type { NetworkLimiter } from "../env.ts";
import type { AdmitResult, CallerState } from "../objects/caller-state.ts";
import type { OriginGate } from "../objects/origin-gate.ts";
import { type OriginShards, originShards } from "../objects/origin-shards.ts";
import { blockChecker, boundedStore, SPEND_SCOPE, type StoreNamespace } from "../objects/stores.ts";
import type { PaymentScheme } from "../schemes/contract.ts";
import { type Plan, type Policy, type PolicyInput, parsePolicy } from "../schemes/policy.ts";
import { paymentSchemes } from "../schemes/registry.ts";
import { normalizePath } from "./paths.ts";
import { SessionUses } from "./session-uses.ts";

/** One session to end at the origin (the eviction DELETE, workers/proxy/end-session.ts). */
export interface EndSessionRequest {
  /** The caller the session is counted for (its origin proof). */
  caller: string;
  /** The endpoint's path as the route's app sees it (the policy's `endpoint`); the origin's base path is put before it. */
  path: string;
  /** The victim's `Mcp-Session-Id`. */
  sessionId: string;
  /** Its `Mcp-Protocol-Version`, or null to send none (the origin then assumes its default). */
  version: string | null;
  /** The caller's own credential to send (the header whose value names the caller: `Authorization`, or the API-key header), by name; empty for none. */
  credential: Record<string, string>;
  /** The URL of the request that needs the room: `X-Forwarded-Host` / `-Proto` come from it. */
  url: URL;
}

/** The origin's status, or why it never answered (`unreachable`, or `timeout` past the bound). */
export type EndSessionOutcome = number | "unreachable" | "timeout";

/** Sends the DELETE of one session; never rejects. */
export type SessionEnder = (req: EndSessionRequest) => Promise<EndSessionOutcome>;

/** Options of `tollbooth()`. */
export interface TollboothOptions {
  /** The policy (validated here; defaults fill what is left out). */
  policy?: PolicyInput | undefined;
  /** `TOLLBOOTH_SECRET`: one or more comma-separated secrets, ≥ 16 bytes each. */
  secret: string;
  /** The `CallerState` Durable Object namespace (binding `CALLER_BUCKET`): one object per caller. */
  callers: DurableObjectNamespace<CallerState>;
  /**
   * The gateway-wide `CallerState` namespace where a payment's spend id is claimed before it
   * is settled (objects `spent:<spend id>`, workers/objects/stores.ts `SPEND_SCOPE`): with several
   * routes, the unscoped binding every route shares, so an authorization is settled at most
   * once across them. Default `callers`.
   */
  spends?: DurableObjectNamespace<CallerState> | undefined;
  /** The `OriginGate` Durable Object namespace (the origin ceiling's shards and root); required when the policy sets `originCeiling`. */
  originGate?: DurableObjectNamespace<OriginGate> | undefined;
  /** The network ceiling (Workers Rate Limiting binding); without it the layer is off. */
  network?: NetworkLimiter | undefined;
  /** The `TOLLBOOTH_KEYS` KV namespace of issued API keys (optional). */
  keys?: KVNamespace | undefined;
  /** `fetch` used for JWKS and payment backends (injectable, as the MCP SDK's `FetchLike`). */
  fetch?: typeof fetch | undefined;
  /** The Worker's string bindings, for the secrets payment schemes need (each scheme names its own). */
  secrets?: Readonly<Record<string, string | undefined>> | undefined;
  /**
   * Ends a session at the origin on a caller's behalf (workers/proxy/end-session.ts
   * `sessionEnder`, built with the origin's proxy options): without it a caller at its session
   * cap is refused (429 `sessions`) whatever `limits.onSessionCap` says.
   */
  endSession?: SessionEnder | undefined;
}

/** Everything the steps and the own endpoints depend on. */
export interface Deps {
  policy: Policy;
  /** The keyring of `TOLLBOOTH_SECRET`, imported once. */
  keyring: () => Promise<Keyring>;
  /** The callers' state; every call bounded by `policy.storeTimeoutMs`. */
  callers: StoreNamespace;
  /** Who is calling (see shared/identity/index.ts). */
  identify: (headers: Headers) => Promise<Identity>;
  /** The network ceiling, when the binding is set. */
  network: NetworkLimiter | undefined;
  /** The origin ceiling as this isolate holds it (leases of its shard, the congestion); null when the policy sets none. */
  origin: OriginShards | null;
  /** The payment schemes the policy enables, in offer order (workers/schemes/). */
  schemes: readonly PaymentScheme[];
  /** Rate-limit headers for a decision (draft-ietf-httpapi-ratelimit-headers-10). */
  limitHeaders: (plan: Plan, decision: Pick<AdmitResult, "bucket" | "ceiling">, nowMs: number) => Record<string, string>;
  /**
   * Unix ms the block of the caller `identity` (an `Identity.id`, in `callers`) ends, or null:
   * asked only when a payment or an access token makes a request a payer's, so the block of
   * the identity it came from still applies. Answers are reused per isolate for at most
   * `BLOCK_MEMO_MS` (`blockChecker`). Rejects as the store does (`StoreTimeoutError`).
   */
  blockedUntil: (identity: string, nowMs: number) => Promise<number | null>;
  /**
   * Claim a redemption's spend id gateway-wide, right before its payment is settled
   * (`PaymentScheme.settle`): resolves true exactly once per spend id across every route and
   * isolate (the `CallerState` named `SPEND_SCOPE` + spend id), false after. Rejects as the store does.
   * @param untilMs unix ms the credential is refused anyway (its `spendUntilMs`)
   */
  claimSpend: (spendId: string, untilMs: number) => Promise<boolean>;
  /**
   * Lift a claim of `claimSpend` whose payment never reached anything that could complete it
   * (`PaymentScheme.retryable`): the spend id may be claimed again. Rejects as the store does.
   */
  releaseSpend: (spendId: string) => Promise<void>;
  /** Leases this isolate holds, per caller (policy `leases`); null when off. */
  leases: LeaseTable | null;
  /** Sessions used by requests admitted from a lease, for the next call to the caller's object; null when leases are off. */
  sessionUses: SessionUses | null;
  /** Verifies `Tollbooth-Token`s, remembering good signatures per isolate (built once, with the keyring). */
  tokens: (keyring: Keyring) => ReturnType<typeof tokenVerifier>;
  /** The MCP endpoint's path, normalized (./paths.ts). */
  endpoint: string;
  /** Whether a request's `Origin` header value is allowed (the policy's `allowedOrigins`, `*`, or the gateway's own scheme, host and port). */
  allowsOriginHeader: (originHeader: string, url: URL) => boolean;
  /** Remove tollbooth's credentials (every scheme's) from headers about to be forwarded. */
  strip: (headers: Headers) => void;
  /** Ends a session at the origin on a caller's behalf (session eviction); null without one (`TollboothOptions.endSession`). */
  endSession: SessionEnder | null;
}

/** `RateLimit-Policy` and `RateLimit` headers of a plan's free bucket and ceiling (draft-ietf-httpapi-ratelimit-headers-10). */
export function limitHeaders(plan: Plan, d: Pick<AdmitResult, "bucket" | "ceiling">, nowMs: number): Record<string, string> {
  const limits: NamedLimit[] = [
    { name: "free", config: plan.bucket, result: d.bucket },
    { name: "ceiling", config: plan.ceiling, result: d.ceiling },
  ];
  return { "ratelimit-policy": rateLimitPolicy(limits), ratelimit: rateLimit(limits, nowMs) };
}

/**
 * Build the deps of one `tollbooth()`.
 * @throws TypeError naming the bad option (`policy.<field>`, `secret`, `callers`, `originGate`,
 *   a payment scheme's secret)
 */
export function buildDeps(options: TollboothOptions): Deps {
  const policy = parsePolicy(options.policy);
  try {
    parseSecrets(options.secret);
  } catch (err) {
    throw new TypeError(`tollbooth(): option \`secret\`: ${(err as Error).message}`);
  }
  if (!options.callers || typeof options.callers.idFromName !== "function") {
    throw new TypeError("tollbooth(): option `callers` must be the CallerState Durable Object namespace");
  }
  let keyringPromise: Promise<Keyring> | undefined;
  let verifier: ReturnType<typeof tokenVerifier> | undefined;
  const fetchImpl = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const schemes: readonly PaymentScheme[] = paymentSchemes(policy, { fetch: fetchImpl, secrets: options.secrets ?? {} });
  const callers = boundedStore(options.callers, policy.storeTimeoutMs);
  const spends = options.spends ? boundedStore(options.spends, policy.storeTimeoutMs) : callers;
  const allowAnyOrigin = policy.allowedOrigins.includes("*");
  const allowedOrigins = new Set(policy.allowedOrigins);
  return {
    policy,
    keyring: () => (keyringPromise ??= importKeyring(options.secret)),
    callers,
    identify: identityResolver(policy.identity, { keys: options.keys, ...(options.fetch ? { fetch: options.fetch } : {}) }),
    network: options.network,
    origin: originShards(options.originGate, policy, policy.storeTimeoutMs),
    schemes,
    limitHeaders,
    blockedUntil: blockChecker((identity, nowMs) =>
      callers
        .of(identity)
        .blocked({ nowMs })
        .then((r) => r.blockedUntilMs),
    ),
    claimSpend: (spendId, untilMs) =>
      spends
        .of(SPEND_SCOPE + spendId)
        .claim({ spendId, untilMs })
        .then((r) => r.claimed),
    releaseSpend: (spendId) => spends.of(SPEND_SCOPE + spendId).unclaim({ spendId }),
    leases: policy.leases ? new LeaseTable() : null,
    sessionUses: policy.leases ? new SessionUses() : null,
    tokens: (keyring) => (verifier ??= tokenVerifier(keyring)),
    endpoint: normalizePath(policy.endpoint),
    allowsOriginHeader: (originHeader, url) => allowAnyOrigin || originHeader === url.origin || allowedOrigins.has(originHeader),
    strip: (headers) => {
      for (const s of schemes) s.strip(headers);
    },
    endSession: options.endSession ?? null,
  };
}
