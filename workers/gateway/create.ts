/**
 * Building the gateway from the environment (see workers/env.ts and wrangler.toml):
 * `tollbooth()` in front of `mcpProxy()` for one origin (ORIGIN_URL), or, with
 * TOLLBOOTH_ROUTES, one such pair per route behind `router()` (./router.ts); the admin API
 * in front when TOLLBOOTH_ADMIN_TOKEN is set. A bad setting throws a TypeError naming it.
 */
import type { MiddlewareHandler } from "hono";
// Hono's `tiny` preset (its PatternRouter): the gateway registers only `use` and `all("*")`, so
// the default's RegExpRouter + TrieRouter would be 2 KiB gzipped of the bundle for nothing.
import { Hono } from "hono/tiny";
import { type HmacKey, importKeyring, parseSecrets } from "../../shared/credentials/keys.ts";
import { originProblem, parseRoutes, routeSecrets } from "../../shared/policy/routes.ts";
import { type AdminRoute, admin } from "../admin/index.ts";
import type { Env } from "../env.ts";
import { parseFlushMs } from "../observe/flusher.ts";
import { note, observe, parseDecisionLog, parseDecisionLogSample } from "../observe/observe.ts";
import { type TollboothVariables, tollbooth } from "../pipeline/middleware.ts";
import { sessionEnder } from "../proxy/end-session.ts";
import { mcpProxy, type ProxyOptions } from "../proxy/proxy.ts";
import { type Policy, parsePolicy } from "../schemes/policy.ts";
import { prefixedWellKnown, type RouteEntry, router, scopedNamespace } from "./router.ts";

/** The environment's string bindings (vars and secrets), by name. */
export function stringBindings(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === "string"));
}

/** A built gateway: one origin's Hono app, or the router of several. */
export interface Gateway {
  fetch(request: Request, env: Env, ctx?: ExecutionContext): Response | Promise<Response>;
}

/** What one origin's app is built from. */
interface OriginApp {
  /** The policy input (TOLLBOOTH_POLICY, or a route's merged policy). */
  policy: unknown;
  /** TOLLBOOTH_SECRET, or a route's derived secrets (shared/policy/routes.ts `routeSecrets`). */
  secret: string;
  originUrl: string;
  /** The origin proof's secret and the name of its setting. */
  proofSecret: { value: string | undefined; name: string };
  callers: Env["CALLER_BUCKET"];
  /** The gateway-wide CallerState namespace (unscoped) where payments' spend ids are claimed, shared by every route. */
  spends: Env["CALLER_BUCKET"];
  originGate: Env["ORIGIN_GATE"];
  /** A route's path prefix (`/a`): the URLs of tollbooth's own answers get it back. */
  prefix?: string;
  /** The route's name (in each decision record), when the gateway has routes. */
  route?: string;
  /** The decision log and metrics middleware: one instance per gateway, so an isolate flushes once per interval whatever the routes. */
  observed: MiddlewareHandler;
}

/** `tollbooth()` in front of `mcpProxy()` for one origin. */
function originApp(env: Env, o: OriginApp): Hono<{ Bindings: Env; Variables: TollboothVariables }> {
  const policy = parsePolicy(o.policy);
  let proofKey: Promise<HmacKey> | undefined;
  const app = new Hono<{ Bindings: Env; Variables: TollboothVariables }>();
  // The decision log and the metrics (docs/observability.md): every request the gateway decides.
  app.use(o.observed);
  const route = o.route;
  if (route !== undefined) app.use((c, next) => (note(c, { route }), next()));
  if (o.prefix !== undefined) app.use(prefixedWellKnown(o.prefix));
  const origin: ProxyOptions = {
    originUrl: o.originUrl,
    proofKey: () => (proofKey ??= importKeyring(o.proofSecret.value, o.proofSecret.name).then((k) => k.signer)),
    timeoutMs: policy.originTimeoutMs,
  };
  const proxy = mcpProxy(origin);
  app.use(
    tollbooth({
      policy,
      secret: o.secret,
      callers: o.callers,
      spends: o.spends,
      originGate: o.originGate,
      network: env.TOLLBOOTH_NETWORK_LIMIT,
      keys: env.TOLLBOOTH_KEYS,
      // Every string binding: a payment scheme names the secret it needs (workers/schemes/).
      secrets: stringBindings(env),
      // Session eviction at the cap: the DELETE goes to the origin as the proxy's requests do.
      endSession: sessionEnder(origin),
    }),
  );
  app.all("*", proxy);
  return app;
}

/**
 * Build the gateway for an environment: one origin (ORIGIN_URL + TOLLBOOTH_POLICY), or,
 * when TOLLBOOTH_ROUTES is set, a router in front of one app per route (ORIGIN_URL unused).
 * @throws TypeError naming the bad setting (policy field, secret, ORIGIN_URL, a route's
 *   field, a binding the policy needs)
 */
export function createGateway(env: Env): Gateway {
  const policy = parsePolicy(env.TOLLBOOTH_POLICY);
  // Blank is unset, as for the other optional secrets (.dev.vars.example lists it empty).
  const originSecret = env.TOLLBOOTH_ORIGIN_SECRET?.trim() ? env.TOLLBOOTH_ORIGIN_SECRET : undefined;
  if (originSecret !== undefined) parseSecrets(originSecret, "TOLLBOOTH_ORIGIN_SECRET");
  const gatewayProof = {
    value: originSecret ?? env.TOLLBOOTH_SECRET,
    name: originSecret === undefined ? "TOLLBOOTH_SECRET" : "TOLLBOOTH_ORIGIN_SECRET",
  };
  const routes = parseRoutes(env.TOLLBOOTH_ROUTES, env.TOLLBOOTH_POLICY);
  const observed = observe({
    stats: env.TOLLBOOTH_STATS,
    analytics: env.TOLLBOOTH_ANALYTICS,
    flushMs: parseFlushMs(env.TOLLBOOTH_METRICS_FLUSH_MS),
    ...(parseDecisionLog(env.TOLLBOOTH_DECISION_LOG) ? {} : { log: false as const }),
    logSample: parseDecisionLogSample(env.TOLLBOOTH_DECISION_LOG_SAMPLE),
  });
  if (routes === null) {
    const placeholder = originProblem(env.ORIGIN_URL);
    if (placeholder?.startsWith("is the placeholder")) throw new TypeError(`ORIGIN_URL ${placeholder}`);
    // One origin: today's object names (no scope), so existing deployments keep their state.
    const app = originApp(env, {
      policy,
      secret: env.TOLLBOOTH_SECRET,
      originUrl: env.ORIGIN_URL,
      proofSecret: gatewayProof,
      callers: env.CALLER_BUCKET,
      spends: env.CALLER_BUCKET,
      originGate: env.ORIGIN_GATE,
      observed,
    });
    return withAdmin(env, policy, [], app);
  }
  // Checked as configured: a derived secret is always long enough.
  try {
    parseSecrets(env.TOLLBOOTH_SECRET);
  } catch (err) {
    throw new TypeError(`tollbooth(): option \`secret\`: ${(err as Error).message}`);
  }
  const strings = stringBindings(env);
  /** Each route's policy and caller objects, for the admin API's caller lookups (`?route=`). */
  const scopes: AdminRoute[] = [];
  const entries: RouteEntry[] = routes.map((route, i) => {
    const label = `TOLLBOOTH_ROUTES[${i}] (${JSON.stringify(route.name)})`;
    let routePolicy: Policy;
    try {
      routePolicy = parsePolicy(route.policy);
    } catch (err) {
      throw new TypeError((err as Error).message.replace(/^TOLLBOOTH_POLICY/, `${label}.policy`));
    }
    const proofSecret = route.originSecret === null ? gatewayProof : { value: strings[route.originSecret], name: route.originSecret };
    parseSecrets(proofSecret.value, route.originSecret === null ? proofSecret.name : `${label}.originSecret ${route.originSecret}`);
    const scope = `route:${route.name}`;
    const base = new URL(route.origin);
    // Not stripped: the origin gets the canonical prefix, then the rest as received.
    const originUrl =
      route.stripPrefix || route.prefix === "/" ? route.origin : `${base.origin}${base.pathname.replace(/\/+$/, "")}${route.prefix}`;
    const app = originApp(env, {
      policy: routePolicy,
      // Invariant: each route signs its challenges and tokens with its own keys, so a
      // credential bought on one route is refused on another (shared/policy/routes.ts).
      secret: routeSecrets(env.TOLLBOOTH_SECRET, route.name),
      originUrl,
      proofSecret,
      // Invariant: a caller's budget, credits and slots on one route are objects of their
      // own (`route:<name>/<caller>`): spending on one route leaves another's intact.
      callers: scopedNamespace(env.CALLER_BUCKET, scope),
      // Invariant: a payment's spend id is claimed in one object for all routes (`spent:<id>`,
      // unscoped), so one authorization is settled at most once whichever routes it is sent to.
      spends: env.CALLER_BUCKET,
      originGate: env.ORIGIN_GATE ? scopedNamespace(env.ORIGIN_GATE, scope) : undefined,
      ...(route.prefix !== "/" ? { prefix: route.prefix } : {}),
      route: route.name,
      observed: observed,
    });
    scopes.push({ name: route.name, policy: routePolicy, callers: scopedNamespace(env.CALLER_BUCKET, scope) });
    return { route, app, endpoint: routePolicy.endpoint, plans: Object.keys(routePolicy.plans), defaultPlan: routePolicy.defaultPlan };
  });
  const dispatch = router({
    routes: entries,
    network: env.TOLLBOOTH_NETWORK_LIMIT,
    identity: policy.identity,
    networkRetryAfterSeconds: policy.networkRetryAfterSeconds,
    observer: observed,
  });
  return withAdmin(env, policy, scopes, { fetch: (request, env, ctx) => dispatch(request, env, ctx) });
}

/**
 * The admin API and dashboard (docs/admin.md) in front of the gateway, the gateway's own
 * paths before any route's: only with TOLLBOOTH_ADMIN_TOKEN set; without it the admin
 * paths are ordinary gateway paths and `gateway` is returned as it is.
 */
function withAdmin(env: Env, policy: Policy, routes: AdminRoute[], gateway: Gateway): Gateway {
  // Blank is unset, as for the other optional secrets (.dev.vars.example lists it empty).
  if (!env.TOLLBOOTH_ADMIN_TOKEN?.trim()) return gateway;
  const options = {
    token: env.TOLLBOOTH_ADMIN_TOKEN,
    path: env.TOLLBOOTH_ADMIN_PATH,
    policy,
    callers: env.CALLER_BUCKET,
    routes,
    network: env.TOLLBOOTH_NETWORK_LIMIT,
    keys: env.TOLLBOOTH_KEYS,
    stats: env.TOLLBOOTH_STATS,
    assets: env.ASSETS,
  };
  if (gateway instanceof Hono) {
    // One origin: the admin middleware runs first in the gateway's own app.
    const app = new Hono<{ Bindings: Env; Variables: TollboothVariables }>();
    app.use(admin(options));
    app.route("/", gateway);
    return app;
  }
  const app = new Hono<{ Bindings: Env }>();
  app.use(admin(options));
  app.all("*", (c) => {
    let ctx: ExecutionContext | undefined;
    try {
      ctx = c.executionCtx as ExecutionContext;
    } catch {
      // No execution context (a test calling the app directly).
    }
    return gateway.fetch(c.req.raw, c.env, ctx);
  });
  return app;
}
