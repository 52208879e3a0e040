/**
 * One x402 authorization, two routes (TOLLBOOTH_ROUTES), settled for real: anvil with the
 * EIP-3009 test token, the real facilitator (test/helpers/facilitator.ts), `@x402/evm`'s exact
 * client signing. Each route keeps its callers' state in objects of its own; the spent mark
 * that decides who settles is one object per spend id that every route shares
 * (docs/durable-object.md "x402 spent marks"). Sent to both routes at once, the payment
 * reaches `/settle` exactly once: one transaction on chain and none reverted, the other
 * request answered 402 `x402_spent`, the origin called once.
 */

import { randomBytes } from "node:crypto";
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, decodePaymentResponseHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { PaymentRequired } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Chain, type ChainAccount, startChain } from "../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../helpers/facilitator.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const PRICE = { amount: "10000", credits: 5 };

let chain: Chain;
let facilitator: Facilitator;
let origin: Origin;
let gw: Gateway;

beforeAll(async () => {
  [chain, origin] = await Promise.all([startChain(), startOrigin()]);
  facilitator = await startFacilitator(chain);
  // Two routes to the same origin (the origin's count is the sum of both); the price, payee and
  // facilitator are the top-level policy's, so one signed payment is valid on either route.
  const routes = [
    { name: "a", match: { path: "/a" }, origin: origin.url },
    { name: "b", match: { path: "/b" }, origin: origin.url },
  ];
  gw = await startGateway({
    originUrl: "http://127.0.0.1:9",
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
    },
    vars: { TOLLBOOTH_ROUTES: JSON.stringify(routes) },
  });
}, 120_000);

afterAll(async () => {
  await gw?.close();
  await facilitator?.close();
  await Promise.all([chain?.close(), origin?.close()]);
});

let rpcId = 0;
const toolCall = () =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });

/** An MCP session of `who` on the route at `prefix`. */
async function openSession(prefix: string, who: Record<string, string>): Promise<Record<string, string>> {
  const init = await fetch(`${gw.url}${prefix}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...who },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: ++rpcId,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "x402-routes", version: "0" } },
    }),
  });
  await init.text();
  expect(init.status).toBe(200);
  const session = { ...who, "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
  const note = await fetch(`${gw.url}${prefix}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...session },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await note.text();
  return session;
}

async function call(prefix: string, headers: Record<string, string>) {
  const res = await fetch(`${gw.url}${prefix}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall() });
  const text = await res.text();
  const body = (res.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : null;
  return { status: res.status, headers: res.headers, body, text };
}

/** Route a's x402 offer (`/challenge?type=x402`), as a client reads it from PAYMENT-REQUIRED. */
async function offer(who: Record<string, string>): Promise<PaymentRequired> {
  const res = await fetch(`${gw.url}/a/.well-known/tollbooth/challenge?type=x402`, { headers: who });
  expect(res.status).toBe(200);
  return decodePaymentRequiredHeader(res.headers.get("payment-required")!);
}

/** A payment signed by `payer` with `@x402/evm`'s exact client, for the test token only. */
function pay(payer: ChainAccount, required: PaymentRequired) {
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
  client.setSpendControls({ allowedAssets: [{ network: chain.network, asset: chain.usdc }] });
  return client.createPaymentPayload(required);
}

/** Receipts of every transaction the facilitator's account sent in blocks `from`…latest. */
async function facilitatorReceipts(from: bigint) {
  const latest = await chain.publicClient.getBlockNumber();
  const receipts = [];
  for (let n = from; n <= latest; n++) {
    const block = await chain.publicClient.getBlock({ blockNumber: n, includeTransactions: true });
    for (const tx of block.transactions) {
      if (tx.from.toLowerCase() === facilitator.signer.toLowerCase())
        receipts.push(await chain.publicClient.getTransactionReceipt({ hash: tx.hash }));
    }
  }
  return receipts;
}

describe("one authorization, two routes", () => {
  it("sent to both at once: one /settle, one transaction on chain and none reverted, the other 402 x402_spent, the origin called once", async () => {
    const payer = chain.accounts.payers[0]!;
    const who = { "x-api-key": `routes-${randomBytes(6).toString("hex")}` };
    const [onA, onB] = await Promise.all([openSession("/a", who), openSession("/b", who)]);
    const payment = await pay(payer, await offer(who));
    const header = encodePaymentSignatureHeader(payment);

    const settles = facilitator.calls().settle;
    const echoes = origin.counts()["tools/call:echo"] ?? 0;
    const balance = await chain.balanceOf(payer.address);
    const fromBlock = (await chain.publicClient.getBlockNumber()) + 1n;
    const nonceBefore = await chain.publicClient.getTransactionCount({ address: facilitator.signer });
    // Every facilitator answer waits 300 ms: both requests are redeemed (each route's own
    // object) and race for the gateway-wide claim while the winner's /verify and /settle run.
    facilitator.setDelayMs(300);
    let answers;
    try {
      answers = await Promise.all([
        call("/a", { ...onA, "payment-signature": header }),
        call("/b", { ...onB, "payment-signature": header }),
      ]);
    } finally {
      facilitator.setDelayMs(0);
    }

    const ok = answers.filter((r) => r.status === 200);
    const refused = answers.filter((r) => r.status !== 200);
    expect(ok, answers.map((r) => `${r.status} ${r.text.slice(0, 300)}`).join("\n")).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.status).toBe(402);
    expect(refused[0]!.body.error.data.reason).toBe("x402_spent");
    expect(refused[0]!.headers.get("payment-required")).not.toBeNull();
    expect(refused[0]!.headers.get("tollbooth-token")).toBeNull();
    expect(refused[0]!.headers.get("payment-response")).toBeNull();

    // Exactly one /settle reached the facilitator, and the chain saw one transaction, not reverted.
    expect(facilitator.calls().settle - settles).toBe(1);
    expect(await chain.publicClient.getTransactionCount({ address: facilitator.signer })).toBe(nonceBefore + 1);
    const receipts = await facilitatorReceipts(fromBlock);
    expect(receipts.map((r) => r.status)).toEqual(["success"]);
    const receipt = decodePaymentResponseHeader(ok[0]!.headers.get("payment-response")!);
    expect(receipt.transaction.toLowerCase()).toBe(receipts[0]!.transactionHash.toLowerCase());
    expect(balance - (await chain.balanceOf(payer.address))).toBe(BigInt(PRICE.amount));
    expect((origin.counts()["tools/call:echo"] ?? 0) - echoes).toBe(1);
  });
});
