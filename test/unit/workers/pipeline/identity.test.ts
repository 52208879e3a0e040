/**
 * The identity step (workers/pipeline/identity.ts) with a static configuration (the `ip`
 * strategy and API keys listed in the policy, no binding): who the caller is, its plan, what
 * the request costs under it, and the 400 of a request nothing could pay for.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { body } from "../../../../workers/pipeline/body.ts";
import { identity } from "../../../../workers/pipeline/identity.ts";
import type { Known, Read } from "../../../../workers/pipeline/state.ts";
import { toJsonRpc } from "../../../../workers/refusal/json-rpc.ts";
import { Refusal } from "../../../../workers/refusal/refusal.ts";
import { arrival, depsFor, IP, request, toolCall } from "./support.ts";

const KEY = "tb_pipeline_unit_key_0001";
const deps = depsFor({
  identity: { apiKeys: [{ sha256: createHash("sha256").update(KEY).digest("hex"), name: "partner", plan: "pro" }] },
  costs: { tools: { search: 3 } },
  plans: { pro: { bucket: { capacity: 100, refillPerSecond: 1 }, challenge: { credits: 50 }, costs: { tools: { search: 2 } } } },
});

/** The state after the body step, for `req`. */
async function read(req: Request): Promise<Read> {
  return (await body(arrival(req), deps)) as Read;
}

describe("who calls, on which plan, at what cost", () => {
  it("no credential: the caller's network, the default plan, the tool's cost; all in the record", async () => {
    const s = await read(request("POST", "/mcp", { body: toolCall(1, "search") }));
    const known = (await identity(s, deps)) as Known;
    expect([known.identity.id, known.identity.verified, known.plan.name, known.cost]).toEqual([`ip:${IP}`, false, "free", 3]);
    expect(s.record).toMatchObject({ caller: `ip:${IP}`, network: IP, plan: "free", cost: 3 });
  });

  it("an issued key listed in the policy: that key's caller and plan (its prices)", async () => {
    const known = (await identity(
      await read(request("POST", "/mcp", { body: toolCall(1, "search"), headers: { "x-api-key": KEY } })),
      deps,
    )) as Known;
    expect([known.identity.id.startsWith("key:"), known.identity.verified, known.plan.name, known.cost]).toEqual([true, true, "pro", 2]);
  });

  it("an invented key is no identity: the request is its network's, on the default plan", async () => {
    const known = (await identity(
      await read(request("POST", "/mcp", { body: toolCall(1), headers: { "x-api-key": "tb_invented" } })),
      deps,
    )) as Known;
    expect([known.identity.id, known.plan.name]).toEqual([`ip:${IP}`, "free"]);
  });

  it("paths: the endpoint's GET costs 0, OAuth metadata 0, any other path costs.otherPaths", async () => {
    const cost = async (path: string) => ((await identity(await read(request("GET", path)), deps)) as Known).cost;
    expect(await cost("/mcp")).toBe(0);
    expect(await cost("/.well-known/oauth-protected-resource")).toBe(0);
    expect(await cost("/.well-known/openid-configuration/x")).toBe(0);
    expect(await cost("/robots.txt")).toBe(1);
  });
});

describe("a request nothing could pay for", () => {
  it("a batch costing more than the bucket, a solve and any payment hold: 400 cost_too_high, one error per request id", async () => {
    const batch = Array.from({ length: 7 }, (_, i) => toolCall(i, "search"));
    const s = await read(request("POST", "/mcp", { body: batch }));
    const refusal = await identity(s, deps);
    expect(refusal).toBeInstanceOf(Refusal);
    const res = toJsonRpc(refusal as Refusal, s.body);
    const answers = (await res.json()) as Array<{ id: number; error: { code: number; message: string; data: unknown } }>;
    expect(res.status).toBe(400);
    expect(answers.map((a) => a.id)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(answers[0]!.error).toEqual({
      code: -32600,
      message:
        "Invalid Request: a batch of 7 messages costs 21; at most 20 can be admitted at once (plan free): send fewer messages per batch",
      data: { cost: 21, maxCost: 20, plan: "free" },
    });
    expect((refusal as Refusal).reason).toEqual({ decision: "bad_request", reason: "cost_too_high" });
  });

  it("the same batch on a plan that holds it goes on", async () => {
    const batch = Array.from({ length: 7 }, (_, i) => toolCall(i, "search"));
    const known = await identity(await read(request("POST", "/mcp", { body: batch, headers: { "x-api-key": KEY } })), deps);
    expect(known).not.toBeInstanceOf(Refusal);
    expect((known as Known).cost).toBe(14);
  });
});
