/**
 * tollbooth's own endpoints, siblings of the three tools of @powforge/captcha-mcp:
 * - `GET  /.well-known/tollbooth`           the policy (plans, prices, buckets, ceilings, challenge, limits): ./policy.ts
 * - `GET  /.well-known/tollbooth/challenge` a fresh challenge for this caller (`?type=<scheme>`, default the first scheme): ./challenge.ts
 * - `POST /.well-known/tollbooth/verify`    redeem a credential (`{ "type": <scheme>, … }`) → `{ token, expires_in, credits }`: ./verify.ts
 * - `GET  /.well-known/tollbooth/status`    this caller's plan, buckets, difficulty, open slots and token balance: ./status.ts
 * The decision hands them a request once its Origin header and network ceiling passed
 * (`ownEndpoints`). Never forwarded to the origin; refused as problem JSON; recorded as
 * `own_endpoint` (or `rate_limited` over the caller's ceiling). `/challenge`, `/status` and
 * `/verify` ask the caller's object and count against its ceiling. They always fail closed:
 * a store that fails is 503, its cause logged, not sent.
 */
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import type { DecisionFields } from "../observe/observe.ts";
import type { Deps } from "../pipeline/deps.ts";
import { pricedPlan } from "../pipeline/identity.ts";
import { mediaType, readBody, TOO_LARGE, TOO_SLOW } from "../pipeline/read-body.ts";
import { type Arrival, record } from "../pipeline/state.ts";
import { unavailable as storeUnavailable } from "../refusal/layers.ts";
import { json, toProblem } from "../refusal/problem.ts";
import { planFor } from "../schemes/policy.ts";
import { type Asker, problem } from "./answers.ts";
import { challenge } from "./challenge.ts";
import { publicPolicy } from "./policy.ts";
import { status } from "./status.ts";
import { verify } from "./verify.ts";

/** Largest `POST /verify` body, in bytes. */
const VERIFY_MAX_BYTES = 16_384;

/** The name of one of tollbooth's own endpoints, for the decision record (`policy`, `challenge`, `verify`, `status`, else `other`). */
export function endpointName(path: string): string {
  const name = path.slice(WELL_KNOWN.length).replace(/^\/|\/$/g, "");
  return name === "" ? "policy" : ["challenge", "verify", "status"].includes(name) ? name : "other";
}

/**
 * Answer a request under `/.well-known/tollbooth`: the path and method, the `/verify` body,
 * then who asks (the clock read after the body), then the endpoint.
 * @param note receives what the decision record needs (the caller, its plan; a redeemed credential and its payment)
 */
export async function answer(deps: Deps, req: Request, url: URL, note: (fields: DecisionFields) => void = () => {}): Promise<Response> {
  const { policy } = deps;
  const route = url.pathname.slice(WELL_KNOWN.length).replace(/\/$/, "") || "/";
  const expect = (method: string) =>
    req.method === method || (method === "GET" && req.method === "HEAD")
      ? null
      : problem(405, "method_not_allowed", `${req.method} ${url.pathname} is not allowed; use ${method}`, undefined, { allow: method });
  if (route === "/") return expect("GET") ?? json(200, publicPolicy(policy, deps.schemes, url));
  if (route !== "/challenge" && route !== "/verify" && route !== "/status")
    return problem(404, "not_found", `No tollbooth endpoint at ${url.pathname}`);
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
  const identity = await deps.identify(req.headers);
  // Challenges and payments at the origin's congestion, as a 402 offers them.
  const congestion = deps.origin?.congestion() ?? null;
  const plan = pricedPlan(planFor(policy, identity.verified ? identity.plan : undefined), congestion);
  note({ caller: identity.id, network: identity.network.replace(/^ip:/, ""), plan: plan.name, time: nowMs });
  const who: Asker = { nowMs, identity, caller: identity.id, plan, congestion, keyring: await deps.keyring(), note };
  if (route === "/challenge") return challenge(deps, who, url);
  if (route === "/status") return status(deps, who, req);
  return verify(deps, who, url, bytes);
}

/** Answer a request to tollbooth's own endpoints, recording how it ended in `s.record`. */
export async function ownEndpoints(s: Arrival, deps: Deps): Promise<Response> {
  try {
    const res = await answer(deps, s.request, s.url, (fields) => record(s, fields));
    const overCeiling = res.status === 429;
    record(s, { decision: overCeiling ? "rate_limited" : "own_endpoint", reason: overCeiling ? "ceiling" : endpointName(s.url.pathname) });
    return res;
  } catch (err) {
    // tollbooth's own endpoints always fail closed; the cause is logged, not sent.
    console.error("tollbooth: well-known endpoint failed", err);
    const refusal = storeUnavailable("store", err);
    record(s, refusal.reason!);
    return toProblem(refusal);
  }
}
