/**
 * Who a caller is (`identityResolver`, shared/identity/): a verified JWT, an issued API key
 * (the policy's list, then KV, remembered for a bounded time), else its network (`networkOf`:
 * IPv4 as is, IPv6 by /64); invented credentials never make a new identity, and a JWT verifies
 * only under its own issuer's keys, with at most one JWKS fetch per cooldown.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { keyHash, newKey } from "../../../scripts/keys.ts";
import {
  ANONYMOUS,
  type Identity,
  type IdentityDeps,
  identityResolver,
  JWKS_CACHE_MAX_AGE_MS,
  JWKS_COOLDOWN_MS,
  KEY_MEMO_TTL_MS,
  networkOf,
} from "../../../shared/identity/index.ts";
import { jwtIssuers, type Policy, type PolicyInput, parsePolicy } from "../../../workers/schemes/policy.ts";
import { type JwksServer, type SigningKey, signingKey, startJwks } from "../../helpers/jwks.ts";

type IdentityInput = NonNullable<PolicyInput["identity"]>;
const identityOf = (input: IdentityInput = {}): Policy["identity"] => parsePolicy({ identity: input }).identity;
const defaults = identityOf();
const sha256hex = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const h = (init: Record<string, string>) => new Headers(init);
const IP = "203.0.113.7";

/** A KV namespace stand-in: a Map, every `get` recorded (key and type). */
function fakeKv(entries: Record<string, unknown> = {}) {
  const data = new Map(Object.entries(entries));
  const gets: string[] = [];
  let failing = false;
  const kv = {
    async get(key: string, type: "json"): Promise<unknown> {
      expect(type).toBe("json");
      gets.push(key);
      if (failing) throw new Error("KV GET failed: 503");
      return data.get(key) ?? null;
    },
  };
  return { kv, data, gets, fail: (on: boolean) => (failing = on) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("identityResolver: defaults (jwt, api-key, ip)", () => {
  const resolve = identityResolver(defaults);

  it("names a caller without credentials by its address, unverified", async () => {
    expect(await resolve(h({ "cf-connecting-ip": IP }))).toEqual({ id: `ip:${IP}`, strategy: "ip", verified: false, network: `ip:${IP}` });
  });

  it("does not let invented bearer tokens or API keys split a network: all end at its ip", async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const secret = randomBytes(12).toString("hex");
      ids.add((await resolve(h({ authorization: `Bearer ${secret}`, "cf-connecting-ip": IP }))).id);
      ids.add((await resolve(h({ "x-api-key": secret, "cf-connecting-ip": IP }))).id);
      ids.add((await resolve(h({ authorization: `Bearer ${secret}`, "x-api-key": secret, "cf-connecting-ip": IP }))).id);
    }
    expect([...ids]).toEqual([`ip:${IP}`]);
  });

  it("is anonymous, with an anonymous network, when nothing identifies the caller", async () => {
    expect(ANONYMOUS).toBe("anonymous");
    const anonymous: Identity = { id: ANONYMOUS, strategy: "anonymous", verified: false, network: ANONYMOUS };
    expect(await resolve(h({}))).toEqual(anonymous);
    expect(await resolve(h({ "cf-connecting-ip": "not an ip" }))).toEqual(anonymous);
    expect(await resolve(h({ authorization: "Bearer x", "x-api-key": "k" }))).toEqual(anonymous);
  });

  it("never uses Mcp-Session-Id (a caller mints sessions freely)", async () => {
    const one = await resolve(h({ "mcp-session-id": "s1", "cf-connecting-ip": IP }));
    const two = await resolve(h({ "mcp-session-id": "s2", "cf-connecting-ip": IP }));
    expect(one).toEqual(two);
    expect(one.id).toBe(`ip:${IP}`);
    expect((await resolve(h({ "mcp-session-id": "s1" }))).id).toBe(ANONYMOUS);
  });

  it("does not trust client-supplied forwarding headers", async () => {
    const headers = h({
      "x-forwarded-for": "198.51.100.1",
      "x-real-ip": "198.51.100.2",
      forwarded: "for=198.51.100.3",
      "true-client-ip": "198.51.100.4",
    });
    expect((await resolve(headers)).id).toBe(ANONYMOUS);
    expect((await resolve(h({ "x-forwarded-for": "198.51.100.1", "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
  });

  it("reduces IPv6 callers to their /64 and stays within 64 characters", async () => {
    const a = await resolve(h({ "cf-connecting-ip": "2001:db8:1:2::1" }));
    const b = await resolve(h({ "cf-connecting-ip": "2001:db8:1:2:ffff:ffff:ffff:ffff" }));
    const c = await resolve(h({ "cf-connecting-ip": "2001:db8:1:3::1" }));
    expect(a.id).toBe("ip:2001:db8:1:2::/64");
    expect(b.id).toBe(a.id);
    expect(c.id).not.toBe(a.id);
    const longest = (
      await identityResolver(identityOf({ ipv6Prefix: 127 }))(h({ "cf-connecting-ip": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" }))
    ).id;
    expect(longest).toBe("ip:ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127");
    expect(longest.length).toBeLessThanOrEqual(64);
  });

  it("applies the configured prefixes to the id and the network", async () => {
    const resolve16 = identityResolver(identityOf({ ipv4Prefix: 16, ipv6Prefix: 48 }));
    expect(await resolve16(h({ "cf-connecting-ip": "10.1.200.3" }))).toMatchObject({ id: "ip:10.1.0.0/16", network: "ip:10.1.0.0/16" });
    expect((await resolve16(h({ "cf-connecting-ip": "10.1.7.9" }))).id).toBe("ip:10.1.0.0/16");
    expect((await resolve16(h({ "cf-connecting-ip": "10.2.0.1" }))).id).toBe("ip:10.2.0.0/16");
    expect((await resolve16(h({ "cf-connecting-ip": "2001:db8:1:2::1" }))).id).toBe("ip:2001:db8:1::/48");
    expect((await resolve16(h({ "cf-connecting-ip": "2001:db8:1:ffff::1" }))).id).toBe("ip:2001:db8:1::/48");
  });
});

describe("api-key: keys the operator issued", () => {
  const KEY = `tb_${randomBytes(32).toString("base64url")}`;
  const HEX = sha256hex(KEY);

  it("names a caller whose key is listed in the policy (by its SHA-256), with the entry's plan and name", async () => {
    const resolve = identityResolver(identityOf({ apiKeys: [{ sha256: HEX, name: "ci-bot", plan: "pro" }] }));
    const who = await resolve(h({ "x-api-key": KEY, "cf-connecting-ip": IP }));
    expect(who).toEqual({
      id: `key:${HEX.slice(0, 32)}`,
      strategy: "api-key",
      verified: true,
      plan: "pro",
      network: `ip:${IP}`,
      label: "ci-bot",
    });
    expect(JSON.stringify(who)).not.toContain(KEY);
    // An entry without a plan gives none (the gateway uses defaultPlan).
    const plain = identityResolver(identityOf({ apiKeys: [{ sha256: HEX, name: "n" }] }));
    expect(await plain(h({ "x-api-key": KEY }))).toEqual({
      id: `key:${HEX.slice(0, 32)}`,
      strategy: "api-key",
      verified: true,
      network: ANONYMOUS,
      label: "n",
    });
  });

  it("looks an unlisted key up in TOLLBOOTH_KEYS by the SHA-256 hex of its value", async () => {
    const { kv, gets } = fakeKv({ [HEX]: { name: "alice", plan: "pro", created: "2026-11-30T00:00:00Z" } });
    const resolve = identityResolver(defaults, { keys: kv });
    const who = await resolve(h({ "x-api-key": KEY, "cf-connecting-ip": IP }));
    expect(who).toEqual({
      id: `key:${HEX.slice(0, 32)}`,
      strategy: "api-key",
      verified: true,
      plan: "pro",
      network: `ip:${IP}`,
      label: "alice",
    });
    expect(gets).toEqual([HEX]);
  });

  it("lets an unknown key fall through to the next strategy", async () => {
    const { kv } = fakeKv({ [HEX]: { name: "alice" } });
    const resolve = identityResolver(defaults, { keys: kv });
    expect((await resolve(h({ "x-api-key": `${KEY}x`, "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
    expect((await resolve(h({ "x-api-key": KEY.toUpperCase(), "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
    expect((await resolve(h({ "x-api-key": "k" }))).id).toBe(ANONYMOUS);
    const unverified = identityResolver(identityOf({ strategies: ["api-key", "api-key-unverified"] }), { keys: kv });
    expect(await unverified(h({ "x-api-key": "invented" }))).toMatchObject({
      id: `key:${sha256hex("invented").slice(0, 32)}`,
      strategy: "api-key-unverified",
      verified: false,
    });
  });

  it("finds a key made by scripts/keys.ts under the hash the script stores", async () => {
    const made = new Set(Array.from({ length: 20 }, () => newKey()));
    expect(made.size).toBe(20);
    for (const key of made) expect(key).toMatch(/^tb_[A-Za-z0-9_-]{43}$/);
    const key = [...made][0]!;
    expect(keyHash(key)).toBe(sha256hex(key));
    const { kv } = fakeKv({ [keyHash(key)]: { name: "made", plan: "pro", created: "2026-11-30T00:00:00.000Z" } });
    expect(await identityResolver(defaults, { keys: kv })(h({ "x-api-key": key }))).toMatchObject({
      id: `key:${keyHash(key).slice(0, 32)}`,
      verified: true,
      plan: "pro",
      label: "made",
    });
  });

  it("asks the listed keys first, then KV", async () => {
    const { kv, gets } = fakeKv({ [HEX]: { name: "from-kv", plan: "kv" } });
    const resolve = identityResolver(identityOf({ apiKeys: [{ sha256: HEX, name: "from-policy" }] }), { keys: kv });
    expect((await resolve(h({ "x-api-key": KEY }))).label).toBe("from-policy");
    expect(gets).toEqual([]);
  });

  it(`remembers KV answers, found and not found, for ${KEY_MEMO_TTL_MS / 1000} s: a revocation takes effect within that time`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_800_000_000_000);
    const { kv, data, gets } = fakeKv({ [HEX]: { name: "alice", plan: "pro" } });
    const resolve = identityResolver(defaults, { keys: kv });
    const ask = async (key: string) => (await resolve(h({ "x-api-key": key, "cf-connecting-ip": IP }))).id;
    for (let i = 0; i < 5; i++) expect(await ask(KEY)).toBe(`key:${HEX.slice(0, 32)}`);
    for (let i = 0; i < 5; i++) expect(await ask("not-issued")).toBe(`ip:${IP}`);
    expect(gets).toEqual([HEX, sha256hex("not-issued")]);

    data.delete(HEX); // revoked
    data.set(sha256hex("not-issued"), { name: "late" }); // issued meanwhile
    vi.setSystemTime(1_800_000_000_000 + KEY_MEMO_TTL_MS - 1);
    expect(await ask(KEY)).toBe(`key:${HEX.slice(0, 32)}`);
    expect(await ask("not-issued")).toBe(`ip:${IP}`);
    vi.setSystemTime(1_800_000_000_000 + KEY_MEMO_TTL_MS);
    expect(await ask(KEY)).toBe(`ip:${IP}`);
    expect(await ask("not-issued")).toBe(`key:${sha256hex("not-issued").slice(0, 32)}`);
    expect(gets).toHaveLength(4);
  });

  it("treats a failing KV as 'not issued' without remembering it", async () => {
    const { kv, gets, fail } = fakeKv({ [HEX]: { name: "alice" } });
    const resolve = identityResolver(defaults, { keys: kv });
    fail(true);
    expect((await resolve(h({ "x-api-key": KEY, "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
    fail(false);
    expect((await resolve(h({ "x-api-key": KEY, "cf-connecting-ip": IP }))).id).toBe(`key:${HEX.slice(0, 32)}`);
    expect(gets).toEqual([HEX, HEX]);
  });

  it("ignores KV values that are not key entries", async () => {
    const bad = ["alice", 42, [], { plan: "pro" }, { name: "" }, { name: 7 }, { name: "x".repeat(65) }, { name: "ok", plan: 3 }];
    for (const value of bad) {
      const { kv } = fakeKv({ [HEX]: value });
      const who = await identityResolver(defaults, { keys: kv })(h({ "x-api-key": KEY, "cf-connecting-ip": IP }));
      expect(who.id, JSON.stringify(value)).toBe(`ip:${IP}`);
    }
  });

  it("reads the key from the configured header only", async () => {
    const config = identityOf({ apiKeyHeader: "X-Tenant-Key", apiKeys: [{ sha256: HEX, name: "t" }] });
    const resolve = identityResolver(config);
    expect((await resolve(h({ "x-tenant-key": KEY, "x-api-key": "ignored" }))).id).toBe(`key:${HEX.slice(0, 32)}`);
    expect((await resolve(h({ "x-api-key": KEY, "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
  });
});

describe("unverified strategies (opt-in, splittable)", () => {
  it("authorization-unverified names a caller by a hash of the whole Authorization value", async () => {
    const resolve = identityResolver(identityOf({ strategies: ["authorization-unverified", "ip"] }));
    const who = await resolve(h({ authorization: "Bearer sk-live-123", "cf-connecting-ip": IP }));
    expect(who).toEqual({
      id: `auth:${sha256hex("Bearer sk-live-123").slice(0, 32)}`,
      strategy: "authorization-unverified",
      verified: false,
      network: `ip:${IP}`,
    });
    expect(who.id).not.toContain("sk-live-123");
    // Splittable: every new value is a new caller.
    const other = await resolve(h({ authorization: "bearer sk-live-123", "cf-connecting-ip": IP }));
    expect(other.id).not.toBe(who.id);
    expect(other.network).toBe(who.network);
  });

  it("api-key-unverified names a caller by a hash of the header value", async () => {
    const resolve = identityResolver(identityOf({ strategies: ["api-key-unverified"] }));
    expect(await resolve(h({ "x-api-key": "my-key" }))).toEqual({
      id: `key:${sha256hex("my-key").slice(0, 32)}`,
      strategy: "api-key-unverified",
      verified: false,
      network: ANONYMOUS,
    });
  });

  it("keeps an Authorization value and an API key with the same text apart", async () => {
    const resolve = identityResolver(identityOf({ strategies: ["authorization-unverified", "api-key-unverified"] }));
    expect((await resolve(h({ authorization: "same" }))).id).not.toBe((await resolve(h({ "x-api-key": "same" }))).id);
  });

  it("respects the configured order and uses only the configured strategies", async () => {
    const headers = h({ authorization: "Bearer x", "cf-connecting-ip": IP, "x-api-key": "k" });
    const id = async (strategies: IdentityInput["strategies"]) => (await identityResolver(identityOf({ strategies }))(headers)).id;
    expect(await id(["ip", "authorization-unverified"])).toBe(`ip:${IP}`);
    expect(await id(["api-key-unverified", "authorization-unverified", "ip"])).toBe(`key:${sha256hex("k").slice(0, 32)}`);
    expect(await id(["authorization-unverified", "api-key-unverified"])).toBe(`auth:${sha256hex("Bearer x").slice(0, 32)}`);
    expect(
      await identityResolver(identityOf({ strategies: ["authorization-unverified"] }))(h({ "x-api-key": "k", "cf-connecting-ip": IP })),
    ).toEqual({
      id: ANONYMOUS,
      strategy: "anonymous",
      verified: false,
      network: `ip:${IP}`,
    });
  });

  it("skips empty credential headers", async () => {
    const resolve = identityResolver(identityOf({ strategies: ["authorization-unverified", "api-key-unverified", "ip"] }));
    expect((await resolve(h({ authorization: "", "x-api-key": "", "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
  });
});

describe("jwt: bearer tokens verified against a loopback JWKS", () => {
  const ISS = "https://auth.example.test/";
  const AUD = "https://mcp.example.test/mcp";
  let k1: SigningKey;
  let rsa: SigningKey;
  let stranger: SigningKey;
  let jwks: JwksServer;
  let config: Policy["identity"];
  const jwtId = (iss: string, sub: string) => `jwt:${sha256hex(`${iss}\n${sub}`).slice(0, 32)}`;
  const bearer = (token: string) => h({ authorization: `Bearer ${token}`, "cf-connecting-ip": IP });

  beforeAll(async () => {
    [k1, rsa, stranger] = await Promise.all([signingKey("ES256", "k1"), signingKey("RS256", "r1"), signingKey("ES256", "k-unknown")]);
    jwks = await startJwks([k1, rsa]);
    config = identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD, planClaim: "tb_plan" } });
  });
  afterAll(async () => {
    await jwks?.close();
  });

  it("gives two subjects two identities (iss + sub), verified, with the plan claim and sub as label", async () => {
    const resolve = identityResolver(config);
    const alice = await resolve(bearer(await k1.sign({ sub: "alice", tb_plan: "pro" }, { issuer: ISS, audience: AUD })));
    const bob = await resolve(bearer(await rsa.sign({ sub: "bob" }, { issuer: ISS, audience: AUD })));
    expect(alice).toEqual({ id: jwtId(ISS, "alice"), strategy: "jwt", verified: true, plan: "pro", network: `ip:${IP}`, label: "alice" });
    expect(bob).toEqual({ id: jwtId(ISS, "bob"), strategy: "jwt", verified: true, network: `ip:${IP}`, label: "bob" });
    expect(alice.id).toMatch(/^jwt:[0-9a-f]{32}$/);
  });

  it("gives every token of one subject (and every spelling of the scheme) the same identity", async () => {
    const resolve = identityResolver(config);
    const t1 = await k1.sign({ sub: "carol" }, { issuer: ISS, audience: AUD });
    const t2 = await rsa.sign({ sub: "carol", jti: "other" }, { issuer: ISS, audience: [AUD, "someone-else"], expiresIn: "1h" });
    const ids = new Set<string>();
    for (const auth of [`Bearer ${t1}`, `bearer ${t1}`, `BEARER  ${t1}`, `Bearer ${t2}`])
      ids.add((await resolve(h({ authorization: auth }))).id);
    expect([...ids]).toEqual([jwtId(ISS, "carol")]);
    // Extra words after the token are not a Bearer token: they fall through.
    expect((await resolve(h({ authorization: `Bearer ${t1} extra`, "cf-connecting-ip": IP }))).id).toBe(`ip:${IP}`);
  });

  it("lets tokens that do not verify fall through to the caller's network", async () => {
    const resolve = identityResolver(config);
    const good = await k1.sign({ sub: "alice" }, { issuer: ISS, audience: AUD });
    const [header, payload, signature] = good.split(".") as [string, string, string];
    const forgedPayload = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), sub: "mallory" }),
    ).toString("base64url");
    const hs256 = (() => {
      const head = Buffer.from(JSON.stringify({ alg: "HS256", kid: "k1" })).toString("base64url");
      const body = Buffer.from(JSON.stringify({ sub: "alice", iss: ISS, aud: AUD, exp: Math.floor(Date.now() / 1000) + 300 })).toString(
        "base64url",
      );
      return `${head}.${body}.${createHmac("sha256", JSON.stringify(k1.publicJwk)).update(`${head}.${body}`).digest("base64url")}`;
    })();
    const cases: Record<string, string> = {
      expired: await k1.sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) - 60 }, { issuer: ISS, audience: AUD }),
      "wrong audience": await k1.sign({ sub: "alice" }, { issuer: ISS, audience: "https://other.example.test/mcp" }),
      "no audience": await k1.sign({ sub: "alice" }, { issuer: ISS }),
      "wrong issuer": await k1.sign({ sub: "alice" }, { issuer: "https://evil.example.test/", audience: AUD }),
      "nbf in the future": await k1.sign({ sub: "alice" }, { issuer: ISS, audience: AUD, notBefore: "2m" }),
      "tampered payload": `${header}.${forgedPayload}.${signature}`,
      "tampered signature": `${header}.${payload}.${signature.slice(0, -4)}${signature.slice(-4) === "AAAA" ? "BBBB" : "AAAA"}`,
      "HS256 with the public key as secret": hs256,
      "alg none": `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${payload}.`,
      "unknown key": await stranger.sign({ sub: "alice" }, { issuer: ISS, audience: AUD }),
      "no sub": await k1.sign({}, { issuer: ISS, audience: AUD }),
      "sub not a string": await k1.sign({ sub: 42 as unknown as string }, { issuer: ISS, audience: AUD }),
      "not a JWT": "sk-live-0123456789",
    };
    expect((await resolve(bearer(good))).id).toBe(jwtId(ISS, "alice"));
    for (const [name, token] of Object.entries(cases)) {
      expect(await resolve(bearer(token)), name).toEqual({ id: `ip:${IP}`, strategy: "ip", verified: false, network: `ip:${IP}` });
      expect((await resolve(h({ authorization: `Bearer ${token}` }))).id, name).toBe(ANONYMOUS);
    }
  });

  it("accepts a token within clockToleranceSeconds of exp and nbf", async () => {
    const resolve = identityResolver(config);
    const now = Math.floor(Date.now() / 1000);
    expect((await resolve(bearer(await k1.sign({ sub: "a", exp: now - 2 }, { issuer: ISS, audience: AUD })))).strategy).toBe("jwt");
    expect((await resolve(bearer(await k1.sign({ sub: "a", nbf: now + 2 }, { issuer: ISS, audience: AUD })))).strategy).toBe("jwt");
    const strict = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD, clockToleranceSeconds: 0 } }));
    expect((await strict(bearer(await k1.sign({ sub: "a", exp: now - 2 }, { issuer: ISS, audience: AUD })))).strategy).toBe("ip");
  });

  it("refuses algorithms outside identity.jwt.algorithms", async () => {
    const esOnly = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD, algorithms: ["ES256"] } }));
    expect((await esOnly(bearer(await rsa.sign({ sub: "bob" }, { issuer: ISS, audience: AUD })))).strategy).toBe("ip");
    expect((await esOnly(bearer(await k1.sign({ sub: "alice" }, { issuer: ISS, audience: AUD })))).strategy).toBe("jwt");
  });

  it("falls through to the next strategy in the policy's order", async () => {
    const resolve = identityResolver(
      identityOf({ strategies: ["jwt", "authorization-unverified", "ip"], jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD } }),
    );
    const bad = `Bearer ${await k1.sign({ sub: "alice" }, { issuer: ISS, audience: "nope" })}`;
    expect((await resolve(h({ authorization: bad, "cf-connecting-ip": IP }))).id).toBe(`auth:${sha256hex(bad).slice(0, 32)}`);
    // jwt configured but not listed: never applies.
    const ipOnly = identityResolver(identityOf({ strategies: ["ip"], jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD } }));
    expect((await ipOnly(bearer(await k1.sign({ sub: "alice" }, { issuer: ISS, audience: AUD })))).id).toBe(`ip:${IP}`);
  });

  it("remembers a verified token only until its exp", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const resolve = identityResolver(config);
    const token = await k1.sign({ sub: "dave" }, { issuer: ISS, audience: AUD, expiresIn: "60s" });
    expect((await resolve(bearer(token))).id).toBe(jwtId(ISS, "dave"));
    vi.setSystemTime(t0 + 30_000);
    expect((await resolve(bearer(token))).id).toBe(jwtId(ISS, "dave"));
    vi.setSystemTime(t0 + (60 + jwtIssuers(config.jwt)[0]!.entry.clockToleranceSeconds + 2) * 1000);
    expect((await resolve(bearer(token))).id).toBe(`ip:${IP}`);
  });

  it(`follows a key rotation at the JWKS (an unknown kid refetches, at most once per ${JWKS_COOLDOWN_MS / 1000} s)`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const [oldKey, newKey] = await Promise.all([signingKey("ES256", "old"), signingKey("EdDSA", "new")]);
    const rotating = await startJwks([oldKey]);
    try {
      const resolve = identityResolver(identityOf({ jwt: { jwksUrl: rotating.url, issuer: ISS, audience: AUD } }));
      expect((await resolve(bearer(await oldKey.sign({ sub: "erin" }, { issuer: ISS, audience: AUD })))).id).toBe(jwtId(ISS, "erin"));
      expect(rotating.fetches()).toBe(1);

      rotating.serve([oldKey, newKey]);
      // Within the cooldown the new kid is unknown: not an identity yet (no refetch).
      expect((await resolve(bearer(await newKey.sign({ sub: "erin" }, { issuer: ISS, audience: AUD })))).id).toBe(`ip:${IP}`);
      expect(rotating.fetches()).toBe(1);

      vi.setSystemTime(t0 + JWKS_COOLDOWN_MS + 1);
      expect((await resolve(bearer(await newKey.sign({ sub: "erin" }, { issuer: ISS, audience: AUD })))).id).toBe(jwtId(ISS, "erin"));
      expect(rotating.fetches()).toBe(2);
      // Unknown kids after that cost no fetch within the cooldown.
      for (let i = 0; i < 5; i++)
        expect((await resolve(bearer(await stranger.sign({ sub: "x" }, { issuer: ISS, audience: AUD })))).id).toBe(`ip:${IP}`);
      expect(rotating.fetches()).toBe(2);
    } finally {
      await rotating.close();
    }
  });

  it("fetches the JWKS with the injected fetch", async () => {
    const seen: string[] = [];
    const deps: IdentityDeps = {
      fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
        seen.push(String(input));
        return fetch(input, init);
      }) as typeof fetch,
    };
    const resolve = identityResolver(config, deps);
    expect((await resolve(bearer(await k1.sign({ sub: "frank" }, { issuer: ISS, audience: AUD })))).id).toBe(jwtId(ISS, "frank"));
    expect(seen).toEqual([jwks.url]);
  });

  it("falls through, without throwing, when the JWKS cannot be fetched", async () => {
    const gone = await startJwks([k1]);
    await gone.close();
    const resolve = identityResolver(identityOf({ jwt: { jwksUrl: gone.url, issuer: ISS, audience: AUD } }));
    expect((await resolve(bearer(await k1.sign({ sub: "alice" }, { issuer: ISS, audience: AUD })))).id).toBe(`ip:${IP}`);
  });

  it("verifies against static keys, and against the JWKS for keys not among them", async () => {
    const staticOnly = identityResolver(
      identityOf({ jwt: { keys: [k1.publicJwk as Record<string, unknown>], issuer: ISS, audience: AUD } }),
    );
    expect((await staticOnly(bearer(await k1.sign({ sub: "gina" }, { issuer: ISS, audience: AUD })))).id).toBe(jwtId(ISS, "gina"));
    expect((await staticOnly(bearer(await k1.sign({ sub: "gina" }, { issuer: ISS, audience: AUD, noKid: true })))).id).toBe(
      jwtId(ISS, "gina"),
    );
    expect((await staticOnly(bearer(await rsa.sign({ sub: "gina" }, { issuer: ISS, audience: AUD })))).id).toBe(`ip:${IP}`);
    const both = identityResolver(
      identityOf({ jwt: { keys: [stranger.publicJwk as Record<string, unknown>], jwksUrl: jwks.url, issuer: ISS, audience: AUD } }),
    );
    expect((await both(bearer(await stranger.sign({ sub: "gina" }, { issuer: ISS, audience: AUD })))).strategy).toBe("jwt");
    expect((await both(bearer(await rsa.sign({ sub: "gina" }, { issuer: ISS, audience: AUD })))).strategy).toBe("jwt");
  });

  it("accepts any of several issuers and audiences, and keeps one subject of two issuers apart", async () => {
    const OTHER = "https://other-issuer.example.test";
    const resolve = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: [ISS, OTHER], audience: [AUD, "aud-2"] } }));
    const a = await resolve(bearer(await k1.sign({ sub: "same" }, { issuer: ISS, audience: "aud-2" })));
    const b = await resolve(bearer(await k1.sign({ sub: "same" }, { issuer: OTHER, audience: AUD })));
    expect(a.id).toBe(jwtId(ISS, "same"));
    expect(b.id).toBe(jwtId(OTHER, "same"));
    expect(a.id).not.toBe(b.id);
  });

  it("refuses a bad identity.jwt when the resolver is built, naming the option", async () => {
    const base = { issuer: ISS, audience: AUD };
    const bad: Array<[object, RegExp]> = [
      [base, /^TOLLBOOTH_POLICY\.identity\.jwt: needs jwksUrl or keys/],
      [{ ...base, jwksUrl: "http://idp.example.test/jwks" }, /^TOLLBOOTH_POLICY\.identity\.jwt\.jwksUrl: /],
      [{ ...base, keys: [k1.publicJwk, { ...rsa.publicJwk, d: "secret" }] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.keys\.1: .*private/],
      [{ ...base, keys: [{ kty: "oct", k: "c2VjcmV0" }] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.keys\.0: kty/],
      [{ ...base, keys: [{ kty: "EC", crv: "P-256", x: "abc" }] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.keys\.0: EC key without "y"/],
      [{ ...base, keys: [{ ...k1.publicJwk, use: "enc" }] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.keys\.0: use/],
      [{ ...base, keys: [rsa.publicJwk], algorithms: ["ES256"] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.keys\.0: alg "RS256"/],
    ];
    for (const [jwt, message] of bad) {
      expect(() => identityResolver(identityOf({ jwt: jwt as never })), JSON.stringify(jwt)).toThrow(message);
      expect(() => identityResolver(identityOf({ jwt: jwt as never })), JSON.stringify(jwt)).toThrow(TypeError);
    }
    expect(() => identityResolver(identityOf({ jwt: { ...base, jwksUrl: "http://localhost:9/jwks" } }))).not.toThrow();
    expect(() => identityResolver(identityOf({ jwt: { ...base, jwksUrl: "https://idp.example.test/jwks" } }))).not.toThrow();
  });
});

describe("jwt: each issuer's tokens verify only under its own keys", () => {
  const OP = "https://auth.operator.test/";
  const PARTNER = "https://partner.example.test";
  const THIRD = "https://third.example.test";
  const AUD = "https://mcp.example.test/mcp";
  const NETWORK = `ip:${IP}`;
  const FALLS_THROUGH = { id: NETWORK, strategy: "ip", verified: false, network: NETWORK };
  let opKey: SigningKey;
  let partnerKey: SigningKey;
  let thirdKey: SigningKey;
  let opJwks: JwksServer;
  let resolve: (headers: Headers) => Promise<Identity>;
  const jwtId = (iss: string, sub: string) => `jwt:${sha256hex(`${iss}\n${sub}`).slice(0, 32)}`;
  const bearer = (token: string) => h({ authorization: `Bearer ${token}`, "cf-connecting-ip": IP });

  beforeAll(async () => {
    [opKey, partnerKey, thirdKey] = await Promise.all([
      signingKey("ES256", "op-1"),
      signingKey("ES256", "partner-1"),
      signingKey("EdDSA", "third-1"),
    ]);
    opJwks = await startJwks([opKey]);
    resolve = identityResolver(
      identityOf({
        jwt: [
          { issuer: OP, jwksUrl: opJwks.url, audience: AUD, planClaim: "tb_plan" },
          {
            issuer: PARTNER,
            keys: [partnerKey.publicJwk as Record<string, unknown>],
            audience: AUD,
            planClaim: "partner_plan",
            plans: ["pro"],
          },
          { issuer: THIRD, keys: [thirdKey.publicJwk as Record<string, unknown>], audience: AUD },
        ],
      }),
    );
  });
  afterAll(async () => {
    await opJwks?.close();
  });

  it("does not let a partner's key mint the operator's callers or plans: such tokens fall through", async () => {
    const alice = await resolve(bearer(await opKey.sign({ sub: "alice", tb_plan: "enterprise" }, { issuer: OP, audience: AUD })));
    expect(alice).toEqual({
      id: jwtId(OP, "alice"),
      strategy: "jwt",
      verified: true,
      plan: "enterprise",
      network: NETWORK,
      label: "alice",
    });
    // The partner's key under the operator's kid: jose picks the operator's key, the signature fails.
    const underOperatorKid = await new SignJWT({ sub: "alice", tb_plan: "enterprise" })
      .setProtectedHeader({ alg: "ES256", kid: "op-1" })
      .setIssuer(OP)
      .setAudience(AUD)
      .setExpirationTime("5m")
      .sign(partnerKey.privateKey);
    const forgeries: Record<string, string> = {
      "partner's key, operator's iss": await partnerKey.sign({ sub: "alice", tb_plan: "enterprise" }, { issuer: OP, audience: AUD }),
      "partner's key, operator's iss, no kid": await partnerKey.sign(
        { sub: "alice", tb_plan: "enterprise" },
        { issuer: OP, audience: AUD, noKid: true },
      ),
      "partner's key, operator's iss and kid": underOperatorKid,
      "third issuer's key, operator's iss": await thirdKey.sign({ sub: "alice", tb_plan: "enterprise" }, { issuer: OP, audience: AUD }),
      "third issuer's key, partner's iss": await thirdKey.sign({ sub: "bob", partner_plan: "pro" }, { issuer: PARTNER, audience: AUD }),
      "operator's key, partner's iss": await opKey.sign({ sub: "bob", partner_plan: "pro" }, { issuer: PARTNER, audience: AUD }),
      "partner's key, an issuer not listed": await partnerKey.sign(
        { sub: "alice" },
        { issuer: "https://elsewhere.example.test", audience: AUD },
      ),
    };
    for (const [name, token] of Object.entries(forgeries)) expect(await resolve(bearer(token)), name).toEqual(FALLS_THROUGH);
    // With another strategy next, that strategy names the caller (here: the unverified header).
    const next = identityResolver(
      identityOf({
        strategies: ["jwt", "authorization-unverified"],
        jwt: [
          { issuer: OP, jwksUrl: opJwks.url, audience: AUD },
          { issuer: PARTNER, keys: [partnerKey.publicJwk as Record<string, unknown>], audience: AUD },
        ],
      }),
    );
    const auth = `Bearer ${forgeries["partner's key, operator's iss"]!}`;
    expect(await next(h({ authorization: auth }))).toMatchObject({
      id: `auth:${sha256hex(auth).slice(0, 32)}`,
      strategy: "authorization-unverified",
      verified: false,
    });
  });

  it("gives a genuine partner token the partner's identity and only the partner's plan claim (within its plans)", async () => {
    const partnerAlice = await resolve(
      bearer(await partnerKey.sign({ sub: "alice", partner_plan: "pro", tb_plan: "enterprise" }, { issuer: PARTNER, audience: AUD })),
    );
    expect(partnerAlice).toEqual({
      id: jwtId(PARTNER, "alice"),
      strategy: "jwt",
      verified: true,
      plan: "pro",
      network: NETWORK,
      label: "alice",
    });
    expect(partnerAlice.id).not.toBe(jwtId(OP, "alice"));
    // The operator's claim means nothing in a partner's token; a plan outside the partner's `plans` is no plan (→ defaultPlan).
    expect(await resolve(bearer(await partnerKey.sign({ sub: "bob", tb_plan: "enterprise" }, { issuer: PARTNER, audience: AUD })))).toEqual(
      { id: jwtId(PARTNER, "bob"), strategy: "jwt", verified: true, network: NETWORK, label: "bob" },
    );
    expect(
      await resolve(bearer(await partnerKey.sign({ sub: "bob", partner_plan: "enterprise" }, { issuer: PARTNER, audience: AUD }))),
    ).toEqual({ id: jwtId(PARTNER, "bob"), strategy: "jwt", verified: true, network: NETWORK, label: "bob" });
    // An issuer without planClaim: its callers get the default plan whatever they claim.
    expect(
      await resolve(
        bearer(await thirdKey.sign({ sub: "carol", tb_plan: "enterprise", partner_plan: "pro" }, { issuer: THIRD, audience: AUD })),
      ),
    ).toEqual({ id: jwtId(THIRD, "carol"), strategy: "jwt", verified: true, network: NETWORK, label: "carol" });
  });

  it("reads the single-object form as a list of one", async () => {
    const entry = { issuer: PARTNER, keys: [partnerKey.publicJwk as Record<string, unknown>], audience: AUD, planClaim: "partner_plan" };
    const token = await partnerKey.sign({ sub: "dora", partner_plan: "pro" }, { issuer: PARTNER, audience: AUD });
    const expected = { id: jwtId(PARTNER, "dora"), strategy: "jwt", verified: true, plan: "pro", network: NETWORK, label: "dora" };
    expect(await identityResolver(identityOf({ jwt: entry }))(bearer(token))).toEqual(expected);
    expect(await identityResolver(identityOf({ jwt: [entry] }))(bearer(token))).toEqual(expected);
  });

  it("refuses a list naming one issuer twice, and names the entry in every error", () => {
    const ok = { issuer: OP, jwksUrl: "https://idp.example.test/jwks", audience: AUD };
    const partner = { ...ok, issuer: PARTNER, jwksUrl: "https://partner.example.test/jwks" };
    const bad: Array<[unknown, RegExp]> = [
      [
        [ok, { ...partner, issuer: OP }],
        /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.issuer: "https:\/\/auth\.operator\.test\/" is already the issuer of identity\.jwt\.0; /,
      ],
      [
        [{ ...ok, issuer: [OP, PARTNER] }, partner],
        /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.issuer: "https:\/\/partner\.example\.test" is already the issuer of identity\.jwt\.0; /,
      ],
      [[ok, { issuer: PARTNER, audience: AUD }], /^TOLLBOOTH_POLICY\.identity\.jwt\.1: needs jwksUrl or keys/],
      [[ok, { ...partner, jwksUrl: "http://partner.example.test/jwks" }], /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.jwksUrl: must be https/],
      [
        [{ ...ok, keys: [opKey.publicJwk, { ...partnerKey.publicJwk, d: "secret" }] }],
        /^TOLLBOOTH_POLICY\.identity\.jwt\.0\.keys\.1: .*private/,
      ],
      [[ok, { ...partner, plans: ["pro"] }], /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.plans: needs planClaim/],
      [{ ...ok, plans: ["pro"] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.plans: needs planClaim/],
      [{ ...ok, planClaim: "p", plans: ["not a plan"] }, /^TOLLBOOTH_POLICY\.identity\.jwt\.plans\.0: /],
      [[ok, { ...partner, bogus: 1 }], /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.bogus: Unrecognized key/],
      [[ok, { issuer: PARTNER, jwksUrl: partner.jwksUrl }], /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.audience: /],
      [{ ...ok, bogus: 1 }, /^TOLLBOOTH_POLICY\.identity\.jwt\.bogus: Unrecognized key/],
      [[], /^TOLLBOOTH_POLICY\.identity\.jwt: Too small/],
    ];
    for (const [jwt, message] of bad) {
      expect(() => identityResolver(identityOf({ jwt: jwt as never })), JSON.stringify(jwt)).toThrow(message);
      expect(() => identityResolver(identityOf({ jwt: jwt as never })), JSON.stringify(jwt)).toThrow(TypeError);
    }
    // The resolver refuses a repeated issuer even in a config that did not come through parsePolicy.
    const entry = identityOf({ jwt: ok }).jwt as never as object;
    expect(() => identityResolver({ ...identityOf(), jwt: [entry, { ...entry }] as never })).toThrow(
      /^TOLLBOOTH_POLICY\.identity\.jwt\.1\.issuer: /,
    );
    expect(() => identityResolver(identityOf({ jwt: [ok, partner] }))).not.toThrow();
  });
});

describe(`jwt: at most one JWKS fetch per ${JWKS_COOLDOWN_MS / 1000} s per issuer, whatever the JWKS does`, () => {
  const ISS = "https://auth.example.test/";
  const AUD = "https://mcp.example.test/mcp";
  const NETWORK = `ip:${IP}`;
  const jwtId = (sub: string) => `jwt:${sha256hex(`${ISS}\n${sub}`).slice(0, 32)}`;
  const bearer = (token: string) => h({ authorization: `Bearer ${token}`, "cf-connecting-ip": IP });
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  /** What anyone can send: a configured `iss`, an invented `kid`, random bytes for a signature (no key needed). */
  const forged = (iss = ISS) =>
    `${b64({ alg: "ES256", kid: randomBytes(8).toString("hex") })}.${b64({ iss, aud: AUD, sub: "alice", exp: Math.floor(Date.now() / 1000) + 300 })}.${randomBytes(64).toString("base64url")}`;
  /** `n` forged tokens sent at once; resolves to the ids they got. */
  const flood = (resolve: (headers: Headers) => Promise<Identity>, n: number, iss = ISS) =>
    Array.from({ length: n }, async () => (await resolve(bearer(forged(iss)))).id);
  const sign = (key: SigningKey, sub: string) => key.sign({ sub }, { issuer: ISS, audience: AUD });
  let jwks: JwksServer | undefined;
  afterEach(async () => {
    await jwks?.close();
    jwks = undefined;
  });

  it("makes one fetch for 100 invented kids against a JWKS 1 s slow, none more within the cooldown, one more after it", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const key = await signingKey("ES256", "live");
    jwks = await startJwks([key]);
    jwks.slow(1000);
    const resolve = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD } }));
    const genuine = await Promise.all(Array.from({ length: 10 }, (_, i) => sign(key, `user-${i}`)));
    // A cold isolate: 50 forged tokens and 10 genuine ones at once, then 50 more forged at once.
    const first = flood(resolve, 50);
    const real = genuine.map(async (t) => (await resolve(bearer(t))).id);
    const second = flood(resolve, 50);
    expect(await Promise.all([...first, ...second])).toEqual(Array(100).fill(NETWORK));
    expect(await Promise.all(real)).toEqual(genuine.map((_, i) => jwtId(`user-${i}`)));
    expect(jwks.fetches()).toBe(1);
    // Within the cooldown: answered from the cached set, no fetch.
    expect(await Promise.all(flood(resolve, 50))).toEqual(Array(50).fill(NETWORK));
    expect(jwks.fetches()).toBe(1);
    // After the cooldown: one refetch for the next flood, however large, then none again.
    vi.setSystemTime(t0 + JWKS_COOLDOWN_MS + 1);
    expect(await Promise.all([...flood(resolve, 50), ...flood(resolve, 50)])).toEqual(Array(100).fill(NETWORK));
    expect(jwks.fetches()).toBe(2);
    expect(await Promise.all(flood(resolve, 50))).toEqual(Array(50).fill(NETWORK));
    expect(jwks.fetches()).toBe(2);
    // Genuine tokens verified from the cached set all along.
    expect((await resolve(bearer(await sign(key, "late")))).id).toBe(jwtId("late"));
    expect(jwks.fetches()).toBe(2);
  });

  it("makes one fetch per cooldown against a JWKS answering 500, and picks up a key rotated in once it recovers", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const [key, next] = await Promise.all([signingKey("ES256", "live"), signingKey("EdDSA", "next")]);
    jwks = await startJwks([key]);
    jwks.fail(500);
    const resolve = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD } }));
    // Tokens of an issuer not listed cost no fetch at all.
    expect(await Promise.all(flood(resolve, 50, "https://elsewhere.example.test/"))).toEqual(Array(50).fill(NETWORK));
    expect(jwks.fetches()).toBe(0);
    // Cold and failing: 50 + 50 at once (and a genuine token among them) → one fetch; nobody is named by a key.
    const genuine = await sign(key, "gina");
    expect(await Promise.all([...flood(resolve, 50), resolve(bearer(genuine)).then((i) => i.id), ...flood(resolve, 50)])).toEqual(
      Array(101).fill(NETWORK),
    );
    expect(jwks.fetches()).toBe(1);
    // The failed fetch started the cooldown too.
    expect(await Promise.all(flood(resolve, 50))).toEqual(Array(50).fill(NETWORK));
    expect(jwks.fetches()).toBe(1);
    vi.setSystemTime(t0 + JWKS_COOLDOWN_MS + 1);
    expect(await Promise.all([...flood(resolve, 50), ...flood(resolve, 50)])).toEqual(Array(100).fill(NETWORK));
    expect(jwks.fetches()).toBe(2);

    // The JWKS recovers, with a key rotated in: used after the cooldown.
    jwks.fail(undefined);
    jwks.serve([key, next]);
    expect((await resolve(bearer(genuine))).id).toBe(NETWORK);
    expect(jwks.fetches()).toBe(2);
    vi.setSystemTime(t0 + 2 * (JWKS_COOLDOWN_MS + 1));
    expect((await resolve(bearer(await sign(next, "nina")))).id).toBe(jwtId("nina"));
    expect((await resolve(bearer(genuine))).id).toBe(jwtId("gina"));
    expect(jwks.fetches()).toBe(3);

    // It fails again: the set fetched stays in use, invented kids still cost one fetch per cooldown.
    jwks.fail(500);
    vi.setSystemTime(t0 + 3 * (JWKS_COOLDOWN_MS + 1));
    expect(await Promise.all([...flood(resolve, 50), ...flood(resolve, 50)])).toEqual(Array(100).fill(NETWORK));
    expect(jwks.fetches()).toBe(4);
    expect((await resolve(bearer(await sign(key, "fresh-token")))).id).toBe(jwtId("fresh-token"));
    expect((await resolve(bearer(await sign(next, "fresh-token-2")))).id).toBe(jwtId("fresh-token-2"));
    expect(jwks.fetches()).toBe(4);
  });

  it(`uses a fetched set for ${JWKS_CACHE_MAX_AGE_MS / 1000} s, and not once it has aged out`, async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const key = await signingKey("ES256", "live");
    jwks = await startJwks([key]);
    const resolve = identityResolver(identityOf({ jwt: { jwksUrl: jwks.url, issuer: ISS, audience: AUD } }));
    expect((await resolve(bearer(await sign(key, "a")))).id).toBe(jwtId("a"));
    vi.setSystemTime(t0 + JWKS_CACHE_MAX_AGE_MS - 1);
    expect((await resolve(bearer(await sign(key, "b")))).id).toBe(jwtId("b"));
    expect(jwks.fetches()).toBe(1);
    // Aged out while the JWKS fails: the old set is not used.
    jwks.fail(503);
    vi.setSystemTime(t0 + JWKS_CACHE_MAX_AGE_MS + 1);
    expect((await resolve(bearer(await sign(key, "c")))).id).toBe(NETWORK);
    expect(jwks.fetches()).toBe(2);
    // Back, without the key: after the cooldown the set is fetched again and the removed key no longer verifies.
    jwks.fail(undefined);
    jwks.serve([]);
    vi.setSystemTime(t0 + JWKS_CACHE_MAX_AGE_MS + JWKS_COOLDOWN_MS + 2);
    expect((await resolve(bearer(await sign(key, "d")))).id).toBe(NETWORK);
    expect(jwks.fetches()).toBe(3);
    jwks.serve([key]);
    vi.setSystemTime(t0 + JWKS_CACHE_MAX_AGE_MS + 2 * JWKS_COOLDOWN_MS + 3);
    expect((await resolve(bearer(await sign(key, "e")))).id).toBe(jwtId("e"));
    expect(jwks.fetches()).toBe(4);
  });
});

describe("networkOf", () => {
  it("keeps IPv4 addresses as they are at /32 and zeroes host bits below", () => {
    expect(networkOf("203.0.113.7", 32, 64)).toBe("203.0.113.7");
    expect(networkOf("203.0.113.7", 24, 64)).toBe("203.0.113.0/24");
    expect(networkOf("10.1.200.3", 16, 64)).toBe("10.1.0.0/16");
    expect(networkOf("10.1.200.3", 12, 64)).toBe("10.0.0.0/12");
    expect(networkOf("10.31.200.3", 12, 64)).toBe("10.16.0.0/12");
    expect(networkOf("255.255.255.255", 8, 64)).toBe("255.0.0.0/8");
  });

  it("writes IPv6 networks in RFC 5952 form with the prefix", () => {
    expect(networkOf("2001:DB8:1:2:3:4:5:6", 32, 64)).toBe("2001:db8:1:2::/64");
    expect(networkOf("2001:db8:1:2:3:4:5:6", 32, 48)).toBe("2001:db8:1::/48");
    expect(networkOf("2001:db8:0:0:1::1", 32, 64)).toBe("2001:db8::/64");
    expect(networkOf("2001:db8:0:0:1:0:0:1", 32, 128)).toBe("2001:db8::1:0:0:1");
    expect(networkOf("2001:0:0:1:0:0:0:1", 32, 128)).toBe("2001:0:0:1::1");
    expect(networkOf("2001:db8:1:2:3:4:5:6", 32, 128)).toBe("2001:db8:1:2:3:4:5:6");
    expect(networkOf("2001:db8:ffff::", 32, 36)).toBe("2001:db8:f000::/36");
    expect(networkOf("2001:db8:ffff::", 32, 28)).toBe("2001:db0::/28");
    expect(networkOf("::1", 32, 128)).toBe("::1");
    expect(networkOf("::", 32, 64)).toBe("::/64");
  });

  it("treats IPv4-mapped IPv6 as IPv4, with the IPv4 prefix", () => {
    expect(networkOf("::ffff:10.1.200.3", 16, 64)).toBe("10.1.0.0/16");
    expect(networkOf("::ffff:cb00:7107", 32, 48)).toBe("203.0.113.7");
  });

  it("refuses what is not an IP address", () => {
    for (const bad of ["", "localhost", "1.2.3", "256.1.1.1", "1::2::3", " 1.2.3.4"]) expect(networkOf(bad, 32, 64), bad).toBeNull();
  });
});

describe("networkOf with /32 and /64", () => {
  const normalizeIp = (ip: string) => networkOf(ip, 32, 64);
  it("keeps IPv4 addresses as they are", () => {
    expect(normalizeIp("203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("0.0.0.0")).toBe("0.0.0.0");
    expect(normalizeIp("255.255.255.255")).toBe("255.255.255.255");
    expect(normalizeIp("010.001.0.7")).toBe("10.1.0.7");
  });

  it("refuses invalid IPv4 addresses", () => {
    for (const bad of ["256.1.1.1", "1.2.3", "1.2.3.4.5", "1.2.3.-4", "1.2.3.4 ", "a.b.c.d"]) expect(normalizeIp(bad), bad).toBeNull();
  });

  it("puts two addresses in the same /64 together", () => {
    expect(normalizeIp("2001:db8:aa:bb:1:2:3:4")).toBe(normalizeIp("2001:db8:aa:bb:ffff::"));
    expect(normalizeIp("2001:db8:aa:bb::1")).toBe("2001:db8:aa:bb::/64");
  });

  it("keeps addresses in different /64s apart", () => {
    expect(normalizeIp("2001:db8:aa:bb::1")).not.toBe(normalizeIp("2001:db8:aa:bc::1"));
    expect(normalizeIp("2001:db8:aa:bb::1")).not.toBe(normalizeIp("2001:db9:aa:bb::1"));
  });

  it("gives every spelling of one address the same identity", () => {
    const spellings = [
      "2001:db8:0:1::7",
      "2001:DB8:0:1::7",
      "2001:0db8:0000:0001:0000:0000:0000:0007",
      "2001:db8::1:0:0:0:7",
      "2001:db8:0:1:0:0:0:7",
      "2001:db8:0:1::7%eth0",
    ];
    const ids = new Set(spellings.map((s) => normalizeIp(s)));
    expect([...ids]).toEqual(["2001:db8:0:1::/64"]);
  });

  it("treats IPv4-mapped IPv6 as the IPv4 address", () => {
    expect(normalizeIp("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("::FFFF:203.0.113.7")).toBe("203.0.113.7");
    expect(normalizeIp("::ffff:cb00:7107")).toBe("203.0.113.7");
    expect(normalizeIp("0:0:0:0:0:ffff:203.0.113.7")).toBe("203.0.113.7");
  });

  it("refuses invalid IPv6 addresses", () => {
    const bad = [
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1::2::3",
      "12345::1",
      "g::1",
      ":1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "::ffff:256.0.0.1",
      "",
      "localhost",
    ];
    for (const ip of bad) expect(normalizeIp(ip), ip).toBeNull();
  });
});
