/**
 * `<admin>/callers/<caller id>[/reset|/block|/unblock]`: a caller's state (`CallerState.inspect`),
 * its plan as far as it can be known and its recent decisions; an operator's reset, block and
 * unblock. With routes, `?route=<name>` says whose objects to look in.
 */
import type { Policy } from "../../shared/policy/index.ts";
import type { CallerState } from "../objects/caller-state.ts";
import { planFor } from "../schemes/policy.ts";
import { type KnownPlan, keyPlan, parseBlockBody, parseCallerId, plansMatching, recentOf } from "./callers.ts";
import { type AdminContext, snapshot } from "./context.ts";
import { problem, readJson, reply, wrongMethod } from "./reply.ts";

/** Where a caller path looks: the gateway's objects, or the route's that `?route=` names. */
type Scope = { policy: Policy; callers: DurableObjectNamespace<CallerState> };

function scopeOf(ctx: AdminContext, req: Request): Scope | Response {
  const { routes } = ctx;
  const name = new URL(req.url).searchParams.get("route");
  if (routes.size === 0)
    return name === null
      ? { policy: ctx.policy, callers: ctx.callers }
      : problem(400, "no_routes", "this gateway has one origin: leave out ?route=");
  if (name === null)
    return problem(400, "route_required", `this gateway has routes: add ?route=<name> (one of ${[...routes.keys()].join(", ")})`, {
      routes: [...routes.keys()],
    });
  return routes.get(name) ?? problem(404, "unknown_route", `no route ${JSON.stringify(name)}`, { routes: [...routes.keys()] });
}

/** The caller's plan as far as it is known (see `KnownPlan`). */
async function planOf(ctx: AdminContext, policy: Policy, id: string, kind: string): Promise<KnownPlan> {
  if (kind === "key") {
    const found = await keyPlan(policy, id.slice(4), ctx.keys).catch(() => null);
    if (found) return found;
  }
  if (kind === "ip" || kind === "auth" || kind === "anonymous" || kind === "key") return { name: policy.defaultPlan, source: "unverified" };
  return { name: policy.defaultPlan, source: "default" };
}

/** `GET <admin>/callers/<id>`: the caller's state, read only. */
async function inspectCaller(ctx: AdminContext, scope: Scope, id: string, kind: string, nowMs: number): Promise<Response> {
  const { policy } = scope;
  const plan = await planOf(ctx, policy, id, kind);
  const p = planFor(policy, plan.name);
  const state = await scope.callers
    .get(scope.callers.idFromName(id))
    .inspect({ nowMs, bucket: p.bucket, ceiling: p.ceiling, challenge: p.challenge });
  let known = plan;
  if (plan.source === "default") {
    // A jwt: caller or a scheme's payer: the plan whose limits the object last metered with.
    const matching = plansMatching(policy, state.configs);
    if (matching.length > 0)
      known = { name: matching[0]!, source: "object", ...(matching.length > 1 ? { alsoMatches: matching.slice(1) } : {}) };
  }
  let recent: unknown[] | null = null;
  if (ctx.stats) recent = recentOf((await snapshot(ctx, nowMs).catch(() => null))?.recent ?? [], id);
  return reply(200, {
    caller: id,
    known: state.known,
    plan: known,
    buckets: {
      free: { remaining: state.bucket.remaining, limit: state.bucket.limit, reset: state.bucket.reset },
      ceiling: { remaining: state.ceiling.remaining, limit: state.ceiling.limit, reset: state.ceiling.reset },
    },
    metered: state.configs,
    credits: state.tokens,
    sessions: state.sessions,
    streams: state.streams,
    spentMarks: state.spent,
    solves: state.solves,
    ...(state.difficulty !== undefined ? { difficulty: state.difficulty } : {}),
    blocked:
      state.blockedUntilMs === null
        ? null
        : {
            untilMs: state.blockedUntilMs,
            until: new Date(state.blockedUntilMs).toISOString(),
            retryAfter: Math.max(1, Math.ceil((state.blockedUntilMs - nowMs) / 1000)),
          },
    cleanupAtMs: state.cleanupAtMs,
    recent,
  });
}

/** `POST <admin>/callers/<id>/reset|block|unblock`. */
async function act(
  req: Request,
  stub: DurableObjectStub<CallerState>,
  id: string,
  action: "reset" | "block" | "unblock",
  nowMs: number,
): Promise<Response> {
  if (action === "reset") {
    const done = await stub.reset();
    return reply(200, { caller: id, ...done, kept: ["credits", "sessions", "streams", "spent marks", "block"] });
  }
  if (action === "unblock") return reply(200, { caller: id, ...(await stub.unblock()) });
  const body = await readJson(req);
  if (!body.ok) return body.res;
  const seconds = parseBlockBody(body.value);
  if (!seconds.ok) return problem(400, seconds.reason, seconds.detail ?? "bad body");
  const done = await stub.block({ untilMs: nowMs + seconds.seconds * 1000 });
  return reply(200, { caller: id, blockedUntilMs: done.blockedUntilMs, until: new Date(done.blockedUntilMs).toISOString() });
}

/** Answer a request under `<admin>/callers/` (`rest`: the segments after `callers`). */
export async function callerRoutes(ctx: AdminContext, req: Request, rest: string[]): Promise<Response> {
  if (rest.length < 1 || rest.length > 2)
    return problem(404, "not_found", "use <admin>/callers/<caller id, URL-encoded>[/reset|/block|/unblock]");
  const parsed = parseCallerId(rest[0]!);
  if (!parsed.ok) return problem(400, parsed.reason, `bad caller id: ${parsed.detail}`);
  const { id, kind } = parsed;
  const scope = scopeOf(ctx, req);
  if (scope instanceof Response) return scope;
  const nowMs = Date.now();
  const action = rest[1];
  if (action === undefined) return req.method === "GET" ? inspectCaller(ctx, scope, id, kind, nowMs) : wrongMethod(req.method, ["GET"]);
  if (action !== "reset" && action !== "block" && action !== "unblock")
    return problem(404, "not_found", `no action ${JSON.stringify(action)}: use reset, block or unblock`);
  if (req.method !== "POST") return wrongMethod(req.method, ["POST"]);
  return act(req, scope.callers.get(scope.callers.idFromName(id)), id, action, nowMs);
}
