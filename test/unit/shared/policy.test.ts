/**
 * The policy (`parsePolicy`, shared/policy/): every field has a default, a bad field is a
 * TypeError naming it and what was expected, a cost no bucket or solve could pay is refused,
 * `methodCost` falls back tool → method → family → default, and plans resolve over the
 * policy's own sections.
 */
import { describe, expect, it } from "vitest";
import { closest, DEFAULT_METHOD_COSTS, maxPayableCost, methodCost, parsePolicy, planFor } from "../../../workers/schemes/policy.ts";

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
      expect(p.limits).toEqual({ sessions: 16, sessionTtlSeconds: 3600, onSessionCap: "evict", streams: 4, streamMaxSeconds: 600 });
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
    [{ originCeiling: { capacity: 10 } }, "TOLLBOOTH_POLICY.originCeiling.refillPerSecond: "],
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
    expect(pro.limits).toEqual({ sessions: 64, sessionTtlSeconds: 3600, onSessionCap: "evict", streams: 4, streamMaxSeconds: 600 });
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

describe("allocation (the origin ceiling's classes, congestion curve and shards)", () => {
  it("defaults to paid and verified first, the documented curve and 16 shards", () => {
    const p = parsePolicy({});
    expect(p.allocation.classes).toEqual({
      paid: { guarantee: 0.1, reserve: 0 },
      verified: { guarantee: 0.1, reserve: 0.05 },
      worked: { guarantee: 0.05, reserve: 0.15 },
      free: { guarantee: 0.05, reserve: 0.3 },
    });
    expect(p.allocation.congestion).toEqual({
      start: 0.5,
      minFreeShare: 0.1,
      maxExtraBits: 4,
      maxPriceFactor: 4,
      riseSeconds: 2,
      fallSeconds: 15,
    });
    expect(p.allocation.shards).toBe(16);
  });

  it("fills in what a partial section leaves out", () => {
    const p = parsePolicy({ allocation: { classes: { free: { guarantee: 0, reserve: 0.5 } }, congestion: { maxPriceFactor: 10 } } });
    expect(p.allocation.classes.free).toEqual({ guarantee: 0, reserve: 0.5 });
    expect(p.allocation.classes.paid).toEqual({ guarantee: 0.1, reserve: 0 });
    expect(p.allocation.congestion.maxPriceFactor).toBe(10);
    expect(p.allocation.congestion.start).toBe(0.5);
    // Inside one class too (docs/allocation.md: every field optional): the class's own default.
    expect(parsePolicy({ allocation: { classes: { paid: { guarantee: 0.2 } } } }).allocation.classes.paid).toEqual({
      guarantee: 0.2,
      reserve: 0,
    });
    expect(parsePolicy({ allocation: { classes: { free: { reserve: 0.4 } } } }).allocation.classes.free).toEqual({
      guarantee: 0.05,
      reserve: 0.4,
    });
  });

  it("refuses guarantees above the whole ceiling and reserves that fall with priority, naming the field", () => {
    expect(errorOf({ allocation: { classes: { paid: { guarantee: 0.9, reserve: 0 } } } })).toBe(
      "TOLLBOOTH_POLICY.allocation.classes: the guarantees add up to 1.1, more than 1",
    );
    expect(errorOf({ allocation: { classes: { free: { guarantee: 0.05, reserve: 0.1 } } } })).toBe(
      "TOLLBOOTH_POLICY.allocation.classes.free.reserve: 0.1 is below the reserve of a higher class (0.15); reserves rise as priority falls",
    );
    expect(errorOf({ allocation: { congestion: { start: 1 } } })).toBe(
      "TOLLBOOTH_POLICY.allocation.congestion.start: 1 is not a level in [0, 1)",
    );
    expect(errorOf({ allocation: { shards: 0 } })).toMatch(/^TOLLBOOTH_POLICY\.allocation\.shards: /);
    expect(errorOf({ allocation: { classes: { paid: { reserve: 2 } } } })).toMatch(
      /^TOLLBOOTH_POLICY\.allocation\.classes\.paid\.reserve: /,
    );
  });

  it("an origin ceiling refills at least a thousandth of a message a second (the shards count thousandths); a caller's bucket may refill slower", () => {
    expect(parsePolicy({ originCeiling: { capacity: 10, refillPerSecond: 0.001 } }).originCeiling).toEqual({
      capacity: 10,
      refillPerSecond: 0.001,
    });
    expect(errorOf({ originCeiling: { capacity: 10, refillPerSecond: 0.0001 } })).toMatch(
      /^TOLLBOOTH_POLICY\.originCeiling\.refillPerSecond: /,
    );
    expect(errorOf({ originCeiling: { capacity: 2_000_000_000, refillPerSecond: 1 } })).toMatch(
      /^TOLLBOOTH_POLICY\.originCeiling\.capacity: /,
    );
    expect(parsePolicy({ bucket: { capacity: 10, refillPerSecond: 0.0001 } }).bucket.refillPerSecond).toBe(0.0001);
  });
});

const LIGHTNING = { backend: "lnd", url: "https://lnd.example.com:8080" };
const FACILITATOR = {
  url: "https://x402.example.com/facilitator",
  payTo: `0x${"ab".repeat(20)}`,
  assets: [{ network: "eip155:8453", asset: `0x${"cd".repeat(20)}`, name: "USD Coin", version: "2" }],
};

describe("a typo is named with the field it misspells, at every depth", () => {
  it.each([
    // depth 1
    [{ bukket: { capacity: 3 } }, 'TOLLBOOTH_POLICY.bukket: Unrecognized key: "bukket"; did you mean "bucket"?'],
    [{ celing: { capacity: 3 } }, 'TOLLBOOTH_POLICY.celing: Unrecognized key: "celing"; did you mean "ceiling"?'],
    // depth 2: the issue's own example (it used to blame refillPerSecond, "expected number, received undefined")
    [
      { bucket: { capacity: 3, refilPerSecond: 0.1 } },
      'TOLLBOOTH_POLICY.bucket.refilPerSecond: Unrecognized key: "refilPerSecond"; did you mean "refillPerSecond"?',
    ],
    [{ challenge: { dificulty: 12 } }, 'TOLLBOOTH_POLICY.challenge.dificulty: Unrecognized key: "dificulty"; did you mean "difficulty"?'],
    [{ identity: { ipv6prefix: 48 } }, 'TOLLBOOTH_POLICY.identity.ipv6prefix: Unrecognized key: "ipv6prefix"; did you mean "ipv6Prefix"?'],
    [
      { l402: { sats: 10, credit: 5 }, lightning: LIGHTNING },
      'TOLLBOOTH_POLICY.l402.credit: Unrecognized key: "credit"; did you mean "credits"?',
    ],
    [
      { lightning: { backend: "lnd", ulr: "https://lnd.example.com" } },
      'TOLLBOOTH_POLICY.lightning.ulr: Unrecognized key: "ulr"; did you mean "url"?',
    ],
    [
      { x402: { mode: "credits", amout: "10000", credits: 5 }, facilitator: FACILITATOR },
      'TOLLBOOTH_POLICY.x402.amout: Unrecognized key: "amout"; did you mean "amount"?',
    ],
    [
      { facilitator: { ...FACILITATOR, pay_to: FACILITATOR.payTo } },
      'TOLLBOOTH_POLICY.facilitator.pay_to: Unrecognized key: "pay_to"; did you mean "payTo"?',
    ],
    // depth 3
    [
      { challenge: { adaptive: { maxExtraBit: 2 } } },
      'TOLLBOOTH_POLICY.challenge.adaptive.maxExtraBit: Unrecognized key: "maxExtraBit"; did you mean "maxExtraBits"?',
    ],
    [
      { allocation: { congestion: { strat: 0.4 } } },
      'TOLLBOOTH_POLICY.allocation.congestion.strat: Unrecognized key: "strat"; did you mean "start"?',
    ],
    [
      { plans: { pro: { bukcet: { capacity: 30 } } } },
      'TOLLBOOTH_POLICY.plans.pro.bukcet: Unrecognized key: "bukcet"; did you mean "bucket"?',
    ],
    [
      { identity: { jwt: { issuer: "https://idp.test", audience: "mcp", jwksURL: "https://idp.test/jwks" } } },
      'TOLLBOOTH_POLICY.identity.jwt.jwksURL: Unrecognized key: "jwksURL"; did you mean "jwksUrl"?',
    ],
    // depth 4: inside a plan, a list, a class
    [
      { plans: { pro: { bucket: { refilPerSecond: 1 } } } },
      'TOLLBOOTH_POLICY.plans.pro.bucket.refilPerSecond: Unrecognized key: "refilPerSecond"; did you mean "refillPerSecond"?',
    ],
    [
      { plans: { pro: { challenge: { adaptive: { halfLifeSecond: 60 } } } } },
      'TOLLBOOTH_POLICY.plans.pro.challenge.adaptive.halfLifeSecond: Unrecognized key: "halfLifeSecond"; did you mean "halfLifeSeconds"?',
    ],
    [
      { allocation: { classes: { paid: { guarantee: 0.1, reserv: 0 } } } },
      'TOLLBOOTH_POLICY.allocation.classes.paid.reserv: Unrecognized key: "reserv"; did you mean "reserve"?',
    ],
    [
      {
        identity: {
          jwt: [
            { issuer: "a", audience: "b", jwksUrl: "https://a.test/jwks" },
            { issuer: "c", audiance: "b", jwksUrl: "https://c.test/jwks" },
          ],
        },
      },
      'TOLLBOOTH_POLICY.identity.jwt.1.audiance: Unrecognized key: "audiance"; did you mean "audience"?',
    ],
    [
      { facilitator: { ...FACILITATOR, assets: [{ ...FACILITATOR.assets[0], netwrok: "eip155:1" }] } },
      'TOLLBOOTH_POLICY.facilitator.assets.0.netwrok: Unrecognized key: "netwrok"; did you mean "network"?',
    ],
  ])("%j", (input, message) => {
    expect(errorOf(input)).toBe(message);
  });

  it("names the typo, not the required field it leaves missing", () => {
    // originCeiling and lightning have no defaults for these fields: the misspelt key explains the missing one.
    expect(errorOf({ originCeiling: { capacity: 5, refilPerSecond: 1 } })).toBe(
      'TOLLBOOTH_POLICY.originCeiling.refilPerSecond: Unrecognized key: "refilPerSecond"; did you mean "refillPerSecond"?',
    );
    expect(errorOf({ lightning: { backend: "lnd", URL: "https://lnd.example.com" } })).toBe(
      'TOLLBOOTH_POLICY.lightning.URL: Unrecognized key: "URL"; did you mean "url"?',
    );
  });

  it("a value outside a list is named with the nearest allowed one", () => {
    expect(errorOf({ onStoreError: "opne" })).toBe(
      'TOLLBOOTH_POLICY.onStoreError: Invalid option: expected one of "closed"|"open"; did you mean "open"?',
    );
    expect(errorOf({ identity: { strategies: ["jwt", "api_key"] } })).toMatch(
      /^TOLLBOOTH_POLICY\.identity\.strategies\.1: Invalid option: .*; did you mean "api-key"\?$/,
    );
    expect(errorOf({ lightning: { ...LIGHTNING, backend: "LND" } })).toMatch(
      /^TOLLBOOTH_POLICY\.lightning\.backend: .*; did you mean "lnd"\?$/,
    );
    // x402's price is a union told apart by `mode`: the literal every option refused is named with all of them.
    expect(errorOf({ x402: { mode: "credit", amount: "1", credits: 5 }, facilitator: FACILITATOR })).toBe(
      'TOLLBOOTH_POLICY.x402.mode: Invalid option: expected one of "credits"|"per-request"; did you mean "credits"?',
    );
    expect(errorOf({ x402: { amount: "1", credits: 5 }, facilitator: FACILITATOR })).toBe(
      'TOLLBOOTH_POLICY.x402.mode: Invalid option: expected one of "credits"|"per-request"',
    );
    expect(errorOf({ x402: { mode: "per-request", amountPerUnt: "1" }, facilitator: FACILITATOR })).toBe(
      'TOLLBOOTH_POLICY.x402.amountPerUnt: Unrecognized key: "amountPerUnt"; did you mean "amountPerUnit"?',
    );
  });

  it("suggests nothing when no field is near, and then lists the fields of a small object", () => {
    expect(errorOf({ zzz: 1 })).toBe('TOLLBOOTH_POLICY.zzz: Unrecognized key: "zzz"');
    expect(errorOf({ bucket: { capacity: 10, refillPerSecond: 1, burst: 3 } })).toBe(
      'TOLLBOOTH_POLICY.bucket.burst: Unrecognized key: "burst"; expected one of capacity, refillPerSecond',
    );
    expect(errorOf({ overBudget: "refuse" })).toBe('TOLLBOOTH_POLICY.overBudget: Invalid option: expected one of "402"|"429"');
  });

  it("a field with no default that is left out says so", () => {
    expect(errorOf({ originCeiling: { capacity: 5 } })).toBe(
      "TOLLBOOTH_POLICY.originCeiling.refillPerSecond: missing (no default): expected number",
    );
    expect(errorOf({ lightning: { backend: "lnd" } })).toBe("TOLLBOOTH_POLICY.lightning.url: missing (no default): expected string");
    expect(errorOf({ l402: { sats: 10 }, lightning: LIGHTNING })).toBe(
      "TOLLBOOTH_POLICY.l402.credits: missing (no default): expected number",
    );
  });
});

describe("a partial object takes the defaults of the fields it leaves out, at every depth", () => {
  it("the issue's own example: a bucket with only its capacity", () => {
    expect(parsePolicy({ bucket: { capacity: 3 } }).bucket).toEqual({ capacity: 3, refillPerSecond: 0.5 });
    expect(parsePolicy('{"bucket":{"capacity":3}}').plans.free!.bucket).toEqual({ capacity: 3, refillPerSecond: 0.5 });
    expect(parsePolicy({ bucket: { refillPerSecond: 2 } }).bucket).toEqual({ capacity: 10, refillPerSecond: 2 });
    expect(parsePolicy({ ceiling: { refillPerSecond: 20 } }).ceiling).toEqual({ capacity: 60, refillPerSecond: 20 });
    expect(parsePolicy({ bucket: {}, ceiling: {} })).toMatchObject({
      bucket: { capacity: 10, refillPerSecond: 0.5 },
      ceiling: { capacity: 60, refillPerSecond: 10 },
    });
  });

  it("every section README documents with defaults, at depth 2 and 3", () => {
    const p = parsePolicy({
      challenge: { adaptive: { solvesPerStep: 5 } },
      limits: { streams: 2 },
      token: {},
      identity: { ipv6Prefix: 48 },
      costs: { tools: { t: 2 } },
    });
    expect(p.challenge).toEqual({
      difficulty: 16,
      credits: 20,
      ttlSeconds: 120,
      adaptive: { solvesPerStep: 5, halfLifeSeconds: 600, maxExtraBits: 6 },
    });
    expect(p.limits).toEqual({ sessions: 16, sessionTtlSeconds: 3600, onSessionCap: "evict", streams: 2, streamMaxSeconds: 600 });
    expect(p.token).toEqual({ ttlSeconds: 300 });
    expect(p.identity).toEqual({
      strategies: ["jwt", "api-key", "ip"],
      apiKeyHeader: "x-api-key",
      apiKeys: [],
      ipv4Prefix: 32,
      ipv6Prefix: 48,
    });
    expect(p.costs).toMatchObject({ default: 1, otherPaths: 1, tools: { t: 2 } });
  });

  it("the schemes' sections: the fields README gives defaults", () => {
    const p = parsePolicy({
      l402: { sats: 10, credits: 5 },
      lightning: LIGHTNING,
      x402: { mode: "credits", amount: "10000", credits: 5 },
      facilitator: FACILITATOR,
    });
    expect(p.l402).toEqual({ sats: 10, credits: 5, ttlSeconds: 3600 });
    expect(p.lightning).toEqual({ ...LIGHTNING, service: "tollbooth", timeoutMs: 3000, invoiceExpirySeconds: 600, invoicesPerSecond: 2 });
    expect(p.x402).toEqual({ mode: "credits", amount: "10000", credits: 5, ttlSeconds: 3600 });
    expect(p.facilitator).toEqual({ ...FACILITATOR, timeoutMs: 10_000, maxTimeoutSeconds: 120 });
  });

  it("a plan's partial bucket and ceiling take the policy's own fields, not the defaults", () => {
    const p = parsePolicy({
      bucket: { capacity: 10, refillPerSecond: 2 },
      ceiling: { capacity: 100, refillPerSecond: 20 },
      plans: { pro: { bucket: { capacity: 50 }, ceiling: { refillPerSecond: 40 } } },
    });
    expect(planFor(p, "pro").bucket).toEqual({ capacity: 50, refillPerSecond: 2 });
    expect(planFor(p, "pro").ceiling).toEqual({ capacity: 100, refillPerSecond: 40 });
    // The default plan named in `plans` merges the same way, and is what the policy's own fields read.
    const named = parsePolicy({ defaultPlan: "basic", plans: { basic: { bucket: { refillPerSecond: 1 } } } });
    expect(named.bucket).toEqual({ capacity: 10, refillPerSecond: 1 });
  });

  it("a default filled in is still checked against the rest: a cost above a partial bucket's capacity", () => {
    expect(errorOf({ bucket: { capacity: 3 }, costs: { default: 4 } })).toBe(
      "TOLLBOOTH_POLICY.costs.default: 4 exceeds bucket.capacity (3)",
    );
    expect(errorOf({ plans: { tiny: { bucket: { capacity: 2 } } }, costs: { tools: { t: 3 } } })).toBe(
      "TOLLBOOTH_POLICY.plans.tiny.costs.tools.t: 3 exceeds bucket.capacity (2)",
    );
  });
});

describe("offerOrder (the order of the ways through a 402)", () => {
  it("defaults to the registry's order: proof of work first", () => {
    expect(parsePolicy({}).offerOrder).toEqual(["pow", "l402", "x402"]);
    expect(parsePolicy({ offerOrder: [] }).offerOrder).toEqual(["pow", "l402", "x402"]);
  });

  it("puts the listed schemes first, in that order, and the others after in the registry's order", () => {
    expect(parsePolicy({ offerOrder: ["l402"] }).offerOrder).toEqual(["l402", "pow", "x402"]);
    expect(parsePolicy({ offerOrder: ["x402", "l402"] }).offerOrder).toEqual(["x402", "l402", "pow"]);
    expect(parsePolicy({ offerOrder: ["l402", "pow", "x402"] }).offerOrder).toEqual(["l402", "pow", "x402"]);
  });

  it("refuses a name that is not a registered scheme, one listed twice, and a value that is not a list", () => {
    expect(errorOf({ offerOrder: ["L402"] })).toBe(
      'TOLLBOOTH_POLICY.offerOrder.0: Invalid option: expected one of "pow"|"l402"|"x402"; did you mean "l402"?',
    );
    expect(errorOf({ offerOrder: ["pow", "lightning"] })).toBe(
      'TOLLBOOTH_POLICY.offerOrder.1: Invalid option: expected one of "pow"|"l402"|"x402"',
    );
    expect(errorOf({ offerOrder: ["l402", "pow", "l402"] })).toBe('TOLLBOOTH_POLICY.offerOrder.2: "l402" is listed twice');
    expect(errorOf({ offerOrder: "l402" })).toMatch(/^TOLLBOOTH_POLICY\.offerOrder: .*expected array/);
    expect(errorOf({ plans: { pro: { offerOrder: ["l402"] } } })).toMatch(/^TOLLBOOTH_POLICY\.plans\.pro\.offerOrder: Unrecognized key/);
  });
});

describe("closest (the suggestion of a typo)", () => {
  it("finds a misspelling within a third of the word's length, whatever its case, - or _", () => {
    expect(closest("refilPerSecond", ["capacity", "refillPerSecond"])).toBe("refillPerSecond");
    expect(closest("difficutly", ["difficulty", "credits"])).toBe("difficulty");
    expect(closest("REFILL_PER_SECOND", ["capacity", "refillPerSecond"])).toBe("refillPerSecond");
    expect(closest("api_key", ["jwt", "api-key", "ip"])).toBe("api-key");
  });

  it("suggests nothing for a word unlike every candidate, or the word itself", () => {
    expect(closest("burst", ["capacity", "refillPerSecond"])).toBeUndefined();
    expect(closest("ip", ["jwt", "api-key"])).toBeUndefined();
    expect(closest("x", [])).toBeUndefined();
    expect(closest("open", ["closed", "open"])).toBeUndefined();
  });
});
