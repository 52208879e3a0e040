/**
 * `npm run bench:x402`: the time of a full 402 → pay → settle → 200 through x402, in one run
 * on this machine. The gateway (`wrangler dev`, local workerd) fronts server-everything; a
 * local chain (anvil, 1 s blocks off: it mines each transaction at once) holds an EIP-3009
 * test token; a real facilitator (`@x402/core` + `@x402/evm`, test/helpers/facilitator.ts)
 * verifies and settles. Each round is a fresh caller whose free unit is spent, then, timed:
 *   1. `tools/call` → 402 with `PAYMENT-REQUIRED`;
 *   2. the payer signs (`@x402/evm` exact client, a viem account);
 *   3. the same `tools/call` with `PAYMENT-SIGNATURE` → the gateway verifies with the
 *      facilitator, records the authorization, settles on chain, forwards → 200.
 * Prints median, p90 and max of each step and of the whole over ROUNDS rounds (default 30,
 * after 3 warm-up rounds). Asserts nothing.
 */

import { randomBytes } from "node:crypto";
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { startEverything } from "../scripts/stack/everything.ts";
import { startGateway } from "../scripts/stack/gateway.ts";
import { startChain } from "../test/helpers/chain.ts";
import { startFacilitator } from "../test/helpers/facilitator.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const body = () => JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });

function summary(label: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return `| ${label} | ${q(0.5).toFixed(1)} ms | ${q(0.9).toFixed(1)} ms | ${s[s.length - 1]!.toFixed(1)} ms |`;
}

const origin = await startEverything();
const chain = await startChain();
const facilitator = await startFacilitator(chain);
const gw = await startGateway({
  originUrl: origin.url,
  policy: {
    bucket: { capacity: 1, refillPerSecond: 0.0001 },
    x402: { mode: "credits", amount: "10000", credits: 100 },
    facilitator: {
      url: facilitator.url,
      payTo: chain.accounts.payTo.address,
      assets: [{ network: chain.network, asset: chain.usdc, name: "USD Coin", version: "2" }],
    },
  },
  // Each round a new caller: `x-api-key` names it (all rounds come from 127.0.0.1).
  unverifiedKeys: true,
  networkLimit: null,
});
const payer = chain.accounts.payers[0]!;
const client = new x402Client();
registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
client.setSpendControls({ allowedAssets: [{ network: chain.network, asset: chain.usdc }] });
try {
  const challenge: number[] = [];
  const signing: number[] = [];
  const settled: number[] = [];
  const whole: number[] = [];
  const startBalance = await chain.balanceOf(payer.address);
  for (let round = 0; round < ROUNDS + 3; round++) {
    const caller = { ...HEADERS, "x-api-key": `bench-${randomBytes(6).toString("hex")}` };
    const init = await fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: caller,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "bench-x402", version: "0" } },
      }),
    });
    await init.arrayBuffer();
    const who = { ...caller, "mcp-session-id": init.headers.get("mcp-session-id") ?? "", "mcp-protocol-version": "2025-11-25" };
    const free = await fetch(`${gw.url}/mcp`, { method: "POST", headers: who, body: body() });
    await free.arrayBuffer();
    if (free.status !== 200) throw new Error(`expected the free call to pass, got ${free.status}`);
    const t0 = performance.now();
    const r402 = await fetch(`${gw.url}/mcp`, { method: "POST", headers: who, body: body() });
    await r402.arrayBuffer();
    const header = r402.headers.get("payment-required");
    if (r402.status !== 402 || !header) throw new Error(`expected a 402 with PAYMENT-REQUIRED, got ${r402.status}`);
    const t1 = performance.now();
    const payment = await client.createPaymentPayload(decodePaymentRequiredHeader(header));
    const t2 = performance.now();
    const ok = await fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: { ...who, "payment-signature": encodePaymentSignatureHeader(payment) },
      body: body(),
    });
    await ok.arrayBuffer();
    const t3 = performance.now();
    if (ok.status !== 200) throw new Error(`expected 200 after paying, got ${ok.status}`);
    if (round < 3) continue;
    challenge.push(t1 - t0);
    signing.push(t2 - t1);
    settled.push(t3 - t2);
    whole.push(t3 - t0);
  }
  const spent = startBalance - (await chain.balanceOf(payer.address));
  console.log(
    `x402 through tollbooth (wrangler dev, local workerd; anvil + real facilitator on 127.0.0.1), ${ROUNDS} rounds, Node ${process.version}\n`,
  );
  console.log("| step | median | p90 | max |");
  console.log("|---|---|---|---|");
  console.log(summary("402 with PAYMENT-REQUIRED", challenge));
  console.log(summary("sign the EIP-3009 authorization (payer)", signing));
  console.log(summary("retry with PAYMENT-SIGNATURE: verify → record → settle on chain → 200", settled));
  console.log(summary("**whole 402 → pay → settle → 200**", whole));
  console.log(`\nsettlements: ${facilitator.calls().settle}, paid on chain: ${spent} atomic units (${ROUNDS + 3} rounds × 10000)`);
} finally {
  await gw.close();
  await facilitator.close();
  await chain.close();
  await origin.close();
}
