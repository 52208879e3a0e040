/**
 * `GET /.well-known/tollbooth/status`: this caller's plan, buckets, difficulty, open slots and
 * (with a `Tollbooth-Token`) that token's balance. Counts against the caller's ceiling, as
 * `/challenge` does (`statusOf`): 429 over it.
 */
import { verifyToken } from "../../shared/credentials/token.ts";
import { TOKEN_HEADER } from "../../shared/wire/headers.ts";
import type { StatusResult } from "../objects/caller-state.ts";
import type { Deps } from "../pipeline/deps.ts";
import { json } from "../refusal/problem.ts";
import { type Asker, overCeiling, problem } from "./answers.ts";

/**
 * The caller's state from its object (one unit of its ceiling taken) with its rate-limit
 * headers, or the 429 over the ceiling.
 * @param tokenId an access token whose balance to read
 */
export async function statusOf(
  deps: Pick<Deps, "callers" | "limitHeaders">,
  who: Asker,
  tokenId?: string,
): Promise<{ status: StatusResult; headers: Record<string, string> } | Response> {
  const { plan, nowMs } = who;
  const status = await deps.callers.of(who.caller).status({
    nowMs,
    bucket: plan.bucket,
    ceiling: plan.ceiling,
    challenge: plan.challenge,
    ...(tokenId !== undefined ? { tokenId } : {}),
  });
  const headers = deps.limitHeaders(plan, status, nowMs);
  if (!status.admitted) return overCeiling(status.ceiling.retryAfterSeconds, headers);
  return { status, headers };
}

/** Answer `GET /status` (a token that does not verify for this caller: 401). */
export async function status(deps: Pick<Deps, "callers" | "limitHeaders">, who: Asker, req: Request): Promise<Response> {
  const { plan, nowMs, caller } = who;
  const tokenHeader = req.headers.get(TOKEN_HEADER);
  const token = tokenHeader ? await verifyToken(who.keyring, tokenHeader.trim(), caller, nowMs) : null;
  if (token && !token.ok) return problem(401, "invalid_token", `Tollbooth-Token refused: ${token.reason}`, { reason: token.reason });
  const seen = await statusOf(deps, who, token?.ok ? token.claims.jti : undefined);
  if (seen instanceof Response) return seen;
  const { status: s, headers } = seen;
  return json(
    200,
    {
      caller,
      plan: plan.name,
      verified: who.identity.verified,
      network: who.identity.network,
      bucket: s.bucket,
      ceiling: s.ceiling,
      difficulty: s.difficulty ?? plan.challenge.difficulty,
      recentSolves: s.solves ?? 0,
      sessions: { open: s.sessions, max: plan.limits.sessions },
      streams: { open: s.streams, max: plan.limits.streams },
      token: s.token
        ? {
            credits: s.token.credits,
            expires: Math.floor(s.token.expiresMs / 1000),
            expires_in: Math.max(0, Math.ceil((s.token.expiresMs - nowMs) / 1000)),
          }
        : null,
    },
    headers,
  );
}
