/**
 * `POST /.well-known/tollbooth/verify` (`{ "type": <scheme>, … }`, default the first scheme's:
 * a solution): redeem a credential for an access token without making a request →
 * `{ token, expires_in, credits }`. Counts against the caller's ceiling (429). A payment that
 * names its payer buys for the payer, once the identity it came from was found not blocked;
 * a payment to complete is claimed gateway-wide and settled, as on the endpoint
 * (workers/pipeline/settlement.ts), its balance withdrawn when it does not complete (and its
 * spent marks lifted when the scheme says it was left untouched, `retryable`).
 * Refusals in the scheme's words (`PaymentScheme.verifyRefusal`).
 */
import { signToken } from "../../shared/credentials/token.ts";
import { type Result, refuse } from "../../shared/result.ts";
import type { CallerStore } from "../objects/stores.ts";
import type { Deps } from "../pipeline/deps.ts";
import { giveBack } from "../pipeline/give-back.ts";
import { json } from "../refusal/problem.ts";
import type { PaymentScheme, Redeemable, RedemptionFacts } from "../schemes/contract.ts";
import { schemeOfType } from "../schemes/registry.ts";
import { type Asker, blocked, overCeiling, problem } from "./answers.ts";
import { gatewayUrls } from "./urls.ts";

/** The scheme's refusal of its credential at `/verify`, as problem JSON. */
function refused(scheme: PaymentScheme, reason: string, headers?: Record<string, string>, facts?: RedemptionFacts): Response {
  const r = scheme.verifyRefusal(reason, facts);
  return problem(r.status, r.error, r.message, r.data, headers);
}

/** The body's credential and its scheme, or the 400 that says what the body lacks. */
function credentialIn(
  deps: Pick<Deps, "schemes">,
  bytes: Uint8Array | null,
): { scheme: PaymentScheme; read: ReturnType<PaymentScheme["readJson"]> } | Response {
  let params: unknown;
  try {
    params = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes ?? new Uint8Array()));
  } catch {
    return problem(400, "invalid_request", "The body is not valid JSON");
  }
  if (typeof params !== "object" || params === null || Array.isArray(params)) {
    return problem(400, "invalid_request", "The body must be a JSON object with the challenge fields and nonce");
  }
  const fields = params as Record<string, unknown>;
  // No `type`: the first scheme's (always enabled: a solution, as before schemes had types).
  const type = fields.type === undefined ? deps.schemes[0]!.type : fields.type;
  const scheme = typeof type === "string" ? schemeOfType(deps.schemes, type) : undefined;
  if (!scheme)
    return problem(
      400,
      "invalid_request",
      `Unknown credential type ${JSON.stringify(type)}; accepted: ${deps.schemes.map((s) => s.type).join(", ")}`,
    );
  const read = scheme.readJson(fields);
  if (!read.ok && read.reason === "malformed") return problem(400, "invalid_request", `The body must hold ${scheme.verifyFields}`);
  return { scheme, read };
}

/** The credential checked statelessly, the block of the identity checked first for a payment naming its payer. */
async function checked(
  deps: Pick<Deps, "policy" | "blockedUntil">,
  who: Asker,
  scheme: PaymentScheme,
  read: ReturnType<PaymentScheme["readJson"]>,
): Promise<Result<Redeemable, string> | Response> {
  const { plan, keyring, caller, nowMs } = who;
  if (read.ok && scheme.namesPayer) {
    // Invariant: a payment that buys for its payer does not walk around a block of the
    // identity it came from: checked before the payment service is asked (docs/admin.md).
    // A store that fails throws: ./index.ts answers 503 and records how it failed.
    const until = await deps.blockedUntil(caller, nowMs);
    if (until !== null) return blocked((until - nowMs) / 1000);
  }
  return read.ok
    ? scheme.verify(read.credential, { policy: deps.policy, plan, keyring, caller, nowMs, cost: 0, congestion: who.congestion })
    : read;
}

/** Complete a payment once redeemed: claimed gateway-wide, then settled; its balance withdrawn when it does not complete. */
async function settled(
  deps: Pick<Deps, "policy" | "claimSpend" | "releaseSpend">,
  who: Asker & { store: CallerStore },
  scheme: PaymentScheme,
  credential: unknown,
  redeemable: Redeemable,
  headers: Record<string, string>,
): Promise<Record<string, string> | Response> {
  const { redemption } = redeemable;
  const payment = { kind: "payment" as const, store: who.store, jti: redemption.jti };
  let claimed: boolean;
  try {
    claimed = await deps.claimSpend(redemption.spendId, redemption.spendUntilMs);
  } catch (err) {
    await giveBack(payment);
    throw err;
  }
  const { plan, keyring, caller, nowMs } = who;
  const done = claimed
    ? await scheme.settle!(credential, { policy: deps.policy, plan, keyring, caller, nowMs, cost: 0, congestion: who.congestion })
    : refuse("spent");
  if (done.ok) return done.headers;
  // A payment left untouched (its service did not answer before anything was submitted): its spent marks are lifted too.
  const lift =
    claimed && scheme.retryable?.(done.reason) === true ? { lift: { spendId: redemption.spendId, release: deps.releaseSpend } } : {};
  await giveBack({ ...payment, ...lift });
  return refused(scheme, done.reason, headers);
}

/** Answer `POST /verify` (`bytes`: its body, read once). */
export async function verify(
  deps: Pick<Deps, "policy" | "schemes" | "callers" | "limitHeaders" | "blockedUntil" | "claimSpend" | "releaseSpend">,
  who: Asker,
  url: URL,
  bytes: Uint8Array | null,
): Promise<Response> {
  const found = credentialIn(deps, bytes);
  if (found instanceof Response) return found;
  const { scheme, read } = found;
  const check = await checked(deps, who, scheme, read);
  if (check instanceof Response) return check;
  if (!check.ok) return refused(scheme, check.reason);
  const { redemption } = check;
  const { plan, nowMs } = who;
  // A payment that names its payer buys for that payer.
  const caller = check.identity ?? who.caller;
  const store = deps.callers.of(caller);
  const result = await store.redeem({ nowMs, bucket: plan.bucket, ceiling: plan.ceiling, challenge: plan.challenge, redemption });
  const headers = deps.limitHeaders(plan, result, nowMs);
  if (result.reason === "ceiling") return overCeiling(result.ceiling.retryAfterSeconds, headers);
  // An operator blocked the caller (docs/admin.md): nothing was redeemed.
  if (result.reason === "blocked") return blocked(result.retryAfterSeconds ?? 1, headers);
  if (!result.admitted) {
    // In the scheme's words (a solution below the caller's current difficulty says where a fresh challenge is).
    const reason = result.reason!.slice(redemption.prefix.length + 1);
    return refused(scheme, reason, headers, {
      redemption,
      difficulty: result.difficulty,
      worth: result.solutionCredits,
      cost: 0,
      challengeUrl: gatewayUrls(url).challengeUrl,
    });
  }
  const settledHeaders =
    scheme.settle && read.ok ? await settled(deps, { ...who, caller, store }, scheme, read.credential, check, headers) : {};
  if (settledHeaders instanceof Response) return settledHeaders;
  who.note({
    caller,
    scheme: scheme.type,
    redeemed: true,
    ...(check.paid && result.minted ? { paid: { scheme: scheme.type, ...check.paid } } : {}),
  });
  // The token says the credits the object minted (fewer for a solution below the caller's current difficulty).
  // And whether money bought them: its requests' class at the origin ceiling.
  const claims = {
    sub: caller,
    jti: redemption.jti,
    exp: redemption.tokenExpiresMs / 1000,
    cr: result.mintedCredits ?? redemption.credits,
    ...(scheme.admits === "paid" ? { pd: 1 as const } : {}),
  };
  const token = await signToken(who.keyring, claims);
  return json(
    200,
    { token, expires_in: Math.max(0, claims.exp - Math.floor(nowMs / 1000)), credits: result.credits ?? claims.cr },
    { ...headers, ...settledHeaders },
  );
}
