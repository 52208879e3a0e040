/**
 * x402's part of the policy (shared/policy/index.ts `PolicySection`): the `x402` price of a
 * plan, the `facilitator` (where payments are verified and settled, the payee, the assets)
 * and `x402ToolResult`. Parsed with the rest of the policy by the gateway's `parsePolicy`
 * (workers/schemes/policy.ts); read here, typed, by the scheme.
 */
import * as z from "zod/mini";
import { int, matching, type Plan, type Policy, type PolicySection } from "../../../shared/policy/index.ts";

/** A positive integer in atomic units of a token (e.g. 10000 = 0.01 USDC at 6 decimals), as a decimal string. */
const atomic = matching(/^[1-9][0-9]{0,30}$/);

/**
 * The x402 price of a plan (docs/wire-contract.md §12): `credits` mode, one payment of
 * `amount` buys an access token of `credits` valid `ttlSeconds`; `per-request` mode, each
 * request pays `amountPerUnit` × its cost.
 */
const x402Price = z.union([
  z.strictObject({
    mode: z.literal("credits"),
    /** Price of one bundle, atomic units of the asset. */
    amount: atomic,
    /** Credits one payment buys. */
    credits: int(1, 1_000_000_000),
    /** Seconds the access token it buys lives. */
    ttlSeconds: z._default(int(60, 30 * 86400), 3600),
  }),
  z.strictObject({
    mode: z.literal("per-request"),
    /** Price of one unit of cost, atomic units of the asset. */
    amountPerUnit: atomic,
  }),
]);

/**
 * Where x402 payments go and how they settle: the facilitator (x402 v2 `/verify`, `/settle`),
 * the payee, and the assets accepted. An optional `Authorization` value for the facilitator is
 * the `TOLLBOOTH_FACILITATOR_AUTH` secret, never the policy.
 */
const facilitatorSchema = z.strictObject({
  /** The facilitator's base URL (https; http on loopback for tests). */
  url: matching(/^https?:\/\/\S+$/),
  /** Milliseconds to wait for `/verify` or `/settle`. */
  timeoutMs: z._default(int(100, 120_000), 10_000),
  /** The operator's address that receives payments. */
  payTo: matching(/^0x[0-9a-fA-F]{40}$/),
  /** Assets accepted, each an EIP-3009 token on an EVM network (CAIP-2), with its EIP-712 domain name and version. */
  assets: z
    .array(
      z.strictObject({
        network: matching(/^eip155:[1-9][0-9]{0,19}$/),
        asset: matching(/^0x[0-9a-fA-F]{40}$/),
        name: matching(/^[\x20-\x7e]{1,64}$/),
        version: matching(/^[\x20-\x7e]{1,16}$/),
      }),
    )
    .check(z.minLength(1)),
  /** Seconds a payment authorization may take to settle (`maxTimeoutSeconds` of the requirement). */
  maxTimeoutSeconds: z._default(int(10, 3600), 120),
});

/** A plan's x402 price, validated. */
export type X402Price = z.output<typeof x402Price>;
/** The policy's facilitator, payee and assets, validated. */
export type Facilitator = z.output<typeof facilitatorSchema>;

/** The x402 price of `plan`; null when x402 is not offered to it. */
export function x402PriceOf(plan: Plan): X402Price | null {
  return (plan.x402 as X402Price | null | undefined) ?? null;
}

/** The policy's facilitator; null when x402 is off everywhere. */
export function facilitatorOf(policy: Policy): Facilitator | null {
  return (policy.facilitator as Facilitator | null | undefined) ?? null;
}

/** Whether the policy asks for over-budget `tools/call`s to be answered as MCP tool results (`x402ToolResult`). */
export function toolResultWanted(policy: Policy): boolean {
  return policy.x402ToolResult === true;
}

/** Credits one x402 payment buys under `plan`: a bundle's, any cost when paid per request, 0 when not offered. */
export function x402Credits(plan: Plan): number {
  const price = x402PriceOf(plan);
  return price ? (price.mode === "credits" ? price.credits : Number.MAX_SAFE_INTEGER) : 0;
}

/**
 * The section: `x402` (the default plan's price; plans may override; null: not offered;
 * needs `facilitator`), `facilitator` (null: x402 off everywhere) and `x402ToolResult`
 * (answer an over-budget single `tools/call` the MCP way, x402 `transports-v2/mcp.md`: HTTP
 * 200 with a tool result `isError: true` carrying the PaymentRequired, instead of a 402).
 */
export const x402Section: PolicySection = {
  prices: { x402: x402Price },
  fields: {
    facilitator: z._default(z.nullable(facilitatorSchema), null),
    x402ToolResult: z._default(z.boolean(), false),
  },
  credits: x402Credits,
  costCap(plan) {
    const price = x402PriceOf(plan);
    return price?.mode === "credits" ? { field: "x402.credits", max: price.credits } : null;
  },
  check(plan, policy, at) {
    if (x402PriceOf(plan) && !facilitatorOf(policy))
      throw new TypeError(`TOLLBOOTH_POLICY.${at}x402: an x402 price needs \`facilitator\` (where payments are verified and settled)`);
  },
};
