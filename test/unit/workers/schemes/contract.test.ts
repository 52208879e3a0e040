/**
 * The paid schemes as the gate uses them (workers/schemes/contract.ts): `offer`, `read`,
 * `readJson`, `verify`, `settle`, `strip`, `refusalStatus` of workers/schemes/x402/ and
 * workers/schemes/l402/, called directly (fast: no workerd, no chain), at the list price and
 * under the origin's congestion (the price × the curve's factor).
 *
 * x402: payments are signed by peers that are not tollbooth's code (`@x402/core/client` +
 * `@x402/evm`'s exact client, a viem account) for the scheme's own offer (its
 * PAYMENT-REQUIRED, decoded with `@x402/core/http`); `verify` checks them with no network
 * call (a forged signature never reaches the facilitator); `settle` asks the facilitator's
 * `/verify` then `/settle` — a fake answering the `fetch` the scheme is given
 * (test/e2e/x402*.test.ts settle on a real chain with a real facilitator).
 * L402: invoices are REAL signed regtest BOLT11 from the Lightning stand-in
 * (test/helpers/lightning-standin.ts), paid through its payer endpoint for the preimage.
 */
import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, decodePaymentResponseHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { PaymentPayload, PaymentRequired } from "@x402/core/types";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { importKeyring, type Keyring } from "../../../../shared/credentials/keys.ts";
import { isBodyError, type ParsedBody, parseBody } from "../../../../shared/jsonrpc.ts";
import { congestion, DEFAULT_CONGESTION } from "../../../../shared/limits/congestion.ts";
import { parseAuthParams } from "../../../../shared/wire/auth-params.ts";
import type { OfferContext, PaymentScheme, SchemeContext } from "../../../../workers/schemes/contract.ts";
import { l402Scheme } from "../../../../workers/schemes/l402/index.ts";
import { type Policy, parsePolicy, planFor } from "../../../../workers/schemes/policy.ts";
import { type X402Credential, x402Scheme } from "../../../../workers/schemes/x402/index.ts";
import { type LightningStandin, startLightningStandin } from "../../../helpers/lightning-standin.ts";

const SECRET = "schemes-secret-0123456789abcdef";
const CALLER = "key:0123456789abcdef0123456789abcdef";
const URL_ = new URL("https://gw.example/mcp");

let keyring: Keyring;
beforeAll(async () => {
  keyring = await importKeyring(SECRET);
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The scheme's context for `policy`'s default plan. */
function context(policy: Policy, cost = 1, caller = CALLER): SchemeContext {
  return { policy, plan: planFor(policy, undefined), keyring, caller, nowMs: Date.now(), cost };
}
/** An offer's context for `policy`'s default plan: an unverified caller on a network of its own. */
const offerContext = (policy: Policy, cost = 1, caller = CALLER, trusted = false): OfferContext => ({
  ...context(policy, cost, caller),
  difficulty: 8,
  url: URL_,
  what: "tools/call echo",
  reason: "over_budget",
  network: `ip:${caller}`,
  trusted,
});
/** The origin's congestion at load level `level`, on the default curve (docs/allocation.md: at 0.9 the price × 4^0.8 = 3.0314331…). */
const congested = (level: number) => congestion(level, DEFAULT_CONGESTION);

const enc = new TextEncoder();
/** A request's credential source: headers and, for a JSON-RPC body, its parse and bytes. */
function source(
  headers: Record<string, string>,
  body?: unknown,
): { headers: Headers; body: ParsedBody | null; raw: Uint8Array<ArrayBuffer> | null } {
  if (body === undefined) return { headers: new Headers(headers), body: null, raw: null };
  const raw = enc.encode(JSON.stringify(body)) as Uint8Array<ArrayBuffer>;
  const parsed = parseBody(raw);
  if (isBodyError(parsed)) throw new Error(parsed.message);
  return { headers: new Headers(headers), body: parsed, raw };
}

const toolCall = (id: number, meta?: Record<string, unknown>) => ({
  jsonrpc: "2.0",
  id,
  method: "tools/call",
  params: { name: "echo", arguments: { message: "hi" }, ...(meta ? { _meta: meta } : {}) },
});

// ---------------------------------------------------------------------------------------------
// x402

describe("x402", () => {
  const NETWORK = "eip155:84532";
  const ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
  const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
  const FACILITATOR = "https://facilitator.example";
  const PRICE = "10000";
  const credits = parsePolicy({
    x402: { mode: "credits", amount: PRICE, credits: 5 },
    facilitator: { url: FACILITATOR, payTo: PAY_TO, assets: [{ network: NETWORK, asset: ASSET, name: "USDC", version: "2" }] },
  });
  const perRequest = parsePolicy({
    x402: { mode: "per-request", amountPerUnit: "700" },
    facilitator: { url: FACILITATOR, payTo: PAY_TO, assets: [{ network: NETWORK, asset: ASSET, name: "USDC", version: "2" }] },
  });
  /** The fake facilitator, as the `fetch` the scheme is given (a `fetch` that reaches anything else fails the test). */
  const facilitatorFetch = (input: RequestInfo | URL, init?: RequestInit) => answer(new Request(input, init));
  const deps = { fetch: facilitatorFetch as typeof fetch, secrets: {} };
  const scheme = x402Scheme(credits, deps) as PaymentScheme<X402Credential>;
  const account = privateKeyToAccount(generatePrivateKey());
  const payer = account.address.toLowerCase();

  /** Requests that reached the fake facilitator: path and JSON body. */
  let calls: Array<{ path: string; body: { paymentPayload: PaymentPayload; paymentRequirements: { amount: string } } }> = [];
  /** The fake facilitator's answers (default: valid, settled). */
  let verdict: Record<string, unknown>;
  let settled: Record<string, unknown>;
  /** Paths that do not answer (connection refused). */
  let down: string[];

  async function answer(req: Request): Promise<Response> {
    if (!req.url.startsWith(`${FACILITATOR}/`)) throw new Error(`unexpected fetch of ${req.url}`);
    const path = new URL(req.url).pathname;
    if (down.includes(path)) throw new TypeError("fetch failed: connection refused");
    calls.push({ path, body: JSON.parse(await req.text()) });
    return Response.json(path === "/verify" ? verdict : settled);
  }

  const fakeFacilitator = () => {
    calls = [];
    down = [];
    verdict = { isValid: true, payer };
    settled = { success: true, transaction: `0x${"ab".repeat(32)}`, network: NETWORK, payer };
  };

  /** The scheme's offer for `policy` (cost units), decoded from its PAYMENT-REQUIRED header. */
  async function offered(policy: Policy = credits, cost = 1): Promise<PaymentRequired> {
    const s = x402Scheme(policy, deps)!;
    const offer = await s.offer(offerContext(policy, cost));
    if (!offer.ok) throw new Error("x402 not offered");
    return decodePaymentRequiredHeader(offer.headers!["payment-required"]!);
  }

  /** A payment signed by the x402 client for `required`, its amount replaced by `amount` when given. */
  async function signed(required: PaymentRequired, amount?: string): Promise<PaymentPayload> {
    const client = new x402Client();
    registerExactEvmScheme(client, { signer: account });
    client.setSpendControls({ allowedAssets: true });
    return client.createPaymentPayload(
      amount === undefined ? required : { ...required, accepts: required.accepts.map((r) => ({ ...r, amount })) },
    );
  }

  /** Read a payment from a `PAYMENT-SIGNATURE` header. */
  function fromHeader(p: PaymentPayload): X402Credential {
    const read = scheme.read(source({ "payment-signature": encodePaymentSignatureHeader(p) }));
    if (!read?.ok) throw new Error(`not read: ${JSON.stringify(read)}`);
    return read.credential;
  }

  describe("offer", () => {
    it("PAYMENT-REQUIRED: x402 v2, the exact scheme on each asset at the plan's price to the payee; no WWW-Authenticate; the json entry and hint", async () => {
      const offer = await scheme.offer(offerContext(credits));
      expect(offer.ok).toBe(true);
      if (!offer.ok) return;
      expect(offer.challenge).toBeUndefined();
      const required = decodePaymentRequiredHeader(offer.headers!["payment-required"]!);
      const accepts = [
        {
          scheme: "exact",
          network: NETWORK,
          asset: ASSET,
          amount: PRICE,
          payTo: PAY_TO,
          maxTimeoutSeconds: 120,
          extra: { name: "USDC", version: "2" },
        },
      ];
      expect(required).toEqual({
        x402Version: 2,
        error: "over_budget",
        resource: { url: URL_.href, description: "tools/call echo", mimeType: "application/json" },
        accepts,
      });
      expect(offer.json).toEqual({
        type: "x402",
        x402Version: 2,
        accepts,
        mode: "credits",
        credits: 5,
        header: "PAYMENT-REQUIRED",
        paymentRequired: required,
      });
      expect(offer.hint).toBe(
        `Pay with x402 (the PAYMENT-REQUIRED header: ${PRICE} atomic units of ${ASSET} on ${NETWORK} for 5 credits) and retry with header PAYMENT-SIGNATURE`,
      );
    });

    it("per-request mode: the price is amountPerUnit × the request's cost", async () => {
      expect((await offered(perRequest, 3)).accepts.map((a) => a.amount)).toEqual(["2100"]);
      expect((await offered(perRequest, 1)).accepts.map((a) => a.amount)).toEqual(["700"]);
    });
  });

  describe("read", () => {
    it("PAYMENT-SIGNATURE, else v1's X-PAYMENT: the payload, from http, the body untouched", async () => {
      const p = await signed(await offered());
      for (const header of ["payment-signature", "x-payment"]) {
        const read = scheme.read(source({ [header]: encodePaymentSignatureHeader(p) }, toolCall(1)));
        expect(read).toEqual({ ok: true, credential: { payload: p, via: "http" } });
      }
    });

    it('params._meta["x402/payment"] of a single tools/call, as an object or as base64: from mcp, and the body to forward has no payment (other _meta kept)', async () => {
      const p = await signed(await offered());
      const b64 = Buffer.from(JSON.stringify(p)).toString("base64");
      for (const [value, rest] of [
        [p, {}],
        [b64, { "example.com/trace": "keep", progressToken: 7 }],
      ] as const) {
        const read = scheme.read(source({}, toolCall(4, { ...rest, "x402/payment": value })));
        expect(read?.ok).toBe(true);
        if (!read?.ok) return;
        expect(read.credential).toEqual({ payload: p, via: "mcp" });
        const forwarded = JSON.parse(Buffer.from(read.body!).toString());
        expect(forwarded).toEqual(Object.keys(rest).length ? toolCall(4, rest) : toolCall(4));
        expect(Buffer.from(read.body!).toString()).not.toContain("x402/payment");
      }
    });

    it("not a payment: none at all, a batch, a method other than tools/call, a payment elsewhere in the body", async () => {
      const p = await signed(await offered());
      expect(scheme.read(source({}, toolCall(1)))).toBeNull();
      expect(scheme.read(source({}, [toolCall(1, { "x402/payment": p })]))).toBeNull();
      expect(
        scheme.read(source({}, { jsonrpc: "2.0", id: 2, method: "resources/read", params: { uri: "x", _meta: { "x402/payment": p } } })),
      ).toBeNull();
      expect(
        scheme.read(
          source(
            {},
            { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "echo", arguments: { _meta: { "x402/payment": p } } } },
          ),
        ),
      ).toBeNull();
    });

    it("malformed: not base64 JSON, not v2, no EIP-3009 authorization", async () => {
      const p = await signed(await offered());
      const v1 = Buffer.from(JSON.stringify({ ...p, x402Version: 1 })).toString("base64");
      const noAuth = Buffer.from(JSON.stringify({ ...p, payload: { signature: "0x00" } })).toString("base64");
      for (const bad of ["not-base64-json", v1, noAuth]) {
        expect(scheme.read(source({ "payment-signature": bad }))).toEqual({ ok: false, reason: "malformed" });
        expect(scheme.read(source({}, toolCall(1, { "x402/payment": bad })))).toEqual({ ok: false, reason: "malformed" });
      }
      expect(scheme.readJson({ type: "x402", payment: "not-base64-json" })).toEqual({ ok: false, reason: "malformed" });
      expect(scheme.readJson({ type: "x402", payment: p })).toEqual({ ok: true, credential: { payload: p, via: "http" } });
    });
  });

  describe("verify (no facilitator call)", () => {
    it("the price: the payer (its signature recovered) becomes the caller; 5 credits, spent once per authorization; the facilitator is not asked", async () => {
      fakeFacilitator();
      const p = await signed(await offered());
      const ctx = context(credits);
      const check = await scheme.verify(fromHeader(p), ctx);
      expect(check.ok).toBe(true);
      if (!check.ok) return;
      const auth = (p.payload as { authorization: { nonce: string; validBefore: string } }).authorization;
      expect(check.identity).toBe(`evm:${payer}`);
      expect(check.token).toBe(true);
      expect(check.paid).toEqual({ amount: PRICE, unit: "atomic" });
      expect(check.redemption).toMatchObject({
        spendId: `x402:${NETWORK}:${ASSET.toLowerCase()}:${payer}:${auth.nonce.toLowerCase()}`,
        credits: 5,
        reusable: false,
        prefix: "x402",
        solve: false,
        spendUntilMs: Number(auth.validBefore) * 1000,
      });
      expect(calls).toEqual([]);
    });

    // "9999" and "9" are below 10000 but not string prefixes of it: as text they sort after it.
    for (const amount of ["9999", "9", "1"]) {
      it(`${amount} atomic units for a price of ${PRICE}: underpaid, and the facilitator is never asked`, async () => {
        fakeFacilitator();
        const p = await signed(await offered(), amount);
        expect(p.accepted.amount).toBe(amount);
        expect(await scheme.verify(fromHeader(p), context(credits))).toEqual({ ok: false, reason: "underpaid" });
        expect(calls).toEqual([]);
      });
    }

    it("more than the price (100000) is accepted for the amount signed", async () => {
      fakeFacilitator();
      const p = await signed(await offered(), "100000");
      expect(await scheme.verify(fromHeader(p), context(credits))).toMatchObject({ ok: true, paid: { amount: "100000", unit: "atomic" } });
    });

    it("per-request mode: the price of the request's cost; no access token; credits = the cost", async () => {
      fakeFacilitator();
      const s = x402Scheme(perRequest, deps)!;
      const under = await signed(await offered(perRequest, 3), "1400");
      expect(await s.verify(fromHeader(under), context(perRequest, 3))).toEqual({ ok: false, reason: "underpaid" });
      const p = await signed(await offered(perRequest, 3));
      const check = await s.verify(fromHeader(p), context(perRequest, 3));
      expect(check).toMatchObject({ ok: true, token: false, paid: { amount: "2100", unit: "atomic" }, redemption: { credits: 3 } });
    });

    it("another payee, network or asset: not_offered, the facilitator never asked", async () => {
      fakeFacilitator();
      const required = await offered();
      const changes: Array<Partial<PaymentRequired["accepts"][number]>> = [
        { payTo: `0x${"11".repeat(20)}` },
        { network: "eip155:1" },
        { asset: `0x${"22".repeat(20)}` },
      ];
      for (const change of changes) {
        const p = await signed({ ...required, accepts: required.accepts.map((r) => ({ ...r, ...change })) });
        expect(await scheme.verify(fromHeader(p), context(credits))).toEqual({ ok: false, reason: "not_offered" });
      }
      expect(calls).toEqual([]);
    });

    it("a forged payment — another key's signature, the payer's signature over other terms — is invalid, with the facilitator's word for it, and never sent", async () => {
      fakeFacilitator();
      const required = await offered();
      const p = await signed(required);
      const other = privateKeyToAccount(generatePrivateKey());
      const client = new x402Client();
      registerExactEvmScheme(client, { signer: other });
      client.setSpendControls({ allowedAssets: true });
      const theirs = await client.createPaymentPayload(required);
      const body = p.payload as { signature: string; authorization: Record<string, string> };
      const forged = [
        { ...p, payload: { ...body, signature: (theirs.payload as { signature: string }).signature } },
        { ...p, payload: { ...body, authorization: { ...body.authorization, nonce: `0x${"42".repeat(32)}` } } },
        {
          ...p,
          payload: { ...body, authorization: { ...body.authorization, validBefore: String(Number(body.authorization.validBefore!) + 1) } },
        },
      ];
      for (const f of forged)
        expect(await scheme.verify(fromHeader(f as PaymentPayload), context(credits))).toEqual({
          ok: false,
          reason: "invalid",
          detail: "invalid_exact_evm_signature",
        });
      expect(calls).toEqual([]);
    });
  });

  describe("under congestion (docs/allocation.md: the price × the curve's factor, rounded up)", () => {
    it("offers the bundle's price, or the unit's, times the factor; 1 × below the curve's start", async () => {
      const at = async (policy: Policy, cost: number, level: number) => {
        const offer = await x402Scheme(policy, { fetch, secrets: {} })!.offer({
          ...offerContext(policy, cost),
          congestion: congested(level),
        });
        if (!offer.ok) throw new Error("x402 not offered");
        return decodePaymentRequiredHeader(offer.headers!["payment-required"]!).accepts.map((a) => a.amount);
      };
      expect(await at(credits, 1, 0.5)).toEqual([PRICE]);
      expect(await at(credits, 1, 0.9)).toEqual(["30315"]);
      expect(await at(credits, 1, 1)).toEqual(["40000"]);
      // 700 × 3.0314331 = 2122.003 → 2123 per unit, × 3.
      expect(await at(perRequest, 3, 0.9)).toEqual(["6369"]);
    });

    it("verifies a payment at the price now: the list price is underpaid while the origin is congested (the facilitator never asked); the raised one is verified", async () => {
      fakeFacilitator();
      const atList = await signed(await offered());
      expect(await scheme.verify(fromHeader(atList), { ...context(credits), congestion: congested(0.9) })).toEqual({
        ok: false,
        reason: "underpaid",
      });
      expect(calls).toEqual([]);
      const raised = await signed(await offered(), "30315");
      expect(await scheme.verify(fromHeader(raised), { ...context(credits), congestion: congested(0.9) })).toMatchObject({
        ok: true,
        paid: { amount: "30315", unit: "atomic" },
      });
      // Settled at the price it was verified at.
      expect(await scheme.settle!(fromHeader(raised), { ...context(credits), congestion: congested(0.9) })).toMatchObject({ ok: true });
      expect(calls.map((c) => c.path)).toEqual(["/verify", "/settle"]);
    });
  });

  describe("settle: the facilitator's /verify, then /settle", () => {
    it("over HTTP: /verify then /settle with the requirement as signed; PAYMENT-RESPONSE carries the facilitator's settlement, and no receipt for _meta", async () => {
      fakeFacilitator();
      const p = await signed(await offered());
      const done = await scheme.settle!(fromHeader(p), context(credits));
      expect(done.ok).toBe(true);
      if (!done.ok) return;
      expect(decodePaymentResponseHeader(done.headers["payment-response"]!)).toEqual(settled);
      expect(done.receipt).toBeUndefined();
      expect(calls.map((c) => c.path)).toEqual(["/verify", "/settle"]);
      for (const c of calls) {
        expect(c.body.paymentPayload).toEqual(p);
        expect(c.body.paymentRequirements).toEqual(p.accepted);
      }
    });

    it('inside MCP: the receipt for the result\'s _meta["x402/payment-response"] is the settlement', async () => {
      fakeFacilitator();
      const p = await signed(await offered());
      const read = scheme.read(source({}, toolCall(1, { "x402/payment": p })));
      if (!read?.ok) throw new Error("not read");
      const done = await scheme.settle!(read.credential, context(credits));
      expect(done).toMatchObject({ ok: true, receipt: { key: "x402/payment-response", value: settled } });
    });

    it("the facilitator's /verify refusal: invalid with its reason as detail, expired for validBefore; unavailable (retryable) when it does not answer; never settled", async () => {
      fakeFacilitator();
      vi.spyOn(console, "error").mockImplementation(() => {});
      const p = await signed(await offered());
      verdict = { isValid: false, invalidReason: "invalid_exact_evm_insufficient_funds", payer };
      expect(await scheme.settle!(fromHeader(p), context(credits))).toEqual({
        ok: false,
        reason: "invalid",
        detail: "invalid_exact_evm_insufficient_funds",
      });
      verdict = { isValid: false, invalidReason: "invalid_exact_evm_payload_authorization_valid_before", payer };
      expect(await scheme.settle!(fromHeader(p), context(credits))).toMatchObject({ ok: false, reason: "expired" });
      down = ["/verify"];
      expect(await scheme.settle!(fromHeader(p), context(credits))).toEqual({ ok: false, reason: "facilitator_unavailable" });
      expect(calls.map((c) => c.path)).toEqual(["/verify", "/verify"]);
      expect(scheme.retryable!("facilitator_unavailable")).toBe(true);
      expect(scheme.retryable!("invalid")).toBe(false);
      expect(scheme.retryable!("settle_failed")).toBe(false);
      expect(scheme.refusalStatus("x402_facilitator_unavailable")).toBe(503);
      expect(scheme.refusalStatus("x402_underpaid")).toBe(402);
      expect(scheme.refusalStatus("x402_invalid")).toBe(402);
    });

    it("a settlement that fails or does not answer: settle_failed (not retryable: it may still settle); an underpaid payment is never settled", async () => {
      fakeFacilitator();
      vi.spyOn(console, "error").mockImplementation(() => {});
      const p = await signed(await offered());
      settled = { success: false, errorReason: "insufficient_funds", transaction: "", network: NETWORK, payer };
      expect(await scheme.settle!(fromHeader(p), context(credits))).toEqual({
        ok: false,
        reason: "settle_failed",
        detail: "insufficient_funds",
      });
      down = ["/settle"];
      expect(await scheme.settle!(fromHeader(p), context(credits))).toEqual({ ok: false, reason: "settle_failed" });
      down = [];
      const before = calls.length;
      expect(await scheme.settle!(fromHeader(await signed(await offered(), "9999")), context(credits))).toEqual({
        ok: false,
        reason: "underpaid",
      });
      expect(calls).toHaveLength(before);
    });
  });

  it("strip: PAYMENT-SIGNATURE and X-PAYMENT removed, every other header kept", () => {
    const headers = new Headers({ "payment-signature": "a", "x-payment": "b", authorization: "Bearer origin", "x-other": "c" });
    scheme.strip(headers);
    expect([...headers]).toEqual([
      ["authorization", "Bearer origin"],
      ["x-other", "c"],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// L402

describe("L402 with the Lightning stand-in", () => {
  let ln: LightningStandin;
  let policy: Policy;
  let scheme: PaymentScheme<any>;
  const PRICE = { sats: 21, credits: 4 };
  beforeAll(async () => {
    ln = await startLightningStandin();
    policy = parsePolicy({ l402: PRICE, lightning: { backend: "lnd", url: ln.url, invoicesPerSecond: 1000 } });
    scheme = l402Scheme(policy, { fetch, secrets: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex } })!;
  });
  afterAll(async () => {
    await ln?.close();
  });

  /** A fresh offer to `caller`, and the preimage of its invoice once paid through the stand-in's payer node. */
  async function paid(caller: string): Promise<{ macaroon: string; invoice: string; preimage: string; paymentHash: string }> {
    const offer = await scheme.offer(offerContext(policy, 1, caller));
    if (!offer.ok) throw new Error(offer.message);
    const { macaroon, invoice, paymentHash } = offer.json as { macaroon: string; invoice: string; paymentHash: string };
    const res = await fetch(`${ln.url}/v1/channels/transactions`, {
      method: "POST",
      headers: { "Grpc-Metadata-macaroon": ln.macaroonHex },
      body: JSON.stringify({ payment_request: invoice }),
    });
    const { payment_preimage } = (await res.json()) as { payment_preimage: string };
    return { macaroon, invoice, paymentHash, preimage: Buffer.from(payment_preimage, "base64").toString("hex") };
  }

  it("offer: an invoice of the plan's price from the backend, a macaroon bound to its payment hash, in one L402 challenge; the same offer again for the same caller", async () => {
    const caller = "key:offer-caller";
    const created = ln.created();
    const offer = await scheme.offer(offerContext(policy, 1, caller));
    expect(offer.ok).toBe(true);
    if (!offer.ok) return;
    const issued = ln.invoices().at(-1)!;
    expect(ln.created()).toBe(created + 1);
    expect(issued.sats).toBe(PRICE.sats);
    const challenge = parseAuthParams(offer.challenge!.slice("L402 ".length));
    expect(offer.challenge!.startsWith("L402 ")).toBe(true);
    expect(challenge?.params).toMatchObject({ version: "0", invoice: issued.bolt11 });
    expect(offer.json).toMatchObject({
      type: "l402",
      invoice: issued.bolt11,
      paymentHash: issued.paymentHash,
      sats: PRICE.sats,
      credits: PRICE.credits,
      macaroon: challenge!.params.macaroon,
      token: challenge!.params.macaroon,
    });
    // Retrying the 402 does not mint another invoice.
    expect(await scheme.offer(offerContext(policy, 1, caller))).toEqual(offer);
    expect(ln.created()).toBe(created + 1);
  });

  it("offer under congestion: an invoice of the price × the curve's factor (21 × 3.0314331 → 64 sats); an offer made at another price is not reused", async () => {
    const caller = "key:congested-caller";
    const listed = await scheme.offer(offerContext(policy, 1, caller));
    expect(listed).toMatchObject({ ok: true, json: { sats: 21 } });
    const created = ln.created();
    const raised = await scheme.offer({ ...offerContext(policy, 1, caller), congestion: congested(0.9) });
    expect(raised).toMatchObject({ ok: true, json: { sats: 64, credits: PRICE.credits } });
    expect(ln.invoices().at(-1)!.sats).toBe(64);
    expect(ln.created()).toBe(created + 1);
    // Back below the curve's start: the list price's offer again.
    expect(await scheme.offer({ ...offerContext(policy, 1, caller), congestion: congested(0.3) })).toEqual(listed);
  });

  it("read: Authorization L402 or LSAT, or Tollbooth-L402; a Bearer Authorization is not a credential; a malformed one is refused", async () => {
    const { macaroon, preimage } = await paid("key:reader");
    const text = `${macaroon}:${preimage}`;
    const ways: Array<Record<string, string>> = [
      { authorization: `L402 ${text}` },
      { authorization: `LSAT ${text}` },
      { "tollbooth-l402": text },
    ];
    for (const headers of ways) {
      const read = scheme.read(source(headers));
      expect(read?.ok, JSON.stringify(headers)).toBe(true);
    }
    expect(scheme.read(source({ authorization: "Bearer origin-token" }))).toBeNull();
    expect(scheme.read(source({}))).toBeNull();
    expect(scheme.read(source({ authorization: "L402 not-a-macaroon" }))).toMatchObject({ ok: false, reason: "malformed" });
    expect(scheme.readJson({ type: "l402", macaroon, preimage })).toMatchObject({ ok: true });
    expect(scheme.readJson({ type: "l402", macaroon })).toEqual({ ok: false, reason: "malformed" });
  });

  it("verify: the paid credential opens the plan's credits once per payment hash, for the caller it was offered to; a wrong preimage or another caller is refused (401)", async () => {
    const caller = "key:verifier";
    const { macaroon, preimage, paymentHash } = await paid(caller);
    const read = scheme.read(source({ authorization: `L402 ${macaroon}:${preimage}` }));
    if (!read?.ok) throw new Error("not read");
    const check = await scheme.verify(read.credential, context(policy, 1, caller));
    expect(check).toMatchObject({
      ok: true,
      paid: { amount: String(PRICE.sats), unit: "sats" },
      redemption: {
        spendId: `l402:${paymentHash}`,
        jti: `l402:${paymentHash}`,
        credits: PRICE.credits,
        reusable: true,
        prefix: "l402",
        solve: false,
      },
    });
    expect(await scheme.verify(read.credential, context(policy, 1, "key:thief"))).toMatchObject({ ok: false, reason: "wrong_caller" });
    const wrong = scheme.read(source({ authorization: `L402 ${macaroon}:${"00".repeat(32)}` }));
    if (!wrong?.ok) throw new Error("not read");
    expect(await scheme.verify(wrong.credential, context(policy, 1, caller))).toMatchObject({ ok: false, reason: "wrong_preimage" });
    expect(scheme.refusalStatus("l402_wrong_preimage")).toBe(401);
    expect(scheme.refusalStatus("l402_exhausted")).toBe(402);
  });

  it("strip: Tollbooth-L402 and an L402 or LSAT Authorization removed; an OAuth Authorization kept", async () => {
    const { macaroon, preimage } = await paid("key:stripper");
    for (const scheme_ of ["L402", "LSAT"]) {
      const headers = new Headers({ authorization: `${scheme_} ${macaroon}:${preimage}`, "x-other": "1" });
      scheme.strip(headers);
      expect([...headers]).toEqual([["x-other", "1"]]);
    }
    const beside = new Headers({ authorization: "Bearer origin-token", "tollbooth-l402": `${macaroon}:${preimage}` });
    scheme.strip(beside);
    expect([...beside]).toEqual([["authorization", "Bearer origin-token"]]);
  });

  it("a backend that is down: L402 listed as unavailable, not offered", async () => {
    const down = l402Scheme(policy, { fetch, secrets: { TOLLBOOTH_LIGHTNING_SECRET: ln.macaroonHex } })!;
    vi.spyOn(console, "error").mockImplementation(() => {});
    ln.setDown(true);
    try {
      expect(await down.offer(offerContext(policy, 1, "key:down"))).toMatchObject({
        ok: false,
        type: "l402",
        reason: "backend_unavailable",
      });
    } finally {
      ln.setDown(false);
    }
  });
});
