/**
 * The after-origin step, once the origin answered an admitted request: the session slot an
 * `initialize` opened is bound to the `Mcp-Session-Id` the origin gave (or released when it
 * gave none); a session's slot is released only when the origin really ended it (its DELETE
 * answered 2xx, or its 404 for the session id, on the endpoint's own path); the receipt of a payment made inside MCP goes into the tool result's `_meta`; and
 * the headers the decision owes the client (rate-limit fields, a minted token, credits, a
 * payment's receipt header) are set on the answer.
 */
import { addResultMeta } from "../proxy/mcp-meta.ts";
import type { Deps } from "./deps.ts";
import { giveBack, heldBy } from "./give-back.ts";
import type { Cleared } from "./state.ts";

/**
 * Finish an admitted request. `out.res` is the answer (a Hono `Context` fits: replacing it
 * keeps its headers); it is replaced when a receipt goes into its body.
 * @param refunded whether the request's charge was given back (the origin never answered): its slot then went with it
 */
export function afterOrigin(s: Cleared, deps: Pick<Deps, "leases" | "policy">, out: { res: Response }, refunded: boolean): void {
  const req = s.request;
  const sessionId = req.headers.get("mcp-session-id");
  if (s.slot?.kind === "session" && !refunded) {
    const opened = out.res.headers.get("mcp-session-id");
    if (opened && out.res.status < 400)
      s.ctx.defer("CallerState.bindSession", s.store.bindSession({ slotId: s.slot.id, sessionId: opened }));
    else void giveBack(heldBy(s, deps, "slot"), s.ctx.defer);
  }
  if (sessionId && endedSession(s, deps.policy.endpoint, out.res.status))
    s.ctx.defer("CallerState.endSession", s.store.endSession({ sessionId }));
  // The receipt of a payment made inside MCP goes back in the tool result's `_meta`.
  const only = s.body && !s.body.batch ? s.body.messages[0] : undefined;
  if (s.receipt && only?.id !== undefined && only.id !== null)
    out.res = addResultMeta(out.res, only.id, { [s.receipt.key]: s.receipt.value });
  for (const [name, value] of Object.entries(s.headers)) out.res.headers.set(name, value);
}

/**
 * Whether the origin's answer `status` to a request carrying `Mcp-Session-Id` says the origin
 * ended that session (MCP Streamable HTTP, "Session Management"): its DELETE answered 2xx, or
 * any request answered 404. Only on the endpoint's own path, spelled exactly as the policy's
 * `endpoint` (the request's path as forwarded): a 404 of another path, or of another spelling
 * the gateway prices as the endpoint (`/MCP`, `/%6Dcp`) that the origin may not route, names no
 * session. A 4xx to a DELETE (400 for a protocol version, 405 for a server that does not let
 * clients end sessions) ends nothing.
 * @param endpoint the policy's `endpoint` path
 */
export function endedSession(s: Pick<Cleared, "request" | "url">, endpoint: string, status: number): boolean {
  if (s.url.pathname !== endpoint) return false;
  return status === 404 || (s.request.method === "DELETE" && status >= 200 && status < 300);
}
