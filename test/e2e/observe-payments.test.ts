/**
 * The decision log and the metrics through the real gateway (`wrangler dev`, workerd) in
 * front of server-everything, with an agent (the MCP SDK client through `withTollbooth`)
 * paying L402 invoices of the Lightning stand-in: the payment is counted once with its
 * amount (`/admin/metrics`), the log lines in wrangler's output show it, and no line holds
 * the macaroon, the preimage or the API key the agent sent.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withTollbooth } from "../../packages/tollbooth-client/src/index.ts";
import { lndWallet } from "../../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type LightningStandin, startLightningStandin } from "../helpers/lightning-standin.ts";
import { connect, firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const ADMIN = randomBytes(24).toString("hex");
const PRICE = { sats: 10, credits: 5 };

let origin: Origin;
let ln: LightningStandin;
let gw: Gateway;

beforeAll(async () => {
  [origin, ln] = await Promise.all([startOrigin(), startLightningStandin()]);
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 1, refillPerSecond: 0.0001 },
      challenge: { difficulty: 8, credits: 4 },
      l402: PRICE,
      lightning: { backend: "lnd", url: ln.url, timeoutMs: 1_000 },
    },
    vars: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex, TOLLBOOTH_ADMIN_TOKEN: ADMIN, TOLLBOOTH_METRICS_FLUSH_MS: "100" },
  });
});

afterAll(async () => {
  await gw?.close();
  await Promise.all([origin?.close(), ln?.close()]);
});

/** The Prometheus samples of `GET /admin/metrics`: `name{labels}` → value. */
async function metrics(): Promise<Map<string, number>> {
  const res = await fetch(`${gw.url}/admin/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
  expect(res.status).toBe(200);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^(tollbooth_\S+) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** The decision records in wrangler's output so far. */
function decisions(): Array<Record<string, any>> {
  return gw
    .output()
    .split("\n")
    .filter((l) => l.includes('{"tollbooth":"decision",'))
    .map((l) => JSON.parse(l.slice(l.indexOf('{"tollbooth":"decision",'))));
}

describe("an agent paying L402, observed", () => {
  it("counts the payment and its sats once, logs it, and never logs the credential", async () => {
    const apiKey = `obs-l402-${randomBytes(8).toString("hex")}`;
    const sent: string[] = [];
    const recording = async (url: string | URL, init?: RequestInit) => {
      for (const [name, value] of new Headers(init?.headers).entries())
        if (name === "authorization" || name === "tollbooth-l402") sent.push(value);
      return fetch(url, init);
    };
    const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex });
    const c = await connect(`${gw.url}/mcp`, {
      apiKey,
      fetch: withTollbooth(recording, { pay: ["l402"], lightning: { wallet, maxSatsPerRequest: 10, maxSatsPerHour: 100 } }),
    });
    try {
      // One call on the free unit, then five on one paid bundle.
      for (let i = 1; i <= 6; i++)
        expect(firstText(await c.client.callTool({ name: "echo", arguments: { message: `m${i}` } }))).toBe(`Echo: m${i}`);
    } finally {
      await c.close(true);
    }
    expect(sent.length).toBeGreaterThan(0);

    // The isolate flushes within its interval after the last request; wait for it.
    let m = await metrics();
    for (let i = 0; i < 50 && (m.get('tollbooth_admitted_total{paid_by="l402"}') ?? 0) < 5; i++) {
      await new Promise((r) => setTimeout(r, 100));
      m = await metrics();
    }
    expect(m.get('tollbooth_payments_total{scheme="l402"}')).toBe(1);
    expect(m.get('tollbooth_paid_total{scheme="l402",unit="sats"}')).toBe(PRICE.sats);
    expect(m.get('tollbooth_redeemed_total{scheme="l402"}')).toBe(1);
    expect(m.get('tollbooth_admitted_total{paid_by="l402"}')).toBe(5);
    expect(m.get('tollbooth_payment_required_total{scheme="none",reason="over_budget"}')).toBe(1);

    const paidLines = decisions().filter((r) => r.paid);
    expect(paidLines).toHaveLength(1);
    expect(paidLines[0]).toMatchObject({
      decision: "admitted",
      reason: "l402",
      scheme: "l402",
      redeemed: true,
      paid: { scheme: "l402", amount: "10", unit: "sats" },
      credits: 4,
      status: 200,
      originStatus: 200,
    });
    const output = gw.output();
    for (const value of sent) {
      const [macaroon, preimage] = value.replace(/^L402 /, "").split(":");
      expect(output).not.toContain(macaroon!.slice(0, 40));
      expect(output).not.toContain(preimage!);
    }
    expect(output).not.toContain(apiKey);
  });
});
