/**
 * The policy: one object that says what each request costs, how large each caller's
 * token bucket is, what a proof-of-work challenge asks and buys, and how the proxy
 * behaves. Given as JSON in the `TOLLBOOTH_POLICY` var; validated once, at start.
 */
import * as z from "zod/mini";
import { en } from "zod/locales";

// zod/mini ships no messages; English ones name what was expected ("Too small: expected number to be >=1").
z.config(en());

/** An integer number in [min, max]. */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.int().check(z.minimum(min), z.maximum(max));
/** A string matching `re`. */
const matching = (re: RegExp) => z.string().check(z.regex(re));
const cost = int(0);
const bucket = z.strictObject({
  /** Most units the bucket holds (the burst). */
  capacity: int(1),
  /** Units added per second (at least 0.0001: one unit per 10 000 s). */
  refillPerSecond: z.number().check(z.minimum(0.0001)),
});

/** Method costs every policy starts from: a handshake never trips the limit. */
export const DEFAULT_METHOD_COSTS: Readonly<Record<string, number>> = {
  initialize: 0,
  ping: 0,
  "tools/list": 0,
  "notifications/*": 0,
};

/** Identity strategies, tried in order (see `shared/identity.ts`). */
export const IDENTITY_STRATEGIES = ["authorization", "api-key", "ip"] as const;

/** What the gateway does when the caller's Durable Object fails or times out (see `onStoreError`). */
export const STORE_ERROR_MODES = ["closed", "open"] as const;

const schema = z.strictObject({
  /** `realm` of the `PowChallenge` challenge. */
  realm: z._default(matching(/^[\x20-\x7e]{1,64}$/), "tollbooth"),
  /** Path of the gated MCP endpoint. */
  endpoint: z._default(matching(/^\/[^?#]*$/), "/mcp"),
  /** The free token bucket of each caller. */
  bucket: z._default(bucket, { capacity: 10, refillPerSecond: 0.5 }),
  /** Hard per-caller ceiling (requests, any cost) that even token holders cannot pass: 429. */
  ceiling: z._default(bucket, { capacity: 60, refillPerSecond: 10 }),
  costs: z._default(
    z.strictObject({
      /** Cost of a JSON-RPC request whose method has no entry below. */
      default: z._default(cost, 1),
      /** Cost per JSON-RPC method; `prefix/*` matches a whole family. Merged over DEFAULT_METHOD_COSTS. */
      methods: z._default(z.record(z.string(), cost), {}),
      /** Cost of `tools/call` per tool (`params.name`); wins over `methods["tools/call"]`. */
      tools: z._default(z.record(z.string(), cost), {}),
      /** Cost of a request to any path other than the endpoint (OAuth metadata paths cost 0). */
      otherPaths: z._default(cost, 1),
    }),
    { default: 1, methods: {}, tools: {}, otherPaths: 1 },
  ),
  challenge: z._default(
    z.strictObject({
      /** Leading zero bits required of SHA-256(salt ‖ nonce). */
      difficulty: z._default(int(1, 32), 16),
      /** Credits an access token minted from one solve carries. */
      credits: z._default(int(1), 20),
      /** Seconds a challenge stays redeemable. */
      ttlSeconds: z._default(int(5, 3600), 120),
    }),
    { difficulty: 16, credits: 20, ttlSeconds: 120 },
  ),
  token: z._default(
    z.strictObject({
      /** Lifetime of an access token, in seconds. */
      ttlSeconds: z._default(int(1, 86400), 300),
    }),
    { ttlSeconds: 300 },
  ),
  identity: z._default(
    z.strictObject({
      strategies: z._default(z.array(z.enum(IDENTITY_STRATEGIES)).check(z.minLength(1)), ["authorization", "api-key", "ip"]),
      /** Header read by the `api-key` strategy. */
      apiKeyHeader: z._default(matching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), "x-api-key"),
    }),
    { strategies: ["authorization", "api-key", "ip"], apiKeyHeader: "x-api-key" },
  ),
  /** Browser origins allowed to call (MCP transport, DNS rebinding); the gateway's own origin always is; "*" allows any. */
  allowedOrigins: z._default(z.array(z.string()), []),
  /** Largest request body accepted, in bytes (413 above). */
  maxBodyBytes: z._default(int(1024, 100 * 1024 * 1024), 1024 * 1024),
  /** Milliseconds to wait for the origin's response headers (504 after). */
  originTimeoutMs: z._default(int(100, 600_000), 30_000),
  /**
   * When the caller's Durable Object throws or does not answer within `storeTimeoutMs`:
   * `"closed"` answers 503 (nothing is admitted unmetered); `"open"` forwards the request
   * to the origin unmetered (`Tollbooth-Degraded: store-unavailable`). Requests with a
   * credential and tollbooth's `/verify` and `/challenge` endpoints always fail closed.
   */
  onStoreError: z._default(z.enum(STORE_ERROR_MODES), "closed"),
  /** Milliseconds to wait for the caller's Durable Object before treating it as failed. */
  storeTimeoutMs: z._default(int(50, 10_000), 500),
});

/** A validated policy with every default filled in. */
export type Policy = z.output<typeof schema>;
/** What a user may write: every field optional. */
export type PolicyInput = z.input<typeof schema>;

/**
 * Validate a policy and fill in defaults.
 * @param input a parsed JSON value, a JSON string, or undefined (all defaults)
 * @throws TypeError naming the first bad field, e.g. `TOLLBOOTH_POLICY.bucket.capacity: ...`
 */
export function parsePolicy(input: unknown): Policy {
  let value = input;
  if (typeof input === "string") {
    try {
      value = input.trim() === "" ? {} : JSON.parse(input);
    } catch (err) {
      throw new TypeError(`TOLLBOOTH_POLICY is not valid JSON: ${(err as Error).message}`);
    }
  }
  const result = schema.safeParse(value ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
    const path = [...issue.path.map(String), ...keys.slice(0, 1)].join(".");
    throw new TypeError(`TOLLBOOTH_POLICY${path ? "." + path : ""}: ${issue.message}`);
  }
  const policy = result.data;
  policy.costs.methods = { ...DEFAULT_METHOD_COSTS, ...policy.costs.methods };
  const costs: Array<[string, number]> = [
    ...Object.entries(policy.costs.methods).map(([k, v]) => [`costs.methods.${k}`, v] as [string, number]),
    ...Object.entries(policy.costs.tools).map(([k, v]) => [`costs.tools.${k}`, v] as [string, number]),
    ["costs.default", policy.costs.default],
    ["costs.otherPaths", policy.costs.otherPaths],
  ];
  for (const [field, value] of costs) {
    // A cost above the capacity could never be admitted by the free bucket.
    if (value > policy.bucket.capacity) {
      throw new TypeError(`TOLLBOOTH_POLICY.${field}: ${value} exceeds bucket.capacity (${policy.bucket.capacity})`);
    }
    // A cost above the credits of a solve could never be paid by solving.
    if (value > policy.challenge.credits) {
      throw new TypeError(`TOLLBOOTH_POLICY.${field}: ${value} exceeds challenge.credits (${policy.challenge.credits})`);
    }
  }
  return policy;
}

/**
 * Cost of one JSON-RPC message under a policy.
 * @param method the JSON-RPC `method`
 * @param toolName `params.name` when the method is `tools/call`
 * @returns units to take from the caller's bucket (an integer ≥ 0)
 */
export function methodCost(policy: Policy, method: string, toolName: string | undefined): number {
  // Own properties only: a client-chosen name such as "constructor" must not find Object.prototype.
  const { tools, methods } = policy.costs;
  if (method === "tools/call" && toolName !== undefined && Object.hasOwn(tools, toolName)) return tools[toolName]!;
  if (Object.hasOwn(methods, method)) return methods[method]!;
  const slash = method.indexOf("/");
  const family = slash > 0 ? method.slice(0, slash) + "/*" : undefined;
  if (family !== undefined && Object.hasOwn(methods, family)) return methods[family]!;
  return policy.costs.default;
}
