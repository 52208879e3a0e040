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
import { WELL_KNOWN } from "../../shared/wire/headers.ts";
import type { NetworkLimiter } from "../env.ts";
import type { CallerState } from "../objects/caller-state.ts";
import { shortCaller } from "../observe/counters.ts";
import type { Stats } from "../observe/stats-object.ts";
import { overNetworkCeiling } from "../pipeline/network-ceiling.ts";
import { normalizePath } from "../pipeline/paths.ts";
import { type Policy, type PolicyInput, parsePolicy } from "../schemes/policy.ts";
import { adminApi } from "./api.ts";
import { adminTokenChecker } from "./auth.ts";
import type { AdminContext, AdminRoute } from "./context.ts";
import { ADMIN_HEADERS, ASSET_FILES, DASHBOARD_CSP, dashboardHtml } from "./dashboard.ts";
import { problem, wrongMethod } from "./reply.ts";

export { type AdminRoute, STATS_MINUTES } from "./context.ts";

/** Default admin path. */
export const DEFAULT_ADMIN_PATH = "/admin";

/** Options of `admin()`. */
export interface AdminOptions {
  /** `TOLLBOOTH_ADMIN_TOKEN` (a Worker secret, ≥ 16 bytes of bearer-token characters). */
  token: string;
  /** `TOLLBOOTH_ADMIN_PATH`: the prefix, `/` + letters, digits, `-_.` segments; default `/admin`. Never the MCP endpoint or under `/.well-known`. */
  path?: string | undefined;
  /** The gateway's policy (validated here): its plans, identity prefixes and endpoint. */
  policy?: PolicyInput | Policy | undefined;
  /** The `CallerState` namespace (binding `CALLER_BUCKET`). */
  callers: DurableObjectNamespace<CallerState>;
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

/**
 * Check the admin path.
 * @throws TypeError naming `TOLLBOOTH_ADMIN_PATH` when it is malformed, the MCP endpoint (or holds it), or under `/.well-known`
 */
export function adminPath(path: string | undefined, endpoint: string): string {
  const p = path ?? DEFAULT_ADMIN_PATH;
  if (!/^(\/[A-Za-z0-9_.-]+)+$/.test(p) || p.split("/").some((s) => s === "." || s === "..")) {
    throw new TypeError(
      `TOLLBOOTH_ADMIN_PATH ${JSON.stringify(p)} must be / followed by segments of letters, digits, -, _ and . (no trailing slash)`,
    );
  }
  const admin = normalizePath(p);
  const mcp = normalizePath(endpoint);
  // Invariant: the admin path never shadows the MCP endpoint (nor the endpoint the admin path).
  if (admin === mcp || mcp.startsWith(`${admin}/`) || admin.startsWith(`${mcp}/`))
    throw new TypeError(`TOLLBOOTH_ADMIN_PATH ${p} overlaps the MCP endpoint ${endpoint}`);
  if (admin === WELL_KNOWN || admin.startsWith("/.well-known"))
    throw new TypeError(`TOLLBOOTH_ADMIN_PATH ${p} must not be under /.well-known`);
  return p;
}

/** `GET <path>/assets/<name>`: one of the dashboard's public files, from `ASSETS`. */
async function serveAsset(req: Request, name: string, assets: Fetcher | undefined): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") return wrongMethod(req.method, ["GET", "HEAD"]);
  const file = Object.hasOwn(ASSET_FILES, name) ? ASSET_FILES[name] : undefined;
  if (file === undefined || !assets) return problem(404, "not_found", `no asset ${JSON.stringify(name)}`);
  const res = await assets.fetch(new Request(new URL(file, req.url), { method: req.method }));
  const headers = new Headers(res.headers);
  for (const [k, v] of Object.entries(ADMIN_HEADERS)) headers.set(k, v);
  return new Response(res.body, { status: res.status, headers });
}

/**
 * Build the admin middleware.
 * @throws TypeError naming the bad option (`TOLLBOOTH_ADMIN_TOKEN`, `TOLLBOOTH_ADMIN_PATH`, `policy.<field>`, `callers`)
 */
export function admin(options: AdminOptions): MiddlewareHandler {
  const policy = parsePolicy(options.policy);
  const checkToken = adminTokenChecker(options.token);
  const base = adminPath(options.path, policy.endpoint);
  if (!options.callers || typeof options.callers.idFromName !== "function")
    throw new TypeError("admin(): option `callers` must be the CallerState Durable Object namespace");
  const { network } = options;
  const ctx: AdminContext = {
    policy,
    base,
    callers: options.callers,
    routes: new Map((options.routes ?? []).map((r) => [r.name, r])),
    keys: options.keys,
    stats: options.stats,
    publicPolicy: redactedPolicy(policy),
  };

  return async function admin(c, next) {
    const req = c.req.raw;
    const url = new URL(req.url);
    const path = url.pathname;
    if (path !== base && !path.startsWith(`${base}/`)) return next();

    // Network ceiling first, as tollbooth counts every request of a network: the token
    // cannot be tried faster than this allows.
    const key = networkFor(req.headers, policy.identity.ipv4Prefix, policy.identity.ipv6Prefix);
    if (await overNetworkCeiling(network, key)) {
      return problem(
        429,
        "rate_limited",
        `over the ceiling of your network (${key})`,
        { reason: "network", retryAfter: policy.networkRetryAfterSeconds },
        {},
        policy.networkRetryAfterSeconds,
      );
    }

    // Segments of the raw path, each percent-decoded once (a caller id carries `/` as %2F).
    let segments: string[];
    try {
      segments = path
        .slice(base.length)
        .split("/")
        .slice(1)
        .map((s) => decodeURIComponent(s));
    } catch {
      return problem(400, "bad_path", "the path is not valid percent-encoding");
    }
    if (segments.length === 0 || (segments.length === 1 && segments[0] === "")) {
      // The dashboard's HTML shell: no data, no inline script.
      if (req.method !== "GET" && req.method !== "HEAD") return wrongMethod(req.method, ["GET", "HEAD"]);
      return new Response(req.method === "HEAD" ? null : dashboardHtml(base), {
        status: 200,
        headers: {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "content-security-policy": DASHBOARD_CSP,
          ...ADMIN_HEADERS,
        },
      });
    }
    if (segments[0] === "assets" && segments.length === 2) return serveAsset(req, segments[1]!, options.assets);

    // Invariant: nothing past this point answers without the operator's token.
    if (!(await checkToken(req.headers.get("authorization")))) {
      console.log(adminLine(req.method, segments, 401, Date.now()));
      return problem(
        401,
        "unauthorized",
        "send Authorization: Bearer <TOLLBOOTH_ADMIN_TOKEN>",
        {},
        { "www-authenticate": 'Bearer realm="tollbooth-admin"' },
      );
    }
    let res: Response;
    try {
      res = await adminApi(ctx, req, segments);
    } catch (err) {
      console.error("tollbooth admin: request failed", err);
      res = problem(503, "unavailable", "a store the admin API reads could not be reached", {}, {}, 1);
    }
    // Every action (reset, block, unblock, a key issued or revoked) and every failure is logged whole.
    if ((req.method !== "GET" && req.method !== "HEAD") || res.status >= 500)
      console.log(adminLine(req.method, segments, res.status, Date.now()));
    return res;
  };
}

/**
 * The log line of an admin request (docs/admin.md, "The admin log"): one JSON line,
 * `{"tollbooth":"admin","time":<unix ms>,"method":"POST","action":"callers/block","target":"key:3f9a0c1d2e4b…","status":200}`,
 * for every action an operator asked (any method but GET and HEAD), every refused token
 * (401) and every failure (5xx); never sampled (`TOLLBOOTH_DECISION_LOG_SAMPLE` is for
 * admitted requests). `action` is the route (`callers`, `keys`) and its verb; `target` the
 * caller id or key named, shortened as decision lines shorten callers (`shortCaller`: no
 * full credential hash), each cut to 64 characters. No header or body is in it.
 */
export function adminLine(method: string, segments: readonly string[], status: number, nowMs: number): string {
  const cut = (s: string) => s.slice(0, 64);
  const action = cut([segments[0] ?? "", segments[2]].filter((s) => s !== undefined && s !== "").join("/"));
  const target = segments[1] ? cut(shortCaller(segments[1])) : undefined;
  return JSON.stringify({ tollbooth: "admin", time: nowMs, method: cut(method), action, ...(target ? { target } : {}), status });
}

/** The policy as `GET <admin>/policy` shows it: no secret is in a policy; issued key hashes are cut to 12 hex characters. */
function redactedPolicy(policy: Policy): unknown {
  return {
    ...policy,
    identity: { ...policy.identity, apiKeys: policy.identity.apiKeys.map((k) => ({ ...k, sha256: `${k.sha256.slice(0, 12)}…` })) },
  };
}
