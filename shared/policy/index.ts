/**
 * The policy: one object that says what each request costs, how large each caller's
 * token bucket is, what a proof-of-work challenge asks and buys, and how the proxy
 * behaves. Given as JSON in the `TOLLBOOTH_POLICY` var; validated once, at start.
 */

import { en } from "zod/locales";
import * as z from "zod/mini";
import { checkCongestionCurve, DEFAULT_CONGESTION } from "../limits/congestion.ts";
import { MAX_UNITS } from "../limits/micro-units.ts";
import { checkClassPolicy, DEFAULT_CLASS_POLICY } from "../limits/origin-classes.ts";

// zod/mini ships no messages; English ones name what was expected ("Too small: expected number to be >=1").
z.config(en());

/** An integer number in [min, max] (for a scheme's policy section too). */
export const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.int().check(z.minimum(min), z.maximum(max));
/** A string matching `re` (for a scheme's policy section too). */
export const matching = (re: RegExp) => z.string().check(z.regex(re));
const cost = int(0);
/** A number in [0, 1]. */
const fraction = z.number().check(z.minimum(0), z.maximum(1));
/**
 * One admission class's share of the origin ceiling (shared/limits/origin-classes.ts), each
 * field defaulting to the class's own in `d` (DEFAULT_CLASS_POLICY).
 */
const classShare = (d: { guarantee: number; reserve: number }) =>
  z._default(
    z.strictObject({
      /** Share of the ceiling only this class may use. */
      guarantee: z._default(fraction, d.guarantee),
      /** Share of the shared pool this class must leave for the classes above it. */
      reserve: z._default(fraction, d.reserve),
    }),
    d,
  );
/** Origin shards when the policy names none (docs/allocation.md, "How many shards"). */
export const DEFAULT_ORIGIN_SHARDS = 16;
/** Units added to a bucket per second (at least 0.0001: one unit per 10 000 s). */
const refill = z.number().check(z.minimum(0.0001));
/** A token bucket whose fields left out are those of `d` (capacity in units; units per second). */
const bucketOr = (d: { capacity: number; refillPerSecond: number }) =>
  z._default(z.strictObject({ capacity: z._default(int(1), d.capacity), refillPerSecond: z._default(refill, d.refillPerSecond) }), d);
/** A plan's bucket override: the fields it leaves out are the policy's own. */
const bucketOverride = z.optional(z.strictObject({ capacity: z.optional(int(1)), refillPerSecond: z.optional(refill) }));

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
/**
 * What a caller at its session cap gets for one more `initialize`: `evict` (the gateway ends
 * the caller's least recently used idle session at the origin with a DELETE on its behalf,
 * then opens the new one) or `refuse` (429 `sessions`).
 */
export const SESSION_CAP_MODES = ["evict", "refuse"] as const;

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
  /** A session no longer counts this many seconds after it was opened (or once the origin ended it: DELETE answered 2xx, or its 404). */
  sessionTtlSeconds: int(10, 86_400),
  /** At the session cap: end the least recently used idle session at the origin (`evict`), or refuse the new one (`refuse`). */
  onSessionCap: z.enum(SESSION_CAP_MODES),
  /** Most GET SSE streams a caller holds open at once. */
  streams: int(1, 10_000),
  /** A GET SSE stream is ended by the gateway after this many seconds (the client resumes with `Last-Event-ID`). */
  streamMaxSeconds: int(5, 86_400),
};
const DEFAULT_ADAPTIVE = { solvesPerStep: 10, halfLifeSeconds: 600, maxExtraBits: 6 };
const DEFAULT_CHALLENGE = { difficulty: 16, credits: 20, ttlSeconds: 120, adaptive: DEFAULT_ADAPTIVE };
const DEFAULT_LIMITS = { sessions: 16, sessionTtlSeconds: 3600, onSessionCap: "evict" as const, streams: 4, streamMaxSeconds: 600 };
const DEFAULT_COSTS = { default: 1, methods: {}, tools: {}, otherPaths: 1 };

/**
 * What a plan may override: every field optional, each section merged over the policy's own
 * (a scheme's price fields follow, from its section: `planShapeWith`).
 */
const planShape = {
  bucket: bucketOverride,
  ceiling: bucketOverride,
  costs: z.optional(
    z.strictObject({
      default: z.optional(cost),
      methods: z.optional(costsShape.methods),
      tools: z.optional(costsShape.tools),
      otherPaths: z.optional(cost),
    }),
  ),
  challenge: z.optional(
    z.strictObject({
      difficulty: z.optional(challengeShape.difficulty),
      credits: z.optional(challengeShape.credits),
      ttlSeconds: z.optional(challengeShape.ttlSeconds),
      adaptive: z.optional(
        z.strictObject({
          solvesPerStep: z.optional(adaptiveShape.solvesPerStep),
          halfLifeSeconds: z.optional(adaptiveShape.halfLifeSeconds),
          maxExtraBits: z.optional(adaptiveShape.maxExtraBits),
        }),
      ),
    }),
  ),
  overBudget: z.optional(z.enum(OVER_BUDGET_MODES)),
  limits: z.optional(
    z.strictObject({
      sessions: z.optional(limitsShape.sessions),
      sessionTtlSeconds: z.optional(limitsShape.sessionTtlSeconds),
      onSessionCap: z.optional(limitsShape.onSessionCap),
      streams: z.optional(limitsShape.streams),
      streamMaxSeconds: z.optional(limitsShape.streamMaxSeconds),
    }),
  ),
};

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
  algorithms: z._default(
    z.array(z.enum(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"])).check(z.minLength(1)),
    ["RS256", "ES256", "EdDSA"],
  ),
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
        throw new TypeError(
          `${at}.issuer: ${JSON.stringify(iss)} is already the issuer of ${first.slice("TOLLBOOTH_POLICY.".length)}; list each issuer once, with all its keys`,
        );
      }
      seen.set(iss, at);
    }
    if (entry.plans !== undefined && entry.planClaim === undefined)
      throw new TypeError(`${at}.plans: needs planClaim (the claim whose values it allows)`);
  }
}

/** The policy's own fields before the schemes' sections (`schemaWith` puts these in between). */
const before = {
  /** `realm` of the `PowChallenge` challenge. */
  realm: z._default(matching(/^[\x20-\x7e]{1,64}$/), "tollbooth"),
  /** Path of the gated MCP endpoint. */
  endpoint: z._default(matching(/^\/[^?#]*$/), "/mcp"),
  /** The free token bucket of each caller (of the default plan). */
  bucket: bucketOr({ capacity: 10, refillPerSecond: 0.5 }),
  /** Hard per-caller ceiling (requests, any cost) that even token holders cannot pass: 429. */
  ceiling: bucketOr({ capacity: 60, refillPerSecond: 10 }),
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
      onSessionCap: z._default(limitsShape.onSessionCap, DEFAULT_LIMITS.onSessionCap),
      streams: z._default(limitsShape.streams, DEFAULT_LIMITS.streams),
      streamMaxSeconds: z._default(limitsShape.streamMaxSeconds, DEFAULT_LIMITS.streamMaxSeconds),
    }),
    DEFAULT_LIMITS,
  ),
};

/** The policy's own fields after the schemes' sections and `plans`. */
const after = {
  /**
   * The order of the ways through a 402 (`WWW-Authenticate` field lines, `error.data.challenges`):
   * these schemes' types first, the others after in the registry's order (workers/schemes/registry.ts);
   * validated against the registered types (`parsePolicyWith`). Parsed: every registered type, in order.
   */
  offerOrder: z._default(z.array(z.string()), []),
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
      apiKeys: z._default(
        z.array(z.strictObject({ sha256: matching(HEX64), name: matching(/^[\x20-\x7e]{1,64}$/), plan: z.optional(matching(PLAN_NAME)) })),
        [],
      ),
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
  /**
   * Origin ceiling: every JSON-RPC message forwarded, all callers together (null: none;
   * docs/allocation.md). Its refill is counted in thousandths of a message per second: at
   * least 0.001.
   */
  originCeiling: z._default(
    z.nullable(z.strictObject({ capacity: int(1, MAX_UNITS), refillPerSecond: z.number().check(z.minimum(0.001), z.maximum(MAX_UNITS)) })),
    null,
  ),
  /**
   * How the origin ceiling is shared when it fills (docs/allocation.md): each admission class's
   * guaranteed share and pool reserve, the congestion curve, and the number of origin shards.
   * Read only when `originCeiling` is set.
   */
  allocation: z._default(
    z.strictObject({
      classes: z._default(
        z.strictObject({
          paid: classShare(DEFAULT_CLASS_POLICY.paid),
          verified: classShare(DEFAULT_CLASS_POLICY.verified),
          worked: classShare(DEFAULT_CLASS_POLICY.worked),
          free: classShare(DEFAULT_CLASS_POLICY.free),
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
};

/** Named plans: each overrides sections of the fields above (merged field by field). */
const plansOf = (plan: z.ZodMiniObject<typeof planShape>) => z._default(z.record(matching(PLAN_NAME), plan), {});

/** The schema without any scheme's section: the type of the policy's own fields. */
const coreSchema = z.strictObject({ ...before, plans: plansOf(z.strictObject(planShape)), ...after });

type Parsed = z.output<typeof coreSchema>;

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
  /**
   * A payment scheme's price in this plan, by the name its section gives it (null: the scheme
   * is not offered to this plan). Read through the scheme's own accessor
   * (workers/schemes/<name>/policy.ts), which knows its shape.
   */
  readonly [price: string]: unknown;
}

/**
 * A validated policy with every default filled in; `plans` holds every plan resolved,
 * `defaultPlan` included. A payment scheme's fields (its backend, the default plan's price)
 * are there under the names its section gives them, read through the scheme's accessors.
 */
export type Policy = Omit<Parsed, "plans"> & { plans: Record<string, Plan> } & { readonly [field: string]: unknown };
/** What a user may write: every field optional (a scheme's fields too, checked by its section). */
export type PolicyInput = z.input<typeof coreSchema> & { [field: string]: unknown };

/**
 * A payment scheme's part of the policy (workers/schemes/<name>/policy.ts): its fields, its
 * price in each plan, and what the policy's checks need of it. shared/ knows no scheme: the
 * gateway parses with every registered scheme's section (`parsePolicyWith`, through
 * workers/schemes/policy.ts `parsePolicy`). A section's fields sit in the policy after
 * `limits`, in the order of the sections, each section's prices first.
 */
export interface PolicySection {
  /**
   * Its price fields: the schema of one price. At the top level each is the default plan's
   * price (null when absent: not offered); in a plan, an override (null: not offered to it).
   */
  prices: Readonly<Record<string, z.core.$ZodType>>;
  /** Its other top-level fields (its backend, its options), with their defaults. */
  fields: Readonly<Record<string, z.core.$ZodType>>;
  /** Credits one payment buys under `plan` (0: not offered; `Number.MAX_SAFE_INTEGER`: pays for any cost). */
  credits(plan: Plan): number;
  /**
   * The most one message may cost under `plan` for this scheme to pay for it, and the field
   * that says so (`{ field: "<name>.credits", max }`); null when it puts no bound.
   */
  costCap(plan: Plan): { field: string; max: number } | null;
  /**
   * Refuse a plan the scheme cannot serve under `policy` (a price nobody can pay).
   * @param at the plan's place in errors: `""` (the default plan) or `plans.<name>.`
   * @throws TypeError naming the field, `TOLLBOOTH_POLICY.<at><field>: …`
   */
  check(plan: Plan, policy: Policy, at: string): void;
}

/** The schema with `sections` in place, built once per list of sections (and of scheme types). */
const schemas = new WeakMap<readonly PolicySection[], { types: readonly string[]; schema: typeof coreSchema }>();

function schemaWith(sections: readonly PolicySection[], types: readonly string[]): typeof coreSchema {
  const cached = schemas.get(sections);
  if (cached?.types === types) return cached.schema;
  const top: Record<string, z.core.$ZodType> = {};
  const prices: Record<string, z.core.$ZodType> = {};
  for (const section of sections) {
    for (const [name, price] of Object.entries(section.prices)) {
      top[name] = z._default(z.nullable(price), null);
      prices[name] = z.optional(z.nullable(price));
    }
    Object.assign(top, section.fields);
  }
  const plan = z.strictObject({ ...planShape, ...prices }) as unknown as z.ZodMiniObject<typeof planShape>;
  const offerOrder = z._default(z.array(z.enum(types as [string, ...string[]])), []);
  const schema = z.strictObject({ ...before, ...top, plans: plansOf(plan), ...after, offerOrder }) as unknown as typeof coreSchema;
  schemas.set(sections, { types, schema });
  return schema;
}

/**
 * Validate a policy and fill in defaults, with the payment schemes' `sections` and the
 * registered `schemeTypes` in the registry's order (the gateway's registry:
 * workers/schemes/policy.ts `parsePolicy`); `offerOrder` may name only those types.
 * @param input a parsed JSON value, a JSON string, or undefined (all defaults)
 * @throws TypeError naming the first bad field, e.g. `TOLLBOOTH_POLICY.bucket.capacity: ...`,
 *   `TOLLBOOTH_POLICY.bucket.refilPerSecond: Unrecognized key: "refilPerSecond"; did you mean "refillPerSecond"?`
 *   or `TOLLBOOTH_POLICY.plans.pro.costs.tools.search: 30 exceeds challenge.credits (20)`
 */
export function parsePolicyWith(sections: readonly PolicySection[], input: unknown, schemeTypes: readonly string[] = []): Policy {
  if (typeof input === "object" && input !== null && validated.has(input)) return input as Policy;
  let value = input;
  if (typeof input === "string") {
    try {
      value = input.trim() === "" ? {} : JSON.parse(input);
    } catch (err) {
      throw new TypeError(`TOLLBOOTH_POLICY is not valid JSON: ${(err as Error).message}`);
    }
  }
  const schema = schemaWith(sections, schemeTypes);
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw failure(schema, result.error.issues, value ?? {});
  const parsed = result.data;
  parsed.offerOrder = offerOrder(parsed.offerOrder, schemeTypes);
  checkJwtIssuers(parsed.identity.jwt);
  // Checks across fields (guarantees ≤ 1, reserves rising as priority falls), named like the rest.
  try {
    checkClassPolicy(parsed.allocation.classes);
    checkCongestionCurve(parsed.allocation.congestion);
  } catch (err) {
    throw new TypeError(`TOLLBOOTH_POLICY.${(err as Error).message}`);
  }
  parsed.costs.methods = withDefaultCosts(parsed.costs.methods);
  const priceNames = sections.flatMap((s) => Object.keys(s.prices));
  const fields = parsed as unknown as Readonly<Record<string, unknown>>;
  const base: Plan = {
    name: parsed.defaultPlan,
    bucket: parsed.bucket,
    ceiling: parsed.ceiling,
    costs: parsed.costs,
    challenge: parsed.challenge,
    overBudget: parsed.overBudget,
    limits: parsed.limits,
    ...Object.fromEntries(priceNames.map((n) => [n, fields[n]])),
  };
  const plans: Record<string, Plan> = Object.create(null);
  for (const [name, o] of Object.entries(parsed.plans) as Array<
    [string, (typeof parsed.plans)[string] & Readonly<Record<string, unknown>>]
  >) {
    plans[name] = {
      name,
      bucket: { ...base.bucket, ...stripUndefined(o.bucket ?? {}) },
      ceiling: { ...base.ceiling, ...stripUndefined(o.ceiling ?? {}) },
      costs: {
        default: o.costs?.default ?? base.costs.default,
        methods: overlayCosts(base.costs.methods, o.costs?.methods),
        tools: { ...base.costs.tools, ...o.costs?.tools },
        otherPaths: o.costs?.otherPaths ?? base.costs.otherPaths,
      },
      challenge: {
        ...base.challenge,
        ...stripUndefined(o.challenge ?? {}),
        adaptive: { ...base.challenge.adaptive, ...stripUndefined(o.challenge?.adaptive ?? {}) },
      },
      overBudget: o.overBudget ?? base.overBudget,
      limits: { ...base.limits, ...stripUndefined(o.limits ?? {}) },
      ...Object.fromEntries(priceNames.map((n) => [n, o[n] === undefined ? base[n] : o[n]])),
    };
  }
  // The default plan named in `plans` replaces the policy's own sections (and is what they read).
  const defaultPlan = plans[parsed.defaultPlan] ?? base;
  plans[parsed.defaultPlan] = defaultPlan;
  const { name: _name, ...own } = defaultPlan;
  const policy: Policy = { ...parsed, ...own, plans };
  for (const plan of Object.values(plans)) {
    const at = plan === base ? "" : `plans.${plan.name}.`;
    checkPlan(plan, at, sections);
    // A price nobody can pay is a configuration error, not a silent absence.
    for (const section of sections) section.check(plan, policy, at);
  }
  validated.add(policy);
  return policy;
}

/**
 * The error naming what is wrong with a policy `value` that failed `schema`, at the field's
 * full path (`TOLLBOOTH_POLICY.<path>: …`), from the issue that explains it best (`narrowed`):
 * - an unknown key: `Unrecognized key: "<key>"`, then the nearest field of that object
 *   (`did you mean "…"?`, see `closest`), else the object's fields when they are few;
 * - a field left out that has no default: `missing (no default): expected <type>`;
 * - a value that is not one of a list (an enum, a union's discriminator): zod's message and
 *   the nearest allowed value; anything else: zod's message (what was expected).
 */
function failure(schema: z.core.$ZodType, issues: readonly z.core.$ZodIssue[], value: unknown): TypeError {
  const { issue, path } = narrowed(issues, []);
  const at = (p: readonly string[]) => `TOLLBOOTH_POLICY${p.length ? `.${p.join(".")}` : ""}`;
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const fields = keysAt(schema, path);
    const near = closest(key, fields);
    const hint =
      near !== undefined
        ? `; did you mean "${near}"?`
        : fields.length > 0 && fields.length <= 12
          ? `; expected one of ${fields.join(", ")}`
          : "";
    return new TypeError(`${at([...path, key])}: Unrecognized key: "${key}"${hint}`);
  }
  const input = path.reduce<unknown>(
    (o, k) => (o !== null && typeof o === "object" ? (o as Record<string, unknown>)[k] : undefined),
    value,
  );
  if (issue.code === "invalid_type" && input === undefined)
    return new TypeError(`${at(path)}: missing (no default): expected ${issue.expected}`);
  const allowed = issue.code === "invalid_value" ? issue.values : ((issue as { options?: unknown[] }).options ?? []);
  const near =
    typeof input === "string"
      ? closest(
          input,
          allowed.filter((v): v is string => typeof v === "string"),
        )
      : undefined;
  return new TypeError(`${at(path)}: ${issue.message}${near !== undefined ? `; did you mean "${near}"?` : ""}`);
}

/**
 * The issue to report among `issues` (zod reports every one): an unknown key first (a typo
 * is why the field it misspells is missing), else the first. For a failed union, when the
 * value has the shape of exactly one option (every other option failed only on the value's
 * type, e.g. an object given to `X | X[]`, or on a literal field of its own, e.g. x402's
 * `mode`), that option's issues, so the message names the bad field; else the union's own issue.
 * @param base path of `issues` within the policy
 * @returns the issue and its full path
 */
function narrowed(issues: readonly z.core.$ZodIssue[], base: string[]): { issue: z.core.$ZodIssue; path: string[] } {
  const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0]!;
  const path = [...base, ...issue.path.map(String)];
  if (issue.code !== "invalid_union") return { issue, path };
  // An option failed only on the value's type, or on one of its own fields' literal (`mode`), is not the one meant.
  const shaped = issue.errors.filter(
    (option) =>
      !(option.length === 1 && option[0]!.code === "invalid_type" && option[0]!.path.length === 0) &&
      !option.some((i) => i.code === "invalid_value" && i.path.length === 1),
  );
  if (shaped.length === 1 && shaped[0]!.length > 0) return narrowed(shaped[0]!, path);
  // Every option refused the same literal field (x402's `mode`): that field, with every option's value.
  const literals = issue.errors.map((option) => option.find((i) => i.code === "invalid_value" && i.path.length === 1));
  const key = literals[0]?.path[0];
  if (key === undefined || literals.some((l) => l?.path[0] !== key)) return { issue, path };
  const values = literals.flatMap((l) => (l as z.core.$ZodIssueInvalidValue).values);
  return {
    issue: {
      code: "invalid_value",
      values,
      path: [],
      input: undefined,
      message: `Invalid option: expected one of ${values.map((v) => JSON.stringify(v)).join("|")}`,
    },
    path: [...path, String(key)],
  };
}

/** What `keysAt` reads of a zod schema's definition. */
interface SchemaDef {
  type: string;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  shape?: Record<string, z.core.$ZodType>;
  valueType?: z.core.$ZodType;
  element?: z.core.$ZodType;
  options?: z.core.$ZodType[];
}

/**
 * The fields of the object(s) `schema` expects at `path` (through defaults, optionals,
 * records, arrays and every option of a union); `[]` where no object is expected.
 */
function keysAt(schema: z.core.$ZodType, path: readonly string[]): string[] {
  const def = schema._zod.def as unknown as SchemaDef;
  const [head, ...rest] = path;
  if (def.innerType) return keysAt(def.innerType, path);
  if (def.in) return keysAt(def.in, path);
  if (def.options) return [...new Set(def.options.flatMap((o) => keysAt(o, path)))];
  if (def.type === "object")
    return head === undefined ? Object.keys(def.shape!) : Object.hasOwn(def.shape!, head) ? keysAt(def.shape![head]!, rest) : [];
  const inner = def.valueType ?? def.element;
  return inner && head !== undefined ? keysAt(inner, rest) : [];
}

/**
 * The candidate `word` most likely misspells: one equal to it but for case, `-` and `_`, or
 * the nearest by edit distance (insertions, deletions, substitutions, swaps of neighbours)
 * when that is at most a third of the word's length (at least 1); else undefined.
 * @example closest("refilPerSecond", ["capacity", "refillPerSecond"]) // "refillPerSecond"
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const d = plain(candidate) === plain(word) ? 0 : editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best === word ? undefined : best;
}

/** Optimal string alignment distance between `a` and `b` (Levenshtein, plus swaps of neighbours). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The order of the offers in a 402 (`offerOrder`): the schemes `listed` first, in that
 * order, then every other scheme of `types` (the registry's order).
 * @throws TypeError naming a scheme listed twice
 */
function offerOrder(listed: readonly string[], types: readonly string[]): string[] {
  const twice = listed.findIndex((t, i) => listed.indexOf(t) !== i);
  if (twice !== -1) throw new TypeError(`TOLLBOOTH_POLICY.offerOrder.${twice}: ${JSON.stringify(listed[twice])} is listed twice`);
  return [...listed, ...types.filter((t) => !listed.includes(t))];
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
    const family = slash > 0 ? `${method.slice(0, slash)}/*` : undefined;
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
 * the bucket's capacity (the free bucket never holds it), above a solve's credits
 * (solving never pays for it, so the caller would loop on 402), or above what one payment
 * of an offered scheme buys (`PolicySection.costCap`).
 * @throws TypeError naming the field
 */
function checkPlan(plan: Plan, at: string, sections: readonly PolicySection[]): void {
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
    for (const section of sections) {
      const cap = section.costCap(plan);
      if (cap && value > cap.max) throw new TypeError(`TOLLBOOTH_POLICY.${at}${field}: ${value} exceeds ${cap.field} (${cap.max})`);
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
 * could never be admitted (neither the free bucket, nor one solve's credits, nor what one
 * payment of a scheme in `sections` buys holds it); unbounded when a scheme pays per request
 * (its `credits` is `Number.MAX_SAFE_INTEGER`).
 */
export function maxPayableCostWith(sections: readonly PolicySection[], plan: Plan): number {
  return Math.max(plan.bucket.capacity, plan.challenge.credits, ...sections.map((s) => s.credits(plan)));
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
  const family = slash > 0 ? `${method.slice(0, slash)}/*` : undefined;
  if (family !== undefined && Object.hasOwn(methods, family)) return methods[family]!;
  return policy.costs.default;
}
