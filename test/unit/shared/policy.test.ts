/**
 * The policy (`parsePolicy`, shared/policy/): every field has a default, a bad field is a
 * TypeError naming it and what was expected, a cost no bucket or solve could pay is refused,
 * `methodCost` falls back tool → method → family → default, and plans resolve over the
 * policy's own sections.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_METHOD_COSTS, maxPayableCost, methodCost, parsePolicy, planFor } from "../../../workers/schemes/policy.ts";

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
      expect(p.challenge).toEqual({
        difficulty: 16,
        credits: 20,
        ttlSeconds: 120,
        adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 },
      });
      expect(p.token).toEqual({ ttlSeconds: 300 });
      // Unverified header values are not identities by default: jwt and issued keys, then the network.
      expect(p.identity).toEqual({
        strategies: ["jwt", "api-key", "ip"],
        apiKeyHeader: "x-api-key",
        apiKeys: [],
        ipv4Prefix: 32,
        ipv6Prefix: 64,
      });
      expect(p.overBudget).toBe("402");
      expect(p.limits).toEqual({ sessions: 16, sessionTtlSeconds: 3600, streams: 4, streamMaxSeconds: 600 });
      expect(p.defaultPlan).toBe("free");
      expect(Object.keys(p.plans)).toEqual(["free"]);
      expect(p.plans.free).toMatchObject({
        name: "free",
        bucket: p.bucket,
        ceiling: p.ceiling,
        costs: p.costs,
        challenge: p.challenge,
        overBudget: "402",
        limits: p.limits,
      });
      expect(p.originCeiling).toBeNull();
      expect(p.networkRetryAfterSeconds).toBe(10);
      expect(p.maxJsonDepth).toBe(64);
      expect(p.bodyTimeoutMs).toBe(10_000);
      expect(p.allowedOrigins).toEqual([]);
      expect(p.maxBodyBytes).toBe(1024 * 1024);
      expect(p.originTimeoutMs).toBe(30_000);
      expect(p.onStoreError).toBe("closed");
      expect(p.storeTimeoutMs).toBe(500);
    }
  });

  it("makes the MCP handshake and what clients send on connect free by default", () => {
    const p = parsePolicy({});
    for (const m of [
      "initialize",
      "ping",
      "tools/list",
      "notifications/initialized",
      "resources/list",
      "resources/templates/list",
      "prompts/list",
      "logging/setLevel",
      "completion/complete",
    ]) {
      expect(methodCost(p, m, undefined), m).toBe(0);
    }
    for (const m of ["tools/call", "resources/read", "prompts/get"]) expect(methodCost(p, m, undefined), m).toBe(1);
  });

  it("accepts a JSON string and an object alike", () => {
    const obj = { bucket: { capacity: 20, refillPerSecond: 2 }, challenge: { difficulty: 12 } };
    expect(parsePolicy(JSON.stringify(obj))).toEqual(parsePolicy(obj));
    expect(parsePolicy(obj).bucket).toEqual({ capacity: 20, refillPerSecond: 2 });
  });

  it("fills defaults inside a partly given section", () => {
    const p = parsePolicy({ challenge: { difficulty: 12 }, costs: { default: 2 } });
    expect(p.challenge).toEqual({
      difficulty: 12,
      credits: 20,
      ttlSeconds: 120,
      adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 },
    });
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
    expect({ ...DEFAULT_METHOD_COSTS }).toEqual({
      initialize: 0,
      ping: 0,
      "tools/list": 0,
      "resources/list": 0,
      "resources/templates/list": 0,
      "prompts/list": 0,
      "logging/setLevel": 0,
      "completion/complete": 0,
      "notifications/*": 0,
    });
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
    [{ realm: "new\nline" }, "TOLLBOOTH_POLICY.realm: "],
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
    expect(parsePolicy({ onStoreError: "closed", storeTimeoutMs: 10_000 })).toMatchObject({
      onStoreError: "closed",
      storeTimeoutMs: 10_000,
    });
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
      expect(
        parsePolicy({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 30 }, costs: { default: 30 } }).costs.default,
      ).toBe(30);
      expect(errorOf({ bucket: { capacity: 3, refillPerSecond: 1 }, costs: { tools: { t: 4 } } })).toMatch(
        /^TOLLBOOTH_POLICY\.costs\.tools\.t: /,
      );
    });
    it("a cost above the credits of one solve (it could never be paid by solving) is named too", () => {
      const message = errorOf({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 5 }, costs: { tools: { heavy: 6 } } });
      expect(message).toMatch(/^TOLLBOOTH_POLICY\.costs\.tools\.heavy: /);
      expect(message).toContain("challenge.credits");
      expect(
        parsePolicy({ bucket: { capacity: 30, refillPerSecond: 1 }, challenge: { credits: 5 }, costs: { tools: { heavy: 5 } } }).costs.tools
          .heavy,
      ).toBe(5);
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
    expect(methodCost(p, "resources/subscribe", undefined)).toBe(3);
    // The policy's family price covers the housekeeping method of that family too (its default 0 gives way)…
    expect(methodCost(p, "resources/list", undefined)).toBe(3);
    // …unless the policy names the method itself.
    const named = parsePolicy({ costs: { methods: { "resources/*": 3, "resources/list": 0 } } });
    expect(methodCost(named, "resources/list", undefined)).toBe(0);
    expect(methodCost(named, "resources/templates/list", undefined)).toBe(3);
    // Families the policy does not price keep their defaults.
    expect(methodCost(p, "prompts/list", undefined)).toBe(0);
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

describe("plans", () => {
  it("resolves each plan over the policy's own sections, field by field", () => {
    const p = parsePolicy({
      bucket: { capacity: 10, refillPerSecond: 0.5 },
      costs: { tools: { search: 2 } },
      plans: {
        pro: {
          bucket: { capacity: 100, refillPerSecond: 5 },
          costs: { tools: { heavy: 30 } },
          challenge: { credits: 50, adaptive: { maxExtraBits: 2 } },
          overBudget: "429",
          limits: { sessions: 64 },
        },
      },
    });
    expect(Object.keys(p.plans).sort()).toEqual(["free", "pro"]);
    const pro = planFor(p, "pro");
    expect(pro.name).toBe("pro");
    expect(pro.bucket).toEqual({ capacity: 100, refillPerSecond: 5 });
    expect(pro.ceiling).toEqual(p.ceiling);
    expect(pro.costs.tools).toEqual({ search: 2, heavy: 30 });
    expect(pro.costs.methods).toEqual(p.costs.methods);
    expect(pro.challenge).toEqual({
      difficulty: 16,
      credits: 50,
      ttlSeconds: 120,
      adaptive: { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 2 },
    });
    expect(pro.overBudget).toBe("429");
    expect(pro.limits).toEqual({ sessions: 64, sessionTtlSeconds: 3600, streams: 4, streamMaxSeconds: 600 });
    // An unknown or absent plan name is the default plan.
    expect(planFor(p, "enterprise").name).toBe("free");
    expect(planFor(p, undefined)).toBe(p.plans.free);
    expect(maxPayableCost(pro)).toBe(100);
    expect(maxPayableCost(planFor(p, undefined))).toBe(20);
  });

  it("a plan named as defaultPlan replaces the policy's own sections", () => {
    const p = parsePolicy({ defaultPlan: "basic", plans: { basic: { bucket: { capacity: 4, refillPerSecond: 1 } } } });
    expect(p.bucket).toEqual({ capacity: 4, refillPerSecond: 1 });
    expect(planFor(p, "nope").name).toBe("basic");
  });

  it("refuses a plan in which a cost exceeds what one solve buys (it would loop on 402), naming the plan and field", () => {
    const message = errorOf({ plans: { pro: { bucket: { capacity: 100, refillPerSecond: 1 }, costs: { tools: { heavy: 30 } } } } });
    expect(message).toMatch(/^TOLLBOOTH_POLICY\.plans\.pro\.costs\.tools\.heavy: /);
    expect(message).toContain("30 exceeds challenge.credits (20)");
    // Its own credits raised to the cost: accepted.
    expect(
      planFor(
        parsePolicy({
          plans: { pro: { bucket: { capacity: 100, refillPerSecond: 1 }, costs: { tools: { heavy: 30 } }, challenge: { credits: 30 } } },
        }),
        "pro",
      ).costs.tools.heavy,
    ).toBe(30);
  });

  it("refuses a plan whose bucket is smaller than one of its costs, and a cost inherited from the policy", () => {
    expect(errorOf({ costs: { tools: { t: 5 } }, plans: { tiny: { bucket: { capacity: 4, refillPerSecond: 1 } } } })).toMatch(
      /^TOLLBOOTH_POLICY\.plans\.tiny\.costs\.tools\.t: 5 exceeds bucket\.capacity \(4\)/,
    );
    expect(errorOf({ plans: { tiny: { challenge: { credits: 1 }, costs: { default: 2 } } } })).toMatch(
      /^TOLLBOOTH_POLICY\.plans\.tiny\.costs\.default: 2 exceeds challenge\.credits \(1\)/,
    );
  });

  it("refuses bad plan names, bad overBudget modes and unknown plan fields", () => {
    expect(errorOf({ plans: { "a b": {} } })).toMatch(/^TOLLBOOTH_POLICY\.plans/);
    expect(errorOf({ overBudget: "403" })).toMatch(/^TOLLBOOTH_POLICY\.overBudget: /);
    expect(errorOf({ plans: { pro: { realm: "x" } } })).toMatch(/^TOLLBOOTH_POLICY\.plans\.pro\.realm: /);
    expect(errorOf({ challenge: { adaptive: { maxExtraBits: 32 } } })).toMatch(/^TOLLBOOTH_POLICY\.challenge\.adaptive\.maxExtraBits: /);
  });
});
