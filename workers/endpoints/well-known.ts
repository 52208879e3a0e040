/**
 * tollbooth's own endpoints, siblings of the three tools of @powforge/captcha-mcp:
 * - `GET  /.well-known/tollbooth`           the policy (plans, prices, buckets, ceilings, challenge, limits)
 * - `GET  /.well-known/tollbooth/challenge` a fresh challenge for this caller (`?type=<scheme>`, default the first scheme: `pow`)
 * - `POST /.well-known/tollbooth/verify`    redeem a credential (`{ "type": <scheme> (default `pow`), … }`) → `{ token, expires_in, credits }`
 * - `GET  /.well-known/tollbooth/status`    this caller's plan, buckets, difficulty, open slots and token balance
 */
import { planFor, type Plan, type Policy } from "../../shared/policy/index.ts";
import { refuse } from "../../shared/result.ts";
import { signToken, verifyToken } from "../../shared/credentials/token.ts";
import { TOKEN_HEADER, WELL_KNOWN, WWW_AUTHENTICATE_HEADER } from "../../shared/wire/headers.ts";
import { gatewayUrls } from "../refusal/over-budget.ts";
import type { PaymentScheme, RedemptionFacts } from "../schemes/contract.ts";
import { PUBLISHED, schemeOfType } from "../schemes/registry.ts";
import { mediaType, readBody, TOO_LARGE, TOO_SLOW } from "../pipeline/read-body.ts";
import type { Deps } from "../pipeline/deps.ts";
import { json, toProblem } from "../refusal/problem.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { DecisionFields } from "../observe/observe.ts";

/** Largest `POST /verify` body, in bytes. */
const VERIFY_MAX_BYTES = 16_384;

/** A refusal of these endpoints, as problem JSON (`retryAfter`: whole seconds of `Retry-After`). */
function problem(status: number, error: string, message: string, extra?: Record<string, unknown>, headers?: Record<string, string>, retryAfter?: number): Response {
  return toProblem(new Refusal({ status, code: error, message, ...(extra ? { data: extra } : {}), ...(headers ? { headers } : {}), ...(retryAfter !== undefined ? { retryAfter } : {}) }));
}

/** A plan as published: what a caller of it pays and gets (no secrets). */
function publicPlan(plan: Plan, schemes: readonly PaymentScheme[]): Record<string, unknown> {
  return {
    bucket: plan.bucket,
    ceiling: plan.ceiling,
    costs: plan.costs,
    challenge: { types: schemes.filter((s) => s.credits(plan) > 0).map((s) => s.type), algorithm: "sha256", ...plan.challenge },
    overBudget: plan.overBudget,
    limits: plan.limits,
    // Prices published only where their scheme is offered.
    ...Object.assign({}, ...schemes.map((s) => s.publicPlan?.(plan) ?? {})),
  };
}

/** The policy as `GET /.well-known/tollbooth` publishes it. */
function publicPolicy(policy: Policy, schemes: readonly PaymentScheme[], url: URL): Record<string, unknown> {
  const plans = Object.fromEntries(Object.values(policy.plans).map((p) => [p.name, publicPlan(p, schemes)]));
  return {
    realm: policy.realm,
    endpoint: policy.endpoint,
    // The default plan's settings at the top level, as before plans existed.
    ...publicPlan(planFor(policy, undefined), schemes),
    defaultPlan: policy.defaultPlan,
    plans,
    identity: { strategies: policy.identity.strategies, apiKeyHeader: policy.identity.apiKeyHeader, ipv4Prefix: policy.identity.ipv4Prefix, ipv6Prefix: policy.identity.ipv6Prefix },
    originCeiling: policy.originCeiling,
    networkRetryAfterSeconds: policy.networkRetryAfterSeconds,
    maxBodyBytes: policy.maxBodyBytes,
    bodyTimeoutMs: policy.bodyTimeoutMs,
    maxJsonDepth: policy.maxJsonDepth,
    token: { ttlSeconds: policy.token.ttlSeconds, header: "Tollbooth-Token" },
    solutionHeader: "Tollbooth-Solution",
    // What a client needs to pay with each enabled scheme (never a secret), in the published order.
    ...Object.assign({}, ...PUBLISHED.map((type) => schemeOfType(schemes, type)?.publicPolicy?.() ?? {})),
    ...gatewayUrls(url),
  };
}

/**
 * Answer a request under `/.well-known/tollbooth`. Never reaches the origin. `/challenge`,
 * `/status` and `/verify` ask the caller's Durable Object and count against the caller's
 * ceiling (429 over it); the network ceiling was applied before.
 * @param observe receives what the decision record needs (the caller, its plan; a redeemed credential and its payment)
 */
export async function wellKnown(gate: Deps, req: Request, url: URL, observe: (fields: DecisionFields) => void = () => {}): Promise<Response> {
  const { policy } = gate;
  const route = url.pathname.slice(WELL_KNOWN.length).replace(/\/$/, "") || "/";
  const expect = (method: string) =>
    req.method === method || (method === "GET" && req.method === "HEAD")
      ? null
      : problem(405, "method_not_allowed", `${req.method} ${url.pathname} is not allowed; use ${method}`, undefined, { allow: method });

  if (route === "/") return expect("GET") ?? json(200, publicPolicy(policy, gate.schemes, url));

  if (route !== "/challenge" && route !== "/verify" && route !== "/status") {
    return problem(404, "not_found", `No tollbooth endpoint at ${url.pathname}`);
  }
  const wrongMethod = expect(route === "/verify" ? "POST" : "GET");
  if (wrongMethod) return wrongMethod;

  let bytes: Uint8Array | null = null;
  if (route === "/verify") {
    if (mediaType(req) !== "application/json") return problem(415, "unsupported_media_type", "POST /verify takes application/json");
    const read = await readBody(req, VERIFY_MAX_BYTES, policy.bodyTimeoutMs);
    if (read === TOO_LARGE) return problem(413, "payload_too_large", `The verify body is limited to ${VERIFY_MAX_BYTES} bytes`);
    if (read === TOO_SLOW) return problem(408, "request_timeout", `The body did not arrive within ${policy.bodyTimeoutMs} ms`);
    bytes = read;
  }
  // Invariant: the clock is read after the body has arrived.
  const nowMs = Date.now();
  const identity = await gate.identify(req.headers);
  let caller = identity.id;
  const plan = planFor(policy, identity.verified ? identity.plan : undefined);
  observe({ caller, network: identity.network.replace(/^ip:/, ""), plan: plan.name, time: nowMs });
  const keyring = await gate.keyring();
  let stub = gate.buckets.of(caller);
  const overCeiling = (retryAfterSeconds: number, headers: Record<string, string>) => {
    const retryAfter = Math.max(1, retryAfterSeconds);
    return problem(429, "too_many_requests", `Over the safety ceiling; retry after ${retryAfter} s`, { retryAfter, layer: "ceiling" }, headers, retryAfter);
  };

  if (route === "/challenge" || route === "/status") {
    const tokenHeader = route === "/status" ? req.headers.get(TOKEN_HEADER) : null;
    const token = tokenHeader ? await verifyToken(keyring, tokenHeader.trim(), caller, nowMs) : null;
    if (token && !token.ok) return problem(401, "invalid_token", `Tollbooth-Token refused: ${token.reason}`, { reason: token.reason });
    const status = await stub.status({ nowMs, bucket: plan.bucket, ceiling: plan.ceiling, challenge: plan.challenge, ...(token?.ok ? { tokenId: token.claims.jti } : {}) });
    const headers = gate.limitHeaders(plan, status, nowMs);
    if (!status.admitted) return overCeiling(status.ceiling.retryAfterSeconds, headers);
    const difficulty = status.difficulty ?? plan.challenge.difficulty;
    if (route === "/challenge") {
      const type = url.searchParams.get("type") ?? gate.schemes[0]!.type;
      const scheme = schemeOfType(gate.schemes, type);
      if (!scheme || scheme.credits(plan) === 0) return problem(400, "invalid_request", `No challenge of type ${JSON.stringify(type)} for plan ${plan.name}; offered: ${gate.schemes.filter((s) => s.credits(plan) > 0).map((s) => s.type).join(", ")}`);
      const offer = await scheme.offer({ policy, plan, keyring, caller, nowMs, cost: 0, difficulty, url, what: `${type} challenge`, reason: "requested" });
      if (!offer.ok) return problem(503, offer.reason, offer.message, { type: offer.type }, headers, 5);
      return json(200, offer.json, { ...headers, ...offer.headers, ...(offer.challenge !== undefined ? { [WWW_AUTHENTICATE_HEADER]: offer.challenge } : {}) });
    }
    return json(200, {
      caller,
      plan: plan.name,
      verified: identity.verified,
      network: identity.network,
      bucket: status.bucket,
      ceiling: status.ceiling,
      difficulty,
      recentSolves: status.solves ?? 0,
      sessions: { open: status.sessions, max: plan.limits.sessions },
      streams: { open: status.streams, max: plan.limits.streams },
      token: status.token ? { credits: status.token.credits, expires: Math.floor(status.token.expiresMs / 1000), expires_in: Math.max(0, Math.ceil((status.token.expiresMs - nowMs) / 1000)) } : null,
    }, headers);
  }

  // POST /verify
  let params: unknown;
  try {
    params = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes ?? new Uint8Array()));
  } catch {
    return problem(400, "invalid_request", "The body is not valid JSON");
  }
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    return problem(400, "invalid_request", "The body must be a JSON object with the challenge fields and nonce");
  }
  const fields = params as Record<string, unknown>;
  // No `type`: the first scheme's (always enabled: a solution, as before schemes had types).
  const type = fields.type === undefined ? gate.schemes[0]!.type : fields.type;
  const scheme = typeof type === "string" ? schemeOfType(gate.schemes, type) : undefined;
  if (!scheme) return problem(400, "invalid_request", `Unknown credential type ${JSON.stringify(type)}; accepted: ${gate.schemes.map((s) => s.type).join(", ")}`);
  const read = scheme.readJson(fields);
  if (!read.ok && read.reason === "malformed") return problem(400, "invalid_request", `The body must hold ${scheme.verifyFields}`);
  const unavailable = () => problem(503, "unavailable", "The rate-limit state could not be reached", undefined, undefined, 1);
  const blocked = (retryAfterSeconds: number, headers: Record<string, string> = {}) => {
    const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
    return problem(403, "blocked", "This caller is blocked by the operator", { reason: "blocked", retryAfter }, headers, retryAfter);
  };
  if (read.ok && scheme.namesPayer) {
    // Invariant: a payment that buys for its payer does not walk around a block of the
    // identity it came from: checked before the payment service is asked (docs/admin.md).
    let until: number | null;
    try {
      until = await gate.blockedUntil(caller, nowMs);
    } catch {
      return unavailable();
    }
    if (until !== null) return blocked((until - nowMs) / 1000);
  }
  const check = read.ok ? await scheme.verify(read.credential, { policy, plan, keyring, caller, nowMs, cost: 0 }) : read;
  const refused = (reason: string, headers?: Record<string, string>, facts?: RedemptionFacts) => {
    const r = scheme.verifyRefusal(reason, facts);
    return problem(r.status, r.error, r.message, r.data, headers);
  };
  if (!check.ok) return refused(check.reason);
  const redemption = check.redemption;
  // A payment that names its payer buys for that payer.
  if (check.identity !== undefined) {
    caller = check.identity;
    stub = gate.buckets.of(caller);
  }
  let result;
  try {
    result = await stub.redeem({ nowMs, bucket: plan.bucket, ceiling: plan.ceiling, challenge: plan.challenge, redemption });
  } catch {
    return unavailable();
  }
  const headers = gate.limitHeaders(plan, result, nowMs);
  if (result.reason === "ceiling") return overCeiling(result.ceiling.retryAfterSeconds, headers);
  // An operator blocked the caller (docs/admin.md): nothing was redeemed.
  if (result.reason === "blocked") return blocked(result.retryAfterSeconds ?? 1, headers);
  if (!result.admitted) {
    const reason = result.reason!.slice(redemption.prefix.length + 1);
    // In the scheme's words (a solution below the caller's current difficulty says where a fresh challenge is).
    return refused(reason, headers, { redemption, difficulty: result.difficulty, worth: result.solutionCredits, cost: 0, challengeUrl: gatewayUrls(url).challengeUrl });
  }
  let settledHeaders: Record<string, string> = {};
  if (scheme.settle && read.ok) {
    // Invariant: settled at most once across every route (workers/tollbooth.ts does the same).
    let claimed: boolean;
    try {
      claimed = await gate.claimSpend(redemption.spendId, redemption.spendUntilMs);
    } catch {
      await stub.revoke({ jti: redemption.jti }).catch((err) => console.error("tollbooth: CallerBucket.revoke failed", err));
      return unavailable();
    }
    const done = claimed ? await scheme.settle(read.credential, { policy, plan, keyring, caller, nowMs, cost: 0 }) : refuse("spent");
    if (!done.ok) {
      await stub.revoke({ jti: redemption.jti }).catch((err) => console.error("tollbooth: CallerBucket.revoke failed", err));
      return refused(done.reason, headers);
    }
    settledHeaders = done.headers;
  }
  observe({ caller, scheme: scheme.type, redeemed: true, ...(check.paid && result.minted ? { paid: { scheme: scheme.type, ...check.paid } } : {}) });
  // The token says the credits the object minted (fewer for a solution below the caller's current difficulty).
  const claims = { sub: caller, jti: redemption.jti, exp: redemption.tokenExpiresMs / 1000, cr: result.mintedCredits ?? redemption.credits };
  const token = await signToken(keyring, claims);
  return json(200, { token, expires_in: Math.max(0, claims.exp - Math.floor(nowMs / 1000)), credits: result.credits ?? claims.cr }, { ...headers, ...settledHeaders });
}
