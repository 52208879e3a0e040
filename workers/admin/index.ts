/**
 * `admin(options)`: the operator's API and live dashboard, a Hono middleware mounted before
 * `tollbooth()` (workers/index.ts) — only when `TOLLBOOTH_ADMIN_TOKEN` is set; without it
 * the admin paths do not exist and are ordinary gateway paths (priced, proxied).
 *
 * Under the admin path (`TOLLBOOTH_ADMIN_PATH`, default `/admin`; docs/admin.md):
 * 1. the network ceiling (`TOLLBOOTH_NETWORK_LIMIT`, keyed as tollbooth keys it) counts every
 *    request first, so the token cannot be guessed faster than the ceiling allows: 429;
 * 2. `GET <path>` (the dashboard's HTML shell, no data) and `GET <path>/assets/<file>` (public
 *    code: uPlot, the dashboard's script and style) are served without the token;
 * 3. everything else needs `Authorization: Bearer <TOLLBOOTH_ADMIN_TOKEN>` (constant-time
 *    check, workers/admin/auth.ts): 401 with `WWW-Authenticate: Bearer` otherwise, before
 *    any route is looked at (an unauthenticated client learns nothing of the API);
 * 4. the JSON API: callers (inspect, reset, block, unblock), API keys (issue, list, revoke),
 *    stats, Prometheus metrics, policy. Unknown path 404, wrong method 405, bad input 400.
 * Admin requests never reach the origin and are not metered by the caller buckets.
 */
import type { MiddlewareHandler } from "hono";
import { networkFor } from "../../shared/identity/index.ts";
import { parsePolicy, planFor, type Policy, type PolicyInput } from "../schemes/policy.ts";
import { readBody, TOO_LARGE, TOO_SLOW } from "../pipeline/read-body.ts";
import type { CallerBucket } from "../caller-bucket.ts";
import type { NetworkLimiter } from "../env.ts";
import { overNetworkCeiling } from "../gate.ts";
import { statsStub } from "../observe/flusher.ts";
import { prometheusText } from "../observe/prometheus.ts";
import type { Stats } from "../observe/stats-object.ts";
import { normalizePath } from "../pipeline/paths.ts";
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import { adminTokenChecker } from "./auth.ts";
import { keyPlan, parseBlockBody, parseCallerId, plansMatching, recentOf, type KnownPlan } from "./callers.ts";
import { ADMIN_HEADERS, ASSET_FILES, DASHBOARD_CSP, dashboardHtml } from "./dashboard.ts";
import { issueKey, listKeys, revokeKeys } from "./keys.ts";
import { adminJson, toAdminProblem } from "../refusal/admin.ts";
import { Refusal } from "../refusal/refusal.ts";

/** Default admin path. */
export const DEFAULT_ADMIN_PATH = "/admin";
/** Minutes of metrics `GET <path>/stats` answers (the dashboard's hour). */
export const STATS_MINUTES = 60;
/** Largest admin request body, bytes. */
const MAX_BODY_BYTES = 4096;
/** Time a body may take to arrive, ms. */
const BODY_TIMEOUT_MS = 5_000;

/** One route of a gateway with several origins (`TOLLBOOTH_ROUTES`): its policy and its callers' objects (`route:<name>/<caller>`). */
export interface AdminRoute {
  name: string;
  policy: Policy;
  buckets: DurableObjectNamespace<CallerBucket>;
}

/** Options of `admin()`. */
export interface AdminOptions {
  /** `TOLLBOOTH_ADMIN_TOKEN` (a Worker secret, ≥ 16 bytes of bearer-token characters). */
  token: string;
  /** `TOLLBOOTH_ADMIN_PATH`: the prefix, `/` + letters, digits, `-_.` segments; default `/admin`. Never the MCP endpoint or under `/.well-known`. */
  path?: string | undefined;
  /** The gateway's policy (validated here): its plans, identity prefixes and endpoint. */
  policy?: PolicyInput | Policy | undefined;
  /** The `CallerBucket` namespace. */
  buckets: DurableObjectNamespace<CallerBucket>;
  /**
   * The routes, when the gateway fronts several origins: a caller's state is then per route,
   * and the caller paths need `?route=<name>` (400 without it, 404 for an unknown name).
   */
  routes?: readonly AdminRoute[] | undefined;
  /** The network ceiling (`TOLLBOOTH_NETWORK_LIMIT`); without it the layer is off, as in tollbooth. */
  network?: NetworkLimiter | undefined;
  /** The `TOLLBOOTH_KEYS` namespace: `/keys` answers 501 without it. */
  keys?: KVNamespace | undefined;
  /** The `Stats` namespace (`TOLLBOOTH_STATS`): `/stats` and `/metrics` answer 501 without it. */
  stats?: DurableObjectNamespace<Stats> | undefined;
  /** The Workers Static Assets binding (`ASSETS`): the dashboard's files. */
  assets?: Fetcher | undefined;
}

/** A JSON answer of the admin API (workers/refusal/admin.ts). */
const reply = adminJson;

/** A refusal of the admin API: `{ error, message }` (+ details), rendered by `toAdminProblem`. */
function problem(status: number, error: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}, retryAfter?: number): Response {
  return toAdminProblem(new Refusal({ status, code: error, message, data: extra, headers, ...(retryAfter !== undefined ? { retryAfter } : {}) }));
}

/** 405 naming the methods the path takes. */
function wrongMethod(method: string, allow: string[]): Response {
  return problem(405, "method_not_allowed", `${method} is not allowed here; use ${allow.join(", ")}`, { allow }, { allow: allow.join(", ") });
}

/**
 * Check the admin path.
 * @throws TypeError naming `TOLLBOOTH_ADMIN_PATH` when it is malformed, the MCP endpoint (or holds it), or under `/.well-known`
 */
export function adminPath(path: string | undefined, endpoint: string): string {
  const p = path ?? DEFAULT_ADMIN_PATH;
  if (!/^(\/[A-Za-z0-9_.-]+)+$/.test(p) || p.split("/").some((s) => s === "." || s === "..")) {
    throw new TypeError(`TOLLBOOTH_ADMIN_PATH ${JSON.stringify(p)} must be / followed by segments of letters, digits, -, _ and . (no trailing slash)`);
  }
  const admin = normalizePath(p);
  const mcp = normalizePath(endpoint);
  // Invariant: the admin path never shadows the MCP endpoint (nor the endpoint the admin path).
  if (admin === mcp || mcp.startsWith(admin + "/") || admin.startsWith(mcp + "/")) throw new TypeError(`TOLLBOOTH_ADMIN_PATH ${p} overlaps the MCP endpoint ${endpoint}`);
  if (admin === WELL_KNOWN || admin.startsWith("/.well-known")) throw new TypeError(`TOLLBOOTH_ADMIN_PATH ${p} must not be under /.well-known`);
  return p;
}

/**
 * Build the admin middleware.
 * @throws TypeError naming the bad option (`TOLLBOOTH_ADMIN_TOKEN`, `TOLLBOOTH_ADMIN_PATH`, `policy.<field>`, `buckets`)
 */
export function admin(options: AdminOptions): MiddlewareHandler {
  const policy = parsePolicy(options.policy);
  const checkToken = adminTokenChecker(options.token);
  const base = adminPath(options.path, policy.endpoint);
  if (!options.buckets || typeof options.buckets.idFromName !== "function") throw new TypeError("admin(): option `buckets` must be the CallerBucket Durable Object namespace");
  const { buckets, keys, stats, assets, network } = options;
  const publicPolicy = redactedPolicy(policy);

  const routes = new Map((options.routes ?? []).map((r) => [r.name, r]));
  /** Where a caller path looks: the gateway's objects, or the route's that `?route=` names. */
  type Scope = { policy: Policy; buckets: DurableObjectNamespace<CallerBucket> };
  function scopeOf(req: Request): Scope | Response {
    const name = new URL(req.url).searchParams.get("route");
    if (routes.size === 0) return name === null ? { policy, buckets } : problem(400, "no_routes", "this gateway has one origin: leave out ?route=");
    if (name === null) return problem(400, "route_required", `this gateway has routes: add ?route=<name> (one of ${[...routes.keys()].join(", ")})`, { routes: [...routes.keys()] });
    return routes.get(name) ?? problem(404, "unknown_route", `no route ${JSON.stringify(name)}`, { routes: [...routes.keys()] });
  }

  async function readJson(req: Request): Promise<{ ok: true; value: unknown } | { ok: false; res: Response }> {
    const raw = await readBody(req, MAX_BODY_BYTES, BODY_TIMEOUT_MS);
    if (raw === TOO_LARGE) return { ok: false, res: problem(413, "too_large", `the body is larger than ${MAX_BODY_BYTES} bytes`) };
    if (raw === TOO_SLOW) return { ok: false, res: problem(408, "too_slow", "the body did not arrive in time") };
    if (raw === null || raw.byteLength === 0) return { ok: false, res: problem(400, "bad_body", "this request needs a JSON body") };
    try {
      return { ok: true, value: JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) };
    } catch {
      return { ok: false, res: problem(400, "bad_body", "the body is not JSON (UTF-8)") };
    }
  }

  async function snapshot(nowMs: number) {
    return statsStub(stats!).snapshot({ nowMs, minutes: STATS_MINUTES });
  }

  /** The caller's plan as far as it is known (see `KnownPlan`). */
  async function planOf(policy: Policy, id: string, kind: string): Promise<KnownPlan> {
    if (kind === "key") {
      const found = await keyPlan(policy, id.slice(4), keys).catch(() => null);
      if (found) return found;
    }
    if (kind === "ip" || kind === "auth" || kind === "anonymous" || kind === "key") return { name: policy.defaultPlan, source: "unverified" };
    return { name: policy.defaultPlan, source: "default" };
  }

  async function inspectCaller(scope: Scope, id: string, kind: string, nowMs: number): Promise<Response> {
    const { policy } = scope;
    const plan = await planOf(policy, id, kind);
    const p = planFor(policy, plan.name);
    const state = await scope.buckets.get(scope.buckets.idFromName(id)).inspect({ nowMs, bucket: p.bucket, ceiling: p.ceiling, challenge: p.challenge });
    let known = plan;
    if (plan.source === "default") {
      // A jwt: caller or a scheme's payer: the plan whose limits the object last metered with.
      const matching = plansMatching(policy, state.configs);
      if (matching.length > 0) known = { name: matching[0]!, source: "object", ...(matching.length > 1 ? { alsoMatches: matching.slice(1) } : {}) };
    }
    let recent: unknown[] | null = null;
    if (stats) recent = recentOf((await snapshot(nowMs).catch(() => null))?.recent ?? [], id);
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
      blocked: state.blockedUntilMs === null ? null : { untilMs: state.blockedUntilMs, until: new Date(state.blockedUntilMs).toISOString(), retryAfter: Math.max(1, Math.ceil((state.blockedUntilMs - nowMs) / 1000)) },
      cleanupAtMs: state.cleanupAtMs,
      recent,
    });
  }

  async function callers(req: Request, rest: string[]): Promise<Response> {
    if (rest.length < 1 || rest.length > 2) return problem(404, "not_found", "use <admin>/callers/<caller id, URL-encoded>[/reset|/block|/unblock]");
    const parsed = parseCallerId(rest[0]!);
    if (!parsed.ok) return problem(400, parsed.reason, `bad caller id: ${parsed.detail}`);
    const { id, kind } = parsed;
    const scope = scopeOf(req);
    if (scope instanceof Response) return scope;
    const nowMs = Date.now();
    const action = rest[1];
    if (action === undefined) return req.method === "GET" ? inspectCaller(scope, id, kind, nowMs) : wrongMethod(req.method, ["GET"]);
    if (action !== "reset" && action !== "block" && action !== "unblock") return problem(404, "not_found", `no action ${JSON.stringify(action)}: use reset, block or unblock`);
    if (req.method !== "POST") return wrongMethod(req.method, ["POST"]);
    const stub = scope.buckets.get(scope.buckets.idFromName(id));
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

  async function keyRoutes(req: Request, rest: string[]): Promise<Response> {
    if (rest.length > 1) return problem(404, "not_found", "use <admin>/keys or <admin>/keys/<hash or name>");
    if (rest.length === 0 && req.method !== "GET" && req.method !== "POST") return wrongMethod(req.method, ["GET", "POST"]);
    if (rest.length === 1 && req.method !== "DELETE") return wrongMethod(req.method, ["DELETE"]);
    if (!keys) return problem(501, "no_key_store", "the TOLLBOOTH_KEYS KV namespace is not bound");
    if (req.method === "GET") return reply(200, { keys: await listKeys(keys) });
    if (req.method === "DELETE") {
      const done = await revokeKeys(keys, rest[0]!);
      if (!done.ok) return problem(done.reason === "not_found" ? 404 : 409, done.reason, done.detail, done.reason === "ambiguous" ? { matches: done.matches } : {});
      return reply(200, { revoked: done.revoked, matchedBy: done.matchedBy, effectiveWithinSeconds: done.effectiveWithinMs / 1000, note: "isolates that looked the key up recently accept it until their 30 s memo expires; KV propagation adds up to ~60 s" });
    }
    const body = await readJson(req);
    if (!body.ok) return body.res;
    const done = await issueKey(keys, policy, body.value, Date.now());
    if (!done.ok) return problem(done.reason === "name_taken" ? 409 : 400, done.reason, done.detail ?? done.reason);
    return reply(201, { key: done.key, sha256Prefix: done.sha256.slice(0, 12), caller: `key:${done.sha256.slice(0, 32)}`, ...done.record, note: "the key is shown only this once; only its SHA-256 is stored" });
  }

  async function api(req: Request, segments: string[]): Promise<Response> {
    const [head, ...rest] = segments;
    switch (head) {
      case "callers":
        return callers(req, rest);
      case "keys":
        return keyRoutes(req, rest);
      case "stats":
      case "metrics":
      case "policy": {
        if (rest.length > 0) break;
        if (req.method !== "GET") return wrongMethod(req.method, ["GET"]);
        if (head === "policy") return reply(200, publicPolicy);
        if (!stats) return problem(501, "no_stats", "the TOLLBOOTH_STATS Durable Object namespace is not bound");
        const snap = await snapshot(Date.now());
        if (head === "stats") return reply(200, snap);
        return new Response(prometheusText(snap), { status: 200, headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8", "cache-control": "no-store", ...ADMIN_HEADERS } });
      }
    }
    return problem(404, "not_found", `no admin path ${base}/${segments.join("/")}`);
  }

  async function serveAsset(req: Request, name: string): Promise<Response> {
    if (req.method !== "GET" && req.method !== "HEAD") return wrongMethod(req.method, ["GET", "HEAD"]);
    const file = Object.hasOwn(ASSET_FILES, name) ? ASSET_FILES[name] : undefined;
    if (file === undefined || !assets) return problem(404, "not_found", `no asset ${JSON.stringify(name)}`);
    const res = await assets.fetch(new Request(new URL(file, req.url), { method: req.method }));
    const headers = new Headers(res.headers);
    for (const [k, v] of Object.entries(ADMIN_HEADERS)) headers.set(k, v);
    return new Response(res.body, { status: res.status, headers });
  }

  return async function admin(c, next) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const path = url.pathname;
    if (path !== base && !path.startsWith(base + "/")) return next();

    // Network ceiling first, as tollbooth counts every request of a network: the token
    // cannot be tried faster than this allows.
    const key = networkFor(req.headers, policy.identity.ipv4Prefix, policy.identity.ipv6Prefix);
    if (await overNetworkCeiling(network, key)) {
      return problem(429, "rate_limited", `over the ceiling of your network (${key})`, { reason: "network", retryAfter: policy.networkRetryAfterSeconds }, {}, policy.networkRetryAfterSeconds);
    }

    // Segments of the raw path, each percent-decoded once (a caller id carries `/` as %2F).
    let segments: string[];
    try {
      segments = path.slice(base.length).split("/").slice(1).map((s) => decodeURIComponent(s));
    } catch {
      return problem(400, "bad_path", "the path is not valid percent-encoding");
    }
    if (segments.length === 0 || (segments.length === 1 && segments[0] === "")) {
      if (req.method !== "GET" && req.method !== "HEAD") return wrongMethod(req.method, ["GET", "HEAD"]);
      return new Response(req.method === "HEAD" ? null : dashboardHtml(base), {
        status: 200,
        headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "content-security-policy": DASHBOARD_CSP, ...ADMIN_HEADERS },
      });
    }
    if (segments[0] === "assets" && segments.length === 2) return serveAsset(req, segments[1]!);

    // Invariant: nothing past this point answers without the operator's token.
    if (!(await checkToken(req.headers.get("authorization")))) {
      return problem(401, "unauthorized", "send Authorization: Bearer <TOLLBOOTH_ADMIN_TOKEN>", {}, { "www-authenticate": 'Bearer realm="tollbooth-admin"' });
    }
    try {
      return await api(req, segments);
    } catch (err) {
      console.error("tollbooth admin: request failed", err);
      return problem(503, "unavailable", "a store the admin API reads could not be reached", {}, {}, 1);
    }
  };
}

/** The policy as `GET <admin>/policy` shows it: no secret is in a policy; issued key hashes are cut to 12 hex characters. */
function redactedPolicy(policy: Policy): unknown {
  return { ...policy, identity: { ...policy.identity, apiKeys: policy.identity.apiKeys.map((k) => ({ ...k, sha256: `${k.sha256.slice(0, 12)}…` })) } };
}
