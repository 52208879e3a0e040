/**
 * `GET /.well-known/tollbooth`: the policy as a client needs it — plans, prices, buckets,
 * ceilings, the challenge, limits, identity settings, and what each enabled scheme publishes
 * (`PaymentScheme.publicPlan` / `publicPolicy`: never a secret or a backend's URL).
 */
import { type Plan, type Policy, planFor } from "../../shared/policy/index.ts";
import type { PaymentScheme } from "../schemes/contract.ts";
import { PUBLISHED, schemeOfType } from "../schemes/registry.ts";
import { gatewayUrls } from "./urls.ts";

/** A plan as published: what a caller of it pays and gets (no secrets). */
function publicPlan(plan: Plan, schemes: readonly PaymentScheme[]): Record<string, unknown> {
  return {
    bucket: plan.bucket,
    ceiling: plan.ceiling,
    costs: plan.costs,
    challenge: { types: schemes.filter((s) => s.credits(plan) > 0).map((s) => s.type), algorithm: "sha256", ...plan.challenge },
    overBudget: plan.overBudget,
    limits: plan.limits,
    // Prices published only where their scheme is offered.
    ...Object.assign({}, ...schemes.map((s) => s.publicPlan?.(plan) ?? {})),
  };
}

/** The policy as `GET /.well-known/tollbooth` publishes it. */
export function publicPolicy(policy: Policy, schemes: readonly PaymentScheme[], url: URL): Record<string, unknown> {
  const plans = Object.fromEntries(Object.values(policy.plans).map((p) => [p.name, publicPlan(p, schemes)]));
  return {
    realm: policy.realm,
    endpoint: policy.endpoint,
    // The default plan's settings at the top level, as before plans existed.
    ...publicPlan(planFor(policy, undefined), schemes),
    defaultPlan: policy.defaultPlan,
    plans,
    identity: {
      strategies: policy.identity.strategies,
      apiKeyHeader: policy.identity.apiKeyHeader,
      ipv4Prefix: policy.identity.ipv4Prefix,
      ipv6Prefix: policy.identity.ipv6Prefix,
    },
    originCeiling: policy.originCeiling,
    networkRetryAfterSeconds: policy.networkRetryAfterSeconds,
    maxBodyBytes: policy.maxBodyBytes,
    bodyTimeoutMs: policy.bodyTimeoutMs,
    maxJsonDepth: policy.maxJsonDepth,
    token: { ttlSeconds: policy.token.ttlSeconds, header: "Tollbooth-Token" },
    solutionHeader: "Tollbooth-Solution",
    // What a client needs to pay with each enabled scheme (never a secret), in the published order.
    ...Object.assign({}, ...PUBLISHED.map((type) => schemeOfType(schemes, type)?.publicPolicy?.() ?? {})),
    ...gatewayUrls(url),
  };
}
