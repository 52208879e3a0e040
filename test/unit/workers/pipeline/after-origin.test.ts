/**
 * The after-origin step (workers/pipeline/after-origin.ts) against a fake caller store: the
 * session an `initialize` opened is bound to the origin's `Mcp-Session-Id` (or its slot
 * released), a DELETE answered 2xx or the origin's 404 on the endpoint ends a session (nothing
 * else does), a payment's receipt goes into the
 * tool result's `_meta`, and the decision's headers are set on the answer.
 */
import { describe, expect, it } from "vitest";
import type { CallerStore } from "../../../../workers/objects/stores.ts";
import { afterOrigin } from "../../../../workers/pipeline/after-origin.ts";
import { body } from "../../../../workers/pipeline/body.ts";
import { credentials } from "../../../../workers/pipeline/credentials.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import type { Carrying, Cleared, Known, Read } from "../../../../workers/pipeline/state.ts";
import { arrival, type Deferred, depsFor, request, toolCall } from "./support.ts";

const deps = depsFor();

/** A caller store recording each call. */
function fakeStore(): CallerStore & { calls: Array<[string, unknown]> } {
  const calls: Array<[string, unknown]> = [];
  return new Proxy(
    { calls },
    { get: (t, m: string) => (m === "calls" ? t.calls : async (arg: unknown) => void calls.push([m, arg])) },
  ) as unknown as CallerStore & { calls: Array<[string, unknown]> };
}

const lim = { success: true, limit: 10, remaining: 9, reset: 0, retryAfterSeconds: 0 };

/** An admitted request for `req`, cleared for the origin. */
async function cleared(
  req: Request,
  over: Partial<Cleared> = {},
  deferred: Deferred = [],
): Promise<Cleared & { store: ReturnType<typeof fakeStore> }> {
  const known = (await identity((await body(arrival(req, deferred), deps)) as Read, deps)) as Known;
  const carrying = (await credentials(known, deps)) as Carrying;
  return {
    ...carrying,
    store: fakeStore(),
    decision: { admitted: true, paidBy: "free", bucket: lim, ceiling: lim },
    local: null,
    headers: { ratelimit: '"free";r=9;t=0' },
    ...over,
  } as Cleared & { store: ReturnType<typeof fakeStore> };
}

const initialize = () => request("POST", "/mcp", { body: { jsonrpc: "2.0", id: 1, method: "initialize", params: {} } });
const answer = (status: number, headers: Record<string, string> = {}, text = "{}") => ({
  res: new Response(status === 204 ? null : text, { status, headers: { "content-type": "application/json", ...headers } }),
});

describe("sessions", () => {
  it("an initialize the origin answered with a session: its slot is bound to that session, in the background", async () => {
    const deferred: Deferred = [];
    const s = await cleared(initialize(), {}, deferred);
    afterOrigin(s, deps, answer(200, { "mcp-session-id": "sess-9" }), false);
    expect(deferred.map((d) => d.what)).toEqual(["CallerState.bindSession"]);
    expect(s.store.calls).toEqual([["bindSession", { slotId: s.slot!.id, sessionId: "sess-9" }]]);
  });

  it("an initialize answered without a session, or with an error: its slot is released", async () => {
    for (const out of [answer(200), answer(400, { "mcp-session-id": "sess-9" })]) {
      const s = await cleared(initialize());
      afterOrigin(s, deps, out, false);
      expect(s.store.calls).toEqual([["release", { slotId: s.slot!.id }]]);
    }
  });

  it("an initialize whose charge was given back (the origin never answered): nothing more to release", async () => {
    const s = await cleared(initialize());
    afterOrigin(s, deps, answer(502), true);
    expect(s.store.calls).toEqual([]);
  });

  it("DELETE of a session answered 2xx, or the origin's 404 for it: the session's slot is ended; a 5xx to a DELETE ends nothing", async () => {
    const del = await cleared(request("DELETE", "/mcp", { headers: { "mcp-session-id": "sess-1" } }));
    afterOrigin(del, deps, answer(204), false);
    expect(del.store.calls).toEqual([["endSession", { sessionId: "sess-1" }]]);
    const gone = await cleared(request("POST", "/mcp", { body: toolCall(2), headers: { "mcp-session-id": "sess-2" } }));
    afterOrigin(gone, deps, answer(404), false);
    expect(gone.store.calls).toEqual([["endSession", { sessionId: "sess-2" }]]);
    const failed = await cleared(request("DELETE", "/mcp", { headers: { "mcp-session-id": "sess-3" } }));
    afterOrigin(failed, deps, answer(503), false);
    expect(failed.store.calls).toEqual([]);
  });

  it("a 4xx to a DELETE, or a 404 of another path or spelling of the endpoint, ends no session (the origin may still hold it)", async () => {
    const cases: Array<[Request, number]> = [
      [request("DELETE", "/mcp", { headers: { "mcp-session-id": "sess-4", "mcp-protocol-version": "1999-01-01" } }), 400],
      [request("DELETE", "/mcp", { headers: { "mcp-session-id": "sess-4" } }), 405],
      [request("DELETE", "/mcp", { headers: { "mcp-session-id": "sess-4" } }), 403],
      [request("GET", "/nope", { headers: { "mcp-session-id": "sess-4" } }), 404],
      [request("DELETE", "/MCP", { headers: { "mcp-session-id": "sess-4" } }), 404],
      [request("DELETE", "/mcp/", { headers: { "mcp-session-id": "sess-4" } }), 200],
    ];
    for (const [req, status] of cases) {
      const s = await cleared(req);
      afterOrigin(s, deps, answer(status), false);
      expect(s.store.calls, `${req.method} ${new URL(req.url).pathname} → ${status}`).toEqual([]);
    }
  });
});

describe("the answer", () => {
  it("the decision's headers are set on the origin's answer", async () => {
    const s = await cleared(request("POST", "/mcp", { body: toolCall(4) }), {
      headers: { ratelimit: '"free";r=3;t=0', "tollbooth-credits": "7" },
    });
    const out = answer(200, { ratelimit: "origin's own" });
    afterOrigin(s, deps, out, false);
    expect([out.res.headers.get("ratelimit"), out.res.headers.get("tollbooth-credits")]).toEqual(['"free";r=3;t=0', "7"]);
  });

  it("a payment's receipt goes into the result's _meta of the request it paid for, beside the origin's own members", async () => {
    const s = await cleared(request("POST", "/mcp", { body: toolCall(5) }), { receipt: { key: "pay/receipt", value: { tx: "0x1" } } });
    const out = answer(200, {}, JSON.stringify({ jsonrpc: "2.0", id: 5, result: { content: [], _meta: { mine: 1 } } }));
    afterOrigin(s, deps, out, false);
    expect(await out.res.json()).toEqual({
      jsonrpc: "2.0",
      id: 5,
      result: { content: [], _meta: { mine: 1, "pay/receipt": { tx: "0x1" } } },
    });
  });
});
