/**
 * One reading of every body: what the origin parses is exactly what the gateway priced. A
 * JSON-RPC POST is read as UTF-8 JSON only (another charset, a repeated Content-Type or a
 * Content-Encoding gets 415, and nothing reaches the origin), nesting is bounded before
 * parsing, a body that does not arrive in time gets 408, and what reaches the origin is
 * normalised: `Content-Type: application/json` exactly, no client-sent forwarding or
 * method-override header, a `Content-Digest` of the exact bytes forwarded, and an origin proof
 * (v2) that covers that digest.
 *
 * The last part checks the proxy's hooks (refund when the origin never answered, release
 * of a GET stream however it ends) on the proxy alone, behind a stub middleware.
 */
import { Hono } from "hono";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { importKeyring } from "../../../shared/credentials/keys.ts";
import type { TollboothVariables } from "../../../workers/pipeline/middleware.ts";
import { mcpProxy } from "../../../workers/proxy/proxy.ts";
import {
  b64url,
  canonical,
  errorBody,
  type Forwarded,
  freezeTime,
  freshIp,
  GW,
  gateway,
  hmacSha256,
  kidOf,
  ORIGIN_URL,
  observeOrigin,
  post,
  request,
  rpc,
  SECRET,
  sha256,
  toolCall,
} from "../support.ts";

let ip: string;

beforeEach(() => {
  ip = freshIp();
});

/** Standard base64 (with padding), as RFC 9530 `Content-Digest` writes a byte sequence. */
const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

/**
 * The origin-side check, written from the docs with WebCrypto: `Content-Digest` is the
 * SHA-256 of the body received, and `Tollbooth-Signature` is HMAC-SHA256 over
 * canonical(["tollbooth/origin-proof/v2", t, caller, method, path+query, content-digest]).
 */
async function cameThroughTollbooth(f: Forwarded, secret: string): Promise<boolean> {
  const digest = f.headers["content-digest"] ?? "";
  if (digest !== `sha-256=:${b64(await sha256(f.body))}:`) return false;
  const m = /^t=(\d+), kid=([\w-]+), sig=([\w-]+)$/.exec(f.headers["tollbooth-signature"] ?? "");
  if (!m || Math.abs(Date.now() / 1000 - Number(m[1])) > 60) return false;
  const u = new URL(f.url);
  const data = canonical([
    "tollbooth/origin-proof/v2",
    m[1]!,
    f.headers["tollbooth-caller"] ?? "",
    f.method,
    u.pathname + u.search,
    digest,
  ]);
  return b64url(await hmacSha256(secret, data)) === m[3];
}

describe("a JSON-RPC POST is read as UTF-8 JSON only: anything else is 415 and never reaches the origin", () => {
  const refused: Array<[string, Record<string, string>, RegExp]> = [
    ["charset=utf-7", { "content-type": "application/json; charset=utf-7" }, /utf-7/i],
    ["charset=UTF-7 quoted", { "content-type": 'application/json;charset="UTF-7"' }, /utf-7/i],
    ["charset=utf-16", { "content-type": "application/json; charset=utf-16" }, /utf-16/i],
    ["charset=utf-16le", { "content-type": "application/json; charset=utf-16le" }, /utf-16le/i],
    ["charset=utf-32", { "content-type": "application/json; charset=utf-32" }, /utf-32/i],
    ["charset=latin1", { "content-type": "application/json; charset=latin1" }, /latin1/i],
    ["charset=iso-8859-1", { "content-type": "application/json; charset=iso-8859-1" }, /iso-8859-1/i],
    ["charset=utf8 (not the registered name)", { "content-type": "application/json; charset=utf8" }, /utf8/i],
    ["two charsets", { "content-type": "application/json; charset=utf-8; charset=utf-7" }, /charset/i],
    ["another parameter", { "content-type": "application/json; profile=x" }, /parameter/i],
    ["two Content-Types joined", { "content-type": "application/json, text/plain" }, /several/i],
    ["the same Content-Type twice", { "content-type": "application/json, application/json" }, /several/i],
    ["text/plain", { "content-type": "text/plain" }, /text\/plain/],
    ["Content-Encoding: gzip", { "content-type": "application/json", "content-encoding": "gzip" }, /gzip/],
    ["Content-Encoding: deflate", { "content-type": "application/json", "content-encoding": "deflate" }, /deflate/],
    ["Content-Encoding: br", { "content-type": "application/json", "content-encoding": "br" }, /br/],
  ];
  for (const [what, headers, named] of refused) {
    it(`refuses ${what}`, async () => {
      const origin = observeOrigin();
      const res = await gateway()(post(rpc("ping", undefined, 1), { ip, contentType: null, headers }));
      expect(res.status).toBe(415);
      const body = await errorBody(res);
      expect(body.error.code).toBe(415);
      expect(body.error.message).toMatch(named);
      expect(origin.requests).toHaveLength(0);
    });
  }

  it('refuses a repeated Content-Type header (Workers joins repeated headers with ", ")', async () => {
    const origin = observeOrigin();
    const headers = new Headers({ "cf-connecting-ip": ip });
    headers.append("content-type", "application/json");
    headers.append("content-type", "application/json; charset=utf-7");
    const res = await gateway()(new Request(`${GW}/mcp`, { method: "POST", headers, body: JSON.stringify(rpc("ping", undefined, 1)) }));
    expect(res.status).toBe(415);
    expect(origin.requests).toHaveLength(0);
  });

  const accepted = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=UTF-8",
    'application/json; charset="utf-8"',
    "Application/JSON ; Charset=Utf-8",
  ];
  for (const type of accepted) {
    it(`accepts ${JSON.stringify(type)} and forwards Content-Type: application/json exactly`, async () => {
      const origin = observeOrigin();
      const body = JSON.stringify(toolCall(1));
      const res = await gateway()(post(body, { ip, contentType: type }));
      expect(res.status).toBe(200);
      expect(origin.requests).toHaveLength(1);
      expect(origin.requests[0]!.headers["content-type"]).toBe("application/json");
      expect(origin.requests[0]!.body).toBe(body);
    });
  }

  it("accepts Content-Encoding: identity, and does not forward it", async () => {
    const origin = observeOrigin();
    const res = await gateway()(post(toolCall(1), { ip, headers: { "content-encoding": "identity" } }));
    expect(res.status).toBe(200);
    expect(origin.requests[0]!.headers["content-encoding"]).toBeUndefined();
  });
});

describe("nesting is bounded before parsing", () => {
  const nested = (depth: number) =>
    `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":${"[".repeat(depth)}${"]".repeat(depth)}}}}`;

  it("45,000 levels: 400 with −32600 naming the limit (64 by default), and the origin gets nothing", async () => {
    const origin = observeOrigin();
    const res = await gateway()(post(nested(45_000), { ip }));
    expect(res.status).toBe(400);
    const body = await errorBody(res);
    expect(body.error.code).toBe(-32600);
    expect(body.error.message).toContain("nesting deeper than 64");
    expect(origin.requests).toHaveLength(0);
  });

  it("policy maxJsonDepth is the limit: at it admitted, one deeper refused", async () => {
    const origin = observeOrigin();
    const send = gateway({ maxJsonDepth: 6 });
    // The message is depth 1, params 2, arguments 3, then the arrays.
    expect((await send(post(nested(3), { ip }))).status).toBe(200);
    const res = await send(post(nested(4), { ip }));
    expect(res.status).toBe(400);
    expect((await errorBody(res)).error.message).toContain("nesting deeper than 6");
    expect(origin.requests).toHaveLength(1);
  });

  it("brackets inside strings do not count", async () => {
    const origin = observeOrigin();
    const res = await gateway()(
      post(
        `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":"${"[{".repeat(5000)}\\"${"[".repeat(100)}"}}}`,
        { ip },
      ),
    );
    expect(res.status).toBe(200);
    expect(origin.requests).toHaveLength(1);
  });
});

describe("what reaches the origin", () => {
  it("client-sent forwarding headers are dropped; the gateway sets its own X-Forwarded-For/-Host/-Proto", async () => {
    const origin = observeOrigin();
    const spoofed = {
      "x-forwarded-for": "6.6.6.6",
      "x-forwarded-host": "evil.example",
      "x-forwarded-proto": "https",
      "x-forwarded-port": "8443",
      "x-forwarded-prefix": "/admin",
      "x-forwarded-server": "evil",
      forwarded: "for=6.6.6.6;proto=https;host=evil.example",
      "x-real-ip": "6.6.6.6",
      "true-client-ip": "6.6.6.6",
      "x-client-ip": "6.6.6.6",
      "x-cluster-client-ip": "6.6.6.6",
    };
    expect((await gateway()(post(toolCall(1), { ip, headers: spoofed }))).status).toBe(200);
    const h = origin.requests[0]!.headers;
    expect(h["x-forwarded-for"]).toBe(ip);
    expect(h["x-forwarded-host"]).toBe("gw.test");
    expect(h["x-forwarded-proto"]).toBe("http");
    for (const name of [
      "x-forwarded-port",
      "x-forwarded-prefix",
      "x-forwarded-server",
      "forwarded",
      "x-real-ip",
      "true-client-ip",
      "x-client-ip",
      "x-cluster-client-ip",
    ]) {
      expect(h[name], name).toBeUndefined();
    }
    expect(JSON.stringify(h)).not.toContain("6.6.6.6");
    expect(JSON.stringify(h)).not.toContain("evil");
  });

  it("on GET and DELETE too", async () => {
    const origin = observeOrigin(() => new Response(null, { status: 202 }));
    const headers = { "x-forwarded-for": "6.6.6.6", "x-real-ip": "6.6.6.6", forwarded: "for=6.6.6.6" };
    await gateway()(request("GET", "/mcp", { ip, headers: { ...headers, accept: "text/event-stream" } }));
    await gateway()(request("DELETE", "/mcp", { ip, headers }));
    expect(origin.requests.map((f) => f.method)).toEqual(["GET", "DELETE"]);
    for (const f of origin.requests) {
      expect(f.headers["x-forwarded-for"]).toBe(ip);
      expect(f.headers["x-real-ip"]).toBeUndefined();
      expect(f.headers.forwarded).toBeUndefined();
    }
  });

  it("method-override headers are dropped (the origin runs the method that was priced)", async () => {
    const origin = observeOrigin();
    const overrides = { "x-http-method-override": "DELETE", "x-http-method": "DELETE", "x-method-override": "DELETE" };
    expect((await gateway()(post(toolCall(1), { ip, headers: overrides }))).status).toBe(200);
    const h = origin.requests[0]!.headers;
    for (const name of Object.keys(overrides)) expect(h[name], name).toBeUndefined();
    expect(origin.requests[0]!.method).toBe("POST");
  });

  it("Content-Digest is the SHA-256 of the exact bytes forwarded, and the proof covers it", async () => {
    freezeTime();
    const origin = observeOrigin();
    const body = `{"jsonrpc":"2.0", "id":7 ,"method":"tools/call","params":{"name":"echo","arguments":{"message":"héllo ✓"}}}`;
    expect((await gateway()(post(body, { ip, contentType: "application/json; charset=UTF-8" }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.body).toBe(body);
    expect(f.headers["content-digest"]).toBe(`sha-256=:${b64(await sha256(body))}:`);
    expect(f.headers["tollbooth-signature"]).toContain(`kid=${await kidOf(SECRET)},`);
    expect(await cameThroughTollbooth(f, SECRET)).toBe(true);
    // Another body under the same headers does not verify; nor does another digest.
    expect(await cameThroughTollbooth({ ...f, body: body.replace("echo", "evil") }, SECRET)).toBe(false);
    const other = `sha-256=:${b64(await sha256("{}"))}:`;
    expect(await cameThroughTollbooth({ ...f, body: "{}", headers: { ...f.headers, "content-digest": other } }, SECRET)).toBe(false);
    expect(await cameThroughTollbooth(f, "another-secret-0123456789abcdef")).toBe(false);
  });

  it("a request without a body carries the digest of the empty body, and verifies", async () => {
    freezeTime();
    const origin = observeOrigin(() => new Response(null, { status: 202 }));
    await gateway()(request("DELETE", "/mcp", { ip, headers: { "content-digest": "sha-256=:AAAA:" } }));
    const f = origin.requests[0]!;
    expect(f.body).toBe("");
    expect(f.headers["content-digest"]).toBe("sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:");
    expect(await cameThroughTollbooth(f, SECRET)).toBe(true);
  });

  it("a client-sent Content-Digest is replaced by the gateway's", async () => {
    const origin = observeOrigin();
    await gateway()(post(toolCall(1), { ip, headers: { "content-digest": "sha-256=:AAAA:" } }));
    expect(origin.requests[0]!.headers["content-digest"]).toBe(`sha-256=:${b64(await sha256(origin.requests[0]!.body))}:`);
  });
});

describe("a body that does not arrive in time", () => {
  it("is answered 408 with a JSON-RPC error after bodyTimeoutMs, and the origin gets nothing", async () => {
    const origin = observeOrigin();
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"tools/'));
        // ...and the rest never comes.
      },
      cancel() {
        cancelled = true;
      },
    });
    const req = new Request(`${GW}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": ip },
      body,
      duplex: "half",
    } as RequestInit);
    const started = Date.now();
    const res = await gateway({ bodyTimeoutMs: 300 })(req);
    expect(res.status).toBe(408);
    // Not before bodyTimeoutMs (a slow machine only adds).
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    const err = await errorBody(res);
    expect(err.error.code).toBe(408);
    expect(err.error.message).toMatch(/300 ms/);
    expect(origin.requests).toHaveLength(0);
    await vi.waitFor(() => expect(cancelled).toBe(true));
  });
});

// ---------------------------------------------------------------------------------------------
// The proxy's hooks, on the proxy alone

interface Hooks {
  refund: ReturnType<typeof vi.fn>;
  release: ReturnType<typeof vi.fn>;
}

/** mcpProxy() behind a stub middleware that hands it a state with spied hooks. */
function proxyWithHooks(opts: { timeoutMs?: number; streamMaxMs?: number } = {}): {
  send: (r: Request) => Promise<Response>;
  hooks: Hooks;
} {
  const hooks: Hooks = { refund: vi.fn(), release: vi.fn() };
  const app = new Hono<{ Variables: TollboothVariables }>();
  app.use(async (c, next) => {
    c.set("tollbooth", {
      caller: "ip:test",
      body: null,
      rawBody: null,
      cost: 1,
      decision: null,
      refund: hooks.refund as () => void,
      release: hooks.release as () => void,
      ...(opts.streamMaxMs === undefined ? {} : { streamMaxMs: opts.streamMaxMs }),
    });
    await next();
  });
  app.all(
    "*",
    mcpProxy({ originUrl: ORIGIN_URL, proofKey: async () => (await importKeyring(SECRET)).signer, timeoutMs: opts.timeoutMs ?? 5_000 }),
  );
  return { send: async (r) => app.fetch(r), hooks };
}

const getStream = () => request("GET", "/mcp", { ip, headers: { accept: "text/event-stream" } });
const SSE = { status: 200, headers: { "content-type": "text/event-stream" } };

describe("refund: the origin never answered", () => {
  it("502 (unreachable): refund once, release once", async () => {
    observeOrigin(() => {
      throw new TypeError("connect ECONNREFUSED");
    });
    const { send, hooks } = proxyWithHooks();
    expect((await send(post(toolCall(1), { ip }))).status).toBe(502);
    expect(hooks.refund).toHaveBeenCalledTimes(1);
    expect(hooks.release).toHaveBeenCalledTimes(1);
  });

  it("504 (no response headers in time): refund once", async () => {
    observeOrigin(
      (_f, signal) =>
        new Promise((_, reject) => signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")))),
    );
    const { send, hooks } = proxyWithHooks({ timeoutMs: 100 });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(504);
    expect(hooks.refund).toHaveBeenCalledTimes(1);
  });

  it("an answer, even a 500, is no refund", async () => {
    observeOrigin(() => new Response("boom", { status: 500 }));
    const { send, hooks } = proxyWithHooks();
    expect((await send(post(toolCall(1), { ip }))).status).toBe(500);
    expect(hooks.refund).not.toHaveBeenCalled();
  });
});

describe("release: a GET stream's slot is given back exactly once, however the stream ends", () => {
  it("right away for a GET answered without a stream", async () => {
    observeOrigin(() => new Response("no", { status: 405 }));
    const { send, hooks } = proxyWithHooks();
    expect((await send(getStream())).status).toBe(405);
    expect(hooks.release).toHaveBeenCalledTimes(1);
  });

  it("when the origin ends the stream (not before)", async () => {
    let origin!: ReadableStreamDefaultController<Uint8Array>;
    observeOrigin(() => new Response(new ReadableStream<Uint8Array>({ start: (c) => void (origin = c) }), SSE));
    const { send, hooks } = proxyWithHooks();
    const res = await send(getStream());
    const reader = res.body!.getReader();
    origin.enqueue(new TextEncoder().encode("event: message\ndata: {}\n\n"));
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("event: message\ndata: {}\n\n");
    expect(hooks.release).not.toHaveBeenCalled();
    origin.close();
    expect((await reader.read()).done).toBe(true);
    expect(hooks.release).toHaveBeenCalledTimes(1);
  });

  it("when the origin's stream errors", async () => {
    let origin!: ReadableStreamDefaultController<Uint8Array>;
    observeOrigin(() => new Response(new ReadableStream<Uint8Array>({ start: (c) => void (origin = c) }), SSE));
    const { send, hooks } = proxyWithHooks();
    const res = await send(getStream());
    const text = res.text();
    origin.error(new Error("reset"));
    await expect(text).rejects.toThrow();
    expect(hooks.release).toHaveBeenCalledTimes(1);
  });

  it("when the client goes away: and the origin's stream is cancelled too", async () => {
    let originCancelled = false;
    observeOrigin(() => new Response(new ReadableStream<Uint8Array>({ cancel: () => void (originCancelled = true) }), SSE));
    const { send, hooks } = proxyWithHooks();
    const res = await send(getStream());
    await res.body!.cancel("client gone");
    expect(hooks.release).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(originCancelled).toBe(true));
    expect(hooks.release).toHaveBeenCalledTimes(1);
  });

  it("at streamMaxMs: the client's stream ends normally, the origin's is cancelled", async () => {
    let originCancelled = false;
    observeOrigin(
      () =>
        new Response(
          new ReadableStream<Uint8Array>({
            start: (c) => c.enqueue(new TextEncoder().encode("event: message\ndata: {}\n\n")),
            cancel: () => void (originCancelled = true),
          }),
          SSE,
        ),
    );
    const { send, hooks } = proxyWithHooks({ streamMaxMs: 200 });
    const res = await send(getStream());
    expect(await res.text()).toBe("event: message\ndata: {}\n\n");
    expect(hooks.release).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(originCancelled).toBe(true));
  });

  it("a POST answered with a stream is not a GET stream: released at once, the stream untouched", async () => {
    observeOrigin(() => new Response("event: message\ndata: {}\n\n", SSE));
    const { send, hooks } = proxyWithHooks();
    const res = await send(post(toolCall(1), { ip }));
    expect(hooks.release).toHaveBeenCalledTimes(1);
    expect(await res.text()).toBe("event: message\ndata: {}\n\n");
  });
});
