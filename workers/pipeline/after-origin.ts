/**
 * The after-origin step, once the origin answered an admitted request: the session slot an
 * `initialize` opened is bound to the `Mcp-Session-Id` the origin gave (or released when it
 * gave none); a session ends with DELETE, or when the origin says it no longer knows it
 * (404); the receipt of a payment made inside MCP goes into the tool result's `_meta`; and
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
export function afterOrigin(s: Cleared, deps: Pick<Deps, "leases">, out: { res: Response }, refunded: boolean): void {
  const req = s.request;
  const sessionId = req.headers.get("mcp-session-id");
  if (s.slot?.kind === "session" && !refunded) {
    const opened = out.res.headers.get("mcp-session-id");
    if (opened && out.res.status < 400)
      s.ctx.defer("CallerState.bindSession", s.store.bindSession({ slotId: s.slot.id, sessionId: opened }));
    else void giveBack(heldBy(s, deps, "slot"), s.ctx.defer);
  }
  // The session ends with DELETE, or when the origin says it no longer knows it (404).
  if (sessionId && ((req.method === "DELETE" && out.res.status < 500) || out.res.status === 404)) {
    s.ctx.defer("CallerState.endSession", s.store.endSession({ sessionId }));
  }
  // The receipt of a payment made inside MCP goes back in the tool result's `_meta`.
  const only = s.body && !s.body.batch ? s.body.messages[0] : undefined;
  if (s.receipt && only?.id !== undefined && only.id !== null)
    out.res = addResultMeta(out.res, only.id, { [s.receipt.key]: s.receipt.value });
  for (const [name, value] of Object.entries(s.headers)) out.res.headers.set(name, value);
}
