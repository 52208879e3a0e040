/**
 * `GET /.well-known/tollbooth/challenge[?type=<scheme>]`: a fresh challenge for this caller at
 * its current difficulty (default: the first scheme's, a proof of work), as a 402 would
 * offer it. Counts against the caller's ceiling (429). A scheme not offered to the caller's
 * plan: 400; one that cannot be offered now (its backend down or busy): 503, `Retry-After: 5`.
 */
import { WWW_AUTHENTICATE_HEADER } from "../../shared/wire/headers.ts";
import type { Deps } from "../pipeline/deps.ts";
import { json } from "../refusal/problem.ts";
import { schemeOfType } from "../schemes/registry.ts";
import { type Asker, problem } from "./answers.ts";
import { statusOf } from "./status.ts";

/** Answer `GET /challenge`. */
export async function challenge(
  deps: Pick<Deps, "policy" | "schemes" | "callers" | "limitHeaders">,
  who: Asker,
  url: URL,
): Promise<Response> {
  const { plan, nowMs, caller, keyring, congestion } = who;
  const seen = await statusOf(deps, who);
  if (seen instanceof Response) return seen;
  const { status, headers } = seen;
  const difficulty = status.difficulty ?? plan.challenge.difficulty;
  const type = url.searchParams.get("type") ?? deps.schemes[0]!.type;
  const scheme = schemeOfType(deps.schemes, type);
  if (!scheme || scheme.credits(plan) === 0) {
    return problem(
      400,
      "invalid_request",
      `No challenge of type ${JSON.stringify(type)} for plan ${plan.name}; offered: ${deps.schemes
        .filter((s) => s.credits(plan) > 0)
        .map((s) => s.type)
        .join(", ")}`,
    );
  }
  const { network, verified: trusted } = who.identity;
  const offer = await scheme.offer({
    policy: deps.policy,
    plan,
    keyring,
    caller,
    nowMs,
    cost: 0,
    difficulty,
    url,
    what: `${type} challenge`,
    reason: "requested",
    congestion,
    network,
    trusted,
  });
  if (!offer.ok) return problem(503, offer.reason, offer.message, { type: offer.type }, headers, 5);
  return json(200, offer.json, {
    ...headers,
    ...offer.headers,
    ...(offer.challenge !== undefined ? { [WWW_AUTHENTICATE_HEADER]: offer.challenge } : {}),
  });
}
