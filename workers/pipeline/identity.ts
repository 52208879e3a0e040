/**
 * The identity step: who is calling (shared/identity/index.ts; unverified callers share their
 * network's object and free budget), its plan, and what the request costs under it. A
 * request no free bucket, solve or payment could ever pay for is an error (400
 * `cost_too_high`), not an endless 402. With an origin ceiling, the congestion now
 * (docs/allocation.md): the plan's challenge asks its extra bits (at most 32).
 */
import { bodyCost, ErrorCode } from "../../shared/jsonrpc.ts";
import type { Congestion } from "../../shared/limits/congestion.ts";
import type { Plan } from "../../shared/policy/index.ts";
import { describeRequest } from "../refusal/over-budget.ts";
import { Refusal } from "../refusal/refusal.ts";
import { maxPayableCost, planFor } from "../schemes/policy.ts";
import type { Deps } from "./deps.ts";
import { OAUTH_METADATA } from "./paths.ts";
import { type Known, type Read, record } from "./state.ts";

/** `plan` with its challenge's difficulty raised by the congestion's extra bits (at most 32); `plan` itself when there are none. */
export function pricedPlan(plan: Plan, c: Congestion | null): Plan {
  if (!c || c.extraBits === 0) return plan;
  return { ...plan, challenge: { ...plan.challenge, difficulty: Math.min(32, plan.challenge.difficulty + c.extraBits) } };
}

/** The request with its caller, plan and cost; or the 400 of a request that costs more than anything can pay. */
export async function identity(s: Read, deps: Pick<Deps, "policy" | "identify" | "keyring" | "origin">): Promise<Known | Refusal> {
  const identity = await deps.identify(s.request.headers);
  const congestion = deps.origin?.congestion() ?? null;
  const plan = pricedPlan(planFor(deps.policy, identity.verified ? identity.plan : undefined), congestion);
  const cost = s.body ? bodyCost(plan, s.body) : s.isEndpoint ? 0 : OAUTH_METADATA.test(s.url.pathname) ? 0 : plan.costs.otherPaths;
  const maxCost = maxPayableCost(plan);
  record(s, { caller: identity.id, network: identity.network.replace(/^ip:/, ""), plan: plan.name, cost });
  if (cost > maxCost) {
    const what = describeRequest(s.request.method, s.url.pathname, s.body);
    return new Refusal({
      status: 400,
      code: "cost_too_high",
      rpcCode: ErrorCode.InvalidRequest,
      message: `Invalid Request: ${what} costs ${cost}; at most ${maxCost} can be admitted at once (plan ${plan.name}): send fewer messages per batch`,
      data: { cost, maxCost, plan: plan.name },
      reason: { decision: "bad_request", reason: "cost_too_high" },
    });
  }
  return { ...s, identity, plan, congestion, cost, keyring: await deps.keyring() };
}
