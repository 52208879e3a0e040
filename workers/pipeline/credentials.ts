/**
 * The credentials step: the first scheme whose credential the request carries (in offer
 * order), else an access token (`Tollbooth-Token`). Each is verified statelessly here; what
 * it spends (a challenge's single use, credits) is the caller's object's, in the admission
 * step. A refused credential is not an answer yet: the object counts the request against the
 * caller's ceiling first, then refuses it with the credential's reason.
 * A payment, or a token bought by a payer, that names its payer makes the request the
 * payer's; the identity it came from must not be blocked (docs/admin.md "Blocking"): for a
 * payment, checked here once it verified (before the payer's object and the payment service
 * are asked); for a token, in the admission step, in parallel with the payer's object.
 * Also here: the session (`initialize`) or stream (GET) slot the request opens, and the
 * session it uses (its `Mcp-Session-Id`: the session's last use, for eviction).
 */

import type { Plan } from "../../shared/policy/index.ts";
import { fromBase64Url } from "../../shared/wire/encoding.ts";
import { TOKEN_HEADER } from "../../shared/wire/headers.ts";
import type { AdmitRequest, SessionUse, SlotRequest } from "../objects/caller-state.ts";
import { blocked, unavailable } from "../refusal/layers.ts";
import { Refusal } from "../refusal/refusal.ts";
import { PAYERS } from "../schemes/registry.ts";
import type { Deps } from "./deps.ts";
import { type Carrying, type Credential, type Known, record } from "./state.ts";

/** A random slot id (16 bytes, hex). */
function slotId(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** An `Mcp-Session-Id` as MCP allows it: 1 to 256 visible ASCII characters (0x21–0x7E; the spec sets no length, the gateway does). */
const SESSION_ID = /^[\x21-\x7e]{1,256}$/;
/** An `Mcp-Protocol-Version` worth remembering: a date-like token, at most 32 characters. */
const PROTOCOL_VERSION = /^[0-9A-Za-z._-]{1,32}$/;

/**
 * The session a request on the endpoint uses: its `Mcp-Session-Id` (when well formed) at
 * `nowMs`, with its `Mcp-Protocol-Version` (when well formed, and not on a DELETE); undefined otherwise.
 */
export function sessionUse(s: Pick<Known, "request" | "isEndpoint">, nowMs: number): SessionUse | undefined {
  const sessionId = s.isEndpoint ? s.request.headers.get("mcp-session-id") : null;
  if (sessionId === null || !SESSION_ID.test(sessionId)) return undefined;
  // A DELETE ends the session: its version (the origin may refuse it) is not the session's.
  const version = s.request.method === "DELETE" ? null : s.request.headers.get("mcp-protocol-version");
  return { sessionId, atMs: nowMs, ...(version !== null && PROTOCOL_VERSION.test(version) ? { version } : {}) };
}

/**
 * The slot a request opens: a session for an `initialize` (single message; at the cap, the
 * least recently used idle session is evicted when `limits.onSessionCap` is `evict`), a
 * stream for a GET on the endpoint (with the session it belongs to); none otherwise.
 * @param canEvict whether the gateway can end a session at the origin (`Deps.endSession`)
 */
export function slotFor(
  s: Pick<Known, "request" | "body" | "isEndpoint">,
  plan: Plan,
  nowMs: number,
  canEvict = true,
): SlotRequest | undefined {
  if (!s.isEndpoint) return undefined;
  if (s.request.method === "GET") {
    // The gateway cuts the stream at streamMaxSeconds; the slot outlives that by a margin.
    const session = sessionUse(s, nowMs);
    return {
      kind: "stream",
      id: slotId(),
      max: plan.limits.streams,
      expiresMs: nowMs + plan.limits.streamMaxSeconds * 1000 + 5_000,
      ...(session ? { sessionId: session.sessionId } : {}),
    };
  }
  if (s.request.method === "POST" && s.body && s.body.messages.some((m) => m.method === "initialize")) {
    const evict = canEvict && plan.limits.onSessionCap === "evict" ? { evict: true } : {};
    return { kind: "session", id: slotId(), max: plan.limits.sessions, expiresMs: nowMs + plan.limits.sessionTtlSeconds * 1000, ...evict };
  }
  return undefined;
}

/**
 * The payer an access token names, when its (unverified) `sub` is a registered scheme's
 * payer id (`SchemeModule.payers`); null otherwise. The token is then verified for that
 * caller: its signature, not this peek, decides.
 */
export function payerNamedBy(token: string): string | null {
  const payload = token.trim().split(".")[2];
  const bytes = payload ? fromBase64Url(payload) : null;
  if (!bytes) return null;
  try {
    const sub = (JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown }).sub;
    return typeof sub === "string" && PAYERS.some((p) => p.pattern.test(sub)) ? sub : null;
  } catch {
    return null;
  }
}

/** What a credential adds: the caller it names, what to ask the object, and the credential's state. */
interface Found {
  caller: string;
  admit: Pick<AdmitRequest, "redeem" | "tokenId" | "refused">;
  credential: Credential;
}

/** The credential of the first scheme the request carries one of; null when it carries none. */
async function schemeCredential(s: Known, deps: Pick<Deps, "policy" | "schemes" | "blockedUntil">): Promise<Found | Refusal | null> {
  const { identity, plan, keyring, nowMs, cost } = s;
  for (const scheme of deps.schemes) {
    const read = scheme.read({ headers: s.request.headers, body: s.body, raw: s.rawBody });
    if (read === null) continue;
    record(s, { scheme: scheme.type });
    // A credential carried in the body (MCP `_meta`) is removed from what the origin gets.
    const credential: Credential = {
      carried: true,
      via: scheme.type,
      paidAs: scheme.prefix,
      forwardBody: read.ok && read.body ? read.body : s.rawBody,
    };
    const check = read.ok
      ? await scheme.verify(read.credential, {
          policy: deps.policy,
          plan,
          keyring,
          caller: identity.id,
          nowMs,
          cost,
          congestion: s.congestion,
        })
      : read;
    if (!check.ok) {
      // Refused by the object after it counted the request (a blocked identity: 403 there).
      const refusedDetail = check.detail !== undefined ? { refusedDetail: check.detail } : {};
      return {
        caller: identity.id,
        admit: { refused: `${scheme.prefix}_${check.reason}` as AdmitRequest["refused"] },
        credential: { ...credential, refusedBy: scheme, ...refusedDetail },
      };
    }
    if (scheme.namesPayer) {
      // Invariant: a payment that makes the request its payer's does not walk around a block
      // of the identity it came from: checked before the payer's object, and so before the
      // payment service is asked (no /verify, no /settle, nothing forwarded for a blocked
      // caller). After the stateless check: a forged payment costs no lookup.
      let until: number | null;
      try {
        until = await deps.blockedUntil(identity.id, nowMs);
      } catch (err) {
        console.error("tollbooth: CallerState.blocked failed", err);
        return unavailable("store", err);
      }
      if (until !== null) return blocked((until - nowMs) / 1000);
    }
    const r = check.redemption;
    const caller = check.identity ?? identity.id;
    // A one-time credential (a solution, a bundle of credits) buys an access token the caller
    // keeps; a reusable one is its own token; a per-request payment buys none.
    // The token says whether money bought it: its requests' class at the origin ceiling.
    const pd = scheme.admits === "paid" ? { pd: 1 as const } : {};
    const tokenClaims =
      !r.reusable && check.token !== false
        ? { tokenClaims: { sub: caller, jti: r.jti, exp: r.tokenExpiresMs / 1000, cr: r.credits, ...pd } }
        : {};
    const settlement = scheme.settle && read.ok ? { settlement: { scheme, credential: read.credential } } : {};
    return {
      caller,
      admit: { redeem: r },
      credential: { ...credential, payment: check.paid, cls: scheme.admits, ...tokenClaims, ...settlement },
    };
  }
  return null;
}

/** The access token the request carries (a token bought by a payer names that payer: it is verified as theirs); null when none. */
async function tokenCredential(s: Known, deps: Pick<Deps, "tokens">): Promise<Found | null> {
  const header = s.request.headers.get(TOKEN_HEADER);
  if (header === null) return null;
  record(s, { scheme: "token" });
  const payer = payerNamedBy(header);
  const check = await deps.tokens(s.keyring)(header.trim(), payer ?? s.identity.id, s.nowMs);
  const credential: Credential = { carried: true, via: "token", paidAs: "token", forwardBody: s.rawBody };
  if (!check.ok) return { caller: s.identity.id, admit: { refused: `token_${check.reason}` }, credential };
  // Money bought it (`pd`; a token signed before `pd` existed and bought by a payer names that payer), or work did.
  const cls = check.claims.pd === 1 || payer !== null ? "paid" : "worked";
  return { caller: payer ?? s.identity.id, admit: { tokenId: check.claims.jti }, credential: { ...credential, cls } };
}

/** The request with its caller, its credential and what to ask the caller's object; or a refusal (a blocked payer, an unreachable state). */
export async function credentials(
  s: Known,
  deps: Pick<Deps, "policy" | "schemes" | "blockedUntil" | "tokens" | "endSession">,
): Promise<Carrying | Refusal> {
  const { plan, nowMs, cost } = s;
  const slot = slotFor(s, plan, nowMs, deps.endSession !== null);
  const session = sessionUse(s, nowMs);
  const found = (await schemeCredential(s, deps)) ?? (await tokenCredential(s, deps));
  if (found instanceof Refusal) return found;
  if (found && found.caller !== s.identity.id) record(s, { caller: found.caller });
  const admit: AdmitRequest = {
    cost,
    nowMs,
    bucket: plan.bucket,
    ceiling: plan.ceiling,
    challenge: plan.challenge,
    ...(slot ? { slot } : {}),
    ...(session ? { session } : {}),
    ...found?.admit,
  };
  const credential = found?.credential ?? { carried: false, forwardBody: s.rawBody };
  // Invariant: no scheme's credential in the body (a payment in `_meta`) reaches the origin,
  // whichever credential the request paid with, or none.
  let forwardBody = credential.forwardBody;
  if (s.body && forwardBody) for (const scheme of deps.schemes) forwardBody = scheme.stripBody?.(forwardBody) ?? forwardBody;
  return { ...s, caller: found?.caller ?? s.identity.id, credential: { ...credential, forwardBody }, slot, admit };
}
