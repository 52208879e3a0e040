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
 * Verify (no network call): the payload's requirement must be one offered (scheme, network,
 * asset, payee) at no less than the price, and its EIP-3009 authorization must pay that
 * payee that amount, be inside its validity window, and be signed by its `from`
 * (./authorization.ts: EIP-712 with viem, secp256k1 recovery with `@noble/secp256k1`); the
 * payer becomes the caller (`evm:<address>`), once the identity the request came from was
 * found not blocked. A forged signature never reaches the facilitator.
 * The authorization (network, asset, payer, nonce) is then spent once in the payer's Durable
 * Object, with the payer's ceiling; the origin ceiling is taken; the gateway claims it
 * gateway-wide (one object per spend id, shared by every route); only the claim's winner has
 * `settle` ask the facilitator — `/verify` (balance, nonce on chain), then `/settle` — before
 * the request is forwarded. A refusal there withdraws what the payment bought; when the
 * facilitator did not answer `/verify` (`retryable`), its spent marks are lifted too, so the
 * same payment may come again.
 * Refusals: `x402_<X402Refusal>` — 402 with fresh challenges; 503 when the facilitator does
 * not answer.
 * Policy: `x402` prices, the `facilitator` and `x402ToolResult` (./policy.ts); the over-budget
 * answer as an MCP tool result (./tool-result.ts). The facilitator client is tollbooth's own
 * (./facilitator.ts); header codecs from `@x402/core/utils`, types from `@x402/core/types`.
 */
import type { PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse } from "@x402/core/types";
import { newTokenId } from "../../../shared/credentials/token.ts";
import { type Result, refuse } from "../../../shared/result.ts";
import {
  PAYMENT_REQUIRED_HEADER,
  PAYMENT_RESPONSE_HEADER,
  PAYMENT_SIGNATURE_HEADER,
  X_PAYMENT_HEADER,
  X402_META_PAYMENT,
  X402_META_RESPONSE,
} from "../../../shared/wire/headers.ts";
import { takeMetaFromRequest, withoutMeta } from "../../proxy/mcp-meta.ts";
import {
  credentialRefusal,
  type Offer,
  type OfferContext,
  type PaymentScheme,
  type Redeemable,
  type SchemeContext,
  type SchemeFactory,
  type SchemeModule,
  type Settled,
} from "../contract.ts";
import { checkAuthorization } from "./authorization.ts";
import { type FacilitatorClient, facilitatorClient } from "./facilitator.ts";
import {
  authorizationOf,
  decodePayment,
  encodeHeader,
  matchRequirement,
  requirementsFor,
  type X402Credential,
  type X402Error,
} from "./payment.ts";
import { type Facilitator, facilitatorOf, toolResultWanted, x402Credits, x402PriceOf, x402Section } from "./policy.ts";
import { toolResult } from "./tool-result.ts";

export type { X402Credential, X402Error } from "./payment.ts";

/** An x402 refusal as it reaches the wire. */
export type X402Refusal = `x402_${X402Error | "exhausted" | "unknown"}`;

/** Secret binding holding the `Authorization` value sent to the facilitator (optional). */
export const FACILITATOR_AUTH_SECRET = "TOLLBOOTH_FACILITATOR_AUTH";
/** Seconds a per-request payment's balance lives (it is spent by the request that paid it). */
const PER_REQUEST_TTL_SECONDS = 60;

/** The 402's x402 offer: `PAYMENT-REQUIRED` and its entry in `error.data.challenges`. */
function offerFor(config: Facilitator, ctx: OfferContext): Offer {
  const accepts = requirementsFor(config, ctx.plan, ctx.cost, ctx.congestion?.priceFactorPpm);
  const paymentRequired: PaymentRequired = {
    x402Version: 2,
    error: ctx.reason,
    resource: { url: ctx.url.href, description: ctx.what, mimeType: "application/json" },
    accepts,
  };
  const price = x402PriceOf(ctx.plan)!;
  return {
    ok: true,
    type: "x402",
    headers: { [PAYMENT_REQUIRED_HEADER]: encodeHeader(paymentRequired) },
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
}

/**
 * A payment matched to an offered requirement and checked locally (./authorization.ts: payee,
 * amount, validity window, the signature recovering to the payer), into what it buys. No
 * facilitator call: `/verify` is asked in `settle`, once the caller's ceiling, the spent
 * marks and the origin ceiling have admitted the request.
 */
function verifyPayment(config: Facilitator, payload: PaymentPayload, ctx: SchemeContext): Result<Redeemable, X402Error> {
  const matched = matchRequirement(config, payload, ctx);
  if (!matched.ok) return matched;
  const checked = checkAuthorization(payload, matched.requirement, ctx.nowMs);
  if (!checked.ok) return checked;
  const { payer } = checked;
  const authorization = authorizationOf(payload);
  const price = x402PriceOf(ctx.plan)!;
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
}

/** The facilitator's `/verify` of a payment the gateway admitted: null when valid, else why not. */
async function confirmPayment(
  facilitator: FacilitatorClient,
  payload: PaymentPayload,
  requirement: PaymentRequirements,
): Promise<{ ok: false; reason: X402Error; detail?: string } | null> {
  let verdict;
  try {
    verdict = await facilitator.verify(payload, requirement);
  } catch (err) {
    console.error("tollbooth: x402 facilitator /verify failed", err);
    return refuse("facilitator_unavailable");
  }
  if (verdict.isValid) return null;
  return refuse(
    verdict.invalidReason && /expired|valid_before|validbefore/i.test(verdict.invalidReason) ? "expired" : "invalid",
    verdict.invalidReason,
  );
}

/**
 * Complete a payment the gateway admitted and claimed: the facilitator's `/verify` (balance,
 * nonce unused on chain, …), then `/settle`; its receipt header, and its `_meta` receipt when
 * it came in MCP.
 */
async function settlePayment(
  facilitator: FacilitatorClient,
  config: Facilitator,
  { payload, via }: X402Credential,
  ctx: SchemeContext,
): Promise<Result<Settled, X402Error>> {
  const matched = matchRequirement(config, payload, ctx);
  if (!matched.ok) return matched;
  const refused = await confirmPayment(facilitator, payload, matched.requirement);
  if (refused) return refused;
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
    headers: { [PAYMENT_RESPONSE_HEADER]: encodeHeader(settled) },
    ...(via === "mcp" ? { receipt: { key: X402_META_RESPONSE, value: settled } } : {}),
  };
}

/** The x402 scheme's factory; null when the policy sets no `facilitator`. */
export const x402Scheme: SchemeFactory = (policy, deps) => {
  const config = facilitatorOf(policy);
  if (!config) return null;
  const auth = deps.secrets[FACILITATOR_AUTH_SECRET];
  const facilitator = facilitatorClient({
    url: config.url,
    timeoutMs: config.timeoutMs,
    authorization: auth || undefined,
    fetch: deps.fetch,
  });
  const scheme: PaymentScheme<X402Credential> = {
    type: "x402",
    prefix: "x402",
    namesPayer: true,
    admits: "paid",
    credits: x402Credits,
    verifyFields: "the credential's fields (x402: payment, a PaymentPayload object or its base64 as in PAYMENT-SIGNATURE)",
    offer: async (ctx) => offerFor(config, ctx),
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
    verify: async ({ payload }, ctx) => verifyPayment(config, payload, ctx),
    settle: (credential, ctx) => settlePayment(facilitator, config, credential, ctx),
    // The facilitator did not answer `/verify`: nothing was submitted, the payment may come again.
    retryable: (reason) => reason === "facilitator_unavailable",
    refusalStatus: (reason) => (reason === "x402_facilitator_unavailable" ? 503 : 402),
    strip(headers) {
      headers.delete(PAYMENT_SIGNATURE_HEADER);
      headers.delete(X_PAYMENT_HEADER);
    },
    // A payment in `_meta` never reaches the origin, even when the request paid another way.
    stripBody: (raw) => withoutMeta(raw, X402_META_PAYMENT),
    publicPlan(plan) {
      const price = x402PriceOf(plan);
      return price ? { x402: price } : {};
    },
    // Where payments go (never the facilitator's credential).
    publicPolicy: () => ({
      x402: {
        payTo: config.payTo,
        assets: config.assets,
        maxTimeoutSeconds: config.maxTimeoutSeconds,
        toolResult: toolResultWanted(policy),
      },
    }),
    ...(toolResultWanted(policy) ? { toolResult } : {}),
    verifyRefusal: (reason) => credentialRefusal(scheme, reason),
  };
  return scheme;
};

/**
 * x402 as registered: its payments name their payer, `evm:0x<address>`. Its amounts are
 * counted in atomic units, every accepted asset together, and shown as USDC (6 decimals):
 * the EIP-3009 tokens it takes are USDC's kind.
 */
export const x402: SchemeModule = {
  type: "x402",
  prefix: "x402",
  make: x402Scheme,
  policy: x402Section,
  payers: {
    prefix: "evm:",
    pattern: /^evm:0x[0-9a-f]{40}$/,
    spelled: "evm:0x<40 hex>",
    malformed: "evm: takes 0x and 40 lowercase hex digits",
  },
  words: {
    redeemed: "x402 payments",
    paidIn: "atomic units of the asset (x402)",
    shownAs: { counted: "atomic", unit: "USDC", decimals: 6 },
  },
};
