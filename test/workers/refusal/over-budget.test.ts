/**
 * Pins the 402 Payment Required contract (docs/wire-contract.md §1, §5): status,
 * `WWW-Authenticate: PowChallenge …` in RFC 9110 auth-param syntax, integer Retry-After,
 * RateLimit-Policy / RateLimit, and the JSON-RPC error body with the request's id.
 * Default policy (vitest.config.ts + wrangler.toml): bucket 10 @ 0.5/s, ceiling 60 @ 10/s,
 * difficulty 16, 20 credits, challenges live 120 s. The order of the offers (policy
 * `offerOrder`) with every scheme enabled, against a fake LND and facilitator (../payments.ts).
 */
import { beforeEach, describe, expect, it } from "vitest";
import { FACILITATOR, FACILITATOR_URL, fakeFacilitator, fakeLnd, LND_MACAROON_HEX, LND_URL } from "../payments.ts";
import {
  CHALLENGE_FIELDS,
  challengeOf,
  errorBody,
  freezeTime,
  freshIp,
  GW,
  gateway,
  kidOf,
  observeOrigin,
  parseLimitList,
  post,
  request,
  rpc,
  SECRET,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

let now: number;
let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway();

beforeEach(() => {
  now = freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** Spend the caller's 10 free units (10 tool calls, all admitted). */
async function exhaust(who = ip, send = gw): Promise<void> {
  for (let i = 1; i <= 10; i++) {
    const res = await send(post(toolCall(i), { ip: who }));
    expect(res.status, `free call ${i}`).toBe(200);
    await res.body?.cancel();
  }
}

describe("402 Payment Required", () => {
  it("answers 402 once the free bucket is empty, and the origin never sees the request", async () => {
    await exhaust();
    expect(origin.requests).toHaveLength(10);
    const res = await gw(post(toolCall(11), { ip }));
    expect(res.status).toBe(402);
    expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
    expect(origin.requests).toHaveLength(10);
  });

  it("WWW-Authenticate is one PowChallenge with exactly the nine documented auth-params, strings quoted and integers as tokens", async () => {
    await exhaust();
    const res = await gw(post(toolCall(11), { ip }));
    const ch = challengeOf(res); // throws unless RFC 9110 challenge syntax
    expect(Object.keys(ch.params).sort()).toEqual([...CHALLENGE_FIELDS].sort());
    // Strings as quoted-strings, integers as tokens (wire contract §1).
    expect(ch.quoted).toEqual({
      realm: true,
      id: true,
      salt: true,
      difficulty: false,
      algorithm: true,
      expires: false,
      credits: false,
      kid: true,
      signature: true,
    });
    const p = ch.params;
    expect(p.realm).toBe("tollbooth");
    expect(p.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(p.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(p.difficulty).toBe("16");
    expect(p.algorithm).toBe("sha256");
    expect(p.expires).toBe(String(now / 1000 + 120));
    expect(p.credits).toBe("20");
    expect(p.kid).toBe(await kidOf(SECRET));
    expect(p.signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("Retry-After is the integer number of seconds until the free bucket admits the request again", async () => {
    await exhaust();
    const res = await gw(post(toolCall(11), { ip }));
    // Empty bucket, 1 unit missing at 0.5 units/s → 2 s.
    expect(res.headers.get("retry-after")).toBe("2");
    const body = await errorBody(res);
    expect(body.error.data!.retryAfter).toBe(2);
  });

  it("Retry-After scales with the cost of the refused request", async () => {
    const send = gateway({ costs: { tools: { heavy: 3 } } });
    await exhaust(ip, send);
    const res = await send(post(toolCall(11, "heavy"), { ip }));
    expect(res.status).toBe(402);
    // 3 units missing at 0.5 units/s → 6 s.
    expect(res.headers.get("retry-after")).toBe("6");
    const body = await errorBody(res);
    expect(body.error.data!.retryAfter).toBe(6);
    expect(body.error.data!.cost).toBe(3);
  });

  it("carries RateLimit-Policy and RateLimit fields (Structured Field lists) on the 402", async () => {
    await exhaust();
    const res = await gw(post(toolCall(11), { ip }));
    const policy = res.headers.get("ratelimit-policy")!;
    expect(policy).toBe('"free";q=10;w=20, "ceiling";q=60;w=6');
    expect(parseLimitList(policy)).toEqual({ free: { q: 10, w: 20 }, ceiling: { q: 60, w: 6 } });
    // free: empty, 20 s to refill 10 units at 0.5/s; ceiling: 11 of 60 used, 1.1 s to refill → 2.
    expect(parseLimitList(res.headers.get("ratelimit")!)).toEqual({ free: { r: 0, t: 20 }, ceiling: { r: 49, t: 2 } });
  });

  it("carries RateLimit-Policy and RateLimit on admitted (200) responses too", async () => {
    const first = await gw(post(toolCall(1), { ip }));
    expect(first.status).toBe(200);
    expect(parseLimitList(first.headers.get("ratelimit-policy")!)).toEqual({ free: { q: 10, w: 20 }, ceiling: { q: 60, w: 6 } });
    expect(parseLimitList(first.headers.get("ratelimit")!)).toEqual({ free: { r: 9, t: 2 }, ceiling: { r: 59, t: 1 } });
    const second = await gw(post(toolCall(2), { ip }));
    expect(parseLimitList(second.headers.get("ratelimit")!)).toEqual({ free: { r: 8, t: 4 }, ceiling: { r: 58, t: 1 } });
  });

  it("the body is a JSON-RPC error with the request's numeric id, code 402, and everything an agent needs in error.data", async () => {
    await exhaust();
    const res = await gw(post(toolCall(42), { ip }));
    const header = res.headers.get("www-authenticate")!;
    const ch = challengeOf(res);
    const body = await errorBody(res);
    expect(body.id).toBe(42);
    expect(body.error.code).toBe(402);
    expect(typeof body.error.message).toBe("string");
    expect(body.error.message).toContain("over_budget");
    const data = body.error.data!;
    expect(data.reason).toBe("over_budget");
    expect(data.cost).toBe(1);
    expect(data.retryAfter).toBe(Number(res.headers.get("retry-after")));
    expect(data.challenges).toHaveLength(1);
    expect(data.challenges[0]).toEqual({
      type: "pow",
      realm: ch.params.realm,
      id: ch.params.id,
      salt: ch.params.salt,
      difficulty: Number(ch.params.difficulty),
      algorithm: "sha256",
      expires: Number(ch.params.expires),
      credits: Number(ch.params.credits),
      kid: ch.params.kid,
      signature: ch.params.signature,
      header,
    });
    expect(data.policyUrl).toBe(WELL_KNOWN);
    expect(data.challengeUrl).toBe(`${WELL_KNOWN}/challenge`);
    expect(data.verifyUrl).toBe(`${WELL_KNOWN}/verify`);
    expect(data.statusUrl).toBe(`${WELL_KNOWN}/status`);
  });

  it("the gateway URLs in error.data follow the host the request was sent to", async () => {
    const req = (id: number) =>
      new Request("https://mcp.example.com:8443/mcp", {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip, origin: "https://mcp.example.com:8443" },
        body: JSON.stringify(toolCall(id)),
      });
    for (let i = 1; i <= 10; i++) expect((await gw(req(i))).status).toBe(200);
    const body = await errorBody(await gw(req(11)));
    expect(body.error.data!.verifyUrl).toBe("https://mcp.example.com:8443/.well-known/tollbooth/verify");
    expect(body.error.data!.policyUrl).toBe("https://mcp.example.com:8443/.well-known/tollbooth");
  });

  it("keeps a string id as a string", async () => {
    await exhaust();
    const body = await errorBody(await gw(post(toolCall("req-7"), { ip })));
    expect(body.id).toBe("req-7");
    expect(body.error.code).toBe(402);
  });

  it("answers a batch with an array: one error per request id, in order, notifications left out", async () => {
    await exhaust();
    const batch = [toolCall(1), rpc("notifications/progress", { progressToken: 1, progress: 1 }), toolCall("two"), toolCall(3)];
    const res = await gw(post(batch, { ip }));
    expect(res.status).toBe(402);
    const body = (await res.json()) as Array<{ jsonrpc: string; id: unknown; error: { code: number; data: Record<string, unknown> } }>;
    expect(Array.isArray(body)).toBe(true);
    expect(body.map((r) => r.id)).toEqual([1, "two", 3]);
    for (const r of body) {
      expect(r.jsonrpc).toBe("2.0");
      expect(r.error.code).toBe(402);
      // A batch costs the sum of its messages: three tool calls, the notification is free.
      expect(r.error.data.cost).toBe(3);
    }
  });

  it("uses id null when the request has no readable id (a request to another path)", async () => {
    await exhaust();
    const res = await gw(request("GET", "/some/other/path", { ip }));
    expect(res.status).toBe(402);
    const body = await errorBody(res);
    expect(body.id).toBeNull();
    expect(body.error.code).toBe(402);
    expect(body.error.data!.challenges[0].type).toBe("pow");
  });

  it("uses id null for a notification that is charged (it has no id)", async () => {
    const send = gateway({ costs: { methods: { "notifications/*": 1 } } });
    await exhaust(ip, send);
    const res = await send(post(rpc("notifications/message", { level: "info" }), { ip }));
    expect(res.status).toBe(402);
    expect((await errorBody(res)).id).toBeNull();
  });

  it("issues a fresh challenge (new id and salt) with every 402", async () => {
    await exhaust();
    const a = challengeOf(await gw(post(toolCall(11), { ip })));
    const b = challengeOf(await gw(post(toolCall(12), { ip })));
    expect(a.params.id).not.toBe(b.params.id);
    expect(a.params.salt).not.toBe(b.params.salt);
  });

  it("reflects the policy: realm, difficulty, credits and challenge lifetime", async () => {
    const send = gateway({
      realm: "acme tools",
      bucket: { capacity: 1, refillPerSecond: 0.01 },
      challenge: { difficulty: 5, credits: 7, ttlSeconds: 30 },
    });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const res = await send(post(toolCall(2), { ip }));
    expect(res.status).toBe(402);
    const ch = challengeOf(res);
    expect(ch.params).toMatchObject({ realm: "acme tools", difficulty: "5", credits: "7", expires: String(now / 1000 + 30) });
    expect(res.headers.get("retry-after")).toBe("100");
    expect(parseLimitList(res.headers.get("ratelimit-policy")!).free).toEqual({ q: 1, w: 100 });
  });

  it("the challenge, solved as the contract says and sent back as received, admits the request", async () => {
    const send = gateway({ challenge: { difficulty: 8 } });
    await exhaust(ip, send);
    const refused = await send(post(toolCall(11), { ip }));
    const { header } = await solve(challengeOf(refused));
    const res = await send(post(toolCall(11), { ip, headers: { "tollbooth-solution": header } }));
    expect(res.status).toBe(200);
    expect(res.headers.get("tollbooth-token")).toMatch(/^tb1\./);
    expect(res.headers.get("tollbooth-credits")).toBe("19");
    expect(origin.requests).toHaveLength(11);
  });

  it("the challenge endpoint answers the same challenge shape as the 402", async () => {
    const res = await gw(request("GET", `${GW}/.well-known/tollbooth/challenge`, { ip }));
    expect(res.status).toBe(200);
    const ch = challengeOf(res);
    const json = (await res.json()) as Record<string, unknown>;
    expect(json).toEqual({
      type: "pow",
      ...ch.params,
      difficulty: Number(ch.params.difficulty),
      expires: Number(ch.params.expires),
      credits: Number(ch.params.credits),
      header: res.headers.get("www-authenticate"),
    });
  });

  it("never answers 402 to zero-cost methods (initialize, ping, tools/list, notifications), even with the bucket empty", async () => {
    await exhaust();
    for (const m of ["initialize", "ping", "tools/list"]) {
      const res = await gw(post(rpc(m, {}, m), { ip }));
      expect(res.status, m).toBe(200);
    }
    const note = await gw(post(rpc("notifications/initialized"), { ip }));
    expect(note.status).toBe(200);
  });
});

describe("the order of the offers (policy offerOrder)", () => {
  const PAID = {
    bucket: { capacity: 1, refillPerSecond: 0.0001 },
    challenge: { difficulty: 4 },
    l402: { sats: 10, credits: 5 },
    lightning: { backend: "lnd", url: LND_URL, invoicesPerSecond: 1000 },
    x402: { mode: "credits", amount: "10000", credits: 5 },
    facilitator: FACILITATOR,
  };
  const secrets = { TOLLBOOTH_LIGHTNING_SECRET: LND_MACAROON_HEX };
  let lnd: ReturnType<typeof fakeLnd>;

  beforeEach(() => {
    lnd = fakeLnd();
    origin = observeOrigin(undefined, { [LND_URL]: lnd.service, [FACILITATOR_URL]: fakeFacilitator().service });
  });

  /** The caller's free unit, then the 402: its `WWW-Authenticate` (field lines joined), the challenges' types, its message. */
  async function offers(send: (req: Request) => Promise<Response>, headers: Record<string, string> = {}) {
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const res = await send(post(toolCall(2), { ip, headers }));
    const body = await errorBody(res);
    const challenges = body.error.data!.challenges as Array<{ type: string; macaroon?: string; invoice?: string }>;
    return {
      status: res.status,
      www: res.headers.get("www-authenticate") ?? "",
      types: challenges.map((c) => c.type),
      challenges,
      message: body.error.message,
      before: origin.requests.length,
    };
  }

  it("by default proof of work leads: PowChallenge first, then L402; challenges pow, l402, x402", async () => {
    const r = await offers(gateway(PAID, secrets));
    expect(r.status).toBe(402);
    expect(r.www).toMatch(/^PowChallenge realm="tollbooth", .*, L402 version="0", token="[^"]+", macaroon="[^"]+", invoice="[^"]+"$/);
    expect(r.types).toEqual(["pow", "l402", "x402"]);
    expect(r.message).toMatch(/ Solve the proof-of-work challenge .*; or pay the Lightning invoice .*; or pay with x402 /);
    expect(r.message).not.toMatch(/\bor or\b/i);
  });

  it('["l402"]: L402 is the first WWW-Authenticate challenge and the first entry of error.data.challenges; the rest keep the registry\'s order', async () => {
    const r = await offers(gateway({ ...PAID, offerOrder: ["l402"] }, secrets));
    expect(r.status).toBe(402);
    // A client that reads only the first challenge (Alby's fetch402, lsat-js) finds the invoice and macaroon there.
    expect(r.www).toMatch(/^L402 version="0", token="[^"]+", macaroon="[^"]+", invoice="lnbc[0-9a-z]+", PowChallenge realm="tollbooth", /);
    expect(r.types).toEqual(["l402", "pow", "x402"]);
    // Its hint leads the message too, each way through said once, joined by "; or".
    expect(r.message).toMatch(
      /^Payment required \(over_budget\): tools\/call echo costs 1 and the caller's budget is spent\. Pay the Lightning invoice of the l402 challenge \(10 sats for 5 credits\) .*; or solve the proof-of-work challenge \(the "pow" entry of error\.data\.challenges: .*; or pay with x402 .*; or wait \d+ s\.$/,
    );
    expect(r.message).not.toMatch(/\bor or\b/i);
    expect(origin.requests).toHaveLength(1);
  });

  it('["x402", "l402", "pow"]: the challenges in that order; x402 stays in PAYMENT-REQUIRED, L402 leads WWW-Authenticate', async () => {
    const send = gateway({ ...PAID, offerOrder: ["x402", "l402", "pow"] }, secrets);
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const res = await send(post(toolCall(2), { ip }));
    expect(res.status).toBe(402);
    expect(res.headers.get("payment-required")).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(res.headers.get("www-authenticate")).toMatch(/^L402 version="0", .*, PowChallenge realm=/);
    expect(((await errorBody(res)).error.data!.challenges as Array<{ type: string }>).map((c) => c.type)).toEqual(["x402", "l402", "pow"]);
  });

  it("the 401 to a credential that does not verify lists its fresh challenges in the same order; the origin gets nothing", async () => {
    const send = gateway({ ...PAID, offerOrder: ["l402"] }, secrets);
    const { challenges, before } = await offers(send);
    const l402 = challenges[0]!;
    const res = await send(post(toolCall(3), { ip, headers: { authorization: `L402 ${l402.macaroon}:${"00".repeat(32)}` } }));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^L402 version="0", .*, PowChallenge realm=/);
    expect(((await errorBody(res)).error.data!.challenges as Array<{ type: string }>).map((c) => c.type)).toEqual(["l402", "pow", "x402"]);
    expect(origin.requests).toHaveLength(before);
  });

  it("in 429 mode the challenges in error.data follow the order too (no WWW-Authenticate)", async () => {
    const send = gateway({ ...PAID, overBudget: "429", offerOrder: ["l402"] }, secrets);
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const res = await send(post(toolCall(2), { ip }));
    expect(res.status).toBe(429);
    expect(res.headers.get("www-authenticate")).toBeNull();
    expect(((await errorBody(res)).error.data!.challenges as Array<{ type: string }>).map((c) => c.type)).toEqual(["l402", "pow", "x402"]);
  });

  it("an unavailable backend is listed where its order puts it, and the first challenge sent is the next one", async () => {
    origin = observeOrigin(undefined, {
      [LND_URL]: async () => new Response("down", { status: 503 }),
      [FACILITATOR_URL]: fakeFacilitator().service,
    });
    const r = await offers(gateway({ ...PAID, offerOrder: ["l402"] }, secrets));
    expect(r.status).toBe(402);
    expect(r.types).toEqual(["l402", "pow", "x402"]);
    expect(r.challenges[0]).toMatchObject({ type: "l402", unavailable: true });
    expect(r.www).toMatch(/^PowChallenge realm=/);
    expect(r.www).not.toContain("L402");
  });
});
