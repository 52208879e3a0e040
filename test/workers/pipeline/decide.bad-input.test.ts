/**
 * Requests the gateway refuses before any accounting (docs/wire-contract.md §7): 413, 415,
 * 400 (−32700 / −32600 / −32020), 403 for a foreign Origin, and 500 for a misconfigured
 * gateway naming the bad setting. None reaches the origin; none is charged.
 */
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import { errorBody, freezeTime, freshIp, GW, gateway, ipIdentity, observeOrigin, post, request, rows, rpc, toolCall } from "../support.ts";

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
const gw = gateway();

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  origin = observeOrigin();
});

/** Nothing reached the origin and the caller's Durable Object holds no state. */
async function untouched(): Promise<void> {
  expect(origin.requests).toHaveLength(0);
  expect(await rows(ipIdentity(ip), "buckets")).toEqual([]);
}

/** A JSON-RPC error response with this HTTP status and error.code. */
async function expectError(res: Response, status: number, code: number, id: unknown = null) {
  expect(res.status).toBe(status);
  const body = await errorBody(res);
  expect(body.error.code).toBe(code);
  expect(body.id).toEqual(id);
  expect(typeof body.error.message).toBe("string");
  return body;
}

/** A body of exactly `n` bytes that is valid JSON-RPC. */
function jsonOfSize(n: number): string {
  const base = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { pad: "" } } });
  return base.replace('"pad":""', `"pad":"${"x".repeat(n - base.length)}"`);
}

/** A body stream (no Content-Length: sent chunked). */
function stream(text: string, chunk = 1000): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunk));
      at += chunk;
    },
  });
}

describe("413 Payload Too Large", () => {
  const small = gateway({ maxBodyBytes: 2048 });

  it("by Content-Length", async () => {
    const body = jsonOfSize(2049);
    const req = post(body, { ip, headers: { "content-length": "2049" } });
    const err = await expectError(await small(req), 413, 413);
    expect(err.error.data).toMatchObject({ maxBodyBytes: 2048 });
    await untouched();
  });

  it("by Content-Length through the Worker binding (Content-Length set by the runtime)", async () => {
    // Default maxBodyBytes: 1 MiB.
    const res = await gw(post(jsonOfSize(1024 * 1024 + 1), { ip }));
    await expectError(res, 413, 413);
    await untouched();
  });

  it("a declared Content-Length above the limit is refused without reading the body", async () => {
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        controller.enqueue(new TextEncoder().encode("x".repeat(1000)));
      },
    });
    const req = new Request(`${GW}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-length": "5000", "cf-connecting-ip": ip },
      body,
    });
    await expectError(await small(req), 413, 413);
    expect(pulled).toBeLessThanOrEqual(1); // at most the stream's initial pull: nothing was read
    await untouched();
  });

  it("without Content-Length (chunked body), stopping at the limit", async () => {
    let pulled = 0;
    const bytes = new TextEncoder().encode(jsonOfSize(100_000));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled >= bytes.length) return controller.close();
        controller.enqueue(bytes.slice(pulled, pulled + 1000));
        pulled += 1000;
      },
    });
    const req = new Request(`${GW}/mcp`, { method: "POST", headers: { "content-type": "application/json", "cf-connecting-ip": ip }, body });
    expect(req.headers.get("content-length")).toBeNull();
    await expectError(await small(req), 413, 413);
    expect(pulled).toBeLessThan(10_000);
    await untouched();
  });

  it("a body of exactly maxBodyBytes is accepted, by Content-Length and chunked", async () => {
    const exact = jsonOfSize(2048);
    expect((await small(post(exact, { ip }))).status).toBe(200);
    const chunked = new Request(`${GW}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", "cf-connecting-ip": ip },
      body: stream(exact),
    });
    expect((await small(chunked)).status).toBe(200);
    expect(origin.requests.map((r) => r.body)).toEqual([exact, exact]);
  });

  it("applies to other paths too", async () => {
    const req = new Request(`${GW}/upload`, { method: "PUT", headers: { "cf-connecting-ip": ip }, body: "x".repeat(4096) });
    await expectError(await small(req), 413, 413);
    await untouched();
  });
});

describe("415 Unsupported Media Type", () => {
  it("for a POST body that is not application/json", async () => {
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]) {
      await expectError(await gw(post(toolCall(1), { ip, contentType: type })), 415, 415);
    }
    await expectError(await gw(post(toolCall(1), { ip, contentType: null })), 415, 415);
    await untouched();
  });

  it("accepts application/json with parameters and in any case", async () => {
    expect((await gw(post(toolCall(1), { ip, contentType: "application/json; charset=utf-8" }))).status).toBe(200);
    expect((await gw(post(toolCall(2), { ip, contentType: "Application/JSON" }))).status).toBe(200);
  });
});

describe("400 Bad Request", () => {
  it("−32700 for a body that is not JSON", async () => {
    for (const body of ["{", "not json", "", '{"jsonrpc":"2.0",}']) {
      await expectError(await gw(post(body, { ip })), 400, -32700);
    }
    await untouched();
  });

  it("−32700 for a body that is not UTF-8", async () => {
    const prefix = new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"');
    const suffix = new TextEncoder().encode('"}}');
    const bytes = new Uint8Array([...prefix, 0xff, 0xfe, 0xc3, ...suffix]);
    await expectError(await gw(post(bytes, { ip })), 400, -32700);
    await untouched();
  });

  it("−32600 for an empty batch and for JSON that is not JSON-RPC 2.0", async () => {
    for (const body of [
      [],
      {},
      { jsonrpc: "1.0", id: 1, method: "x" },
      { jsonrpc: "2.0", id: {}, method: "x" },
      [toolCall(1), 5],
      '"a string"',
    ]) {
      await expectError(await gw(post(body, { ip })), 400, -32600);
    }
    await untouched();
  });

  it("−32020 when Mcp-Method does not match the body, with the request's id", async () => {
    const res = await gw(post(toolCall(7, "echo"), { ip, headers: { "mcp-method": "tools/list" } }));
    await expectError(res, 400, -32020, 7);
    await untouched();
  });

  it("−32020 when Mcp-Name does not match the body", async () => {
    const res = await gw(post(toolCall("n", "echo"), { ip, headers: { "mcp-method": "tools/call", "mcp-name": "add" } }));
    await expectError(res, 400, -32020, "n");
    await untouched();
  });

  it("matching Mcp-Method / Mcp-Name headers go through", async () => {
    const res = await gw(post(toolCall(7, "echo"), { ip, headers: { "mcp-method": "tools/call", "mcp-name": "echo" } }));
    expect(res.status).toBe(200);
    const read = await gw(
      post(rpc("resources/read", { uri: "file:///a" }, 8), { ip, headers: { "mcp-method": "resources/read", "mcp-name": "file:///a" } }),
    );
    expect(read.status).toBe(200);
    expect(origin.requests).toHaveLength(2);
  });
});

describe("403 Forbidden Origin", () => {
  it("refuses a foreign Origin on the MCP endpoint and on tollbooth's own endpoints", async () => {
    await expectError(await gw(post(toolCall(1), { ip, headers: { origin: "http://evil.example" } })), 403, 403);
    await expectError(await gw(request("GET", "/mcp", { ip, headers: { origin: "http://evil.example" } })), 403, 403);
    await expectError(
      await gw(request("GET", "/.well-known/tollbooth/challenge", { ip, headers: { origin: "http://evil.example" } })),
      403,
      403,
    );
    // Same host on another scheme or port is another origin.
    await expectError(await gw(post(toolCall(1), { ip, headers: { origin: "https://gw.test" } })), 403, 403);
    await expectError(await gw(post(toolCall(1), { ip, headers: { origin: "http://gw.test:8080" } })), 403, 403);
    await untouched();
  });

  it("allows the gateway's own origin and requests without Origin", async () => {
    expect((await gw(post(toolCall(1), { ip, headers: { origin: GW } }))).status).toBe(200);
    expect((await gw(post(toolCall(2), { ip }))).status).toBe(200);
    expect(origin.requests).toHaveLength(2);
  });

  it('allows the origins listed in allowedOrigins, and any with "*"', async () => {
    const listed = gateway({ allowedOrigins: ["https://app.example"] });
    expect((await listed(post(toolCall(1), { ip, headers: { origin: "https://app.example" } }))).status).toBe(200);
    await expectError(await listed(post(toolCall(2), { ip, headers: { origin: "https://other.example" } })), 403, 403);
    const any = gateway({ allowedOrigins: ["*"] });
    expect((await any(post(toolCall(3), { ip, headers: { origin: "https://other.example" } }))).status).toBe(200);
  });
});

describe("503 when the rate-limit state is unavailable", () => {
  it("fails closed: nothing reaches the origin", async () => {
    const broken = {
      idFromName: (name: string) => env.CALLER_BUCKET.idFromName(name),
      get: () => ({
        admit: () => Promise.reject(new Error("Durable Object reset")),
        redeem: () => Promise.reject(new Error("Durable Object reset")),
        status: () => Promise.reject(new Error("Durable Object reset")),
      }),
    } as unknown as typeof env.CALLER_BUCKET;
    // (A policy of its own: the Worker caches its app per policy/secrets/origin, not per binding.)
    const send = gateway({ realm: "fail-closed" }, { CALLER_BUCKET: broken });
    const res = await send(post(toolCall(5), { ip }));
    const body = await expectError(res, 503, 503, 5);
    expect(body.error.message).toMatch(/unavailable/i);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("500 misconfiguration", () => {
  async function misconfigured(send: (r: Request) => Promise<Response>, names: string): Promise<void> {
    const res = await send(post(toolCall(1), { ip }));
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
    const text = await res.text();
    expect(text).toContain(names);
    // Every request is answered the same way, tollbooth's own endpoints included.
    expect((await send(request("GET", "/.well-known/tollbooth", { ip }))).status).toBe(500);
    await untouched();
  }

  it("names the bad policy field", async () => {
    await misconfigured(gateway({ bucket: { capacity: 0, refillPerSecond: 1 } }), "TOLLBOOTH_POLICY.bucket.capacity");
    await misconfigured(gateway({ challenge: { difficulty: 40 } }), "TOLLBOOTH_POLICY.challenge.difficulty");
    await misconfigured(gateway({ ceiling: { capacity: 10, refillPerSecond: -1 } }), "TOLLBOOTH_POLICY.ceiling.refillPerSecond");
    await misconfigured(gateway({ identity: { strategies: ["cookie"] } }), "TOLLBOOTH_POLICY.identity.strategies");
  });

  it("names an unknown policy field", async () => {
    await misconfigured(gateway({ bucket: { capacity: 5, refillPerSecond: 1, burst: 3 } }), "TOLLBOOTH_POLICY.bucket.burst");
    await misconfigured(gateway({ bukket: {} }), "TOLLBOOTH_POLICY.bukket");
  });

  it("names a cost that exceeds the bucket capacity", async () => {
    await misconfigured(
      gateway({ bucket: { capacity: 5, refillPerSecond: 1 }, costs: { tools: { huge: 6 } } }),
      "TOLLBOOTH_POLICY.costs.tools.huge",
    );
  });

  it("says when TOLLBOOTH_POLICY is not JSON", async () => {
    await misconfigured(gateway(undefined, { TOLLBOOTH_POLICY: "{bucket:" }), "TOLLBOOTH_POLICY");
  });

  it("names a missing secret and a bad ORIGIN_URL", async () => {
    await misconfigured(gateway(undefined, { TOLLBOOTH_SECRET: "" }), "TOLLBOOTH_SECRET");
    await misconfigured(gateway(undefined, { ORIGIN_URL: "not a url" }), "ORIGIN_URL");
    await misconfigured(gateway(undefined, { ORIGIN_URL: "ftp://origin.example" }), "ORIGIN_URL");
  });

  it("names a TOLLBOOTH_SECRET shorter than 16 bytes (like every other bad setting)", async () => {
    await misconfigured(gateway(undefined, { TOLLBOOTH_SECRET: "too-short" }), "TOLLBOOTH_SECRET");
  });

  it("names a TOLLBOOTH_SECRET made of separators only", async () => {
    await misconfigured(gateway(undefined, { TOLLBOOTH_SECRET: " , " }), "TOLLBOOTH_SECRET");
  });

  it("names a TOLLBOOTH_ORIGIN_SECRET shorter than 16 bytes, and charges no caller for it", async () => {
    const send = gateway(undefined, { TOLLBOOTH_ORIGIN_SECRET: "too-short" });
    const res = await send(post(toolCall(1), { ip }));
    const text = await res.text();
    const charged = (await rows<{ name: string; tokens: number }>(ipIdentity(ip), "buckets")).find((r) => r.name === "free");
    expect({
      status: res.status,
      json: (res.headers.get("content-type") ?? "").startsWith("application/json"),
      namesSetting: text.includes("TOLLBOOTH_ORIGIN_SECRET"),
      freeUnitsLeft: charged?.tokens ?? 10,
    }).toEqual({ status: 500, json: true, namesSetting: true, freeUnitsLeft: 10 });
    expect(origin.requests).toHaveLength(0);
  });
});
