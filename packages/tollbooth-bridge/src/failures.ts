/**
 * What a failed send to the gateway means for the bridge, and the JSON-RPC error the local
 * client gets when the bridge gives up on a request.
 *
 * Kinds:
 *  - `session`: the server no longer knows the session. MCP 2025-06-18 / 2025-11-25
 *    "Session Management": a request carrying `Mcp-Session-Id` answered with HTTP 404 means
 *    the session is gone and the client MUST start a new one. Widely deployed servers (the
 *    SDK's example servers, `@modelcontextprotocol/server-everything`) answer an unknown
 *    session with 400 "No valid session ID provided" instead; a 400 whose body names a
 *    session counts too.
 *  - `transient`: the HTTP connection failed before an answer (refused, reset, DNS, connect
 *    timeout) or the gateway answered 502 / 503: worth a bounded retry with backoff.
 *  - `fatal`: anything else (other HTTP statuses, a challenge the resolver would not pay).
 */
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { JSONRPCErrorResponse, RequestId } from "@modelcontextprotocol/sdk/types.js";
import { TollboothError } from "../../tollbooth-client/src/errors.ts";

/** See the module comment. */
export type FailureKind = "session" | "transient" | "fatal";

/** JSON-RPC 2.0 "implementation-defined server error" code the bridge uses for its own failures. */
export const BRIDGE_ERROR_CODE = -32000;

/** Socket / DNS error codes (Node `error.code`, undici `cause.code`) after which a retry is worth it. */
const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_CLOSED",
]);

/** The `code` of `err` or of any error in its `cause` chain that is a transient socket code, else undefined. */
function socketCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && TRANSIENT_CODES.has(code)) return code;
  }
  return undefined;
}

/**
 * Classify an error thrown by `StreamableHTTPClientTransport.send()`.
 * @param err what `send()` threw
 * @param hadSession whether the request carried an `Mcp-Session-Id` (no session, no `session` kind)
 */
export function classifyFailure(err: unknown, hadSession: boolean): FailureKind {
  if (err instanceof StreamableHTTPError) {
    if (hadSession && (err.code === 404 || (err.code === 400 && /session/i.test(err.message)))) return "session";
    if (err.code === 502 || err.code === 503) return "transient";
    return "fatal";
  }
  if (err instanceof TollboothError) return "fatal";
  return socketCode(err) ? "transient" : "fatal";
}

/** A one-line description of a send failure for logs and for the client's error message. */
export function describeFailure(err: unknown): string {
  if (err instanceof TollboothError)
    return `could not get past the gateway's challenge (${err.code}${err.status ? `, HTTP ${err.status}` : ""}): ${err.message}`;
  if (err instanceof StreamableHTTPError) return `HTTP ${err.code}: ${err.message.replace(/^Streamable HTTP error: /, "")}`;
  const code = socketCode(err);
  const message = err instanceof Error ? err.message : String(err);
  return code ? `connection failed (${code}): ${message}` : message;
}

/**
 * The JSON-RPC error response the local client gets for request `id` when the bridge gives up.
 * When the gateway or origin answered with a JSON-RPC error body, its `code`, `message` and
 * `data` are kept; otherwise `code` is {@link BRIDGE_ERROR_CODE} and `message` says what failed.
 */
export function errorResponse(id: RequestId, err: unknown, url: string): JSONRPCErrorResponse {
  const upstream = err instanceof StreamableHTTPError ? jsonRpcErrorIn(err.message) : undefined;
  if (upstream) return { jsonrpc: "2.0", id, error: upstream };
  const data = err instanceof TollboothError ? { tollbooth: err.code, status: err.status } : undefined;
  return {
    jsonrpc: "2.0",
    id,
    error: { code: BRIDGE_ERROR_CODE, message: `tollbooth-bridge: ${url}: ${describeFailure(err)}`, ...(data ? { data } : {}) },
  };
}

/** The `error` member of a JSON-RPC error object embedded in `text` (after the first `{`), if any. */
function jsonRpcErrorIn(text: string): JSONRPCErrorResponse["error"] | undefined {
  const start = text.indexOf("{");
  if (start === -1) return undefined;
  try {
    const body = JSON.parse(text.slice(start)) as { error?: { code?: unknown; message?: unknown; data?: unknown } };
    const e = body.error;
    if (!e || typeof e.code !== "number" || !Number.isInteger(e.code) || typeof e.message !== "string") return undefined;
    return { code: e.code, message: e.message, ...(e.data !== undefined ? { data: e.data } : {}) };
  } catch {
    return undefined;
  }
}
