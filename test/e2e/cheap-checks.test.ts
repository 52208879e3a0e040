/**
 * Cheap checks before costly work (docs/costs.md), through the real gateway (`wrangler dev`),
 * counting the costly work at the real peers:
 * - x402: 150 well-formed but forged `PAYMENT-SIGNATURE`s from one network (another key's
 *   signature; terms changed after signing) reach the real facilitator (anvil + `@x402/evm`)
 *   zero times, and nothing reaches the origin or moves on chain; a real payment still pays.
 * - L402: an invoice flood from new networks (`CF-Connecting-IP`, `GET /challenge?type=l402`:
 *   no session, no free unit to spend) against the Lightning stand-in gets what the per-isolate
 *   budget leaves above its reserve, then 503 `busy`; the `pro` API-key caller, asking ten
 *   times in the middle of it, gets an invoice every time; every invoice the stand-in issued
 *   is one an answer offered.
 */
import { createHash, randomBytes } from "node:crypto";
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { PaymentPayload, PaymentRequired } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { INVOICE_RESERVE_SHARE } from "../../workers/schemes/l402/offers.ts";
import { type Chain, type ChainAccount, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const PRO_KEY = `tb_${randomBytes(24).toString("base64url")}`;
/** Invoices one isolate may make per second: a burst of 5, 2 of them reserved for trusted callers. */
const INVOICES_PER_SECOND = 0.5;
const BURST = Math.round(INVOICES_PER_SECOND * 10);
const RESERVE = Math.floor(BURST * INVOICE_RESERVE_SHARE);

let chain: Chain;
let facilitator: Facilitator;
let ln: LightningStandin;
let origin: Origin;
let x402gw: Gateway;
let l402gw: Gateway;

beforeAll(async () => {
  [chain, origin, ln] = await Promise.all([startChain(), startOrigin(), startLightningStandin()]);
  facilitator = await startFacilitator(chain);
  [x402gw, l402gw] = await Promise.all([
    startGateway({
      originUrl: origin.url,
      policy: {
        bucket: { capacity: 1, refillPerSecond: 0.0001 },
        ceiling: { capacity: 1000, refillPerSecond: 1 },
        x402: { mode: "credits", amount: "10000", credits: 5 },
        facilitator: {
          url: facilitator.url,
          payTo: chain.accounts.payTo.address,
          assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
        },
      },
    }),
    startGateway({
      originUrl: origin.url,
      policy: {
        bucket: { capacity: 1, refillPerSecond: 0.0001 },
        plans: { pro: { bucket: { capacity: 1, refillPerSecond: 0.0001 } } },
        identity: { apiKeys: [{ sha256: createHash("sha256").update(PRO_KEY).digest("hex"), name: "pro customer", plan: "pro" }] },
        l402: { sats: 10, credits: 5 },
        lightning: { backend: "lnd", url: ln.url, invoicesPerSecond: INVOICES_PER_SECOND },
      },
      vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex },
    }),
  ]);
}, 120_000);

afterAll(async () => {
  await Promise.all([x402gw?.close(), l402gw?.close()]);
  await facilitator?.close();
  await Promise.all([chain?.close(), origin?.close(), ln?.close()]);
});

let rpcId = 0;
const toolCall = () =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });
const echoes = () => origin.counts()["tools/call:echo"] ?? 0;

async function call(gw: Gateway, headers: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }> {
  const res = await fetch(`${gw.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall() });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null,
  };
}

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session of `who`. */
async function openSession(gw: Gateway, who: Record<string, string>): Promise<Record<string, string>> {
  return { ...who, ...(await openRawSession(`${gw.url}/mcp`, who, "cheap-checks")) };
}

/** Spend the free unit of the session's caller; the 402 that follows. */
async function overBudget(gw: Gateway, session: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }> {
  for (;;) {
    const r = await call(gw, session);
    if (r.status !== 200) return r;
  }
}

/** `GET /.well-known/tollbooth/challenge?type=l402` as `who`: the invoice, or the 503's reason. */
async function l402Challenge(who: Record<string, string>): Promise<{ invoice?: string; error?: string }> {
  const res = await fetch(`${l402gw.url}/.well-known/tollbooth/challenge?type=l402`, { headers: who });
  const body = (await res.json()) as { invoice?: string; error?: string };
  expect([200, 503]).toContain(res.status);
  return res.status === 200 ? { invoice: body.invoice! } : { error: body.error! };
}

describe("x402: a forged signature never reaches the facilitator", () => {
  it("150 forged PAYMENT-SIGNATUREs from one network: 150 × 402 x402_invalid, 0 facilitator calls, nothing forwarded, nothing moved; a real payment then pays", async () => {
    const network = await openSession(x402gw, { "cf-connecting-ip": "203.0.113.77" });
    const first = await overBudget(x402gw, network);
    expect(first.status).toBe(402);
    const required: PaymentRequired = decodePaymentRequiredHeader(first.headers.get("payment-required")!);
    const victim = chain.accounts.payers[0]!;
    const sign = (payer: ChainAccount): Promise<PaymentPayload> => {
      const client = new x402Client();
      registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
      client.setSpendControls({ allowedAssets: [{ network: chain.network, asset: chain.usdc }] });
      return client.createPaymentPayload(required);
    };
    const before = {
      calls: facilitator.calls(),
      echoes: echoes(),
      victim: await chain.balanceOf(victim.address),
      payTo: await chain.balanceOf(chain.accounts.payTo.address),
    };
    const real = await sign(victim);
    const body = real.payload as { signature: string; authorization: Record<string, string> };
    const reasons: Record<string, number> = {};
    for (let i = 0; i < 150; i++) {
      // Odd: another (fresh) key's signature over the victim's terms; even: the victim's
      // signature, its nonce changed after signing (a replay dressed as a new payment).
      const thief = await sign({ privateKey: generatePrivateKey(), address: "0x" } as ChainAccount);
      const forged =
        i % 2 === 1
          ? { ...real, payload: { ...body, signature: (thief.payload as { signature: string }).signature } }
          : { ...real, payload: { ...body, authorization: { ...body.authorization, nonce: `0x${randomBytes(32).toString("hex")}` } } };
      const r = await call(x402gw, { ...network, "payment-signature": encodePaymentSignatureHeader(forged as PaymentPayload) });
      const key = `${r.status} ${r.body?.error?.data?.reason} ${r.body?.error?.data?.detail}`;
      reasons[key] = (reasons[key] ?? 0) + 1;
    }
    expect(reasons).toEqual({ "402 x402_invalid invalid_exact_evm_signature": 150 });
    expect(facilitator.calls()).toEqual(before.calls);
    expect(echoes()).toBe(before.echoes);
    expect(await chain.balanceOf(victim.address)).toBe(before.victim);
    // The real payment, from the same network: verified, settled, forwarded.
    const paid = await call(x402gw, { ...network, "payment-signature": encodePaymentSignatureHeader(real) });
    expect(paid.status).toBe(200);
    expect(facilitator.calls()).toEqual({ verify: before.calls.verify + 1, settle: before.calls.settle + 1 });
    expect((await chain.balanceOf(chain.accounts.payTo.address)) - before.payTo).toBe(10000n);
  });
});

describe("L402: an invoice flood from new networks", () => {
  it("the flood gets what the budget leaves above its reserve, then busy; the pro caller gets an invoice every time; every invoice issued was offered", async () => {
    const created = ln.created();
    const started = Date.now();
    const flood: string[] = [];
    const offeredToFlood = new Set<string>();
    const pro: string[] = [];
    const proInvoices = new Set<string>();
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 10; i++) {
        const got = await l402Challenge({ "cf-connecting-ip": `198.51.100.${round * 10 + i + 1}` });
        flood.push(got.invoice ? "invoice" : `${got.error}`);
        if (got.invoice) offeredToFlood.add(got.invoice);
      }
      const got = await l402Challenge({ "x-api-key": PRO_KEY, "cf-connecting-ip": "192.0.2.10" });
      pro.push(got.invoice ? "invoice" : `${got.error}`);
      if (got.invoice) proInvoices.add(got.invoice);
    }
    const elapsedS = (Date.now() - started) / 1000;
    expect(pro).toEqual(Array(10).fill("invoice"));
    // The flood took the burst above the reserve and what refilled meanwhile, and nothing else.
    const floodInvoices = flood.filter((f) => f === "invoice").length;
    expect(floodInvoices).toBeGreaterThanOrEqual(BURST - RESERVE);
    expect(floodInvoices).toBeLessThanOrEqual(BURST - RESERVE + Math.ceil(INVOICES_PER_SECOND * elapsedS));
    expect(new Set(flood.filter((f) => f !== "invoice"))).toEqual(new Set(["busy"]));
    // Each invoice the stand-in issued went to exactly one 402: one per flooding network that got one, one for pro (offered again on each retry).
    expect(proInvoices.size).toBe(1);
    expect(offeredToFlood.size).toBe(floodInvoices);
    expect(ln.created() - created).toBe(floodInvoices + 1);
  });
});
