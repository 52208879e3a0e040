/**
 * The body step, one reading (./read-body.ts): the bytes the gateway prices are the
 * bytes the origin parses, on the path it routes (a path origins read differently: 400,
 * ./paths.ts `pathProblem`). A POST to the MCP endpoint must be UTF-8 JSON (415 otherwise,
 * before anything is read); every body is bounded in size (413) and time (408); a JSON-RPC
 * body is parsed once, its nesting bounded (400). The endpoint takes POST, GET (an SSE
 * stream), DELETE (end a session) and OPTIONS (CORS preflight): 405 otherwise.
 * Invariant: the clock is read after the whole body has arrived, so a body trickled in
 * slowly cannot make an expired challenge or token look fresh.
 */
import { ErrorCode, isBodyError, type ParsedBody, parseBody } from "../../shared/jsonrpc.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { Deps } from "./deps.ts";
import { normalizePath, pathProblem } from "./paths.ts";
import { jsonRequestProblem, readBody, TOO_LARGE, TOO_SLOW } from "./read-body.ts";
import { type Arrival, type Read, record } from "./state.ts";

/** Methods of the MCP endpoint (Streamable HTTP, MCP 2025-11-25); others get 405 at the gateway. */
export const ENDPOINT_METHODS = ["POST", "GET", "DELETE", "OPTIONS"];

/** A 400-range refusal of the body's form, recorded as `bad_request` with `why`. */
function badBody(
  status: number,
  why: string,
  rpcCode: number,
  message: string,
  more: { data?: Record<string, unknown>; headers?: Record<string, string> } = {},
): Refusal {
  return new Refusal({ status, code: why, rpcCode, message, ...more, reason: { decision: "bad_request", reason: why } });
}

/** The JSON-RPC method (`batch` for a batch) and tool of a body, for the decision record (cut to 64 characters: a caller chooses them). */
export function describeRpc(body: ParsedBody): { rpc: string; tool?: string } {
  const only = body.batch ? undefined : body.messages[0];
  if (!only) return { rpc: "batch" };
  const rpc = (only.method ?? "response").slice(0, 64);
  return only.method === "tools/call" && only.name !== undefined ? { rpc, tool: only.name.slice(0, 64) } : { rpc };
}

/** The request with its body read (and parsed, on the endpoint), or why it is refused. */
export async function body(s: Arrival, deps: Pick<Deps, "policy" | "endpoint">): Promise<Read | Refusal> {
  const { policy } = deps;
  const req = s.request;
  // Invariant: the path priced is the path every origin routes: a spelling origins read
  // differently (`/x/..%2Fmcp`) is refused, never forwarded as a cheaper path.
  const pathIssue = pathProblem(s.url.pathname);
  if (pathIssue !== null)
    return badBody(400, "invalid_path", ErrorCode.InvalidRequest, `Invalid path: ${s.url.pathname} holds ${pathIssue}`);
  const isEndpoint = normalizePath(s.url.pathname) === deps.endpoint;
  const jsonRpc = isEndpoint && req.method === "POST";
  // A body the gateway will not read as UTF-8 JSON is refused before it is read.
  const mediaProblem = jsonRpc ? jsonRequestProblem(req.headers) : null;
  if (mediaProblem !== null) return badBody(415, "unsupported_media_type", ErrorCode.UnsupportedMediaType, mediaProblem);
  const rawBody = await readBody(req, policy.maxBodyBytes, policy.bodyTimeoutMs);
  if (rawBody === TOO_LARGE)
    return badBody(413, "payload_too_large", ErrorCode.PayloadTooLarge, `Payload too large: the limit is ${policy.maxBodyBytes} bytes`, {
      data: { maxBodyBytes: policy.maxBodyBytes },
    });
  if (rawBody === TOO_SLOW)
    return badBody(
      408,
      "request_timeout",
      ErrorCode.RequestTimeout,
      `Request timeout: the body did not arrive within ${policy.bodyTimeoutMs} ms`,
      { data: { bodyTimeoutMs: policy.bodyTimeoutMs } },
    );
  const nowMs = Date.now();
  record(s, { time: nowMs });
  let parsedBody: ParsedBody | null = null;
  if (jsonRpc) {
    const parsed = parseBody(rawBody ?? new Uint8Array(), policy.maxJsonDepth);
    if (isBodyError(parsed))
      return badBody(400, parsed.code === ErrorCode.ParseError ? "parse_error" : "invalid_request", parsed.code, parsed.message);
    parsedBody = parsed;
    record(s, describeRpc(parsed));
  } else if (isEndpoint && !ENDPOINT_METHODS.includes(req.method)) {
    const allow = ENDPOINT_METHODS.join(", ");
    return badBody(
      405,
      "method_not_allowed",
      ErrorCode.MethodNotAllowed,
      `Method not allowed: ${req.method} ${policy.endpoint}; use ${allow}`,
      { headers: { allow } },
    );
  }
  return { ...s, isEndpoint, rawBody, body: parsedBody, nowMs };
}
