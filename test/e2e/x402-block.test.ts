/**
 * An operator's block follows the payer (docs/admin.md "Blocking"), through the real gateway
 * (`wrangler dev`) with the admin API, anvil and the real x402 facilitator
 * (test/helpers/facilitator.ts), and `@x402/evm`'s exact client signing:
 * - a network blocked through the admin API stays blocked when it pays with x402 (header,
 *   `_meta`, `/verify`): 403 `blocked`, no `/verify` and no `/settle` at the facilitator,
 *   nothing on chain, nothing at the origin;
 * - an access token bought by a payer does not let a blocked network through;
 * - a payer address (`evm:0x…`) can be blocked: its payments and its tokens are refused from
 *   any network, and nothing settles;
 * - the credentials that keep the caller (an L402 payment from the Lightning stand-in, a
 *   proof-of-work solution) are refused too, and not redeemed.
 */
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { PaymentPayload, PaymentRequired } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Chain, type ChainAccount, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const PRICE = { amount: "10000", credits: 5 };
const ADMIN = "admin-token-x402-block-0123456789";

let chain: Chain;
let facilitator: Facilitator;
let origin: Origin;
let ln: LightningStandin;
let gw: Gateway;

beforeAll(async () => {
  [chain, origin, ln] = await Promise.all([startChain(), startOrigin(), startLightningStandin()]);
  facilitator = await startFacilitator(chain);
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 5, refillPerSecond: 0.0001 },
      challenge: { difficulty: 8 },
      x402: { mode: "credits", ...PRICE },
      facilitator: {
        url: facilitator.url,
        payTo: chain.accounts.payTo.address,
        assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
        timeoutMs: 10_000,
      },
      l402: { sats: 10, credits: 5 },
      lightning: { backend: "lnd", url: ln.url, timeoutMs: 2_000 },
    },
    vars: { TOLLBOOTH_ADMIN_TOKEN: ADMIN, TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex },
  });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await facilitator?.close();
  await Promise.all([chain?.close(), origin?.close(), ln?.close()]);
});

let rpcId = 0;
let netSeq = 0;
/** A network never used before in this file (TEST-NET-3, one address each): the caller `ip:<it>`. */
const network = () => `203.0.113.${++netSeq}`;
const from = (ip: string) => ({ "cf-connecting-ip": ip });
const toolCall = (meta?: unknown) =>
  JSON.stringify({
    jsonrpc: "2.0",
    id: ++rpcId,
    method: "tools/call",
    params: { name: "echo", arguments: { message: "hi" }, ...(meta ? { _meta: meta } : {}) },
  });

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session of `who`. */
async function openSession(who: Record<string, string>): Promise<Record<string, string>> {
  return { ...who, ...(await openRawSession(`${gw.url}/mcp`, who, "x402-block")) };
}

async function call(headers: Record<string, string>, meta?: unknown) {
  const res = await fetch(`${gw.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall(meta) });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null,
    text,
  };
}

/** `POST /.well-known/tollbooth/verify` with an x402 payment. */
async function verify(who: Record<string, string>, payment: PaymentPayload) {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/verify`, {
    method: "POST",
    headers: { "content-type": "application/json", ...who },
    body: JSON.stringify({ type: "x402", payment }),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
}

/** Block `id` for 10 minutes through the admin API. */
async function block(id: string): Promise<void> {
  const res = await fetch(`${gw.url}/admin/callers/${encodeURIComponent(id)}/block`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ seconds: 600 }),
  });
  expect(res.status, await res.clone().text()).toBe(200);
  expect(await res.json()).toMatchObject({ caller: id });
}

let required: PaymentRequired;
beforeAll(async () => {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/challenge?type=x402`, { headers: from(network()) });
  expect(res.status).toBe(200);
  required = decodePaymentRequiredHeader(res.headers.get("payment-required")!);
});

/** A fresh payment signed by `payer` (`@x402/evm`'s exact client, the test token only). */
function pay(payer: ChainAccount): Promise<PaymentPayload> {
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
  client.setSpendControls({ allowedAssets: [{ network: chain.network, asset: chain.usdc }] });
  return client.createPaymentPayload(required);
}

/** What must not move: the facilitator's calls, the payer's balance, the origin's tool calls. */
async function snapshot(payer: ChainAccount) {
  return { calls: facilitator.calls(), balance: await chain.balanceOf(payer.address), echoes: origin.counts()["tools/call:echo"] ?? 0 };
}

describe("a blocked network paying with x402", () => {
  it('PAYMENT-SIGNATURE, _meta["x402/payment"] and /verify: 403 blocked, no /verify or /settle, nothing on chain or at the origin', async () => {
    const payer = chain.accounts.payers[0]!;
    const ip = network();
    const session = await openSession(from(ip));
    await block(`ip:${ip}`);
    const before = await snapshot(payer);

    const byHeader = await call({ ...session, "payment-signature": encodePaymentSignatureHeader(await pay(payer)) });
    expect(byHeader.status, byHeader.text).toBe(403);
    expect(byHeader.body.error.data).toMatchObject({ reason: "blocked" });
    expect(Number(byHeader.headers.get("retry-after"))).toBeGreaterThan(500);
    expect(byHeader.headers.get("payment-response")).toBeNull();

    const inMeta = await call(session, { "x402/payment": await pay(payer) });
    expect(inMeta.status, inMeta.text).toBe(403);
    expect(inMeta.body.error.data.reason).toBe("blocked");

    const atVerify = await verify(from(ip), await pay(payer));
    expect(atVerify.status).toBe(403);
    expect(atVerify.body).toMatchObject({ error: "blocked" });

    expect(await snapshot(payer)).toEqual(before);
  });

  it("the same payment from a network that is not blocked goes through (the control)", async () => {
    const payer = chain.accounts.payers[1]!;
    const session = await openSession(from(network()));
    const before = await snapshot(payer);
    const paid = await call({ ...session, "payment-signature": encodePaymentSignatureHeader(await pay(payer)) });
    expect(paid.status, paid.text).toBe(200);
    const after = await snapshot(payer);
    expect(after.calls.settle - before.calls.settle).toBe(1);
    expect(before.balance - after.balance).toBe(BigInt(PRICE.amount));
    expect(after.echoes - before.echoes).toBe(1);
  });
});

describe("an access token bought by a payer", () => {
  it("is refused (403) from a blocked network, and still serves its buyer", async () => {
    const payer = chain.accounts.payers[2]!;
    const buyer = network();
    const bought = await verify(from(buyer), await pay(payer));
    expect(bought.status).toBe(200);
    const token = bought.body.token as string;

    const blocked = network();
    const session = await openSession(from(blocked));
    await block(`ip:${blocked}`);
    const echoes = origin.counts()["tools/call:echo"] ?? 0;
    const refused = await call({ ...session, "tollbooth-token": token });
    expect(refused.status, refused.text).toBe(403);
    expect(refused.body.error.data.reason).toBe("blocked");
    expect(origin.counts()["tools/call:echo"] ?? 0).toBe(echoes);

    // The buyer's own network: the token pays, with every credit the refused request did not take.
    const own = await call({ ...(await openSession(from(buyer))), "tollbooth-token": token });
    expect(own.status, own.text).toBe(200);
    expect(own.headers.get("tollbooth-credits")).toBe(String(PRICE.credits - 1));
    expect((origin.counts()["tools/call:echo"] ?? 0) - echoes).toBe(1);
  });
});

describe("a blocked payer address", () => {
  it("evm:0x… blocked through the admin API: its payments and its token are refused from any network; nothing settles", async () => {
    const payer = chain.accounts.payers[3]!;
    const bought = await verify(from(network()), await pay(payer));
    expect(bought.status).toBe(200);
    const token = bought.body.token as string;
    await block(`evm:${payer.address.toLowerCase()}`);
    const before = await snapshot(payer);
    for (const ip of [network(), network()]) {
      const session = await openSession(from(ip));
      const paid = await call({ ...session, "payment-signature": encodePaymentSignatureHeader(await pay(payer)) });
      expect(paid.status, paid.text).toBe(403);
      expect(paid.body.error.data.reason).toBe("blocked");
      const withToken = await call({ ...session, "tollbooth-token": token });
      expect(withToken.status, withToken.text).toBe(403);
      expect(withToken.body.error.data.reason).toBe("blocked");
      const atVerify = await verify(from(ip), await pay(payer));
      expect(atVerify.status).toBe(403);
    }
    const after = await snapshot(payer);
    expect(after.calls.settle).toBe(before.calls.settle);
    expect(after.balance).toBe(before.balance);
    expect(after.echoes).toBe(before.echoes);
  });
});

describe("credentials that keep the caller", () => {
  it("an L402 payment and a proof-of-work solution from a blocked network: 403, neither redeemed (both pay once unblocked)", async () => {
    const ip = network();
    const session = await openSession(from(ip));
    // An L402 offer, paid by the payer's node (the stand-in), and a solved challenge, both bound to this network.
    const l402 = await fetch(`${gw.url}/.well-known/tollbooth/challenge?type=l402`, { headers: from(ip) });
    expect(l402.status).toBe(200);
    const offer = (await l402.json()) as { macaroon: string; invoice: string };
    const paid = await fetch(`${ln.url}/v1/channels/transactions`, {
      method: "POST",
      headers: { "grpc-metadata-macaroon": ln.macaroonHex, "content-type": "application/json" },
      body: JSON.stringify({ payment_request: offer.invoice }),
    });
    const preimage = Buffer.from(((await paid.json()) as { payment_preimage: string }).payment_preimage, "base64").toString("hex");
    const pow = await fetch(`${gw.url}/.well-known/tollbooth/challenge`, { headers: from(ip) });
    const params = pow.headers.get("www-authenticate")!.slice("PowChallenge ".length);
    const { salt, difficulty } = (await pow.json()) as { salt: string; difficulty: number };
    const solution = `${params}, nonce="${(await solvePow(salt, difficulty)).nonce}"`;

    const credentials: Array<Record<string, string>> = [
      { "tollbooth-l402": `${offer.macaroon}:${preimage}` },
      { "tollbooth-solution": solution },
    ];

    await block(`ip:${ip}`);
    const echoes = origin.counts()["tools/call:echo"] ?? 0;
    for (const credential of credentials) {
      const r = await call({ ...session, ...credential });
      expect(r.status, r.text).toBe(403);
      expect(r.body.error.data.reason).toBe("blocked");
    }
    expect(origin.counts()["tools/call:echo"] ?? 0).toBe(echoes);

    const lifted = await fetch(`${gw.url}/admin/callers/${encodeURIComponent(`ip:${ip}`)}/unblock`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(await lifted.json()).toMatchObject({ unblocked: true });
    for (const credential of credentials) {
      const r = await call({ ...session, ...credential });
      expect(r.status, r.text).toBe(200);
    }
    expect((origin.counts()["tools/call:echo"] ?? 0) - echoes).toBe(2);
  });
});
