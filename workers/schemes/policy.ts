/**
 * The gateway's policy: shared/policy/index.ts with every registered scheme's section
 * (workers/schemes/registry.ts). The Worker, `npm run check-config` and the tests parse
 * policies here; shared/policy knows no scheme. Re-exports the rest of shared/policy.
 */
import { maxPayableCostWith, type Plan, type Policy, type PolicySection, parsePolicyWith } from "../../shared/policy/index.ts";
import { SCHEMES } from "./registry.ts";

export * from "../../shared/policy/index.ts";

/** The sections of every registered scheme, in registry order. */
export const POLICY_SECTIONS: readonly PolicySection[] = SCHEMES.flatMap((s) => (s.policy ? [s.policy] : []));

/** Every registered scheme's type, in registry order: what `offerOrder` may name, and its default. */
export const SCHEME_TYPES: readonly string[] = SCHEMES.map((s) => s.type);

/**
 * Validate a policy and fill in defaults (shared/policy/index.ts `parsePolicyWith`, with every
 * registered scheme's section; `offerOrder` checked against the registered types).
 * @param input a parsed JSON value, a JSON string, or undefined (all defaults)
 * @throws TypeError naming the first bad field, e.g. `TOLLBOOTH_POLICY.bucket.capacity: ...`
 */
export function parsePolicy(input: unknown): Policy {
  return parsePolicyWith(POLICY_SECTIONS, input, SCHEME_TYPES);
}

/**
 * Most units one request may cost under `plan` and still be payable (by the free bucket, a
 * solve, or one payment of a registered scheme); unbounded when a scheme pays per request.
 */
export function maxPayableCost(plan: Plan): number {
  return maxPayableCostWith(POLICY_SECTIONS, plan);
}
