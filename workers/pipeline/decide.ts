/**
 * `decide(ctx, deps)`: the gateway's decision for one request, framework-free — named steps,
 * one file each, in the order each refusal answers before the origin is asked
 * (docs/pipeline.md):
 * 1. `originHeader`   the Origin header (DNS rebinding): 403
 * 2. `networkCeiling` every request of a network, no Durable Object call: 429
 *    (then tollbooth's own endpoints, workers/endpoints/, answer theirs)
 * 3. `body`           one reading: size 413, time 408, media type 415, JSON 400, method 405
 *    `mcpHeaders`     `Mcp-Method` / `Mcp-Name` match the body: 400
 * 4. `identity`       the caller, its plan, the cost (more than anything pays: 400); the
 *                     origin's congestion (the challenge's extra bits)
 * 5. `credentials`    a scheme's credential or an access token, verified statelessly (at the
 *                     congestion's prices)
 * 6. `originCeiling`  all callers together, by admission class, usually from this isolate's
 *                     lease: paid 429, the others 402 with the ways up and the congestion
 * 7. `admission`      the caller's object or its lease: block 403, ceiling 429, caps 429, the
 *                     credential redeemed or refused, the free bucket (a free request pays the
 *                     congestion's free share): over budget 402 / 429
 *    `eviction`       at the session cap, the caller's least recently used idle session ended
 *                     at the origin first (a DELETE on its behalf); not ended: 429
 * 8. `settlement`     a payment completed before the origin is asked
 * A request refused after step 6 gives its origin units back; one forwarded spends them.
 * Then the proxy forwards the request, and `afterOrigin` finishes it (sessions, a receipt,
 * headers); whatever a refused or unanswered request took is returned by `giveBack`.
 * Each step takes the request state and returns the next one or a `Refusal` (./state.ts).
 */
import { networkFor } from "../../shared/identity/index.ts";
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import { ownEndpoints } from "../endpoints/index.ts";
import { Refusal } from "../refusal/refusal.ts";
import { admission } from "./admission.ts";
import { body } from "./body.ts";
import { credentials } from "./credentials.ts";
import type { Deps } from "./deps.ts";
import { eviction } from "./eviction.ts";
import { giveBack } from "./give-back.ts";
import { identity } from "./identity.ts";
import { mcpHeaders } from "./mcp-headers.ts";
import { networkCeiling } from "./network-ceiling.ts";
import { originCeiling } from "./origin-ceiling.ts";
import { originHeader } from "./origin-header.ts";
import { settlement } from "./settlement.ts";
import { type Arrival, type Cleared, type Metered, type Outcome, type Read, type RequestContext, record } from "./state.ts";

/** Refused by a step, after state `s` (its body, when read, gives the answer its ids). */
function refused(s: Arrival | Read, refusal: Refusal): Outcome {
  return { kind: "refused", refusal, body: "body" in s ? s.body : null, record: s.record };
}

/** Admitted: what paid (the credential's scheme prefix, a token, the bucket or nothing), whether it redeemed a credential, its payment, the credits left, whether a lease admitted it. */
function admitted(s: Cleared): Outcome {
  const { via, paidAs, payment } = s.credential;
  const redeemed = s.admit.redeem !== undefined && s.decision.minted === true;
  record(s, {
    caller: s.caller,
    scheme: via,
    decision: "admitted",
    reason: paidAs ?? s.decision.paidBy ?? "free",
    redeemed: redeemed || undefined,
    paid: redeemed && payment && via !== undefined ? { scheme: via, ...payment } : undefined,
    credits: s.decision.credits,
    leased: s.local !== null,
  });
  return { kind: "admitted", state: s, record: s.record };
}

/** Refused after the origin ceiling: its units go back to this isolate's lease (they no longer count as demand either). */
function refusedAfterOrigin(s: Metered, deps: Deps, refusal: Refusal): Outcome {
  if (s.origin) void giveBack({ kind: "origin", origin: deps.origin!, receipt: s.origin });
  return refused(s, refusal);
}

/** Decide one request: refused (with the step's refusal), answered by tollbooth's own endpoints, or admitted (metered or not). */
export async function decide(ctx: RequestContext, deps: Deps): Promise<Outcome> {
  // Until the identity is known, the request is its network's (as an `ip` caller).
  const { ipv4Prefix, ipv6Prefix } = deps.policy.identity;
  const network = networkFor(ctx.request.headers, ipv4Prefix, ipv6Prefix);
  const arrived: Arrival = { ctx, request: ctx.request, url: ctx.url, network, record: {} };
  record(arrived, { caller: network, network: network.replace(/^ip:/, "") });
  const checked = originHeader(arrived, deps);
  if (checked instanceof Refusal) return refused(arrived, checked);
  const counted = await networkCeiling(checked, deps);
  if (counted instanceof Refusal) return refused(arrived, counted);
  const path = ctx.url.pathname;
  if (path === WELL_KNOWN || path.startsWith(`${WELL_KNOWN}/`))
    return { kind: "answered", response: await ownEndpoints(counted, deps), record: arrived.record };
  const read = await body(counted, deps);
  if (read instanceof Refusal) return refused(arrived, read);
  const described = mcpHeaders(read);
  if (described instanceof Refusal) return refused(read, described);
  const known = await identity(described, deps);
  if (known instanceof Refusal) return refused(read, known);
  const carrying = await credentials(known, deps);
  if (carrying instanceof Refusal) return refused(known, carrying);
  const metered = await originCeiling(carrying, deps);
  if (metered instanceof Refusal) return refused(carrying, metered);
  const taken = await admission(metered, deps);
  if (taken instanceof Refusal) return refusedAfterOrigin(metered, deps, taken);
  if ("unmetered" in taken) {
    // The caller's object timed out or could not be reached and the policy says `onStoreError: "open"`: forwarded unmetered.
    if (metered.origin) deps.origin!.confirm(metered.origin);
    record(taken, { caller: taken.caller, decision: "admitted_unmetered", reason: `store_${taken.unmetered}` });
    return { kind: "unmetered", state: taken, record: taken.record };
  }
  const made = await eviction(taken, deps);
  if (made instanceof Refusal) return refusedAfterOrigin(metered, deps, made);
  const cleared = await settlement(made, deps);
  if (cleared instanceof Refusal) return refusedAfterOrigin(metered, deps, cleared);
  // Forwarded: its units of the origin ceiling are spent, whether or not the origin answers.
  if (metered.origin) deps.origin!.confirm(metered.origin);
  return admitted(cleared);
}
