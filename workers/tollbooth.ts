/**
 * `tollbooth(options)`: the Hono middleware that gates every request before the proxy.
 *
 * Layers, outermost first (each refusal answers before the origin is asked):
 * 1. `Origin` check (MCP transport, DNS rebinding): 403.
 * 2. Network ceiling: every request of one network (`CF-Connecting-IP` reduced to the
 *    policy's prefix), tollbooth's own endpoints included, on the Workers Rate Limiting
 *    binding — no Durable Object call: 429.
 * 3. One reading of the body: bounded in size (413) and time (408), JSON as UTF-8 only
 *    (415), nesting bounded (400); the clock is read after the body has arrived.
 * 4. Identity (shared/identity/index.ts) and its plan; unverified callers share their network's
 *    object and free budget.
 * 5. One call to the caller's Durable Object: the caller's ceiling (429), the session and
 *    stream caps (429), credentials (`Tollbooth-Solution`, `Tollbooth-Token`, verified
 *    statelessly first), then the free bucket: over budget → 402 with a challenge whose
 *    difficulty adapts to the caller's recent solves (or 429 in the plan's 429 mode).
 *    A payment or an access token that makes the request its payer's (a scheme's payer id)
 *    is refused 403 `blocked` when the identity the request came from is blocked: for a
 *    payment before the payment service is asked, for a token in parallel with the payer's
 *    object (`Gate.blockedUntil`, answers reused per isolate ≤ `BLOCK_MEMO_MS` = 5 s).
 * 6. Origin ceiling (all callers together, one `OriginGate` object), when the policy sets
 *    one: 429, and the caller's charge is given back.
 * 7. A payment to complete (`PaymentScheme.settle`): its spend id claimed once gateway-wide
 *    (every route shares the object), then settled; a claim lost elsewhere is refused 402
 *    `<prefix>_spent`.
 * Admitted requests go on to the next handler (the proxy) with `c.var.tollbooth` set; a
 * request the origin never answers (502, 504) is refunded by the proxy through it.
 *
 * When a Durable Object throws or does not answer within `policy.storeTimeoutMs`, the
 * request fails closed (503, `Retry-After: 1`) or, with `onStoreError: "open"`, goes to
 * the origin unmetered (`Tollbooth-Degraded: store-unavailable`) — except a request that
 * carries a credential and tollbooth's own endpoints, which always fail closed.
 */
import type { Context, MiddlewareHandler } from "hono";
import { identityResolver, networkFor } from "../shared/identity/index.ts";
import { fromBase64Url } from "../shared/wire/encoding.ts";
import { bodyCost, ErrorCode, isBodyError, parseBody, type ParsedBody } from "../shared/jsonrpc.ts";
import { importKeyring, parseSecrets, type Keyring } from "../shared/credentials/keys.ts";
import { maxPayableCost, parsePolicy, planFor, type Plan, type Policy, type PolicyInput } from "./schemes/policy.ts";
import { LeaseTable } from "../shared/limits/lease.ts";
import { refuse } from "../shared/result.ts";
import { signToken, tokenVerifier, type TokenClaims } from "../shared/credentials/token.ts";
import { CREDITS_HEADER, DEGRADED_HEADER, TOKEN_HEADER, WELL_KNOWN } from "../shared/wire/headers.ts";
import { jsonRequestProblem, readBody, TOO_LARGE, TOO_SLOW } from "./body.ts";
import type { AdmitRequest, AdmitResult, CallerBucket, RefundRequest, SlotRequest } from "./caller-bucket.ts";
import type { NetworkLimiter } from "./env.ts";
import { blockChecker, boundedStore, limitHeaders, originCeiling, overNetworkCeiling, SPEND_SCOPE, type Gate } from "./gate.ts";
import type { OriginGate } from "./origin-gate.ts";
import { describeRequest, gatewayUrls, overBudget } from "./refusal/over-budget.ts";
import { toJsonRpc } from "./refusal/json-rpc.ts";
import { toProblem } from "./refusal/problem.ts";
import { blocked, tooMany, unavailable as unavailableRefusal } from "./refusal/layers.ts";
import { Refusal } from "./refusal/refusal.ts";
import { addResultMeta } from "./mcp-meta.ts";
import { decided, note } from "./observe/observe.ts";
import type { PaymentScheme, Redeemable, Settled } from "./schemes/contract.ts";
import { isPayerId, paymentSchemes, schemeOfReason } from "./schemes/registry.ts";
import { wellKnown } from "./well-known.ts";

export { StoreTimeoutError, type CallerStore, type Gate, type StoreNamespace } from "./gate.ts";

/** Options of `tollbooth()`. */
export interface TollboothOptions {
  /** The policy (validated here; defaults fill what is left out). */
  policy?: PolicyInput | undefined;
  /** `TOLLBOOTH_SECRET`: one or more comma-separated secrets, ≥ 16 bytes each. */
  secret: string;
  /** The `CallerBucket` Durable Object namespace. */
  buckets: DurableObjectNamespace<CallerBucket>;
  /**
   * The gateway-wide `CallerBucket` namespace where a payment's spend id is claimed before it
   * is settled (objects `spent:<spend id>`, workers/gate.ts `SPEND_SCOPE`): with several
   * routes, the unscoped binding every route shares, so an authorization is settled at most
   * once across them. Default `buckets`.
   */
  spends?: DurableObjectNamespace<CallerBucket> | undefined;
  /** The `OriginGate` Durable Object namespace; required when the policy sets `originCeiling`. */
  originGate?: DurableObjectNamespace<OriginGate> | undefined;
  /** The network ceiling (Workers Rate Limiting binding); without it the layer is off. */
  network?: NetworkLimiter | undefined;
  /** The `TOLLBOOTH_KEYS` KV namespace of issued API keys (optional). */
  keys?: KVNamespace | undefined;
  /** `fetch` used for JWKS and payment backends (injectable, as the MCP SDK's `FetchLike`). */
  fetch?: typeof fetch | undefined;
  /** The Worker's string bindings, for the secrets payment schemes need (`TOLLBOOTH_LIGHTNING_SECRET`). */
  secrets?: Readonly<Record<string, string | undefined>> | undefined;
}

/** What the middleware hands to the proxy for an admitted request. */
export interface TollboothState {
  /** Caller identity (see shared/identity/index.ts): the `Identity.id`. */
  caller: string;
  /** Parsed JSON-RPC body on the MCP endpoint, else null. */
  body: ParsedBody | null;
  /** Raw request body, already read (null when there was none). */
  rawBody: Uint8Array<ArrayBuffer> | null;
  /** Units charged. */
  cost: number;
  /** The Durable Object's decision; null when it was unavailable and the request went on unmetered (`onStoreError: "open"`). */
  decision: AdmitResult | null;
  /**
   * Called by the proxy, at most once, when the origin never answered (502 unreachable,
   * 504 no response headers in time): the request's charge is given back.
   */
  refund?: () => void;
  /**
   * For a GET SSE stream counted against the caller's stream cap: called by the proxy, at
   * most once, when the response stream ends, errors, is cancelled by the client, or is
   * cut at `streamMaxMs`; also when the origin never answered or answered without a stream.
   */
  release?: () => void;
  /** Milliseconds after which the proxy ends a GET SSE stream (the client resumes with `Last-Event-ID`). */
  streamMaxMs?: number;
  /** Remove tollbooth's credentials (every scheme's) from headers about to be forwarded. */
  strip?: (headers: Headers) => void;
  /** Called by the proxy, once: the origin's response status, or why it never answered (its own 502 / 504). For the decision record. */
  origin?: (outcome: number | "unreachable" | "timeout") => void;
}

/** Hono variables set by `tollbooth()`. */
export interface TollboothVariables {
  tollbooth: TollboothState;
}

export { DEGRADED_HEADER };

/** Methods of the MCP endpoint (Streamable HTTP, MCP 2025-11-25); others get 405 at the gateway. */
const ENDPOINT_METHODS = ["POST", "GET", "DELETE", "OPTIONS"];

/** Paths of OAuth metadata (RFC 9728, RFC 8414, OpenID Discovery): always cost 0. */
const OAUTH_METADATA = /^\/\.well-known\/(oauth-protected-resource|oauth-authorization-server|openid-configuration)(\/|$)/;


/** Run `p` after the response (`waitUntil`) when there is an execution context; log its failure. */
function later(c: Context, what: string, p: Promise<unknown>): void {
  const guarded = p.catch((err) => console.error(`tollbooth: ${what} failed`, err));
  try {
    c.executionCtx.waitUntil(guarded);
  } catch {
    // No execution context (a test calling the app directly): the promise runs on its own.
  }
}

/** A random slot id (16 bytes, hex). */
function slotId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** What the decision record says about the origin's answer (workers/observe/). */
const originOutcome = (c: Context) => (o: number | "unreachable" | "timeout") => note(c, typeof o === "number" ? { originStatus: o } : { originError: o });

/** The name of one of tollbooth's own endpoints, for the decision record (`policy`, `challenge`, `verify`, `status`, else `other`). */
function ownEndpoint(path: string): string {
  const name = path.slice(WELL_KNOWN.length).replace(/^\/|\/$/g, "");
  return name === "" ? "policy" : ["challenge", "verify", "status"].includes(name) ? name : "other";
}

/** Answer `r` on the endpoint before the caller is known (JSON-RPC error; `body` for the ids, when read). */
function refused(c: Context, r: Refusal, body: ParsedBody | null = null): Response {
  return decided(c, r.reason!, toJsonRpc(r, body));
}

/**
 * Build the middleware.
 * @throws TypeError naming the bad option (`policy.<field>`, `secret`, `buckets`, `originGate`,
 *   a payment scheme's secret such as `TOLLBOOTH_LIGHTNING_SECRET`)
 */
export function tollbooth(options: TollboothOptions): MiddlewareHandler<{ Variables: TollboothVariables }> {
  const policy = parsePolicy(options.policy);
  try {
    parseSecrets(options.secret);
  } catch (err) {
    throw new TypeError(`tollbooth(): option \`secret\`: ${(err as Error).message}`);
  }
  if (!options.buckets || typeof options.buckets.idFromName !== "function") {
    throw new TypeError("tollbooth(): option `buckets` must be the CallerBucket Durable Object namespace");
  }
  let keyringPromise: Promise<Keyring> | undefined;
  const fetchImpl = options.fetch ?? ((input: RequestInfo | URL, init?: RequestInit) => fetch(input, init));
  const schemes: readonly PaymentScheme[] = paymentSchemes(policy, { fetch: fetchImpl, secrets: options.secrets ?? {} });
  const strip = (headers: Headers) => {
    for (const s of schemes) s.strip(headers);
  };
  const buckets = boundedStore(options.buckets, policy.storeTimeoutMs);
  const spends = options.spends ? boundedStore(options.spends, policy.storeTimeoutMs) : buckets;
  const gate: Gate = {
    policy,
    keyring: () => (keyringPromise ??= importKeyring(options.secret)),
    buckets,
    identify: identityResolver(policy.identity, { keys: options.keys, ...(options.fetch ? { fetch: options.fetch } : {}) }),
    network: options.network,
    originTake: originCeiling(options.originGate, policy.originCeiling, policy.storeTimeoutMs),
    schemes,
    limitHeaders,
    blockedUntil: blockChecker((identity, nowMs) => buckets.of(identity).blocked({ nowMs }).then((r) => r.blockedUntilMs)),
    claimSpend: (spendId, untilMs) => spends.of(SPEND_SCOPE + spendId).claim({ spendId, untilMs }).then((r) => r.claimed),
  };
  /** Leases this isolate holds, per caller (policy `leases`). */
  const leases = policy.leases ? new LeaseTable() : null;
  /** Verifies `Tollbooth-Token`s, remembering good signatures per isolate (built with the keyring). */
  let verifyToken: ReturnType<typeof tokenVerifier> | undefined;
  const endpoint = normalizePath(policy.endpoint);
  const allowAnyOrigin = policy.allowedOrigins.includes("*");
  const allowedOrigins = new Set(policy.allowedOrigins);

  return async function tollbooth(c, next) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const network = networkFor(req.headers, policy.identity.ipv4Prefix, policy.identity.ipv6Prefix);
    // Until the identity is known, the request is its network's (as an `ip` caller).
    note(c, { caller: network, network: network.replace(/^ip:/, "") });

    // MCP transport (2025-11-25): a present, invalid Origin gets 403 (DNS rebinding).
    const origin = req.headers.get("origin");
    if (origin !== null && !allowAnyOrigin && origin !== url.origin && !allowedOrigins.has(origin)) {
      return refused(c, new Refusal({ status: 403, code: "forbidden_origin", rpcCode: ErrorCode.ForbiddenOrigin, message: `Forbidden: Origin ${origin} is not allowed`, data: { origin }, reason: { decision: "bad_request", reason: "forbidden_origin" } }));
    }

    // Network ceiling: before any body, identity work or Durable Object call, and for
    // every path (tollbooth's own endpoints too), whatever credential the request carries.
    if (await overNetworkCeiling(gate.network, network)) {
      return refused(c, tooMany("network", `over the ceiling of your network (${network})`, policy.networkRetryAfterSeconds));
    }

    if (url.pathname === WELL_KNOWN || url.pathname.startsWith(WELL_KNOWN + "/")) {
      try {
        const answer = await wellKnown(gate, req, url, (fields) => note(c, fields));
        return decided(c, { decision: answer.status === 429 ? "rate_limited" : "own_endpoint", reason: answer.status === 429 ? "ceiling" : ownEndpoint(url.pathname) }, answer);
      } catch (err) {
        // tollbooth's own endpoints always fail closed; the cause is logged, not sent.
        console.error("tollbooth: well-known endpoint failed", err);
        return decided(c, { decision: "unavailable", reason: "store" }, toProblem(new Refusal({ status: 503, code: "unavailable", message: "The rate-limit state could not be reached", retryAfter: 1 })));
      }
    }

    const isEndpoint = normalizePath(url.pathname) === endpoint;
    // A body the gateway will not read as UTF-8 JSON is refused before it is read.
    const mediaProblem = isEndpoint && req.method === "POST" ? jsonRequestProblem(req.headers) : null;
    if (mediaProblem !== null) return refused(c, new Refusal({ status: 415, code: "unsupported_media_type", rpcCode: ErrorCode.UnsupportedMediaType, message: mediaProblem, reason: { decision: "bad_request", reason: "unsupported_media_type" } }));
    const rawBody = await readBody(req, policy.maxBodyBytes, policy.bodyTimeoutMs);
    if (rawBody === TOO_LARGE) {
      return refused(c, new Refusal({ status: 413, code: "payload_too_large", rpcCode: ErrorCode.PayloadTooLarge, message: `Payload too large: the limit is ${policy.maxBodyBytes} bytes`, data: { maxBodyBytes: policy.maxBodyBytes }, reason: { decision: "bad_request", reason: "payload_too_large" } }));
    }
    if (rawBody === TOO_SLOW) {
      return refused(c, new Refusal({ status: 408, code: "request_timeout", rpcCode: ErrorCode.RequestTimeout, message: `Request timeout: the body did not arrive within ${policy.bodyTimeoutMs} ms`, data: { bodyTimeoutMs: policy.bodyTimeoutMs }, reason: { decision: "bad_request", reason: "request_timeout" } }));
    }
    // Invariant: the clock is read after the whole body has arrived, so a body trickled in
    // slowly cannot make an expired challenge or token look fresh.
    const nowMs = Date.now();
    note(c, { time: nowMs });

    let body: ParsedBody | null = null;
    if (isEndpoint && req.method === "POST") {
      const parsed = parseBody(rawBody ?? new Uint8Array(), policy.maxJsonDepth);
      if (isBodyError(parsed)) {
        const why = parsed.code === ErrorCode.ParseError ? "parse_error" : "invalid_request";
        return refused(c, new Refusal({ status: 400, code: why, rpcCode: parsed.code, message: parsed.message, reason: { decision: "bad_request", reason: why } }));
      }
      body = parsed;
      note(c, describeRpc(body));
      const mismatch = headerMismatch(req.headers, body);
      if (mismatch) return refused(c, new Refusal({ status: 400, code: "header_mismatch", rpcCode: ErrorCode.HeaderMismatch, message: mismatch, reason: { decision: "bad_request", reason: "header_mismatch" } }), body);
    } else if (isEndpoint && !ENDPOINT_METHODS.includes(req.method)) {
      // GET (SSE stream), DELETE (end session) and OPTIONS (CORS preflight) carry no JSON-RPC call.
      return refused(c, new Refusal({ status: 405, code: "method_not_allowed", rpcCode: ErrorCode.MethodNotAllowed, message: `Method not allowed: ${req.method} ${policy.endpoint}; use ${ENDPOINT_METHODS.join(", ")}`, headers: { allow: ENDPOINT_METHODS.join(", ") }, reason: { decision: "bad_request", reason: "method_not_allowed" } }));
    }

    const identity = await gate.identify(req.headers);
    const plan = planFor(policy, identity.verified ? identity.plan : undefined);
    const cost = body ? bodyCost(plan, body) : isEndpoint ? 0 : OAUTH_METADATA.test(url.pathname) ? 0 : plan.costs.otherPaths;
    const maxCost = maxPayableCost(plan);
    note(c, { caller: identity.id, network: identity.network.replace(/^ip:/, ""), plan: plan.name, cost });
    if (cost > maxCost) {
      // Neither the free bucket nor a solve could ever pay for it: an error, not an endless 402.
      const what = describeRequest(req.method, url.pathname, body);
      return refused(c, new Refusal({ status: 400, code: "cost_too_high", rpcCode: ErrorCode.InvalidRequest, message: `Invalid Request: ${what} costs ${cost}; at most ${maxCost} can be admitted at once (plan ${plan.name}): send fewer messages per batch`, data: { cost, maxCost, plan: plan.name }, reason: { decision: "bad_request", reason: "cost_too_high" } }), body);
    }

    // The request's caller; a payment that names its payer, or an access token bought
    // by one, makes the request that payer's.
    let caller = identity.id;
    const keyring = await gate.keyring();
    const admit: AdmitRequest = { cost, nowMs, bucket: plan.bucket, ceiling: plan.ceiling, challenge: plan.challenge };
    const slot = slotFor(req, body, isEndpoint, plan, nowMs);
    if (slot) admit.slot = slot;
    // Credentials: the first scheme whose credential the request carries, else an access
    // token. Each is verified statelessly here; what it spends is the Durable Object's.
    let tokenClaims: TokenClaims | undefined;
    let refusedBy: PaymentScheme | undefined;
    /** What a payment service said when it refused the credential (`error.data.detail`). */
    let refusedDetail: { detail: string } | undefined;
    let credential = false;
    /** A payment to complete once the caller's state holds its redemption (its settlement). */
    let settlement: { scheme: PaymentScheme; credential: unknown } | undefined;
    let forwardBody = rawBody;
    /** The scheme of the credential the request carries (its `type`, or `token`), for the decision record. */
    let via: string | undefined;
    /** What paid, when the request is admitted with its credential: the scheme's `prefix`, or `token`. */
    let paidAs: string | undefined;
    /** What the credential's payment was, when it is one (counted once the request is admitted with it redeemed). */
    let payment: Redeemable["paid"];
    /** Record how the request ended (its caller as it is now: a payer may have named it). */
    const ended = (r: Refusal) => decided(c, { caller, scheme: via, ...r.reason! }, toJsonRpc(r, body));
    /** 503 when a caller's state could not be reached (credentials always fail closed). */
    const unavailable = () => ended(unavailableRefusal("store"));
    for (const scheme of schemes) {
      const read = scheme.read({ headers: req.headers, body, raw: rawBody });
      if (read === null) continue;
      credential = true;
      via = scheme.type;
      paidAs = scheme.prefix;
      // A credential carried in the body (MCP `_meta`) is removed from what the origin gets.
      if (read.ok && read.body) forwardBody = read.body;
      if (read.ok && scheme.namesPayer) {
        // Invariant: a payment that makes the request its payer's does not walk around a block
        // of the identity it came from: checked before the payment service is asked (no
        // /verify, no /settle, nothing forwarded for a blocked caller).
        let until: number | null;
        try {
          until = await gate.blockedUntil(identity.id, nowMs);
        } catch (err) {
          console.error("tollbooth: CallerBucket.blocked failed", err);
          return unavailable();
        }
        if (until !== null) return ended(blocked((until - nowMs) / 1000));
      }
      const check = read.ok ? await scheme.verify(read.credential, { policy, plan, keyring, caller, nowMs, cost }) : read;
      if (!check.ok) {
        admit.refused = `${scheme.prefix}_${check.reason}` as AdmitRequest["refused"];
        refusedBy = scheme;
        if (check.detail !== undefined) refusedDetail = { detail: check.detail };
      } else {
        const r = check.redemption;
        if (check.identity !== undefined) caller = check.identity;
        admit.redeem = r;
        payment = check.paid;
        // A one-time credential (a solution, a bundle of credits) buys an access token the caller
        // keeps; a reusable one (L402) is its own token; a per-request payment buys none.
        if (!r.reusable && check.token !== false) tokenClaims = { sub: caller, jti: r.jti, exp: r.tokenExpiresMs / 1000, cr: r.credits };
        if (scheme.settle && read.ok) settlement = { scheme, credential: read.credential };
      }
      break;
    }
    const tokenHeader = req.headers.get(TOKEN_HEADER);
    if (!credential && tokenHeader !== null) {
      credential = true;
      via = "token";
      paidAs = "token";
      verifyToken ??= tokenVerifier(keyring);
      // A token bought by a payer names that payer: it is verified as theirs.
      const payer = payerNamedBy(tokenHeader);
      const check = await verifyToken(tokenHeader.trim(), payer ?? caller, nowMs);
      if (!check.ok) admit.refused = `token_${check.reason}`;
      else {
        admit.tokenId = check.claims.jti;
        if (payer !== null) caller = payer;
      }
    }

    // A request that became a payer's through its access token: the identity it came from
    // must not be blocked. Asked in parallel with the payer's object (per-isolate memo, at
    // most BLOCK_MEMO_MS old); what the admit took is given back when it is.
    const identityBlock = caller !== identity.id && admit.redeem === undefined
      ? gate.blockedUntil(identity.id, nowMs).then((until) => ({ ok: true as const, until }), (err: unknown) => ({ ok: false as const, err }))
      : null;
    const store = gate.buckets.of(caller);
    let decision: AdmitResult;
    // Leases: a request with no credential and no slot may be admitted from this isolate's
    // lease of the caller's units, with no Durable Object call (shared/limits/lease.ts).
    const leasable = leases !== null && !credential && !slot;
    let local = leasable ? leases.admit(caller, cost, nowMs) : null;
    if (local) {
      decision = leaseDecision(plan, cost, local, nowMs);
      if (leases!.startRenewal(caller, nowMs)) {
        const want = leases!.want(caller, nowMs, plan.bucket.capacity, plan.ceiling.capacity);
        const renewal = want ? store.renew({ nowMs, bucket: plan.bucket, ceiling: plan.ceiling, lease: want }).then((grant) => leases!.install(caller, grant, Date.now())) : Promise.resolve();
        later(c, "CallerBucket.renew", renewal.finally(() => leases!.renewed(caller)));
      }
    } else try {
      if (leasable) {
        const want = leases!.want(caller, nowMs, plan.bucket.capacity, plan.ceiling.capacity);
        if (want) admit.lease = want;
      }
      decision = await store.admit(admit);
      if (decision.lease) leases!.install(caller, decision.lease, nowMs);
      else if (leasable && !decision.admitted && decision.reason === "over_budget") {
        // A concurrent request of this caller may have brought a lease back meanwhile: the
        // units it holds were taken from the bucket this request found empty. Use them.
        const late = leases!.spend(caller, cost, nowMs);
        if (late) {
          decision = leaseDecision(plan, cost, late, nowMs);
          local = late;
        }
      }
    } catch (err) {
      // A credential is never honoured unverified: its spend (credits, a challenge's single
      // use) lives in the store. Without a credential, "open" trades metering for availability.
      if (policy.onStoreError === "open" && !credential) {
        console.warn(`tollbooth: CallerBucket.admit failed; forwarding unmetered (onStoreError "open") for ${caller}`, err);
        c.set("tollbooth", { caller, body, rawBody, cost, decision: null, strip, origin: originOutcome(c) });
        note(c, { caller, decision: "admitted_unmetered", reason: "store_unavailable" });
        await next();
        c.res.headers.set(DEGRADED_HEADER, "store-unavailable");
        return;
      }
      // Fail closed: without the caller's state nothing is admitted. The cause is logged, not sent.
      console.error("tollbooth: CallerBucket.admit failed", err);
      return unavailable();
    }

    // What giving this request back means: its cost to what paid it, and its slot.
    const tokenId = admit.tokenId ?? admit.redeem?.jti;
    const refundReq = (): RefundRequest => ({
      nowMs: Date.now(),
      bucket: plan.bucket,
      cost,
      paidBy: decision.paidBy ?? "free",
      ...(tokenId !== undefined ? { tokenId } : {}),
      ...(slot ? { slotId: slot.id } : {}),
    });

    if (identityBlock) {
      const found = await identityBlock;
      if (!found.ok || found.until !== null) {
        // Refused after all: the payer's token gets back what the admit took from it, and the slot.
        if (decision.admitted) later(c, "CallerBucket.refund", store.refund(refundReq()));
        if (!found.ok) {
          console.error("tollbooth: CallerBucket.blocked failed", found.err);
          return unavailable();
        }
        return ended(blocked((found.until! - nowMs) / 1000, {}, identity.id));
      }
    }

    const headers = gate.limitHeaders(plan, decision, nowMs);
    // Invariant: the token says the credits the object minted (a solution redeemed below the
    // caller's current difficulty buys fewer than its challenge offered).
    if (decision.minted && tokenClaims) headers[TOKEN_HEADER] = await signToken(keyring, { ...tokenClaims, cr: decision.mintedCredits ?? tokenClaims.cr });
    if (decision.credits !== undefined) headers[CREDITS_HEADER] = String(decision.credits);

    if (!decision.admitted) {
      if (decision.reason === "blocked") {
        // An operator blocked the caller (docs/admin.md): refused before any credential was redeemed or the origin asked.
        return ended(blocked(decision.retryAfterSeconds ?? 1));
      }
      if (decision.reason === "ceiling") {
        return ended(tooMany("ceiling", `over the safety ceiling of ${plan.ceiling.capacity} requests`, decision.ceiling.retryAfterSeconds, headers));
      }
      if (decision.reason === "sessions" || decision.reason === "streams") {
        const max = decision.reason === "sessions" ? plan.limits.sessions : plan.limits.streams;
        return ended(tooMany(decision.reason, `over the cap of ${max} open ${decision.reason === "sessions" ? "sessions" : "GET streams"} per caller (end one with DELETE, or close a stream)`, decision.retryAfterSeconds ?? 1, headers, { max }));
      }
      const what = describeRequest(req.method, url.pathname, body);
      const reason = decision.reason ?? "over_budget";
      const status = (refusedBy ?? schemeOfReason(schemes, reason))?.refusalStatus(reason) ?? 402;
      const offer = { policy, plan, keyring, caller, nowMs, cost, url, what, reason, difficulty: decision.difficulty ?? plan.challenge.difficulty };
      // The scheme's own words for its redemption refused by the caller's object, when it has some.
      const explained = admit.redeem ? schemeOfReason(schemes, reason)?.refusalDetail?.(reason, { redemption: admit.redeem, difficulty: offer.difficulty, worth: decision.solutionCredits, cost, challengeUrl: gatewayUrls(url).challengeUrl }) : undefined;
      if (explained !== undefined) refusedDetail = { detail: explained };
      return ended(await overBudget({ schemes, offer, url, body, what, reason, cost, retryAfterSeconds: decision.bucket.retryAfterSeconds, solves: decision.solves, headers, status, credits: decision.credits, ...(refusedDetail ? { detail: refusedDetail } : {}) }));
    }

    // Origin ceiling: all callers together; taken only for a request the caller's own
    // layers admitted, so a caller over its budget cannot use up everyone's capacity.
    if (gate.originTake) {
      let room;
      try {
        room = await gate.originTake(nowMs);
      } catch (err) {
        if (local) leases!.refund(caller, cost, Date.now());
        else if (settlement && admit.redeem) later(c, "CallerBucket.revoke", store.revoke({ jti: admit.redeem.jti }));
        else later(c, "CallerBucket.refund", store.refund(refundReq()));
        console.error("tollbooth: OriginGate.take failed", err);
        return ended(unavailableRefusal("origin_gate"));
      }
      if (!room.success) {
        if (local) leases!.refund(caller, cost, Date.now());
        else if (settlement && admit.redeem) {
          // Invariant: a payment not settled buys nothing. Its balance is withdrawn (its spent
          // mark stays: the client signs a new authorization) and no token is handed out.
          later(c, "CallerBucket.revoke", store.revoke({ jti: admit.redeem.jti }));
          delete headers[TOKEN_HEADER];
          delete headers[CREDITS_HEADER];
        } else later(c, "CallerBucket.refund", store.refund(refundReq()));
        // The refund gives the token its credits back: say what it will hold.
        if (decision.paidBy === "token" && decision.credits !== undefined && headers[CREDITS_HEADER] !== undefined) headers[CREDITS_HEADER] = String(decision.credits + cost);
        return ended(tooMany("origin", `the origin is at its ceiling of ${policy.originCeiling!.capacity} requests (all callers)`, room.retryAfterSeconds, headers));
      }
    }

    // Complete a payment (its settlement) only once everything else admitted the request, and
    // before the origin is asked: a request whose payment does not complete never reaches it.
    let receipt: Settled["receipt"];
    if (settlement && admit.redeem) {
      const redemption = admit.redeem;
      // Invariant: a payment reaches its settlement at most once across every route: its
      // spend id is claimed, in one step of the one object every route shares, right before
      // /settle. Lost to another request (another route, or a replay), it is refused `spent`.
      let claimed: boolean;
      try {
        claimed = await gate.claimSpend(redemption.spendId, redemption.spendUntilMs);
      } catch (err) {
        later(c, "CallerBucket.revoke", store.revoke({ jti: redemption.jti }));
        console.error("tollbooth: CallerBucket.claim failed", err);
        return unavailable();
      }
      const done = claimed ? await settlement.scheme.settle!(settlement.credential, { policy, plan, keyring, caller, nowMs, cost }) : refuse("spent");
      if (!done.ok) {
        later(c, "CallerBucket.revoke", store.revoke({ jti: redemption.jti }));
        delete headers[TOKEN_HEADER];
        delete headers[CREDITS_HEADER];
        const reason = `${settlement.scheme.prefix}_${done.reason}`;
        const offer = { policy, plan, keyring, caller, nowMs, cost, url, what: describeRequest(req.method, url.pathname, body), reason, difficulty: decision.difficulty ?? plan.challenge.difficulty };
        return ended(await overBudget({ schemes, offer, url, body, what: offer.what, reason, cost, retryAfterSeconds: decision.bucket.retryAfterSeconds, solves: decision.solves, headers, status: settlement.scheme.refusalStatus(reason), ...(done.detail !== undefined ? { detail: { detail: done.detail } } : {}) }));
      }
      Object.assign(headers, done.headers);
      receipt = done.receipt;
    }

    let refunded = false;
    const state: TollboothState = {
      caller,
      body,
      rawBody: forwardBody,
      cost,
      decision,
      strip,
      refund: () => {
        if (refunded) return;
        refunded = true;
        if (local) leases!.refund(caller, cost, Date.now());
        else later(c, "CallerBucket.refund", store.refund(refundReq()));
      },
    };
    if (slot?.kind === "stream") {
      let released = false;
      state.release = () => {
        if (released || refunded) return;
        released = true;
        later(c, "CallerBucket.release", store.release({ slotId: slot.id }));
      };
      state.streamMaxMs = plan.limits.streamMaxSeconds * 1000;
    }
    state.origin = originOutcome(c);
    c.set("tollbooth", state);
    const redeemed = admit.redeem !== undefined && decision.minted === true;
    note(c, {
      caller,
      scheme: via,
      decision: "admitted",
      // What paid: the credential (its scheme's prefix, or a token), else the bucket or nothing.
      reason: paidAs ?? decision.paidBy ?? "free",
      redeemed: redeemed || undefined,
      paid: redeemed && payment && via !== undefined ? { scheme: via, ...payment } : undefined,
      credits: decision.credits,
      leased: local !== null,
    });
    await next();

    const sessionId = req.headers.get("mcp-session-id");
    if (slot?.kind === "session" && !refunded) {
      const opened = c.res.headers.get("mcp-session-id");
      if (opened && c.res.status < 400) later(c, "CallerBucket.bindSession", store.bindSession({ slotId: slot.id, sessionId: opened }));
      else later(c, "CallerBucket.release", store.release({ slotId: slot.id }));
    }
    // The session ends with DELETE, or when the origin says it no longer knows it (404).
    if (sessionId && ((req.method === "DELETE" && c.res.status < 500) || c.res.status === 404)) {
      later(c, "CallerBucket.endSession", store.endSession({ sessionId }));
    }
    // The receipt of a payment made inside MCP goes back in the tool result's `_meta`.
    const only = body && !body.batch ? body.messages[0] : undefined;
    if (receipt && only?.id !== undefined && only.id !== null) c.res = addResultMeta(c.res, only.id, { [receipt.key]: receipt.value });
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value);
  };
}

/**
 * The decision for a request admitted from a lease: what the `RateLimit` fields report is
 * what this isolate's lease holds plus what the object had left at its last grant.
 */
function leaseDecision(plan: Plan, cost: number, local: { bucketRemaining: number; ceilingRemaining: number }, nowMs: number): AdmitResult {
  const result = (capacity: number, refill: number, remaining: number) => ({
    success: true,
    limit: capacity,
    remaining: Math.max(0, Math.floor(remaining)),
    reset: nowMs + Math.ceil((Math.max(0, capacity - remaining) / refill) * 1000),
    retryAfterSeconds: 0,
  });
  return {
    admitted: true,
    paidBy: cost > 0 ? "bucket" : "free",
    bucket: result(plan.bucket.capacity, plan.bucket.refillPerSecond, local.bucketRemaining),
    ceiling: result(plan.ceiling.capacity, plan.ceiling.refillPerSecond, local.ceilingRemaining),
  };
}

/**
 * The payer an access token names, when its (unverified) `sub` is a registered scheme's
 * payer id (`SchemeModule.payers`); null otherwise. The token is then verified for that
 * caller: its signature, not this peek, decides.
 */
function payerNamedBy(token: string): string | null {
  const payload = token.trim().split(".")[2];
  const bytes = payload ? fromBase64Url(payload) : null;
  if (!bytes) return null;
  try {
    const sub = (JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown }).sub;
    return typeof sub === "string" && isPayerId(sub) ? sub : null;
  } catch {
    return null;
  }
}

/**
 * The slot a request opens: a session for an `initialize` (single message), a stream for
 * a GET on the endpoint; none otherwise.
 */
function slotFor(req: Request, body: ParsedBody | null, isEndpoint: boolean, plan: Plan, nowMs: number): SlotRequest | undefined {
  if (!isEndpoint) return undefined;
  if (req.method === "GET") {
    // The gateway cuts the stream at streamMaxSeconds; the slot outlives that by a margin.
    return { kind: "stream", id: slotId(), max: plan.limits.streams, expiresMs: nowMs + plan.limits.streamMaxSeconds * 1000 + 5_000 };
  }
  if (req.method === "POST" && body && body.messages.some((m) => m.method === "initialize")) {
    return { kind: "session", id: slotId(), max: plan.limits.sessions, expiresMs: nowMs + plan.limits.sessionTtlSeconds * 1000 };
  }
  return undefined;
}

/**
 * A path as an origin router may match it: percent-decoded, lowercase, without repeated
 * or trailing slashes. Every spelling the origin could route to the MCP endpoint (`/MCP`,
 * `/mcp/`, `/%6Dcp`) must be priced as the endpoint.
 */
export function normalizePath(path: string): string {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // keep the raw path: it cannot be the endpoint's spelling anyway
  }
  return decoded.toLowerCase().replace(/\/{2,}/g, "/").replace(/\/+$/, "") || "/";
}

/** The JSON-RPC method (`batch` for a batch) and tool of a body, for the decision record (cut to 64 characters: a caller chooses them). */
function describeRpc(body: ParsedBody): { rpc: string; tool?: string } {
  const only = body.batch ? undefined : body.messages[0];
  if (!only) return { rpc: "batch" };
  const rpc = (only.method ?? "response").slice(0, 64);
  return only.method === "tools/call" && only.name !== undefined ? { rpc, tool: only.name.slice(0, 64) } : { rpc };
}

/**
 * MCP 2026-07-28: `Mcp-Method` / `Mcp-Name` headers must match the body they describe.
 * @returns a message when they do not, else null
 */
function headerMismatch(headers: Headers, body: ParsedBody): string | null {
  const method = headers.get("mcp-method");
  const name = headers.get("mcp-name");
  if (method === null && name === null) return null;
  const only = body.batch ? undefined : body.messages[0];
  if (method !== null && only?.method !== method) return `Header mismatch: Mcp-Method ${method} does not match the body`;
  if (name !== null && only?.name !== name) return `Header mismatch: Mcp-Name ${name} does not match the body`;
  return null;
}

