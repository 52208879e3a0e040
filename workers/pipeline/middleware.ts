/**
 * `tollbooth(options)`: the Hono middleware in front of the proxy — a thin adapter over the
 * framework-free `decide()` (./decide.ts), in the shape of the Hono adapters that wrap a
 * `processHTTPRequest()`. Options are validated once (a TypeError names the bad one); per
 * request it decides, hands the decision record to observe (workers/observe/), and then
 * answers the refusal, answers for tollbooth's own endpoints, or hands the admitted request
 * to the next handler (the proxy, `c.var.tollbooth`) and finishes it after the origin.
 */
import type { Context, MiddlewareHandler } from "hono";
import { DEGRADED_HEADER } from "../../shared/wire/headers.ts";
import { decided, note } from "../observe/observe.ts";
import { toJsonRpc } from "../refusal/json-rpc.ts";
import { afterOrigin } from "./after-origin.ts";
import { decide } from "./decide.ts";
import { buildDeps, type TollboothOptions } from "./deps.ts";
import { handoff, type TollboothState, type TollboothVariables } from "./handoff.ts";
import type { RequestContext } from "./state.ts";

export type { TollboothOptions } from "./deps.ts";
export type { TollboothState, TollboothVariables } from "./handoff.ts";
export { DEGRADED_HEADER };

/** The request's context: its `waitUntil` for background work (failures logged), when there is an execution context. */
function contextOf(c: Context): RequestContext {
  const defer = (what: string, p: Promise<unknown>) => {
    const guarded = p.catch((err) => console.error(`tollbooth: ${what} failed`, err));
    try {
      c.executionCtx.waitUntil(guarded);
    } catch {
      // No execution context (a test calling the app directly): the promise runs on its own.
    }
  };
  return { request: c.req.raw, url: new URL(c.req.raw.url), defer };
}

/** The proxy's report of the origin's answer, into the decision record. */
const originOutcome =
  (c: Context): TollboothState["origin"] =>
  (o) =>
    note(c, typeof o === "number" ? { originStatus: o } : { originError: o });

/**
 * Build the middleware.
 * @throws TypeError naming the bad option (`policy.<field>`, `secret`, `callers`, `originGate`,
 *   a payment scheme's secret)
 */
export function tollbooth(options: TollboothOptions): MiddlewareHandler<{ Variables: TollboothVariables }> {
  const deps = buildDeps(options);
  return async function tollbooth(c, next) {
    const outcome = await decide(contextOf(c), deps);
    note(c, outcome.record);
    if (outcome.kind === "refused") return decided(c, outcome.refusal.reason!, toJsonRpc(outcome.refusal, outcome.body));
    if (outcome.kind === "answered") return outcome.response;
    if (outcome.kind === "unmetered") {
      // Forwarded unmetered: no decision, nothing to give back.
      const { caller, body, credential, cost } = outcome.state;
      c.set("tollbooth", {
        caller,
        body,
        rawBody: credential.forwardBody,
        cost,
        decision: null,
        strip: deps.strip,
        origin: originOutcome(c),
      });
      await next();
      c.res.headers.set(DEGRADED_HEADER, "store-unavailable");
      return;
    }
    const handed = handoff(outcome.state, deps);
    c.set("tollbooth", { ...handed.state, origin: originOutcome(c) });
    await next();
    afterOrigin(outcome.state, deps, c, handed.refunded());
  };
}
