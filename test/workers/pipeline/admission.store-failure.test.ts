/**
 * When the caller's Durable Object fails (throws) or does not answer within
 * `storeTimeoutMs`: policy `onStoreError` "closed" (default) answers 503 with a JSON-RPC
 * error and `Retry-After`; "open" forwards requests without a credential to the origin
 * unmetered, marked `Tollbooth-Degraded: store-unavailable`. A request that carries a
 * credential, and tollbooth's own endpoints, always fail closed (docs/wire-contract.md §8).
 *
 * How the object failed is read from the flags workerd sets on its errors (Cloudflare,
 * Durable Objects "Error handling"): overloaded → 503 with `Retry-After: 5`, never retried,
 * never forwarded unmetered; thrown by the object's own code (`remote`) → 503, never forwarded
 * unmetered; unreachable (`retryable`, or no flag) and timeout → 503, or unmetered with
 * "open". An admission is never retried by the gateway, whatever the flags. Each kind is its
 * own reason in the decision log (`store_overloaded`, `store_error`, `store_unreachable`,
 * `store_timeout`).
 *
 * The failing store is the real `CALLER_BUCKET` binding behind a switch: while `fault` is
 * "throw" every call rejects as a reset Durable Object does (no flag); "overloaded", "remote"
 * and "retryable" reject with the error workerd throws in that case, its flags set; while
 * "hang" no call settles. Calls are counted per method.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { CallerState } from "../../../workers/objects/caller-state.ts";
import {
  challengeOf,
  errorBody,
  fetchChallenge,
  freshIp,
  gateway,
  observeOrigin,
  type PolicyJson,
  post,
  request,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

type Fault = "none" | "throw" | "hang" | "overloaded" | "remote" | "retryable";

/** The errors workerd throws, with the flags it sets (`overloaded`, `remote`, `retryable`). */
const ERRORS: Record<"throw" | "overloaded" | "remote" | "retryable", () => Error> = {
  throw: () => new Error("Durable Object reset because its code was updated."),
  overloaded: () =>
    Object.assign(new Error("Durable Object is overloaded. Too many requests queued."), { overloaded: true, retryable: true }),
  remote: () => Object.assign(new Error("Cannot read properties of undefined (reading 'free_tokens')"), { remote: true }),
  retryable: () => Object.assign(new Error("Network connection lost."), { remote: true, retryable: true }),
};

/** The real CALLER_BUCKET namespace, failing on demand (see the file comment). */
function switchableStore(): {
  binding: DurableObjectNamespace<CallerState>;
  set: (f: Fault) => void;
  calls: () => number;
  callsOf: (method: string) => number;
} {
  let fault: Fault = "none";
  let calls = 0;
  const perMethod: Record<string, number> = {};
  const real = env.CALLER_BUCKET;
  const binding = {
    idFromName: (name: string) => real.idFromName(name),
    get: (id: DurableObjectId) => {
      const stub = real.get(id);
      const method =
        (name: "admit" | "redeem" | "status" | "refund" | "bindSession" | "release" | "endSession") =>
        (arg: never): Promise<unknown> => {
          calls++;
          perMethod[name] = (perMethod[name] ?? 0) + 1;
          if (fault === "hang") return new Promise(() => {});
          if (fault !== "none") return Promise.reject(ERRORS[fault]());
          return (stub[name] as (a: never) => Promise<unknown>)(arg);
        };
      return {
        admit: method("admit"),
        redeem: method("redeem"),
        status: method("status"),
        refund: method("refund"),
        bindSession: method("bindSession"),
        release: method("release"),
        endSession: method("endSession"),
      };
    },
  };
  return {
    binding: binding as unknown as DurableObjectNamespace<CallerState>,
    set: (f) => void (fault = f),
    calls: () => calls,
    callsOf: (m) => perMethod[m] ?? 0,
  };
}

const POLICY: PolicyJson = { bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 4 }, storeTimeoutMs: 100 };

function setup(policy: PolicyJson) {
  const store = switchableStore();
  const origin = observeOrigin();
  const send = gateway(policy, { CALLER_BUCKET: store.binding });
  return { store, origin, send };
}

/** Buy a token while the store is healthy: spend the bucket, solve the 402, redeem in the same round trip. */
async function buyToken(send: (r: Request) => Promise<Response>, ip: string): Promise<{ token: string; spareSolution: string }> {
  expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
  const refused = await send(post(toolCall(2), { ip }));
  expect(refused.status).toBe(402);
  const paid = await send(post(toolCall(3), { ip, headers: { "tollbooth-solution": (await solve(challengeOf(refused))).header } }));
  expect(paid.status).toBe(200);
  const spare = await solve(await fetchChallenge(send, { "cf-connecting-ip": ip }));
  return { token: paid.headers.get("tollbooth-token")!, spareSolution: spare.header };
}

const verify = (ip: string, body: unknown) =>
  new Request(`${WELL_KNOWN}/verify`, {
    method: "POST",
    headers: { "content-type": "application/json", "cf-connecting-ip": ip },
    body: JSON.stringify(body),
  });

describe('onStoreError "closed" (the default)', () => {
  it("a store that throws: 503 with a JSON-RPC error for the request's id and Retry-After; the origin sees nothing", async () => {
    const { store, origin, send } = setup(POLICY);
    store.set("throw");
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await send(post(toolCall("q-1"), { ip: freshIp() }));
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(res.headers.get("tollbooth-degraded")).toBeNull();
    const body = await errorBody(res);
    expect(body).toMatchObject({ id: "q-1", error: { code: 503 } });
    expect(body.error.message).not.toContain("code was updated"); // the cause is logged, not sent
    expect(error).toHaveBeenCalled();
    expect(origin.requests).toHaveLength(0);
  });

  it("a store that never answers: 503 once storeTimeoutMs has passed, not a hang", async () => {
    const { store, origin, send } = setup({ ...POLICY, storeTimeoutMs: 200 });
    store.set("hang");
    vi.spyOn(console, "error").mockImplementation(() => {});
    const started = Date.now();
    const res = await send(post([toolCall(1), toolCall(2)], { ip: freshIp() }));
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual([
      { jsonrpc: "2.0", id: 1, error: expect.objectContaining({ code: 503 }) },
      { jsonrpc: "2.0", id: 2, error: expect.objectContaining({ code: 503 }) },
    ]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(origin.requests).toHaveLength(0);
  });

  it("metering resumes when the store is back", async () => {
    const { store, origin, send } = setup(POLICY);
    const ip = freshIp();
    vi.spyOn(console, "error").mockImplementation(() => {});
    store.set("throw");
    expect((await send(post(toolCall(1), { ip }))).status).toBe(503);
    store.set("none");
    const ok = await send(post(toolCall(2), { ip }));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("ratelimit")).toMatch(/^"free";r=0;/); // the failed request charged nothing
    expect((await send(post(toolCall(3), { ip }))).status).toBe(402);
    expect(origin.requests).toHaveLength(1);
  });
});

describe('onStoreError "open"', () => {
  const OPEN = { ...POLICY, onStoreError: "open" };

  it("a request without a credential goes to the origin unmetered, marked Tollbooth-Degraded, and is logged", async () => {
    const { store, origin, send } = setup(OPEN);
    const ip = freshIp();
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    store.set("throw");
    for (const id of [1, 2, 3]) {
      // Bucket capacity 1: a metered gateway would refuse the second.
      const res = await send(post(toolCall(id), { ip }));
      expect(res.status).toBe(200);
      expect(res.headers.get("tollbooth-degraded")).toBe("store-unavailable");
      expect(res.headers.get("ratelimit")).toBeNull();
      expect(await res.json()).toEqual({ jsonrpc: "2.0", id, result: { content: [] } });
    }
    expect(origin.requests).toHaveLength(3);
    expect(origin.requests[0]!.headers["tollbooth-caller"]).toBe(`ip:${ip}`);
    expect(origin.requests[0]!.headers["tollbooth-signature"]).toMatch(/^t=\d+, kid=/);
    expect(warn).toHaveBeenCalledTimes(3);
    expect(String(warn.mock.calls[0]![0])).toMatch(/unmetered/);
  });

  it("a store that never answers: forwarded once storeTimeoutMs has passed", async () => {
    const { store, origin, send } = setup({ ...OPEN, storeTimeoutMs: 150 });
    vi.spyOn(console, "warn").mockImplementation(() => {});
    store.set("hang");
    const started = Date.now();
    const res = await send(post(toolCall(7), { ip: freshIp() }));
    expect(res.status).toBe(200);
    expect(res.headers.get("tollbooth-degraded")).toBe("store-unavailable");
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(origin.requests).toHaveLength(1);
  });

  it("a request with Tollbooth-Token or Tollbooth-Solution fails closed (503): an unverifiable spend is never honoured", async () => {
    const { store, origin, send } = setup(OPEN);
    const ip = freshIp();
    const { token, spareSolution } = await buyToken(send, ip);
    const before = origin.requests.length;
    vi.spyOn(console, "error").mockImplementation(() => {});
    vi.spyOn(console, "warn").mockImplementation(() => {});
    for (const fault of ["throw", "hang"] as const) {
      store.set(fault);
      const credentials: Array<Record<string, string>> = [
        { "tollbooth-token": token },
        { "tollbooth-solution": spareSolution },
        { "tollbooth-token": "tb1.forged" },
      ];
      for (const headers of credentials) {
        const res = await send(post(toolCall(9), { ip, headers }));
        expect(res.status, `${fault} ${Object.keys(headers)[0]}`).toBe(503);
        expect(res.headers.get("retry-after")).toBe("1");
        expect(res.headers.get("tollbooth-degraded")).toBeNull();
        expect(await errorBody(res)).toMatchObject({ id: 9, error: { code: 503 } });
      }
    }
    expect(origin.requests).toHaveLength(before);
    // The same caller without a credential is let through, degraded.
    const plain = await send(post(toolCall(10), { ip }));
    expect(plain.status).toBe(200);
    expect(plain.headers.get("tollbooth-degraded")).toBe("store-unavailable");
    // Back up: the token still has all but the one credit spent on the paid request.
    store.set("none");
    const withToken = await send(post(toolCall(11), { ip, headers: { "tollbooth-token": token } }));
    expect(withToken.status).toBe(200);
    expect(withToken.headers.get("tollbooth-credits")).toBe("18");
  });

  it("POST /.well-known/tollbooth/verify, GET /status and GET /challenge fail closed (503): each counts against the ceiling in the store", async () => {
    const { store, origin, send } = setup(OPEN);
    const ip = freshIp();
    const { verifyBody } = await solve(await fetchChallenge(send, { "cf-connecting-ip": ip }));
    vi.spyOn(console, "error").mockImplementation(() => {});
    for (const fault of ["throw", "hang"] as const) {
      store.set(fault);
      const res = await send(verify(ip, verifyBody));
      expect(res.status, fault).toBe(503);
      expect(res.headers.get("retry-after")).toBe("1");
      expect(((await res.json()) as { error: string }).error).toBe("unavailable");
      const status = await send(request("GET", `${WELL_KNOWN}/status`, { ip }));
      expect(status.status, `status ${fault}`).toBe(503);
      await status.body?.cancel();
      // Issuing a challenge is metered (one ceiling unit in the caller's object): without the store, none is issued.
      const challenge = await send(request("GET", `${WELL_KNOWN}/challenge`, { ip }));
      expect(challenge.status, `challenge ${fault}`).toBe(503);
      expect(challenge.headers.get("retry-after")).toBe("1");
      expect(challenge.headers.get("www-authenticate")).toBeNull();
      await challenge.body?.cancel();
    }
    store.set("none");
    expect((await send(request("GET", `${WELL_KNOWN}/challenge`, { ip }))).status).toBe(200);
    const redeemed = await send(verify(ip, verifyBody));
    expect(redeemed.status).toBe(200); // the refused attempts did not spend the challenge
    expect(origin.requests).toHaveLength(0);
  });
});

/** The decision records logged while `run` runs (console.log captured). */
async function logged<T>(run: () => Promise<T>): Promise<{ result: T; records: Array<Record<string, unknown>> }> {
  const lines: string[] = [];
  const log = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
  try {
    const result = await run();
    return { result, records: lines.filter((l) => l.startsWith('{"tollbooth":"decision",')).map((l) => JSON.parse(l)) };
  } finally {
    log.mockRestore();
  }
}

describe("the kinds of failure workerd reports, each its own answer and reason", () => {
  /** What the caller sees for each kind: `Retry-After`, `error.data.reason`, and the decision record's reason. */
  const KINDS = [
    { fault: "overloaded", retryAfter: "5", kind: "overloaded", reason: "store_overloaded" },
    { fault: "remote", retryAfter: "1", kind: "error", reason: "store_error" },
    { fault: "retryable", retryAfter: "1", kind: "unreachable", reason: "store_unreachable" },
    { fault: "throw", retryAfter: "1", kind: "unreachable", reason: "store_unreachable" },
    { fault: "hang", retryAfter: "1", kind: "timeout", reason: "store_timeout" },
  ] as const;

  it("closed: 503 saying how the state failed, Retry-After 5 when overloaded, the admission asked once (never retried); the origin sees nothing", async () => {
    const { store, origin, send } = setup(POLICY);
    vi.spyOn(console, "error").mockImplementation(() => {});
    for (const k of KINDS) {
      store.set(k.fault);
      const before = store.callsOf("admit");
      const { result: res, records } = await logged(() => send(post(toolCall(`q-${k.fault}`), { ip: freshIp() })));
      expect(res.status, k.fault).toBe(503);
      expect(res.headers.get("retry-after"), k.fault).toBe(k.retryAfter);
      const body = await errorBody(res);
      expect(body, k.fault).toMatchObject({
        id: `q-${k.fault}`,
        error: { code: 503, data: { reason: k.kind, retryAfter: Number(k.retryAfter) } },
      });
      expect(body.error.message, k.fault).toContain(`retry after ${k.retryAfter} s`);
      expect(body.error.message, k.fault).not.toMatch(/queued|Cannot read|connection lost|code was updated/); // the cause is logged, not sent
      expect(store.callsOf("admit") - before, k.fault).toBe(1);
      expect(records, k.fault).toEqual([expect.objectContaining({ decision: "unavailable", reason: k.reason, status: 503 })]);
    }
    expect(origin.requests).toHaveLength(0);
  });

  it("open: an overloaded object and one whose own code threw are refused 503 (never forwarded unmetered); unreachable and timeout go on unmetered, each with its reason", async () => {
    const { store, origin, send } = setup({ ...POLICY, onStoreError: "open", storeTimeoutMs: 150 });
    vi.spyOn(console, "error").mockImplementation(() => {});
    vi.spyOn(console, "warn").mockImplementation(() => {});
    const ip = freshIp();
    for (const fault of ["overloaded", "remote"] as const) {
      store.set(fault);
      const { result: res, records } = await logged(() => send(post(toolCall(1), { ip })));
      expect(res.status, fault).toBe(503);
      expect(res.headers.get("tollbooth-degraded"), fault).toBeNull();
      expect(records[0], fault).toMatchObject({
        decision: "unavailable",
        reason: fault === "overloaded" ? "store_overloaded" : "store_error",
      });
    }
    expect(origin.requests).toHaveLength(0);
    for (const [fault, reason] of [
      ["retryable", "store_unreachable"],
      ["throw", "store_unreachable"],
      ["hang", "store_timeout"],
    ] as const) {
      store.set(fault);
      const before = store.callsOf("admit");
      const { result: res, records } = await logged(() => send(post(toolCall(2), { ip })));
      expect(res.status, fault).toBe(200);
      expect(res.headers.get("tollbooth-degraded"), fault).toBe("store-unavailable");
      expect(store.callsOf("admit") - before, fault).toBe(1);
      expect(records[0], fault).toMatchObject({ decision: "admitted_unmetered", reason });
    }
    expect(origin.requests).toHaveLength(3);
  });

  it("tollbooth's own endpoints: an overloaded object is 503 with Retry-After 5 and reason overloaded, recorded store_overloaded", async () => {
    const { store, origin, send } = setup(POLICY);
    vi.spyOn(console, "error").mockImplementation(() => {});
    store.set("overloaded");
    const ip = freshIp();
    for (const path of ["/status", "/challenge"]) {
      const { result: res, records } = await logged(() => send(request("GET", `${WELL_KNOWN}${path}`, { ip })));
      expect(res.status, path).toBe(503);
      expect(res.headers.get("retry-after"), path).toBe("5");
      expect(await res.json(), path).toMatchObject({ error: "unavailable", reason: "overloaded", retryAfter: 5 });
      expect(records[0], path).toMatchObject({ decision: "unavailable", reason: "store_overloaded" });
    }
    // The object's own code throwing at /verify: 503 "error", the redemption asked once.
    store.set("none");
    const { verifyBody } = await solve(await fetchChallenge(send, { "cf-connecting-ip": ip }));
    store.set("remote");
    const { result: res, records } = await logged(() => send(verify(ip, verifyBody)));
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "unavailable", reason: "error", retryAfter: 1 });
    expect(records[0]).toMatchObject({ decision: "unavailable", reason: "store_error" });
    expect(store.callsOf("redeem")).toBe(1);
    expect(origin.requests).toHaveLength(0);
  });
});
