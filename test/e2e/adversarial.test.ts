/**
 * Attacks at the real network boundary: `wrangler dev` gateways in front of a counting
 * origin (server-everything). Tampered challenges through both redemption paths, one
 * solution raced 100 times, tokens reused past their credits or lifetime, presented by
 * another caller, forged, and carried across a key rotation. Every refusal is JSON naming
 * the reason, and the origin receives nothing for it.
 */
import { createHmac, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { importKeyring } from "../../shared/credentials/keys.ts";
import { formatChallenge, leadingZeroBits, type PowChallenge, powDigest } from "../../shared/wire/pow.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const OLD = "old-secret-for-adversarial-0123456789";
const NEW = "new-secret-for-adversarial-0123456789";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** One free unit that (practically) never refills: every priced call after the first needs a credential. */
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 3 },
};

/**
 * gwNew's token lifetime, seconds (short: a test waits it out). `exp` is whole unix seconds,
 * so a token bought late in a second lives up to a second less.
 */
const TOKEN_TTL_SECONDS = 5;

let origin: Origin;
/** Secret OLD, tokens live 300 s. */
let gwOld: Gateway;
/** Secrets NEW,OLD: NEW signs, both verify. */
let gwRotated: Gateway;
/** Secret NEW only; tokens live 5 s. */
let gwNew: Gateway;
let oldKid: string;
let newKid: string;

beforeAll(async () => {
  origin = await startOrigin();
  [gwOld, gwRotated, gwNew] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: POLICY, secret: OLD }),
    startGateway({ originUrl: origin.url, policy: POLICY, secret: `${NEW},${OLD}` }),
    startGateway({ originUrl: origin.url, policy: { ...POLICY, token: { ttlSeconds: TOKEN_TTL_SECONDS } }, secret: NEW }),
  ]);
  oldKid = (await importKeyring(OLD)).signer.kid;
  newKid = (await importKeyring(NEW)).signer.kid;
});

afterAll(async () => {
  await Promise.all([gwOld?.close(), gwRotated?.close(), gwNew?.close()]);
  await origin?.close();
});

/** A fresh caller identity (x-api-key), so each test has its own budget. */
const caller = (label: string) => ({ "x-api-key": `${label}-${randomBytes(6).toString("hex")}` });

/** Everything the origin has received so far (a count, to compare before/after an attack). */
const received = () => origin.requests().length;

let rpcId = 0;
const toolCall = () =>
  JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } });

/** initialize + notifications/initialized (both cost 0): the headers of a live MCP session. */
async function openSession(gw: Gateway, who: Record<string, string>): Promise<Record<string, string>> {
  return { ...who, ...(await openRawSession(`${gw.url}/mcp`, who, "adversary")) };
}

/** A priced `tools/call` on the MCP endpoint. @returns status, headers and the parsed JSON body (null for SSE) */
async function call(gw: Gateway, headers: Record<string, string>) {
  const res = await fetch(`${gw.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...headers }, body: toolCall() });
  const text = await res.text();
  let body: any = null;
  if ((res.headers.get("content-type") ?? "").startsWith("application/json")) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body };
}

/** A 402 from the gateway itself: JSON-RPC error 402 naming `reason`, with a fresh challenge. */
function expectPaymentRequired(r: Awaited<ReturnType<typeof call>>, reason: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(402);
  expect(r.headers.get("content-type")).toMatch(/^application\/json/);
  expect(r.body.error).toMatchObject({ code: 402, data: { reason } });
  expect(r.headers.get("www-authenticate")).toMatch(/^PowChallenge /);
}

/** A challenge issued to `who`, and a nonce solving it. */
async function solvedChallenge(gw: Gateway, who: Record<string, string>): Promise<{ ch: PowChallenge; nonce: string }> {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/challenge`, { headers: who });
  expect(res.status).toBe(200);
  const { type: _type, header: _header, ...ch } = (await res.json()) as PowChallenge & { type: string; header: string };
  return { ch, nonce: (await solvePow(ch.salt, ch.difficulty)).nonce };
}

/** The `Tollbooth-Solution` value for challenge fields (as received, possibly tampered) and a nonce. */
const solutionHeader = (fields: object, nonce: string) =>
  `${formatChallenge(fields as unknown as PowChallenge).slice("PowChallenge ".length)}, nonce="${nonce}"`;

async function verify(gw: Gateway, who: Record<string, string>, body: unknown) {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/verify`, {
    method: "POST",
    headers: { "content-type": "application/json", ...who },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

/** A token bought through /verify for `who`. */
async function buyToken(gw: Gateway, who: Record<string, string>): Promise<string> {
  const { ch, nonce } = await solvedChallenge(gw, who);
  const r = await verify(gw, who, { ...ch, nonce });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.token as string;
}

/** The same base64url text with its last character's unused bits set (a second spelling). */
const respell = (text: string) => text.slice(0, -1) + B64URL[B64URL.indexOf(text.at(-1)!) ^ 1];

describe("a tampered challenge is refused through both redemption paths, and the origin sees nothing", () => {
  it("each signed field changed, the signature re-spelled, fields shifted, too little work, malformed", async () => {
    const who = caller("tamper");
    const { ch, nonce } = await solvedChallenge(gwOld, who);
    // A nonce that does not meet the difficulty.
    let weak = 0;
    while (leadingZeroBits(await powDigest(ch.salt, String(weak))) >= ch.difficulty) weak++;
    const shifted = {
      ...ch,
      expires: Number(`${ch.expires}${String(ch.credits)[0]}`),
      credits: Number(String(ch.credits).slice(1) || "0"),
    };
    const variants: Array<[string, Record<string, unknown>, string, string]> = [
      ["difficulty lowered", { ...ch, difficulty: 1 }, nonce, "bad_signature"],
      ["expiry extended", { ...ch, expires: ch.expires + 3600 }, nonce, "bad_signature"],
      ["credits raised", { ...ch, credits: 1000 }, nonce, "bad_signature"],
      ["realm changed", { ...ch, realm: "elsewhere" }, nonce, "bad_signature"],
      ["id changed", { ...ch, id: respell(ch.id).split("").reverse().join("") }, nonce, "bad_signature"],
      ["salt changed", { ...ch, salt: ch.salt.replace(/^./, (c) => (c === "0" ? "1" : "0")) }, nonce, "bad_signature"],
      ["kid swapped to an unknown key", { ...ch, kid: "AAAAAAAA" }, nonce, "unknown_key"],
      ["kid swapped to a real key of another gateway", { ...ch, kid: newKid }, nonce, "unknown_key"],
      ["algorithm changed", { ...ch, algorithm: "sha1" }, nonce, "unsupported_algorithm"],
      ["signature padded", { ...ch, signature: `${ch.signature}=` }, nonce, "bad_signature"],
      ["signature re-spelled (trailing bits)", { ...ch, signature: respell(ch.signature) }, nonce, "bad_signature"],
      [
        "signature in the standard alphabet",
        { ...ch, signature: ch.signature.replaceAll("-", "+").replaceAll("_", "/").replace(/^./, "+") },
        nonce,
        "bad_signature",
      ],
      ["a digit shifted from credits into expires", shifted, nonce, "bad_signature"],
      ["insufficient work", ch, String(weak), "insufficient_work"],
    ];
    const before = received();
    for (const [label, fields, n, reason] of variants) {
      const viaHeader = await call(gwOld, { ...who, "tollbooth-solution": solutionHeader(fields, n) });
      expect(viaHeader.body?.error?.data?.reason, label).toBe(`solution_${reason}`);
      expectPaymentRequired(viaHeader, `solution_${reason}`);
      const viaVerify = await verify(gwOld, who, { ...fields, nonce: n });
      expect([viaVerify.status, viaVerify.body], label).toEqual([422, expect.objectContaining({ error: "invalid_solution", reason })]);
    }
    // Another caller presenting the untampered solution: the challenge is bound to `who`.
    const thief = caller("thief");
    expectPaymentRequired(await call(gwOld, { ...thief, "tollbooth-solution": solutionHeader(ch, nonce) }), "solution_bad_signature");
    expect((await verify(gwOld, thief, { ...ch, nonce })).body).toMatchObject({ error: "invalid_solution", reason: "bad_signature" });
    // Malformed: broken syntax, a non-digit nonce, a missing field.
    for (const header of [
      `${solutionHeader(ch, nonce)}, nonce="1"`,
      solutionHeader(ch, "12a"),
      solutionHeader(ch, nonce).replace(/salt="[^"]*", /, ""),
      'realm="tollbooth", id="x',
    ]) {
      expectPaymentRequired(await call(gwOld, { ...who, "tollbooth-solution": header }), "solution_malformed");
    }
    for (const body of [
      "{",
      JSON.stringify({ ...ch, nonce: "12a" }),
      JSON.stringify([{ ...ch, nonce }]),
      JSON.stringify({ ...ch, difficulty: "08", nonce }),
    ]) {
      expect(await verify(gwOld, who, body)).toMatchObject({ status: 400, body: { error: "invalid_request" } });
    }
    expect(received()).toBe(before);
    // None of that spent the challenge: the untampered solution still buys a token.
    const honest = await verify(gwOld, who, { ...ch, nonce });
    expect(honest.status).toBe(200);
    expect(honest.body.token).toMatch(new RegExp(`^tb1\\.${oldKid}\\.`));
  });
});

describe("one solution raced 100 times through both paths", () => {
  it("yields exactly one token, and at most the winner's one request reaches the origin", async () => {
    const who = caller("racer");
    const session = await openSession(gwOld, who);
    const { ch, nonce } = await solvedChallenge(gwOld, who);
    const before = received();
    const attempts = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        i % 2 === 0
          ? call(gwOld, { ...session, "tollbooth-solution": solutionHeader(ch, nonce) }).then((r) => ({ path: "header" as const, ...r }))
          : verify(gwOld, who, { ...ch, nonce }).then((r) => ({ path: "verify" as const, ...r })),
      ),
    );
    const winners = attempts.filter((a) => a.status === 200);
    expect(winners).toHaveLength(1);
    const winner = winners[0]!;
    if (winner.path === "header") expect(winner.headers.get("tollbooth-token")).toMatch(/^tb1\./);
    else expect(winner.body.token).toMatch(/^tb1\./);
    for (const a of attempts) {
      if (a === winner) continue;
      if (a.path === "header") expectPaymentRequired(a, "solution_spent");
      else expect([a.status, a.body]).toEqual([422, expect.objectContaining({ error: "invalid_solution", reason: "spent" })]);
    }
    expect(received() - before).toBe(winner.path === "header" ? 1 : 0);
  });
});

describe("reused tokens", () => {
  it("after its credits ran out: 402 token_exhausted, the origin gets only the paid requests", async () => {
    const who = caller("spender");
    const session = await openSession(gwOld, who);
    const token = await buyToken(gwOld, who);
    const before = received();
    for (const left of [2, 1, 0]) {
      const r = await call(gwOld, { ...session, "tollbooth-token": token });
      expect(r.status).toBe(200);
      expect(r.headers.get("tollbooth-credits")).toBe(String(left));
    }
    expect(received() - before).toBe(3);
    for (let i = 0; i < 3; i++) expectPaymentRequired(await call(gwOld, { ...session, "tollbooth-token": token }), "token_exhausted");
    expect(received() - before).toBe(3);
  });

  it("after its lifetime (token.ttlSeconds 5): 402 token_expired, the origin gets nothing more", async () => {
    const who = caller("late");
    const session = await openSession(gwNew, who);
    const buying = Date.now();
    const token = await buyToken(gwNew, who);
    const bought = Date.now();
    const exp = (JSON.parse(Buffer.from(token.split(".")[2]!, "base64url").toString()) as { exp: number }).exp;
    // The lifetime is the policy's, from the gateway's second of the purchase (whole seconds).
    expect(exp * 1000).toBeGreaterThan(buying + (TOKEN_TTL_SECONDS - 1) * 1000);
    expect(exp * 1000).toBeLessThanOrEqual(bought + TOKEN_TTL_SECONDS * 1000);
    // A token in its lifetime is admitted (the tests above, on a long lifetime); this one is
    // first used only once its lifetime is over, so the outcome does not depend on load.
    const before = received();
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 200));
    expectPaymentRequired(await call(gwNew, { ...session, "tollbooth-token": token }), "token_expired");
    expectPaymentRequired(await call(gwNew, { ...session, "tollbooth-token": token }), "token_expired");
    expect(received()).toBe(before);
  });
});

describe("a token is its caller's only", () => {
  it("presented by another x-api-key, by a caller with only an Authorization, or from another network: 402 token_wrong_caller, origin nothing", async () => {
    const owner = caller("owner");
    const token = await buyToken(gwOld, owner);
    const before = received();
    // An unverifiable bearer token is no identity: that request is its network's.
    const others: Array<Record<string, string>> = [
      caller("other"),
      { authorization: "Bearer someone-else" },
      { "cf-connecting-ip": "203.0.113.50" },
    ];
    for (const who of others) expectPaymentRequired(await call(gwOld, { ...who, "tollbooth-token": token }), "token_wrong_caller");
    expect(received()).toBe(before);
    // The owner can use it: the refusals were about the caller, not the token.
    expect((await call(gwOld, { ...owner, "tollbooth-token": token })).headers.get("tollbooth-credits")).toBe("2");
  });
});

describe("forged tokens: 402 and the origin sees nothing", () => {
  it("random signature, payload claiming more credits / another sub / later exp, another key, second spellings", async () => {
    const who = caller("forger");
    const token = await buyToken(gwOld, who);
    const [prefix, kid, payload, sig] = token.split(".") as [string, string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Record<string, unknown>;
    const edited = (over: Record<string, unknown>) => Buffer.from(JSON.stringify({ ...claims, ...over })).toString("base64url");
    const signWith = (secret: string, k: string, p: string) =>
      createHmac("sha256", secret)
        .update(["tollbooth/access-token/v1", k, p].map((f) => `${Buffer.byteLength(f)}:${f}`).join(""))
        .digest("base64url");
    const forged: Array<[string, string]> = [
      [`${prefix}.${kid}.${payload}.${randomBytes(32).toString("base64url")}`, "token_bad_signature"],
      [`${prefix}.${kid}.${edited({ cr: 1_000_000 })}.${sig}`, "token_bad_signature"],
      [`${prefix}.${kid}.${edited({ exp: (claims.exp as number) + 86_400 })}.${sig}`, "token_bad_signature"],
      [`${prefix}.${kid}.${edited({ sub: "key:someone" })}.${sig}`, "token_bad_signature"],
      [
        `${prefix}.${kid}.${edited({ cr: 1_000_000 })}.${signWith("a-secret-the-gateway-never-had", kid, edited({ cr: 1_000_000 }))}`,
        "token_bad_signature",
      ],
      [`${prefix}.${newKid}.${payload}.${signWith(NEW, newKid, payload)}`, "token_unknown_key"],
      [`${prefix}.${kid}.${payload}.${sig}=`, "token_bad_signature"],
      [`${prefix}.${kid}.${payload}.${respell(sig)}`, "token_bad_signature"],
      [`${prefix}.${kid}.${payload}=.${sig}`, "token_bad_signature"],
      [`${token}.${sig}`, "token_malformed"],
      [`tb2.${kid}.${payload}.${sig}`, "token_malformed"],
    ];
    const before = received();
    for (const [t, reason] of forged) expectPaymentRequired(await call(gwOld, { ...who, "tollbooth-token": t }), reason);
    expect(received()).toBe(before);
    // The real token, untouched, still pays: 3 credits, none spent by the forgeries.
    expect((await call(gwOld, { ...who, "tollbooth-token": token })).headers.get("tollbooth-credits")).toBe("2");
  });
});

describe("hostile bodies at the boundary: 400 with the JSON-RPC error, origin nothing", () => {
  it("a method named twice, 10⁵ levels of nesting, invalid UTF-8, an empty batch", async () => {
    const who = caller("bodies");
    const cases: Array<[BodyInit, number]> = [
      ['{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}', -32600],
      ['{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\\u0061me":"x","arguments":{"message":"x"}}}', -32600],
      ["[".repeat(100_000), -32600], // deeper than maxJsonDepth: refused before it is parsed
      ["[".repeat(100_000) + "]".repeat(100_000), -32600],
      [new Uint8Array([...Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/'), 0xc0, 0x80, ...Buffer.from('call"}')]), -32700],
      ["[]", -32600],
    ];
    const before = received();
    for (const [body, code] of cases) {
      const res = await fetch(`${gwOld.url}/mcp`, { method: "POST", headers: { ...MCP_HEADERS, ...who }, body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as any).error.code).toBe(code);
    }
    expect(received()).toBe(before);
  });
});

describe("key rotation", () => {
  it("NEW,OLD still verifies OLD's tokens and redeems OLD's challenges, minting under NEW's kid; NEW alone refuses both", async () => {
    expect(oldKid).not.toBe(newKid);
    const who = caller("rotation");
    const oldToken = await buyToken(gwOld, who);
    expect(oldToken.startsWith(`tb1.${oldKid}.`)).toBe(true);
    const [first, second] = [await solvedChallenge(gwOld, who), await solvedChallenge(gwOld, who)];
    const before = received();

    // NEW,OLD: the token's signature verifies (status 200, not 401). Its credits live in the
    // Durable Object of the gateway that minted it, so this gateway, sharing nothing but the
    // secret, answers token_unknown (checked after the signature), not token_unknown_key.
    const status = await fetch(`${gwRotated.url}/.well-known/tollbooth/status`, { headers: { ...who, "tollbooth-token": oldToken } });
    expect(status.status).toBe(200);
    expectPaymentRequired(await call(gwRotated, { ...who, "tollbooth-token": oldToken }), "token_unknown");
    expect(received()).toBe(before);

    // NEW,OLD: OLD's challenge (stateless) redeems, and the token is minted under NEW's kid.
    const session = await openSession(gwRotated, who);
    const redeemed = await call(gwRotated, { ...session, "tollbooth-solution": solutionHeader(first.ch, first.nonce) });
    expect(redeemed.status).toBe(200);
    const rotatedToken = redeemed.headers.get("tollbooth-token")!;
    expect(rotatedToken.startsWith(`tb1.${newKid}.`)).toBe(true);
    expect((await call(gwRotated, { ...session, "tollbooth-token": rotatedToken })).headers.get("tollbooth-credits")).toBe("1");
    const fresh = await fetch(`${gwRotated.url}/.well-known/tollbooth/challenge`, { headers: who });
    expect(((await fresh.json()) as PowChallenge).kid).toBe(newKid);
    const afterRotated = received();

    // NEW only: OLD's token and OLD's challenge are refused for their unknown key; origin nothing.
    expectPaymentRequired(await call(gwNew, { ...who, "tollbooth-token": oldToken }), "token_unknown_key");
    const newStatus = await fetch(`${gwNew.url}/.well-known/tollbooth/status`, { headers: { ...who, "tollbooth-token": oldToken } });
    expect([newStatus.status, await newStatus.json()]).toEqual([
      401,
      expect.objectContaining({ error: "invalid_token", reason: "unknown_key" }),
    ]);
    expectPaymentRequired(
      await call(gwNew, { ...who, "tollbooth-solution": solutionHeader(second.ch, second.nonce) }),
      "solution_unknown_key",
    );
    expect(await verify(gwNew, who, { ...second.ch, nonce: second.nonce })).toMatchObject({
      status: 422,
      body: { error: "invalid_solution", reason: "unknown_key" },
    });
    expect(received()).toBe(afterRotated);

    // OLD itself still honours both (the refusals above are the rotation, not the credentials).
    expect((await call(gwOld, { ...who, "tollbooth-token": oldToken })).headers.get("tollbooth-credits")).toBe("2");
  });
});
