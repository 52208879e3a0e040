/**
 * The payment schemes tollbooth offers, in the order a 402 lists them (proof of work first:
 * it is free and always there). Adding a scheme: one file beside these implementing
 * `PaymentScheme` (./scheme.ts), one entry below, its policy section in shared/policy/index.ts,
 * and its payer on the agent side (shared/agent/payers/).
 */
import type { TokenError } from "../../shared/credentials/token.ts";
import { l402Scheme, type L402Refusal } from "./l402.ts";
import { powScheme, type PowRefusal } from "./pow.ts";
import type { PaymentScheme, SchemeDeps } from "./scheme.ts";
import { x402Scheme, type X402Refusal } from "./x402.ts";

export type { CredentialSource, Offer, OfferContext, PaymentScheme, Redeemable, SchemeContext, SchemeDeps, Settled, Unavailable } from "./scheme.ts";

/** Every scheme's factory, in offer order. */
const FACTORIES = [powScheme, l402Scheme, x402Scheme];

/**
 * Why a request was not admitted, as `error.data.reason`: a layer, or a refused credential
 * `<prefix>_<reason>` (docs/wire-contract.md §1, §10).
 */
export type DenyReason =
  | "over_budget"
  | "ceiling"
  | "sessions"
  | "streams"
  /** An operator blocked the caller (admin API, docs/admin.md): HTTP 403, refused before any credential is redeemed. */
  | "blocked"
  | `token_${TokenError | "unknown" | "exhausted"}`
  | PowRefusal
  | L402Refusal
  | X402Refusal;

/**
 * The schemes a validated policy enables.
 * @throws TypeError naming a missing secret or bad option of a scheme
 */
export function paymentSchemes(policy: Parameters<(typeof FACTORIES)[number]>[0], deps: SchemeDeps): PaymentScheme[] {
  return FACTORIES.map((make) => make(policy, deps)).filter((s): s is PaymentScheme => s !== null);
}

/** The scheme whose `type` is `type`, if enabled. */
export function schemeOfType(schemes: readonly PaymentScheme[], type: string): PaymentScheme | undefined {
  return schemes.find((s) => s.type === type);
}

/** The scheme that refused with `reason` (by its prefix), if any. */
export function schemeOfReason(schemes: readonly PaymentScheme[], reason: string): PaymentScheme | undefined {
  return schemes.find((s) => reason.startsWith(`${s.prefix}_`));
}
