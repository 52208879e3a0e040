/**
 * JSON-RPC bodies as the gateway prices them (shared/jsonrpc.ts): `parseBody` reads a request,
 * a batch or a response, or answers −32700 / −32600 (nesting bounded before `JSON.parse`);
 * `bodyCost` prices each message by method and tool; `errorPayload` answers every request id.
 */
import { describe, expect, it, vi } from "vitest";
import {
  bodyCost,
  DEFAULT_MAX_DEPTH,
  ErrorCode,
  errorPayload,
  isBodyError,
  nestingExceeds,
  type ParsedBody,
  parseBody,
  requestIds,
} from "../../../shared/jsonrpc.ts";
import { parsePolicy } from "../../../workers/schemes/policy.ts";

const enc = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

function parsed(value: unknown): ParsedBody {
  const result = parseBody(enc(value));
  if (isBodyError(result)) throw new Error(`unexpected body error: ${result.message}`);
  return result;
}

const policy = parsePolicy({
  bucket: { capacity: 100, refillPerSecond: 1 },
  costs: {
    default: 2,
    methods: { "tools/call": 3, "resources/read": 4 },
    tools: { search: 7, free_tool: 0 },
  },
});

const req = (id: number | string | null, method: string, params?: unknown) => ({
  jsonrpc: "2.0",
  id,
  method,
  ...(params === undefined ? {} : { params }),
});
const note = (method: string, params?: unknown) => ({ jsonrpc: "2.0", method, ...(params === undefined ? {} : { params }) });

describe("parseBody", () => {
  it("reads a single request", () => {
    const body = parsed(req(1, "tools/call", { name: "search", arguments: { q: "x" } }));
    expect(body.batch).toBe(false);
    expect(body.messages).toEqual([{ id: 1, method: "tools/call", name: "search" }]);
  });

  it("reads a batch, in order", () => {
    const body = parsed([req("a", "tools/list"), note("notifications/initialized"), req(2, "ping")]);
    expect(body.batch).toBe(true);
    expect(body.messages.map((m) => m.method)).toEqual(["tools/list", "notifications/initialized", "ping"]);
    expect(body.messages.map((m) => m.id)).toEqual(["a", undefined, 2]);
  });

  it("treats a one-element array as a batch", () => {
    expect(parsed([req(1, "ping")]).batch).toBe(true);
  });

  it("reads the resource URI of resources/read and the name of prompts/get", () => {
    expect(parsed(req(1, "resources/read", { uri: "file:///a" })).messages[0]!.name).toBe("file:///a");
    expect(parsed(req(1, "prompts/get", { name: "p" })).messages[0]!.name).toBe("p");
  });

  it("reads responses (client answering the server), which have no method", () => {
    const body = parsed([
      { jsonrpc: "2.0", id: 5, result: {} },
      { jsonrpc: "2.0", id: 6, error: { code: 1, message: "x" } },
    ]);
    expect(body.messages).toEqual([{ id: 5 }, { id: 6 }]);
  });

  it("answers an empty batch with -32600", () => {
    const result = parseBody(enc("[]"));
    expect(isBodyError(result)).toBe(true);
    expect(result).toMatchObject({ code: -32600 });
    expect(ErrorCode.InvalidRequest).toBe(-32600);
  });

  it("answers invalid JSON with -32700", () => {
    for (const text of ["", "{", '{"jsonrpc":"2.0",}', "nul", "{'a':1}"]) {
      const result = parseBody(enc(text));
      expect(isBodyError(result), text).toBe(true);
      expect(result, text).toMatchObject({ code: -32700 });
    }
    expect(ErrorCode.ParseError).toBe(-32700);
  });

  it("answers invalid UTF-8 with -32700, even inside a JSON string", () => {
    const prefix = new TextEncoder().encode('{"jsonrpc":"2.0","id":1,"method":"a');
    const suffix = new TextEncoder().encode('"}');
    for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
      const bytes = new Uint8Array([...prefix, ...bad, ...suffix]);
      expect(parseBody(bytes), JSON.stringify(bad)).toMatchObject({ code: -32700 });
    }
  });

  it("accepts an ArrayBuffer as well as a Uint8Array", () => {
    const bytes = enc(req(1, "ping"));
    const body = parseBody(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    expect(isBodyError(body)).toBe(false);
  });

  it("answers anything that is not JSON-RPC 2.0 with -32600", () => {
    const bad: unknown[] = [
      { id: 1, method: "ping" },
      { jsonrpc: "1.0", id: 1, method: "ping" },
      { jsonrpc: 2, id: 1, method: "ping" },
      { jsonrpc: "2.0", id: 1, method: 5 },
      { jsonrpc: "2.0", id: { x: 1 }, method: "ping" },
      { jsonrpc: "2.0", id: [1], method: "ping" },
      { jsonrpc: "2.0", id: true, method: "ping" },
      { jsonrpc: "2.0", id: 1, method: "ping", params: "x" },
      { jsonrpc: "2.0", id: 1, method: "ping", params: 3 },
      { jsonrpc: "2.0", id: 1, method: "ping", params: null },
      { jsonrpc: "2.0", id: 1 },
      { jsonrpc: "2.0" },
      '"ping"',
      "42",
      "null",
      "true",
      [[req(1, "ping")]],
      [req(1, "ping"), 1],
      [req(1, "ping"), { jsonrpc: "1.0", id: 2, method: "ping" }],
    ];
    for (const value of bad) expect(parseBody(enc(value)), JSON.stringify(value)).toMatchObject({ code: -32600 });
  });

  it("accepts ids that are strings, numbers or null, and params that are objects or arrays", () => {
    for (const id of ["x", 0, -1, 1.5, null]) expect(parsed(req(id as never, "ping")).messages[0]!.id).toBe(id);
    expect(parsed(req(1, "ping", [1, 2])).messages[0]).toEqual({ id: 1, method: "ping" });
  });
});

describe("bodyCost", () => {
  it("prices a single request by its method", () => {
    expect(bodyCost(policy, parsed(req(1, "resources/read", { uri: "u" })))).toBe(4);
    expect(bodyCost(policy, parsed(req(1, "sampling/createMessage")))).toBe(2);
  });

  it("prices tools/call per tool, falling back to the tools/call cost", () => {
    expect(bodyCost(policy, parsed(req(1, "tools/call", { name: "search" })))).toBe(7);
    expect(bodyCost(policy, parsed(req(1, "tools/call", { name: "free_tool" })))).toBe(0);
    expect(bodyCost(policy, parsed(req(1, "tools/call", { name: "other" })))).toBe(3);
    expect(bodyCost(policy, parsed(req(1, "tools/call")))).toBe(3);
  });

  it("does not take a tool price from a name that is not a string", () => {
    expect(bodyCost(policy, parsed(req(1, "tools/call", { name: ["search"] })))).toBe(3);
  });

  it("charges notifications like requests, with notifications/* free by default", () => {
    expect(bodyCost(policy, parsed(note("notifications/initialized")))).toBe(0);
    expect(bodyCost(policy, parsed(note("notifications/cancelled", { requestId: 1 })))).toBe(0);
    // A notification outside the wildcard costs like any method.
    expect(bodyCost(policy, parsed(note("custom/ping")))).toBe(2);
    const priced = parsePolicy({ costs: { methods: { "notifications/*": 1 } } });
    expect(bodyCost(priced, parsed(note("notifications/progress")))).toBe(1);
  });

  it("charges nothing for responses", () => {
    expect(bodyCost(policy, parsed({ jsonrpc: "2.0", id: 1, result: { content: [] } }))).toBe(0);
    expect(bodyCost(policy, parsed({ jsonrpc: "2.0", id: 1, error: { code: -1, message: "no" } }))).toBe(0);
  });

  it("sums a batch", () => {
    const body = parsed([
      req(1, "tools/call", { name: "search" }), // 7
      req(2, "resources/read", { uri: "u" }), // 4
      note("notifications/initialized"), // 0
      { jsonrpc: "2.0", id: 9, result: {} }, // 0
      req(3, "initialize"), // 0
      req(4, "x/y"), // 2
    ]);
    expect(bodyCost(policy, body)).toBe(13);
  });

  it("is an integer for any method name a client may send", () => {
    for (const method of ["constructor", "toString", "__proto__", "valueOf"]) {
      const cost = bodyCost(policy, parsed(req(1, method)));
      expect(Number.isInteger(cost), `${method} → ${String(cost)}`).toBe(true);
    }
  });
});

describe("requestIds", () => {
  it("lists the ids of requests only (not notifications or responses)", () => {
    const body = parsed([req(1, "a"), note("n"), { jsonrpc: "2.0", id: 7, result: 1 }, req("x", "b"), req(null, "c")]);
    expect(requestIds(body)).toEqual([1, "x", null]);
    expect(requestIds(null)).toEqual([]);
  });
});

describe("errorPayload", () => {
  it("answers a single request with its id", () => {
    expect(errorPayload(parsed(req(42, "tools/call")), 402, "Payment required")).toEqual({
      jsonrpc: "2.0",
      id: 42,
      error: { code: 402, message: "Payment required" },
    });
  });

  it("includes data only when given", () => {
    const withData = errorPayload(parsed(req("a", "x")), 429, "slow down", { retryAfter: 3 });
    expect(withData).toEqual({ jsonrpc: "2.0", id: "a", error: { code: 429, message: "slow down", data: { retryAfter: 3 } } });
    const without = errorPayload(parsed(req("a", "x")), 429, "slow down") as { error: object };
    expect("data" in without.error).toBe(false);
  });

  it("answers a batch with an array, one response per request id", () => {
    const body = parsed([req(1, "a"), note("n"), req("two", "b")]);
    const out = errorPayload(body, 402, "pay");
    expect(Array.isArray(out)).toBe(true);
    expect(out).toEqual([
      { jsonrpc: "2.0", id: 1, error: { code: 402, message: "pay" } },
      { jsonrpc: "2.0", id: "two", error: { code: 402, message: "pay" } },
    ]);
  });

  it("answers with id null when no id can be read", () => {
    const expected = { jsonrpc: "2.0", id: null, error: { code: -32700, message: "bad" } };
    expect(errorPayload(null, -32700, "bad")).toEqual(expected);
    expect(errorPayload(parsed(note("n")), -32700, "bad")).toEqual(expected);
    expect(errorPayload(parsed([note("n"), { jsonrpc: "2.0", id: 3, result: 1 }]), -32700, "bad")).toEqual(expected);
  });

  it("keeps HTTP-status error codes outside the JSON-RPC and MCP reserved ranges", () => {
    for (const [name, code] of Object.entries(ErrorCode)) {
      if (code === ErrorCode.ParseError || code === ErrorCode.InvalidRequest || code === ErrorCode.HeaderMismatch) continue;
      expect(code >= -32768 && code <= -32000, name).toBe(false);
    }
  });
});

describe("nesting depth is bounded before parsing", () => {
  /** A valid request whose `params.arguments.x` holds `arrays` nested arrays: depth 3 + arrays. */
  const nested = (arrays: number) =>
    `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"x":${"[".repeat(arrays)}${"]".repeat(arrays)}}}}`;

  it("accepts exactly maxDepth levels (64 by default) and refuses one more with −32600 naming the limit", () => {
    expect(DEFAULT_MAX_DEPTH).toBe(64);
    expect(bodyCost(policy, parsed(nested(61)))).toBe(7);
    expect(parseBody(enc(nested(62)))).toEqual({ code: ErrorCode.InvalidRequest, message: "Invalid Request: nesting deeper than 64" });
    expect(isBodyError(parseBody(enc(nested(2)), 5))).toBe(false);
    expect(parseBody(enc(nested(3)), 5)).toEqual({ code: -32600, message: "Invalid Request: nesting deeper than 5" });
    // A batch is one level more.
    expect(isBodyError(parseBody(enc(`[${nested(1)}]`), 5))).toBe(false);
    expect(parseBody(enc(`[${nested(2)}]`), 5)).toMatchObject({ code: -32600 });
  });

  it("counts depth, not the number of containers", () => {
    const wide = `{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":[${Array.from({ length: 5000 }, () => "[[{}]]").join(",")}]}}`;
    expect(isBodyError(parseBody(enc(wide), 6))).toBe(false);
    expect(parseBody(enc(wide), 5)).toMatchObject({ code: -32600 });
  });

  it("brackets inside strings do not count, escaped quotes included", () => {
    const tricky = ['"[[[[[[[[[["', '"\\"[[[[[[[[[["', '"\\\\"', '"{{{{{{\\\\\\"[[[[[["', '"\\u005b[[[[[[[[["'];
    for (const s of tricky) {
      const text = `{"jsonrpc":"2.0","id":1,"method":"m","params":{"s":${s},"t":[1]}}`;
      expect(JSON.parse(text).params.t, s).toEqual([1]);
      expect(isBodyError(parseBody(enc(text), 3)), s).toBe(false);
      expect(nestingExceeds(enc(text), 3), s).toBe(false);
      expect(nestingExceeds(enc(text), 2), s).toBe(true);
    }
    // A backslash-escaped backslash ends before the quote: the quote closes the string.
    expect(nestingExceeds(enc('["\\\\",[[]]]'), 2)).toBe(true);
    expect(nestingExceeds(enc('["\\\\",[[]]]'), 3)).toBe(false);
    // Multi-byte UTF-8 inside strings and outside does not confuse the scan.
    expect(nestingExceeds(enc('{"é✓😀[":["😀{"]}'), 2)).toBe(false);
  });

  it("45,000 levels: refused by the depth scan, JSON.parse never called", () => {
    const spy = vi.spyOn(JSON, "parse");
    try {
      expect(parseBody(enc(nested(45_000)))).toMatchObject({ code: -32600, message: "Invalid Request: nesting deeper than 64" });
      expect(parseBody(enc("[".repeat(45_000)))).toMatchObject({ code: -32600 });
      expect(parseBody(enc(`${'{"a":'.repeat(45_000)}1${"}".repeat(45_000)}`))).toMatchObject({ code: -32600 });
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it("invalid UTF-8 within the limit is still −32700", () => {
    expect(parseBody(new Uint8Array([0x5b, 0xff, 0x5d]))).toMatchObject({ code: -32700 });
  });
});
