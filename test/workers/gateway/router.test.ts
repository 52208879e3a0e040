/**
 * Several origins behind one gateway (TOLLBOOTH_ROUTES), inside workerd: each route under
 * its own policy and its own Durable Objects; a request no route claims, or a prefix spelled
 * so that it does not split into its segments, reaches no origin; a credential bought on one
 * route buys nothing on another; a bad route configuration is a 500 naming it.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  GW,
  gateway,
  ipIdentity,
  kidOf,
  ORIGIN_URL,
  observeOrigin,
  post,
  request,
  rows,
  SECRET,
  solve,
  toolCall,
} from "../support.ts";

const ROUTES = [
  { name: "a", match: { path: "/a" }, origin: `${ORIGIN_URL}/oa`, policy: { bucket: { capacity: 2, refillPerSecond: 0.001 } } },
  {
    name: "b",
    match: { path: "/b" },
    origin: `${ORIGIN_URL}/ob`,
    policy: { bucket: { capacity: 4, refillPerSecond: 0.001 }, costs: { tools: { echo: 2 } } },
  },
  { name: "h", match: { host: "h.example.org" }, origin: `${ORIGIN_URL}/oh`, stripPrefix: false },
  { name: "keep", match: { path: "/keep/v1" }, origin: `${ORIGIN_URL}/ok`, stripPrefix: false },
];
/** Inherited by every route that does not replace it. */
const TOP = { bucket: { capacity: 100, refillPerSecond: 1 }, challenge: { difficulty: 4, credits: 3 } };
const gw = gateway(TOP, { TOLLBOOTH_ROUTES: JSON.stringify(ROUTES) });

let ip: string;
let origin: ReturnType<typeof observeOrigin>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** Statuses of `n` echo calls from this test's caller to `path`. */
async function calls(path: string, n: number, send = gw): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(post(toolCall(i), { ip, path }))).status);
  return out;
}

describe("routes: each origin under its own policy", () => {
  it("sends each route to its origin, prefix removed, and meters it under its own policy", async () => {
    // Route a: capacity 2, echo costs 1. Route b: capacity 4, echo costs 2.
    expect(await calls("/a/mcp", 3)).toEqual([200, 200, 402]);
    expect(await calls("/b/mcp", 3)).toEqual([200, 200, 402]);
    expect(origin.requests.map((r) => r.url)).toEqual([
      `${ORIGIN_URL}/oa/mcp`,
      `${ORIGIN_URL}/oa/mcp`,
      `${ORIGIN_URL}/ob/mcp`,
      `${ORIGIN_URL}/ob/mcp`,
    ]);
  });

  it("keeps one caller's budget per route, in objects named by route (the single-origin name untouched)", async () => {
    expect(await calls("/a/mcp", 3)).toEqual([200, 200, 402]);
    // Route a spent; route b intact.
    expect(await calls("/b/mcp", 1)).toEqual([200]);
    const free = async (name: string) =>
      (await rows<{ name: string; tokens: number }>(name, "buckets")).find((r) => r.name === "free")?.tokens;
    expect(await free(`route:a/${ipIdentity(ip)}`)).toBeLessThan(1);
    expect(await free(`route:b/${ipIdentity(ip)}`)).toBe(2);
    expect(await rows(ipIdentity(ip), "buckets")).toEqual([]);
  });

  it("prices every spelling of a prefix under that route's policy", async () => {
    expect(await calls("/A/mcp", 1)).toEqual([200]);
    expect(await calls("/%61/mcp", 1)).toEqual([200]);
    expect(await calls("//a//mcp", 1)).toEqual([402]);
    expect(origin.requests.map((r) => r.url)).toEqual([`${ORIGIN_URL}/oa/mcp`, `${ORIGIN_URL}/oa/mcp`]);
  });

  it("routes by host (any case, any port) and forwards the prefix when stripPrefix is false", async () => {
    const send = (url: string) =>
      gw(
        new Request(url, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: JSON.stringify(toolCall(1)),
        }),
      );
    expect((await send("http://H.Example.Org:8443/mcp")).status).toBe(200);
    expect((await send(`${GW}/KEEP/v1/mcp?x=1`)).status).toBe(200);
    expect(origin.requests.map((r) => r.url)).toEqual([`${ORIGIN_URL}/oh/mcp`, `${ORIGIN_URL}/ok/keep/v1/mcp?x=1`]);
  });

  it("a 402 names the route's own endpoints, and its verify endpoint redeems there", async () => {
    await calls("/a/mcp", 2);
    const paid = await gw(post(toolCall(9), { ip, path: "/a/mcp" }));
    const data = (await errorBody(paid.clone())).error.data!;
    expect([data.policyUrl, data.challengeUrl, data.verifyUrl, data.statusUrl]).toEqual(
      ["", "/challenge", "/verify", "/status"].map((p) => `${GW}/a/.well-known/tollbooth${p}`),
    );
    const { verifyBody } = await solve(challengeOf(paid));
    const redeem = (url: string) =>
      gw(
        new Request(url, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: JSON.stringify(verifyBody),
        }),
      );
    // Route b's verify endpoint does not know route a's challenge; route a's does.
    expect((await redeem(`${GW}/b/.well-known/tollbooth/verify`)).status).toBe(422);
    const verified = await redeem(data.verifyUrl as string);
    expect(verified.status).toBe(200);
    const { token } = (await verified.json()) as { token: string };
    expect((await gw(post(toolCall(10), { ip, path: "/a/mcp", headers: { "tollbooth-token": token } }))).status).toBe(200);
  });

  it("a solve bought on one route is refused on another, and buys credits on its own", async () => {
    await calls("/a/mcp", 2);
    const paid = await gw(post(toolCall(9), { ip, path: "/a/mcp" }));
    expect(paid.status).toBe(402);
    const { header } = await solve(challengeOf(paid));
    const elsewhere = await gw(post(toolCall(10), { ip, path: "/b/mcp", headers: { "tollbooth-solution": header } }));
    expect(elsewhere.status).toBe(402);
    expect((await errorBody(elsewhere)).error.data!.reason).toBe("solution_unknown_key");
    const home = await gw(post(toolCall(11), { ip, path: "/a/mcp", headers: { "tollbooth-solution": header } }));
    expect(home.status).toBe(200);
    const token = home.headers.get("tollbooth-token")!;
    expect(token).toMatch(/^tb1\./);
    // The access token it bought is no good on route b either.
    const withToken = await gw(post(toolCall(12), { ip, path: "/b/mcp", headers: { "tollbooth-token": token } }));
    expect(withToken.status).toBe(402);
    expect((await errorBody(withToken)).error.data!.reason).toMatch(/^token_/);
    expect(origin.requests.filter((r) => r.url.startsWith(`${ORIGIN_URL}/ob`))).toHaveLength(0);
  });
});

describe("routes: the origin ceiling", () => {
  it("is one set of objects per route: route a's origin at its ceiling leaves route b's open", async () => {
    // 10 messages, 4 of them for free traffic (docs/allocation.md).
    const ceiling = { originCeiling: { capacity: 10, refillPerSecond: 0.001 } };
    const send = gateway(TOP, {
      TOLLBOOTH_ROUTES: JSON.stringify([
        { ...ROUTES[0], name: `ca${ip.replace(/\./g, "-")}`, policy: { ...ROUTES[0]!.policy, ...ceiling } },
        { ...ROUTES[1], name: `cb${ip.replace(/\./g, "-")}`, policy: { ...ROUTES[1]!.policy, ...ceiling } },
      ]),
    });
    // Five callers on route a: the fifth finds a's origin at its ceiling for free traffic (all callers together).
    const answers: Response[] = [];
    for (let i = 0; i < 5; i++) answers.push(await send(post(toolCall(1), { ip: freshIp(), path: "/a/mcp" })));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 402]);
    expect((await errorBody(answers[4]!)).error.data).toMatchObject({ reason: "origin", layer: "origin" });
    expect((await send(post(toolCall(2), { ip, path: "/b/mcp" }))).status).toBe(200);
    expect(origin.requests.map((r) => r.url)).toEqual([...Array<string>(4).fill(`${ORIGIN_URL}/oa/mcp`), `${ORIGIN_URL}/ob/mcp`]);
  });
});

describe("routes: refusals reach no origin", () => {
  it("answers 404 JSON for a path no route claims", async () => {
    for (const path of ["/mcp", "/c/mcp", "/ab/mcp", "/keep/mcp", "/"]) {
      const res = await gw(post(toolCall(1), { ip, path }));
      expect(res.status, path).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
      expect(((await res.json()) as { error: string }).error).toBe("not_found");
    }
    expect(origin.requests).toHaveLength(0);
  });

  it("answers 400 when the prefix is spelled with an escaped slash", async () => {
    const res = await gw(post(toolCall(1), { ip, path: "/a%2Fmcp" }));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("invalid_path");
    expect(origin.requests).toHaveLength(0);
    expect(await rows(`route:a/${ipIdentity(ip)}`, "buckets")).toEqual([]);
  });

  it("answers 400 invalid_path for any spelling origins read differently, inside a route too, before any route's tollbooth counts it", async () => {
    for (const path of ["/a/..%2Fb/mcp", "/b/x/..%2Fmcp", "/a/mcp%5C", "/b/%2e%2e%2fa/mcp", "/a/mcp%zz"]) {
      const res = await gw(post(toolCall(1), { ip, path }));
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: string }).error, path).toBe("invalid_path");
    }
    expect(origin.requests).toHaveLength(0);
    expect(await rows(`route:a/${ipIdentity(ip)}`, "buckets")).toEqual([]);
    expect(await rows(`route:b/${ipIdentity(ip)}`, "buckets")).toEqual([]);
  });
});

describe("routes: the policy endpoints", () => {
  it("lists the routes at the root, without origins or secrets", async () => {
    const res = await gw(request("GET", "/.well-known/tollbooth", { ip }));
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(ORIGIN_URL);
    expect(text).not.toContain("127.0.0.1");
    const { routes } = JSON.parse(text) as { routes: Array<Record<string, unknown>> };
    expect(routes.map((r) => [r.name, r.endpoint, r.policyUrl])).toEqual([
      ["a", "/a/mcp", `${GW}/a/.well-known/tollbooth`],
      ["b", "/b/mcp", `${GW}/b/.well-known/tollbooth`],
      ["h", "/mcp", "http://h.example.org/.well-known/tollbooth"],
      ["keep", "/keep/v1/mcp", `${GW}/keep/v1/.well-known/tollbooth`],
    ]);
    expect(routes[0]).toMatchObject({ match: { path: "/a" }, stripPrefix: true, plans: ["free"], defaultPlan: "free" });
    expect(origin.requests).toHaveLength(0);
  });

  it("serves each route's own policy under its prefix", async () => {
    const res = await gw(request("GET", "/b/.well-known/tollbooth", { ip }));
    expect(res.status).toBe(200);
    const policy = (await res.json()) as Record<string, any>;
    expect(policy.bucket.capacity).toBe(4);
    expect(policy.costs.tools.echo).toBe(2);
    expect(policy.challenge.difficulty).toBe(4);
    expect(policy.route.name).toBe("b");
    expect(policy.verifyUrl).toBe(`${GW}/b/.well-known/tollbooth/verify`);
    expect(policy.routes).toHaveLength(4);
    const status = await gw(request("GET", "/b/.well-known/tollbooth/status", { ip }));
    expect(((await status.json()) as { bucket: { remaining: number } }).bucket.remaining).toBe(4);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("routes: paths tollbooth does not answer itself", () => {
  it("forwards another spelling of the policy path to the route's origin, its answer untouched", async () => {
    const res = await gw(request("GET", "/a/.WELL-KNOWN/tollbooth", { ip }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).not.toHaveProperty("routes");
    expect(body).toHaveProperty("jsonrpc", "2.0");
    expect(origin.requests.map((r) => r.url)).toEqual([`${ORIGIN_URL}/oa/.WELL-KNOWN/tollbooth`]);
  });
});

describe("routes: configuration", () => {
  async function misconfigured(routes: unknown, names: string, overrides: Record<string, string> = {}) {
    const send = gateway(TOP, { TOLLBOOTH_ROUTES: typeof routes === "string" ? routes : JSON.stringify(routes), ...overrides });
    const res = await send(post(toolCall(1), { ip, path: "/a/mcp" }));
    expect(res.status).toBe(500);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe("misconfigured");
    expect(body.message).toContain(names);
    expect(origin.requests).toHaveLength(0);
  }

  it("answers 500 naming the route and field", async () => {
    await misconfigured([ROUTES[0], { ...ROUTES[1], name: "a" }], 'TOLLBOOTH_ROUTES[1] ("a").name');
    await misconfigured([ROUTES[0], { ...ROUTES[1], match: { path: "/a" } }], 'TOLLBOOTH_ROUTES[1] ("b").match');
    await misconfigured([{ ...ROUTES[0], origin: "https://origin.example.com" }], 'TOLLBOOTH_ROUTES[0] ("a").origin');
    await misconfigured(
      [{ ...ROUTES[0], policy: { bucket: { capacity: 0, refillPerSecond: 1 } } }],
      'TOLLBOOTH_ROUTES[0] ("a").policy.bucket.capacity',
    );
    await misconfigured([{ ...ROUTES[0], originSecret: "ORIGIN_A_SECRET" }], "ORIGIN_A_SECRET");
    await misconfigured("[{", "TOLLBOOTH_ROUTES");
    await misconfigured(ROUTES, "TOLLBOOTH_SECRET", { TOLLBOOTH_SECRET: "short" });
  });

  it("signs a route's origin proof with the secret it names", async () => {
    const send = gateway(TOP, {
      TOLLBOOTH_ROUTES: JSON.stringify([{ ...ROUTES[0], originSecret: "ORIGIN_A_SECRET" }]),
      ORIGIN_A_SECRET: "origin-a-secret-0123456789",
    } as Record<string, string>);
    expect((await send(post(toolCall(1), { ip, path: "/a/mcp" }))).status).toBe(200);
    expect(origin.requests[0]!.headers["tollbooth-signature"]).toContain(`kid=${await kidOf("origin-a-secret-0123456789")}`);
  });

  it("reads a blank TOLLBOOTH_ORIGIN_SECRET (as .dev.vars.example lists it) as unset: the proof is keyed by TOLLBOOTH_SECRET", async () => {
    const send = gateway(TOP, { TOLLBOOTH_ORIGIN_SECRET: "" });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    expect(origin.requests[0]!.headers["tollbooth-signature"]).toContain(`kid=${await kidOf(SECRET)}`);
  });

  it("refuses the placeholder ORIGIN_URL of a single-origin deploy", async () => {
    const send = gateway(TOP, { ORIGIN_URL: "https://origin.example.com" });
    const res = await send(post(toolCall(1), { ip }));
    expect(res.status).toBe(500);
    expect(((await res.json()) as { message: string }).message).toMatch(/ORIGIN_URL is the placeholder https:\/\/origin\.example\.com/);
  });
});
