/**
 * The MCP-headers step (MCP 2026-07-28): `Mcp-Method` and `Mcp-Name`, when a client
 * sends them, must describe the JSON-RPC body they come with, or the origin could route on
 * one method while the gateway priced another: 400 (`error.code` -32020).
 */
import { ErrorCode, type ParsedBody } from "../../shared/jsonrpc.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { Read } from "./state.ts";

/**
 * Whether `Mcp-Method` / `Mcp-Name` match the body they describe.
 * @returns a message when they do not, else null
 */
export function headerMismatch(headers: Headers, body: ParsedBody): string | null {
  const method = headers.get("mcp-method");
  const name = headers.get("mcp-name");
  if (method === null && name === null) return null;
  const only = body.batch ? undefined : body.messages[0];
  if (method !== null && only?.method !== method) return `Header mismatch: Mcp-Method ${method} does not match the body`;
  if (name !== null && only?.name !== name) return `Header mismatch: Mcp-Name ${name} does not match the body`;
  return null;
}

/** The request, on; or the 400 of MCP headers that do not match its JSON-RPC body. */
export function mcpHeaders(s: Read): Read | Refusal {
  const mismatch = s.body ? headerMismatch(s.request.headers, s.body) : null;
  if (mismatch === null) return s;
  return new Refusal({ status: 400, code: "header_mismatch", rpcCode: ErrorCode.HeaderMismatch, message: mismatch, reason: { decision: "bad_request", reason: "header_mismatch" } });
}
