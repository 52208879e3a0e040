/**
 * x402 across routes and blocks (docs/durable-object.md "x402 spent marks", docs/admin.md
 * "Blocking"), inside workerd. The facilitator here is a stand-in on `fetch` that behaves as the
 * real one does for these cases (a nonce settles once; a second `/settle` of it fails, as the
 * chain reverts it); test/e2e/x402-routes.test.ts and test/e2e/x402-block.test.ts run the same
 * cases against anvil and the real facilitator.
 * - One authorization sent to two routes at once reaches `/settle` exactly once; the others get
 *   402 `x402_spent` and the origin one call.
 * - A blocked caller paying with x402 (header, `_meta`, `/verify`) gets 403 before `/verify`;
 *   an access token bought by a payer does not walk around a block of the network using it; a
 *   blocked payer address is refused from every network.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { BLOCK_MEMO_MS } from "../../../workers/objects/stores.ts";
import { advance, errorBody, freezeTime, freshIp, GW, gateway, ORIGIN_URL, post, rpc, toolCall } from "../support.ts";

const FACILITATOR = "http://facilitator.test";
const NETWORK = "eip155:84532";
const ASSET = "0x036cbd53842c5426634e7929541ec2318f3dcf7e";
const PAY_TO = "0x2222222222222222222222222222222222222222";
const PRICE = "10000";
const CREDITS = 5;
const TOP = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  x402: { mode: "credits", amount: PRICE, credits: CREDITS },
  facilitator: {
    url: FACILITATOR,
    payTo: PAY_TO,
    assets: [{ network: NETWORK, asset: ASSET, name: "USDC", version: "2" }],
    timeoutMs: 5_000,
  },
};
const ROUTES = [
  { name: "a", match: { path: "/a" }, origin: `${ORIGIN_URL}/oa` },
  { name: "b", match: { path: "/b" }, origin: `${ORIGIN_URL}/ob` },
];
const TOKEN = "admin-token-0123456789abcdef-XYZ";
const routed = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES) });
const single = gateway(TOP, { TOLLBOOTH_ADMIN_TOKEN: TOKEN });

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
    if (req.url.startsWith(`${FACILITATOR}/`)) {
      const { paymentPayload } = (await req.json()) as { paymentPayload: { payload: { authorization: { from: string; nonce: string } } } };
      const { from, nonce } = paymentPayload.payload.authorization;
      const json = (v: unknown) => new Response(JSON.stringify(v), { status: 200, headers: { "content-type": "application/json" } });
      if (url.pathname === "/verify") {
        peers.verify++;
        return json(
          peers.settled.includes(nonce)
            ? { isValid: false, invalidReason: "invalid_exact_evm_nonce_already_used", payer: from }
            : { isValid: true, payer: from },
        );
      }
      peers.settle++;
      // Let a concurrent settlement of the same nonce overlap, as two transactions in one block would.
      await new Promise((r) => setTimeout(r, 20));
      if (peers.settled.includes(nonce)) {
        peers.reverted++;
        return json({
          success: false,
          errorReason: "transaction_reverted",
          transaction: `0x${"ee".repeat(32)}`,
          network: NETWORK,
          payer: from,
        });
      }
      peers.settled.push(nonce);
      return json({ success: true, transaction: `0x${"ab".repeat(32)}`, network: NETWORK, payer: from });
    }
    if (req.url.startsWith(`${ORIGIN_URL}/`)) {
      peers.origin.push(url.pathname);
      const id = ((await req.json().catch(() => ({}))) as { id?: unknown }).id ?? null;
      return new Response(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } }), {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    }
    return real(input, init);
  });
  return peers;
}

const hex = (bytes: number) =>
  `0x${[...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, "0")).join("")}`;

/**
 * A v2 PaymentPayload (exact, EIP-3009) from the key `key` (a fresh one by default) with a fresh
 * nonce, signed (EIP-712, a viem account) as a client signs it for the offered requirement;
 * `authorization.from` lowercase.
 */
async function payment(key: Hex = generatePrivateKey()) {
  const now = Math.floor(Date.now() / 1000);
  const account = privateKeyToAccount(key);
  const authorization = {
    from: account.address.toLowerCase(),
    to: PAY_TO,
    value: PRICE,
    validAfter: String(now - 10),
    validBefore: String(now + 120),
    nonce: hex(32),
  };
  const signature = await account.signTypedData({
    domain: { name: "USDC", version: "2", chainId: 84532, verifyingContract: ASSET as Hex },
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
      from: authorization.from as Hex,
      to: PAY_TO,
      value: BigInt(PRICE),
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce as Hex,
    },
  });
  return {
    x402Version: 2,
    accepted: {
      scheme: "exact",
      network: NETWORK,
      asset: ASSET,
      amount: PRICE,
      payTo: PAY_TO,
      maxTimeoutSeconds: 120,
      extra: { name: "USDC", version: "2" },
    },
    payload: { signature, authorization },
  };
}
const header = (p: unknown) => btoa(JSON.stringify(p));
const payerOf = (p: Awaited<ReturnType<typeof payment>>) => `evm:${p.payload.authorization.from}`;

/** An admin request with the token. */
function admin(method: string, path: string, body?: unknown): Request {
  const headers = new Headers({ authorization: `Bearer ${TOKEN}`, "cf-connecting-ip": "192.0.2.250" });
  if (body !== undefined) headers.set("content-type", "application/json");
  return new Request(`${GW}/admin${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
}
const block = async (id: string, seconds = 600) =>
  expect((await single(admin("POST", `/callers/${encodeURIComponent(id)}/block`, { seconds }))).status).toBe(200);
const verifyReq = (ip: string, p: unknown) => post({ type: "x402", payment: p }, { ip, path: "/.well-known/tollbooth/verify" });

let peers: Peers;
let ip: string;
beforeEach(() => {
  peers = stubPeers();
  ip = freshIp();
});

describe("x402 spent marks shared by every route", () => {
  it("one authorization sent to two routes at once (twice each) reaches /settle once: one 200, the others 402 x402_spent, one origin call", async () => {
    const p = await payment();
    const sends = ["/a/mcp", "/b/mcp", "/a/mcp", "/b/mcp"].map((path, i) =>
      routed(post(toolCall(i), { ip, path, headers: { "payment-signature": header(p) } })),
    );
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
    const p = await payment();
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
    // The whole state is deleted: not even the tables are left (they are made by the next write).
    const tables = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%'",
        )
        .toArray()
        .map((r) => r.name),
    );
    expect(tables).toEqual([]);
  });

  it("the settled payment's claim lives in `spent:<spend id>` of the unscoped namespace", async () => {
    const p = await payment();
    const res = await routed(post(toolCall(1), { ip, path: "/a/mcp", headers: { "payment-signature": header(p) } }));
    expect(res.status).toBe(200);
    const a = p.payload.authorization;
    const spendId = `x402:${NETWORK}:${ASSET}:${a.from}:${a.nonce}`;
    const stub = env.CALLER_BUCKET.get(env.CALLER_BUCKET.idFromName(`spent:${spendId}`));
    expect(await stub.claim({ spendId, untilMs: Date.now() + 60_000 })).toEqual({ claimed: false });
  });
});

describe("a block follows the payer", () => {
  it("a blocked network paying with PAYMENT-SIGNATURE gets 403 blocked: no /verify, no /settle, nothing forwarded", async () => {
    await block(`ip:${ip}`);
    const res = await single(post(toolCall(7), { ip, headers: { "payment-signature": header(await payment()) } }));
    expect(res.status).toBe(403);
    const body = await errorBody(res);
    expect(body.id).toBe(7);
    expect(body.error.data).toMatchObject({ reason: "blocked" });
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(500);
    expect(peers).toMatchObject({ verify: 0, settle: 0, origin: [] });
  });

  it('a blocked network paying in _meta["x402/payment"] or at /verify gets 403 blocked, no /verify', async () => {
    await block(`ip:${ip}`);
    const meta = await single(
      post(rpc("tools/call", { name: "echo", arguments: {}, _meta: { "x402/payment": await payment() } }, 8), { ip }),
    );
    expect(meta.status).toBe(403);
    expect((await errorBody(meta)).error.data!.reason).toBe("blocked");
    const v = await single(verifyReq(ip, await payment()));
    expect(v.status).toBe(403);
    expect(await v.json()).toMatchObject({ error: "blocked", reason: "blocked" });
    expect(peers).toMatchObject({ verify: 0, settle: 0, origin: [] });
  });

  it("an access token bought by a payer is refused (403) from a blocked network, and keeps its credits", async () => {
    const buyer = freshIp();
    const bought = await single(verifyReq(buyer, await payment()));
    expect(bought.status).toBe(200);
    const { token } = (await bought.json()) as { token: string };
    await block(`ip:${ip}`);
    const res = await single(post(toolCall(1), { ip, headers: { "tollbooth-token": token } }));
    expect(res.status).toBe(403);
    expect((await errorBody(res)).error.data!.reason).toBe("blocked");
    expect(peers.origin).toHaveLength(0);
    // What the refused request took from the token came back: the buyer's next call leaves 4.
    const used = await single(post(toolCall(2), { ip: buyer, headers: { "tollbooth-token": token } }));
    expect(used.status).toBe(200);
    expect(used.headers.get("tollbooth-credits")).toBe(String(CREDITS - 1));
    expect(peers.origin).toHaveLength(1);
  });

  it("a block placed after the network used a payer's token applies within BLOCK_MEMO_MS (the isolate's memo)", async () => {
    const t0 = freezeTime();
    const bought = await single(verifyReq(freshIp(), await payment()));
    const { token } = (await bought.json()) as { token: string };
    expect((await single(post(toolCall(1), { ip, headers: { "tollbooth-token": token } }))).status).toBe(200);
    await block(`ip:${ip}`);
    // Still inside the memo's window: documented (docs/admin.md), at most BLOCK_MEMO_MS.
    advance(BLOCK_MEMO_MS - 1);
    expect((await single(post(toolCall(2), { ip, headers: { "tollbooth-token": token } }))).status).toBe(200);
    advance(1);
    expect(Date.now()).toBe(t0 + BLOCK_MEMO_MS);
    expect((await single(post(toolCall(3), { ip, headers: { "tollbooth-token": token } }))).status).toBe(403);
    expect(peers.origin).toHaveLength(2);
  });

  it("a blocked payer address (evm:0x…) is refused from any network: its payments (no /settle) and its token", async () => {
    const key = generatePrivateKey();
    const p = await payment(key);
    const bought = await single(verifyReq(freshIp(), p));
    const { token } = (await bought.json()) as { token: string };
    await block(payerOf(p));
    const settles = peers.settle;
    for (const from of [freshIp(), freshIp()]) {
      const paid = await single(post(toolCall(1), { ip: from, headers: { "payment-signature": header(await payment(key)) } }));
      expect(paid.status).toBe(403);
      expect((await errorBody(paid)).error.data!.reason).toBe("blocked");
      const withToken = await single(post(toolCall(2), { ip: from, headers: { "tollbooth-token": token } }));
      expect(withToken.status).toBe(403);
    }
    const v = await single(verifyReq(freshIp(), await payment(key)));
    expect(v.status).toBe(403);
    expect(peers.settle).toBe(settles);
    expect(peers.origin).toHaveLength(0);
  });

  it("the ordinary path makes no blocked lookup: a caller with no credential is decided by its own object alone", async () => {
    const calls: string[] = [];
    const ns = env.CALLER_BUCKET;
    const original = ns.get.bind(ns);
    vi.spyOn(ns, "get").mockImplementation((id, o) => {
      const stub = original(id, o);
      return new Proxy(stub, {
        get: (t, k) => (typeof k === "string" && ["admit", "blocked", "claim"].includes(k) && calls.push(k), Reflect.get(t, k)),
      });
    });
    expect((await single(post(toolCall(1), { ip }))).status).toBe(200);
    expect(calls).toEqual(["admit"]);
  });
});
