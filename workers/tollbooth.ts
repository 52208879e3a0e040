/**
 * `tollbooth(options)`: the Hono middleware that gates every request before the proxy.
 *
 * Per request: Origin check (MCP transport, DNS rebinding) → tollbooth's own endpoints →
 * body size limit → cost (JSON-RPC method / tool) → caller identity → credentials
 * (`Tollbooth-Solution`, `Tollbooth-Token`, verified statelessly) → one call to the
 * caller's Durable Object, which applies the ceiling, spends solutions and credits, and
 * takes from the free bucket. Admitted requests go on to the next handler (the proxy)
 * with `c.var.tollbooth` set; others get 402 (challenge) or 429 (ceiling), never the origin.
 *
 * When the Durable Object throws or does not answer within `policy.storeTimeoutMs`, the
 * request fails closed (503, `Retry-After: 1`) or, with `onStoreError: "open"`, goes to
 * the origin unmetered (`Tollbooth-Degraded: store-unavailable`) — except a request that
 * carries a credential and tollbooth's own endpoints, which always fail closed.
 */
import type { MiddlewareHandler } from "hono";
import { parseAuthParams } from "../shared/auth-params.ts";
import { readSolution, verifySolution } from "../shared/challenge.ts";
import { resolveIdentity } from "../shared/identity.ts";
import { bodyCost, ErrorCode, isBodyError, parseBody, type ParsedBody } from "../shared/jsonrpc.ts";
import { importKeyring, parseSecrets, type Keyring } from "../shared/keys.ts";
import { parsePolicy, type Policy, type PolicyInput } from "../shared/policy.ts";
import { rateLimit, rateLimitPolicy, type NamedLimit } from "../shared/ratelimit-headers.ts";
import { signToken, verifyToken, type TokenClaims } from "../shared/token.ts";
import { mediaType, readBody, TOO_LARGE } from "./body.ts";
import type { AdmitRequest, AdmitResult, CallerBucket, StatusResult } from "./caller-bucket.ts";
import { CREDITS_HEADER, paymentRequired, redemptionFor, SOLUTION_HEADER, TOKEN_HEADER, WELL_KNOWN } from "./payment.ts";
import { json, jsonRpcError } from "./responses.ts";
import { wellKnown } from "./well-known.ts";

/** Options of `tollbooth()`. */
export interface TollboothOptions {
  /** The policy (validated here; defaults fill what is left out). */
  policy?: PolicyInput | undefined;
  /** `TOLLBOOTH_SECRET`: one or more comma-separated secrets, ≥ 16 bytes each. */
  secret: string;
  /** The `CallerBucket` Durable Object namespace. */
  buckets: DurableObjectNamespace<CallerBucket>;
}

/** What the middleware hands to the proxy for an admitted request. */
export interface TollboothState {
  /** Caller identity (see shared/identity.ts). */
  caller: string;
  /** Parsed JSON-RPC body on the MCP endpoint, else null. */
  body: ParsedBody | null;
  /** Raw request body, already read (null when there was none). */
  rawBody: Uint8Array<ArrayBuffer> | null;
  /** Units charged. */
  cost: number;
  /** The Durable Object's decision; null when it was unavailable and the request went on unmetered (`onStoreError: "open"`). */
  decision: AdmitResult | null;
}

/** Hono variables set by `tollbooth()`. */
export interface TollboothVariables {
  tollbooth: TollboothState;
}

/** The calls the gateway makes on a caller's `CallerBucket` (see workers/caller-bucket.ts). */
export interface CallerStore {
  admit(req: AdmitRequest): Promise<AdmitResult>;
  redeem(req: RedeemRequest): Promise<AdmitResult>;
  status(req: StatusRequest): Promise<StatusResult>;
}

/**
 * The caller state as the gateway reaches it: `CallerBucket` stubs whose every call is
 * bounded by `policy.storeTimeoutMs` (it rejects with `StoreTimeoutError` after that).
 */
export interface StoreNamespace {
  idFromName(name: string): DurableObjectId;
  get(id: DurableObjectId): CallerStore;
}

/** A `CallerBucket` call that did not settle within `storeTimeoutMs`. */
export class StoreTimeoutError extends Error {
  /** @param ms the bound that passed, milliseconds */
  constructor(ms: number) {
    super(`CallerBucket did not answer within ${ms} ms`);
    this.name = "StoreTimeoutError";
  }
}

/** Header on responses that went to the origin unmetered because the caller state was unavailable. */
export const DEGRADED_HEADER = "tollbooth-degraded";

/** Everything the middleware and the well-known endpoints share. */
export interface Gate {
  policy: Policy;
  keyring: () => Promise<Keyring>;
  /** The caller state; every call bounded by `policy.storeTimeoutMs`. */
  buckets: StoreNamespace;
  /** Rate-limit headers for a decision (draft-ietf-httpapi-ratelimit-headers-10). */
  limitHeaders: (decision: Pick<AdmitResult, "bucket" | "ceiling">, nowMs: number) => Record<string, string>;
}

type RedeemRequest = Parameters<CallerBucket["redeem"]>[0];
type StatusRequest = Parameters<CallerBucket["status"]>[0];

/**
 * Settle like `call`, or reject with `StoreTimeoutError` after `ms` milliseconds
 * (the call itself is not cancelled: a Durable Object call cannot be).
 */
function bounded<T>(call: () => Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(ms)), ms);
  });
  return Promise.race([Promise.resolve().then(call), timeout]).finally(() => clearTimeout(timer));
}

/** `CallerBucket` stubs whose calls are bounded by `timeoutMs` milliseconds. */
function boundedStore(ns: DurableObjectNamespace<CallerBucket>, timeoutMs: number): StoreNamespace {
  return {
    idFromName: (name) => ns.idFromName(name),
    get(id) {
      const stub = ns.get(id);
      return {
        admit: (req) => bounded(() => stub.admit(req) as Promise<AdmitResult>, timeoutMs),
        redeem: (req) => bounded(() => stub.redeem(req) as Promise<AdmitResult>, timeoutMs),
        status: (req) => bounded(() => stub.status(req) as Promise<StatusResult>, timeoutMs),
      };
    },
  };
}

/** Methods of the MCP endpoint (Streamable HTTP, MCP 2025-11-25); others get 405 at the gateway. */
const ENDPOINT_METHODS = ["POST", "GET", "DELETE", "OPTIONS"];

/** Paths of OAuth metadata (RFC 9728, RFC 8414, OpenID Discovery): always cost 0. */
const OAUTH_METADATA = /^\/\.well-known\/(oauth-protected-resource|oauth-authorization-server|openid-configuration)(\/|$)/;

/**
 * Build the middleware.
 * @throws TypeError naming the bad option (`policy.<field>`, `secret`, `buckets`)
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
  const gate: Gate = {
    policy,
    keyring: () => (keyringPromise ??= importKeyring(options.secret)),
    buckets: boundedStore(options.buckets, policy.storeTimeoutMs),
    limitHeaders: (d, nowMs) => {
      const limits: NamedLimit[] = [
        { name: "free", config: policy.bucket, result: d.bucket },
        { name: "ceiling", config: policy.ceiling, result: d.ceiling },
      ];
      return { "ratelimit-policy": rateLimitPolicy(limits), ratelimit: rateLimit(limits, nowMs) };
    },
  };
  const endpoint = normalizePath(policy.endpoint);
  const allowAnyOrigin = policy.allowedOrigins.includes("*");
  const allowedOrigins = new Set(policy.allowedOrigins);

  return async function tollbooth(c, next) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const nowMs = Date.now();

    // MCP transport (2025-11-25): a present, invalid Origin gets 403 (DNS rebinding).
    const origin = req.headers.get("origin");
    if (origin !== null && !allowAnyOrigin && origin !== url.origin && !allowedOrigins.has(origin)) {
      return jsonRpcError(403, null, ErrorCode.ForbiddenOrigin, `Forbidden: Origin ${origin} is not allowed`, { origin });
    }
    if (url.pathname === WELL_KNOWN || url.pathname.startsWith(WELL_KNOWN + "/")) {
      try {
        return await wellKnown(gate, req, url, nowMs);
      } catch (err) {
        // tollbooth's own endpoints always fail closed; the cause is logged, not sent.
        console.error("tollbooth: well-known endpoint failed", err);
        return json(503, { error: "unavailable", message: "The rate-limit state could not be reached" }, { "retry-after": "1" });
      }
    }

    const rawBody = await readBody(req, policy.maxBodyBytes);
    if (rawBody === TOO_LARGE) {
      return jsonRpcError(413, null, ErrorCode.PayloadTooLarge, `Payload too large: the limit is ${policy.maxBodyBytes} bytes`, { maxBodyBytes: policy.maxBodyBytes });
    }

    let body: ParsedBody | null = null;
    let cost: number;
    const isEndpoint = normalizePath(url.pathname) === endpoint;
    if (isEndpoint && req.method === "POST") {
      const type = mediaType(req);
      if (type !== "application/json") {
        return jsonRpcError(415, null, ErrorCode.UnsupportedMediaType, `Unsupported Media Type: POST ${policy.endpoint} takes application/json, got ${type || "none"}`);
      }
      const parsed = parseBody(rawBody ?? new Uint8Array());
      if (isBodyError(parsed)) return jsonRpcError(400, null, parsed.code, parsed.message);
      body = parsed;
      const mismatch = headerMismatch(req.headers, body);
      if (mismatch) return jsonRpcError(400, body, ErrorCode.HeaderMismatch, mismatch);
      cost = bodyCost(policy, body);
    } else if (isEndpoint) {
      // GET (SSE stream), DELETE (end session) and OPTIONS (CORS preflight) carry no JSON-RPC call.
      if (!ENDPOINT_METHODS.includes(req.method)) {
        return jsonRpcError(405, null, ErrorCode.MethodNotAllowed, `Method not allowed: ${req.method} ${policy.endpoint}; use ${ENDPOINT_METHODS.join(", ")}`, undefined, { allow: ENDPOINT_METHODS.join(", ") });
      }
      cost = 0;
    } else {
      cost = OAUTH_METADATA.test(url.pathname) ? 0 : policy.costs.otherPaths;
    }

    const caller = await resolveIdentity(req.headers, policy.identity);
    const keyring = await gate.keyring();
    const admit: AdmitRequest = { cost, nowMs, bucket: policy.bucket, ceiling: policy.ceiling };
    let tokenClaims: TokenClaims | undefined;
    const solutionHeader = req.headers.get(SOLUTION_HEADER);
    const tokenHeader = req.headers.get(TOKEN_HEADER);
    if (solutionHeader !== null) {
      const params = parseAuthParams(solutionHeader);
      const read = params ? readSolution(params.params) : "malformed";
      if (typeof read === "string") admit.refused = `solution_${read}`;
      else {
        const check = await verifySolution(keyring, read.challenge, read.nonce, caller, nowMs);
        if (!check.ok) admit.refused = `solution_${check.reason}`;
        else {
          const bought = redemptionFor(read.challenge, caller, policy.token.ttlSeconds, nowMs);
          tokenClaims = bought.claims;
          admit.redeem = bought.redemption;
        }
      }
    } else if (tokenHeader !== null) {
      const check = await verifyToken(keyring, tokenHeader.trim(), caller, nowMs);
      if (!check.ok) admit.refused = `token_${check.reason}`;
      else admit.tokenId = check.claims.jti;
    }

    let decision: AdmitResult;
    try {
      decision = await gate.buckets.get(gate.buckets.idFromName(caller)).admit(admit);
    } catch (err) {
      // A credential is never honoured unverified: its spend (credits, a challenge's single
      // use) lives in the store. Without a credential, "open" trades metering for availability.
      if (policy.onStoreError === "open" && solutionHeader === null && tokenHeader === null) {
        console.warn(`tollbooth: CallerBucket.admit failed; forwarding unmetered (onStoreError "open") for ${caller}`, err);
        c.set("tollbooth", { caller, body, rawBody, cost, decision: null });
        await next();
        c.res.headers.set(DEGRADED_HEADER, "store-unavailable");
        return;
      }
      // Fail closed: without the caller's state nothing is admitted. The cause is logged, not sent.
      console.error("tollbooth: CallerBucket.admit failed", err);
      return jsonRpcError(503, body, ErrorCode.Unavailable, "Service unavailable: the rate-limit state could not be reached", undefined, { "retry-after": "1" });
    }

    const headers = gate.limitHeaders(decision, nowMs);
    if (decision.minted && tokenClaims) headers[TOKEN_HEADER] = await signToken(keyring, tokenClaims);
    if (decision.credits !== undefined) headers[CREDITS_HEADER] = String(decision.credits);

    if (!decision.admitted) {
      if (decision.reason === "ceiling") {
        const retryAfter = String(Math.max(1, decision.ceiling.retryAfterSeconds));
        return jsonRpcError(429, body, ErrorCode.TooManyRequests, `Too many requests: over the safety ceiling of ${policy.ceiling.capacity} requests; retry after ${retryAfter} s`, { reason: "ceiling", retryAfter: Number(retryAfter) }, { ...headers, "retry-after": retryAfter });
      }
      return paymentRequired({ keyring, policy, caller, nowMs, url, body, reason: decision.reason ?? "over_budget", cost, retryAfterSeconds: decision.bucket.retryAfterSeconds, headers });
    }

    c.set("tollbooth", { caller, body, rawBody, cost, decision });
    await next();
    for (const [name, value] of Object.entries(headers)) c.res.headers.set(name, value);
  };
}

/**
 * A path as an origin router may match it: percent-decoded, lowercase, without repeated
 * or trailing slashes. Every spelling the origin could route to the MCP endpoint (`/MCP`,
 * `/mcp/`, `/%6Dcp`) must be priced as the endpoint.
 */
function normalizePath(path: string): string {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // keep the raw path: it cannot be the endpoint's spelling anyway
  }
  return decoded.toLowerCase().replace(/\/{2,}/g, "/").replace(/\/+$/, "") || "/";
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
