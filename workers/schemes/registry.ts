/**
 * The payment schemes tollbooth knows, in the order a 402 lists them by default (proof of
 * work first: it is free and always there; the policy's `offerOrder` may put others first,
 * validated against these types: ./policy.ts `SCHEME_TYPES`), and the lookups the gateway makes among them. Adding a
 * scheme: its folder `workers/schemes/<name>/` exporting a `SchemeModule` (./contract.ts),
 * one entry in `SCHEMES` and `PUBLISHED` below, its refusals in `SchemeRefusal`, and its
 * payer on the agent side (docs/schemes.md).
 */

import type { Policy } from "../../shared/policy/index.ts";
import type { DenyReason, PayerIds, PaymentScheme, SchemeDeps, SchemeModule } from "./contract.ts";
import { type L402Refusal, l402 } from "./l402/index.ts";
import { type PowRefusal, pow } from "./pow/index.ts";
import { type X402Refusal, x402 } from "./x402/index.ts";

/** Every scheme, in the default offer order. */
export const SCHEMES: readonly SchemeModule[] = [pow, l402, x402];

/**
 * The order of the schemes' top-level entries in `GET /.well-known/tollbooth` (the order
 * the policy has always been published in; a new scheme goes last).
 */
export const PUBLISHED: readonly string[] = [pow, x402, l402].map((s) => s.type);

/** Every registered scheme's refusals as they reach the wire (`<prefix>_<reason>`). */
export type SchemeRefusal = PowRefusal | L402Refusal | X402Refusal;

/** Why a request was not admitted, every registered scheme's refusals included. */
export type GatewayDenyReason = DenyReason<SchemeRefusal>;

/**
 * The schemes a validated policy enables, in offer order.
 * @throws TypeError naming a missing secret or bad option of a scheme
 */
export function paymentSchemes(policy: Policy, deps: SchemeDeps): PaymentScheme[] {
  return SCHEMES.map((s) => s.make(policy, deps)).filter((s): s is PaymentScheme => s !== null);
}

/** The scheme whose `type` is `type`, if enabled. */
export function schemeOfType(schemes: readonly PaymentScheme[], type: string): PaymentScheme | undefined {
  return schemes.find((s) => s.type === type);
}

/** The scheme that refused with `reason` (by its prefix), if any. */
export function schemeOfReason(schemes: readonly PaymentScheme[], reason: string): PaymentScheme | undefined {
  return schemes.find((s) => reason.startsWith(`${s.prefix}_`));
}

/** The payer ids of every registered scheme (whether a policy enables it or not). */
export const PAYERS: readonly PayerIds[] = SCHEMES.flatMap((s) => (s.payers ? [s.payers] : []));
