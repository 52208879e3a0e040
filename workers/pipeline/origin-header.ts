/**
 * The Origin header step (MCP transport, 2025-11-25: DNS rebinding): a request that
 * carries an `Origin` header the policy does not allow (`allowedOrigins`, `*`, or the
 * gateway's own origin) is refused 403 before anything else. No header: nothing to check.
 */
import { ErrorCode } from "../../shared/jsonrpc.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { Deps } from "./deps.ts";
import type { Arrival } from "./state.ts";

/** The request, on; or the 403 of a present, disallowed `Origin` header. */
export function originHeader(s: Arrival, deps: Pick<Deps, "allowsOriginHeader">): Arrival | Refusal {
  const value = s.request.headers.get("origin");
  if (value === null || deps.allowsOriginHeader(value, s.url)) return s;
  return new Refusal({
    status: 403,
    code: "forbidden_origin",
    rpcCode: ErrorCode.ForbiddenOrigin,
    message: `Forbidden: Origin ${value} is not allowed`,
    data: { origin: value },
    reason: { decision: "bad_request", reason: "forbidden_origin" },
  });
}
