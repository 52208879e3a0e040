/**
 * The decision log (docs/observability.md): one JSON line per request,
 * `{"tollbooth":"decision",…}`, with the decision and reason of every way a request ends, the
 * origin's status and the latency of admitted ones; no credential, header value or full caller
 * id in any line.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { NetworkLimiter } from "../../../workers/env.ts";
import type { CallerState } from "../../../workers/objects/caller-state.ts";
import type { DecisionRecord } from "../../../workers/observe/types.ts";
import {
  challengeOf,
  fetchChallenge,
  freezeTime,
  freshIp,
  gateway,
  hex,
  observeOrigin,
  post,
  request,
  rpc,
  sha256,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

/** Lines logged with console.log, captured. */
let lines: string[];
beforeEach(() => {
  lines = [];
  vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
});

/** The decision records logged so far (each line must be one JSON object starting with the marker). */
function decisions(): Array<DecisionRecord & { tollbooth: string }> {
  const out = lines.filter((l) => l.startsWith('{"tollbooth":"decision",'));
  return out.map((l) => JSON.parse(l));
}

/** Send one request and return its status and its one decision record. */
async function one(gw: (r: Request) => Promise<Response>, req: Request): Promise<{ status: number; record: DecisionRecord }> {
  const before = decisions().length;
  const res = await gw(req);
  await res.arrayBuffer();
  const after = decisions();
  expect(after.length, "one decision line per request").toBe(before + 1);
  return { status: res.status, record: after.at(-1)! };
}

const refusing = (refused: string): NetworkLimiter => ({ limit: async ({ key }) => ({ success: key !== refused }) });

describe("one decision line per request, for every way a request ends", () => {
  it("refusals of form, the network ceiling, own endpoints, admitted, 402, a redeemed solution, the 429 ceiling", async () => {
    freezeTime();
    const origin = observeOrigin();
    const ip = freshIp();
    const flood = freshIp();
    const gw = gateway(
      {
        realm: "log-mix",
        bucket: { capacity: 1, refillPerSecond: 0.001 },
        ceiling: { capacity: 4, refillPerSecond: 0.001 },
        challenge: { difficulty: 4, credits: 3 },
        maxBodyBytes: 1024,
      },
      { TOLLBOOTH_NETWORK_LIMIT: refusing(`ip:${flood}`) },
    );
    const cases: Array<[Request, number, Partial<DecisionRecord>]> = [
      [
        post(toolCall(1), { ip, headers: { origin: "https://evil.example" } }),
        403,
        { decision: "bad_request", reason: "forbidden_origin" },
      ],
      [post(toolCall(1), { ip: flood }), 429, { decision: "rate_limited", reason: "network" }],
      [request("GET", WELL_KNOWN, { ip }), 200, { decision: "own_endpoint", reason: "policy" }],
      [post(toolCall(1), { ip, contentType: "text/plain" }), 415, { decision: "bad_request", reason: "unsupported_media_type" }],
      [post("x".repeat(2000), { ip }), 413, { decision: "bad_request", reason: "payload_too_large" }],
      [post("{", { ip }), 400, { decision: "bad_request", reason: "parse_error" }],
      [request("PUT", "/mcp", { ip }), 405, { decision: "bad_request", reason: "method_not_allowed" }],
      [
        post(toolCall(2, "add"), { ip }),
        200,
        { decision: "admitted", reason: "bucket", rpc: "tools/call", tool: "add", cost: 1, originStatus: 200, plan: "free" },
      ],
      [post(toolCall(3), { ip }), 402, { decision: "payment_required", reason: "over_budget", difficulty: 4 }],
    ];
    for (const [req, status, fields] of cases) {
      const got = await one(gw, req).catch((e) => {
        throw new Error(`${JSON.stringify(fields)}: ${e.message}`);
      });
      expect(got.status, JSON.stringify(fields)).toBe(status);
      expect(got.record).toMatchObject({ ...fields, status, method: req.method });
      expect(typeof got.record.latencyMs).toBe("number");
    }
    // The 402 of the last case, solved and redeemed in the same round trip.
    const refused = await gw(post(toolCall(4), { ip }));
    expect(refused.status).toBe(402);
    const solution = (await solve(challengeOf(refused))).header;
    const paid = await one(gw, post(toolCall(5), { ip, headers: { "tollbooth-solution": solution } }));
    expect(paid.status).toBe(200);
    expect(paid.record).toMatchObject({
      decision: "admitted",
      reason: "solution",
      scheme: "pow",
      redeemed: true,
      credits: 2,
      originStatus: 200,
    });
    // The same solution again: refused, and the scheme of the refused credential is named.
    const spent = await one(gw, post(toolCall(6), { ip, headers: { "tollbooth-solution": solution } }));
    expect(spent.record).toMatchObject({ decision: "rate_limited", reason: "ceiling", status: 429 });
    expect(origin.requests).toHaveLength(2);
    // Every line is one JSON object whose first key is the marker.
    for (const l of lines.filter((x) => x.includes('"decision"'))) expect(l.startsWith('{"tollbooth":"decision",')).toBe(true);
  });

  it("a request that is no JSON-RPC message carries its path (no query, percent-encoded, cut); a JSON-RPC message carries none", async () => {
    freezeTime();
    const origin = observeOrigin();
    const ip = freshIp();
    const gw = gateway({ realm: "log-path", bucket: { capacity: 10, refillPerSecond: 0.001 } });
    const other = await one(gw, request("GET", "/docs/page.html?api_key=SECRET123&x=1", { ip }));
    expect(other.record).toMatchObject({ method: "GET", path: "/docs/page.html", decision: "admitted" });
    expect(JSON.stringify(other.record)).not.toContain("SECRET123");
    // A space and an escape sequence reach the record percent-encoded (the URL parser drops a raw newline): the terminal line cannot be broken by them.
    const odd = await one(gw, request("GET", "/a b/\x1b[31m\n", { ip }));
    expect(odd.record.path).toBe("/a%20b/%1B[31m");
    const long = await one(gw, request("GET", `/${"x".repeat(500)}`, { ip }));
    expect(long.record.path).toHaveLength(120);
    expect(long.record.path!.endsWith("…")).toBe(true);
    const own = await one(gw, request("GET", WELL_KNOWN, { ip }));
    expect(own.record.path).toBe("/.well-known/tollbooth");
    const call = await one(gw, post(toolCall(1), { ip }));
    expect(call.record).toMatchObject({ rpc: "tools/call", decision: "admitted" });
    expect("path" in call.record).toBe(false);
    expect(origin.requests.map((r) => new URL(r.url).pathname)).toContain("/docs/page.html");
  });

  it("a spent solution is a 402 of scheme pow; a token's use names the token", async () => {
    freezeTime();
    observeOrigin();
    const ip = freshIp();
    const gw = gateway({ realm: "log-spent", bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 4, credits: 3 } });
    const solution = (await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }))).header;
    const first = await one(gw, post(toolCall(1), { ip, headers: { "tollbooth-solution": solution } }));
    expect(first.record).toMatchObject({ decision: "admitted", reason: "solution", redeemed: true });
    const again = await one(gw, post(toolCall(2), { ip, headers: { "tollbooth-solution": solution } }));
    expect(again.record).toMatchObject({ decision: "payment_required", reason: "solution_spent", scheme: "pow", status: 402 });
    expect(again.record.redeemed).toBeUndefined();
  });

  it("the store down: 503 (closed) or admitted_unmetered (open); the origin failing: 502 marked", async () => {
    const failing = {
      idFromName: (name: string) => env.CALLER_BUCKET.idFromName(name),
      get: () => ({ admit: () => Promise.reject(new Error("Durable Object reset")) }),
    } as unknown as DurableObjectNamespace<CallerState>;
    observeOrigin();
    const ip = freshIp();
    const closed = await one(gateway({ realm: "log-closed" }, { CALLER_BUCKET: failing }), post(toolCall(1), { ip }));
    // An error without the runtime's `.remote` flag: the object was not reached (not its own code throwing).
    expect(closed).toMatchObject({ status: 503, record: { decision: "unavailable", reason: "store_unreachable", status: 503 } });
    const open = await one(gateway({ realm: "log-open", onStoreError: "open" }, { CALLER_BUCKET: failing }), post(toolCall(1), { ip }));
    expect(open).toMatchObject({ status: 200, record: { decision: "admitted_unmetered", reason: "store_unreachable", originStatus: 200 } });

    vi.restoreAllMocks();
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => void lines.push(args.map(String).join(" ")));
    vi.spyOn(console, "error").mockImplementation(() => {});
    observeOrigin(() => {
      throw new TypeError("connection refused");
    });
    const down = await one(gateway({ realm: "log-502" }), post(toolCall(1), { ip: freshIp() }));
    expect(down).toMatchObject({ status: 502, record: { decision: "admitted", status: 502, originError: "unreachable" } });
    expect(down.record.originStatus).toBeUndefined();
  });
});

describe("no secret in the log", () => {
  it("credentials, API keys, bearer tokens and full caller ids never appear", async () => {
    freezeTime();
    observeOrigin();
    const ip = freshIp();
    const apiKey = "tb-live-api-key-0123456789-abcdef";
    const keyHash = hex(await sha256(apiKey));
    const bearer = "eyJhbGciOiJIUzI1NiJ9.bearer-secret-payload.sig";
    const gw = gateway({
      realm: "log-secrets",
      bucket: { capacity: 1, refillPerSecond: 0.001 },
      challenge: { difficulty: 4, credits: 3 },
      identity: { apiKeys: [{ sha256: keyHash, name: "acme", plan: "free" }] },
    });
    const headers = { "x-api-key": apiKey, authorization: `Bearer ${bearer}` };
    expect((await gw(post(toolCall(1), { ip, headers }))).status).toBe(200);
    const refused = await gw(post(toolCall(2), { ip, headers }));
    expect(refused.status).toBe(402);
    const solved = await solve(challengeOf(refused));
    const paid = await gw(post(toolCall(3), { ip, headers: { ...headers, "tollbooth-solution": solved.header } }));
    expect(paid.status).toBe(200);
    const token = paid.headers.get("tollbooth-token")!;
    expect((await gw(post(toolCall(4), { ip, headers: { ...headers, "tollbooth-token": token } }))).status).toBe(200);
    expect((await gw(post(rpc("tools/list", {}, 5), { ip, headers: { ...headers, "tollbooth-token": `${token}x` } }))).status).toBe(402);

    const records = decisions();
    expect(records).toHaveLength(5);
    const log = lines.join("\n");
    const challenge = challengeOf(refused).params;
    for (const secret of [
      apiKey,
      keyHash.slice(0, 32),
      bearer,
      "bearer-secret-payload",
      token,
      token.split(".")[3]!,
      challenge.signature!,
      challenge.salt!,
      solved.header,
      `nonce="${solved.nonce}"`,
    ]) {
      expect(log, `log contains ${secret}`).not.toContain(secret);
    }
    // The caller is the key's identity, shortened: its prefix and 12 hex characters.
    expect(new Set(records.map((r) => r.caller))).toEqual(new Set([`key:${keyHash.slice(0, 12)}…`]));
    expect(records.map((r) => r.decision)).toEqual(["admitted", "payment_required", "admitted", "admitted", "payment_required"]);
    expect(records[4]).toMatchObject({ scheme: "token" });
    expect(records[4]!.reason).toMatch(/^token_/);
  });
});

describe("TOLLBOOTH_DECISION_LOG", () => {
  it("off: no decision line, and the metrics still count every request", async () => {
    observeOrigin();
    const ip = freshIp();
    const quiet = gateway(
      { realm: "log-off", bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 4 } },
      { TOLLBOOTH_DECISION_LOG: "off", TOLLBOOTH_METRICS_FLUSH_MS: "100" },
    );
    expect((await quiet(post(toolCall(1), { ip }))).status).toBe(200);
    expect((await quiet(post(toolCall(2), { ip }))).status).toBe(402);
    expect(decisions()).toHaveLength(0);
    const snap = await env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });
    expect(snap.totals['requests_total{decision="admitted"}']).toBe(1);
    expect(snap.totals['requests_total{decision="payment_required"}']).toBe(1);
  });

  it("on (the default) writes the line; any other value is a 500 naming the var", async () => {
    observeOrigin();
    const ip = freshIp();
    const loud = gateway({ realm: "log-on" }, { TOLLBOOTH_DECISION_LOG: "on" });
    expect((await loud(post(toolCall(1), { ip }))).status).toBe(200);
    expect(decisions()).toHaveLength(1);
    const bad = gateway({ realm: "log-bad" }, { TOLLBOOTH_DECISION_LOG: "sometimes" });
    const res = await bad(post(toolCall(2), { ip }));
    expect(res.status).toBe(500);
    expect(JSON.stringify(await res.json())).toMatch(/TOLLBOOTH_DECISION_LOG/);
  });
});

describe("TOLLBOOTH_DECISION_LOG_SAMPLE", () => {
  const statsNow = () => env.TOLLBOOTH_STATS!.getByName("tollbooth-stats").snapshot({ nowMs: Date.now(), minutes: 5 });

  it("the default (blank: 100): plain admitted lines are left out; the 402, the solve and an origin's 500 are written; the metrics count all; Stats keeps the same records", async () => {
    freezeTime();
    let failing = false;
    observeOrigin(() => (failing ? new Response("down", { status: 500 }) : Response.json({ jsonrpc: "2.0", id: 1, result: {} })));
    const ip = freshIp();
    const gw = gateway(
      { realm: "sample-default", bucket: { capacity: 3, refillPerSecond: 0.001 }, challenge: { difficulty: 4, credits: 3 } },
      { TOLLBOOTH_DECISION_LOG_SAMPLE: "", TOLLBOOTH_METRICS_FLUSH_MS: "100" },
    );
    for (let i = 1; i <= 2; i++) expect((await gw(post(toolCall(i), { ip }))).status).toBe(200);
    expect(decisions()).toHaveLength(0);
    failing = true;
    expect((await gw(post(toolCall(3), { ip }))).status).toBe(500);
    failing = false;
    const refused = await gw(post(toolCall(4), { ip }));
    expect(refused.status).toBe(402);
    const solution = (await solve(await fetchChallenge(gw, { "cf-connecting-ip": ip }))).header;
    expect((await gw(post(toolCall(5), { ip, headers: { "tollbooth-solution": solution } }))).status).toBe(200);
    const written = decisions().map((r) => [r.decision, r.reason, r.status]);
    expect(written).toEqual([
      ["admitted", "bucket", 500],
      ["payment_required", "over_budget", 402],
      ["own_endpoint", "challenge", 200],
      ["admitted", "solution", 200],
    ]);
    expect(decisions().every((r) => r.sampleInterval === undefined)).toBe(true);
    const snap = await statsNow();
    // Every request counted; only the records written kept as the latest decisions.
    expect(snap.totals['requests_total{decision="admitted"}']).toBe(4);
    expect(snap.totals['requests_total{decision="payment_required"}']).toBe(1);
    expect(snap.recent.map((r) => [r.decision, r.reason, r.status]).reverse()).toEqual(written);
  });

  it("N: the N-th plain admitted line is written, marked with the interval it stands for; 1 writes every line", async () => {
    observeOrigin();
    const ip = freshIp();
    const five = gateway({ realm: "sample-5" }, { TOLLBOOTH_DECISION_LOG_SAMPLE: "5" });
    for (let i = 1; i <= 4; i++) expect((await five(post(toolCall(i), { ip }))).status).toBe(200);
    expect(decisions()).toHaveLength(0);
    expect((await five(post(toolCall(5), { ip }))).status).toBe(200);
    expect(decisions()).toHaveLength(1);
    expect(decisions()[0]).toMatchObject({ decision: "admitted", reason: "bucket", sampleInterval: 5 });

    const every = gateway({ realm: "sample-1" }, { TOLLBOOTH_DECISION_LOG_SAMPLE: "1" });
    for (let i = 1; i <= 3; i++) expect((await every(post(toolCall(i), { ip: freshIp() }))).status).toBe(200);
    expect(decisions()).toHaveLength(4);
    expect(
      decisions()
        .slice(1)
        .every((r) => r.decision === "admitted" && r.sampleInterval === undefined),
    ).toBe(true);
  });

  it("anything but an integer from 1 to 1000000 is a 500 naming the var, and reaches no origin", async () => {
    const origin = observeOrigin();
    for (const value of ["0", "0.01", "1e3", "ten", "1000001"]) {
      const res = await gateway(
        { realm: `sample-bad-${value}` },
        { TOLLBOOTH_DECISION_LOG_SAMPLE: value },
      )(post(toolCall(1), { ip: freshIp() }));
      expect(res.status).toBe(500);
      expect(JSON.stringify(await res.json())).toContain("TOLLBOOTH_DECISION_LOG_SAMPLE must be an integer from 1");
    }
    expect(origin.requests).toHaveLength(0);
  });
});
