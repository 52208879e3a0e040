/**
 * A refusal on the MCP endpoint: a JSON-RPC 2.0 error body (`application/json`) with the
 * request's ids (one error per request of a batch), so stock MCP SDKs that surface only the
 * body text still carry everything an agent needs.
 */
import { errorPayload, type ParsedBody } from "../../shared/jsonrpc.ts";
import { WWW_AUTHENTICATE_HEADER } from "../../shared/wire/headers.ts";
import { BASE_HEADERS } from "./problem.ts";
import { type Refusal, refusalHeaders } from "./refusal.ts";

/**
 * Render `r` for the endpoint: HTTP `r.status`, `{ jsonrpc, id, error: { code: r.rpcCode,
 * message, data? } }` for each request id of `body` (`id: null` when none can be read), its
 * headers then `Retry-After`, then one `WWW-Authenticate` field line per challenge. A refusal
 * carrying a `result` (an MCP tool result) is that JSON-RPC response with HTTP 200 instead.
 * @param body the parsed request body (for the ids), or null before it was read
 */
export function toJsonRpc(r: Refusal, body: ParsedBody | null): Response {
  if (r.result) return new Response(JSON.stringify(r.result), { status: 200, headers: { ...BASE_HEADERS, ...r.headers } });
  const res = new Response(JSON.stringify(errorPayload(body, r.rpcCode, r.message, r.data)), {
    status: r.status,
    headers: { ...BASE_HEADERS, ...refusalHeaders(r) },
  });
  for (const challenge of r.challenges) res.headers.append(WWW_AUTHENTICATE_HEADER, challenge);
  return res;
}
