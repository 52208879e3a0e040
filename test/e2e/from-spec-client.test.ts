/**
 * A client written only from docs/wire-contract.md: plain fetch, raw JSON-RPC POSTs,
 * node:crypto for the proof of work. Nothing from shared/ is imported, so this pins the
 * public contract, not the implementation.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const POLICY = {
  realm: "spec-realm",
  bucket: { capacity: 2, refillPerSecond: 0.0001 },
  challenge: { difficulty: 12, credits: 3, ttlSeconds: 60 },
  token: { ttlSeconds: 300 },
};
const CALLER = { "x-api-key": "from-spec-client" };

let origin: Origin;
let gateway: Gateway;
let mcp: string;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({ originUrl: origin.url, policy: POLICY });
  mcp = `${gateway.url}/mcp`;
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

// ---- a from-scratch client ------------------------------------------------------------

/** RFC 9110 §11.6.1 challenge: `scheme name=token, name="quoted-string", …`. */
function parseChallenge(value: string): { scheme: string; params: Record<string, string> } {
  const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s+(.*)$/s.exec(value.trim());
  if (!m) throw new Error(`not a challenge: ${value}`);
  const params: Record<string, string> = {};
  const re = /\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([!#$%&'*+.^_`|~0-9A-Za-z-]+))\s*(?:,|$)/gy;
  let p: RegExpExecArray | null;
  let end = 0;
  while ((p = re.exec(m[2]!)) !== null) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
    end = re.lastIndex;
  }
  if (end !== m[2]!.length) throw new Error(`unparsed auth-params: ${m[2]!.slice(end)}`);
  return { scheme: m[1]!, params };
}

function leadingZeroBits(digest: Buffer): number {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** The rule: a decimal nonce with SHA-256(UTF-8(salt ‖ nonce)) having ≥ difficulty leading zero bits. */
function solve(salt: string, difficulty: number): string {
  for (let n = 0; ; n++) {
    if (
      leadingZeroBits(
        createHash("sha256")
          .update(salt + String(n), "utf8")
          .digest(),
      ) >= difficulty
    )
      return String(n);
  }
}

let nextId = 1;
let sessionId: string | undefined;

/** POST one JSON-RPC message the MCP way; returns the response and its JSON-RPC message(s). */
async function rpc(method: string, params: unknown, extraHeaders: Record<string, string> = {}, notification = false) {
  const id = notification ? undefined : nextId++;
  const res = await fetch(mcp, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...CALLER,
      ...(sessionId ? { "mcp-session-id": sessionId, "mcp-protocol-version": "2025-11-25" } : {}),
      ...extraHeaders,
    },
    body: JSON.stringify({ jsonrpc: "2.0", ...(id !== undefined ? { id } : {}), method, ...(params !== undefined ? { params } : {}) }),
  });
  const text = await res.text();
  let message: any = null;
  if ((res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
    const datas = text.split(/\r?\n\r?\n/).map((block) =>
      block
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n"),
    );
    message =
      datas
        .filter((d) => d !== "")
        .map((d) => JSON.parse(d))
        .find((m) => m.id === id) ?? null;
  } else if (text) {
    message = JSON.parse(text);
  }
  return { id, res, message };
}

const echo = (text: string, headers: Record<string, string> = {}) =>
  rpc("tools/call", { name: "echo", arguments: { message: text } }, headers);
const b64urlJson = (s: string) => JSON.parse(Buffer.from(s, "base64url").toString("utf8"));

// ---- the contract ---------------------------------------------------------------------

describe("a client written from docs/wire-contract.md", () => {
  it("discovery: GET /.well-known/tollbooth publishes the policy and its URLs", async () => {
    const res = await fetch(`${gateway.url}/.well-known/tollbooth`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const policy = (await res.json()) as any;
    expect(policy.realm).toBe("spec-realm");
    expect(policy.bucket).toEqual({ capacity: 2, refillPerSecond: 0.0001 });
    expect(policy.ceiling).toEqual({ capacity: expect.any(Number), refillPerSecond: expect.any(Number) });
    expect(policy.costs.default).toBe(1);
    expect(policy.costs.methods.initialize).toBe(0);
    expect(policy.challenge).toMatchObject({ types: ["pow"], algorithm: "sha256", difficulty: 12, credits: 3 });
    expect(policy.token.ttlSeconds).toBe(300);
    expect(policy.policyUrl).toBe(`${gateway.url}/.well-known/tollbooth`);
    expect(policy.challengeUrl).toBe(`${gateway.url}/.well-known/tollbooth/challenge`);
    expect(policy.verifyUrl).toBe(`${gateway.url}/.well-known/tollbooth/verify`);
    expect(policy.statusUrl).toBe(`${gateway.url}/.well-known/tollbooth/status`);
  });

  // State shared by the steps below (they run in order).
  let challengeHeader = "";
  let solutionHeader = "";
  let token = "";

  it("a session, the free budget, then 402 with a PowChallenge in WWW-Authenticate and in the JSON-RPC body", async () => {
    const init = await rpc("initialize", {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "from-spec", version: "0" },
    });
    expect(init.res.status).toBe(200);
    sessionId = init.res.headers.get("mcp-session-id") ?? undefined;
    expect(sessionId).toBeTruthy();
    expect(init.message.result.serverInfo.name).toBe("mcp-servers/everything");
    expect((await rpc("notifications/initialized", undefined, {}, true)).res.status).toBe(202);

    origin.reset();
    const remaining: string[] = [];
    for (const text of ["one", "two"]) {
      const r = await echo(text);
      expect(r.res.status).toBe(200);
      expect(r.message.result.content[0].text).toBe(`Echo: ${text}`);
      expect(r.res.headers.get("ratelimit-policy")).toMatch(/^"free";q=2;w=\d+, "ceiling";q=\d+;w=\d+$/);
      remaining.push(/"free";r=(\d+)/.exec(r.res.headers.get("ratelimit") ?? "")?.[1] ?? "?");
    }
    expect(remaining).toEqual(["1", "0"]);

    const asked = Date.now() / 1000;
    const over = await echo("three");
    expect(over.res.status).toBe(402);
    expect(over.res.headers.get("content-type")).toContain("application/json");
    expect(Number.isInteger(Number(over.res.headers.get("retry-after")))).toBe(true);
    expect(over.res.headers.get("ratelimit")).toMatch(/"free";r=0;t=\d+, "ceiling";r=\d+;t=\d+/);
    challengeHeader = over.res.headers.get("www-authenticate")!;
    const ch = parseChallenge(challengeHeader);
    expect(ch.scheme).toBe("PowChallenge");
    expect(Object.keys(ch.params).sort()).toEqual([
      "algorithm",
      "credits",
      "difficulty",
      "expires",
      "id",
      "kid",
      "realm",
      "salt",
      "signature",
    ]);
    expect(ch.params.realm).toBe("spec-realm");
    expect(ch.params.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(ch.params.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(ch.params.difficulty).toBe("12");
    expect(ch.params.algorithm).toBe("sha256");
    expect(ch.params.credits).toBe("3");
    // Issued between `asked` and now, for the policy's 60 s (whole seconds).
    const now = Date.now() / 1000;
    expect(Number(ch.params.expires)).toBeGreaterThanOrEqual(Math.floor(asked) + 60);
    expect(Number(ch.params.expires)).toBeLessThanOrEqual(now + 61);
    // Integers are tokens, strings quoted-strings.
    expect(challengeHeader).toContain("difficulty=12,");
    expect(challengeHeader).toContain(`salt="${ch.params.salt}"`);

    const body = over.message;
    expect(body.jsonrpc).toBe("2.0");
    expect(body.id).toBe(over.id);
    expect(body.error.code).toBe(402);
    expect(body.error.data.reason).toBe("over_budget");
    expect(body.error.data.cost).toBe(1);
    expect(body.error.data.retryAfter).toBe(Number(over.res.headers.get("retry-after")));
    const json = body.error.data.challenges[0];
    expect(json.type).toBe("pow");
    expect(json.header).toBe(challengeHeader);
    for (const [k, v] of Object.entries(ch.params)) expect(String(json[k])).toBe(v);
    expect(body.error.data.verifyUrl).toBe(`${gateway.url}/.well-known/tollbooth/verify`);
    expect(origin.counts()["tools/call:echo"]).toBe(2); // "three" never reached the origin
  });

  it("(a) retrying with Tollbooth-Solution redeems in the same round trip: 200, the real result, a token", async () => {
    const { params } = parseChallenge(challengeHeader);
    const nonce = solve(params.salt!, Number(params.difficulty));
    expect(
      leadingZeroBits(
        createHash("sha256")
          .update(params.salt + nonce)
          .digest(),
      ),
    ).toBeGreaterThanOrEqual(12);
    solutionHeader = `${challengeHeader.trim().slice("PowChallenge".length).trim()}, nonce="${nonce}"`;

    origin.reset();
    const sent = Date.now() / 1000;
    const paid = await echo("three", { "tollbooth-solution": solutionHeader });
    expect(paid.res.status).toBe(200);
    expect(paid.message.result.content[0].text).toBe("Echo: three");
    token = paid.res.headers.get("tollbooth-token")!;
    expect(token).toMatch(/^tb1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(paid.res.headers.get("tollbooth-credits")).toBe("2");
    const claims = b64urlJson(token.split(".")[2]!);
    expect(Object.keys(claims).sort()).toEqual(["cr", "exp", "jti", "sub"]);
    expect(claims.cr).toBe(3);
    // Minted between `sent` and now, living the policy's 300 s (whole seconds).
    expect(claims.exp).toBeGreaterThanOrEqual(Math.floor(sent) + 300);
    expect(claims.exp).toBeLessThanOrEqual(Date.now() / 1000 + 300);
    expect(origin.counts()["tools/call:echo"]).toBe(1);
  });

  it("the token pays for later calls, Tollbooth-Credits counting down; exhausted → 402 with a fresh challenge", async () => {
    origin.reset();
    const credits: string[] = [];
    for (const text of ["four", "five"]) {
      const r = await echo(text, { "tollbooth-token": token });
      expect(r.res.status).toBe(200);
      expect(r.message.result.content[0].text).toBe(`Echo: ${text}`);
      credits.push(r.res.headers.get("tollbooth-credits")!);
    }
    expect(credits).toEqual(["1", "0"]);

    const spent = await echo("six", { "tollbooth-token": token });
    expect(spent.res.status).toBe(402);
    expect(spent.message.error.data.reason).toBe("token_exhausted");
    const fresh = parseChallenge(spent.res.headers.get("www-authenticate")!);
    expect(fresh.params.id).not.toBe(parseChallenge(challengeHeader).params.id);

    // A forged token is refused too, before the origin.
    const parts = token.split(".");
    const forged = [
      parts[0],
      parts[1],
      Buffer.from(JSON.stringify({ ...b64urlJson(parts[2]!), cr: 1000 })).toString("base64url"),
      parts[3],
    ].join(".");
    const refused = await echo("seven", { "tollbooth-token": forged });
    expect(refused.res.status).toBe(402);
    expect(refused.message.error.data.reason).toBe("token_bad_signature");
    expect(origin.counts()["tools/call:echo"]).toBe(2);
  });

  it("the same solution redeemed twice: the second is refused (solution_spent) and never reaches the origin", async () => {
    origin.reset();
    const again = await echo("replay", { "tollbooth-solution": solutionHeader });
    expect(again.res.status).toBe(402);
    expect(again.res.headers.get("tollbooth-token")).toBeNull();
    expect(again.message.error.code).toBe(402);
    expect(again.message.error.data.reason).toBe("solution_spent");
    expect(parseChallenge(again.res.headers.get("www-authenticate")!).scheme).toBe("PowChallenge");
    expect(origin.counts()["tools/call"]).toBeUndefined();
  });

  it("(b) POST /.well-known/tollbooth/verify redeems separately: {token, expires_in, credits}; twice → 422", async () => {
    const over = await echo("eight");
    expect(over.res.status).toBe(402);
    const ch = over.message.error.data.challenges[0];
    const { type: _type, header: _header, ...fields } = ch;
    const body = JSON.stringify({ ...fields, nonce: solve(ch.salt, ch.difficulty) });
    const verify = () =>
      fetch(`${gateway.url}/.well-known/tollbooth/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", ...CALLER },
        body,
      });

    const ok = await verify();
    expect(ok.status).toBe(200);
    const minted = (await ok.json()) as { token: string; expires_in: number; credits: number };
    expect(minted).toEqual({ token: expect.stringMatching(/^tb1\./), expires_in: 300, credits: 3 });

    const twice = await verify();
    expect(twice.status).toBe(422);
    expect(await twice.json()).toMatchObject({ error: "invalid_solution", reason: expect.any(String) });

    const malformed = await fetch(`${gateway.url}/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", ...CALLER },
      body: "{not json",
    });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ error: "invalid_request" });

    // Another caller cannot redeem this caller's challenge.
    const stolen = await fetch(`${gateway.url}/.well-known/tollbooth/verify`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": "someone-else" },
      body,
    });
    expect(stolen.status).toBe(422);

    origin.reset();
    const credits: string[] = [];
    for (const text of ["eight", "nine"]) {
      const r = await echo(text, { "tollbooth-token": minted.token });
      expect(r.res.status).toBe(200);
      expect(r.message.result.content[0].text).toBe(`Echo: ${text}`);
      credits.push(r.res.headers.get("tollbooth-credits")!);
    }
    expect(credits).toEqual(["2", "1"]);
    expect(origin.counts()["tools/call:echo"]).toBe(2);
    token = minted.token;
  });

  it("GET /status reports this caller's bucket, ceiling and, with the token, its credits and expiry", async () => {
    const plain = await fetch(`${gateway.url}/.well-known/tollbooth/status`, { headers: CALLER });
    expect(plain.status).toBe(200);
    const s = (await plain.json()) as any;
    expect(s.bucket.remaining).toBe(0);
    expect(s.bucket.limit).toBe(2);
    expect(s.ceiling.limit).toBeGreaterThan(0);
    expect(s.token).toBeNull();
    expect(plain.headers.get("ratelimit")).toMatch(/"free";r=0/);

    const withToken = await fetch(`${gateway.url}/.well-known/tollbooth/status`, { headers: { ...CALLER, "tollbooth-token": token } });
    expect(withToken.status).toBe(200);
    const t = (await withToken.json()) as any;
    expect(t.token.credits).toBe(1);
    expect(t.token.expires).toBe(b64urlJson(token.split(".")[2]!).exp);

    // Someone else's status is their own: a full bucket.
    const other = (await (
      await fetch(`${gateway.url}/.well-known/tollbooth/status`, { headers: { "x-api-key": "someone-else" } })
    ).json()) as any;
    expect(other.bucket.remaining).toBe(2);
  });

  it("GET /challenge hands out a fresh challenge as JSON and in WWW-Authenticate", async () => {
    const res = await fetch(`${gateway.url}/.well-known/tollbooth/challenge`, { headers: CALLER });
    expect(res.status).toBe(200);
    const json = (await res.json()) as any;
    const header = res.headers.get("www-authenticate")!;
    expect(json.header).toBe(header);
    const { scheme, params } = parseChallenge(header);
    expect(scheme).toBe("PowChallenge");
    for (const [k, v] of Object.entries(params)) expect(String(json[k])).toBe(v);
    expect(json.difficulty).toBe(12);
    expect(json.credits).toBe(3);
  });
});
