/**
 * The MCP-headers step (MCP 2026-07-28): `Mcp-Method` and `Mcp-Name`, when a client
 * sends them, must describe the JSON-RPC body they come with, or the origin could route on
 * one method while the gateway priced another: 400 (`error.code` -32020).
 */
import { ErrorCode } from "../../shared/jsonrpc.ts";
import { Refusal } from "../refusal/refusal.ts";
import type { Read } from "./state.ts";

/** The request, on; or the 400 of MCP headers that do not match its JSON-RPC body. */
export function mcpHeaders(s: Read): Read | Refusal {
  const method = s.request.headers.get("mcp-method");
  const name = s.request.headers.get("mcp-name");
  if (!s.body || (method === null && name === null)) return s;
  const only = s.body.batch ? undefined : s.body.messages[0];
  const mismatch =
    method !== null && only?.method !== method
      ? `Header mismatch: Mcp-Method ${method} does not match the body`
      : name !== null && only?.name !== name
        ? `Header mismatch: Mcp-Name ${name} does not match the body`
        : null;
  if (mismatch === null) return s;
  return new Refusal({
    status: 400,
    code: "header_mismatch",
    rpcCode: ErrorCode.HeaderMismatch,
    message: mismatch,
    reason: { decision: "bad_request", reason: "header_mismatch" },
  });
}
