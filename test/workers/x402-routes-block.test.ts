/**
 * x402 across routes (docs/durable-object.md "x402 spent marks"), inside workerd. The
 * facilitator here is a stand-in on `fetch` that behaves as the real one does for these cases (a nonce settles once; a second `/settle` of it fails, as the
 * chain reverts it); test/e2e/x402-routes.test.ts runs the case against anvil and the real
 * facilitator.
 * - One authorization sent to two routes at once reaches `/settle` exactly once; the others get
 *   402 `x402_spent` and the origin one call.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { ORIGIN_URL, advance, errorBody, freezeTime, freshIp, gateway, post, toolCall } from "./support.ts";

const FACILITATOR = "http://facilitator.test";
const NETWORK = "eip155:84532";
const ASSET = "0x036cbd53842c5426634e7929541ec2318f3dcf7e";
const PAY_TO = "0x2222222222222222222222222222222222222222";
const PRICE = "10000";
const CREDITS = 5;
const TOP = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  x402: { mode: "credits", amount: PRICE, credits: CREDITS },
  facilitator: { url: FACILITATOR, payTo: PAY_TO, assets: [{ network: NETWORK, asset: ASSET, name: "USDC", version: "2" }], timeoutMs: 5_000 },
};
const ROUTES = [
  { name: "a", match: { path: "/a" }, origin: `${ORIGIN_URL}/oa` },
  { name: "b", match: { path: "/b" }, origin: `${ORIGIN_URL}/ob` },
];
const routed = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES) });

/** What reached the stand-in facilitator and the origin. */
interface Peers {
  verify: number;
  settle: number;
  /** Settlements that succeeded (one per nonce). */
  settled: string[];
  /** Settlements refused because the nonce was already used (a reverted transaction on chain). */
  reverted: number;
  /** Paths of the requests that reached the origin. */
  origin: string[];
}

/**
 * Answer `fetch` for the facilitator (`/verify`: valid, the payer is the authorization's `from`,
 * unless its nonce was settled; `/settle`: once per nonce) and the origin (a JSON-RPC result).
 */
function stubPeers(): Peers {
  const peers: Peers = { verify: 0, settle: 0, settled: [], reverted: 0, origin: [] };
  const real = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    if (req.url.startsWith(FACILITATOR + "/")) {
      const { paymentPayload } = (await req.json()) as { paymentPayload: { payload: { authorization: { from: string; nonce: string } } } };
      const { from, nonce } = paymentPayload.payload.authorization;
      const json = (v: unknown) => new Response(JSON.stringify(v), { status: 200, headers: { "content-type": "application/json" } });
      if (url.pathname === "/verify") {
        peers.verify++;
        return json(peers.settled.includes(nonce) ? { isValid: false, invalidReason: "invalid_exact_evm_nonce_already_used", payer: from } : { isValid: true, payer: from });
      }
      peers.settle++;
      // Let a concurrent settlement of the same nonce overlap, as two transactions in one block would.
      await new Promise((r) => setTimeout(r, 20));
      if (peers.settled.includes(nonce)) {
        peers.reverted++;
        return json({ success: false, errorReason: "transaction_reverted", transaction: "0x" + "ee".repeat(32), network: NETWORK, payer: from });
      }
      peers.settled.push(nonce);
      return json({ success: true, transaction: "0x" + "ab".repeat(32), network: NETWORK, payer: from });
    }
    if (req.url.startsWith(ORIGIN_URL + "/")) {
      peers.origin.push(url.pathname);
      const id = ((await req.json().catch(() => ({}))) as { id?: unknown }).id ?? null;
      return new Response(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } }), { status: 200, headers: { "content-type": "application/json" } });
    }
    return real(input, init);
  });
  return peers;
}

const hex = (bytes: number) => "0x" + [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");

/** A v2 PaymentPayload (exact, EIP-3009) from `from` with a fresh nonce, as a client signs it for the offered requirement. */
function payment(from = hex(20)) {
  const now = Math.floor(Date.now() / 1000);
  return {
    x402Version: 2,
    accepted: { scheme: "exact", network: NETWORK, asset: ASSET, amount: PRICE, payTo: PAY_TO, maxTimeoutSeconds: 120, extra: { name: "USDC", version: "2" } },
    payload: { signature: "0x" + "11".repeat(65), authorization: { from, to: PAY_TO, value: PRICE, validAfter: String(now - 10), validBefore: String(now + 120), nonce: hex(32) } },
  };
}
const header = (p: unknown) => btoa(JSON.stringify(p));

let peers: Peers;
let ip: string;
beforeEach(() => {
  peers = stubPeers();
  ip = freshIp();
});

describe("x402 spent marks shared by every route", () => {
  it("one authorization sent to two routes at once (twice each) reaches /settle once: one 200, the others 402 x402_spent, one origin call", async () => {
    const p = payment();
    const sends = ["/a/mcp", "/b/mcp", "/a/mcp", "/b/mcp"].map((path, i) => routed(post(toolCall(i), { ip, path, headers: { "payment-signature": header(p) } })));
    const answers = await Promise.all(sends);
    const statuses = answers.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 402, 402, 402]);
    for (const r of answers.filter((r) => r.status === 402)) {
      const body = await errorBody(r);
      expect(body.error.data!.reason).toBe("x402_spent");
      // A fresh offer comes with the refusal, and no token or credits for what was not settled.
      expect(r.headers.get("payment-required")).not.toBeNull();
      expect(r.headers.get("tollbooth-token")).toBeNull();
    }
    expect(peers.settle).toBe(1);
    expect(peers.reverted).toBe(0);
    expect(peers.origin).toHaveLength(1);
  });

  it("a payment on one route and the same one at the other route's /verify at once: one settlement, one token or one call", async () => {
    const p = payment();
    const [onA, atB] = await Promise.all([
      routed(post(toolCall(1), { ip, path: "/a/mcp", headers: { "payment-signature": header(p) } })),
      routed(post({ type: "x402", payment: p }, { ip, path: "/b/.well-known/tollbooth/verify" })),
    ]);
    expect([onA.status, atB.status].sort()).toEqual([200, 402]);
    const refused = onA.status === 402 ? (await errorBody(onA)).error.data!.reason : ((await atB.json()) as { reason: string }).reason;
    expect(refused).toBe("x402_spent");
    expect(peers.settle).toBe(1);
    expect(peers.origin).toHaveLength(onA.status === 200 ? 1 : 0);
  });

  it("the claim is one object per spend id, no route prefix: true once, false after; the alarm drops it after the credential's expiry + 60 s", async () => {
    const t0 = freezeTime();
    const spendId = `x402:${NETWORK}:${ASSET}:${hex(20)}:${hex(32)}`;
    const stub = env.CALLER_BUCKET.get(env.CALLER_BUCKET.idFromName(`spent:${spendId}`));
    const claims = await Promise.all([1, 2, 3, 4, 5].map(() => stub.claim({ spendId, untilMs: t0 + 120_000 })));
    expect(claims.filter((c) => c.claimed)).toHaveLength(1);
    // The alarm keeps the mark until the credential's expiry plus the 60 s margin.
    advance(120_000 + 59_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stub.claim({ spendId, untilMs: t0 + 120_000 })).toEqual({ claimed: false });
    advance(2_000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const rows = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM spent").one().n);
    expect(rows).toBe(0);
  });

  it("the settled payment's claim lives in `spent:<spend id>` of the unscoped namespace", async () => {
    const p = payment();
    const res = await routed(post(toolCall(1), { ip, path: "/a/mcp", headers: { "payment-signature": header(p) } }));
    expect(res.status).toBe(200);
    const a = p.payload.authorization;
    const spendId = `x402:${NETWORK}:${ASSET}:${a.from}:${a.nonce}`;
    const stub = env.CALLER_BUCKET.get(env.CALLER_BUCKET.idFromName(`spent:${spendId}`));
    expect(await stub.claim({ spendId, untilMs: Date.now() + 60_000 })).toEqual({ claimed: false });
  });
});

