/**
 * L402's part of the policy (shared/policy/index.ts `PolicySection`): the `l402` price of a
 * plan and the operator's `lightning` backend. Parsed with the rest of the policy by the
 * gateway's `parsePolicy` (workers/schemes/policy.ts); read here, typed, by the scheme.
 */
import * as z from "zod/mini";
import { int, matching, type Plan, type Policy, type PolicySection } from "../../../shared/policy/index.ts";

/**
 * The L402 price of a plan (docs/wire-contract.md §10): one payment of `sats` buys a
 * macaroon carrying `credits`, valid `ttlSeconds`.
 */
const l402Price = z.strictObject({
  /** Price of one bundle, satoshis. */
  sats: int(1, 100_000_000),
  /** Credits one payment buys (spent like an access token's). */
  credits: int(1, 1_000_000_000),
  /** Seconds a paid macaroon stays valid, from when its challenge was issued. */
  ttlSeconds: z._default(int(60, 30 * 86400), 3600),
});

/** Lightning backends an operator can issue invoices from (./invoices.ts). */
export const LIGHTNING_BACKENDS = ["lnd", "lnbits"] as const;

/**
 * The operator's Lightning backend for L402. Its secret (LND invoice macaroon in hex, or
 * LNbits invoice key) is the `TOLLBOOTH_LIGHTNING_SECRET` secret, never the policy.
 */
const lightningSchema = z.strictObject({
  /** `lnd` (REST, `POST /v1/invoices`) or `lnbits` (`POST /api/v1/payments`). */
  backend: z.enum(LIGHTNING_BACKENDS),
  /** Base URL of the backend's REST API (https; http on loopback for tests). */
  url: matching(/^https?:\/\/\S+$/),
  /** The L402 service name in macaroon caveats (`services=<service>:0`). */
  service: z._default(matching(/^[a-z0-9][a-z0-9-]{0,31}$/), "tollbooth"),
  /** Milliseconds to wait for an invoice; past it the 402 offers L402 as unavailable. */
  timeoutMs: z._default(int(100, 30_000), 3_000),
  /** Seconds an invoice can be paid. */
  invoiceExpirySeconds: z._default(int(60, 86_400), 600),
  /** Invoices one isolate may create per second (burst 10×); past it L402 is offered as unavailable (`busy`). */
  invoicesPerSecond: z._default(z.number().check(z.minimum(0.01), z.maximum(1000)), 2),
});

/** A plan's L402 price (sats per bundle of credits), validated. */
export type L402Price = z.output<typeof l402Price>;
/** The operator's Lightning backend, validated. */
export type Lightning = z.output<typeof lightningSchema>;

/** The L402 price of `plan`; null when L402 is not offered to it. */
export function l402PriceOf(plan: Plan): L402Price | null {
  return (plan.l402 as L402Price | null | undefined) ?? null;
}

/** The policy's Lightning backend; null when L402 is off everywhere. */
export function lightningOf(policy: Policy): Lightning | null {
  return (policy.lightning as Lightning | null | undefined) ?? null;
}

/**
 * The section: `l402` (the default plan's price; plans may override; null: not offered;
 * needs `lightning`) and `lightning` (null: L402 off everywhere).
 */
export const l402Section: PolicySection = {
  prices: { l402: l402Price },
  fields: { lightning: z._default(z.nullable(lightningSchema), null) },
  credits: (plan) => l402PriceOf(plan)?.credits ?? 0,
  costCap(plan) {
    const price = l402PriceOf(plan);
    return price ? { field: "l402.credits", max: price.credits } : null;
  },
  check(plan, policy, at) {
    if (l402PriceOf(plan) && !lightningOf(policy))
      throw new TypeError(`TOLLBOOTH_POLICY.${at}l402: an L402 price needs \`lightning\` (the backend that issues invoices)`);
  },
};
