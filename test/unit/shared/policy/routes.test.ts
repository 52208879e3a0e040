/**
 * TOLLBOOTH_ROUTES (shared/policy/routes.ts): validation names the route and field; matching is
 * by exact host and whole path segments on the normalized path; the prefix is removed from the
 * raw path only when it spells the prefix segment by segment.
 */
import { describe, expect, it } from "vitest";
import { matchRoute, originProblem, parseRoutes, type Route, restAfterPrefix, routeSecrets } from "../../../../shared/policy/routes.ts";
import { normalizePath } from "../../../../workers/pipeline/paths.ts";
import { parsePolicy } from "../../../../workers/schemes/policy.ts";

const routes = (list: unknown[], policy?: unknown) => parseRoutes(JSON.stringify(list), policy)!;
const refused = (list: unknown, policy?: unknown) => {
  try {
    parseRoutes(typeof list === "string" ? list : JSON.stringify(list), policy);
  } catch (err) {
    expect(err).toBeInstanceOf(TypeError);
    return (err as Error).message;
  }
  throw new Error("accepted");
};

describe("parseRoutes", () => {
  it("is null when unset or blank (one origin, ORIGIN_URL)", () => {
    expect(parseRoutes(undefined, undefined)).toBeNull();
    expect(parseRoutes("  ", "{}")).toBeNull();
  });

  it("reads a route and inherits every top-level policy field it does not replace", () => {
    const [a, b] = routes(
      [
        { name: "a", match: { path: "/a" }, origin: "https://a.internal/base", policy: { bucket: { capacity: 2, refillPerSecond: 1 } } },
        {
          name: "b",
          match: { host: "B.Example.Org." },
          origin: "http://10.0.0.2:8080",
          stripPrefix: false,
          originSecret: "ORIGIN_B_SECRET",
        },
      ],
      JSON.stringify({ bucket: { capacity: 9, refillPerSecond: 1 }, endpoint: "/rpc", identity: { strategies: ["ip"] } }),
    );
    expect(a).toMatchObject({ name: "a", host: null, prefix: "/a", segments: ["a"], stripPrefix: true, originSecret: null });
    expect(a!.policy).toEqual({ bucket: { capacity: 2, refillPerSecond: 1 }, endpoint: "/rpc", identity: { strategies: ["ip"] } });
    expect(b).toMatchObject({
      name: "b",
      host: "b.example.org",
      prefix: "/",
      segments: [],
      stripPrefix: false,
      originSecret: "ORIGIN_B_SECRET",
    });
    expect(b!.policy).toEqual({ bucket: { capacity: 9, refillPerSecond: 1 }, endpoint: "/rpc", identity: { strategies: ["ip"] } });
  });

  it("a field a route gives replaces TOLLBOOTH_POLICY's whole: what it leaves out inside takes the default", () => {
    const [a] = routes([{ name: "a", match: { path: "/a" }, origin: "https://a.internal", policy: { bucket: { capacity: 60 } } }], {
      bucket: { capacity: 5, refillPerSecond: 2 },
      offerOrder: ["l402"],
    });
    const policy = parsePolicy(a!.policy);
    expect(policy.bucket).toEqual({ capacity: 60, refillPerSecond: 0.5 });
    expect(policy.offerOrder).toEqual(["l402", "pow", "x402"]);
  });

  it("names the route and field of each mistake", () => {
    const ok = { match: { path: "/a" }, origin: "https://a.internal" };
    expect(refused("[")).toMatch(/^TOLLBOOTH_ROUTES is not valid JSON/);
    expect(refused([])).toMatch(/non-empty JSON array/);
    expect(refused({ name: "a" })).toMatch(/non-empty JSON array/);
    expect(
      refused([
        { ...ok, name: "a" },
        { ...ok, name: "a", match: { path: "/b" } },
      ]),
    ).toMatch(/^TOLLBOOTH_ROUTES\[1\] \("a"\)\.name: another route/);
    expect(
      refused([
        { ...ok, name: "a" },
        { ...ok, name: "b" },
      ]),
    ).toMatch(/^TOLLBOOTH_ROUTES\[1\] \("b"\)\.match: route "a" already matches any host \/a/);
    expect(
      refused([
        { ...ok, name: "a", match: { host: "x.org" } },
        { ...ok, name: "b", match: { host: "X.ORG." } },
      ]),
    ).toMatch(/\("b"\)\.match: route "a" already matches x\.org/);
    expect(refused([{ ...ok, name: "A" }])).toMatch(/\("A"\)\.name: must be/);
    expect(refused([{ ...ok, name: "a/b" }])).toMatch(/\.name: must be/);
    expect(refused([{ ...ok, name: "a", origin: "not a url" }])).toMatch(/^TOLLBOOTH_ROUTES\[0\] \("a"\)\.origin: is not a URL/);
    expect(refused([{ ...ok, name: "a", origin: "ftp://a.internal" }])).toMatch(/\("a"\)\.origin: must be http or https/);
    expect(refused([{ ...ok, name: "a", origin: "https://u:p@a.internal" }])).toMatch(/\("a"\)\.origin: must not hold credentials/);
    expect(refused([{ ...ok, name: "a", origin: "https://origin.example.com" }])).toMatch(/\("a"\)\.origin: is the placeholder/);
    expect(refused([{ ...ok, name: "a", origin: undefined }])).toMatch(/\("a"\)\.origin: is not set/);
    for (const path of ["a", "/A", "/a/", "/a//b", "/%61", "/a/..", "", "/a?x", "/.well-known", "/.well-known/tollbooth"]) {
      expect(refused([{ ...ok, name: "a", match: { path } }])).toMatch(/\("a"\)\.match\.path: /);
    }
    for (const host of ["https://x.org", "x.org:443", "x.org/p", "", "a..b"]) {
      expect(refused([{ ...ok, name: "a", match: { host } }])).toMatch(/\("a"\)\.match\.host: /);
    }
    expect(refused([{ ...ok, name: "a", match: {} }])).toMatch(/\("a"\)\.match: give "host", "path" or both/);
    expect(refused([{ ...ok, name: "a", match: { prefix: "/a" } }])).toMatch(/\("a"\)\.match\.prefix: unknown field/);
    expect(refused([{ ...ok, name: "a", originn: "x" }])).toMatch(/\("a"\)\.originn: unknown field/);
    expect(refused([{ ...ok, name: "a", stripPrefix: "yes" }])).toMatch(/\("a"\)\.stripPrefix: must be true or false/);
    expect(refused([{ ...ok, name: "a", originSecret: "lower" }])).toMatch(/\("a"\)\.originSecret: /);
    expect(refused([{ ...ok, name: "a", policy: [] }])).toMatch(/\("a"\)\.policy: must be an object/);
    expect(refused([{ ...ok, name: "a", policy: { identity: { strategies: ["ip"] } } }])).toMatch(
      /\("a"\)\.policy\.identity: is the gateway's/,
    );
    expect(refused([{ ...ok, name: "a", policy: { networkRetryAfterSeconds: 60 } }])).toMatch(
      /\("a"\)\.policy\.networkRetryAfterSeconds: is the gateway's/,
    );
  });
});

describe("matchRoute", () => {
  const table = routes([
    { name: "root", match: { path: "/" }, origin: "https://root.internal" },
    { name: "a", match: { path: "/a" }, origin: "https://a.internal" },
    { name: "ab", match: { path: "/a/b" }, origin: "https://ab.internal" },
    { name: "host", match: { host: "h.example.org" }, origin: "https://h.internal" },
    { name: "hosta", match: { host: "h.example.org", path: "/a" }, origin: "https://ha.internal" },
  ]);
  const name = (host: string, path: string) => matchRoute(table, host, normalizePath(path))?.name ?? null;

  it("takes the longest prefix, on whole segments", () => {
    expect(name("gw.test", "/a/mcp")).toBe("a");
    expect(name("gw.test", "/a")).toBe("a");
    expect(name("gw.test", "/a/b/mcp")).toBe("ab");
    expect(name("gw.test", "/ab/mcp")).toBe("root");
    expect(name("gw.test", "/mcp")).toBe("root");
  });

  it("matches every spelling tollbooth's normalization folds together", () => {
    for (const p of ["/A/mcp", "/a//mcp", "//a/mcp", "/%61/mcp", "/%41/MCP", "/a/", "/a%2Fmcp"]) expect(name("gw.test", p)).toBe("a");
    expect(name("gw.test", "/a/%62/mcp")).toBe("ab");
  });

  it("prefers routes naming the host, case-insensitively, port and trailing dot ignored", () => {
    expect(name("H.Example.Org", "/mcp")).toBe("host");
    expect(name("h.example.org.", "/a/mcp")).toBe("hosta");
    expect(name("h.example.org", "/a/b/mcp")).toBe("hosta");
    expect(name("hh.example.org", "/mcp")).toBe("root");
    expect(new URL("http://H.EXAMPLE.ORG:8443/mcp").hostname).toBe("h.example.org");
  });

  it("matches nothing when no route claims the host and path", () => {
    const only = routes([{ name: "a", match: { path: "/a" }, origin: "https://a.internal" }]);
    expect(matchRoute(only, "gw.test", normalizePath("/b/mcp"))).toBeNull();
    expect(matchRoute(only, "gw.test", normalizePath("/abc"))).toBeNull();
    expect(matchRoute(only, "gw.test", normalizePath("/"))).toBeNull();
  });
});

describe("restAfterPrefix", () => {
  it("keeps the rest as received, after a prefix spelled in any case or escape", () => {
    expect(restAfterPrefix("/a/mcp", ["a"])).toBe("/mcp");
    expect(restAfterPrefix("/A/mcp", ["a"])).toBe("/mcp");
    expect(restAfterPrefix("//%61//mcp", ["a"])).toBe("//mcp");
    expect(restAfterPrefix("/a", ["a"])).toBe("/");
    expect(restAfterPrefix("/a/b/Mcp%20x", ["a", "b"])).toBe("/Mcp%20x");
    expect(restAfterPrefix("/mcp", [])).toBe("/mcp");
  });

  it("refuses a prefix that does not split into its segments", () => {
    expect(restAfterPrefix("/a%2Fmcp", ["a"])).toBeNull();
    expect(restAfterPrefix("/a%2fb/mcp", ["a", "b"])).toBeNull();
    expect(restAfterPrefix("/%zz/mcp", ["a"])).toBeNull();
    expect(restAfterPrefix("/ab/mcp", ["a"])).toBeNull();
  });
});

describe("originProblem and routeSecrets", () => {
  it("refuses placeholder hosts and accepts real ones", () => {
    for (const u of ["https://origin.example.com", "https://x.example.net/mcp", "http://a.example", "https://b.invalid."])
      expect(originProblem(u)).toMatch(/placeholder/);
    for (const u of ["https://mcp.internal", "http://127.0.0.1:3001", "https://example.community"]) expect(originProblem(u)).toBeNull();
    expect(originProblem("https://a.internal/?q=1")).toMatch(/query/);
  });

  it("derives one distinct key per route and per secret, each longer than an HMAC block", () => {
    const a = routeSecrets("first-secret-0123456789, second-secret-0123456789", "a").split(",");
    const b = routeSecrets("first-secret-0123456789,second-secret-0123456789", "b").split(",");
    expect(a).toHaveLength(2);
    expect(new Set([...a, ...b]).size).toBe(4);
    for (const k of [...a, ...b]) expect(Buffer.byteLength(k)).toBeGreaterThan(64);
    expect(a[0]!.endsWith("first-secret-0123456789")).toBe(true);
    expect(routeSecrets(undefined, "a")).toBe("");
  });
});

// A compile-time check that Route stays the documented shape.
const _shape: (keyof Route)[] = ["name", "host", "prefix", "segments", "origin", "stripPrefix", "policy", "originSecret"];
void _shape;
