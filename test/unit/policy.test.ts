import { describe, expect, it } from "vitest";
import { DEFAULT_METHOD_COSTS, methodCost, parsePolicy } from "../../shared/policy.ts";

/** The TypeError message parsePolicy throws for `input`. */
function errorOf(input: unknown): string {
  try {
    parsePolicy(input);
  } catch (err) {
    expect(err).toBeInstanceOf(TypeError);
    return (err as Error).message;
  }
  throw new Error(`parsePolicy accepted ${JSON.stringify(input)}`);
}

describe("parsePolicy defaults", () => {
  it("fills every field when given nothing", () => {
    for (const input of [undefined, null, {}, "", "   ", "{}"]) {
      const p = parsePolicy(input);
      expect(p.realm).toBe("tollbooth");
      expect(p.endpoint).toBe("/mcp");
      expect(p.bucket).toEqual({ capacity: 10, refillPerSecond: 0.5 });
      expect(p.ceiling).toEqual({ capacity: 60, refillPerSecond: 10 });
      expect(p.costs.default).toBe(1);
      expect(p.costs.otherPaths).toBe(1);
      expect(p.costs.tools).toEqual({});
      expect(p.costs.methods).toEqual({ ...DEFAULT_METHOD_COSTS });
      expect(p.challenge).toEqual({ difficulty: 16, credits: 20, ttlSeconds: 120 });
      expect(p.token).toEqual({ ttlSeconds: 300 });
      expect(p.identity).toEqual({ strategies: ["authorization", "api-key", "ip"], apiKeyHeader: "x-api-key" });
      expect(p.allowedOrigins).toEqual([]);
      expect(p.maxBodyBytes).toBe(1024 * 1024);
      expect(p.originTimeoutMs).toBe(30_000);
      expect(p.onStoreError).toBe("closed");
      expect(p.storeTimeoutMs).toBe(500);
    }
  });

  it("makes the MCP handshake free by default", () => {
    const p = parsePolicy({});
    for (const m of ["initialize", "ping", "tools/list", "notifications/initialized"]) expect(methodCost(p, m, undefined)).toBe(0);
  });

  it("accepts a JSON string and an object alike", () => {
    const obj = { bucket: { capacity: 20, refillPerSecond: 2 }, challenge: { difficulty: 12 } };
    expect(parsePolicy(JSON.stringify(obj))).toEqual(parsePolicy(obj));
    expect(parsePolicy(obj).bucket).toEqual({ capacity: 20, refillPerSecond: 2 });
  });

  it("fills defaults inside a partly given section", () => {
    const p = parsePolicy({ challenge: { difficulty: 12 }, costs: { default: 2 } });
    expect(p.challenge).toEqual({ difficulty: 12, credits: 20, ttlSeconds: 120 });
    expect(p.costs.otherPaths).toBe(1);
    expect(p.costs.default).toBe(2);
  });

  it("merges user method costs over the defaults", () => {
    const p = parsePolicy({ costs: { methods: { ping: 2, "resources/read": 3 } } });
    expect(p.costs.methods.ping).toBe(2);
    expect(p.costs.methods["resources/read"]).toBe(3);
    expect(p.costs.methods.initialize).toBe(0);
    expect(p.costs.methods["tools/list"]).toBe(0);
  });

  it("does not let one parsed policy leak into the next", () => {
    const a = parsePolicy({ costs: { methods: { "x/y": 4 } } });
    const b = parsePolicy({});
    expect(a.costs.methods["x/y"]).toBe(4);
    expect(b.costs.methods["x/y"]).toBeUndefined();
    expect({ ...DEFAULT_METHOD_COSTS }).toEqual({ initialize: 0, ping: 0, "tools/list": 0, "notifications/*": 0 });
  });
});

describe("parsePolicy errors name the bad field", () => {
  it("bad JSON", () => {
    const msg = errorOf("{ not json");
    expect(msg).toMatch(/^TOLLBOOTH_POLICY is not valid JSON/);
  });

  it("a value that is not an object", () => {
    expect(errorOf(42)).toMatch(/^TOLLBOOTH_POLICY: /);
    expect(errorOf("[1,2]")).toMatch(/^TOLLBOOTH_POLICY: /);
  });

  it.each([
    [{ bucket: { capacity: 0, refillPerSecond: 1 } }, "TOLLBOOTH_POLICY.bucket.capacity: "],
    [{ bucket: { capacity: 2.5, refillPerSecond: 1 } }, "TOLLBOOTH_POLICY.bucket.capacity: "],
    [{ bucket: { capacity: "10", refillPerSecond: 1 } }, "TOLLBOOTH_POLICY.bucket.capacity: "],
    [{ bucket: { capacity: 10, refillPerSecond: 0 } }, "TOLLBOOTH_POLICY.bucket.refillPerSecond: "],
    [{ bucket: { capacity: 10, refillPerSecond: -1 } }, "TOLLBOOTH_POLICY.bucket.refillPerSecond: "],
    [{ bucket: { capacity: 10 } }, "TOLLBOOTH_POLICY.bucket.refillPerSecond: "],
    [{ ceiling: { capacity: -1, refillPerSecond: 1 } }, "TOLLBOOTH_POLICY.ceiling.capacity: "],
    [{ realm: "" }, "TOLLBOOTH_POLICY.realm: "],
    [{ realm: 'new\nline' }, "TOLLBOOTH_POLICY.realm: "],
    [{ endpoint: "mcp" }, "TOLLBOOTH_POLICY.endpoint: "],
    [{ endpoint: "/mcp?x=1" }, "TOLLBOOTH_POLICY.endpoint: "],
    [{ costs: { default: -1 } }, "TOLLBOOTH_POLICY.costs.default: "],
    [{ costs: { default: 0.5 } }, "TOLLBOOTH_POLICY.costs.default: "],
    [{ costs: { methods: { "tools/call": -2 } } }, "TOLLBOOTH_POLICY.costs.methods.tools/call: "],
    [{ costs: { tools: { search: "3" } } }, "TOLLBOOTH_POLICY.costs.tools.search: "],
    [{ challenge: { difficulty: 0 } }, "TOLLBOOTH_POLICY.challenge.difficulty: "],
    [{ challenge: { difficulty: 33 } }, "TOLLBOOTH_POLICY.challenge.difficulty: "],
    [{ challenge: { credits: 0 } }, "TOLLBOOTH_POLICY.challenge.credits: "],
    [{ challenge: { ttlSeconds: 4 } }, "TOLLBOOTH_POLICY.challenge.ttlSeconds: "],
    [{ challenge: { ttlSeconds: 3601 } }, "TOLLBOOTH_POLICY.challenge.ttlSeconds: "],
    [{ token: { ttlSeconds: 0 } }, "TOLLBOOTH_POLICY.token.ttlSeconds: "],
    [{ token: { ttlSeconds: 86401 } }, "TOLLBOOTH_POLICY.token.ttlSeconds: "],
    [{ identity: { strategies: [] } }, "TOLLBOOTH_POLICY.identity.strategies: "],
    [{ identity: { strategies: ["ip", "session"] } }, "TOLLBOOTH_POLICY.identity.strategies.1: "],
    [{ identity: { apiKeyHeader: "x api key" } }, "TOLLBOOTH_POLICY.identity.apiKeyHeader: "],
    [{ allowedOrigins: "*" }, "TOLLBOOTH_POLICY.allowedOrigins: "],
    [{ maxBodyBytes: 1023 }, "TOLLBOOTH_POLICY.maxBodyBytes: "],
    [{ originTimeoutMs: 99 }, "TOLLBOOTH_POLICY.originTimeoutMs: "],
    [{ onStoreError: "ignore" }, "TOLLBOOTH_POLICY.onStoreError: "],
    [{ onStoreError: true }, "TOLLBOOTH_POLICY.onStoreError: "],
    [{ storeTimeoutMs: 49 }, "TOLLBOOTH_POLICY.storeTimeoutMs: "],
    [{ storeTimeoutMs: 10_001 }, "TOLLBOOTH_POLICY.storeTimeoutMs: "],
    [{ storeTimeoutMs: 250.5 }, "TOLLBOOTH_POLICY.storeTimeoutMs: "],
  ])("%j → %s", (input, prefix) => {
    expect(errorOf(input).startsWith(prefix), errorOf(input)).toBe(true);
  });

  it("says what was expected, not just where", () => {
    expect(errorOf({ bucket: { capacity: 0, refillPerSecond: 1 } })).toMatch(/>=\s*1/);
    expect(errorOf({ onStoreError: "ignore" })).toMatch(/"closed".*"open"/);
    expect(errorOf({ costs: { tools: { search: "3" } } })).toMatch(/expected number/);
  });

  it("takes either store-error mode", () => {
    expect(parsePolicy({ onStoreError: "open", storeTimeoutMs: 50 })).toMatchObject({ onStoreError: "open", storeTimeoutMs: 50 });
    expect(parsePolicy({ onStoreError: "closed", storeTimeoutMs: 10_000 })).toMatchObject({ onStoreError: "closed", storeTimeoutMs: 10_000 });
  });

  it("an unknown top-level key", () => {
    expect(errorOf({ bukket: { capacity: 1 } })).toMatch(/^TOLLBOOTH_POLICY\.bukket: /);
  });

  it("an unknown nested key", () => {
    expect(errorOf({ bucket: { capacity: 10, refillPerSecond: 1, burst: 3 } })).toMatch(/^TOLLBOOTH_POLICY\.bucket\.burst: /);
    expect(errorOf({ challenge: { dificulty: 3 } })).toMatch(/^TOLLBOOTH_POLICY\.challenge\.dificulty: /);
  });

  it("the same errors from a JSON string", () => {
    expect(errorOf(JSON.stringify({ bucket: { capacity: 0, refillPerSecond: 1 } }))).toMatch(/^TOLLBOOTH_POLICY\.bucket\.capacity: /);
  });

  describe("a cost above the bucket capacity (it could never be admitted)", () => {
    it.each([
      [{ costs: { default: 11 } }, "costs.default"],
      [{ costs: { otherPaths: 11 } }, "costs.otherPaths"],
      [{ costs: { methods: { "tools/call": 11 } } }, "costs.methods.tools/call"],
      [{ costs: { tools: { expensive: 11 } } }, "costs.tools.expensive"],
    ])("%j names %s", (input, field) => {
      const msg = errorOf(input);
      expect(msg.startsWith(`TOLLBOOTH_POLICY.${field}: `), msg).toBe(true);
      expect(msg).toContain("11");
      expect(msg).toContain("bucket.capacity");
    });

    it("checks against the configured capacity, and equal to it is fine", () => {
      expect(parsePolicy({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 30 }, costs: { default: 30 } }).costs.default).toBe(30);
      expect(errorOf({ bucket: { capacity: 3, refillPerSecond: 1 }, costs: { tools: { t: 4 } } })).toMatch(/^TOLLBOOTH_POLICY\.costs\.tools\.t: /);
    });
    it("a cost above the credits of one solve (it could never be paid by solving) is named too", () => {
      const message = errorOf({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 5 }, costs: { tools: { heavy: 6 } } });
      expect(message).toMatch(/^TOLLBOOTH_POLICY\.costs\.tools\.heavy: /);
      expect(message).toContain("challenge.credits");
      expect(parsePolicy({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 5 }, costs: { tools: { heavy: 5 } } }).costs.tools.heavy).toBe(5);
    });
  });
});

describe("methodCost", () => {
  const p = parsePolicy({
    bucket: { capacity: 50, refillPerSecond: 1 },
    costs: {
      default: 2,
      methods: { "tools/call": 5, "resources/*": 3, "resources/read": 4, "notifications/*": 1 },
      tools: { cheap: 0, heavy: 9 },
    },
  });

  it("uses the exact method cost", () => {
    expect(methodCost(p, "resources/read", undefined)).toBe(4);
    expect(methodCost(p, "tools/call", undefined)).toBe(5);
  });

  it("falls back to the method's family prefix/*", () => {
    expect(methodCost(p, "resources/list", undefined)).toBe(3);
    expect(methodCost(p, "notifications/initialized", undefined)).toBe(1);
  });

  it("falls back to the default", () => {
    expect(methodCost(p, "prompts/get", undefined)).toBe(2);
    expect(methodCost(p, "sampling", undefined)).toBe(2);
    expect(methodCost(p, "/resources", undefined)).toBe(2);
  });

  it("prices tools/call per tool, falling back to the tools/call method cost", () => {
    expect(methodCost(p, "tools/call", "heavy")).toBe(9);
    expect(methodCost(p, "tools/call", "cheap")).toBe(0);
    expect(methodCost(p, "tools/call", "unlisted")).toBe(5);
  });

  it("applies tool prices to tools/call only", () => {
    expect(methodCost(p, "prompts/get", "heavy")).toBe(2);
  });

  it("returns an integer cost for any method or tool name a client may send", () => {
    // Names are client-controlled; inherited object properties must not be mistaken for costs.
    for (const name of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
      expect(methodCost(p, name, undefined), `method ${name}`).toBe(2);
      expect(methodCost(p, "tools/call", name), `tool ${name}`).toBe(5);
    }
  });
});
