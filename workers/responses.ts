/**
 * Responses the gateway answers itself: JSON-RPC 2.0 error bodies (`application/json`)
 * with the request's id, so stock MCP SDKs that surface only the body text still carry
 * everything an agent needs.
 */
import { errorPayload, type ParsedBody } from "../shared/jsonrpc.ts";

/** Headers for every response tollbooth writes itself. */
const BASE_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;

/**
 * A JSON-RPC error response.
 * @param status HTTP status
 * @param body the parsed request body (for the ids), or null
 * @param code `error.code` (see `ErrorCode` in shared/jsonrpc.ts)
 * @param headers extra headers (e.g. `WWW-Authenticate`, `Retry-After`)
 */
export function jsonRpcError(
  status: number,
  body: ParsedBody | null,
  code: number,
  message: string,
  data?: unknown,
  headers?: Record<string, string>,
): Response {
  return new Response(JSON.stringify(errorPayload(body, code, message, data)), {
    status,
    headers: { ...BASE_HEADERS, ...headers },
  });
}

/** A plain JSON response (the `/.well-known/tollbooth` endpoints). */
export function json(status: number, value: unknown, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(value), { status, headers: { ...BASE_HEADERS, ...headers } });
}
