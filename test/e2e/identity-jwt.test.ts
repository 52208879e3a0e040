/**
 * JWT identities end to end: `wrangler dev` verifying bearer tokens against a loopback JWKS
 * server (keys made by `jose` here), in front of a counting origin (server-everything).
 * Two subjects get two budgets; every token of one subject shares one; tokens that do not
 * verify (expired, wrong audience or issuer, tampered, unknown key, invented) are no
 * identity and share their network's budget; a key rotation at the JWKS is followed.
 */
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { JWKS_COOLDOWN_MS } from "../../shared/identity/index.ts";
import { type JwksServer, type SigningKey, signingKey, startJwks } from "../helpers/jwks.ts";
import { MCP_HEADERS, openRawSession } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const ISS = "https://auth.example.test/";
const AUD = "https://mcp.example.test/mcp";
const jwtId = (sub: string) => `jwt:${createHash("sha256").update(`${ISS}\n${sub}`, "utf8").digest("hex").slice(0, 32)}`;

let origin: Origin;
let jwks: JwksServer;
let gw: Gateway;
let k1: SigningKey;
let k2: SigningKey;
let stranger: SigningKey;

beforeAll(async () => {
  [k1, k2, stranger] = await Promise.all([signingKey("ES256", "k1"), signingKey("RS256", "k2"), signingKey("ES256", "k1")]);
  jwks = await startJwks([k1]);
  origin = await startOrigin();
  gw = await startGateway({
    originUrl: origin.url,
    policy: {
      bucket: { capacity: 2, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      challenge: { difficulty: 8, credits: 2 },
      plans: { pro: { bucket: { capacity: 5, refillPerSecond: 0.0001 } } },
      identity: { jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD, planClaim: "tb_plan" } },
    },
  });
}, 90_000);

afterAll(async () => {
  await gw?.close();
  await origin?.close();
  await jwks?.close();
});

let rpcId = 0;
let session: Record<string, string> | undefined;

/** One MCP session at the origin (initialize and notifications/initialized cost 0), shared by the calls below. */
async function sessionHeaders(): Promise<Record<string, string>> {
  if (session) return session;
  session = await openRawSession(`${gw.url}/mcp`, { "cf-connecting-ip": "192.0.2.1" }, "jwt-test");
  return session;
}

/** A priced `tools/call` of `echo` with `Authorization: Bearer <token>` from `ip`: the HTTP status. */
async function call(token: string, ip: string): Promise<number> {
  const res = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...(await sessionHeaders()), authorization: `Bearer ${token}`, "cf-connecting-ip": ip },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "echo", arguments: { message: "hi" } } }),
  });
  await res.text();
  return res.status;
}

async function status(token: string, ip: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${gw.url}/.well-known/tollbooth/status`, {
    headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

const echoes = () => origin.counts()["tools/call:echo"] ?? 0;
let ipSeq = Math.floor(Math.random() * 200);
/** A fresh address in TEST-NET-3, so each test draws on its own network budget. */
const freshIp = () => `203.0.113.${++ipSeq}`;
const sign = (key: SigningKey, sub: string, extra: Record<string, unknown> = {}, opts: Parameters<SigningKey["sign"]>[1] = {}) =>
  key.sign({ sub, ...extra }, { issuer: ISS, audience: AUD, ...opts });

describe("JWT identities in wrangler dev", () => {
  it("two subjects get two budgets, under the plan their token names", async () => {
    await sessionHeaders();
    const ip = freshIp();
    const alice = await sign(k1, `alice-${ipSeq}`);
    const bob = await sign(k1, `bob-${ipSeq}`, { tb_plan: "pro" });
    expect(await status(alice, ip)).toMatchObject({ caller: jwtId(`alice-${ipSeq}`), plan: "free", verified: true, network: `ip:${ip}` });
    expect(await status(bob, ip)).toMatchObject({ caller: jwtId(`bob-${ipSeq}`), plan: "pro", verified: true });
    const before = echoes();
    const a: number[] = [];
    for (let i = 0; i < 3; i++) a.push(await call(alice, ip));
    const b: number[] = [];
    for (let i = 0; i < 6; i++) b.push(await call(bob, ip));
    expect(a).toEqual([200, 200, 402]);
    expect(b).toEqual([200, 200, 200, 200, 200, 402]);
    expect(echoes() - before).toBe(7);
  });

  it("every token of one subject draws on the same budget", async () => {
    await sessionHeaders();
    const ip = freshIp();
    const sub = `carol-${ipSeq}`;
    const tokens = await Promise.all([sign(k1, sub), sign(k1, sub, { jti: "2" }), sign(k1, sub, {}, { expiresIn: "1h" })]);
    const before = echoes();
    const statuses = [];
    for (const t of tokens) statuses.push(await call(t, ip));
    expect(statuses).toEqual([200, 200, 402]);
    expect(echoes() - before).toBe(2);
  });

  it("expired, wrong-audience, wrong-issuer, tampered, unknown-key and invented tokens share the network's budget", async () => {
    await sessionHeaders();
    const ip = freshIp();
    const good = await sign(k1, "dave");
    const [header, payload, signature] = good.split(".") as [string, string, string];
    const forged = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), sub: `mallory-${randomBytes(4).toString("hex")}` }),
    ).toString("base64url");
    const bad = async (i: number): Promise<string> => {
      const sub = `victim-${i}`;
      switch (i % 6) {
        case 0:
          return sign(k1, sub, { exp: Math.floor(Date.now() / 1000) - 120 });
        case 1:
          return sign(k1, sub, {}, { audience: "https://other.example.test/mcp" });
        case 2:
          return sign(k1, sub, {}, { issuer: "https://evil.example.test/" });
        case 3:
          return `${header}.${forged}.${signature}`;
        case 4:
          return sign(stranger, sub); // k1's kid, another key: the signature does not verify
        default:
          return `${randomBytes(16).toString("base64url")}.${randomBytes(16).toString("base64url")}.${randomBytes(16).toString("base64url")}`;
      }
    };
    for (let i = 0; i < 6; i++)
      expect(await status(await bad(i), ip), `kind ${i}`).toMatchObject({ caller: `ip:${ip}`, verified: false, plan: "free" });
    const before = echoes();
    const statuses: number[] = [];
    for (let i = 0; i < 18; i++) statuses.push(await call(await bad(i), ip));
    expect(statuses.filter((s) => s === 200)).toHaveLength(2);
    expect(statuses.slice(2).every((s) => s === 402)).toBe(true);
    expect(echoes() - before).toBe(2);
    // The valid token from the same address is its own caller, with its own budget.
    expect(await call(good, ip)).toBe(200);
  });

  it(`follows a key rotation at the JWKS (within the ${JWKS_COOLDOWN_MS / 1000} s refetch cooldown)`, async () => {
    const ip = freshIp();
    expect(await status(await sign(k1, "erin"), ip)).toMatchObject({ caller: jwtId("erin"), verified: true });
    jwks.serve([k1, k2]);
    const rotatedAt = Date.now();
    const fetchesBefore = jwks.fetches();
    let caller: unknown;
    while (Date.now() - rotatedAt < JWKS_COOLDOWN_MS + 10_000) {
      caller = (await status(await sign(k2, "erin"), ip)).caller;
      if (caller === jwtId("erin")) break;
      expect(caller).toBe(`ip:${ip}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(caller).toBe(jwtId("erin"));
    // Unknown kids polled every 0.5 s cost at most one refetch per cooldown.
    expect(jwks.fetches() - fetchesBefore).toBeLessThanOrEqual(Math.ceil((Date.now() - rotatedAt) / JWKS_COOLDOWN_MS) + 1);
    // The retired key stops verifying new tokens once the set is refetched without it (not asserted: the cache lasts JWKS_CACHE_MAX_AGE_MS).
    jwks.serve([k2]);
    expect(await status(await sign(k2, "erin"), ip)).toMatchObject({ caller: jwtId("erin") });
  }, 60_000);
});
