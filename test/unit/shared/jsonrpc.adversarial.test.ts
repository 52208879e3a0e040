/**
 * Generated hostile bodies against `parseBody` / `bodyCost` (shared/jsonrpc.ts): whatever
 * bytes a caller sends, the gateway either prices the call exactly as the origin will read
 * it, or answers −32700 / −32600 — it never throws and never prices a priced call at zero.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bodyCost, ErrorCode, isBodyError, type ParsedBody, parseBody } from "../../../shared/jsonrpc.ts";
import { methodCost, parsePolicy } from "../../../workers/schemes/policy.ts";

const enc = (text: string) => new TextEncoder().encode(text);
const policy = parsePolicy({
  bucket: { capacity: 50, refillPerSecond: 1 },
  costs: { default: 2, methods: { "tools/call": 3, "resources/read": 4 }, tools: { search: 7, free_tool: 0 } },
});
const RUNS = { numRuns: 300 };

function ok(result: ParsedBody | ReturnType<typeof parseBody>): ParsedBody {
  if (isBodyError(result)) throw new Error(`unexpected body error ${result.code}: ${result.message}`);
  return result;
}

/** A JSON tree whose objects are entry lists, so names may repeat. */
type Node =
  | { kind: "obj"; entries: Array<[string, Node]> }
  | { kind: "arr"; items: Node[] }
  | { kind: "leaf"; value: string | number | boolean | null };

const nameArb = fc.oneof(
  fc.constantFrom("method", "params", "name", "id", "jsonrpc", "__proto__", "constructor", "toString", "a", ""),
  fc.string({ maxLength: 6 }),
);
const { node: nodeArb } = fc.letrec<{ node: Node }>((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.record({
      kind: fc.constant("leaf" as const),
      value: fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constant(null)),
    }),
    fc.record({ kind: fc.constant("arr" as const), items: fc.array(tie("node"), { maxLength: 3 }) }),
    fc.record({ kind: fc.constant("obj" as const), entries: fc.array(fc.tuple(nameArb, tie("node")), { maxLength: 4 }) }),
  ),
}));

/** JSON text of a name, some characters written as `\uXXXX` escapes (a second spelling). */
function spell(name: string, escapeMask: number): string {
  let out = '"';
  [...name].forEach((ch, i) => {
    const code = ch.codePointAt(0)!;
    if (code <= 0xffff && (escapeMask >> (i % 30)) & 1) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += JSON.stringify(ch).slice(1, -1);
  });
  return `${out}"`;
}

function serialize(node: Node, mask: number, space: string): string {
  if (node.kind === "leaf") return JSON.stringify(node.value);
  if (node.kind === "arr") return `[${space}${node.items.map((n) => serialize(n, mask, space)).join(`,${space}`)}${space}]`;
  return `{${space}${node.entries.map(([k, v]) => `${spell(k, mask)}${space}:${space}${serialize(v, mask, space)}`).join(`,${space}`)}${space}}`;
}

function hasDuplicate(node: Node): boolean {
  if (node.kind === "leaf") return false;
  if (node.kind === "arr") return node.items.some(hasDuplicate);
  const names = node.entries.map(([k]) => k);
  return new Set(names).size !== names.length || node.entries.some(([, v]) => hasDuplicate(v));
}

/** What a JavaScript origin (JSON.parse, last name wins) acts on: the cost of that value. */
function originCost(text: string): number {
  const value = JSON.parse(text) as unknown;
  const items = (Array.isArray(value) ? value : [value]) as Array<Record<string, unknown>>;
  let total = 0;
  for (const m of items) {
    if (typeof m.method !== "string") continue;
    const params = (m.params ?? {}) as Record<string, unknown>;
    const name = m.method === "resources/read" ? params.uri : params.name;
    total += methodCost(policy, m.method, typeof name === "string" ? name : undefined);
  }
  return total;
}

describe("parseBody never throws", () => {
  it("on arbitrary bytes: a body, or −32700 / −32600", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const result = parseBody(bytes);
        if (isBodyError(result)) expect([ErrorCode.ParseError, ErrorCode.InvalidRequest]).toContain(result.code);
        else expect(Number.isSafeInteger(bodyCost(policy, result))).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it("on arbitrary JSON values: never −32700 (it is JSON), a cost that is a non-negative integer otherwise", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const result = parseBody(enc(JSON.stringify(value)));
        if (isBodyError(result)) expect(result.code).toBe(ErrorCode.InvalidRequest);
        else {
          const cost = bodyCost(policy, result);
          expect(Number.isSafeInteger(cost) && cost >= 0).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("on 10⁵ levels of nesting: −32600 under the depth limit; with the limit lifted, −32700 when unterminated, −32600 when closed, a correct cost inside params", () => {
    const depth = 100_000;
    for (const text of ["[".repeat(depth), "[".repeat(depth) + "]".repeat(depth)]) {
      expect(parseBody(enc(text))).toEqual({ code: ErrorCode.InvalidRequest, message: "Invalid Request: nesting deeper than 64" });
    }
    const lifted = depth + 10;
    expect(parseBody(enc("[".repeat(depth)), lifted)).toMatchObject({ code: ErrorCode.ParseError });
    expect(parseBody(enc("[".repeat(depth) + "]".repeat(depth)), lifted)).toMatchObject({ code: ErrorCode.InvalidRequest });
    expect(parseBody(enc(`${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`), lifted)).toMatchObject({ code: ErrorCode.InvalidRequest });
    const deep = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"x":${"[".repeat(depth)}${"]".repeat(depth)}}}}`;
    expect(bodyCost(policy, ok(parseBody(enc(deep), lifted)))).toBe(7);
  });

  it("on huge strings: a 1 MiB method name costs the default, a 1 MiB argument does not change the tool price", () => {
    const huge = "x".repeat(1 << 20);
    expect(bodyCost(policy, ok(parseBody(enc(JSON.stringify({ jsonrpc: "2.0", id: 1, method: huge })))))).toBe(2);
    const call = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search", arguments: { q: huge } } };
    expect(bodyCost(policy, ok(parseBody(enc(JSON.stringify(call)))))).toBe(7);
  });
});

describe("invalid UTF-8 anywhere is −32700", () => {
  const INVALID = [
    [0xff],
    [0xc0, 0x80],
    [0x80],
    [0xed, 0xa0, 0x80],
    [0xe2, 0x82],
    [0xf4, 0x90, 0x80, 0x80],
    [0xf8, 0x88, 0x80, 0x80, 0x80],
  ];
  it("inserted at any position of a valid priced call", () => {
    const body = enc(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search", arguments: { q: "é" } } }));
    fc.assert(
      fc.property(fc.nat(body.length), fc.constantFrom(...INVALID), (at, bad) => {
        const bytes = new Uint8Array([...body.subarray(0, at), ...bad, ...body.subarray(at)]);
        expect(parseBody(bytes)).toMatchObject({ code: ErrorCode.ParseError });
      }),
      RUNS,
    );
  });
});

describe("duplicate member names cannot split cost from forwarding", () => {
  it('regression: {"method":"ping","method":"tools/call"} is −32600, not a free ping', () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"search"}}';
    expect(parseBody(enc(body))).toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringContaining('"method"') });
  });

  it("regression: a second spelling of the name (\\u006dethod) is the same name", () => {
    const body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","n\\u0061me":"free_tool"}}';
    expect(parseBody(enc(body))).toMatchObject({ code: ErrorCode.InvalidRequest, message: expect.stringContaining('"name"') });
  });

  it("any body with a name repeated in any object is −32600; any other is priced as a JSON.parse origin reads it", () => {
    const messageArb = fc.record({
      method: fc.constantFrom("tools/call", "resources/read", "ping", "prompts/get", "notifications/x", "custom"),
      tool: fc.constantFrom("search", "free_tool", "other", "constructor", "__proto__"),
      extra: fc.array(fc.tuple(nameArb, nodeArb), { maxLength: 3 }),
      params: nodeArb,
      shadow: fc.boolean(),
    });
    let compared = 0;
    let duplicates = 0;
    fc.assert(
      fc.property(
        fc.array(messageArb, { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        fc.integer(),
        fc.constantFrom("", " ", "\n\t"),
        (msgs, batch, mask, space) => {
          const trees: Node[] = msgs.map((m, i) => {
            const paramEntries: Array<[string, Node]> = [
              [m.method === "resources/read" ? "uri" : "name", { kind: "leaf", value: m.tool }],
              ["arguments", m.params],
            ];
            if (m.shadow) paramEntries.push(["name", { kind: "leaf", value: "free_tool" }]);
            return {
              kind: "obj",
              entries: [
                ["jsonrpc", { kind: "leaf", value: "2.0" }],
                ["id", { kind: "leaf", value: i }],
                ["method", { kind: "leaf", value: m.method }],
                ["params", { kind: "obj", entries: paramEntries }],
                ...m.extra,
              ],
            };
          });
          const tree: Node = batch ? { kind: "arr", items: trees } : trees[0]!;
          const text = serialize(tree, mask, space);
          const result = parseBody(enc(text));
          if (hasDuplicate(tree)) {
            duplicates++;
            expect(result).toMatchObject({ code: ErrorCode.InvalidRequest });
            return;
          }
          // Without a repeated name every message is valid JSON-RPC (jsonrpc "2.0", a numeric id,
          // a string method, object params; the extra members take other names): it must be read
          // and priced, never refused.
          expect(isBodyError(result), JSON.stringify(result)).toBe(false);
          expect(bodyCost(policy, ok(result))).toBe(originCost(text));
          compared++;
        },
      ),
      { numRuns: 500 },
    );
    // Both branches were exercised: a parser refusing every body cannot pass on the duplicates alone.
    expect(compared).toBeGreaterThan(100);
    expect(duplicates).toBeGreaterThan(10);
  });
});

describe("a priced call is never free", () => {
  const idArb = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant(null));
  it("tools/call search costs 7 whatever id, extra params, member order and prototype-named members come with it", () => {
    fc.assert(
      fc.property(
        idArb,
        fc.dictionary(
          fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "arguments", "_meta"),
          fc.jsonValue(),
          { maxKeys: 4 },
        ),
        fc.boolean(),
        (id, extra, reverse) => {
          const entries: Array<[string, unknown]> = [
            ["jsonrpc", "2.0"],
            ["id", id],
            ["method", "tools/call"],
            ["params", { ...extra, name: "search" }],
          ];
          if (reverse) entries.reverse();
          const text = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`;
          const body = ok(parseBody(enc(text)));
          expect(bodyCost(policy, body)).toBe(7);
          expect(body.messages[0]!.id).toEqual(JSON.parse(JSON.stringify(id)));
        },
      ),
      RUNS,
    );
  });

  it("a batch of n priced calls costs their sum, never less", () => {
    const callArb = fc.constantFrom(
      ["tools/call", "search", 7],
      ["tools/call", "unpriced", 3],
      ["resources/read", "file:///x", 4],
      ["other/method", "", 2],
    );
    fc.assert(
      fc.property(fc.array(callArb, { minLength: 1, maxLength: 20 }), (calls) => {
        const batch = calls.map(([method, name], i) => ({
          jsonrpc: "2.0",
          id: i,
          method,
          params: method === "resources/read" ? { uri: name } : { name },
        }));
        const expected = calls.reduce((sum, [, , cost]) => sum + (cost as number), 0);
        expect(bodyCost(policy, ok(parseBody(enc(JSON.stringify(batch)))))).toBe(expected);
      }),
      RUNS,
    );
  });

  it("tool names that are Object.prototype members cost the tools/call price, not undefined or NaN", () => {
    for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "isPrototypeOf"]) {
      const text = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":${JSON.stringify(name)}}}`;
      expect(bodyCost(policy, ok(parseBody(enc(text))))).toBe(3);
    }
    const proto = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"name":"free_tool"}}}';
    expect(bodyCost(policy, ok(parseBody(enc(proto))))).toBe(3);
  });

  it("wrong types for method, params or params.name: −32600, or the price without a tool name — never 0", () => {
    let priced = 0;
    let refused = 0;
    const wrong = fc.oneof(
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.jsonValue(), { maxLength: 2 }),
      fc.dictionary(fc.string({ maxLength: 3 }), fc.jsonValue(), { maxKeys: 2 }),
    );
    fc.assert(
      fc.property(wrong, fc.constantFrom("method", "params", "name"), (value, where) => {
        const msg: Record<string, unknown> = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "search" } };
        if (where === "name") msg.params = { name: value };
        else msg[where] = value;
        const result = parseBody(enc(JSON.stringify(msg)));
        // JSON-RPC: method must be a string, params (when present) an object or an array.
        const invalid = where === "method" || (where === "params" && (value === null || typeof value !== "object"));
        if (invalid) {
          refused++;
          expect(result).toMatchObject({ code: ErrorCode.InvalidRequest });
          return;
        }
        // params an array or another object (no string "name"), or a name that is not a
        // string: a valid message priced as tools/call without a tool name.
        expect(isBodyError(result), JSON.stringify(result)).toBe(false);
        expect(bodyCost(policy, ok(result))).toBe(3);
        priced++;
      }),
      RUNS,
    );
    expect(priced).toBeGreaterThan(50);
    expect(refused).toBeGreaterThan(20);
  });
});
