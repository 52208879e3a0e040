/**
 * Access tokens (docs/wire-contract.md §2–3): solving a challenge buys a token; the token
 * pays for requests until its credits run out or it expires; forged tokens and tokens of
 * another caller are refused with a reason (402 + fresh challenge); refused solutions too.
 * The proof of work is brute-forced here with crypto.subtle at a low difficulty.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  advance,
  b64url,
  type Challenge,
  challengeOf,
  decodeToken,
  errorBody,
  fetchChallenge,
  forgeToken,
  freezeTime,
  freshIp,
  GW,
  gateway,
  ipIdentity,
  kidOf,
  nonSolution,
  observeOrigin,
  parseLimitList,
  post,
  reasonOf,
  request,
  rows,
  SECRET,
  solve,
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

const POLICY = {
  bucket: { capacity: 2, refillPerSecond: 0.01 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  challenge: { difficulty: 8, credits: 5, ttlSeconds: 60 },
  token: { ttlSeconds: 30 },
  costs: { tools: { heavy: 2 } },
};

let now: number;
let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway(POLICY);

beforeEach(() => {
  now = freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

type Send = (r: Request) => Promise<Response>;

/** Spend the free bucket and return the 402's challenge. */
async function overBudget(headers: Record<string, string>, send: Send = gw): Promise<Challenge> {
  for (let i = 0; i < 3; i++) {
    const res = await send(post(toolCall(i), { headers }));
    if (res.status === 402) return challengeOf(res);
    expect(res.status).toBe(200);
  }
  throw new Error("never got a 402");
}

/** Get a 402, solve it, redeem it with the retried request. @returns that response and its token */
async function buyToken(
  headers: Record<string, string> = { "cf-connecting-ip": ip },
  send: Send = gw,
): Promise<{ res: Response; token: string }> {
  const { header } = await solve(await overBudget(headers, send));
  const res = await send(post(toolCall("paid"), { headers: { ...headers, "tollbooth-solution": header } }));
  expect(res.status).toBe(200);
  const token = res.headers.get("tollbooth-token");
  expect(token).not.toBeNull();
  return { res, token: token! };
}

const withToken = (token: string, id: number | string = 1, tool = "echo", who = ip) =>
  post(toolCall(id, tool), { headers: { "cf-connecting-ip": who, "tollbooth-token": token } });

describe("solving a challenge", () => {
  it("redeems in the same round trip: 200 from the origin, a signed token bound to the caller, credits left", async () => {
    const { res, token } = await buyToken();
    const { kid, claims } = decodeToken(token);
    expect(kid).toBe(await kidOf(SECRET));
    expect(claims).toEqual({ sub: ipIdentity(ip), jti: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/), exp: now / 1000 + 30, cr: 5 });
    // The request that carried the solution cost 1 credit.
    expect(res.headers.get("tollbooth-credits")).toBe("4");
    expect(await res.json()).toEqual({ jsonrpc: "2.0", id: "paid", result: { content: [] } });
    const forwarded = origin.requests.at(-1)!;
    expect(JSON.parse(forwarded.body).id).toBe("paid");
    expect(forwarded.headers["tollbooth-solution"]).toBeUndefined();
  });

  it("the token pays for later requests: Tollbooth-Credits counts down by each request's cost", async () => {
    const { token } = await buyToken();
    const credits: Array<string | null> = [];
    for (const tool of ["echo", "heavy", "echo"]) {
      const res = await gw(withToken(token, 1, tool));
      expect(res.status).toBe(200);
      credits.push(res.headers.get("tollbooth-credits"));
    }
    expect(credits).toEqual(["3", "1", "0"]);
    const stored = await rows<{ jti: string; credits: number; expires_ms: number }>(ipIdentity(ip), "tokens");
    expect(stored).toEqual([{ jti: decodeToken(token).claims.jti, credits: 0, expires_ms: (now / 1000 + 30) * 1000 }]);
  });

  it("a request paid by the token takes nothing from the free bucket", async () => {
    const send = gateway({ ...POLICY, bucket: { capacity: 2, refillPerSecond: 0.1 } });
    const { token } = await buyToken(undefined, send);
    advance(10_000); // the free bucket refills one unit (0.1/s); the token (30 s) is still valid
    for (let i = 0; i < 3; i++) {
      const res = await send(withToken(token));
      expect(res.status).toBe(200);
      expect(parseLimitList(res.headers.get("ratelimit")!).free!.r).toBe(1);
    }
    expect((await send(post(toolCall(2), { ip }))).status).toBe(200);
    expect((await send(post(toolCall(3), { ip }))).status).toBe(402);
  });

  it("zero-cost requests with a token spend no credits", async () => {
    const { token } = await buyToken();
    const res = await gw(
      post({ jsonrpc: "2.0", id: 1, method: "tools/list" }, { headers: { "cf-connecting-ip": ip, "tollbooth-token": token } }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("tollbooth-credits")).toBe("4");
  });

  it("redeems separately via POST /.well-known/tollbooth/verify: {token, expires_in, credits}", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { verifyBody } = await solve(ch);
    const res = await gw(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip },
        body: JSON.stringify(verifyBody),
      }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; expires_in: number; credits: number };
    expect(body).toEqual({ token: expect.stringMatching(/^tb1\./), expires_in: 30, credits: 5 });
    expect(decodeToken(body.token).claims).toMatchObject({ sub: ipIdentity(ip), exp: now / 1000 + 30, cr: 5 });
    const used = await gw(withToken(body.token));
    expect(used.status).toBe(200);
    expect(used.headers.get("tollbooth-credits")).toBe("4");
    expect(origin.requests).toHaveLength(1);
  });

  it("verify also accepts the integers as strings, exactly as they appear in the header", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const { nonce } = await solve(ch);
    const res = await gw(
      new Request(`${WELL_KNOWN}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": ip },
        body: JSON.stringify({ ...ch.params, nonce }),
      }),
    );
    expect(res.status).toBe(200);
  });
});

describe("refused tokens (402 with a reason and a fresh challenge; the origin sees nothing)", () => {
  async function expectRefused(req: Request, reason: string): Promise<void> {
    const before = origin.requests.length;
    const res = await gw(req);
    const header = res.headers.get("www-authenticate");
    expect(await reasonOf(res)).toBe(reason);
    expect(header).toMatch(/^PowChallenge /);
    expect(origin.requests).toHaveLength(before);
  }

  it("exhausted: no credits left", async () => {
    const { token } = await buyToken();
    const left: Array<string | null> = [];
    for (let i = 0; i < 4; i++) {
      const ok = await gw(withToken(token));
      expect(ok.status).toBe(200);
      left.push(ok.headers.get("tollbooth-credits"));
    }
    expect(left).toEqual(["3", "2", "1", "0"]);
    const res = await gw(withToken(token, 99));
    // The refusal says what is left: nothing.
    expect(res.headers.get("tollbooth-credits")).toBe("0");
    const body = await errorBody(res);
    expect(res.status).toBe(402);
    expect(body.id).toBe(99);
    expect(body.error.data!.reason).toBe("token_exhausted");
    expect(body.error.data!.challenges[0].type).toBe("pow");
    await expectRefused(withToken(token, 100), "token_exhausted");
  });

  it("exhausted for this request: fewer credits left than it costs, and the credits stay for a cheaper one", async () => {
    const { token } = await buyToken();
    for (let i = 0; i < 3; i++) expect((await gw(withToken(token))).status).toBe(200);
    // 1 credit left; heavy costs 2.
    await expectRefused(withToken(token, 1, "heavy"), "token_exhausted");
    const res = await gw(withToken(token));
    expect(res.status).toBe(200);
    expect(res.headers.get("tollbooth-credits")).toBe("0");
  });

  it("expired: refused from token.ttlSeconds on, not before", async () => {
    const { token } = await buyToken();
    advance(29_999);
    expect((await gw(withToken(token))).status).toBe(200);
    advance(1);
    await expectRefused(withToken(token), "token_expired");
  });

  it("expired under a second gateway configuration with a 1-second token lifetime", async () => {
    const short = gateway({ ...POLICY, token: { ttlSeconds: 1 } });
    const { token } = await buyToken(undefined, short);
    expect(decodeToken(token).claims.exp).toBe(now / 1000 + 1);
    advance(1_000);
    const res = await short(withToken(token));
    expect(await reasonOf(res)).toBe("token_expired");
  });

  it("forged: payload changed under the original signature", async () => {
    const { token } = await buyToken();
    const { kid, claims, signature } = decodeToken(token);
    const payload = b64url(new TextEncoder().encode(JSON.stringify({ ...claims, cr: 1_000_000, exp: claims.exp + 86_400 })));
    await expectRefused(withToken(`tb1.${kid}.${payload}.${signature}`), "token_bad_signature");
  });

  it("forged: signature changed", async () => {
    const { token } = await buyToken();
    const { kid, payload, signature } = decodeToken(token);
    const flipped = (signature[0] === "A" ? "B" : "A") + signature.slice(1);
    await expectRefused(withToken(`tb1.${kid}.${payload}.${flipped}`), "token_bad_signature");
  });

  it("forged: signed with a secret the gateway does not have", async () => {
    const forged = await forgeToken(
      "attacker-secret-0123456789",
      { sub: ipIdentity(ip), jti: "AAAAAAAAAAAAAAAAAAAAAA", exp: now / 1000 + 30, cr: 5 },
      await kidOf(SECRET),
    );
    await expectRefused(withToken(forged), "token_bad_signature");
  });

  it("unknown key id", async () => {
    const forged = await forgeToken("attacker-secret-0123456789", {
      sub: ipIdentity(ip),
      jti: "AAAAAAAAAAAAAAAAAAAAAA",
      exp: now / 1000 + 30,
      cr: 5,
    });
    await expectRefused(withToken(forged), "token_unknown_key");
  });

  it("malformed", async () => {
    await expectRefused(withToken("not-a-token"), "token_malformed");
    await expectRefused(withToken("tb1.only.three"), "token_malformed");
    await expectRefused(withToken("tb2.a.b.c"), "token_malformed");
  });

  it("unknown: validly signed but never minted (the Durable Object is the authority on credits)", async () => {
    const forged = await forgeToken(SECRET, { sub: ipIdentity(ip), jti: "BBBBBBBBBBBBBBBBBBBBBB", exp: now / 1000 + 30, cr: 5 });
    await expectRefused(withToken(forged), "token_unknown");
  });

  it("another caller (other CF-Connecting-IP) cannot use the token", async () => {
    const { token } = await buyToken();
    const thief = freshIp();
    await expectRefused(withToken(token, 1, "echo", thief), "token_wrong_caller");
    // The fresh challenge is the thief's own: bound to the thief, solvable by the thief.
    const res = await gw(withToken(token, 1, "echo", thief));
    const { header } = await solve(challengeOf(res));
    const own = await gw(post(toolCall(2), { headers: { "cf-connecting-ip": thief, "tollbooth-solution": header } }));
    expect(own.status).toBe(200);
    expect(decodeToken(own.headers.get("tollbooth-token")!).claims.sub).toBe(ipIdentity(thief));
    // And the owner's credits were not touched by the refused attempts.
    expect((await gw(withToken(token))).headers.get("tollbooth-credits")).toBe("3");
  });

  it("the token is bound to the caller, not the address: another IPv6 /64 is refused, another address of the same /64 is the same caller", async () => {
    // IP callers are IPv6 /64 networks (README, policy identity): two addresses of one /64
    // are one caller, an address of another /64 is another caller.
    const group = () => Math.floor(Math.random() * 0xfff0).toString(16);
    const net = `2001:db8:${group()}:${group()}`;
    const owner = { "cf-connecting-ip": `${net}::1` };
    const { token } = await buyToken(owner);
    expect(decodeToken(token).claims.sub).toBe(`ip:${net}::/64`);
    const elsewhere = post(toolCall(1), { headers: { "cf-connecting-ip": `2001:db8:ffff:ffff::1`, "tollbooth-token": token } });
    await expectRefused(elsewhere, "token_wrong_caller");
    const sameNetwork = await gw(post(toolCall(1), { headers: { "cf-connecting-ip": `${net}::2`, "tollbooth-token": token } }));
    expect(sameNetwork.status).toBe(200);
    expect(sameNetwork.headers.get("tollbooth-credits")).toBe("3");
  });

  it("a token minted under a rotated-out secret still verifies while that secret is listed second, and not once it is removed", async () => {
    const { token } = await buyToken();
    const NEW = "rotated-secret-2-0123456789abcdef";
    const rotated = gateway(POLICY, { TOLLBOOTH_SECRET: `${NEW},${SECRET}` });
    const ok = await rotated(withToken(token));
    expect(ok.status).toBe(200);
    expect(ok.headers.get("tollbooth-credits")).toBe("3");
    // New challenges are signed with the new key.
    const ch = await fetchChallenge(rotated, { "cf-connecting-ip": ip });
    expect(ch.params.kid).toBe(await kidOf(NEW));
    const gone = gateway(POLICY, { TOLLBOOTH_SECRET: NEW });
    expect(await reasonOf(await gone(withToken(token)))).toBe("token_unknown_key");
  });
});

describe("refused solutions (402 with a reason; the origin sees nothing)", () => {
  const withSolution = (header: string, who = ip) =>
    post(toolCall(1), { headers: { "cf-connecting-ip": who, "tollbooth-solution": header } });

  it("insufficient work, and the challenge is not spent by the refusal", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    const bad = await nonSolution(ch.params.salt!, 8);
    const refused = await gw(withSolution(`${ch.rest}, nonce="${bad}"`));
    expect(await reasonOf(refused)).toBe("solution_insufficient_work");
    const { header } = await solve(ch);
    expect((await gw(withSolution(header))).status).toBe(200);
    expect(origin.requests).toHaveLength(3); // 2 free + the paid one
  });

  it("spent: a solution redeems once", async () => {
    const { header } = await solve(await overBudget({ "cf-connecting-ip": ip }));
    expect((await gw(withSolution(header))).status).toBe(200);
    const again = await gw(withSolution(header));
    expect(await reasonOf(again)).toBe("solution_spent");
    expect(again.headers.get("tollbooth-token")).toBeNull();
  });

  it("bad signature: a parameter changed (lower difficulty, more credits)", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    const easier = { ...ch, rest: ch.rest.replace(/difficulty=8\b/, "difficulty=1"), params: { ...ch.params, difficulty: "1" } };
    expect(easier.rest).not.toBe(ch.rest);
    expect(await reasonOf(await gw(withSolution((await solve(easier)).header)))).toBe("solution_bad_signature");
    const richer = ch.rest.replace(/credits=5\b/, "credits=500");
    expect(await reasonOf(await gw(withSolution(`${richer}, nonce="${(await solve(ch)).nonce}"`)))).toBe("solution_bad_signature");
  });

  it("bad signature: solved by another caller than the one it was issued to", async () => {
    const { header } = await solve(await overBudget({ "cf-connecting-ip": ip }));
    expect(await reasonOf(await gw(withSolution(header, freshIp())))).toBe("solution_bad_signature");
    // The rightful caller can still redeem it.
    expect((await gw(withSolution(header))).status).toBe(200);
  });

  it("expired: a challenge past its `expires`", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    const { header } = await solve(ch);
    advance(60_000);
    expect(await reasonOf(await gw(withSolution(header)))).toBe("solution_expired");
  });

  it("unknown key id", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    const { nonce } = await solve(ch);
    const header = ch.rest.replace(`kid="${ch.params.kid}"`, 'kid="zzzzzzzz"');
    expect(await reasonOf(await gw(withSolution(`${header}, nonce="${nonce}"`)))).toBe("solution_unknown_key");
  });

  it("unsupported algorithm", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    const header = ch.rest.replace('algorithm="sha256"', 'algorithm="md5"');
    expect(await reasonOf(await gw(withSolution(`${header}, nonce="1"`)))).toBe("solution_unsupported_algorithm");
  });

  it("malformed: missing nonce, non-digit nonce, not auth-param syntax", async () => {
    const ch = await overBudget({ "cf-connecting-ip": ip });
    expect(await reasonOf(await gw(withSolution(ch.rest)))).toBe("solution_malformed");
    expect(await reasonOf(await gw(withSolution(`${ch.rest}, nonce="12a"`)))).toBe("solution_malformed");
    expect(await reasonOf(await gw(withSolution("this is not, auth params")))).toBe("solution_malformed");
    expect(origin.requests).toHaveLength(2);
  });

  it("verify answers 422 invalid_solution with the reason, and 400 invalid_request for a malformed body", async () => {
    const ch = await fetchChallenge(gw, { "cf-connecting-ip": ip });
    const verify = (body: unknown) =>
      gw(
        new Request(`${WELL_KNOWN}/verify`, {
          method: "POST",
          headers: { "content-type": "application/json", "cf-connecting-ip": ip },
          body: typeof body === "string" ? body : JSON.stringify(body),
        }),
      );
    const bad = await verify({ ...(await solve(ch)).verifyBody, nonce: await nonSolution(ch.params.salt!, 8) });
    expect(bad.status).toBe(422);
    expect(await bad.json()).toMatchObject({ error: "invalid_solution", reason: "insufficient_work" });
    const malformed = await verify({ id: ch.params.id });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: "invalid_request" });
    const notJson = await verify("{");
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ error: "invalid_request" });
    const { verifyBody } = await solve(ch);
    expect((await verify(verifyBody)).status).toBe(200);
    const spent = await verify(verifyBody);
    expect(spent.status).toBe(422);
    expect(await spent.json()).toMatchObject({ error: "invalid_solution", reason: expect.stringMatching(/spent/) });
    expect(origin.requests).toHaveLength(0);
  });
});

describe("status endpoint", () => {
  it("shows the token's credits and expiry", async () => {
    const { token } = await buyToken();
    const res = await gw(request("GET", `${GW}/.well-known/tollbooth/status`, { ip, headers: { "tollbooth-token": token } }));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { caller: string; token: { credits: number; expires: number } | null };
    expect(body.caller).toBe(ipIdentity(ip));
    expect(body.token).toMatchObject({ credits: 4, expires: now / 1000 + 30 });
  });
});
