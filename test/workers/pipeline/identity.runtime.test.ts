/**
 * Identities inside workerd: `jose` verifying JWTs with the runtime's WebCrypto (ES256,
 * RS256, EdDSA) and a JWKS served through the injectable fetch; the Worker naming callers
 * by JWT (static keys) and by API keys read from the `TOLLBOOTH_KEYS` KV binding.
 */
import { env } from "cloudflare:workers";
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { identityResolver } from "../../../shared/identity/index.ts";
import { parsePolicy } from "../../../workers/schemes/policy.ts";
import { freshIp, gateway, hex, request, sha256 } from "../support.ts";

const ISS = "https://auth.example.test/";
const AUD = "https://gw.test/mcp";
const JWKS_URL = "https://auth.example.test/.well-known/jwks.json";
const jwtId = async (sub: string) => `jwt:${hex(await sha256(`${ISS}\n${sub}`)).slice(0, 32)}`;

async function keyPair(
  alg: string,
  kid: string,
): Promise<{ jwk: JWK; privateKey: CryptoKey; sign: (claims: Record<string, unknown>) => Promise<string> }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg, kid })
      .setIssuer(ISS)
      .setAudience(AUD)
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
  return { jwk, privateKey, sign };
}

describe("jose in workerd", () => {
  for (const alg of ["ES256", "RS256", "EdDSA"]) {
    it(`verifies ${alg} tokens against a JWKS fetched through the injected fetch`, async () => {
      const key = await keyPair(alg, `kid-${alg}`);
      const fetched: string[] = [];
      const fetchJwks = (async (input: RequestInfo | URL) => {
        fetched.push(String(input));
        return new Response(JSON.stringify({ keys: [key.jwk] }), { headers: { "content-type": "application/json" } });
      }) as typeof fetch;
      const resolve = identityResolver(parsePolicy({ identity: { jwt: { jwksUrl: JWKS_URL, issuer: ISS, audience: AUD } } }).identity, {
        fetch: fetchJwks,
      });
      const ip = freshIp();
      const token = await key.sign({ sub: `sub-${alg}` });
      expect(await resolve(new Headers({ authorization: `Bearer ${token}`, "cf-connecting-ip": ip }))).toEqual({
        id: await jwtId(`sub-${alg}`),
        strategy: "jwt",
        verified: true,
        network: `ip:${ip}`,
        label: `sub-${alg}`,
      });
      const [h, p, s] = token.split(".") as [string, string, string];
      const tampered = `${h}.${p}.${s.startsWith("A") ? "B" : "A"}${s.slice(1)}`;
      expect((await resolve(new Headers({ authorization: `Bearer ${tampered}`, "cf-connecting-ip": ip }))).id).toBe(`ip:${ip}`);
      expect(fetched).toEqual([JWKS_URL]);
    });
  }
});

describe("JWKS fetches in workerd (where jose's own remote set drops its shared fetch)", () => {
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const randomHex = (bytes: number) => hex(crypto.getRandomValues(new Uint8Array(bytes)));
  /** What anyone can send: the configured `iss`, an invented `kid`, random bytes for a signature. */
  const forged = () =>
    `${b64({ alg: "ES256", kid: randomHex(8) })}.${b64({ iss: ISS, aud: AUD, sub: "alice", exp: Math.floor(Date.now() / 1000) + 300 })}.${Buffer.from(crypto.getRandomValues(new Uint8Array(64))).toString("base64url")}`;
  const ip = freshIp();
  const flood = (resolve: (headers: Headers) => Promise<{ id: string }>, n: number) =>
    Array.from({ length: n }, async () => (await resolve(new Headers({ authorization: `Bearer ${forged()}`, "cf-connecting-ip": ip }))).id);

  for (const [name, answer] of [
    [
      "takes 1 s",
      async (jwk: JWK) => {
        await new Promise((r) => setTimeout(r, 1000));
        return new Response(JSON.stringify({ keys: [jwk] }), { headers: { "content-type": "application/json" } });
      },
    ],
    ["answers 500", async () => new Response(JSON.stringify({ error: "unavailable" }), { status: 500 })],
  ] as const) {
    it(`makes one fetch for 100 invented kids sent at once while the JWKS ${name}, and none for 50 more`, async () => {
      const key = await keyPair("ES256", "live");
      let fetches = 0;
      const fetchJwks = (async () => {
        fetches++;
        return answer(key.jwk);
      }) as typeof fetch;
      const resolve = identityResolver(parsePolicy({ identity: { jwt: { jwksUrl: JWKS_URL, issuer: ISS, audience: AUD } } }).identity, {
        fetch: fetchJwks,
      });
      expect(await Promise.all([...flood(resolve, 50), ...flood(resolve, 50)])).toEqual(Array(100).fill(`ip:${ip}`));
      expect(fetches).toBe(1);
      expect(await Promise.all(flood(resolve, 50))).toEqual(Array(50).fill(`ip:${ip}`));
      expect(fetches).toBe(1);
    });
  }
});

describe("the Worker names its callers", () => {
  it("by a JWT verified against static keys, with the plan its claim names", async () => {
    const key = await keyPair("ES256", "static-1");
    const gw = gateway({
      plans: { pro: { bucket: { capacity: 50, refillPerSecond: 1 } } },
      identity: { jwt: { keys: [key.jwk], issuer: ISS, audience: AUD, planClaim: "tb_plan" } },
    });
    const ip = freshIp();
    const status = async (headers: Record<string, string>) =>
      (await (await gw(request("GET", "/.well-known/tollbooth/status", { ip, headers }))).json()) as Record<string, unknown>;
    expect(await status({ authorization: `Bearer ${await key.sign({ sub: "w-alice", tb_plan: "pro" })}` })).toMatchObject({
      caller: await jwtId("w-alice"),
      plan: "pro",
      verified: true,
    });
    expect(await status({ authorization: `Bearer ${await key.sign({ sub: "w-bob" })}` })).toMatchObject({
      caller: await jwtId("w-bob"),
      plan: "free",
      verified: true,
    });
    expect(await status({ authorization: "Bearer invented" })).toMatchObject({ caller: `ip:${ip}`, verified: false });
  });

  it("by a JWT of the issuer whose keys signed it: a partner's key makes no operator caller, and its plan claim is its own", async () => {
    const PARTNER = "https://partner.example.test";
    const operator = await keyPair("ES256", "op-1");
    const partner = await keyPair("ES256", "partner-1");
    const partnerSigns = (iss: string, claims: Record<string, unknown>) =>
      new SignJWT(claims)
        .setProtectedHeader({ alg: "ES256", kid: "partner-1" })
        .setIssuer(iss)
        .setAudience(AUD)
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(partner.privateKey);
    const gw = gateway({
      plans: { pro: { bucket: { capacity: 50, refillPerSecond: 1 } }, enterprise: { bucket: { capacity: 500, refillPerSecond: 10 } } },
      identity: {
        jwt: [
          { keys: [operator.jwk], issuer: ISS, audience: AUD, planClaim: "tb_plan" },
          { keys: [partner.jwk], issuer: PARTNER, audience: AUD, planClaim: "partner_plan", plans: ["pro"] },
        ],
      },
    });
    const ip = freshIp();
    const status = async (token: string) =>
      (await (
        await gw(request("GET", "/.well-known/tollbooth/status", { ip, headers: { authorization: `Bearer ${token}` } }))
      ).json()) as Record<string, unknown>;
    expect(await status(await operator.sign({ sub: "w-alice", tb_plan: "enterprise" }))).toMatchObject({
      caller: await jwtId("w-alice"),
      plan: "enterprise",
      verified: true,
    });
    // The partner's key claiming the operator's iss: not the operator's alice, not enterprise.
    expect(await status(await partnerSigns(ISS, { sub: "w-alice", tb_plan: "enterprise" }))).toMatchObject({
      caller: `ip:${ip}`,
      plan: "free",
      verified: false,
    });
    expect(await status(await partnerSigns(PARTNER, { sub: "w-alice", partner_plan: "pro", tb_plan: "enterprise" }))).toMatchObject({
      caller: `jwt:${hex(await sha256(`${PARTNER}\nw-alice`)).slice(0, 32)}`,
      plan: "pro",
      verified: true,
    });
    expect(await status(await partnerSigns(PARTNER, { sub: "w-bob", partner_plan: "enterprise" }))).toMatchObject({
      plan: "free",
      verified: true,
    });
  });

  it("by an API key found in the TOLLBOOTH_KEYS binding (wrangler.toml [[kv_namespaces]])", async () => {
    const kv = env.TOLLBOOTH_KEYS;
    expect(kv, 'wrangler.toml needs [[kv_namespaces]] binding = "TOLLBOOTH_KEYS"').toBeDefined();
    const key = `tb_${crypto.randomUUID()}`;
    const hash = hex(await sha256(key));
    await kv!.put(hash, JSON.stringify({ name: "w-carol", plan: "pro", created: new Date().toISOString() }));
    const gw = gateway({ plans: { pro: { bucket: { capacity: 50, refillPerSecond: 1 } } } });
    const ip = freshIp();
    const status = async (apiKey: string) =>
      (await (await gw(request("GET", "/.well-known/tollbooth/status", { ip, headers: { "x-api-key": apiKey } }))).json()) as Record<
        string,
        unknown
      >;
    expect(await status(key)).toMatchObject({ caller: `key:${hash.slice(0, 32)}`, plan: "pro", verified: true });
    expect(await status(`${key}x`)).toMatchObject({ caller: `ip:${ip}`, plan: "free", verified: false });
  });
});
