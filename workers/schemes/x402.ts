/**
 * x402 v2 (docs/wire-contract.md §12; x402-foundation `specs/x402-specification-v2.md`,
 * `transports-v2/http.md`, `transports-v2/mcp.md`, `schemes/exact/scheme_exact_evm.md`): the
 * paid way through a 402 in USDC (any EIP-3009 token the policy lists).
 * Offer: `PAYMENT-REQUIRED` (base64 JSON `PaymentRequired`: the `exact` scheme on each
 * accepted network and asset, the plan's price, the operator's `payTo`), no
 * `WWW-Authenticate` line.
 * Credential: `PAYMENT-SIGNATURE` (or v1's `X-PAYMENT`) — base64 `PaymentPayload` — or, on a
 * `tools/call`, `params._meta["x402/payment"]` (the object, or the base64 string Cloudflare
 * `agents/x402` sends), removed before forwarding.
 * Verify: the payload's requirement must be one offered (scheme, network, asset, payee) at
 * no less than the price, then the facilitator's `/verify`; the payer becomes the caller
 * (`evm:<address>`), once the identity the request came from was found not blocked. The
 * authorization (network, asset, payer, nonce) is spent once in the caller's Durable Object;
 * then the gate claims it gateway-wide (one object per spend id, shared by every route) and
 * only the claim's winner has `settle` ask the facilitator's `/settle`, before the request is
 * forwarded (a failed settlement, or a claim lost to another route, withdraws what the
 * payment bought).
 * Refusals: `x402_<X402Refusal>` — 402 with fresh challenges; 503 when the facilitator does
 * not answer.
 * EIP-712 and the chain are the facilitator's: the Worker uses `@x402/core`'s header codecs
 * and facilitator client, and never signs or checks signatures itself.
 */
import { decodePaymentSignatureHeader, encodePaymentRequiredHeader, encodePaymentResponseHeader, HTTPFacilitatorClient } from "@x402/core/http";
import type { PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse } from "@x402/core/types";
import type { Plan } from "../../shared/policy/index.ts";
import { refuse } from "../../shared/result.ts";
import { newTokenId } from "../../shared/credentials/token.ts";
import { PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER, X402_META_PAYMENT, X402_META_RESPONSE, X_PAYMENT_HEADER } from "../../shared/wire/headers.ts";
import { takeMetaFromRequest } from "../mcp-meta.ts";
import type { PaymentScheme, SchemeContext, SchemeFactory } from "./scheme.ts";

/** Why an x402 payment was refused (on the wire: `x402_<reason>`). */
export type X402Error = "malformed" | "not_offered" | "underpaid" | "invalid" | "spent" | "expired" | "settle_failed" | "facilitator_unavailable";
/** An x402 refusal as it reaches the wire. */
export type X402Refusal = `x402_${X402Error | "exhausted" | "unknown"}`;

/** Secret binding holding the `Authorization` value sent to the facilitator (optional). */
export const FACILITATOR_AUTH_SECRET = "TOLLBOOTH_FACILITATOR_AUTH";
/** Seconds a per-request payment's balance lives (it is spent by the request that paid it). */
const PER_REQUEST_TTL_SECONDS = 60;
/** Largest encoded payment accepted, characters. */
const MAX_PAYMENT_CHARS = 16_384;

/** A payment read from a request. */
export interface X402Credential {
  payload: PaymentPayload;
  /** Where it came from: a header, or the MCP `_meta` of a `tools/call` (the receipt goes back there). */
  via: "http" | "mcp";
}

/** The price of `cost` units under `plan`, atomic units; null when the plan has no x402 price. */
function priceOf(plan: Plan, cost: number): bigint | null {
  const p = plan.x402;
  if (!p) return null;
  return p.mode === "credits" ? BigInt(p.amount) : BigInt(p.amountPerUnit) * BigInt(Math.max(1, cost));
}

/** A decoded payment, or null when it is not a v2 PaymentPayload with an EIP-3009 authorization. */
function decodePayment(value: unknown): PaymentPayload | null {
  let payload: unknown = value;
  if (typeof value === "string") {
    if (value.length > MAX_PAYMENT_CHARS) return null;
    try {
      payload = decodePaymentSignatureHeader(value.trim());
    } catch {
      return null;
    }
  }
  const p = payload as PaymentPayload;
  if (typeof p !== "object" || p === null || p.x402Version !== 2 || typeof p.accepted !== "object" || p.accepted === null) return null;
  const auth = (p.payload as { authorization?: Record<string, unknown> } | undefined)?.authorization;
  if (typeof auth !== "object" || auth === null || typeof auth.from !== "string" || typeof auth.nonce !== "string") return null;
  return p;
}

/** The EIP-3009 authorization of a decoded payment. */
function authorizationOf(p: PaymentPayload): { from: string; nonce: string; validBefore?: unknown } {
  return (p.payload as { authorization: { from: string; nonce: string; validBefore?: unknown } }).authorization;
}

/** The x402 scheme; null when the policy sets no `facilitator`. */
export const x402Scheme: SchemeFactory = (policy, deps) => {
  const config = policy.facilitator;
  if (!config) return null;
  const auth = deps.secrets[FACILITATOR_AUTH_SECRET];
  const facilitator = new HTTPFacilitatorClient({
    url: config.url.replace(/\/+$/, ""),
    timeoutMs: config.timeoutMs,
    ...(auth ? { createAuthHeaders: async () => ({ verify: { Authorization: auth }, settle: { Authorization: auth }, supported: { Authorization: auth } }) } : {}),
  });

  /** The requirements offered for `cost` units under `plan`, one per accepted asset. */
  const requirements = (plan: Plan, cost: number): PaymentRequirements[] => {
    const amount = priceOf(plan, cost);
    if (amount === null) return [];
    return config.assets.map((a) => ({
      scheme: "exact",
      network: a.network as PaymentRequirements["network"],
      asset: a.asset,
      amount: amount.toString(),
      payTo: config.payTo,
      maxTimeoutSeconds: config.maxTimeoutSeconds,
      extra: { name: a.name, version: a.version },
    }));
  };

  /** The offered requirement the payload claims to pay, or why it matches none. */
  const match = (payload: PaymentPayload, ctx: SchemeContext): { ok: true; requirement: PaymentRequirements } | { ok: false; reason: X402Error } => {
    const a = payload.accepted;
    const offered = requirements(ctx.plan, ctx.cost).find(
      (r) => a.scheme === r.scheme && a.network === r.network && String(a.asset).toLowerCase() === r.asset.toLowerCase() && String(a.payTo).toLowerCase() === r.payTo.toLowerCase(),
    );
    if (!offered) return refuse("not_offered");
    let paid: bigint;
    try {
      paid = BigInt(String(a.amount));
    } catch {
      return refuse("malformed");
    }
    // Invariant: a payment is never worth less than the price the caller's plan asks now.
    if (paid < BigInt(offered.amount)) return refuse("underpaid");
    // Verified and settled as the client signed it (its amount ≥ the price), to our payee.
    return { ok: true, requirement: { ...offered, amount: paid.toString() } };
  };

  const scheme: PaymentScheme<X402Credential> = {
    type: "x402",
    prefix: "x402",
    namesPayer: true,
    credits: (plan) => (plan.x402 ? (plan.x402.mode === "credits" ? plan.x402.credits : Number.MAX_SAFE_INTEGER) : 0),
    verifyFields: "the credential's fields (x402: payment, a PaymentPayload object or its base64 as in PAYMENT-SIGNATURE)",
    async offer(ctx) {
      const accepts = requirements(ctx.plan, ctx.cost);
      const paymentRequired: PaymentRequired = {
        x402Version: 2,
        error: ctx.reason,
        resource: { url: ctx.url.href, description: ctx.what, mimeType: "application/json" },
        accepts,
      };
      const price = ctx.plan.x402!;
      return {
        ok: true,
        type: "x402",
        headers: { [PAYMENT_REQUIRED_HEADER]: encodePaymentRequiredHeader(paymentRequired) },
        json: {
          type: "x402",
          x402Version: 2,
          accepts,
          mode: price.mode,
          ...(price.mode === "credits" ? { credits: price.credits } : {}),
          header: "PAYMENT-REQUIRED",
          paymentRequired,
        },
        hint: `Pay with x402 (the PAYMENT-REQUIRED header: ${accepts[0]!.amount} atomic units of ${accepts[0]!.asset} on ${accepts[0]!.network}${price.mode === "credits" ? ` for ${price.credits} credits` : ""}) and retry with header PAYMENT-SIGNATURE`,
      };
    },
    read({ headers, body, raw }) {
      const header = headers.get(PAYMENT_SIGNATURE_HEADER) ?? headers.get(X_PAYMENT_HEADER);
      if (header !== null) {
        const payload = decodePayment(header);
        return payload ? { ok: true, credential: { payload, via: "http" } } : refuse("malformed");
      }
      const only = body && !body.batch ? body.messages[0] : undefined;
      if (!raw || only?.method !== "tools/call") return null;
      const taken = takeMetaFromRequest(raw, X402_META_PAYMENT);
      if (!taken) return null;
      const payload = decodePayment(taken.value);
      return payload ? { ok: true, credential: { payload, via: "mcp" }, body: taken.body as Uint8Array<ArrayBuffer> } : refuse("malformed");
    },
    readJson(body) {
      const payload = decodePayment(body.payment);
      return payload ? { ok: true, credential: { payload, via: "http" } } : refuse("malformed");
    },
    async verify({ payload }, ctx) {
      const matched = match(payload, ctx);
      if (!matched.ok) return matched;
      let verdict;
      try {
        verdict = await facilitator.verify(payload, matched.requirement);
      } catch (err) {
        const response = (err as { invalidReason?: string; name?: string }) ?? {};
        if (response.name === "VerifyError") return refuse("invalid", response.invalidReason);
        console.error("tollbooth: x402 facilitator /verify failed", err);
        return refuse("facilitator_unavailable");
      }
      if (!verdict.isValid) return refuse(verdict.invalidReason && /expired|valid_before|validbefore/i.test(verdict.invalidReason) ? "expired" : "invalid", verdict.invalidReason);
      const authorization = authorizationOf(payload);
      const payer = (verdict.payer ?? authorization.from).toLowerCase();
      const price = ctx.plan.x402!;
      const validBeforeMs = Number(authorization.validBefore) * 1000;
      const until = Number.isFinite(validBeforeMs) && validBeforeMs > ctx.nowMs ? validBeforeMs : ctx.nowMs + config.maxTimeoutSeconds * 1000;
      // Invariant: one authorization (network, asset, payer, nonce) opens at most one balance.
      const spendId = `x402:${matched.requirement.network}:${matched.requirement.asset.toLowerCase()}:${payer}:${authorization.nonce.toLowerCase()}`;
      const credits = price.mode === "credits" ? price.credits : ctx.cost;
      const ttl = price.mode === "credits" ? price.ttlSeconds : PER_REQUEST_TTL_SECONDS;
      return {
        ok: true,
        identity: `evm:${payer}`,
        token: price.mode === "credits",
        paid: { amount: matched.requirement.amount, unit: "atomic" },
        redemption: {
          spendId,
          spendUntilMs: Math.max(until, ctx.nowMs + 1000),
          jti: newTokenId(),
          credits,
          tokenExpiresMs: (Math.floor(ctx.nowMs / 1000) + ttl) * 1000,
          reusable: false,
          prefix: "x402",
          solve: false,
        },
      };
    },
    async settle({ payload, via }, ctx) {
      const matched = match(payload, ctx);
      if (!matched.ok) return matched;
      let settled: SettleResponse;
      try {
        settled = await facilitator.settle(payload, matched.requirement);
      } catch (err) {
        // A timeout is indeterminate (the facilitator may still settle): the request is refused
        // and its credits withdrawn; the operator's logs hold the payload's nonce.
        console.error(`tollbooth: x402 /settle failed (nonce ${authorizationOf(payload).nonce})`, err);
        return refuse("settle_failed");
      }
      if (!settled.success) return refuse("settle_failed", settled.errorReason);
      return {
        ok: true,
        headers: { [PAYMENT_RESPONSE_HEADER]: encodePaymentResponseHeader(settled) },
        ...(via === "mcp" ? { receipt: { key: X402_META_RESPONSE, value: settled } } : {}),
      };
    },
    refusalStatus: (reason) => (reason === "x402_facilitator_unavailable" ? 503 : 402),
    strip(headers) {
      headers.delete(PAYMENT_SIGNATURE_HEADER);
      headers.delete(X_PAYMENT_HEADER);
    },
  };
  return scheme;
};
