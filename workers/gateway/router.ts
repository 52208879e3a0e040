/**
 * `router(options)`: one gateway in front of several MCP servers (`TOLLBOOTH_ROUTES`, see
 * shared/policy/routes.ts). Each route is its own `tollbooth()` + `mcpProxy()` app, built by the
 * caller (workers/index.ts); the router picks the route of a request and hands it the
 * request with the route's prefix removed from the path.
 *
 * - No route matches: 404 JSON `{ error: "not_found" }`; nothing reaches any origin.
 * - The path is spelled in a way origins read differently (an escaped `/`, a dot segment,
 *   a malformed escape: workers/pipeline/paths.ts `pathProblem`), or the route's prefix does
 *   not split into its segments: 400 JSON `{ error: "invalid_path" }`; nothing reaches any origin.
 * - `GET /.well-known/tollbooth` where no route matches: the list of routes.
 * - `GET <prefix>/.well-known/tollbooth` (a route's policy): the route's policy, with
 *   `route` (its name, match and endpoint as the client reaches it) and `routes` added.
 * What each route's app sees: the path after the prefix, spelled as received (the route's
 * `endpoint` and tollbooth's own endpoints are relative to the prefix); `prefixedWellKnown`
 * puts the prefix back into the URLs of tollbooth's own answers.
 */
import type { MiddlewareHandler } from "hono";
import { networkFor } from "../../shared/identity/index.ts";
import { matchRoute, type Route, restAfterPrefix } from "../../shared/policy/routes.ts";
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import type { NetworkLimiter } from "../env.ts";
import { shortCaller } from "../observe/counters.ts";
import { type Observer, recordPath } from "../observe/observe.ts";
import type { Decision } from "../observe/types.ts";
import type { TollboothVariables } from "../pipeline/middleware.ts";
import { overNetworkCeiling } from "../pipeline/network-ceiling.ts";
import { normalizePath, pathProblem } from "../pipeline/paths.ts";
import { json, toRouterProblem } from "../refusal/problem.ts";
import { Refusal } from "../refusal/refusal.ts";

/** What the router needs of a route's app (a Hono app fits). */
export interface RouteApp {
  fetch(request: Request, env: unknown, ctx?: ExecutionContext): Response | Promise<Response>;
}

/** One route and its app. */
export interface RouteEntry {
  route: Route;
  app: RouteApp;
  /** The route's policy `endpoint` (relative to the prefix). */
  endpoint: string;
  /** The route's plan names, and its default plan. */
  plans: readonly string[];
  defaultPlan: string;
}

/** Options of `router()`. */
export interface RouterOptions {
  /** The routes in configuration order (at least one), each with its app. */
  routes: readonly RouteEntry[];
  /** The network ceiling (`TOLLBOOTH_NETWORK_LIMIT`): what the router answers itself counts against it, as every route's requests do. */
  network?: NetworkLimiter | undefined;
  /** The gateway's identity prefixes (`policy.identity`): how a network is keyed. */
  identity?: { ipv4Prefix: number; ipv6Prefix: number } | undefined;
  /** `Retry-After` of the network ceiling's 429, seconds (`policy.networkRetryAfterSeconds`). */
  networkRetryAfterSeconds?: number | undefined;
  /** The gateway's decision log and metrics (workers/observe/): what the router answers itself is recorded there too. */
  observer?: Pick<Observer, "emit"> | undefined;
}

/** A route as listed at `/.well-known/tollbooth` (never its origin or secrets). */
function listed(e: RouteEntry, base: URL): Record<string, unknown> {
  const r = e.route;
  const prefix = r.prefix === "/" ? "" : r.prefix;
  const at = r.host !== null ? `${base.protocol}//${r.host}${base.port ? `:${base.port}` : ""}` : base.origin;
  return {
    name: r.name,
    match: { ...(r.host !== null ? { host: r.host } : {}), path: r.prefix },
    stripPrefix: r.stripPrefix,
    endpoint: `${prefix}${e.endpoint}`,
    policyUrl: `${at}${prefix}${WELL_KNOWN}`,
    plans: e.plans,
    defaultPlan: e.defaultPlan,
  };
}

/** A router's own answer: the request, its context, when it started, and what it decided. */
type OwnAnswer = (
  request: Request,
  ctx: ExecutionContext | undefined,
  startedMs: number,
  decision: Decision,
  reason: string,
  answer: () => Response,
) => Promise<Response>;

/**
 * How the router answers a request itself (no route's tollbooth sees it): the network ceiling
 * first (no endpoint goes unmetered, not even a 404; a matched request is counted once, by its
 * route's tollbooth), then `answer`; the decision is recorded as every other request's is.
 */
function ownAnswers(options: RouterOptions): OwnAnswer {
  const { identity } = options;
  const retryAfter = Math.max(1, Math.ceil(options.networkRetryAfterSeconds ?? 10));
  const overCeiling = async (network: string): Promise<Response | null> => {
    if (!(await overNetworkCeiling(options.network, network))) return null;
    const message = `Too many requests: over the ceiling of your network (${network}); retry after ${retryAfter} s`;
    const reason = { decision: "rate_limited" as const, reason: "network" };
    return toRouterProblem(
      new Refusal({ status: 429, code: "rate_limited", message, data: { reason: "network", retryAfter }, retryAfter, reason }),
    );
  };
  return async (request, ctx, startedMs, decision, reason, answer) => {
    const network = networkFor(request.headers, identity?.ipv4Prefix ?? 32, identity?.ipv6Prefix ?? 64);
    const limited = await overCeiling(network);
    const res = limited ?? answer();
    options.observer?.emit(
      {
        time: startedMs,
        caller: shortCaller(network),
        network: network.replace(/^ip:/, ""),
        plan: "",
        method: request.method,
        path: recordPath(request.url),
        cost: 0,
        decision: limited ? "rate_limited" : decision,
        reason: limited ? "network" : reason,
        status: res.status,
        latencyMs: Math.max(0, Date.now() - startedMs),
      },
      ctx ? (p) => ctx.waitUntil(p) : null,
    );
    return res;
  };
}

/** 400 `invalid_path`: a path the router will not read one way when origins read it another. */
function invalidPath(message: string): Response {
  return toRouterProblem(
    new Refusal({ status: 400, code: "invalid_path", message, reason: { decision: "bad_request", reason: "invalid_path" } }),
  );
}

/** 404: no route claims the request (it reaches no origin). */
function noRoute(url: URL): Response {
  return toRouterProblem(
    new Refusal({
      status: 404,
      code: "not_found",
      message: `No route for ${url.hostname}${url.pathname}`,
      data: { routesUrl: `${url.origin}${WELL_KNOWN}` },
      reason: { decision: "bad_request", reason: "no_route" },
    }),
  );
}

/**
 * Build the router.
 * @throws TypeError when `routes` is empty
 */
export function router(options: RouterOptions): (request: Request, env: unknown, ctx?: ExecutionContext) => Promise<Response> {
  if (!Array.isArray(options.routes) || options.routes.length === 0)
    throw new TypeError("router(): option `routes` must hold at least one route");
  const entries = options.routes;
  const byRoute = new Map(entries.map((e) => [e.route, e]));
  const routes = entries.map((e) => e.route);
  const own = ownAnswers(options);

  return async function route(request, env, ctx) {
    const startedMs = Date.now();
    const url = new URL(request.url);
    const invalid = (message: string) => own(request, ctx, startedMs, "bad_request", "invalid_path", () => invalidPath(message));
    // A spelling origins read differently (`/a/..%2Fb/mcp`) picks no route and reaches none.
    const pathIssue = pathProblem(url.pathname);
    if (pathIssue !== null) return invalid(`The path ${url.pathname} holds ${pathIssue}`);
    const path = normalizePath(url.pathname);
    const matched = matchRoute(routes, url.hostname, path);
    if (matched === null) {
      if (path === WELL_KNOWN && (request.method === "GET" || request.method === "HEAD")) {
        return own(request, ctx, startedMs, "own_endpoint", "routes", () => json(200, { routes: entries.map((e) => listed(e, url)) }));
      }
      // Invariant: a request no route claims never reaches an origin.
      return own(request, ctx, startedMs, "bad_request", "no_route", () => noRoute(url));
    }
    const entry = byRoute.get(matched)!;
    const rest = restAfterPrefix(url.pathname, matched.segments);
    // Invariant: the route was chosen on the normalized path; the app gets the raw rest only
    // when the raw path spells the prefix segment by segment, so what the route's tollbooth
    // prices is exactly what its origin receives after the prefix.
    if (rest === null)
      return invalid(`The path ${url.pathname} does not spell the prefix ${matched.prefix} of route ${matched.name} segment by segment`);
    let forwarded = request;
    if (rest !== url.pathname) {
      const inner = new URL(url);
      inner.pathname = rest;
      forwarded = new Request(inner, request);
    }
    const res = await entry.app.fetch(forwarded, env, ctx);
    // Exactly the path tollbooth answers itself (its check is on the raw path): any other
    // spelling went to the origin, whose answer is never rewritten.
    if (rest === WELL_KNOWN && request.method === "GET" && res.status === 200) {
      // The route's policy, with where the client reaches it and the other routes.
      const policy = (await res.json()) as Record<string, unknown>;
      return json(
        200,
        { ...policy, route: listed(entry, url), routes: entries.map((e) => listed(e, url)) },
        Object.fromEntries([...res.headers].filter(([k]) => k.startsWith("ratelimit"))),
      );
    }
    return res;
  };
}

/**
 * A Durable Object namespace whose names are scoped: `idFromName(n)` and `getByName(n)` use
 * `<scope>/<n>`. One route's caller state and origin ceiling are then objects of their own,
 * unreachable from another route (route names hold no `/`, so scopes cannot collide).
 * @param ns the namespace binding (CALLER_BUCKET, ORIGIN_GATE)
 * @param scope `route:<name>`
 */
export function scopedNamespace<T extends Rpc.DurableObjectBranded | undefined>(
  ns: DurableObjectNamespace<T>,
  scope: string,
): DurableObjectNamespace<T> {
  const name = (n: string) => `${scope}/${n}`;
  return {
    idFromName: (n: string) => ns.idFromName(name(n)),
    idFromString: (id: string) => ns.idFromString(id),
    newUniqueId: (o?: DurableObjectNamespaceNewUniqueIdOptions) => ns.newUniqueId(o),
    get: (id: DurableObjectId, o?: DurableObjectNamespaceGetDurableObjectOptions) => ns.get(id, o),
    getByName: (n: string, o?: DurableObjectNamespaceGetDurableObjectOptions) => ns.get(ns.idFromName(name(n)), o),
    jurisdiction: (j: DurableObjectJurisdiction) => scopedNamespace(ns.jurisdiction(j), scope),
  } as DurableObjectNamespace<T>;
}

/**
 * Middleware before `tollbooth()` of a route with a path prefix: in the JSON answers the
 * gateway writes itself (a 402's `error.data.policyUrl`, `challengeUrl`, `verifyUrl`,
 * `statusUrl`; the route's policy), `<origin>/.well-known/tollbooth` becomes
 * `<origin><prefix>/.well-known/tollbooth`, where the route's own endpoints are. An answer
 * of the origin (the request was admitted: `c.var.tollbooth` is set) is never touched.
 * @param prefix the route's canonical prefix (`/a/b`)
 */
export function prefixedWellKnown(prefix: string): MiddlewareHandler<{ Variables: TollboothVariables }> {
  return async function prefixedWellKnown(c, next) {
    await next();
    if (c.get("tollbooth") !== undefined) return;
    const res = c.res;
    if (!(res.headers.get("content-type") ?? "").startsWith("application/json") || res.body === null) return;
    const gateway = new URL(c.req.url).origin;
    // The URL as JSON.stringify writes it, without its closing quote: `"<scheme://host>/.well-known/tollbooth`.
    const from = JSON.stringify(gateway + WELL_KNOWN).slice(0, -1);
    const to = JSON.stringify(gateway + prefix + WELL_KNOWN).slice(0, -1);
    const text = await res.text();
    const headers = new Headers(res.headers);
    headers.delete("content-length");
    c.res = undefined;
    c.res = new Response(text.split(from).join(to), { status: res.status, statusText: res.statusText, headers });
  };
}
