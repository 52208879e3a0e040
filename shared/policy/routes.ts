/**
 * Several origins behind one gateway: the `TOLLBOOTH_ROUTES` setting (JSON), its
 * validation, and choosing the route of a request.
 *
 *   TOLLBOOTH_ROUTES = '[
 *     { "name": "search", "match": { "path": "/search" }, "origin": "https://search.internal" },
 *     { "name": "files",  "match": { "host": "files.example.com" }, "origin": "https://files.internal",
 *       "policy": { "bucket": { "capacity": 5, "refillPerSecond": 0.1 } } }
 *   ]'
 *
 * A route: `name` (1–32 of `a-z 0-9 _ -`), `match` (`host` and/or `path`; at least one),
 * `origin` (http(s) base URL, no credentials in it), `stripPrefix` (default true: the origin
 * gets the path after the prefix), `policy` (top-level fields of TOLLBOOTH_POLICY this route
 * replaces; every field left out is TOLLBOOTH_POLICY's), `originSecret` (the name of a
 * secret binding signing this origin's `Tollbooth-Signature`; default the gateway's).
 * `identity` and `networkRetryAfterSeconds` are the gateway's, never a route's.
 *
 * Matching (`matchRoute`): the hostname exactly (case-insensitive, port and a trailing dot
 * ignored); the path by whole segments, on the path normalized as tollbooth normalizes the
 * endpoint (percent-decoded, lowercase, no repeated or trailing slashes). Routes naming the
 * request's host come before routes naming none; among those, the longest prefix wins.
 */

/** Route names: what Durable Object names and derived keys are scoped by. */
const ROUTE_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;
/** A canonical path prefix: lowercase unreserved characters, no `%`, no empty segment. */
const PREFIX = /^(\/[a-z0-9._~-]+)+$/;
/** A hostname as the URL parser gives it (lowercase, punycode), without port. */
const HOST = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
/** Names of secret bindings (`originSecret`). */
const BINDING = /^[A-Z][A-Z0-9_]{0,63}$/;
/** Policy fields that are the gateway's, one for all routes. */
const GATEWAY_FIELDS = ["identity", "networkRetryAfterSeconds"] as const;
/** Fields of a route object. */
const ROUTE_FIELDS = new Set(["name", "match", "origin", "stripPrefix", "policy", "originSecret"]);

/** One route, validated. */
export interface Route {
  /** Unique name; scopes the route's Durable Objects and credential keys. */
  name: string;
  /** Lowercase hostname without port or trailing dot; null: any host. */
  host: string | null;
  /** Canonical path prefix (`/a/b`); `/` when the route names no path. */
  prefix: string;
  /** The prefix's segments (`["a", "b"]`; empty for `/`). */
  segments: readonly string[];
  /** Base URL of the route's origin (http or https). */
  origin: string;
  /** Whether the origin gets the path without the prefix (default true). */
  stripPrefix: boolean;
  /**
   * The route's policy input: TOLLBOOTH_POLICY's top-level fields with the route's own
   * replacing them whole (parse it with `parsePolicy`).
   */
  policy: Record<string, unknown>;
  /** Name of the secret binding of this origin's proof; null: the gateway's. */
  originSecret: string | null;
}

/** Hosts reserved for examples (RFC 2606, RFC 6761): never a real origin. */
const PLACEHOLDER_HOST = /(^|\.)(example\.(com|net|org)|example|invalid)$/;

/**
 * Why an origin URL cannot be used, or null when it can: not a URL, not http(s), user
 * info in it (a credential in a var; use a secret), a query or fragment, or a placeholder
 * host (`origin.example.com`, any `example.com/.net/.org`, `.example`, `.invalid`).
 * @param value the configured URL
 * @returns a sentence naming the problem, or null
 */
export function originProblem(value: unknown): string | null {
  if (typeof value !== "string" || value.trim() === "") return "is not set";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `is not a URL: ${JSON.stringify(value)}`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return `must be http or https, got ${url.protocol}`;
  if (url.username !== "" || url.password !== "")
    return "must not hold credentials (user:password@); the origin proof or a secret says who calls";
  if (url.search !== "" || url.hash !== "") return "must not have a query or fragment";
  if (PLACEHOLDER_HOST.test(url.hostname.replace(/\.$/, ""))) return `is the placeholder ${url.origin}: set the URL of your MCP server`;
  return null;
}

/** True when `hostname` is a loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopback(hostname: string): boolean {
  const h = hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, "")
    .replace(/\.$/, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Parse and validate `TOLLBOOTH_ROUTES`.
 * @param raw the setting (JSON array); undefined or blank: no routes (one origin, ORIGIN_URL)
 * @param topPolicy TOLLBOOTH_POLICY (JSON text, or an object, or undefined) the routes inherit from
 * @returns the routes in configuration order, or null when none are configured
 * @throws TypeError naming the route and field: `TOLLBOOTH_ROUTES[1] ("b").origin: …` (a
 *   duplicate name, the same match twice, a bad URL or prefix or host, an unknown field,
 *   a gateway-wide policy field in a route). Route policies are checked by `parsePolicy`.
 */
export function parseRoutes(raw: string | undefined, topPolicy: unknown): Route[] | null {
  if (raw === undefined || raw.trim() === "") return null;
  let list: unknown;
  try {
    list = JSON.parse(raw);
  } catch (err) {
    throw new TypeError(`TOLLBOOTH_ROUTES is not valid JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(list) || list.length === 0) throw new TypeError("TOLLBOOTH_ROUTES must be a non-empty JSON array of routes");
  const top = topPolicyObject(topPolicy);
  const routes: Route[] = [];
  const names = new Set<string>();
  const matchers = new Map<string, string>();
  for (const [i, item] of list.entries()) {
    const label = (field?: string) =>
      `TOLLBOOTH_ROUTES[${i}]${isObject(item) && typeof item.name === "string" ? ` (${JSON.stringify(item.name)})` : ""}${field ? `.${field}` : ""}`;
    if (!isObject(item)) throw new TypeError(`${label()}: a route must be an object`);
    const unknown = Object.keys(item).find((k) => !ROUTE_FIELDS.has(k));
    if (unknown !== undefined) throw new TypeError(`${label(unknown)}: unknown field (a route has ${[...ROUTE_FIELDS].join(", ")})`);
    const name = item.name;
    if (typeof name !== "string" || !ROUTE_NAME.test(name))
      throw new TypeError(`${label("name")}: must be 1-32 characters of a-z, 0-9, _ and -, starting with a letter or digit`);
    if (names.has(name)) throw new TypeError(`${label("name")}: another route has the name ${JSON.stringify(name)}`);
    names.add(name);

    const match = item.match;
    if (!isObject(match)) throw new TypeError(`${label("match")}: must be an object with "host" and/or "path"`);
    const extra = Object.keys(match).find((k) => k !== "host" && k !== "path");
    if (extra !== undefined) throw new TypeError(`${label(`match.${extra}`)}: unknown field (a match has host and/or path)`);
    if (match.host === undefined && match.path === undefined)
      throw new TypeError(`${label("match")}: give "host", "path" or both ("path": "/" matches every path)`);
    let host: string | null = null;
    if (match.host !== undefined) {
      const h = typeof match.host === "string" ? match.host.toLowerCase().replace(/\.$/, "") : "";
      if (!HOST.test(h))
        throw new TypeError(
          `${label("match.host")}: must be a hostname without scheme, port or path (e.g. "mcp.example.com"), got ${JSON.stringify(match.host)}`,
        );
      host = h;
    }
    let prefix = "/";
    if (match.path !== undefined) {
      const p = match.path;
      // Invariant: prefixes are canonical, so the normalized request path is compared with
      // exactly the spelling tollbooth's normalization produces.
      if (typeof p !== "string" || (p !== "/" && !PREFIX.test(p))) {
        throw new TypeError(
          `${label("match.path")}: must be "/" or a path like "/a" or "/a/b" in lowercase a-z, 0-9, ".", "_", "~", "-" (no trailing slash, no %-escapes), got ${JSON.stringify(p)}`,
        );
      }
      if (p.split("/").some((s) => s === "." || s === ".."))
        throw new TypeError(`${label("match.path")}: "." and ".." are not path segments a route can match`);
      // Invariant: tollbooth's own root endpoints (the route list) stay the router's.
      if (p === "/.well-known" || p.startsWith("/.well-known/"))
        throw new TypeError(`${label("match.path")}: /.well-known is the gateway's; choose another prefix`);
      prefix = p;
    }
    const matcher = `${host ?? "*"} ${prefix}`;
    const clash = matchers.get(matcher);
    if (clash !== undefined)
      throw new TypeError(`${label("match")}: route ${JSON.stringify(clash)} already matches ${host ?? "any host"} ${prefix}`);
    matchers.set(matcher, name);

    const problem = originProblem(item.origin);
    if (problem !== null) throw new TypeError(`${label("origin")}: ${problem}`);
    if (item.stripPrefix !== undefined && typeof item.stripPrefix !== "boolean")
      throw new TypeError(`${label("stripPrefix")}: must be true or false`);
    if (item.originSecret !== undefined && (typeof item.originSecret !== "string" || !BINDING.test(item.originSecret))) {
      throw new TypeError(`${label("originSecret")}: must be the name of a secret binding, e.g. "ORIGIN_SEARCH_SECRET"`);
    }
    if (item.policy !== undefined && !isObject(item.policy)) throw new TypeError(`${label("policy")}: must be an object of policy fields`);
    const own = (item.policy ?? {}) as Record<string, unknown>;
    const gatewayWide = GATEWAY_FIELDS.find((f) => f in own);
    if (gatewayWide !== undefined)
      throw new TypeError(`${label(`policy.${gatewayWide}`)}: is the gateway's, one for every route: set it in TOLLBOOTH_POLICY`);
    routes.push({
      name,
      host,
      prefix,
      segments: prefix === "/" ? [] : prefix.slice(1).split("/"),
      origin: item.origin as string,
      stripPrefix: item.stripPrefix ?? true,
      policy: { ...top, ...own },
      originSecret: (item.originSecret as string | undefined) ?? null,
    });
  }
  return routes;
}

/**
 * The route of a request, or null when none matches.
 * @param routes as `parseRoutes` returns them
 * @param hostname the request URL's hostname (any case; a trailing dot ignored)
 * @param normalizedPath the path as `normalizePath` (workers/pipeline/paths.ts) gives it
 */
export function matchRoute(routes: readonly Route[], hostname: string, normalizedPath: string): Route | null {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  let best: Route | null = null;
  for (const r of routes) {
    if (r.host !== null && r.host !== host) continue;
    // Whole segments only: "/a" matches "/a" and "/a/…", never "/ab".
    if (r.prefix !== "/" && normalizedPath !== r.prefix && !normalizedPath.startsWith(`${r.prefix}/`)) continue;
    if (best === null || rank(r) > rank(best)) best = r;
  }
  return best;
}

/** Host-specific routes first, then the longest prefix. */
function rank(r: Route): number {
  return (r.host !== null ? 1_000_000 : 0) + (r.prefix === "/" ? 0 : r.prefix.length);
}

/**
 * Split a raw request path (as in the URL, percent-escapes kept) after a route's prefix.
 * Each of the first `segments.length` non-empty raw segments must decode (percent-decoding,
 * lowercase) to the prefix's segment; repeated slashes between them are skipped.
 * @returns the rest of the path, spelled as received (`/` when nothing is left), or null
 *   when the raw path does not spell the prefix segment by segment (e.g. an escaped `/`
 *   inside the prefix: `/a%2Fmcp`)
 */
export function restAfterPrefix(rawPath: string, segments: readonly string[]): string | null {
  let pos = 0;
  for (const want of segments) {
    while (rawPath[pos] === "/") pos++;
    let end = rawPath.indexOf("/", pos);
    if (end === -1) end = rawPath.length;
    let seg: string;
    try {
      seg = decodeURIComponent(rawPath.slice(pos, end)).toLowerCase();
    } catch {
      return null;
    }
    if (seg !== want) return null;
    pos = end;
  }
  const rest = rawPath.slice(pos);
  return rest === "" ? "/" : rest;
}

/**
 * A route's credential secrets: each comma-separated TOLLBOOTH_SECRET prefixed with a
 * fixed-length label naming the route. The label is 72 bytes, so every derived key is
 * longer than SHA-256's 64-byte block and HMAC uses SHA-256(label ‖ secret) as its key
 * (RFC 2104 §3): one key per route, unrelated to the others and to the gateway's.
 * Invariant: a challenge, access token or L402 macaroon signed for one route is refused on
 * another (unknown key id), so a caller's solve or payment buys credits on one route only.
 * @param secrets TOLLBOOTH_SECRET as configured (checked by `parseSecrets` afterwards)
 * @param name a route name (`a-z 0-9 _ -`: no `,` or `:`)
 */
export function routeSecrets(secrets: string | undefined, name: string): string {
  if (secrets === undefined) return "";
  const label = `tollbooth/route-key/v1:${name}:`.padEnd(72, ".");
  return secrets
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => label + s)
    .join(",");
}

/** TOLLBOOTH_POLICY as an object of top-level fields (errors are left to `parsePolicy`). */
function topPolicyObject(policy: unknown): Record<string, unknown> {
  if (isObject(policy)) return policy;
  if (typeof policy !== "string" || policy.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(policy);
    return isObject(value) ? value : {};
  } catch {
    return {};
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
