/**
 * Transparency: under a generous budget, one MCP client session gives the same results
 * direct to the origin and through the gateway. Through the gateway the origin sees who
 * called (`Tollbooth-Caller`) and a proof (`Tollbooth-Signature`) it can check with the
 * docs/gateway.md "Origin check" snippet, and never sees tollbooth's own credentials.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Connected, connect } from "../helpers/mcp.ts";
import { type Origin, type SeenRequest, startOrigin } from "../helpers/origin.ts";

// docs/gateway.md, "Origin check", verbatim.
function cameThroughTollbooth(
  req: { method: string; url: string; headers: Record<string, string> },
  body: Uint8Array,
  secret: string,
): boolean {
  const m = /^t=(\d+), kid=([\w-]+), sig=([\w-]+)$/.exec(req.headers["tollbooth-signature"] ?? "");
  if (!m || Math.abs(Date.now() / 1000 - Number(m[1])) > 60) return false;
  const digest = req.headers["content-digest"] ?? "";
  if (digest !== `sha-256=:${createHash("sha256").update(body).digest("base64")}:`) return false;
  const fields = ["tollbooth/origin-proof/v2", m[1]!, req.headers["tollbooth-caller"] ?? "", req.method, req.url, digest];
  const data = fields.map((f) => `${Buffer.byteLength(f)}:${f}`).join("");
  const expected = createHmac("sha256", secret).update(data).digest();
  const given = Buffer.from(m[3]!, "base64url");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** An origin-side view of a request, as the snippet takes it. */
function asOriginSees(r: SeenRequest): { method: string; url: string; headers: Record<string, string> } {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
  return { method: r.method, url: r.path, headers };
}

/** The snippet applied to a request as the origin received it (its own raw body). */
const verified = (r: SeenRequest, secret: string, req = asOriginSees(r), body = r.body) => cameThroughTollbooth(req, body, secret);

const API_KEY = "parity-agent";
const POLICY = { bucket: { capacity: 1000, refillPerSecond: 100 }, challenge: { difficulty: 8, credits: 5 } };
let origin: Origin;
let gateway: Gateway;
/** The same origin, configured with a base path: ORIGIN_URL=<origin>/base. */
let prefixed: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  [gateway, prefixed] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: POLICY }),
    startGateway({ originUrl: `${origin.url}/base`, policy: POLICY }),
  ]);
});

afterAll(async () => {
  await Promise.all([gateway?.close(), prefixed?.close()]);
  await origin?.close();
});

/** One scripted session; returns every result in order. */
async function session(c: Connected): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  out.server = c.client.getServerVersion();
  out.capabilities = c.client.getServerCapabilities();
  out.instructions = c.client.getInstructions();
  out.tools = await c.client.listTools();
  out.echo = await c.client.callTool({ name: "echo", arguments: { message: "same both ways ✓" } });
  out.sum = await c.client.callTool({ name: "get-sum", arguments: { a: 19, b: 23 } });
  const resources = await c.client.listResources();
  out.resources = resources;
  const staticDoc = resources.resources.find((r) => r.uri.startsWith("demo://resource/static/"));
  if (!staticDoc) throw new Error("no static resource listed");
  out.read = await c.client.readResource({ uri: staticDoc.uri });
  out.prompts = await c.client.listPrompts();
  out.prompt = await c.client.getPrompt({ name: "args-prompt", arguments: { city: "Lyon", state: "Rhône" } });
  out.simplePrompt = await c.client.getPrompt({ name: "simple-prompt" });
  return out;
}

describe("parity: direct vs through the gateway", () => {
  it("the same session gives the same results", async () => {
    const direct = await connect(`${origin.url}/mcp`);
    const directResults = await session(direct).finally(() => direct.close(true));

    origin.reset();
    const viaGateway = await connect(`${gateway.url}/mcp`, { apiKey: API_KEY });
    const gatewayResults = await session(viaGateway).finally(() => viaGateway.close(true));

    expect(gatewayResults).toEqual(directResults);
    // Sanity: real results, not two identical failures.
    expect(JSON.stringify(gatewayResults.echo)).toContain("Echo: same both ways ✓");
    expect(JSON.stringify(gatewayResults.sum)).toContain("The sum of 19 and 23 is 42.");
    expect(JSON.stringify(gatewayResults.prompt)).toContain("What's weather in Lyon, Rhône?");
    expect((gatewayResults.tools as { tools: unknown[] }).tools.length).toBeGreaterThan(5);

    // Everything in the gateway session reached the origin, once.
    const counts = origin.counts();
    expect(counts["tools/call:echo"]).toBe(1);
    expect(counts["tools/call:get-sum"]).toBe(1);
    expect(counts["resources/read"]).toBe(1);
    expect(counts["prompts/get"]).toBe(2);
  });

  it("every forwarded request names the caller and carries a Tollbooth-Signature the documented check accepts", async () => {
    origin.reset();
    const c = await connect(`${gateway.url}/mcp`, {
      apiKey: API_KEY,
      // A client cannot speak for the gateway: its own copies are replaced.
      headers: { "tollbooth-caller": "ip:10.0.0.1", "tollbooth-signature": "t=1, kid=forged, sig=AAAA" },
    });
    await c.client.callTool({ name: "echo", arguments: { message: "signed" } });
    await c.close(true);
    const query = await fetch(`${gateway.url}/mcp?probe=1&x=%20y`, { headers: { "x-api-key": API_KEY, accept: "text/event-stream" } });
    await query.body?.cancel();

    const expectedCaller = `key:${createHash("sha256").update(API_KEY).digest("hex").slice(0, 32)}`;
    const status = (await (await fetch(`${gateway.url}/.well-known/tollbooth/status`, { headers: { "x-api-key": API_KEY } })).json()) as {
      caller: string;
    };
    expect(status.caller).toBe(expectedCaller);

    const seen = origin.requests();
    expect(seen.map((r) => r.method)).toEqual(expect.arrayContaining(["POST", "GET", "DELETE"]));
    expect(seen.some((r) => r.path === "/mcp?probe=1&x=%20y")).toBe(true);
    for (const r of seen) {
      const req = asOriginSees(r);
      expect(req.headers["tollbooth-caller"]).toBe(expectedCaller);
      expect(req.headers["tollbooth-signature"]).toMatch(/^t=\d+, kid=[\w-]+, sig=[\w-]+$/);
      expect(verified(r, gateway.secret), `${r.method} ${r.path}`).toBe(true);
      // The proof is bound to the secret, the method, the path, the caller and the body.
      expect(verified(r, "some-other-secret-0123456789abcdef")).toBe(false);
      expect(verified(r, gateway.secret, { ...req, method: req.method === "POST" ? "DELETE" : "POST" })).toBe(false);
      expect(verified(r, gateway.secret, { ...req, url: `${req.url}x` })).toBe(false);
      expect(verified(r, gateway.secret, { ...req, headers: { ...req.headers, "tollbooth-caller": "ip:10.0.0.1" } })).toBe(false);
      expect(verified(r, gateway.secret, req, new TextEncoder().encode(`${new TextDecoder().decode(r.body)} `))).toBe(false);
    }
    // A request that did not come through the gateway fails the check.
    expect(cameThroughTollbooth({ method: "POST", url: "/mcp", headers: {} }, new Uint8Array(), gateway.secret)).toBe(false);
  });

  it("with a base path in ORIGIN_URL the origin gets <base><path>?<query> and the proof signs exactly that", async () => {
    origin.reset();
    const res = await fetch(`${prefixed.url}/mcp?q=1`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": API_KEY },
      body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "ping" }),
    });
    await res.body?.cancel();
    expect(res.status).toBe(404); // server-everything serves /mcp only: its answer is passed back
    const seen = origin.requests();
    expect(seen.map((r) => `${r.method} ${r.path}`)).toEqual(["POST /base/mcp?q=1"]);
    expect(verified(seen[0]!, prefixed.secret)).toBe(true);
  });

  it("Tollbooth-Solution and Tollbooth-Token are used by the gateway and never reach the origin", async () => {
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": API_KEY };
    const call = (id: number, extra: Record<string, string>) =>
      fetch(`${gateway.url}/mcp`, {
        method: "POST",
        headers: { ...headers, ...extra },
        body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "echo", arguments: { message: `m${id}` } } }),
      });
    const challenge = await fetch(`${gateway.url}/.well-known/tollbooth/challenge`, { headers: { "x-api-key": API_KEY } });
    expect(challenge.status).toBe(200);
    const wwwAuthenticate = challenge.headers.get("www-authenticate")!;
    const { salt, difficulty } = (await challenge.json()) as { salt: string; difficulty: number };
    const { nonce } = await solvePow(salt, difficulty);

    origin.reset();
    const redeemed = await call(1, { "tollbooth-solution": `${wwwAuthenticate.replace(/^PowChallenge\s+/, "")}, nonce="${nonce}"` });
    await redeemed.body?.cancel();
    expect(redeemed.status).not.toBe(402); // the origin's own answer (no session: 400)
    const token = redeemed.headers.get("tollbooth-token");
    expect(token).toMatch(/^tb1\./);
    expect(redeemed.headers.get("tollbooth-credits")).toBe("4");

    const withToken = await call(2, { "tollbooth-token": token! });
    await withToken.body?.cancel();
    expect(withToken.status).not.toBe(402);
    expect(withToken.headers.get("tollbooth-credits")).toBe("3");

    const seen = origin.requests();
    expect(seen).toHaveLength(2);
    for (const r of seen) {
      expect(Object.keys(r.headers).filter((h) => h === "tollbooth-solution" || h === "tollbooth-token")).toEqual([]);
      expect(JSON.stringify(r.headers)).not.toContain(token!);
      expect(JSON.stringify(r.headers)).not.toContain("nonce=");
      expect(verified(r, gateway.secret)).toBe(true);
    }
  });
});
