/**
 * The policy: one object that says what each request costs, how large each caller's
 * token bucket is, what a proof-of-work challenge asks and buys, and how the proxy
 * behaves. Given as JSON in the `TOLLBOOTH_POLICY` var; validated once, at start.
 */
import * as z from "zod/mini";
import { en } from "zod/locales";
import { checkCongestionCurve, DEFAULT_CONGESTION } from "../limits/congestion.ts";
import { checkClassPolicy, DEFAULT_CLASS_POLICY } from "../limits/origin-classes.ts";

// zod/mini ships no messages; English ones name what was expected ("Too small: expected number to be >=1").
z.config(en());

/** An integer number in [min, max]. */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.int().check(z.minimum(min), z.maximum(max));
/** A string matching `re`. */
const matching = (re: RegExp) => z.string().check(z.regex(re));
const cost = int(0);
/** A number in [0, 1]. */
const fraction = z.number().check(z.minimum(0), z.maximum(1));
/** One admission class's share of the origin ceiling (shared/limits/origin-classes.ts). */
const classShare = z.strictObject({
  /** Share of the ceiling only this class may use. */
  guarantee: fraction,
  /** Share of the shared pool this class must leave for the classes above it. */
  reserve: fraction,
});
/** Origin shards when the policy names none (docs/allocation.md, "How many shards"). */
export const DEFAULT_ORIGIN_SHARDS = 16;
const bucket = z.strictObject({
  /** Most units the bucket holds (the burst). */
  capacity: int(1),
  /** Units added per second (at least 0.0001: one unit per 10 000 s). */
  refillPerSecond: z.number().check(z.minimum(0.0001)),
});

/**
 * Method costs every policy starts from: what MCP clients send on connect and while idle
 * never trips the limit (handshake, listing, logging level, completion).
 */
export const DEFAULT_METHOD_COSTS: Readonly<Record<string, number>> = {
  initialize: 0,
  ping: 0,
  "tools/list": 0,
  "resources/list": 0,
  "resources/templates/list": 0,
  "prompts/list": 0,
  "logging/setLevel": 0,
  "completion/complete": 0,
  "notifications/*": 0,
};

/**
 * Identity strategies, tried in the policy's order (see `shared/identity/index.ts`):
 * - `jwt`: `Authorization: Bearer` verified as a JWT (iss + sub) — verified;
 * - `api-key`: a key the operator issued (KV `TOLLBOOTH_KEYS` or `identity.apiKeys`) — verified;
 * - `ip`: the caller's network from `CF-Connecting-IP` (prefix) — shared by everyone there;
 * - `authorization-unverified`, `api-key-unverified`: the hash of whatever header value
 *   arrives — opt-in only, splittable (a caller mints new values for free).
 */
export const IDENTITY_STRATEGIES = ["jwt", "api-key", "ip", "authorization-unverified", "api-key-unverified"] as const;
/** An identity strategy name. */
export type IdentityStrategy = (typeof IDENTITY_STRATEGIES)[number];

/** What the gateway does when the caller's Durable Object fails or times out (see `onStoreError`). */
export const STORE_ERROR_MODES = ["closed", "open"] as const;

/** How an over-budget request is answered: 402 with challenges, or 429 with an exact `Retry-After` (challenges still in `error.data`). */
export const OVER_BUDGET_MODES = ["402", "429"] as const;

const costsShape = {
  /** Cost of a JSON-RPC request whose method has no entry below. */
  default: cost,
  /** Cost per JSON-RPC method; `prefix/*` matches a whole family. Merged over DEFAULT_METHOD_COSTS. */
  methods: z.record(z.string(), cost),
  /** Cost of `tools/call` per tool (`params.name`); wins over `methods["tools/call"]`. */
  tools: z.record(z.string(), cost),
  /** Cost of a request to any path other than the endpoint (OAuth metadata paths cost 0). */
  otherPaths: cost,
};
const adaptiveShape = {
  /** Decayed solves that raise the difficulty by one bit. */
  solvesPerStep: int(1, 1_000_000),
  /** Half-life of the solve count, in seconds: a quiet caller's difficulty falls back. */
  halfLifeSeconds: int(1, 86_400),
  /** Most bits added to `difficulty` (0 turns adaptation off); the sum is capped at 32. */
  maxExtraBits: int(0, 31),
};
const challengeShape = {
  /** Leading zero bits required of SHA-256(salt ‖ nonce) of a caller with no recent solves. */
  difficulty: int(1, 32),
  /** Credits an access token minted from one solve carries. */
  credits: int(1),
  /** Seconds a challenge stays redeemable. */
  ttlSeconds: int(5, 3600),
  /** Per-caller adaptive difficulty (see docs/adaptive-difficulty.md). */
  adaptive: z.strictObject(adaptiveShape),
};
const limitsShape = {
  /** Most MCP sessions (initialize answered with `Mcp-Session-Id`) a caller holds open at once. */
  sessions: int(1, 10_000),
  /** A session no longer counts this many seconds after it was opened (or at its DELETE). */
  sessionTtlSeconds: int(10, 86_400),
  /** Most GET SSE streams a caller holds open at once. */
  streams: int(1, 10_000),
  /** A GET SSE stream is ended by the gateway after this many seconds (the client resumes with `Last-Event-ID`). */
  streamMaxSeconds: int(5, 86_400),
};
const DEFAULT_ADAPTIVE = { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 };
const DEFAULT_CHALLENGE = { difficulty: 16, credits: 20, ttlSeconds: 120, adaptive: DEFAULT_ADAPTIVE };
const DEFAULT_LIMITS = { sessions: 16, sessionTtlSeconds: 3600, streams: 4, streamMaxSeconds: 600 };
const DEFAULT_COSTS = { default: 1, methods: {}, tools: {}, otherPaths: 1 };

/**
 * The L402 price of a plan (docs/wire-contract.md §10): one payment of `sats` buys a
 * macaroon carrying `credits`, valid `ttlSeconds`.
 */
const l402Price = z.strictObject({
  /** Price of one bundle, satoshis. */
  sats: int(1, 100_000_000),
  /** Credits one payment buys (spent like an access token's). */
  credits: int(1, 1_000_000_000),
  /** Seconds a paid macaroon stays valid, from when its challenge was issued. */
  ttlSeconds: z._default(int(60, 30 * 86400), 3600),
});

/** Lightning backends an operator can issue invoices from (workers/invoices.ts). */
export const LIGHTNING_BACKENDS = ["lnd", "lnbits"] as const;

/**
 * The operator's Lightning backend for L402. Its secret (LND invoice macaroon in hex, or
 * LNbits invoice key) is the `TOLLBOOTH_LIGHTNING_SECRET` secret, never the policy.
 */
const lightningSchema = z.strictObject({
  /** `lnd` (REST, `POST /v1/invoices`) or `lnbits` (`POST /api/v1/payments`). */
  backend: z.enum(LIGHTNING_BACKENDS),
  /** Base URL of the backend's REST API (https; http on loopback for tests). */
  url: matching(/^https?:\/\/\S+$/),
  /** The L402 service name in macaroon caveats (`services=<service>:0`). */
  service: z._default(matching(/^[a-z0-9][a-z0-9-]{0,31}$/), "tollbooth"),
  /** Milliseconds to wait for an invoice; past it the 402 offers L402 as unavailable. */
  timeoutMs: z._default(int(100, 30_000), 3_000),
  /** Seconds an invoice can be paid. */
  invoiceExpirySeconds: z._default(int(60, 86_400), 600),
  /** Invoices one isolate may create per second (burst 10×); past it L402 is offered as unavailable (`busy`). */
  invoicesPerSecond: z._default(z.number().check(z.minimum(0.01), z.maximum(1000)), 2),
});

/** A positive integer in atomic units of a token (e.g. 10000 = 0.01 USDC at 6 decimals), as a decimal string. */
const atomic = matching(/^[1-9][0-9]{0,30}$/);

/**
 * The x402 price of a plan (docs/wire-contract.md §12): `credits` mode, one payment of
 * `amount` buys an access token of `credits` valid `ttlSeconds`; `per-request` mode, each
 * request pays `amountPerUnit` × its cost.
 */
const x402Price = z.union([
  z.strictObject({
    mode: z.literal("credits"),
    /** Price of one bundle, atomic units of the asset. */
    amount: atomic,
    /** Credits one payment buys. */
    credits: int(1, 1_000_000_000),
    /** Seconds the access token it buys lives. */
    ttlSeconds: z._default(int(60, 30 * 86400), 3600),
  }),
  z.strictObject({
    mode: z.literal("per-request"),
    /** Price of one unit of cost, atomic units of the asset. */
    amountPerUnit: atomic,
  }),
]);

/**
 * Where x402 payments go and how they settle: the facilitator (x402 v2 `/verify`, `/settle`),
 * the payee, and the assets accepted. An optional `Authorization` value for the facilitator is
 * the `TOLLBOOTH_FACILITATOR_AUTH` secret, never the policy.
 */
const facilitatorSchema = z.strictObject({
  /** The facilitator's base URL (https; http on loopback for tests). */
  url: matching(/^https?:\/\/\S+$/),
  /** Milliseconds to wait for `/verify` or `/settle`. */
  timeoutMs: z._default(int(100, 120_000), 10_000),
  /** The operator's address that receives payments. */
  payTo: matching(/^0x[0-9a-fA-F]{40}$/),
  /** Assets accepted, each an EIP-3009 token on an EVM network (CAIP-2), with its EIP-712 domain name and version. */
  assets: z
    .array(z.strictObject({ network: matching(/^eip155:[1-9][0-9]{0,19}$/), asset: matching(/^0x[0-9a-fA-F]{40}$/), name: matching(/^[\x20-\x7e]{1,64}$/), version: matching(/^[\x20-\x7e]{1,16}$/) }))
    .check(z.minLength(1)),
  /** Seconds a payment authorization may take to settle (`maxTimeoutSeconds` of the requirement). */
  maxTimeoutSeconds: z._default(int(10, 3600), 120),
});

/** What a plan may override: every field optional, each section merged over the policy's own. */
const planSchema = z.strictObject({
  bucket: z.optional(bucket),
  ceiling: z.optional(bucket),
  costs: z.optional(z.strictObject({ default: z.optional(cost), methods: z.optional(costsShape.methods), tools: z.optional(costsShape.tools), otherPaths: z.optional(cost) })),
  challenge: z.optional(
    z.strictObject({
      difficulty: z.optional(challengeShape.difficulty),
      credits: z.optional(challengeShape.credits),
      ttlSeconds: z.optional(challengeShape.ttlSeconds),
      adaptive: z.optional(z.strictObject({ solvesPerStep: z.optional(adaptiveShape.solvesPerStep), halfLifeSeconds: z.optional(adaptiveShape.halfLifeSeconds), maxExtraBits: z.optional(adaptiveShape.maxExtraBits) })),
    }),
  ),
  overBudget: z.optional(z.enum(OVER_BUDGET_MODES)),
  limits: z.optional(z.strictObject({ sessions: z.optional(limitsShape.sessions), sessionTtlSeconds: z.optional(limitsShape.sessionTtlSeconds), streams: z.optional(limitsShape.streams), streamMaxSeconds: z.optional(limitsShape.streamMaxSeconds) })),
  /** The plan's L402 price; null: L402 not offered to this plan. */
  l402: z.optional(z.nullable(l402Price)),
  /** The plan's x402 price; null: x402 not offered to this plan. */
  x402: z.optional(z.nullable(x402Price)),
});

const PLAN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * One issuer the `jwt` strategy accepts, with its own keys: a token verifies only under the
 * keys of the entry its `iss` names (see `shared/identity/jwt.ts`).
 */
const jwtIssuerSchema = z.strictObject({
  /** JWKS URL (https, or http on loopback for tests): fetched, cached, refetched on an unknown `kid` (rotation). */
  jwksUrl: z.optional(matching(/^https?:\/\/\S+$/)),
  /** Static public keys (JWK objects), instead of or beside `jwksUrl`. */
  keys: z.optional(z.array(z.record(z.string(), z.unknown())).check(z.minLength(1))),
  /** The issuer's `iss` value; several only for spellings of one issuer (they share this entry's keys). */
  issuer: z.union([z.string().check(z.minLength(1)), z.array(z.string().check(z.minLength(1))).check(z.minLength(1))]),
  /** Accepted `aud` value(s): the gateway's own resource (MCP authorization: tokens meant for this server only). */
  audience: z.union([z.string().check(z.minLength(1)), z.array(z.string()).check(z.minLength(1))]),
  /** Accepted `alg` values (asymmetric only). */
  algorithms: z._default(z.array(z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"])).check(z.minLength(1)), ["RS256", "ES256", "EdDSA"]),
  /** Seconds of clock skew allowed on `exp` / `nbf`. */
  clockToleranceSeconds: z._default(int(0, 300), 5),
  /** Claim of this issuer's tokens naming the caller's plan (a string); absent or unknown → `defaultPlan`. Without it, this issuer's callers get `defaultPlan`. */
  planClaim: z.optional(z.string().check(z.minLength(1))),
  /** Plans this issuer's `planClaim` may name (needs `planClaim`); a claim naming another → `defaultPlan`. Absent: any plan. */
  plans: z.optional(z.array(matching(PLAN_NAME)).check(z.minLength(1))),
});

/** `identity.jwt`: one issuer (the form before issuers were separate), or a list of issuers, one entry each. */
const jwtSchema = z.union([jwtIssuerSchema, z.array(jwtIssuerSchema).check(z.minLength(1))]);

/** One entry of `identity.jwt`, validated, defaults filled in. */
export type JwtIssuer = z.output<typeof jwtIssuerSchema>;

/**
 * The entries of `identity.jwt` with the option path that names each in errors: the
 * single-object form is a list of one at `TOLLBOOTH_POLICY.identity.jwt`; the list form's
 * entries are at `TOLLBOOTH_POLICY.identity.jwt.<i>`.
 * @param jwt `policy.identity.jwt`
 * @returns `[]` when undefined
 */
export function jwtIssuers(jwt: JwtIssuer | readonly JwtIssuer[] | undefined): Array<{ at: string; entry: JwtIssuer }> {
  const at = "TOLLBOOTH_POLICY.identity.jwt";
  if (jwt === undefined) return [];
  return Array.isArray(jwt) ? jwt.map((entry, i) => ({ at: `${at}.${i}`, entry })) : [{ at, entry: jwt as JwtIssuer }];
}

/**
 * Refuse an `identity.jwt` whose entries would not keep issuers apart: an `iss` listed by two
 * entries (each entry's keys verify only its own issuer's tokens, so one issuer has one
 * entry), or `plans` without `planClaim`.
 * @throws TypeError naming the option, e.g. `TOLLBOOTH_POLICY.identity.jwt.1.issuer: …`
 */
export function checkJwtIssuers(jwt: JwtIssuer | readonly JwtIssuer[] | undefined): void {
  const seen = new Map<string, string>();
  for (const { at, entry } of jwtIssuers(jwt)) {
    for (const iss of typeof entry.issuer === "string" ? [entry.issuer] : entry.issuer) {
      const first = seen.get(iss);
      if (first !== undefined && first !== at) {
        throw new TypeError(`${at}.issuer: ${JSON.stringify(iss)} is already the issuer of ${first.slice("TOLLBOOTH_POLICY.".length)}; list each issuer once, with all its keys`);
      }
      seen.set(iss, at);
    }
    if (entry.plans !== undefined && entry.planClaim === undefined) throw new TypeError(`${at}.plans: needs planClaim (the claim whose values it allows)`);
  }
}

const schema = z.strictObject({
  /** `realm` of the `PowChallenge` challenge. */
  realm: z._default(matching(/^[\x20-\x7e]{1,64}$/), "tollbooth"),
  /** Path of the gated MCP endpoint. */
  endpoint: z._default(matching(/^\/[^?#]*$/), "/mcp"),
  /** The free token bucket of each caller (of the default plan). */
  bucket: z._default(bucket, { capacity: 10, refillPerSecond: 0.5 }),
  /** Hard per-caller ceiling (requests, any cost) that even token holders cannot pass: 429. */
  ceiling: z._default(bucket, { capacity: 60, refillPerSecond: 10 }),
  costs: z._default(
    z.strictObject({
      default: z._default(costsShape.default, 1),
      methods: z._default(costsShape.methods, {}),
      tools: z._default(costsShape.tools, {}),
      otherPaths: z._default(costsShape.otherPaths, 1),
    }),
    DEFAULT_COSTS,
  ),
  challenge: z._default(
    z.strictObject({
      difficulty: z._default(challengeShape.difficulty, 16),
      credits: z._default(challengeShape.credits, 20),
      ttlSeconds: z._default(challengeShape.ttlSeconds, 120),
      adaptive: z._default(
        z.strictObject({
          solvesPerStep: z._default(adaptiveShape.solvesPerStep, DEFAULT_ADAPTIVE.solvesPerStep),
          halfLifeSeconds: z._default(adaptiveShape.halfLifeSeconds, DEFAULT_ADAPTIVE.halfLifeSeconds),
          maxExtraBits: z._default(adaptiveShape.maxExtraBits, DEFAULT_ADAPTIVE.maxExtraBits),
        }),
        DEFAULT_ADAPTIVE,
      ),
    }),
    DEFAULT_CHALLENGE,
  ),
  /** Over budget: `"402"` (challenges) or `"429"` (exact integer `Retry-After`, challenges in `error.data`). */
  overBudget: z._default(z.enum(OVER_BUDGET_MODES), "402"),
  /** Per-caller caps on open MCP sessions and GET SSE streams. */
  limits: z._default(
    z.strictObject({
      sessions: z._default(limitsShape.sessions, DEFAULT_LIMITS.sessions),
      sessionTtlSeconds: z._default(limitsShape.sessionTtlSeconds, DEFAULT_LIMITS.sessionTtlSeconds),
      streams: z._default(limitsShape.streams, DEFAULT_LIMITS.streams),
      streamMaxSeconds: z._default(limitsShape.streamMaxSeconds, DEFAULT_LIMITS.streamMaxSeconds),
    }),
    DEFAULT_LIMITS,
  ),
  /** L402 price of the default plan (plans may override); null: not offered. Needs `lightning`. */
  l402: z._default(z.nullable(l402Price), null),
  /** The operator's Lightning backend (null: L402 off everywhere). */
  lightning: z._default(z.nullable(lightningSchema), null),
  /** x402 price of the default plan (plans may override); null: not offered. Needs `facilitator`. */
  x402: z._default(z.nullable(x402Price), null),
  /** The x402 facilitator, payee and assets (null: x402 off everywhere). */
  facilitator: z._default(z.nullable(facilitatorSchema), null),
  /**
   * Answer an over-budget single `tools/call` the MCP way (x402 `transports-v2/mcp.md`): HTTP
   * 200 with a tool result `isError: true` carrying the PaymentRequired, instead of a 402.
   */
  x402ToolResult: z._default(z.boolean(), false),
  /** Named plans: each overrides sections of the fields above (merged field by field). */
  plans: z._default(z.record(matching(PLAN_NAME), planSchema), {}),
  /** Plan of an identity whose key or token names none (or an unknown one). */
  defaultPlan: z._default(matching(PLAN_NAME), "free"),
  token: z._default(
    z.strictObject({
      /** Lifetime of an access token, in seconds. */
      ttlSeconds: z._default(int(1, 86400), 300),
    }),
    { ttlSeconds: 300 },
  ),
  identity: z._default(
    z.strictObject({
      strategies: z._default(z.array(z.enum(IDENTITY_STRATEGIES)).check(z.minLength(1)), ["jwt", "api-key", "ip"]),
      /** Header read by the `api-key` and `api-key-unverified` strategies. */
      apiKeyHeader: z._default(matching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/), "x-api-key"),
      /** The `jwt` strategy's issuers (one object, or a list with one entry per issuer); without them `jwt` never applies. */
      jwt: z.optional(jwtSchema),
      /** API keys listed in the policy, beside the `TOLLBOOTH_KEYS` KV namespace: SHA-256 (hex) of the key, never the key. */
      apiKeys: z._default(z.array(z.strictObject({ sha256: matching(HEX64), name: matching(/^[\x20-\x7e]{1,64}$/), plan: z.optional(matching(PLAN_NAME)) })), []),
      /** IPv4 prefix length that names one network (32: each address). */
      ipv4Prefix: z._default(int(8, 32), 32),
      /** IPv6 prefix length that names one network (64: a subscriber's LAN; 48: a site). */
      ipv6Prefix: z._default(int(16, 128), 64),
    }),
    { strategies: ["jwt", "api-key", "ip"], apiKeyHeader: "x-api-key", apiKeys: [], ipv4Prefix: 32, ipv6Prefix: 64 },
  ),
  /**
   * Network ceiling: `Retry-After` (seconds) of its 429; set it to the `period` of the
   * `TOLLBOOTH_NETWORK_LIMIT` binding in wrangler.toml (10 or 60).
   */
  networkRetryAfterSeconds: z._default(int(1, 60), 10),
  /** Origin ceiling: every request forwarded, all callers together (null: none). */
  originCeiling: z._default(z.nullable(bucket), null),
  /**
   * How the origin ceiling is shared when it fills (docs/allocation.md): each admission class's
   * guaranteed share and pool reserve, the congestion curve, and the number of origin shards.
   * Read only when `originCeiling` is set.
   */
  allocation: z._default(
    z.strictObject({
      classes: z._default(
        z.strictObject({
          paid: z._default(classShare, DEFAULT_CLASS_POLICY.paid),
          verified: z._default(classShare, DEFAULT_CLASS_POLICY.verified),
          worked: z._default(classShare, DEFAULT_CLASS_POLICY.worked),
          free: z._default(classShare, DEFAULT_CLASS_POLICY.free),
        }),
        DEFAULT_CLASS_POLICY,
      ),
      congestion: z._default(
        z.strictObject({
          start: z._default(fraction, DEFAULT_CONGESTION.start),
          minFreeShare: z._default(z.number().check(z.gt(0), z.maximum(1)), DEFAULT_CONGESTION.minFreeShare),
          maxExtraBits: z._default(int(0, 16), DEFAULT_CONGESTION.maxExtraBits),
          maxPriceFactor: z._default(z.number().check(z.minimum(1), z.maximum(1000)), DEFAULT_CONGESTION.maxPriceFactor),
          riseSeconds: z._default(z.number().check(z.gt(0), z.maximum(3600)), DEFAULT_CONGESTION.riseSeconds),
          fallSeconds: z._default(z.number().check(z.gt(0), z.maximum(3600)), DEFAULT_CONGESTION.fallSeconds),
        }),
        DEFAULT_CONGESTION,
      ),
      /** Origin shard objects S: each serves the isolates that chose it; size so that each sees ≤ ~500 calls/s (docs/allocation.md). */
      shards: z._default(int(1, 1024), DEFAULT_ORIGIN_SHARDS),
    }),
    { classes: DEFAULT_CLASS_POLICY, congestion: DEFAULT_CONGESTION, shards: DEFAULT_ORIGIN_SHARDS },
  ),
  /** Browser origins allowed to call (MCP transport, DNS rebinding); the gateway's own origin always is; "*" allows any. */
  allowedOrigins: z._default(z.array(z.string()), []),
  /** Largest request body accepted, in bytes (413 above). */
  maxBodyBytes: z._default(int(1024, 100 * 1024 * 1024), 1024 * 1024),
  /** Most milliseconds a request body may take to arrive (408 after). */
  bodyTimeoutMs: z._default(int(100, 600_000), 10_000),
  /** Deepest JSON nesting (arrays and objects) accepted in a body (400 deeper). */
  maxJsonDepth: z._default(int(2, 1000), 64),
  /** Milliseconds to wait for the origin's response headers (504 after). */
  originTimeoutMs: z._default(int(100, 600_000), 30_000),
  /**
   * When the caller's Durable Object throws or does not answer within `storeTimeoutMs`:
   * `"closed"` answers 503 (nothing is admitted unmetered); `"open"` forwards the request
   * to the origin unmetered (`Tollbooth-Degraded: store-unavailable`). Requests with a
   * credential and tollbooth's `/verify` and `/challenge` endpoints always fail closed.
   */
  onStoreError: z._default(z.enum(STORE_ERROR_MODES), "closed"),
  /**
   * Admission leases (shared/limits/lease.ts): an isolate that sees a caller at least once a second
   * admits its in-budget requests against units leased from the caller's Durable Object,
   * renewing in the background — no Durable Object call per request. Off: every request asks
   * the object.
   */
  leases: z._default(z.boolean(), true),
  /** Milliseconds to wait for the caller's Durable Object before treating it as failed. */
  storeTimeoutMs: z._default(int(50, 10_000), 500),
});

type Parsed = z.output<typeof schema>;

/**
 * One plan, resolved: the policy's own sections with the plan's overrides merged in.
 * An identity gets its plan from its API-key entry, a JWT claim (the `planClaim` of the token's issuer in `identity.jwt`)
 * or `defaultPlan`.
 */
export interface Plan {
  name: string;
  /** The free token bucket (units; units per second). */
  bucket: Parsed["bucket"];
  /** The per-caller safety ceiling (requests; requests per second). */
  ceiling: Parsed["ceiling"];
  costs: Parsed["costs"];
  challenge: Parsed["challenge"];
  overBudget: Parsed["overBudget"];
  limits: Parsed["limits"];
  /** L402 price (sats per bundle of credits); null when not offered. */
  l402: Parsed["l402"];
  /** x402 price (atomic units per bundle of credits, or per unit of cost); null when not offered. */
  x402: Parsed["x402"];
}

/** A validated policy with every default filled in; `plans` holds every plan resolved, `defaultPlan` included. */
export type Policy = Omit<Parsed, "plans"> & { plans: Record<string, Plan> };
/** What a user may write: every field optional. */
export type PolicyInput = z.input<typeof schema>;

/**
 * Validate a policy and fill in defaults.
 * @param input a parsed JSON value, a JSON string, or undefined (all defaults)
 * @throws TypeError naming the first bad field, e.g. `TOLLBOOTH_POLICY.bucket.capacity: ...`
 *   or `TOLLBOOTH_POLICY.plans.pro.costs.tools.search: 30 exceeds challenge.credits (20)`
 */
export function parsePolicy(input: unknown): Policy {
  if (typeof input === "object" && input !== null && validated.has(input)) return input as Policy;
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
    const { issue, path: at } = narrowed(result.error.issues[0]!, []);
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
    const path = [...at, ...keys.slice(0, 1)].join(".");
    throw new TypeError(`TOLLBOOTH_POLICY${path ? "." + path : ""}: ${issue.message}`);
  }
  const parsed = result.data;
  checkJwtIssuers(parsed.identity.jwt);
  // Checks across fields (guarantees ≤ 1, reserves rising as priority falls), named like the rest.
  try {
    checkClassPolicy(parsed.allocation.classes);
    checkCongestionCurve(parsed.allocation.congestion);
  } catch (err) {
    throw new TypeError(`TOLLBOOTH_POLICY.${(err as Error).message}`);
  }
  parsed.costs.methods = withDefaultCosts(parsed.costs.methods);
  const base: Plan = { name: parsed.defaultPlan, bucket: parsed.bucket, ceiling: parsed.ceiling, costs: parsed.costs, challenge: parsed.challenge, overBudget: parsed.overBudget, limits: parsed.limits, l402: parsed.l402, x402: parsed.x402 };
  const plans: Record<string, Plan> = Object.create(null);
  for (const [name, o] of Object.entries(parsed.plans)) {
    plans[name] = {
      name,
      bucket: o.bucket ?? base.bucket,
      ceiling: o.ceiling ?? base.ceiling,
      costs: {
        default: o.costs?.default ?? base.costs.default,
        methods: overlayCosts(base.costs.methods, o.costs?.methods),
        tools: { ...base.costs.tools, ...o.costs?.tools },
        otherPaths: o.costs?.otherPaths ?? base.costs.otherPaths,
      },
      challenge: { ...base.challenge, ...stripUndefined(o.challenge ?? {}), adaptive: { ...base.challenge.adaptive, ...stripUndefined(o.challenge?.adaptive ?? {}) } },
      overBudget: o.overBudget ?? base.overBudget,
      limits: { ...base.limits, ...stripUndefined(o.limits ?? {}) },
      l402: o.l402 === undefined ? base.l402 : o.l402,
      x402: o.x402 === undefined ? base.x402 : o.x402,
    };
  }
  // The default plan named in `plans` replaces the policy's own sections (and is what they read).
  const defaultPlan = plans[parsed.defaultPlan] ?? base;
  plans[parsed.defaultPlan] = defaultPlan;
  const { name: _name, ...sections } = defaultPlan;
  const policy: Policy = { ...parsed, ...sections, plans };
  for (const plan of Object.values(plans)) {
    const at = plan === base ? "" : `plans.${plan.name}.`;
    checkPlan(plan, at);
    // A price nobody can pay is a configuration error, not a silent absence.
    if (plan.l402 && !policy.lightning) throw new TypeError(`TOLLBOOTH_POLICY.${at}l402: an L402 price needs \`lightning\` (the backend that issues invoices)`);
    if (plan.x402 && !policy.facilitator) throw new TypeError(`TOLLBOOTH_POLICY.${at}x402: an x402 price needs \`facilitator\` (where payments are verified and settled)`);
  }
  validated.add(policy);
  return policy;
}

/**
 * The issue to report for a failed union: when the value has the shape of exactly one option
 * (every other option failed only on the value's type, e.g. an object given to `X | X[]`),
 * that option's first issue, so the message names the bad field; else the union's own issue.
 * @param issue a zod issue
 * @param base path of the union within the policy
 * @returns the issue and its full path
 */
function narrowed(issue: z.core.$ZodIssue, base: string[]): { issue: z.core.$ZodIssue; path: string[] } {
  const path = [...base, ...issue.path.map(String)];
  if (issue.code !== "invalid_union") return { issue, path };
  const shaped = issue.errors.filter((option) => !(option.length === 1 && option[0]!.code === "invalid_type" && option[0]!.path.length === 0));
  return shaped.length === 1 && shaped[0]!.length > 0 ? narrowed(shaped[0]![0]!, path) : { issue, path };
}

/** Policies `parsePolicy` returned: given again, they are returned as they are. */
const validated = new WeakSet<object>();

/**
 * `methods` over DEFAULT_METHOD_COSTS (see `overlayCosts`).
 */
function withDefaultCosts(methods: Record<string, number>): Record<string, number> {
  return overlayCosts(DEFAULT_METHOD_COSTS, methods);
}

/**
 * Method costs `over` laid over `base`. A price in `base` for one method gives way to a
 * family priced in `over` (`"resources/*": 3` prices `resources/list` too), unless `over`
 * also prices that method itself.
 */
function overlayCosts(base: Readonly<Record<string, number>>, over: Readonly<Record<string, number>> | undefined): Record<string, number> {
  const merged: Record<string, number> = {};
  for (const [method, cost] of Object.entries(base)) {
    const slash = method.indexOf("/");
    const family = slash > 0 ? method.slice(0, slash) + "/*" : undefined;
    if (over && family !== undefined && family !== method && Object.hasOwn(over, family)) continue;
    merged[method] = cost;
  }
  return { ...merged, ...over };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * A plan in which some single message could never be admitted is refused: a cost above
 * the bucket's capacity (the free bucket never holds it) or above a solve's credits
 * (solving never pays for it, so the caller would loop on 402).
 * @throws TypeError naming the field
 */
function checkPlan(plan: Plan, at: string): void {
  const costs: Array<[string, number]> = [
    ...Object.entries(plan.costs.methods).map(([k, v]) => [`costs.methods.${k}`, v] as [string, number]),
    ...Object.entries(plan.costs.tools).map(([k, v]) => [`costs.tools.${k}`, v] as [string, number]),
    ["costs.default", plan.costs.default],
    ["costs.otherPaths", plan.costs.otherPaths],
  ];
  for (const [field, value] of costs) {
    if (value > plan.bucket.capacity) {
      throw new TypeError(`TOLLBOOTH_POLICY.${at}${field}: ${value} exceeds bucket.capacity (${plan.bucket.capacity})`);
    }
    if (value > plan.challenge.credits) {
      throw new TypeError(`TOLLBOOTH_POLICY.${at}${field}: ${value} exceeds challenge.credits (${plan.challenge.credits})`);
    }
    if (plan.l402 && value > plan.l402.credits) {
      throw new TypeError(`TOLLBOOTH_POLICY.${at}${field}: ${value} exceeds l402.credits (${plan.l402.credits})`);
    }
    if (plan.x402?.mode === "credits" && value > plan.x402.credits) {
      throw new TypeError(`TOLLBOOTH_POLICY.${at}${field}: ${value} exceeds x402.credits (${plan.x402.credits})`);
    }
  }
}

/**
 * The plan named `name`, or the default plan when `name` is undefined or names no plan.
 */
export function planFor(policy: Policy, name: string | undefined): Plan {
  return (name !== undefined && Object.hasOwn(policy.plans, name) ? policy.plans[name] : undefined) ?? policy.plans[policy.defaultPlan]!;
}

/**
 * Most units one request may cost under a plan and still be payable: a batch above this
 * could never be admitted (neither the free bucket, nor one solve's credits, nor one L402
 * payment's credits hold it); unbounded when the plan pays x402 per request.
 */
export function maxPayableCost(plan: Plan): number {
  // Paying per request pays for any cost.
  if (plan.x402?.mode === "per-request") return Number.MAX_SAFE_INTEGER;
  return Math.max(plan.bucket.capacity, plan.challenge.credits, plan.l402?.credits ?? 0, plan.x402?.credits ?? 0);
}

/**
 * Cost of one JSON-RPC message under a policy.
 * @param method the JSON-RPC `method`
 * @param toolName `params.name` when the method is `tools/call`
 * @returns units to take from the caller's bucket (an integer ≥ 0)
 */
export function methodCost(policy: Pick<Plan, "costs">, method: string, toolName: string | undefined): number {
  // Own properties only: a client-chosen name such as "constructor" must not find Object.prototype.
  const { tools, methods } = policy.costs;
  if (method === "tools/call" && toolName !== undefined && Object.hasOwn(tools, toolName)) return tools[toolName]!;
  if (Object.hasOwn(methods, method)) return methods[method]!;
  const slash = method.indexOf("/");
  const family = slash > 0 ? method.slice(0, slash) + "/*" : undefined;
  if (family !== undefined && Object.hasOwn(methods, family)) return methods[family]!;
  return policy.costs.default;
}
