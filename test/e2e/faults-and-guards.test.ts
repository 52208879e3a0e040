/**
 * Faults and guards, as a caller sees them: origin down (502), origin too slow (504),
 * origin resetting an SSE answer (a JSON-RPC error event for each unanswered request id),
 * other callers unaffected by one caller's hanging or failing request, a gateway restart
 * over the same Durable Object storage (buckets, credits, spent challenges survive),
 * oversized body (413), foreign Origin (403), MCP 2026-07-28 header checks (-32020),
 * and an OAuth-protected origin whose 401 / WWW-Authenticate and metadata pass through.
 * The guards answer before the origin: it must see nothing.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discoverOAuthProtectedResourceMetadata, extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { getOAuthProtectedResourceMetadataUrl, mcpAuthMetadataRouter } from "@modelcontextprotocol/sdk/server/auth/router.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { freePort } from "../../scripts/stack/ports.ts";
import { connect, firstText, readSse } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

// express is what the SDK's server auth pieces are built for (installed with the SDK).
const express = createRequire(import.meta.url)("express");

const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };
const toolCall = (id: number | string, name: string, args: Record<string, unknown>) =>
  JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } });

/** A node http server on 127.0.0.1 that accepts requests and never answers. */
async function startSilentOrigin(): Promise<{ url: string; seen: () => number; close: () => Promise<void> }> {
  let seen = 0;
  const server = http.createServer(() => void seen++);
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen: () => seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * An MCP origin with faulty tools, a node http server on 127.0.0.1 (MCP Streamable HTTP,
 * JSON answers, no session): `initialize` and other requests are answered at once
 * (`tools/call` returns the tool name), notifications get 202, `GET /healthz` 200, and
 *  - `tools/call` of `hang`: held, answered only by `release()` (never, if not called);
 *  - a POST with a `tools/call` of `reset`: a 200 `text/event-stream` answer with one
 *    `notifications/message` event and an answer to every other request of the POST,
 *    then the connection is destroyed (a reset, mid-stream).
 */
async function startFaultyOrigin(): Promise<{ url: string; seen: () => string[]; release: () => number; close: () => Promise<void> }> {
  const seen: string[] = [];
  /** Answers of held `hang` calls, sent by `release()`. */
  const held: Array<() => void> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.method === "GET" && req.url === "/healthz") return void res.end("ok");
      if (req.method !== "POST") return void res.writeHead(405, { allow: "POST" }).end();
      const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const messages: any[] = Array.isArray(parsed) ? parsed : [parsed];
      const tool = (m: any) => (m.method === "tools/call" ? String(m.params?.name) : undefined);
      for (const m of messages) seen.push(tool(m) ?? m.method);
      const answer = (m: any) =>
        m.method === "initialize"
          ? {
              jsonrpc: "2.0",
              id: m.id,
              result: {
                protocolVersion: m.params.protocolVersion,
                capabilities: { tools: {} },
                serverInfo: { name: "faulty-origin", version: "1.0.0" },
              },
            }
          : { jsonrpc: "2.0", id: m.id, result: { content: [{ type: "text", text: `answered ${tool(m) ?? m.method}` }] } };
      const requests = messages.filter((m) => m.id !== undefined && m.method !== undefined);
      if (requests.some((m) => tool(m) === "hang")) {
        // Held until the test releases it.
        const out = Array.isArray(parsed) ? requests.map(answer) : answer(requests[0]);
        held.push(() => void (res.destroyed || res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out))));
        return;
      }
      if (requests.some((m) => tool(m) === "reset")) {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        res.write(
          `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "working" } })}\n\n`,
        );
        for (const m of requests.filter((m) => tool(m) !== "reset")) res.write(`event: message\ndata: ${JSON.stringify(answer(m))}\n\n`);
        setTimeout(() => req.socket.destroy(), 50);
        return;
      }
      if (requests.length === 0) return void res.writeHead(202).end();
      const out = Array.isArray(parsed) ? requests.map(answer) : answer(requests[0]);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen: () => [...seen],
    release: () => {
      const n = held.length;
      for (const answerNow of held.splice(0)) answerNow();
      return n;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface OAuthOrigin {
  url: string;
  seen: Array<{ method: string; path: string; authorization?: string; status: number; wwwAuthenticate?: string; body: string }>;
  close: () => Promise<void>;
}

/**
 * An OAuth-protected MCP resource server from the SDK's own pieces: RFC 9728 metadata
 * (mcpAuthMetadataRouter) and requireBearerAuth in front of /mcp ("good-token" passes).
 * @param publicMcpUrl the resource as clients address it (through the gateway)
 */
async function startOAuthOrigin(publicMcpUrl: URL): Promise<OAuthOrigin> {
  const seen: OAuthOrigin["seen"] = [];
  const app = express();
  app.use((req: any, res: any, next: () => void) => {
    const chunks: Buffer[] = [];
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    res.write = (c: any, ...rest: any[]) => (c && chunks.push(Buffer.from(c)), write(c, ...rest));
    res.end = (c: any, ...rest: any[]) => (c && typeof c !== "function" && chunks.push(Buffer.from(c)), end(c, ...rest));
    res.on("finish", () =>
      seen.push({
        method: req.method,
        path: req.originalUrl,
        authorization: req.headers.authorization,
        status: res.statusCode,
        wwwAuthenticate: res.getHeader("www-authenticate") as string | undefined,
        body: Buffer.concat(chunks).toString("utf8"),
      }),
    );
    next();
  });
  app.use(
    mcpAuthMetadataRouter({
      oauthMetadata: {
        issuer: "https://auth.example.com",
        authorization_endpoint: "https://auth.example.com/authorize",
        token_endpoint: "https://auth.example.com/token",
        response_types_supported: ["code"],
      },
      resourceServerUrl: publicMcpUrl,
      scopesSupported: ["mcp"],
      resourceName: "tollbooth e2e resource",
    }),
  );
  const verifier = {
    verifyAccessToken: async (token: string) => {
      if (token !== "good-token") throw new InvalidTokenError("Unknown token");
      return { token, clientId: "e2e-client", scopes: ["mcp"], expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    },
  };
  app.post(
    "/mcp",
    requireBearerAuth({ verifier, resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(publicMcpUrl) }),
    express.json(),
    (req: any, res: any) =>
      res.json({ jsonrpc: "2.0", id: req.body.id, result: { content: [{ type: "text", text: `hello ${req.auth.clientId}` }] } }),
  );
  const server: http.Server = await new Promise((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface EarlyAnswer {
  status: number;
  body: any;
}

/**
 * POST `body` the way an HTTP/1.1 client that honours early responses does (RFC 9112 §9.3,
 * RFC 9110 §15.5.14): send the headers, then the body 256 bytes at a time, and stop sending
 * as soon as the server has answered. A client that keeps writing after a 413 gets EPIPE or a
 * reset from the closed connection, whatever the gateway said (that is what made a plain
 * `fetch` of this test flaky). `declared` sends Content-Length; otherwise the body is chunked.
 *
 * Under `wrangler dev` the local ProxyWorker in front of the Worker now and then loses a
 * request the Worker answered early ("Network connection lost", a 500 text/plain from
 * wrangler): that is the dev server, not tollbooth, so that one answer, and only it, is
 * retried a few times.
 */
async function postWithEarlyAnswer(url: string, body: Uint8Array, declared: boolean, attempts = 5): Promise<EarlyAnswer> {
  for (let i = 1; ; i++) {
    const answer = await postOnce(url, body, declared);
    const lost = answer.status === 500 && typeof answer.body === "string" && answer.body.includes("Network connection lost");
    if (!lost || i === attempts) return answer;
  }
}

function postOnce(url: string, body: Uint8Array, declared: boolean): Promise<EarlyAnswer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    let wake: () => void = () => {};
    const req = http.request(url, {
      method: "POST",
      headers: { ...MCP_HEADERS, ...(declared ? { "content-length": String(body.length) } : {}) },
    });
    req.on("error", (err) => {
      if (!answered) reject(err); // after the answer, a write error on the closed connection is expected
    });
    req.on("response", (res) => {
      answered = true;
      wake();
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {}
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.flushHeaders();
    void (async () => {
      const pause = () => new Promise<void>((r) => ((wake = r), setTimeout(r, 100)));
      await pause(); // a gateway that refuses on Content-Length answers here, before any body byte
      for (let i = 0; i < body.length && !answered; i += 256) {
        req.write(body.subarray(i, i + 256));
        await pause();
      }
      if (!answered) req.end();
    })();
  });
}

let origin: Origin;
let silent: Awaited<ReturnType<typeof startSilentOrigin>>;
let faulty: Awaited<ReturnType<typeof startFaultyOrigin>>;

// The origins start here; each describe starts the one gateway it needs in its own
// beforeAll, so the `wrangler dev`s boot one at a time (each within its own hook timeout)
// instead of five at once on a 2-core machine.
beforeAll(async () => {
  [origin, silent, faulty] = await Promise.all([startOrigin(), startSilentOrigin(), startFaultyOrigin()]);
});

afterAll(async () => {
  await Promise.all([origin?.close(), silent?.close(), faulty?.close()]);
});

/** Starts a gateway for the enclosing describe (in its beforeAll) and closes it after its tests. */
function gatewayFor(opts: () => Promise<Parameters<typeof startGateway>[0]> | Parameters<typeof startGateway>[0]): { get: () => Gateway } {
  let gw: Gateway | undefined;
  beforeAll(async () => {
    gw = await startGateway(await opts());
  });
  afterAll(async () => {
    await gw?.close();
  });
  return { get: () => gw! };
}

describe("origin down", () => {
  /** ORIGIN_URL points at a closed port. */
  const down = gatewayFor(async () => ({ originUrl: `http://127.0.0.1:${await freePort()}` }));

  it("origin down: 502 with a JSON-RPC error carrying the request's id", async () => {
    const res = await fetch(`${down.get().url}/mcp`, {
      method: "POST",
      headers: MCP_HEADERS,
      body: toolCall("req-502", "echo", { message: "x" }),
    });
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ jsonrpc: "2.0", id: "req-502", error: { code: 502 } });
    expect(body.error.message).toMatch(/origin/i);
  });
});

describe("origin too slow", () => {
  /** In front of the silent origin, originTimeoutMs 1000. */
  const slow = gatewayFor(() => ({ originUrl: silent.url, policy: { originTimeoutMs: 1000 } }));

  it("origin too slow: 504 with a JSON-RPC error, not before originTimeoutMs", async () => {
    const before = silent.seen();
    const started = performance.now();
    const res = await fetch(`${slow.get().url}/mcp`, {
      method: "POST",
      headers: MCP_HEADERS,
      body: toolCall(504, "echo", { message: "x" }),
    });
    const elapsed = performance.now() - started;
    expect(res.status).toBe(504);
    const body = (await res.json()) as any;
    expect(body).toMatchObject({ jsonrpc: "2.0", id: 504, error: { code: 504 } });
    expect(elapsed).toBeGreaterThanOrEqual(1000); // the gateway waited the origin's timeout out (a slow machine only adds)
    expect(silent.seen() - before).toBe(1); // it was forwarded, and then given up on
  });
});

describe("in front of a faulty origin", () => {
  /** originTimeoutMs at its largest (600 s): a held request is never given up on while a test runs, however loaded the machine. */
  const mixedGw = gatewayFor(() => ({
    originUrl: faulty.url,
    policy: { originTimeoutMs: 600_000, bucket: { capacity: 50, refillPerSecond: 1 } },
  }));

  describe("one caller's origin fault leaves the others alone", () => {
    const post = (apiKey: string, body: string, path = "/mcp") =>
      fetch(`${mixedGw.get().url}${path}`, { method: "POST", headers: { ...MCP_HEADERS, "x-api-key": apiKey }, body });

    // (A request the origin never answers gets 504 after originTimeoutMs: "origin too slow" above.)
    it("while one request hangs on the origin, other callers and the same caller's other requests are answered; the hung one gets its answer when the origin sends it", async () => {
      let settled = false;
      const hangsBefore = faulty.seen().filter((m) => m === "hang").length;
      const hung = post("caller-a", toolCall("hung", "hang", {})).then((res) => ((settled = true), res));
      // It reached the origin (which holds it until released) before the others are sent.
      await expect.poll(() => faulty.seen().filter((m) => m === "hang").length, { timeout: 20_000 }).toBe(hangsBefore + 1);
      expect(settled).toBe(false);
      const others = await Promise.all([
        ...["caller-b", "caller-c", "caller-b"].map((key, i) => post(key, toolCall(`other-${i}`, "echo", {}))),
        post("caller-a", toolCall("same-caller", "echo", {})),
      ]);
      for (const res of others) expect(res.status).toBe(200);
      expect(((await others[3]!.json()) as any).id).toBe("same-caller");
      const healthy = await fetch(`${mixedGw.get().url}/healthz`, { headers: { "x-api-key": "caller-a" } });
      expect(healthy.status).toBe(200);
      expect(await healthy.text()).toBe("ok");
      // All of that while the hung request was still waiting: the origin has not answered it.
      expect(settled).toBe(false);

      expect(faulty.release()).toBe(1);
      const res = await hung;
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ jsonrpc: "2.0", id: "hung", result: { content: [{ type: "text", text: "answered hang" }] } });
    });

    it("while the origin resets one caller's stream, another caller's concurrent requests succeed", async () => {
      const [reset, ...others] = await Promise.all([
        post("caller-r", toolCall("r1", "reset", {})),
        ...[1, 2, 3].map((i) => post("caller-s", toolCall(i, "echo", {}))),
      ]);
      expect(reset!.status).toBe(200);
      const events = await readSse(reset!, () => false);
      expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ id: "r1", error: { code: 502 } });
      for (const res of others) {
        expect(res.status).toBe(200);
        expect(((await res.json()) as any).result.content[0].text).toBe("answered echo");
      }
    });
  });

  describe("an origin that resets an SSE answer mid-stream", () => {
    it("an SDK Client's call gets the JSON-RPC error 502 for its id instead of hanging, and the client keeps working", async () => {
      const { client, close } = await connect(`${mixedGw.get().url}/mcp`, { apiKey: "sdk-reset" });
      try {
        const logged: unknown[] = [];
        client.fallbackNotificationHandler = async (n) => void logged.push(n);
        const failure = await client
          .callTool({ name: "reset", arguments: {} }, undefined, { timeout: 15_000 })
          .catch((err: unknown) => err);
        expect(failure).toBeInstanceOf(McpError);
        expect((failure as McpError).code).toBe(502);
        expect((failure as McpError).message).toContain("origin reset the stream before answering");
        expect(logged).toContainEqual(expect.objectContaining({ method: "notifications/message" })); // what came before the reset got through

        const after = await client.callTool({ name: "echo", arguments: {} });
        expect(firstText(after)).toBe("answered echo");
      } finally {
        await close();
      }
    });

    it("a batch: the requests the origin answered keep their answers, the others get the error event, then the stream ends", async () => {
      const body = JSON.stringify([
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: {} } },
        { jsonrpc: "2.0", id: "two", method: "tools/call", params: { name: "reset", arguments: {} } },
        { jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: 0 } },
        { jsonrpc: "2.0", id: 3, method: "ping" },
      ]);
      const res = await fetch(`${mixedGw.get().url}/mcp`, {
        method: "POST",
        headers: { ...MCP_HEADERS, "x-api-key": "batch-reset" },
        body,
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const events = await readSse(res, () => false); // returns when the stream ends: no hang (the test timeout), no error
      const messages = events.map((e) => JSON.parse(e.data));
      expect(messages.map((m) => m.method ?? m.id)).toEqual(["notifications/message", 1, 3, "two"]);
      expect(messages[1].result.content[0].text).toBe("answered echo");
      expect(messages[2].result.content[0].text).toBe("answered ping");
      expect(messages[3]).toEqual({ jsonrpc: "2.0", id: "two", error: { code: 502, message: "origin reset the stream before answering" } });
      expect(events.every((e) => e.event === "message")).toBe(true);
    });
  });
});

/** A nonce (decimal digits) with ≥ `difficulty` leading zero bits of SHA-256(salt ‖ nonce). */
function solveSalt(salt: string, difficulty: number): string {
  for (let n = 0; ; n++) {
    const digest = createHash("sha256")
      .update(salt + n)
      .digest();
    let bits = 0;
    for (const byte of digest) {
      if (byte === 0) {
        bits += 8;
        continue;
      }
      bits += Math.clz32(byte) - 24;
      break;
    }
    if (bits >= difficulty) return String(n);
  }
}

describe("a gateway restarted over the same storage", () => {
  // Two gateways in sequence over one --persist-to directory, each booted in its own
  // beforeAll: the first run spends the caller's bucket, buys a token and spends a
  // challenge; the second finds all of that.
  const opts = {
    originUrl: "",
    persistDir: "",
    secret: "restart-secret-0123456789abcdef",
    policy: { bucket: { capacity: 2, refillPerSecond: 0.0001 }, challenge: { difficulty: 8, credits: 5 } },
  };
  const caller = { ...MCP_HEADERS, "x-api-key": "restart-caller" };
  const call = (url: string, id: number, extra: Record<string, string> = {}) =>
    fetch(`${url}/mcp`, { method: "POST", headers: { ...caller, ...extra }, body: toolCall(id, "echo", {}) });
  /** What the first run leaves for the second. */
  let left: { solution: string; token: string } | undefined;

  beforeAll(async () => {
    opts.originUrl = faulty.url;
    opts.persistDir = await mkdtemp(join(tmpdir(), "tollbooth-restart-"));
  });
  afterAll(async () => {
    if (opts.persistDir) await rm(opts.persistDir, { recursive: true, force: true });
  });

  describe("first run", () => {
    const first = gatewayFor(() => opts);

    it("a caller empties its bucket, redeems a solution, spends a credit", async () => {
      const url = first.get().url;
      for (const id of [1, 2]) expect((await call(url, id)).status).toBe(200);
      const refused = await call(url, 3);
      expect(refused.status).toBe(402);
      await refused.body?.cancel();
      const challenge = refused.headers.get("www-authenticate")!.replace(/^PowChallenge /, "");
      const salt = /salt="([0-9a-f]+)"/.exec(challenge)![1]!;
      const solution = `${challenge}, nonce="${solveSalt(salt, 8)}"`;
      const paid = await call(url, 4, { "tollbooth-solution": solution });
      expect(paid.status).toBe(200);
      expect(paid.headers.get("tollbooth-credits")).toBe("4");
      left = { solution, token: paid.headers.get("tollbooth-token")! };
    });
  });

  describe("after a wrangler dev restart", () => {
    const second = gatewayFor(() => opts);

    it("the caller's empty bucket, token credits and spent challenge survived", async () => {
      expect(left, "the first run's test passed").toBeDefined();
      const { solution, token } = left!;
      const url = second.get().url;
      const empty = await call(url, 5);
      expect(empty.status).toBe(402); // the bucket is still empty
      expect(((await empty.json()) as any).error.data.reason).toBe("over_budget");
      const replay = await call(url, 6, { "tollbooth-solution": solution });
      expect(replay.status).toBe(402);
      expect(((await replay.json()) as any).error.data.reason).toBe("solution_spent");
      const withToken = await call(url, 7, { "tollbooth-token": token });
      expect(withToken.status).toBe(200);
      expect(withToken.headers.get("tollbooth-credits")).toBe("3");
      expect(((await withToken.json()) as any).id).toBe(7);
    });
  });
});

describe("guards that answer before the origin", () => {
  /** In front of server-everything: small body limit, one allowed Origin, echo costs 2. */
  const guarded = gatewayFor(() => ({
    originUrl: origin.url,
    policy: {
      maxBodyBytes: 1024,
      allowedOrigins: ["https://allowed.example"],
      bucket: { capacity: 5, refillPerSecond: 0.0001 },
      costs: { tools: { echo: 2 } },
    },
  }));

  it("413 for a body over maxBodyBytes (declared or streamed); the origin saw nothing", async () => {
    origin.reset();
    const big = new TextEncoder().encode(toolCall(1, "echo", { message: "x".repeat(2_000) }));
    const declared = await postWithEarlyAnswer(`${guarded.get().url}/mcp`, big, true);
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: 413 } });

    const streamed = await postWithEarlyAnswer(`${guarded.get().url}/mcp`, big, false);
    expect(streamed.status).toBe(413);
    expect(streamed.body.error.code).toBe(413);
    expect(origin.requests()).toHaveLength(0);

    // Just under the limit goes through: the origin itself answers (no session yet: its own 400).
    const small = await fetch(`${guarded.get().url}/mcp`, {
      method: "POST",
      headers: MCP_HEADERS,
      body: toolCall(2, "echo", { message: "x".repeat(800) }),
    });
    expect(small.status).toBe(400);
    expect(((await small.json()) as any).error.code).toBe(-32000); // the MCP SDK server's own code
    expect(origin.requests().length).toBeGreaterThanOrEqual(1);
  });

  it("403 for a foreign Origin header; the gateway's own and allowed origins pass", async () => {
    origin.reset();
    const ping = (originHeader: string) =>
      fetch(`${guarded.get().url}/mcp`, {
        method: "POST",
        headers: { ...MCP_HEADERS, origin: originHeader },
        body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "ping" }),
      });
    const foreign = await ping("https://evil.example");
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toMatchObject({ jsonrpc: "2.0", error: { code: 403 } });
    expect(origin.requests()).toHaveLength(0);

    for (const allowed of ["https://allowed.example", guarded.get().url]) {
      const res = await ping(allowed);
      await res.body?.cancel();
      expect(res.status, allowed).not.toBe(403);
    }
    expect(origin.requests()).toHaveLength(2);
  });

  it("2026-07-28 requests (Mcp-Method / Mcp-Name, no session) are costed from the body; a mismatch is 400 -32020", async () => {
    origin.reset();
    const caller = { "x-api-key": "mcp-2026-07-28" };
    const send = (id: number, headers: Record<string, string>, name = "echo") =>
      fetch(`${guarded.get().url}/mcp`, {
        method: "POST",
        headers: { ...MCP_HEADERS, ...caller, "mcp-protocol-version": "2026-07-28", ...headers },
        body: toolCall(id, name, name === "echo" ? { message: "hi" } : { a: 1, b: 2 }),
      });

    const mismatch = await send(1, { "mcp-method": "tools/call", "mcp-name": "get-sum" });
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toMatchObject({ jsonrpc: "2.0", id: 1, error: { code: -32020 } });
    const wrongMethod = await send(2, { "mcp-method": "tools/list", "mcp-name": "echo" });
    expect(wrongMethod.status).toBe(400);
    expect(((await wrongMethod.json()) as any).error.code).toBe(-32020);
    expect(origin.requests()).toHaveLength(0);

    // echo costs 2 (costs.tools), from the body: 5 → 3 → 1, then 402.
    const remaining: string[] = [];
    for (const id of [3, 4]) {
      const res = await send(id, { "mcp-method": "tools/call", "mcp-name": "echo" });
      await res.body?.cancel();
      expect(res.status).not.toBe(402);
      remaining.push(/"free";r=(\d+)/.exec(res.headers.get("ratelimit") ?? "")?.[1] ?? "?");
    }
    expect(remaining).toEqual(["3", "1"]);
    const over = await send(5, { "mcp-method": "tools/call", "mcp-name": "echo" });
    expect(over.status).toBe(402);
    expect(((await over.json()) as any).error.data.cost).toBe(2);

    const seen = origin.requests();
    expect(seen).toHaveLength(2);
    for (const r of seen) {
      expect(r.headers["mcp-method"]).toBe("tools/call");
      expect(r.headers["mcp-name"]).toBe("echo");
      expect(r.headers["mcp-session-id"]).toBeUndefined();
    }
  });
});

describe("an OAuth-protected origin behind the gateway", () => {
  let oauth: OAuthOrigin;
  /** In front of the OAuth origin. */
  let authGw: Gateway;
  beforeAll(async () => {
    const authGwPort = await freePort();
    oauth = await startOAuthOrigin(new URL(`http://127.0.0.1:${authGwPort}/mcp`));
    authGw = await startGateway({ originUrl: oauth.url, port: authGwPort, policy: { bucket: { capacity: 1, refillPerSecond: 0.0001 } } });
  });
  afterAll(async () => {
    await authGw?.close();
    await oauth?.close();
  });

  it("401 with WWW-Authenticate: Bearer resource_metadata=… comes back untouched, and the SDK reads it", async () => {
    const before = oauth.seen.length;
    const res = await fetch(`${authGw.url}/mcp`, {
      method: "POST",
      headers: { ...MCP_HEADERS, "x-api-key": "oauth-401" },
      body: toolCall(1, "echo", { message: "x" }),
    });
    const text = await res.text();
    const atOrigin = oauth.seen.slice(before);
    expect(atOrigin).toHaveLength(1);
    expect(atOrigin[0]!.status).toBe(401);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(atOrigin[0]!.wwwAuthenticate);
    expect(text).toBe(atOrigin[0]!.body);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer error="invalid_token", .*resource_metadata="/);

    const { resourceMetadataUrl, error } = extractWWWAuthenticateParams(res);
    expect(error).toBe("invalid_token");
    expect(resourceMetadataUrl?.href).toBe(`${authGw.url}/.well-known/oauth-protected-resource/mcp`);
  });

  it("OAuth metadata passes through at cost 0; a valid bearer token reaches the origin and pays as usual", async () => {
    const caller = { "x-api-key": "oauth-discovery" };
    // Bucket capacity is 1: three discoveries would drain it if they cost anything.
    for (let i = 0; i < 3; i++) {
      const prm = await discoverOAuthProtectedResourceMetadata(new URL(`${authGw.url}/mcp`), undefined, (u, init) =>
        fetch(u, { ...init, headers: { ...(init?.headers as Record<string, string>), ...caller } }),
      );
      expect(prm.resource).toBe(`${authGw.url}/mcp`);
      expect(prm.authorization_servers).toEqual(["https://auth.example.com"]);
      expect(prm.resource_name).toBe("tollbooth e2e resource");
    }
    const asMeta = await fetch(`${authGw.url}/.well-known/oauth-authorization-server`, { headers: caller });
    expect(asMeta.status).toBe(200);
    expect(((await asMeta.json()) as any).issuer).toBe("https://auth.example.com");
    const status = (await (await fetch(`${authGw.url}/.well-known/tollbooth/status`, { headers: caller })).json()) as any;
    expect(status.bucket.remaining).toBe(1);
    expect(
      oauth.seen.filter((s) => s.path.startsWith("/.well-known/oauth-protected-resource/mcp") && s.status === 200).length,
    ).toBeGreaterThanOrEqual(3);

    // With a token: the caller is its Authorization; the header reaches the origin.
    const authed = { ...MCP_HEADERS, authorization: "Bearer good-token" };
    const ok = await fetch(`${authGw.url}/mcp`, { method: "POST", headers: authed, body: toolCall(7, "echo", { message: "x" }) });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ jsonrpc: "2.0", id: 7, result: { content: [{ type: "text", text: "hello e2e-client" }] } });
    expect(oauth.seen.at(-1)!.authorization).toBe("Bearer good-token");
    const over = await fetch(`${authGw.url}/mcp`, { method: "POST", headers: authed, body: toolCall(8, "echo", { message: "x" }) });
    expect(over.status).toBe(402);
    expect(over.headers.get("www-authenticate")).toMatch(/^PowChallenge /);
  });
});
