/**
 * What an x402 payment is to the gateway: a v2 `PaymentPayload` with an EIP-3009
 * authorization (decoded from `PAYMENT-SIGNATURE`, v1's `X-PAYMENT`, or an MCP `_meta`
 * member), and the requirements a plan's price offers, which a payment must match.
 */
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { Base64EncodedRegex, safeBase64Decode, safeBase64Encode } from "@x402/core/utils";
import { scaleAtomic } from "../../../shared/limits/congestion.ts";
import type { Plan } from "../../../shared/policy/index.ts";
import { refuse } from "../../../shared/result.ts";
import type { SchemeContext } from "../contract.ts";
import { type Facilitator, x402PriceOf } from "./policy.ts";

/** Why an x402 payment was refused (on the wire: `x402_<reason>`). */
export type X402Error =
  | "malformed"
  | "not_offered"
  | "underpaid"
  | "invalid"
  | "spent"
  | "expired"
  | "settle_failed"
  | "facilitator_unavailable";

/** Largest encoded payment accepted, characters. */
const MAX_PAYMENT_CHARS = 16_384;

/** A payment read from a request. */
export interface X402Credential {
  payload: PaymentPayload;
  /** Where it came from: a header, or the MCP `_meta` of a `tools/call` (the receipt goes back there). */
  via: "http" | "mcp";
}

/**
 * The price of `cost` units under `plan`, atomic units; null when the plan has no x402 price.
 * @param factorPpm the congestion's price factor, parts per million (the bundle's, or the unit's, price × it, rounded up)
 */
function priceOf(plan: Plan, cost: number, factorPpm: number): bigint | null {
  const p = x402PriceOf(plan);
  if (!p) return null;
  return p.mode === "credits"
    ? BigInt(scaleAtomic(p.amount, factorPpm))
    : BigInt(scaleAtomic(p.amountPerUnit, factorPpm)) * BigInt(Math.max(1, cost));
}

/**
 * An x402 header value (`PAYMENT-REQUIRED`, `PAYMENT-RESPONSE`): base64 (standard alphabet,
 * padded) of the value's JSON, as `@x402/core/http`'s header encoders write it.
 */
export function encodeHeader(value: unknown): string {
  return safeBase64Encode(JSON.stringify(value));
}

/** A decoded payment, or null when it is not a v2 PaymentPayload with an EIP-3009 authorization. */
export function decodePayment(value: unknown): PaymentPayload | null {
  let payload: unknown = value;
  if (typeof value === "string") {
    if (value.length > MAX_PAYMENT_CHARS) return null;
    const text = value.trim();
    // As `@x402/core/http`'s decodePaymentSignatureHeader: base64 of a JSON value.
    if (!Base64EncodedRegex.test(text)) return null;
    try {
      payload = JSON.parse(safeBase64Decode(text));
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
export function authorizationOf(p: PaymentPayload): { from: string; nonce: string; validBefore?: unknown } {
  return (p.payload as { authorization: { from: string; nonce: string; validBefore?: unknown } }).authorization;
}

/**
 * The requirements offered for `cost` units under `plan`, one per accepted asset.
 * @param factorPpm the congestion's price factor, parts per million (default 10^6: the list price)
 */
export function requirementsFor(config: Facilitator, plan: Plan, cost: number, factorPpm = 1_000_000): PaymentRequirements[] {
  const amount = priceOf(plan, cost, factorPpm);
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
}

/** The offered requirement the payload claims to pay, or why it matches none. */
export function matchRequirement(
  config: Facilitator,
  payload: PaymentPayload,
  ctx: SchemeContext,
): { ok: true; requirement: PaymentRequirements } | { ok: false; reason: X402Error } {
  const a = payload.accepted;
  const offered = requirementsFor(config, ctx.plan, ctx.cost, ctx.congestion?.priceFactorPpm).find(
    (r) =>
      a.scheme === r.scheme &&
      a.network === r.network &&
      String(a.asset).toLowerCase() === r.asset.toLowerCase() &&
      String(a.payTo).toLowerCase() === r.payTo.toLowerCase(),
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
}
