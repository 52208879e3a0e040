/**
 * The network-ceiling step: every request of one network (`CF-Connecting-IP` reduced to
 * the policy's prefix), tollbooth's own endpoints included and whatever credential it
 * carries, counted on the Workers Rate Limiting binding before any body, identity work or
 * Durable Object call: 429 over it (`Retry-After`: the policy's `networkRetryAfterSeconds`).
 */
import { overNetworkCeiling } from "../gate.ts";
import { tooMany } from "../refusal/layers.ts";
import type { Refusal } from "../refusal/refusal.ts";
import type { Deps } from "./deps.ts";
import type { Arrival } from "./state.ts";

/** The request, on; or the 429 of a network over its ceiling (under it, the layer off, or its binding failed: on). */
export async function networkCeiling(s: Arrival, deps: Pick<Deps, "network" | "policy">): Promise<Arrival | Refusal> {
  if (!(await overNetworkCeiling(deps.network, s.network))) return s;
  return tooMany("network", `over the ceiling of your network (${s.network})`, deps.policy.networkRetryAfterSeconds);
}
