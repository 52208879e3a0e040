/**
 * The over-budget answer as an MCP tool result (x402 `specs/transports-v2/mcp.md`), when the
 * policy sets `x402ToolResult`: for a single `tools/call` with an x402 offer, a JSON-RPC
 * result `{ isError: true, structuredContent: <PaymentRequired>, content: [{ type: "text",
 * text: <its JSON> }], _meta: { "x402/error": <PaymentRequired>, "tollbooth/challenges": [...],
 * "tollbooth/reason": <reason> } }`, so stock x402 MCP clients (which read the spec's shape or
 * Cloudflare `agents/x402`'s) can pay.
 */
import type { JsonRpcId } from "../../../shared/jsonrpc.ts";
import type { Offer } from "../contract.ts";

/**
 * The tool result answering request `id` from the x402 `offer` and the 402's `error.data`.
 * @returns the JSON-RPC response, or null when the offer carries no PaymentRequired
 */
export function toolResult(offer: Offer, id: JsonRpcId, data: Record<string, unknown>): Record<string, unknown> | null {
  const required = offer.json.paymentRequired;
  if (!required) return null;
  return {
    jsonrpc: "2.0",
    id,
    result: {
      isError: true,
      structuredContent: required,
      content: [{ type: "text", text: JSON.stringify(required) }],
      _meta: { "x402/error": required, "tollbooth/challenges": data.challenges, "tollbooth/reason": data.reason },
    },
  };
}
