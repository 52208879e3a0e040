/**
 * tollbooth's own endpoints under `/.well-known/tollbooth` (./well-known.ts), as the
 * decision hands them a request once its Origin header and network ceiling passed: never
 * forwarded to the origin, answered as problem JSON when refused, and recorded as
 * `own_endpoint` (or `rate_limited` over the caller's ceiling). They always fail closed: a
 * store that fails is 503, its cause logged, not sent.
 */
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import type { Deps } from "../pipeline/deps.ts";
import { record, type Arrival } from "../pipeline/state.ts";
import { toProblem } from "../refusal/problem.ts";
import { Refusal } from "../refusal/refusal.ts";
import { wellKnown } from "./well-known.ts";

/** The name of one of tollbooth's own endpoints, for the decision record (`policy`, `challenge`, `verify`, `status`, else `other`). */
export function endpointName(path: string): string {
  const name = path.slice(WELL_KNOWN.length).replace(/^\/|\/$/g, "");
  return name === "" ? "policy" : ["challenge", "verify", "status"].includes(name) ? name : "other";
}

/** Answer a request to tollbooth's own endpoints, recording how it ended in `s.record`. */
export async function ownEndpoints(s: Arrival, deps: Deps): Promise<Response> {
  try {
    const answer = await wellKnown(deps, s.request, s.url, (fields) => record(s, fields));
    const overCeiling = answer.status === 429;
    record(s, { decision: overCeiling ? "rate_limited" : "own_endpoint", reason: overCeiling ? "ceiling" : endpointName(s.url.pathname) });
    return answer;
  } catch (err) {
    // tollbooth's own endpoints always fail closed; the cause is logged, not sent.
    console.error("tollbooth: well-known endpoint failed", err);
    record(s, { decision: "unavailable", reason: "store" });
    return toProblem(new Refusal({ status: 503, code: "unavailable", message: "The rate-limit state could not be reached", retryAfter: 1, reason: { decision: "unavailable", reason: "store" } }));
  }
}
