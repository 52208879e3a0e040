/**
 * The eviction step: a caller at its session cap whose `initialize` the caller's object
 * admitted with a victim (`AdmitResult.evict`, `limits.onSessionCap: "evict"`) gets its least
 * recently used idle session ended at the origin first — a DELETE on its behalf
 * (workers/proxy/end-session.ts) — and the new session is forwarded only once the origin ended
 * the old one: its DELETE answered 2xx, or 404 (it no longer knew it). Anything else (405: the
 * origin does not let clients end sessions; 400, 401, 403, 5xx, no answer) leaves the victim
 * open and counted, and the new session is refused 429 `sessions`, its charge given back.
 * Invariant: the origin never holds more of a caller's sessions than the cap.
 */
import { CREDITS_HEADER, TOKEN_HEADER } from "../../shared/wire/headers.ts";
import { tooMany } from "../refusal/layers.ts";
import type { Refusal } from "../refusal/refusal.ts";
import type { Deps, EndSessionOutcome } from "./deps.ts";
import { giveBack, heldBy } from "./give-back.ts";
import type { Admitted } from "./state.ts";

/** Strategies whose identity is the value of one credential header: every session of such a caller was opened with it. */
const CREDENTIAL_HEADER: Readonly<Record<string, "authorization" | "api-key">> = {
  jwt: "authorization",
  "authorization-unverified": "authorization",
  "api-key": "api-key",
  "api-key-unverified": "api-key",
};

/**
 * The credential header the eviction DELETE carries: the one whose value names the caller
 * (a JWT subject's bearer token, a hashed `Authorization`, an API key), when the request is
 * the identity's own (not a payer's); none for a network caller (its sessions may be other
 * users', never to be sent one user's credential).
 */
function callerCredential(s: Admitted, deps: Pick<Deps, "policy">): Record<string, string> {
  const which = s.caller === s.identity.id ? CREDENTIAL_HEADER[s.identity.strategy] : undefined;
  const name = which === "authorization" ? "authorization" : which === "api-key" ? deps.policy.identity.apiKeyHeader : undefined;
  const value = name !== undefined ? s.request.headers.get(name) : null;
  return name !== undefined && value !== null ? { [name]: value } : {};
}

/** What the origin's answer to the eviction DELETE means for the slot: ended (2xx, 404) or not. */
export function evictionEnded(outcome: EndSessionOutcome): boolean {
  return typeof outcome === "number" && (outcome === 404 || (outcome >= 200 && outcome < 300));
}

/** The request on its way (no eviction asked, or the victim ended), or the 429 `sessions` when the origin did not end it. */
export async function eviction(s: Admitted, deps: Pick<Deps, "endSession" | "leases" | "policy">): Promise<Admitted | Refusal> {
  const victim = s.decision.evict;
  if (!victim) return s;
  const { evict: _, ...decision } = s.decision;
  const outcome = deps.endSession
    ? await deps.endSession({
        caller: s.caller,
        path: deps.policy.endpoint,
        sessionId: victim.sessionId,
        version: victim.version,
        credential: callerCredential(s, deps),
        url: s.url,
      })
    : "unreachable";
  const ended = evictionEnded(outcome);
  s.ctx.defer("CallerState.evicted", s.store.evicted({ slotId: victim.slotId, ended }));
  // From here on the victim is settled: nothing given back later unmarks it.
  const on: Admitted = { ...s, decision };
  if (ended) return on;
  // Given back as the origin ceiling does: a payment still to complete buys nothing; the slot goes with the charge.
  const taken = heldBy(on, deps, "taken");
  void giveBack(taken, s.ctx.defer);
  const headers = { ...s.headers };
  if (taken.kind === "payment") {
    void giveBack(heldBy(on, deps, "slot"), s.ctx.defer);
    delete headers[TOKEN_HEADER];
    delete headers[CREDITS_HEADER];
  } else if (decision.paidBy === "token" && decision.credits !== undefined && headers[CREDITS_HEADER] !== undefined) {
    headers[CREDITS_HEADER] = String(decision.credits + s.cost);
  }
  const max = s.plan.limits.sessions;
  const answer =
    typeof outcome === "number" ? `answered ${outcome}` : outcome === "timeout" ? "did not answer in time" : "could not be reached";
  const why = outcome === 405 ? " (it does not let clients end sessions: they end at its own will, or after limits.sessionTtlSeconds)" : "";
  const message = `over the cap of ${max} open sessions per caller, and the origin did not end the least recently used one: its DELETE ${answer}${why}`;
  return tooMany("sessions", message, (victim.expiresMs - s.nowMs) / 1000, headers, { max });
}
