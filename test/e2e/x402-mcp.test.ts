/**
 * x402 v2 inside MCP (docs/wire-contract.md §12 "Inside MCP"; x402 `specs/transports-v2/mcp.md`)
 * through the real gateway (`wrangler dev`, workerd) in front of server-everything, paid on a
 * real local chain (test/helpers/chain.ts: anvil + the EIP-3009 TestUSDC) and verified and
 * settled by a real x402 facilitator (test/helpers/facilitator.ts). Payments are signed with
 * peers that are not tollbooth's code: `@x402/core/client` + `@x402/evm/exact/client` (a client
 * written from the spec) and Cloudflare's `agents/x402` (`withX402Client`). Every test checks
 * the money on chain (`chain.balanceOf`) and what reached the origin (`origin.requests()`).
 */
import { randomBytes } from "node:crypto";
import { x402Client } from "@x402/core/client";
import type { PaymentPayload, PaymentRequired, PaymentRequirements } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { withX402Client } from "agents/x402";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Chain, type ChainAccount, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { connect, firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const PRICE = "1000";

let chain: Chain;
let fac: Facilitator;
let origin: Origin;
let gw: Gateway;
/** A second gateway, x402 in credits mode: one payment of 10000 buys 5 credits. */
let credits: Gateway;

beforeAll(async () => {
  [chain, origin] = await Promise.all([startChain(), startOrigin()]);
  fac = await startFacilitator(chain);
  const policy = (x402: object) => ({
    bucket: { capacity: 1, refillPerSecond: 0.0001 },
    challenge: { difficulty: 8, credits: 4 },
    x402,
    facilitator: {
      url: fac.url,
      payTo: chain.accounts.payTo.address,
      assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
    },
    x402ToolResult: true,
  });
  [gw, credits] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: policy({ mode: "per-request", amountPerUnit: PRICE }) }),
    startGateway({ originUrl: origin.url, policy: policy({ mode: "credits", amount: "10000", credits: 5 }) }),
  ]);
});

afterAll(async () => {
  await Promise.all([gw?.close(), credits?.close()]);
  await Promise.all([origin?.close(), fac?.close()]);
  await chain?.close();
});

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const caller = (label: string) => ({ "x-api-key": `${label}-${randomBytes(6).toString("hex")}` });
let rpcId = 0;

/** A `tools/call` of server-everything's `echo`, with `_meta` when given. */
const toolCall = (message: string, meta?: Record<string, unknown>) => ({
  jsonrpc: "2.0",
  id: ++rpcId,
  method: "tools/call",
  params: { name: "echo", arguments: { message }, ...(meta ? { _meta: meta } : {}) },
});

/** One answer: status, headers, the JSON-RPC messages (JSON body or SSE `data:` events). */
interface Rpc {
  status: number;
  headers: Headers;
  messages: Json[];
}

/** POST `payload` to the gateway's MCP endpoint; reads a JSON or an SSE body whole. */
async function post(headers: Record<string, string>, payload: unknown, g: Gateway = gw): Promise<Rpc> {
  const res = await fetch(`${g.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: JSON.stringify(payload) });
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  let messages: Json[] = [];
  if (type.startsWith("text/event-stream")) {
    for (const block of text.replaceAll("\r\n", "\n").split("\n\n")) {
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) messages.push(JSON.parse(data));
    }
  } else if (text) {
    const v = JSON.parse(text);
    messages = Array.isArray(v) ? v : [v];
  }
  return { status: res.status, headers: res.headers, messages };
}

/** The response to request `id` among `r.messages`. */
function answer(r: Rpc, id: number): Json {
  const m = r.messages.find((x) => x.id === id && ("result" in x || "error" in x));
  expect(m, JSON.stringify(r.messages)).toBeDefined();
  return m;
}

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session. */
async function openSession(who: Record<string, string>, g: Gateway = gw): Promise<Record<string, string>> {
  const init = await post(
    who,
    {
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x402-mcp-test", version: "0" } },
    },
    g,
  );
  expect(init.status).toBe(200);
  const session = { ...who, "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
  const note = await post(session, { jsonrpc: "2.0", method: "notifications/initialized" }, g);
  expect(note.status).toBeLessThan(300);
  return session;
}

/** Spend the session's free unit, then return the over-budget answer (a tool result here). */
async function overBudget(session: Record<string, string>, g: Gateway = gw): Promise<{ r: Rpc; result: Json; required: PaymentRequired }> {
  for (let i = 0; i < 5; i++) {
    const call = toolCall(`free-${i}`);
    const r = await post(session, call, g);
    expect(r.status, JSON.stringify(r.messages)).toBe(200);
    const result = answer(r, call.id).result;
    if (result?.isError && result._meta?.["x402/error"]) return { r, result, required: result.structuredContent as PaymentRequired };
    expect(firstText(result)).toBe(`Echo: free-${i}`);
  }
  throw new Error("never over budget");
}

/** A spec client: `x402Client` + the exact EVM scheme, the test asset allowed. */
function specClient(payer: ChainAccount): x402Client {
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
  client.setSpendControls({ allowedAssets: [{ network: chain.network, asset: chain.usdc }] });
  return client;
}

/** Sign a PaymentPayload for `required` as `payer`. */
const sign = (payer: ChainAccount, required: PaymentRequired): Promise<PaymentPayload> => specClient(payer).createPaymentPayload(required);

/** Base64 of the PaymentPayload's JSON, as `agents/x402` sends it in `_meta`. */
const base64 = (p: PaymentPayload) => Buffer.from(JSON.stringify(p)).toString("base64");

/** Balances of the payer and the payee. */
async function balances(payer: ChainAccount): Promise<{ payer: bigint; payTo: bigint }> {
  const [p, t] = await Promise.all([chain.balanceOf(payer.address), chain.balanceOf(chain.accounts.payTo.address)]);
  return { payer: p, payTo: t };
}

/**
 * The origin's requests since `mark` that carry a tools/call (`count` of them), none with a
 * payment credential: no PAYMENT-SIGNATURE or X-PAYMENT header, no `_meta` payment in the
 * body, not the payment's signature anywhere.
 */
function expectNoPaymentForwarded(mark: number, count: number, payments: PaymentPayload[] = []): void {
  const seen = origin
    .requests()
    .slice(mark)
    .filter((r) => (r.messages as Json[]).some((m) => m?.method === "tools/call"));
  expect(seen).toHaveLength(count);
  for (const r of seen) {
    expect(r.headers["payment-signature"]).toBeUndefined();
    expect(r.headers["x-payment"]).toBeUndefined();
    const body = Buffer.from(r.body).toString();
    expect(body).not.toContain("x402/payment");
    for (const p of payments) expect(JSON.stringify(r.headers) + body).not.toContain((p.payload as { signature: string }).signature);
  }
}

/** `tools/call` messages the origin received since request index `mark`. */
function originToolCalls(mark: number): Json[] {
  return origin
    .requests()
    .slice(mark)
    .flatMap((r) => r.messages as Json[])
    .filter((m) => m?.method === "tools/call");
}

/** The gateway's refusal inside MCP (x402ToolResult): HTTP 200, a tool result naming `reason`, fresh offers. */
function expectToolRefusal(r: Rpc, id: number, reason: string): Json {
  expect(r.status, JSON.stringify(r.messages)).toBe(200);
  const result = answer(r, id).result;
  expect(result, JSON.stringify(r.messages)).toMatchObject({ isError: true, _meta: { "tollbooth/reason": reason } });
  expect(result.structuredContent).toMatchObject({ x402Version: 2, error: reason });
  expect(result._meta["x402/error"]).toEqual(result.structuredContent);
  expect(result._meta["tollbooth/challenges"].map((c: { type: string }) => c.type)).toContain("pow");
  return result;
}

describe("x402 inside MCP: the offer as a tool result (x402ToolResult)", () => {
  it("an over-budget tools/call gets HTTP 200 with an isError tool result carrying PaymentRequired (spec and agents/x402 shapes) and a pow challenge; the origin gets no tools/call", async () => {
    const session = await openSession(caller("offer"));
    // The free unit.
    const free = toolCall("first");
    const ok = await post(session, free);
    expect(ok.status).toBe(200);
    expect(firstText(answer(ok, free.id).result)).toBe("Echo: first");

    const mark = origin.requests().length;
    const before = origin.counts()["tools/call"] ?? 0;
    const call = toolCall("second");
    const r = await post(session, call);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^application\/json/);
    const msg = answer(r, call.id);
    expect(msg.jsonrpc).toBe("2.0");
    expect(msg.error).toBeUndefined();
    const result = msg.result;
    expect(result.isError).toBe(true);
    const required = result.structuredContent;
    expect(required).toMatchObject({
      x402Version: 2,
      error: "over_budget",
      resource: { url: expect.stringMatching(/\/mcp$/), mimeType: "application/json" },
      accepts: [
        {
          scheme: "exact",
          network: "eip155:31337",
          asset: chain.usdc,
          amount: PRICE,
          payTo: chain.accounts.payTo.address,
          maxTimeoutSeconds: expect.any(Number),
          extra: { name: "USD Coin", version: "2" },
        },
      ],
    });
    expect(required.accepts).toHaveLength(1);
    expect(result.content).toEqual([{ type: "text", text: JSON.stringify(required) }]);
    expect(JSON.parse(result.content[0].text)).toEqual(required);
    expect(result._meta["x402/error"]).toEqual(required);
    const challenges = result._meta["tollbooth/challenges"] as Array<{ type: string }>;
    expect(challenges.map((c) => c.type)).toEqual(["pow", "x402"]);
    // The HTTP signal too (x402 HTTP transport): PAYMENT-REQUIRED is the same PaymentRequired.
    expect(JSON.parse(Buffer.from(r.headers.get("payment-required")!, "base64").toString())).toEqual(required);

    expect(originToolCalls(mark)).toEqual([]);
    expect(origin.counts()["tools/call"] ?? 0).toBe(before);
  });
});

describe("x402 inside MCP: a client written from the spec pays in params._meta", () => {
  it('the PaymentPayload object in _meta["x402/payment"]: the tool result with the receipt in _meta, exactly the price moved, the origin never sees the payment', async () => {
    const payer = chain.accounts.payers[0]!;
    const session = await openSession(caller("spec-object"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);
    expect(payload).toMatchObject({ x402Version: 2, accepted: { amount: PRICE, asset: chain.usdc } });

    const was = await balances(payer);
    const calls = fac.calls();
    const mark = origin.requests().length;
    const call = toolCall("paid", { "x402/payment": payload });
    const r = await post(session, call);
    expect(r.status, JSON.stringify(r.messages)).toBe(200);
    const result = answer(r, call.id).result;
    expect(result.isError ?? false, JSON.stringify(result)).toBe(false);
    expect(firstText(result)).toBe("Echo: paid");
    const receipt = result._meta?.["x402/payment-response"];
    expect(receipt, JSON.stringify(result)).toMatchObject({
      success: true,
      network: chain.network,
      transaction: expect.stringMatching(/^0x[0-9a-f]{64}$/),
    });
    expect(String(receipt.payer).toLowerCase()).toBe(payer.address.toLowerCase());
    // The same receipt in PAYMENT-RESPONSE.
    expect(JSON.parse(Buffer.from(r.headers.get("payment-response")!, "base64").toString())).toMatchObject({
      success: true,
      transaction: receipt.transaction,
    });
    // On chain: the settlement transaction succeeded and moved exactly the price.
    const tx = await chain.publicClient.getTransactionReceipt({ hash: receipt.transaction as Hex });
    expect(tx.status).toBe("success");
    const now = await balances(payer);
    expect(was.payer - now.payer).toBe(1000n);
    expect(now.payTo - was.payTo).toBe(1000n);
    expect(fac.calls()).toEqual({ verify: calls.verify + 1, settle: calls.settle + 1 });

    // The origin got the tools/call, without the payment (and without an emptied _meta).
    const seen = originToolCalls(mark);
    expect(seen).toHaveLength(1);
    expect(seen[0].params.arguments).toEqual({ message: "paid" });
    expect(seen[0].params._meta).toBeUndefined();
    expectNoPaymentForwarded(mark, 1, [payload]);
  });

  it("the base64 string form (as agents/x402 sends it) pays the same way; other _meta members reach the origin", async () => {
    const payer = chain.accounts.payers[1]!;
    const session = await openSession(caller("spec-string"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);

    const was = await balances(payer);
    const mark = origin.requests().length;
    const call = toolCall("paid-b64", { "x402/payment": base64(payload), "example.com/trace": "keep-me" });
    const r = await post(session, call);
    expect(r.status, JSON.stringify(r.messages)).toBe(200);
    const result = answer(r, call.id).result;
    expect(firstText(result)).toBe("Echo: paid-b64");
    expect(result._meta["x402/payment-response"]).toMatchObject({
      success: true,
      network: chain.network,
      transaction: expect.stringMatching(/^0x[0-9a-f]{64}$/),
    });
    expect(String(result._meta["x402/payment-response"].payer).toLowerCase()).toBe(payer.address.toLowerCase());
    const now = await balances(payer);
    expect(was.payer - now.payer).toBe(1000n);
    expect(now.payTo - was.payTo).toBe(1000n);

    const seen = originToolCalls(mark);
    expect(seen).toHaveLength(1);
    expect(seen[0].params._meta).toEqual({ "example.com/trace": "keep-me" });
    expectNoPaymentForwarded(mark, 1, [payload]);
  });
});

describe("x402 inside MCP: Cloudflare agents/x402 (withX402Client)", () => {
  /** An SDK client through the gateway, wrapped by agents/x402 with `payer`'s account. */
  async function agentsClient(payer: ChainAccount, label: string) {
    const c = await connect(`${gw.url}/mcp`, { apiKey: caller(label)["x-api-key"] });
    const confirmations: PaymentRequirements[][] = [];
    const client = withX402Client(c.client, {
      account: privateKeyToAccount(payer.privateKey),
      network: "eip155:31337",
      maxPaymentValue: 100000n,
      confirmationCallback: async (reqs) => {
        confirmations.push(reqs);
        return true;
      },
    });
    return { c, client, confirmations };
  }

  it("AS SHIPPED it does NOT pay for a non-default asset: its internal x402Client has default spendControls, so createPaymentPayload throws before its hook and it returns the unpaid tool result unchanged (nothing moves)", async () => {
    const payer = chain.accounts.payers[2]!;
    const { c, client, confirmations } = await agentsClient(payer, "agents-stock");
    try {
      const first = await client.callTool(null, { name: "echo", arguments: { message: "a1" } });
      expect(firstText(first)).toBe("Echo: a1");

      const was = await balances(payer);
      const calls = fac.calls();
      const mark = origin.requests().length;
      const second = (await client.callTool(null, { name: "echo", arguments: { message: "a2" } })) as Json;
      // It read the offer (agents/x402 reads _meta["x402/error"]) and asked for confirmation …
      expect(confirmations).toHaveLength(1);
      expect(confirmations[0]![0]).toMatchObject({ scheme: "exact", network: chain.network, asset: chain.usdc, amount: PRICE });
      // … then gave back the gateway's unpaid result as is: no payment was attempted.
      expect(second.isError).toBe(true);
      expect(second._meta["x402/error"]).toMatchObject({ x402Version: 2, error: "over_budget" });
      expect(second._meta["x402/payment-response"]).toBeUndefined();
      const now = await balances(payer);
      expect(now).toEqual(was);
      expect(fac.calls()).toEqual(calls);
      expect(originToolCalls(mark)).toEqual([]);

      // Why: what withX402Client builds (new x402Client() + registerExactEvmScheme, no
      // setSpendControls) refuses an asset that is not a known default asset of its network.
      const bare = new x402Client();
      registerExactEvmScheme(bare, { signer: privateKeyToAccount(payer.privateKey) });
      await expect(bare.createPaymentPayload(second._meta["x402/error"])).rejects.toThrow(
        /rejected by spendControls: only default assets or entries in spendControls.allowedAssets are allowed/,
      );
    } finally {
      await c.close(true);
    }
  });

  it("with the spend control opened for the test asset (x402Client patched for this test only), agents/x402 pays the gateway's tool-result offer with the base64 _meta form and gets the tool result and receipt", async () => {
    const payer = chain.accounts.payers[2]!;
    const proto = x402Client.prototype as unknown as { applySpendControls: (...a: unknown[]) => unknown; spendControls: unknown };
    const original = proto.applySpendControls;
    proto.applySpendControls = function (this: { spendControls: unknown }, ...a: unknown[]) {
      this.spendControls = { allowedAssets: [{ network: chain.network, asset: chain.usdc }] };
      return original.apply(this, a);
    };
    const { c, client, confirmations } = await agentsClient(payer, "agents-patched");
    try {
      expect(firstText(await client.callTool(null, { name: "echo", arguments: { message: "b1" } }))).toBe("Echo: b1");
      const was = await balances(payer);
      const mark = origin.requests().length;
      const paid = (await client.callTool(null, { name: "echo", arguments: { message: "b2" } })) as Json;
      expect(confirmations).toHaveLength(1);
      expect(paid.isError ?? false, JSON.stringify(paid)).toBe(false);
      expect(firstText(paid)).toBe("Echo: b2");
      expect(paid._meta["x402/payment-response"]).toMatchObject({
        success: true,
        network: chain.network,
        transaction: expect.stringMatching(/^0x[0-9a-f]{64}$/),
      });
      expect(String(paid._meta["x402/payment-response"].payer).toLowerCase()).toBe(payer.address.toLowerCase());
      const now = await balances(payer);
      expect(was.payer - now.payer).toBe(1000n);
      expect(now.payTo - was.payTo).toBe(1000n);
      const seen = originToolCalls(mark);
      // Only the paid retry reached the origin (the over-budget try was answered by the gateway), without the payment.
      expect(seen).toHaveLength(1);
      expect(seen[0].params.arguments).toEqual({ message: "b2" });
      expect(seen[0].params._meta?.["x402/payment"]).toBeUndefined();
      expectNoPaymentForwarded(mark, 1);
    } finally {
      proto.applySpendControls = original;
      await c.close(true);
    }
  });
});

describe("x402 inside MCP: refusals never reach the origin and never move funds", () => {
  it("a replayed _meta payment (the same PaymentPayload again) is refused; the chain moves nothing the second time", async () => {
    const payer = chain.accounts.payers[3]!;
    const session = await openSession(caller("replay"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);
    const first = toolCall("once", { "x402/payment": payload });
    const r1 = await post(session, first);
    expect(firstText(answer(r1, first.id).result)).toBe("Echo: once");

    const was = await balances(payer);
    const mark = origin.requests().length;
    const again = toolCall("twice", { "x402/payment": payload });
    const r2 = await post(session, again);
    const result = answer(r2, again.id).result;
    // Refused as a tool result (x402ToolResult), by the gateway's own spent-once record: the
    // facilitator is not asked again.
    const calls = fac.calls();
    expect(result?._meta?.["tollbooth/reason"], JSON.stringify(result)).toBe("x402_spent");
    expectToolRefusal(r2, again.id, "x402_spent");
    expect(await balances(payer)).toEqual(was);
    expect(originToolCalls(mark)).toEqual([]);
    expect(fac.calls()).toEqual(calls);
  });

  it("the same fresh payment sent twice at once: exactly one pays and reaches the origin, the other is x402_spent", async () => {
    const payer = chain.accounts.payers[6]!;
    const session = await openSession(caller("race"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);
    const was = await balances(payer);
    const mark = origin.requests().length;
    const a = toolCall("race-a", { "x402/payment": payload });
    const b = toolCall("race-b", { "x402/payment": payload });
    const [ra, rb] = await Promise.all([post(session, a), post(session, b)]);
    const results = [answer(ra, a.id).result, answer(rb, b.id).result];
    const paid = results.filter((x) => !x.isError);
    const refused = results.filter((x) => x.isError);
    expect(paid, JSON.stringify(results)).toHaveLength(1);
    expect(paid[0]._meta["x402/payment-response"]).toMatchObject({ success: true });
    expect(refused).toHaveLength(1);
    expect(refused[0]._meta["tollbooth/reason"]).toBe("x402_spent");
    const now = await balances(payer);
    expect(was.payer - now.payer).toBe(1000n);
    expect(now.payTo - was.payTo).toBe(1000n);
    expect(originToolCalls(mark)).toHaveLength(1);
  });

  // The price is 1000 (per request, amountPerUnit × cost 1): "999" and "9" are less, but not string prefixes of it.
  for (const amount of ["999", "9", "1"]) {
    it(`an underpaid payment (signed for amount ${amount} < the price ${PRICE}) is x402_underpaid, never sent to the facilitator, nothing moves`, async () => {
      const payer = chain.accounts.payers[4]!;
      const session = await openSession(caller("underpaid"));
      const { required } = await overBudget(session);
      expect(required.accepts[0]!.amount).toBe(PRICE);
      const cheap: PaymentRequired = { ...required, accepts: [{ ...required.accepts[0]!, amount }] };
      const payload = await sign(payer, cheap);
      expect(payload.accepted.amount).toBe(amount);
      const was = await balances(payer);
      const calls = fac.calls();
      const mark = origin.requests().length;
      const call = toolCall("cheap", { "x402/payment": payload });
      expectToolRefusal(await post(session, call), call.id, "x402_underpaid");
      expect(await balances(payer)).toEqual(was);
      expect(fac.calls()).toEqual(calls);
      expect(originToolCalls(mark)).toEqual([]);
    });
  }

  it('a malformed _meta["x402/payment"] ("not-base64") is x402_malformed, even for a caller with budget left', async () => {
    const session = await openSession(caller("malformed"));
    const payTo = await chain.balanceOf(chain.accounts.payTo.address);
    const calls = fac.calls();
    const mark = origin.requests().length;
    // Fresh caller (its free unit unspent): the bad payment is still refused, not forwarded.
    const call = toolCall("bad", { "x402/payment": "not-base64" });
    expectToolRefusal(await post(session, call), call.id, "x402_malformed");
    // Over budget too.
    await overBudget(session);
    const mark2 = origin.requests().length;
    const call2 = toolCall("bad2", { "x402/payment": "not-base64" });
    expectToolRefusal(await post(session, call2), call2.id, "x402_malformed");
    expect(originToolCalls(mark2)).toEqual([]);
    expect(originToolCalls(mark).map((m) => m.params.arguments.message)).toEqual(["free-0"]);
    expect(await chain.balanceOf(chain.accounts.payTo.address)).toBe(payTo);
    expect(fac.calls()).toEqual(calls);
  });

  it("a batch carrying a payment in _meta is not read as a payment: 402 over budget, nothing verified or moved, the authorization stays unused", async () => {
    const payer = chain.accounts.payers[5]!;
    const session = await openSession(caller("batch"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);
    const was = await balances(payer);
    const calls = fac.calls();
    const mark = origin.requests().length;
    const call = toolCall("batched", { "x402/payment": payload });
    const r = await post(session, [call]);
    expect(r.status, JSON.stringify(r.messages)).toBe(402);
    const err = answer(r, call.id).error;
    expect(err).toMatchObject({ code: 402, data: { reason: "over_budget" } });
    expect(err.data.challenges.map((c: { type: string }) => c.type)).toEqual(["pow", "x402"]);
    expect(await balances(payer)).toEqual(was);
    expect(fac.calls()).toEqual(calls);
    expect(originToolCalls(mark)).toEqual([]);
    const auth = (payload.payload as { authorization: { from: Hex; nonce: Hex } }).authorization;
    expect(await chain.authorizationState(auth.from, auth.nonce)).toBe(false);
  });
});

describe("x402 inside MCP: credits mode (second gateway)", () => {
  it("one _meta payment of 10000 buys 5 credits: the tool result and receipt, an access token for the payer with 4 left; the next calls spend the token and move nothing", async () => {
    const payer = chain.accounts.payers[0]!;
    const session = await openSession(caller("credits"), credits);
    const { required, result } = await overBudget(session, credits);
    expect(required.accepts[0]).toMatchObject({ amount: "10000", asset: chain.usdc, network: chain.network });
    expect(result._meta["tollbooth/challenges"].find((c: { type: string }) => c.type === "x402")).toMatchObject({
      mode: "credits",
      credits: 5,
    });
    const payload = await sign(payer, required);

    const was = await balances(payer);
    const mark = origin.requests().length;
    const call = toolCall("bundle", { "x402/payment": payload });
    const r = await post(session, call, credits);
    expect(r.status, JSON.stringify(r.messages)).toBe(200);
    const paid = answer(r, call.id).result;
    expect(firstText(paid)).toBe("Echo: bundle");
    expect(paid._meta["x402/payment-response"]).toMatchObject({ success: true, network: chain.network });
    const token = r.headers.get("tollbooth-token");
    expect(token).toBeTruthy();
    expect(r.headers.get("tollbooth-credits")).toBe("4");
    let now = await balances(payer);
    expect(was.payer - now.payer).toBe(10000n);
    expect(now.payTo - was.payTo).toBe(10000n);

    // The token (it names the payer) pays the next calls; nothing more moves on chain.
    for (const left of ["3", "2"]) {
      const next = toolCall(`token-${left}`);
      const rn = await post({ ...session, "tollbooth-token": token! }, next, credits);
      expect(rn.status).toBe(200);
      expect(firstText(answer(rn, next.id).result)).toBe(`Echo: token-${left}`);
      expect(rn.headers.get("tollbooth-credits")).toBe(left);
    }
    now = await balances(payer);
    expect(was.payer - now.payer).toBe(10000n);
    const seen = originToolCalls(mark);
    expect(seen.map((m) => m.params.arguments.message)).toEqual(["bundle", "token-3", "token-2"]);
    expect(seen.every((m) => m.params._meta === undefined)).toBe(true);
  });
});

describe("x402 refusal detail (wire contract §12)", () => {
  // §12: an `x402_invalid` refusal carries the facilitator's `invalidReason` in `error.data.detail`.
  it("a facilitator refusal (x402_invalid) carries the invalidReason in error.data.detail", async () => {
    // A payer with no funds: its signature is good (it passes the gateway's own check), the
    // facilitator's /verify refuses it.
    const key = generatePrivateKey();
    const broke: ChainAccount = { privateKey: key, address: privateKeyToAccount(key).address };
    const session = await openSession(caller("detail"));
    const { required } = await overBudget(session);
    const payload = await sign(broke, required);
    // As PAYMENT-SIGNATURE on a batch (not a single tools/call, so a JSON-RPC 402 rather than a tool result).
    const mark = origin.requests().length;
    const calls = fac.calls();
    const call = toolCall("unfunded");
    const r = await post({ ...session, "payment-signature": base64(payload) }, [call]);
    expect(r.status).toBe(402);
    const err = answer(r, call.id).error;
    expect(err.data.reason).toBe("x402_invalid");
    expect(originToolCalls(mark)).toEqual([]);
    expect(fac.calls()).toEqual({ verify: calls.verify + 1, settle: calls.settle });
    expect(err.data.detail, JSON.stringify(err.data)).toMatch(/^invalid_exact_evm_/);
  });

  it("a forged signature (another key signing for the payer): x402_invalid with the facilitator's own code, refused by the gateway alone", async () => {
    const payer = chain.accounts.payers[3]!;
    const session = await openSession(caller("forged"));
    const { required } = await overBudget(session);
    const payload = await sign(payer, required);
    const thief = await sign(chain.accounts.payers[4]!, required);
    const forged = { ...payload, payload: { ...payload.payload, signature: (thief.payload as { signature: string }).signature } };
    const mark = origin.requests().length;
    const calls = fac.calls();
    const call = toolCall("forged");
    const r = await post({ ...session, "payment-signature": base64(forged) }, [call]);
    expect(r.status).toBe(402);
    expect(answer(r, call.id).error.data).toMatchObject({ reason: "x402_invalid", detail: "invalid_exact_evm_signature" });
    expect(originToolCalls(mark)).toEqual([]);
    expect(fac.calls()).toEqual(calls);
  });
});
