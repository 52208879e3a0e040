/**
 * The body step (workers/pipeline/body.ts): one reading, bounded in size and time, UTF-8
 * JSON only on the endpoint (refused before anything is read), parsed once with its nesting
 * bounded; the endpoint's methods; the clock read after the body arrived. And the MCP
 * headers step (workers/pipeline/mcp-headers.ts) on what it parsed.
 */
import { describe, expect, it } from "vitest";
import { body } from "../../../../workers/pipeline/body.ts";
import { mcpHeaders } from "../../../../workers/pipeline/mcp-headers.ts";
import type { Read } from "../../../../workers/pipeline/state.ts";
import { toJsonRpc } from "../../../../workers/refusal/json-rpc.ts";
import { Refusal } from "../../../../workers/refusal/refusal.ts";
import { arrival, depsFor, request, toolCall } from "./support.ts";

const deps = depsFor({ maxBodyBytes: 1024, bodyTimeoutMs: 100, maxJsonDepth: 4 });

/** The step's refusal, rendered as the endpoint answers it. */
async function answered(result: Read | Refusal): Promise<{ status: number; headers: Headers; json: any }> {
  expect(result).toBeInstanceOf(Refusal);
  const res = toJsonRpc(result as Refusal, null);
  return { status: res.status, headers: res.headers, json: await res.json() };
}

describe("the body: read once, parsed on the endpoint", () => {
  it("a tools/call: parsed, its bytes kept as read, its method and tool in the record with the clock", async () => {
    const sent = JSON.stringify(toolCall(7, "search"));
    const s = arrival(request("POST", "/mcp", { body: sent }));
    const before = Date.now();
    const read = (await body(s, deps)) as Read;
    expect(read.isEndpoint).toBe(true);
    expect(new TextDecoder().decode(read.rawBody!)).toBe(sent);
    expect(read.body!.messages[0]).toMatchObject({ method: "tools/call", name: "search", id: 7 });
    expect(read.nowMs).toBeGreaterThanOrEqual(before);
    expect(s.record).toEqual({ time: read.nowMs, rpc: "tools/call", tool: "search" });
  });

  it("every spelling an origin router may route to the endpoint is the endpoint", async () => {
    for (const path of ["/MCP", "/mcp/", "//mcp", "/%6Dcp"]) {
      const read = (await body(arrival(request("POST", path, { body: toolCall(1) })), deps)) as Read;
      expect(read.isEndpoint, path).toBe(true);
      expect(read.body, path).not.toBeNull();
    }
  });

  it("a path origins read differently is refused 400 invalid_path, before its body is read, on any method", async () => {
    for (const [method, path] of [
      ["POST", "/x/..%2Fmcp"],
      ["GET", "/x/%2e%2e%2fmcp"],
      ["DELETE", "/mcp%5C"],
      ["POST", "/mcp%zz"],
    ] as const) {
      const req = request(method, path, method === "POST" ? { body: toolCall(1) } : {});
      const s = arrival(req);
      const { status, json } = await answered(await body(s, deps));
      expect([path, status]).toEqual([path, 400]);
      expect(json.error).toMatchObject({ code: -32600, message: expect.stringMatching(/^Invalid path: /) });
      expect(req.bodyUsed, path).toBe(false);
      expect(s.record, path).toEqual({});
    }
  });

  it("another path: read (it is forwarded) but not parsed", async () => {
    const read = (await body(
      arrival(request("POST", "/upload", { body: "not json", headers: { "content-type": "text/plain" } })),
      deps,
    )) as Read;
    expect([read.isEndpoint, read.body, new TextDecoder().decode(read.rawBody!)]).toEqual([false, null, "not json"]);
  });

  it("the clock is read once the whole body has arrived (a trickled body cannot make a credential look fresh)", async () => {
    let lastChunkAt = 0;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        setTimeout(() => {
          lastChunkAt = Date.now();
          controller.enqueue(new TextEncoder().encode(JSON.stringify(toolCall(1))));
          controller.close();
        }, 40);
      },
    });
    const read = (await body(arrival(request("POST", "/mcp", { body: stream })), deps)) as Read;
    expect(lastChunkAt).toBeGreaterThan(0);
    expect(read.nowMs).toBeGreaterThanOrEqual(lastChunkAt);
  });
});

describe("the body: refused", () => {
  it("415 before reading a JSON-RPC POST in another charset: the body is left unread", async () => {
    const req = request("POST", "/mcp", { body: toolCall(1), headers: { "content-type": "application/json; charset=utf-7" } });
    const a = await answered(await body(arrival(req), deps));
    expect(a.status).toBe(415);
    expect(a.json.error.code).toBe(415);
    expect(a.json.error.message).toMatch(/utf-7/);
    expect(req.bodyUsed).toBe(false);
  });

  it("413 for a declared Content-Length above the limit, and for a body that grows past it", async () => {
    const declared = request("POST", "/mcp", { body: "{}", headers: { "content-length": "2048" } });
    const big = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array(800).fill(32));
        c.enqueue(new Uint8Array(800).fill(32));
        c.close();
      },
    });
    for (const req of [declared, request("POST", "/mcp", { body: big })]) {
      const a = await answered(await body(arrival(req), deps));
      expect(a.status).toBe(413);
      expect(a.json.error).toEqual({ code: 413, message: "Payload too large: the limit is 1024 bytes", data: { maxBodyBytes: 1024 } });
    }
  });

  it("408 for a body that does not arrive within bodyTimeoutMs", async () => {
    const stalled = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"jsonrpc":'));
      },
    });
    const a = await answered(await body(arrival(request("POST", "/mcp", { body: stalled })), deps));
    expect(a.status).toBe(408);
    expect(a.json.error).toEqual({
      code: 408,
      message: "Request timeout: the body did not arrive within 100 ms",
      data: { bodyTimeoutMs: 100 },
    });
  });

  it("400 for a body that is not JSON (-32700), nested deeper than maxJsonDepth or not JSON-RPC (-32600)", async () => {
    const cases: Array<[string, number]> = [
      ["{not json", -32700],
      ['{"a":[[[[1]]]]}', -32600],
      ['{"a":1}', -32600],
    ];
    for (const [sent, code] of cases) {
      const a = await answered(await body(arrival(request("POST", "/mcp", { body: sent })), deps));
      expect([a.status, a.json.error.code, a.json.id], sent).toEqual([400, code, null]);
    }
  });

  it("405 with Allow for a method the endpoint does not take", async () => {
    const a = await answered(await body(arrival(request("PUT", "/mcp")), deps));
    expect(a.status).toBe(405);
    expect(a.headers.get("allow")).toBe("POST, GET, DELETE, OPTIONS");
    expect(a.json.error.message).toBe("Method not allowed: PUT /mcp; use POST, GET, DELETE, OPTIONS");
  });
});

describe("the MCP headers", () => {
  const read = async (headers: Record<string, string>) =>
    (await body(arrival(request("POST", "/mcp", { body: toolCall(3, "search"), headers })), deps)) as Read;

  it("absent, or describing the body: the request goes on", async () => {
    for (const headers of [{}, { "mcp-method": "tools/call" }, { "mcp-method": "tools/call", "mcp-name": "search" }] as Array<
      Record<string, string>
    >) {
      const s = await read(headers);
      expect(mcpHeaders(s)).toBe(s);
    }
  });

  it("describing another method or tool: 400, error.code -32020, answered with the request's id", async () => {
    for (const [headers, message] of [
      [{ "mcp-method": "tools/list" }, "Header mismatch: Mcp-Method tools/list does not match the body"],
      [{ "mcp-name": "delete_everything" }, "Header mismatch: Mcp-Name delete_everything does not match the body"],
    ] as const) {
      const s = await read(headers);
      const refusal = mcpHeaders(s);
      expect(refusal).toBeInstanceOf(Refusal);
      const res = toJsonRpc(refusal as Refusal, s.body);
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 3, error: { code: -32020, message } });
    }
  });
});
