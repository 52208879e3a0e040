/**
 * `npm run bench:l402`: the time of a full 402 → pay → 200 through L402, in one run on this
 * machine. The gateway (`wrangler dev`, local workerd) fronts server-everything and takes
 * invoices from the Lightning stand-in (test/helpers/lightning-standin.ts: LND REST with real
 * signed regtest BOLT11 invoices), which also plays the payer's node. Each round is a fresh
 * caller whose free unit is spent, then, timed:
 *   1. `tools/call` → 402 with a PowChallenge and an L402 challenge (the gateway asks the
 *      backend for an invoice and mints the macaroon);
 *   2. the payer's node pays the invoice (`lndWallet`, packages/tollbooth-client/src/payers/lightning-wallet.ts) → preimage;
 *   3. the same `tools/call` with `Authorization: L402 <macaroon>:<preimage>` → 200.
 * Prints median, p90 and max of each step and of the whole, over ROUNDS rounds (default 40,
 * after 5 warm-up rounds), and a `withTollbooth` agent doing the same through the SDK.
 * Asserts nothing.
 */

import { randomBytes } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type PayEvent, withTollbooth } from "../packages/tollbooth-client/src/index.ts";
import { lndWallet } from "../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { startEverything } from "../scripts/stack/everything.ts";
import { startGateway } from "../scripts/stack/gateway.ts";
import { startLightningStandin } from "../test/helpers/lightning-standin.ts";

const ROUNDS = Number(process.env.ROUNDS ?? 40);
const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const body = () => JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });

function summary(label: string, ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return `| ${label} | ${q(0.5).toFixed(1)} ms | ${q(0.9).toFixed(1)} ms | ${s[s.length - 1]!.toFixed(1)} ms |`;
}

const origin = await startEverything();
const ln = await startLightningStandin();
const gw = await startGateway({
  originUrl: origin.url,
  policy: {
    bucket: { capacity: 1, refillPerSecond: 0.0001 },
    l402: { sats: 3, credits: 100 },
    lightning: { backend: "lnd", url: ln.url, invoicesPerSecond: 1000 },
  },
  vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex },
  // Each round a new caller: `x-api-key` names it, on a network of its own (`CF-Connecting-IP`:
  // one network's unverified callers get 2 fresh invoices a minute, docs/costs.md).
  unverifiedKeys: true,
  networkLimit: null,
});
const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex });
try {
  const challenge: number[] = [];
  const payment: number[] = [];
  const paid: number[] = [];
  const whole: number[] = [];
  for (let round = 0; round < ROUNDS + 5; round++) {
    const caller = {
      ...HEADERS,
      "x-api-key": `bench-${randomBytes(6).toString("hex")}`,
      "cf-connecting-ip": `198.18.${Math.floor(round / 250)}.${round % 250}`,
    };
    // A session (initialize costs 0), then the free unit, then over budget.
    const init = await fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: caller,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "bench-l402", version: "0" } },
      }),
    });
    await init.arrayBuffer();
    const who = { ...caller, "mcp-session-id": init.headers.get("mcp-session-id") ?? "", "mcp-protocol-version": "2025-11-25" };
    const free = await fetch(`${gw.url}/mcp`, { method: "POST", headers: who, body: body() });
    await free.arrayBuffer();
    if (free.status !== 200) throw new Error(`expected the free call to pass, got ${free.status}`);
    const t0 = performance.now();
    const r402 = await fetch(`${gw.url}/mcp`, { method: "POST", headers: who, body: body() });
    const data = (await r402.json()) as { error: { data: { challenges: Array<{ type: string; macaroon: string; invoice: string }> } } };
    const t1 = performance.now();
    const offer = data.error.data.challenges.find((c) => c.type === "l402");
    if (r402.status !== 402 || !offer) throw new Error(`expected a 402 with an L402 challenge, got ${r402.status}`);
    const { preimage } = await wallet.payInvoice(offer.invoice);
    const t2 = performance.now();
    const ok = await fetch(`${gw.url}/mcp`, {
      method: "POST",
      headers: { ...who, authorization: `L402 ${offer.macaroon}:${preimage}` },
      body: body(),
    });
    await ok.arrayBuffer();
    const t3 = performance.now();
    if (ok.status !== 200) throw new Error(`expected 200 after paying, got ${ok.status}`);
    if (round < 5) continue;
    challenge.push(t1 - t0);
    payment.push(t2 - t1);
    paid.push(t3 - t2);
    whole.push(t3 - t0);
  }

  // The same through the SDK and withTollbooth (pays when the free unit is spent).
  const sdk: number[] = [];
  for (let round = 0; round < Math.min(ROUNDS, 20); round++) {
    const events: PayEvent[] = [];
    const transport = new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), {
      requestInit: { headers: { "x-api-key": `bench-sdk-${randomBytes(6).toString("hex")}`, "cf-connecting-ip": `198.18.254.${round}` } },
      fetch: withTollbooth(undefined, {
        pay: ["l402"],
        lightning: { wallet, maxSatsPerRequest: 3, maxSatsPerHour: 1_000_000 },
        onPay: (e) => events.push(e),
      }),
    });
    const client = new Client({ name: "bench-l402", version: "1.0.0" });
    await client.connect(transport);
    await client.callTool({ name: "echo", arguments: { message: "free" } });
    const t0 = performance.now();
    await client.callTool({ name: "echo", arguments: { message: "paid" } });
    sdk.push(performance.now() - t0);
    if (events.length !== 1) throw new Error(`expected one payment, got ${events.length}`);
    await client.close();
  }

  console.log(
    `L402 through tollbooth (wrangler dev, local workerd; Lightning stand-in on 127.0.0.1), ${ROUNDS} rounds, Node ${process.version}\n`,
  );
  console.log("| step | median | p90 | max |");
  console.log("|---|---|---|---|");
  console.log(summary("402 with both challenges (invoice + macaroon)", challenge));
  console.log(summary("pay the invoice (payer's node → preimage)", payment));
  console.log(summary("retry with Authorization: L402 → 200", paid));
  console.log(summary("**whole 402 → pay → 200**", whole));
  console.log(summary(`SDK callTool through withTollbooth (402 → pay → 200), ${sdk.length} rounds`, sdk));
  console.log(`\ninvoices made: ${ln.created()}, paid: ${ln.paidSats()} sats`);
} finally {
  await gw.close();
  await ln.close();
  await origin.close();
}
