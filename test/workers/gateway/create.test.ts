/**
 * Promises of README.md and docs/wire-contract.md about the gateway as built (`tollbooth()` in
 * front of `mcpProxy()`, workers/gateway/create.ts):
 *  - `Retry-After: 0` on a refused credential while the free bucket still has room
 *    (wire contract §1);
 *  - 405 with `Allow` for PUT and PATCH on the MCP endpoint, OPTIONS passed on (§7);
 *  - the cause of a 502 / 504 is logged, never sent (§8);
 *  - `GET /.well-known/tollbooth/status` when the store fails: `503 {"error":"unavailable"}`
 *    (§8);
 *  - an origin's 403 with `WWW-Authenticate` passed through untouched (docs/gateway.md "What goes
 *    through");
 *  - a store call that timed out is not cancelled: its charge stands (docs/durable-object.md).
 * Callers are told apart by IP only (`freshIp()`).
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { CallerState } from "../../../workers/objects/caller-state.ts";
import {
  challengeOf,
  errorBody,
  freshIp,
  gateway,
  observeOrigin,
  parseLimitList,
  post,
  request,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

let ip: string;

beforeEach(() => {
  ip = freshIp();
});

/** The refused credential of each kind a client can send without having solved anything. */
const REFUSED_CREDENTIALS: Array<[string, Record<string, string>, string]> = [
  ["Tollbooth-Token", { "tollbooth-token": "not-a-token" }, "token_malformed"],
  ["Tollbooth-Solution", { "tollbooth-solution": 'realm="tollbooth", nonce="1"' }, "solution_malformed"],
];

describe("Retry-After on a 402", () => {
  it("is 0 for a refused credential while the free bucket has room: the same request without it is admitted now", async () => {
    const origin = observeOrigin();
    const send = gateway({ bucket: { capacity: 5, refillPerSecond: 0.01 }, challenge: { difficulty: 4 } });
    for (const [name, headers, reason] of REFUSED_CREDENTIALS) {
      const refused = await send(post(toolCall(1), { ip, headers }));
      expect(refused.status, name).toBe(402);
      expect(refused.headers.get("retry-after"), name).toBe("0");
      const body = await errorBody(refused);
      expect(body.error.data!.reason).toBe(reason);
      expect(body.error.data!.retryAfter).toBe(0);
      expect(challengeOf(refused).scheme).toBe("PowChallenge");
      // Without the credential: admitted at once.
      expect((await send(post(toolCall(2), { ip }))).status, name).toBe(200);
    }
    expect(origin.requests).toHaveLength(2);
  });

  it("is at least 1 for a refused credential once the free bucket is empty", async () => {
    observeOrigin();
    const send = gateway({ bucket: { capacity: 1, refillPerSecond: 0.01 }, challenge: { difficulty: 4 } });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const refused = await send(post(toolCall(2), { ip, headers: { "tollbooth-token": "not-a-token" } }));
    expect(refused.status).toBe(402);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    await refused.body?.cancel();
  });
});

describe("methods on the MCP endpoint", () => {
  it("PUT and PATCH: 405 with Allow: POST, GET, DELETE, OPTIONS and JSON-RPC error 405; nothing forwarded, nothing charged", async () => {
    const origin = observeOrigin();
    const send = gateway({ bucket: { capacity: 2, refillPerSecond: 0.01 } });
    for (const method of ["PUT", "PATCH"]) {
      const res = await send(
        new Request("http://gw.test/mcp", {
          method,
          headers: { "cf-connecting-ip": ip, "content-type": "application/json" },
          body: JSON.stringify(toolCall(1)),
        }),
      );
      expect(res.status, method).toBe(405);
      const allow = res.headers.get("allow");
      expect(allow, method).not.toBeNull();
      expect(
        allow!
          .split(",")
          .map((m) => m.trim())
          .sort(),
      ).toEqual(["DELETE", "GET", "OPTIONS", "POST"]);
      const body = await errorBody(res);
      expect(body.error.code).toBe(405);
    }
    expect(origin.requests).toHaveLength(0);
    // The free bucket is untouched: both units still there.
    const ok = await send(post(toolCall(2), { ip }));
    expect(ok.status).toBe(200);
    expect(parseLimitList(ok.headers.get("ratelimit")!).free!.r).toBe(1);
  });

  it("OPTIONS (CORS preflight) is not refused: it goes to the origin, free of charge", async () => {
    const origin = observeOrigin((f) =>
      f.method === "OPTIONS"
        ? new Response(null, { status: 204, headers: { "access-control-allow-methods": "POST, GET, DELETE" } })
        : new Response('{"jsonrpc":"2.0","id":1,"result":{}}', { status: 200, headers: { "content-type": "application/json" } }),
    );
    const send = gateway({ bucket: { capacity: 1, refillPerSecond: 0.01 } });
    const res = await send(request("OPTIONS", "/mcp", { ip, headers: { "access-control-request-method": "POST" } }));
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-methods")).toBe("POST, GET, DELETE");
    expect(origin.requests.map((r) => r.method)).toEqual(["OPTIONS"]);
    // It cost nothing: the single free unit is still there.
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    expect(origin.requests.map((r) => r.method)).toEqual(["OPTIONS", "POST"]);
  });
});

describe("origin failures: the cause is logged, never sent", () => {
  const SECRET_CAUSE = "connect ECONNREFUSED 10.9.8.7:4242 (internal-origin.corp)";

  it("502: the error and its address stay in the log", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    observeOrigin(() => {
      throw new TypeError(SECRET_CAUSE, { cause: new Error("10.9.8.7") });
    });
    const res = await gateway()(post(toolCall(7), { ip }));
    expect(res.status).toBe(502);
    const text = await res.text();
    for (const h of res.headers.values()) expect(h).not.toContain("10.9.8.7");
    expect(text).not.toContain("10.9.8.7");
    expect(text).not.toContain("ECONNREFUSED");
    expect(text).not.toContain("internal-origin");
    expect(JSON.parse(text)).toMatchObject({ jsonrpc: "2.0", id: 7, error: { code: 502 } });
    // ... and it was logged.
    expect(JSON.stringify(logged.mock.calls.map((args) => args.map(String)))).toContain("ECONNREFUSED 10.9.8.7");
  });

  it("504: the abort reason stays in the log", async () => {
    vi.useRealTimers(); // the origin timeout runs on real time
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    observeOrigin(
      (_f, signal) =>
        new Promise<Response>((_resolve, reject) => {
          signal?.addEventListener("abort", () => reject(new DOMException(`${SECRET_CAUSE} timed out`, "AbortError")));
        }),
    );
    const res = await gateway({ originTimeoutMs: 100 })(post(toolCall("slow"), { ip }));
    expect(res.status).toBe(504);
    const text = await res.text();
    expect(text).not.toContain("10.9.8.7");
    expect(text).not.toContain("internal-origin");
    expect(text).not.toContain("AbortError");
    expect(JSON.parse(text)).toMatchObject({ jsonrpc: "2.0", id: "slow", error: { code: 504 } });
    expect(logged).toHaveBeenCalled();
  });
});

describe("an origin's 403 with WWW-Authenticate", () => {
  it("is passed through untouched: status, challenge, body (not mistaken for the gateway's own 403)", async () => {
    const challenge =
      'Bearer error="insufficient_scope", scope="files:write", resource_metadata="https://origin.example/.well-known/oauth-protected-resource"';
    const origin = observeOrigin(
      () => new Response("insufficient scope", { status: 403, headers: { "www-authenticate": challenge, "content-type": "text/plain" } }),
    );
    const res = await gateway()(post(toolCall(1), { ip }));
    expect(res.status).toBe(403);
    expect(res.headers.get("www-authenticate")).toBe(challenge);
    expect(res.headers.get("content-type")).toBe("text/plain");
    expect(await res.text()).toBe("insufficient scope");
    expect(origin.requests).toHaveLength(1);
  });
});

type Fault = "none" | "throw" | "slow";

/**
 * The real CALLER_BUCKET namespace behind a switch: "throw" rejects every call (as a reset
 * Durable Object does); "slow" makes the real call at once and answers `delayMs` later.
 */
function switchableStore(delayMs = 300): {
  binding: DurableObjectNamespace<CallerState>;
  set: (f: Fault) => void;
  settled: () => Promise<unknown>;
} {
  let fault: Fault = "none";
  const inFlight: Promise<unknown>[] = [];
  const real = env.CALLER_BUCKET;
  const binding = {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id);
      const method =
        (name: "admit" | "redeem" | "status") =>
        (arg: never): Promise<unknown> => {
          if (fault === "throw") return Promise.reject(new Error("Durable Object reset at 10.9.8.7"));
          const call = (stub[name] as (a: never) => Promise<unknown>)(arg);
          if (fault === "none") return call;
          const late = call.then((v) => new Promise((resolve) => setTimeout(() => resolve(v), delayMs)));
          inFlight.push(late);
          return late;
        };
      return { admit: method("admit"), redeem: method("redeem"), status: method("status") };
    },
  };
  return {
    binding: binding as unknown as DurableObjectNamespace<CallerState>,
    set: (f) => void (fault = f),
    settled: () => Promise.all(inFlight),
  };
}

describe("when the store fails", () => {
  it('GET /.well-known/tollbooth/status answers 503 {"error":"unavailable"} with Retry-After: 1, no cause', async () => {
    const store = switchableStore();
    const send = gateway({}, { CALLER_BUCKET: store.binding });
    vi.spyOn(console, "error").mockImplementation(() => {});
    store.set("throw");
    const res = await send(request("GET", `${WELL_KNOWN}/status`, { ip }));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
    const text = await res.text();
    expect(text).not.toContain("10.9.8.7");
    expect(JSON.parse(text)).toMatchObject({ error: "unavailable" });
    store.set("none");
    expect((await send(request("GET", `${WELL_KNOWN}/status`, { ip }))).status).toBe(200);
  });

  it("a call that timed out (503) is not cancelled: when it completes, its charge stands", async () => {
    vi.useRealTimers(); // storeTimeoutMs runs on real time
    vi.spyOn(console, "error").mockImplementation(() => {});
    const store = switchableStore(300);
    const origin = observeOrigin();
    const send = gateway(
      { bucket: { capacity: 3, refillPerSecond: 0.001 }, challenge: { difficulty: 4 }, storeTimeoutMs: 100 },
      { CALLER_BUCKET: store.binding },
    );
    store.set("slow");
    const timedOut = await send(post(toolCall(1), { ip }));
    expect(timedOut.status).toBe(503);
    await timedOut.body?.cancel();
    await store.settled(); // the Durable Object finished the call the gateway gave up on
    store.set("none");
    // 3 units, 1 taken by the call that timed out: two more are admitted, the next is over budget.
    const statuses: number[] = [];
    for (let i = 2; i <= 4; i++) {
      const res = await send(post(toolCall(i), { ip }));
      statuses.push(res.status);
      await res.body?.cancel();
    }
    expect(statuses).toEqual([200, 200, 402]);
    // The call that timed out never reached the origin.
    expect(origin.requests.map((r) => JSON.parse(r.body).id)).toEqual([2, 3]);
  });
});
