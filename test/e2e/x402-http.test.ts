/**
 * x402 over HTTP through the real gateway (`wrangler dev`, workerd) in front of
 * server-everything, settled for real: a local EVM chain (anvil) with an EIP-3009 test token,
 * a real facilitator built from `@x402/core` + `@x402/evm` (test/helpers/facilitator.ts),
 * and clients nobody here wrote (`@x402/fetch`, `@x402/evm`'s exact client). Every refusal
 * asserts that the origin received nothing and that the chain moved nothing.
 * docs/wire-contract.md §12 is the contract.
 */

import { randomBytes } from "node:crypto";
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, decodePaymentResponseHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { PaymentPayload, PaymentRequired, PaymentRequirements } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { wrapFetchWithPayment } from "@x402/fetch";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTollbooth, type X402PayEvent } from "../../packages/tollbooth-client/src/index.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Chain, type ChainAccount, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { connect, firstText, MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const PRICE = { amount: "10000", credits: 5 };
const FACILITATOR_TOKEN = "facilitator-secret-token";

let chain: Chain;
let facilitator: Facilitator;
let origin: Origin;
let gw: Gateway;

beforeAll(async () => {
  [chain, origin] = await Promise.all([startChain(), startOrigin()]);
  facilitator = await startFacilitator(chain, { authToken: FACILITATOR_TOKEN });
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 1, refillPerSecond: 0.0001 },
      challenge: { difficulty: 8, credits: 4 },
      x402: { mode: "credits", ...PRICE },
      facilitator: {
        url: facilitator.url,
        payTo: chain.accounts.payTo.address,
        assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
        timeoutMs: 5_000,
      },
    },
    vars: { TOLLBOOTH_FACILITATOR_AUTH: `Bearer ${FACILITATOR_TOKEN}` },
  });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await facilitator?.close();
  await Promise.all([chain?.close(), origin?.close()]);
});

const caller = (label: string) => ({ "x-api-key": `${label}-${randomBytes(6).toString("hex")}` });
let rpcId = 0;
const toolCall = () =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });
const received = () => origin.requests().length;

/**
 * The origin's requests since `mark` that carry a tools/call (`count` of them), none with a
 * payment credential: no PAYMENT-SIGNATURE or X-PAYMENT header, no `_meta` payment, not the
 * payment's signature anywhere.
 */
function expectNoPaymentForwarded(mark: number, count: number, payments: PaymentPayload[] = []): void {
  const seen = origin
    .requests()
    .slice(mark)
    .filter((r) => r.messages.some((m) => (m as { method?: string })?.method === "tools/call"));
  expect(seen).toHaveLength(count);
  for (const r of seen) {
    expect(r.headers["payment-signature"]).toBeUndefined();
    expect(r.headers["x-payment"]).toBeUndefined();
    const body = Buffer.from(r.body).toString();
    expect(body).not.toContain("x402/payment");
    for (const p of payments) expect(JSON.stringify(r.headers) + body).not.toContain((p.payload as { signature: string }).signature);
  }
}

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session of `who`. */
async function openSession(who: Record<string, string>): Promise<Record<string, string>> {
  return { ...who, ...(await openRawSession(`${gw.url}/mcp`, who, "x402-test")) };
}

async function call(headers: Record<string, string>) {
  const res = await fetch(`${gw.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall() });
  const text = await res.text();
  const body = (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null;
  return { status: res.status, headers: res.headers, body };
}

/** Spend the free unit; return the 402 and its decoded PAYMENT-REQUIRED. */
async function overBudget(session: Record<string, string>): Promise<{ res: Awaited<ReturnType<typeof call>>; required: PaymentRequired }> {
  for (;;) {
    const res = await call(session);
    if (res.status === 402) return { res, required: decodePaymentRequiredHeader(res.headers.get("payment-required")!) };
    expect(res.status).toBe(200);
  }
}

/** An x402 client of `@x402/core` + `@x402/evm` paying as `payer`, allowed only the test token. */
function payingClient(payer: ChainAccount, anyAsset = false): x402Client {
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
  client.setSpendControls({ allowedAssets: anyAsset ? true : [{ network: chain.network, asset: chain.usdc }] });
  return client;
}

/** A payment for `requirement` signed by `payer`'s client (as `@x402/fetch` would send it). */
async function pay(payer: ChainAccount, required: PaymentRequired, requirement?: Partial<PaymentRequirements>): Promise<PaymentPayload> {
  const accepts = required.accepts.map((r) => ({ ...r, ...requirement }));
  // A changed requirement (another network or asset) needs a client that signs for any asset.
  return payingClient(payer, requirement !== undefined).createPaymentPayload({ ...required, accepts });
}

/** Balances of a payer and the payee. */
const balances = async (payer: ChainAccount) => ({
  payer: await chain.balanceOf(payer.address),
  payTo: await chain.balanceOf(chain.accounts.payTo.address),
});

describe("the x402 offer", () => {
  it("a 402 carries PAYMENT-REQUIRED (x402 v2, exact, the policy's network, asset, price and payee) and an x402 entry in error.data.challenges", async () => {
    const session = await openSession(caller("offer"));
    const { res, required } = await overBudget(session);
    expect(required.x402Version).toBe(2);
    expect(required.resource.url).toBe(`${gw.url}/mcp`);
    expect(required.accepts).toEqual([
      {
        scheme: "exact",
        network: chain.network,
        amount: PRICE.amount,
        asset: chain.usdc,
        payTo: chain.accounts.payTo.address,
        maxTimeoutSeconds: 120,
        extra: { name: "USD Coin", version: "2" },
      },
    ]);
    const entry = res.body.error.data.challenges.find((c: { type: string }) => c.type === "x402");
    expect(entry).toMatchObject({ type: "x402", x402Version: 2, mode: "credits", credits: PRICE.credits, accepts: required.accepts });
    // Proof of work is still offered first, in WWW-Authenticate.
    expect(res.headers.get("www-authenticate")).toMatch(/^PowChallenge /);
  });
});

describe("paying", () => {
  it("an SDK client through withTollbooth pays x402 credits and completes 50 tool calls; the chain shows one settlement per 5 credits", async () => {
    const payer = chain.accounts.payers[0]!;
    const before = await balances(payer);
    const settlesBefore = facilitator.calls().settle;
    const echoBefore = origin.counts()["tools/call:echo"] ?? 0;
    const mark = received();
    const paid: X402PayEvent[] = [];
    const c = await connect(`${gw.url}/mcp`, {
      apiKey: `sdk-x402-${randomBytes(4).toString("hex")}`,
      fetch: withTollbooth(undefined, {
        pay: ["x402"],
        x402: {
          signer: privateKeyToAccount(payer.privateKey),
          networks: [chain.network],
          assets: [chain.usdc],
          maxPerRequest: PRICE.amount,
          maxPerHour: "1000000",
          onPay: (e) => paid.push(e),
        },
      }),
    });
    try {
      for (let i = 1; i <= 50; i++)
        expect(firstText(await c.client.callTool({ name: "echo", arguments: { message: `call-${i}` } }))).toBe(`Echo: call-${i}`);
    } finally {
      await c.close(true);
    }
    // 1 free call, then 49 on bundles of 5: 10 payments.
    const payments = Math.ceil(49 / PRICE.credits);
    expect(paid).toHaveLength(payments);
    expect(facilitator.calls().settle - settlesBefore).toBe(payments);
    const after = await balances(payer);
    expect(before.payer - after.payer).toBe(BigInt(payments) * BigInt(PRICE.amount));
    expect(after.payTo - before.payTo).toBe(BigInt(payments) * BigInt(PRICE.amount));
    expect((origin.counts()["tools/call:echo"] ?? 0) - echoBefore).toBe(50);
    // Ten of them carried a PAYMENT-SIGNATURE to the gateway: none reached the origin.
    expectNoPaymentForwarded(mark, 50);
  });

  it("@x402/fetch, pointed at the gateway with no tollbooth code, gets through and gets PAYMENT-RESPONSE", async () => {
    const payer = chain.accounts.payers[1]!;
    const session = await openSession(caller("x402-fetch"));
    expect((await call(session)).status).toBe(200); // the free unit
    const before = await balances(payer);
    const mark = received();
    const payFetch = wrapFetchWithPayment(fetch, payingClient(payer));
    const res = await payFetch(`${gw.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...session }, body: toolCall() });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).toContain("Echo: hi");
    const receipt = decodePaymentResponseHeader(res.headers.get("payment-response")!);
    expect(receipt).toMatchObject({ success: true, network: chain.network });
    expect(receipt.payer?.toLowerCase()).toBe(payer.address.toLowerCase());
    expect(res.headers.get("tollbooth-credits")).toBe(String(PRICE.credits - 1));
    const after = await balances(payer);
    expect(before.payer - after.payer).toBe(BigInt(PRICE.amount));
    expect(after.payTo - before.payTo).toBe(BigInt(PRICE.amount));
    // The settlement is on chain: the transaction moved exactly the price from the payer to the payee.
    const tx = await chain.publicClient.getTransactionReceipt({ hash: receipt.transaction as `0x${string}` });
    expect(tx.status).toBe("success");
    // The paid retry reached the origin without its PAYMENT-SIGNATURE.
    expectNoPaymentForwarded(mark, 1);
  });

  it("v1's X-PAYMENT header (carrying a v2 payload) pays the same way, and the origin never gets it", async () => {
    const payer = chain.accounts.payers[2]!;
    const session = await openSession(caller("x-payment"));
    const { required } = await overBudget(session);
    const payment = await pay(payer, required);
    const before = await balances(payer);
    const mark = received();
    const r = await call({ ...session, "x-payment": encodePaymentSignatureHeader(payment) });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(decodePaymentResponseHeader(r.headers.get("payment-response")!)).toMatchObject({ success: true, network: chain.network });
    expect(before.payer - (await balances(payer)).payer).toBe(BigInt(PRICE.amount));
    expectNoPaymentForwarded(mark, 1, [payment]);
  });

  it("POST /verify {type: x402, payment} returns an access token of the bundle's credits", async () => {
    const payer = chain.accounts.payers[2]!;
    const session = await openSession(caller("verify"));
    const { required } = await overBudget(session);
    const payment = await pay(payer, required);
    const v = await fetch(`${gw.url}/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", ...session },
      body: JSON.stringify({ type: "x402", payment }),
    });
    expect(v.status).toBe(200);
    const { token, credits } = (await v.json()) as { token: string; credits: number };
    expect(credits).toBe(PRICE.credits);
    expect(decodePaymentResponseHeader(v.headers.get("payment-response")!).success).toBe(true);
    // The token belongs to the payer: it works from any session of any caller.
    const other = await openSession(caller("holder"));
    expect((await call({ ...other, "tollbooth-token": token })).status).toBe(200);
  });
});

describe("refused payments reach nothing and move nothing", () => {
  const payer = () => chain.accounts.payers[3]!;
  let session: Record<string, string>;
  let required: PaymentRequired;
  beforeAll(async () => {
    session = await openSession(caller("refusals"));
    ({ required } = await overBudget(session));
  });

  /** Send `payment` and expect a refusal with `reason`; nothing reaches the origin or moves on chain. */
  async function refused(payment: PaymentPayload | string, status: number, reason: string) {
    const before = await balances(payer());
    const seen = received();
    const header = typeof payment === "string" ? payment : encodePaymentSignatureHeader(payment);
    const r = await call({ ...session, "payment-signature": header });
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(r.body.error.data.reason).toBe(reason);
    expect(received()).toBe(seen);
    expect(await balances(payer())).toEqual(before);
    return r;
  }

  it("a replayed payment already settled on chain: x402_spent by the gateway's own record, the facilitator not asked again", async () => {
    const payment = await pay(payer(), required);
    const first = await call({ ...session, "payment-signature": encodePaymentSignatureHeader(payment) });
    expect(first.status).toBe(200);
    const calls = facilitator.calls();
    const r = await refused(payment, 402, "x402_spent");
    expect(r.headers.get("payment-required")).not.toBeNull();
    expect(facilitator.calls()).toEqual(calls);
  });

  // The price is 10000: "9999" and "9" are less, but not string prefixes of it (as text they sort after it).
  for (const amount of ["9999", "9", "1"]) {
    it(`an underpayment of ${amount}: x402_underpaid, never sent to the facilitator`, async () => {
      const calls = facilitator.calls();
      await refused(await pay(payer(), required, { amount }), 402, "x402_underpaid");
      expect(facilitator.calls()).toEqual(calls);
    });
  }

  it("another network, another asset, another payee", async () => {
    await refused(await pay(payer(), required, { network: "eip155:1" }), 402, "x402_not_offered");
    await refused(await pay(payer(), required, { asset: `0x${"11".repeat(20)}` }), 402, "x402_not_offered");
    await refused(await pay(payer(), required, { payTo: chain.accounts.payers[4]!.address }), 402, "x402_not_offered");
  });

  it("an expired authorization", async () => {
    const payment = await pay(payer(), required);
    const auth = (
      payment.payload as {
        authorization: {
          from: `0x${string}`;
          to: `0x${string}`;
          value: string;
          validAfter: string;
          validBefore: string;
          nonce: `0x${string}`;
        };
      }
    ).authorization;
    // Re-sign as the payer with validBefore in the past (the client signs now + maxTimeoutSeconds).
    const account = privateKeyToAccount(payer().privateKey);
    const past = { ...auth, validBefore: String(Math.floor(Date.now() / 1000) - 60) };
    const signature = await account.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: chain.chainId, verifyingContract: chain.usdc },
      types: {
        TransferWithAuthorization: [
          { name: "from", type: "address" },
          { name: "to", type: "address" },
          { name: "value", type: "uint256" },
          { name: "validAfter", type: "uint256" },
          { name: "validBefore", type: "uint256" },
          { name: "nonce", type: "bytes32" },
        ],
      },
      primaryType: "TransferWithAuthorization",
      message: {
        from: past.from,
        to: past.to,
        value: BigInt(past.value),
        validAfter: BigInt(past.validAfter),
        validBefore: BigInt(past.validBefore),
        nonce: past.nonce,
      },
    });
    // Signed correctly, so the refusal is the validBefore check (the gateway's own, in the facilitator's words): x402_expired.
    const calls = facilitator.calls();
    const r = await refused({ ...payment, payload: { ...payment.payload, authorization: past, signature } }, 402, "x402_expired");
    expect(r.body.error.data.detail).toBe("invalid_exact_evm_payload_authorization_valid_before");
    expect(facilitator.calls()).toEqual(calls);
  });

  it("a bad signature (another key signing for the payer): x402_invalid, never sent to the facilitator", async () => {
    const payment = await pay(payer(), required);
    const forged = await pay(chain.accounts.payers[5]!, required);
    const payload = { ...payment.payload, signature: (forged.payload as { signature: string }).signature };
    const calls = facilitator.calls();
    const r = await refused({ ...payment, payload }, 402, "x402_invalid");
    expect(r.body.error.data.detail).toBe("invalid_exact_evm_signature");
    expect(facilitator.calls()).toEqual(calls);
  });

  it("a malformed PAYMENT-SIGNATURE", async () => {
    await refused("not-base64-json", 402, "x402_malformed");
  });

  it("the facilitator down: 503, nothing settled, and the same payment works once it is back", async () => {
    const payment = await pay(payer(), required);
    facilitator.setDown(true);
    try {
      await refused(payment, 503, "x402_facilitator_unavailable");
    } finally {
      facilitator.setDown(false);
    }
    const before = await balances(payer());
    expect((await call({ ...session, "payment-signature": encodePaymentSignatureHeader(payment) })).status).toBe(200);
    expect(before.payer - (await balances(payer())).payer).toBe(BigInt(PRICE.amount));
  });
});

describe("a payment the origin ceiling refuses", () => {
  let tight: Gateway;
  beforeAll(async () => {
    tight = await startGateway({
      originUrl: origin.url,
      policy: {
        bucket: { capacity: 1, refillPerSecond: 0.0001 },
        // 10 messages (docs/allocation.md): free traffic may take 4; paid its guarantee (1) and the pool (7, less what free took).
        originCeiling: { capacity: 10, refillPerSecond: 0.001 },
        x402: { mode: "credits", ...PRICE },
        facilitator: {
          url: facilitator.url,
          payTo: chain.accounts.payTo.address,
          assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
        },
      },
      vars: { TOLLBOOTH_FACILITATOR_AUTH: `Bearer ${FACILITATOR_TOKEN}` },
    });
  }, 60_000);
  afterAll(async () => {
    await tight?.close();
  });

  it("is refused before it is redeemed or settled (429 from the origin layer: even paid traffic is over the ceiling), and buys its credits later, with a request that fits", async () => {
    const payer = chain.accounts.payers[6]!;
    const send = async (headers: Record<string, string>, body = toolCall()) => {
      const res = await fetch(`${tight.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body });
      const text = await res.text();
      return {
        status: res.status,
        headers: res.headers,
        body: (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null,
      };
    };
    const who = caller("tight");
    const init = await fetch(`${tight.url}/mcp`, {
      method: "POST",
      headers: { ...MCP_HEADERS, ...who },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: ++rpcId,
        method: "initialize",
        params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x402-tight", version: "0" } },
      }),
    });
    await init.text();
    const session = { ...who, "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
    // The initialize took one unit of the origin ceiling, the free call a second: paid has 1 + 5 left.
    const free = await send(session);
    expect(free.status, JSON.stringify(free.body)).toBe(200);
    const over = await send(session);
    expect(over.status).toBe(402);
    const payment = await pay(payer, decodePaymentRequiredHeader(over.headers.get("payment-required")!));
    const before = await balances(payer);
    const seen = received();
    const settles = facilitator.calls().settle;
    const verifies = facilitator.calls().verify;
    // A batch of 7 messages: more than the origin ceiling has left even for paid traffic.
    const batch = `[${Array.from({ length: 7 }, () => toolCall()).join(",")}]`;
    const r = await send({ ...session, "payment-signature": encodePaymentSignatureHeader(payment) }, batch);
    expect(r.status).toBe(429);
    expect(r.body[0].error.data).toMatchObject({ reason: "origin", layer: "origin" });
    expect(r.headers.get("retry-after")).not.toBeNull();
    expect(r.headers.get("tollbooth-token")).toBeNull();
    expect(r.headers.get("payment-response")).toBeNull();
    expect(facilitator.calls().settle).toBe(settles);
    expect(received()).toBe(seen);
    expect(await balances(payer)).toEqual(before);

    // The origin ceiling refused it before the facilitator was asked at all.
    expect(facilitator.calls().verify).toBe(verifies);

    // Nothing was redeemed (no spent mark: the origin ceiling is decided first): the same
    // payment, with a request that fits, is settled once and buys its credits.
    const fits = await send({ ...session, "payment-signature": encodePaymentSignatureHeader(payment) });
    expect(fits.status, JSON.stringify(fits.body)).toBe(200);
    expect(fits.headers.get("tollbooth-credits")).toBe(String(PRICE.credits - 1));
    expect(facilitator.calls().settle).toBe(settles + 1);
    expect(received()).toBe(seen + 1);
    expect(before.payer - (await balances(payer)).payer).toBe(BigInt(PRICE.amount));
  });
});
