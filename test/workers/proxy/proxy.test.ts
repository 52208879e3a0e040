/**
 * What the gateway sends to the origin for an admitted request, and what it gives back
 * (docs/gateway.md, "What goes through", "Origin check"): path and query unchanged, tollbooth's
 * credentials stripped, `Tollbooth-Caller` and a verifiable `Tollbooth-Signature` added;
 * the origin's answer passed through (SSE streamed), 502 / 504 when the origin fails.
 * The origin is observed through a `fetch` spy (the real MCP origin runs in test/e2e).
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import {
  authIdentity,
  b64url,
  canonical,
  challengeOf,
  errorBody,
  type Forwarded,
  freezeTime,
  freshIp,
  GW,
  gateway,
  hmacSha256,
  ipIdentity,
  kidOf,
  ORIGIN_URL,
  observeOrigin,
  post,
  request,
  SECRET,
  sha256,
  solve,
  toolCall,
} from "../support.ts";

let now: number;
let ip: string;

beforeEach(() => {
  now = freezeTime();
  ip = freshIp();
});

/**
 * The origin-side check of docs/gateway.md "Origin check" (proof v2), written with WebCrypto: the
 * body received must match `Content-Digest` (RFC 9530, `sha-256=:<base64>:`), then the
 * HMAC-SHA256 over canonical(["tollbooth/origin-proof/v2", t, caller, method, path+query,
 * content-digest]) must match the header's signature.
 */
async function cameThroughTollbooth(f: Forwarded, secret: string, nowMs: number): Promise<boolean> {
  const m = /^t=(\d+), kid=([\w-]+), sig=([\w-]+)$/.exec(f.headers["tollbooth-signature"] ?? "");
  if (!m || Math.abs(nowMs / 1000 - Number(m[1])) > 60) return false;
  const digest = f.headers["content-digest"] ?? "";
  if (digest !== (await digestOf(f.body))) return false;
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

/** `Content-Digest` of a body as an origin computes it: `sha-256=:` standard base64 (padded) of SHA-256 `:`. */
async function digestOf(body: string): Promise<string> {
  return `sha-256=:${btoa(String.fromCharCode(...(await sha256(body))))}:`;
}

describe("forwarding to the origin", () => {
  it("forwards method, path, query, body and MCP headers unchanged", async () => {
    const origin = observeOrigin();
    const body = JSON.stringify(toolCall(1));
    const req = new Request(`${GW}/mcp?tenant=a&x=%20y`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "cf-connecting-ip": ip,
        "mcp-session-id": "sess-1",
        "mcp-protocol-version": "2025-11-25",
        "x-custom": "kept",
      },
      body,
    });
    const res = await gateway()(req);
    expect(res.status).toBe(200);
    expect(origin.requests).toHaveLength(1);
    const f = origin.requests[0]!;
    expect(f.url).toBe(`${ORIGIN_URL}/mcp?tenant=a&x=%20y`);
    expect(f.method).toBe("POST");
    expect(f.body).toBe(body);
    expect(f.headers).toMatchObject({
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": "sess-1",
      "mcp-protocol-version": "2025-11-25",
      "x-custom": "kept",
      "x-forwarded-host": "gw.test",
      "x-forwarded-proto": "http",
    });
  });

  it("adds Tollbooth-Caller and a Tollbooth-Signature the origin can verify with the shared secret", async () => {
    const origin = observeOrigin();
    expect((await gateway()(post(toolCall(1), { ip, path: "/mcp?q=1" }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.headers["tollbooth-caller"]).toBe(ipIdentity(ip));
    const m = /^t=(\d+), kid=([\w-]+), sig=([\w-]+)$/.exec(f.headers["tollbooth-signature"]!);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(Math.floor(now / 1000));
    expect(m![2]).toBe(await kidOf(SECRET));
    expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
    // And not with another secret, or once the request is altered.
    expect(await cameThroughTollbooth(f, "another-secret-0123456789abcdef", now)).toBe(false);
    expect(await cameThroughTollbooth({ ...f, method: "DELETE" }, SECRET, now)).toBe(false);
    expect(await cameThroughTollbooth({ ...f, url: `${ORIGIN_URL}/mcp?q=2` }, SECRET, now)).toBe(false);
    expect(await cameThroughTollbooth({ ...f, headers: { ...f.headers, "tollbooth-caller": "ip:10.9.9.9" } }, SECRET, now)).toBe(false);
    // The proof covers the body through its digest: another body, or another body with its own digest, fails.
    expect(f.headers["content-digest"]).toBe(await digestOf(f.body));
    const other = JSON.stringify(toolCall(1, "expensive"));
    expect(await cameThroughTollbooth({ ...f, body: other }, SECRET, now)).toBe(false);
    expect(
      await cameThroughTollbooth({ ...f, body: other, headers: { ...f.headers, "content-digest": await digestOf(other) } }, SECRET, now),
    ).toBe(false);
  });

  it("the caller named to the origin is the network for an unverified Authorization (default strategies), forwarded untouched", async () => {
    const origin = observeOrigin();
    expect((await gateway()(post(toolCall(1), { ip, headers: { authorization: "Bearer abc" } }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.headers["tollbooth-caller"]).toBe(ipIdentity(ip));
    expect(f.headers.authorization).toBe("Bearer abc");
    expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
  });

  it("with authorization-unverified (opt-in), the caller named to the origin is the Authorization identity", async () => {
    const origin = observeOrigin();
    const send = gateway({ identity: { strategies: ["authorization-unverified", "ip"] } });
    expect((await send(post(toolCall(1), { ip, headers: { authorization: "Bearer abc" } }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.headers["tollbooth-caller"]).toBe(await authIdentity("Bearer abc"));
    expect(f.headers.authorization).toBe("Bearer abc");
    expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
  });

  it("signs with TOLLBOOTH_ORIGIN_SECRET when it is set", async () => {
    const origin = observeOrigin();
    const ORIGIN_SECRET = "origin-secret-0123456789abcdef";
    const send = gateway(undefined, { TOLLBOOTH_ORIGIN_SECRET: ORIGIN_SECRET });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.headers["tollbooth-signature"]).toContain(`kid=${await kidOf(ORIGIN_SECRET)},`);
    expect(await cameThroughTollbooth(f, ORIGIN_SECRET, now)).toBe(true);
    expect(await cameThroughTollbooth(f, SECRET, now)).toBe(false);
  });

  it("appends the path to an ORIGIN_URL that has a path, and signs the path the origin receives", async () => {
    const origin = observeOrigin();
    const send = gateway(undefined, { ORIGIN_URL: `${ORIGIN_URL}/base/` });
    expect((await send(post(toolCall(1), { ip, path: "/mcp?z=9" }))).status).toBe(200);
    const f = origin.requests[0]!;
    expect(f.url).toBe(`${ORIGIN_URL}/base/mcp?z=9`);
    expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
  });

  it("strips Tollbooth-Token and Tollbooth-Solution, and replaces spoofed Tollbooth-Caller / Tollbooth-Signature", async () => {
    const origin = observeOrigin();
    const send = gateway({ bucket: { capacity: 1, refillPerSecond: 0.001 }, challenge: { difficulty: 6 } });
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200);
    const refused = await send(post(toolCall(2), { ip }));
    const { header } = await solve(challengeOf(refused));
    const spoof = { "tollbooth-caller": "ip:1.2.3.4", "tollbooth-signature": "t=1, kid=x, sig=y" };
    const paid = await send(post(toolCall(3), { ip, headers: { "tollbooth-solution": header, ...spoof } }));
    expect(paid.status).toBe(200);
    const token = paid.headers.get("tollbooth-token")!;
    expect((await send(post(toolCall(4), { ip, headers: { "tollbooth-token": token, ...spoof } }))).status).toBe(200);
    expect(origin.requests).toHaveLength(3);
    for (const f of origin.requests.slice(1)) {
      expect(f.headers["tollbooth-solution"]).toBeUndefined();
      expect(f.headers["tollbooth-token"]).toBeUndefined();
      expect(f.headers["tollbooth-caller"]).toBe(ipIdentity(ip));
      expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
    }
  });

  it("forwards GET (SSE) and DELETE on the endpoint without a body", async () => {
    const origin = observeOrigin();
    const send = gateway();
    expect((await send(request("GET", "/mcp", { ip, headers: { accept: "text/event-stream", "last-event-id": "42" } }))).status).toBe(200);
    expect((await send(request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": "s" } }))).status).toBe(200);
    expect(origin.requests.map((f) => [f.method, f.url, f.body])).toEqual([
      ["GET", `${ORIGIN_URL}/mcp`, ""],
      ["DELETE", `${ORIGIN_URL}/mcp`, ""],
    ]);
    expect(origin.requests[0]!.headers["last-event-id"]).toBe("42");
    for (const f of origin.requests) expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
  });

  it("a body sent with DELETE or OPTIONS never reaches the origin, nor its Content-Type: it was priced unread (a tools/call smuggled in a DELETE)", async () => {
    const origin = observeOrigin();
    const send = gateway();
    const smuggled = JSON.stringify(toolCall(1, "expensive"));
    for (const method of ["DELETE", "OPTIONS"]) {
      for (const path of ["/mcp", "/other"]) {
        const res = await send(
          new Request(`${GW}${path}`, {
            method,
            headers: { "cf-connecting-ip": ip, "content-type": "application/json", "content-encoding": "identity", "mcp-session-id": "s" },
            body: smuggled,
          }),
        );
        expect(res.status, `${method} ${path}`).toBe(200);
      }
    }
    expect(origin.requests.map((f) => [f.method, f.url, f.body, f.headers["content-type"], f.headers["content-encoding"]])).toEqual([
      ["DELETE", `${ORIGIN_URL}/mcp`, "", undefined, undefined],
      ["DELETE", `${ORIGIN_URL}/other`, "", undefined, undefined],
      ["OPTIONS", `${ORIGIN_URL}/mcp`, "", undefined, undefined],
      ["OPTIONS", `${ORIGIN_URL}/other`, "", undefined, undefined],
    ]);
    // The proof signs what was sent: no body.
    for (const f of origin.requests) expect(await cameThroughTollbooth(f, SECRET, now)).toBe(true);
    // A POST to another path keeps its body, as before.
    await send(
      new Request(`${GW}/other`, { method: "POST", headers: { "cf-connecting-ip": ip, "content-type": "text/plain" }, body: "kept" }),
    );
    expect([origin.requests.at(-1)!.body, origin.requests.at(-1)!.headers["content-type"]]).toEqual(["kept", "text/plain"]);
  });
});

describe("the origin's answer", () => {
  it("is passed through: status, headers, body; plus the rate-limit fields", async () => {
    observeOrigin(
      () =>
        new Response('{"jsonrpc":"2.0","id":1,"result":{"x":1}}', {
          status: 202,
          headers: { "content-type": "application/json", "mcp-session-id": "from-origin", "x-origin": "yes" },
        }),
    );
    const res = await gateway()(post(toolCall(1), { ip }));
    expect(res.status).toBe(202);
    expect(res.headers.get("mcp-session-id")).toBe("from-origin");
    expect(res.headers.get("x-origin")).toBe("yes");
    expect(res.headers.get("ratelimit")).toMatch(/^"free";r=9;t=2, "ceiling";r=59;t=1$/);
    expect(await res.text()).toBe('{"jsonrpc":"2.0","id":1,"result":{"x":1}}');
  });

  it("passes the origin's own 401 with WWW-Authenticate through untouched (OAuth keeps working)", async () => {
    const challenge = 'Bearer resource_metadata="https://origin.example/.well-known/oauth-protected-resource"';
    observeOrigin(() => new Response("unauthorized", { status: 401, headers: { "www-authenticate": challenge } }));
    const res = await gateway()(post(toolCall(1), { ip }));
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(challenge);
    expect(await res.text()).toBe("unauthorized");
  });

  it("streams SSE event by event, with X-Accel-Buffering: no", async () => {
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const stream = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    observeOrigin(() => new Response(stream, { status: 200, headers: { "content-type": "text/event-stream" } }));
    controller.enqueue(new TextEncoder().encode("event: message\ndata: 1\n\n"));
    // A gateway that buffered the stream would not answer before the origin closes it.
    const res = await gateway({})(request("GET", "/mcp", { ip, headers: { accept: "text/event-stream" } }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("x-accel-buffering")).toBe("no");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    expect(decoder.decode((await reader.read()).value)).toBe("event: message\ndata: 1\n\n");
    controller.enqueue(new TextEncoder().encode("event: message\ndata: 2\n\n"));
    expect(decoder.decode((await reader.read()).value)).toBe("event: message\ndata: 2\n\n");
    controller.close();
    expect((await reader.read()).done).toBe(true);
  });

  it("502 with a JSON-RPC error carrying the request id when the origin cannot be reached; the request is not charged", async () => {
    let down = true;
    const origin = observeOrigin(() => {
      if (down) throw new TypeError("connect ECONNREFUSED");
      return new Response('{"jsonrpc":"2.0","id":78,"result":{}}', { status: 200, headers: { "content-type": "application/json" } });
    });
    const send = gateway({ bucket: { capacity: 2, refillPerSecond: 0.001 } });
    const res = await send(post(toolCall(77), { ip }));
    expect(res.status).toBe(502);
    const body = await errorBody(res);
    expect(body.id).toBe(77);
    expect(body.error.code).toBe(502);
    // The refund went back to the free bucket: two more requests fit in a bucket of 2.
    down = false;
    const next = await send(post(toolCall(78), { ip }));
    expect(next.status).toBe(200);
    expect(next.headers.get("ratelimit")).toMatch(/^"free";r=1;/);
    expect((await send(post(toolCall(79), { ip }))).status).toBe(200);
    expect((await send(post(toolCall(80), { ip }))).status).toBe(402);
    expect(origin.requests).toHaveLength(3);
  });

  it("504 when the origin does not answer within originTimeoutMs", async () => {
    vi.useRealTimers(); // the timeout runs on real time
    observeOrigin(
      (_f, signal) =>
        new Promise<Response>((_resolve, reject) => {
          signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        }),
    );
    const started = Date.now();
    const res = await gateway({ originTimeoutMs: 150 })(post(toolCall("slow"), { ip }));
    expect(res.status).toBe(504);
    const body = await errorBody(res);
    expect(body.id).toBe("slow");
    expect(body.error.code).toBe(504);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
  });
});

/** An origin SSE body: sends `chunks` one per read, then errors as a reset connection does. */
function resettingStream(chunks: string[]): ReadableStream<Uint8Array> {
  const queue = [...chunks];
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = queue.shift();
      if (next === undefined) controller.error(new TypeError("Network connection lost."));
      else controller.enqueue(new TextEncoder().encode(next));
    },
  });
}

/** The JSON-RPC messages of the `message` events of an SSE text. */
function sseMessages(text: string): unknown[] {
  return text
    .split("\n\n")
    .filter((e) => e.trim() !== "")
    .map((e) => {
      const lines = e.split("\n");
      expect(lines).toContain("event: message");
      return JSON.parse(
        lines
          .filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6))
          .join("\n"),
      );
    });
}

const SSE = { status: 200, headers: { "content-type": "text/event-stream" } };
const resetError = (id: unknown) => ({ jsonrpc: "2.0", id, error: { code: 502, message: "origin reset the stream before answering" } });

describe("an origin that resets an SSE answer before answering", () => {
  it("the caller gets a JSON-RPC error event for its request id, after what the origin sent, and the stream ends", async () => {
    const progress = { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 1, progress: 1 } };
    observeOrigin(() => new Response(resettingStream([`event: message\ndata: ${JSON.stringify(progress)}\n\n`]), SSE));
    const res = await gateway()(post(toolCall(41), { ip, headers: { accept: "application/json, text/event-stream" } }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const text = await res.text(); // resolves: the stream ends normally
    expect(text.startsWith(`event: message\ndata: ${JSON.stringify(progress)}\n\n`)).toBe(true);
    expect(sseMessages(text)).toEqual([progress, resetError(41)]);
  });

  it("in a batch, only the requests the origin had not answered get the error; a half-sent event is dropped", async () => {
    const answered = { jsonrpc: "2.0", id: 1, result: { content: [] } };
    observeOrigin(
      () =>
        new Response(
          resettingStream([
            `id: e1\r\nevent: message\r\ndata: ${JSON.stringify(answered)}\r\n\r\n`,
            `event: message\ndata: {"jsonrpc":"2.0","id":"2","res`, // cut mid-event
          ]),
          SSE,
        ),
    );
    const batch = [toolCall(1), toolCall("2"), { jsonrpc: "2.0", method: "notifications/initialized" }, toolCall(3)];
    const res = await gateway()(post(batch, { ip }));
    const text = await res.text();
    expect(text).not.toContain('"id":"2","res');
    expect(text.startsWith(`id: e1\r\nevent: message\r\ndata: ${JSON.stringify(answered)}\r\n\r\n`)).toBe(true);
    const appended = sseMessages(text.slice(text.indexOf("\r\n\r\n") + 4));
    expect(appended).toEqual([resetError("2"), resetError(3)]);
  });

  it('in a batch, a request answered before the reset gets nothing more (the id 1 and the id "1" are told apart)', async () => {
    const answered = [{ jsonrpc: "2.0", id: 1, result: {} }];
    const first = `event: message\ndata: ${JSON.stringify(answered)}\n\n`;
    observeOrigin(() => new Response(resettingStream([first]), SSE));
    const one = await (await gateway()(post([toolCall(1)], { ip }))).text();
    expect(one).toBe(first);
    const other = await (await gateway()(post([toolCall("1")], { ip }))).text();
    expect(sseMessages(other)).toEqual([answered, resetError("1")]);
  });

  it("a single request is piped untouched: its answer comes through as sent, and a reset after it adds an error answer for the same id", async () => {
    const answered = { jsonrpc: "2.0", id: 7, result: { content: [] } };
    const first = `event: message\ndata: ${JSON.stringify(answered)}\n\n`;
    observeOrigin(() => new Response(resettingStream([first]), SSE));
    const text = await (await gateway()(post(toolCall(7), { ip }))).text();
    expect(text.startsWith(first)).toBe(true);
    expect(sseMessages(text)).toEqual([answered, resetError(7)]);
  });

  it("a single request cut mid-event: the half event is closed by a blank line, then the error answer follows", async () => {
    observeOrigin(() => new Response(resettingStream([`event: message\ndata: {"jsonrpc":"2.0","id":9,"res`]), SSE));
    const text = await (await gateway()(post(toolCall(9), { ip }))).text();
    const events = text.split("\n\n").filter((e) => e.trim() !== "");
    expect(events[0]).toBe(`event: message\ndata: {"jsonrpc":"2.0","id":9,"res`); // unparseable: a client drops it
    expect(JSON.parse(events[1]!.split("data: ")[1]!)).toEqual(resetError(9));
  });

  it("a stream the origin ends normally, even unanswered, is passed through unchanged", async () => {
    const events = `event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n`;
    observeOrigin(() => new Response(events, SSE));
    expect(await (await gateway()(post(toolCall(8), { ip }))).text()).toBe(events);
  });

  it("a GET stream (no request to answer) that resets is passed through as reset: the client reconnects", async () => {
    observeOrigin(() => new Response(resettingStream(["event: message\ndata: {}\n\n"]), SSE));
    const res = await gateway()(request("GET", "/mcp", { ip, headers: { accept: "text/event-stream" } }));
    await expect(res.text()).rejects.toThrow();
  });
});
