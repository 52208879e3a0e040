/**
 * tollbooth's own endpoints, siblings of the three tools of @powforge/captcha-mcp:
 * - `GET  /.well-known/tollbooth`           the policy (prices, bucket, ceiling, challenge)
 * - `GET  /.well-known/tollbooth/challenge` a fresh challenge for this caller
 * - `POST /.well-known/tollbooth/verify`    redeem a solution → `{ token, expires_in, credits }`
 * - `GET  /.well-known/tollbooth/status`    this caller's bucket, ceiling and token balance
 */
import { formatChallenge, issueChallenge, readSolution, verifySolution } from "../shared/challenge.ts";
import { resolveIdentity } from "../shared/identity.ts";
import { signToken, verifyToken } from "../shared/token.ts";
import { challengeJson, gatewayUrls, redemptionFor, SOLUTION_HEADER, TOKEN_HEADER, WELL_KNOWN } from "./payment.ts";
import { mediaType, readBody, TOO_LARGE } from "./body.ts";
import { json } from "./responses.ts";
import type { Gate } from "./tollbooth.ts";

/** Largest `POST /verify` body, in bytes. */
const VERIFY_MAX_BYTES = 16_384;

function problem(status: number, error: string, message: string, extra?: Record<string, unknown>, headers?: Record<string, string>): Response {
  return json(status, { error, message, ...extra }, headers);
}

/** Answer a request under `/.well-known/tollbooth`. Never reaches the origin. */
export async function wellKnown(gate: Gate, req: Request, url: URL, nowMs: number): Promise<Response> {
  const { policy } = gate;
  const route = url.pathname.slice(WELL_KNOWN.length).replace(/\/$/, "") || "/";
  const expect = (method: string) =>
    req.method === method || (method === "GET" && req.method === "HEAD")
      ? null
      : problem(405, "method_not_allowed", `${req.method} ${url.pathname} is not allowed; use ${method}`, undefined, { allow: method });

  if (route === "/") {
    return expect("GET") ?? json(200, {
      realm: policy.realm,
      endpoint: policy.endpoint,
      bucket: policy.bucket,
      ceiling: policy.ceiling,
      costs: policy.costs,
      challenge: { types: ["pow"], algorithm: "sha256", ...policy.challenge },
      token: { ttlSeconds: policy.token.ttlSeconds, header: "Tollbooth-Token" },
      solutionHeader: "Tollbooth-Solution",
      ...gatewayUrls(url),
    });
  }

  if (route !== "/challenge" && route !== "/verify" && route !== "/status") {
    return problem(404, "not_found", `No tollbooth endpoint at ${url.pathname}`);
  }
  const wrongMethod = expect(route === "/verify" ? "POST" : "GET");
  if (wrongMethod) return wrongMethod;
  const caller = await resolveIdentity(req.headers, policy.identity);
  const keyring = await gate.keyring();
  const stub = gate.buckets.get(gate.buckets.idFromName(caller));

  if (route === "/challenge") {
    const ch = await issueChallenge(keyring, { realm: policy.realm, ...policy.challenge, caller, nowMs });
    return json(200, challengeJson(ch), { "www-authenticate": formatChallenge(ch) });
  }

  if (route === "/status") {
    const tokenHeader = req.headers.get(TOKEN_HEADER);
    const token = tokenHeader ? await verifyToken(keyring, tokenHeader.trim(), caller, nowMs) : null;
    if (token && !token.ok) return problem(401, "invalid_token", `Tollbooth-Token refused: ${token.reason}`, { reason: token.reason });
    const status = await stub.status({ nowMs, bucket: policy.bucket, ceiling: policy.ceiling, ...(token?.ok ? { tokenId: token.claims.jti } : {}) });
    return json(200, {
      caller,
      bucket: status.bucket,
      ceiling: status.ceiling,
      token: status.token ? { credits: status.token.credits, expires: Math.floor(status.token.expiresMs / 1000), expires_in: Math.max(0, Math.ceil((status.token.expiresMs - nowMs) / 1000)) } : null,
    }, gate.limitHeaders(status, nowMs));
  }

  // POST /verify
  if (mediaType(req) !== "application/json") return problem(415, "unsupported_media_type", "POST /verify takes application/json");
  const bytes = await readBody(req, VERIFY_MAX_BYTES);
  if (bytes === TOO_LARGE) return problem(413, "payload_too_large", `The verify body is limited to ${VERIFY_MAX_BYTES} bytes`);
  let params: unknown;
  try {
    params = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes ?? new Uint8Array()));
  } catch {
    return problem(400, "invalid_request", "The body is not valid JSON");
  }
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    return problem(400, "invalid_request", "The body must be a JSON object with the challenge fields and nonce");
  }
  const read = readSolution(params as Record<string, unknown>);
  if (read === "malformed") {
    return problem(400, "invalid_request", `The body must hold the challenge fields (realm, id, salt, difficulty, algorithm, expires, credits, kid, signature) and nonce (decimal digits), as in ${SOLUTION_HEADER}`);
  }
  if (read === "unsupported_algorithm") return problem(422, "invalid_solution", "Only algorithm sha256 is supported", { reason: read });
  const check = await verifySolution(keyring, read.challenge, read.nonce, caller, nowMs);
  if (!check.ok) return problem(422, "invalid_solution", `Solution refused: ${check.reason}`, { reason: check.reason });
  const { claims, redemption } = redemptionFor(read.challenge, caller, policy.token.ttlSeconds, nowMs);
  let result;
  try {
    result = await stub.redeem({ nowMs, bucket: policy.bucket, ceiling: policy.ceiling, redemption });
  } catch {
    return problem(503, "unavailable", "The rate-limit state could not be reached", undefined, { "retry-after": "1" });
  }
  const headers = gate.limitHeaders(result, nowMs);
  if (result.reason === "ceiling") {
    const retryAfter = String(Math.max(1, result.ceiling.retryAfterSeconds));
    return problem(429, "too_many_requests", `Over the safety ceiling; retry after ${retryAfter} s`, { retryAfter: Number(retryAfter) }, { ...headers, "retry-after": retryAfter });
  }
  if (!result.minted) return problem(422, "invalid_solution", "Solution refused: spent (each challenge redeems once)", { reason: "spent" }, headers);
  const token = await signToken(keyring, claims);
  return json(200, { token, expires_in: policy.token.ttlSeconds, credits: claims.cr }, headers);
}
