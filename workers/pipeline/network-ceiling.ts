/**
 * The network-ceiling step: every request of one network (`CF-Connecting-IP` reduced to
 * the policy's prefix), tollbooth's own endpoints included and whatever credential it
 * carries, counted on the Workers Rate Limiting binding before any body, identity work or
 * Durable Object call: 429 over it (`Retry-After`: the policy's `networkRetryAfterSeconds`).
 */
import type { NetworkLimiter } from "../env.ts";
import { tooMany } from "../refusal/layers.ts";
import type { Refusal } from "../refusal/refusal.ts";
import type { Deps } from "./deps.ts";
import type { Arrival } from "./state.ts";

/**
 * Count one request of `network` (an `ip:` name, shared/identity/index.ts `networkFor`) against the
 * network ceiling, the Workers Rate Limiting binding `TOLLBOOTH_NETWORK_LIMIT`. Every path
 * that answers a request counts it here first: this step, the router's own answers
 * (workers/gateway/router.ts) and the admin API (workers/admin/index.ts).
 * @returns true when the network is over its ceiling (answer 429); false when under it, with
 *   no binding, or when the binding fails — approximate by design, its failure does not stop
 *   traffic (the caller and origin ceilings still hold); the failure is logged
 */
export async function overNetworkCeiling(limiter: NetworkLimiter | undefined, network: string): Promise<boolean> {
  if (!limiter) return false;
  try {
    return !(await limiter.limit({ key: network })).success;
  } catch (err) {
    console.error("tollbooth: network rate limiter failed", err);
    return false;
  }
}

/** The request, on; or the 429 of a network over its ceiling (under it, the layer off, or its binding failed: on). */
export async function networkCeiling(s: Arrival, deps: Pick<Deps, "network" | "policy">): Promise<Arrival | Refusal> {
  if (!(await overNetworkCeiling(deps.network, s.network))) return s;
  return tooMany("network", `over the ceiling of your network (${s.network})`, deps.policy.networkRetryAfterSeconds);
}
