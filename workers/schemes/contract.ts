/**
 * The payment-scheme contract: what a way through a 402 (proof of work, a paid credential, …)
 * is to the gateway, and what it hands to the caller's Durable Object. The object
 * (workers/objects/caller-state.ts), the pipeline (workers/pipeline/) and every scheme
 * (workers/schemes/<name>/) import this file; it imports none of them.
 *
 * A scheme is one folder `workers/schemes/<name>/` whose `index.ts` exports a `SchemeModule`,
 * listed once in workers/schemes/registry.ts (docs/schemes.md). Its instance (`PaymentScheme`,
 * built for a validated policy) is what the gateway knows of it:
 * - `offer`: what a 402 offers (its `WWW-Authenticate` challenge, its entry in
 *   `error.data.challenges`), or why it cannot be offered now;
 * - `read` / `readJson`: the scheme's credential in a request's headers, or in the body
 *   of `POST /.well-known/tollbooth/verify` (`{ "type": <scheme>, … }`);
 * - `verify`: a credential, checked statelessly, into a `Redemption` — what it buys
 *   (credits, lifetime) and the id the caller's Durable Object spends once — or a typed
 *   refusal; `settle`, for a payment completed only once the request is admitted;
 * - `strip`: remove the scheme's credential from headers forwarded to the origin;
 * - hooks for what only the scheme knows: its entries in the published policy, its
 *   over-budget answer as an MCP tool result, its words for a refusal.
 * Refusals reach the wire as `error.data.reason` = `<prefix>_<reason>` (docs/wire-contract.md §1, §10).
 */
import type { Keyring } from "../../shared/credentials/keys.ts";
import type { TokenError } from "../../shared/credentials/token.ts";
import type { JsonRpcId, ParsedBody } from "../../shared/jsonrpc.ts";
import type { Congestion } from "../../shared/limits/congestion.ts";
import type { Plan, Policy, PolicySection } from "../../shared/policy/index.ts";
import type { Result } from "../../shared/result.ts";

/**
 * A verified credential to redeem (a proof-of-work solution, a paid credential): what it
 * buys and the id spent once. Built by the credential's scheme, redeemed by the caller's
 * Durable Object.
 */
export interface Redemption {
  /** Id spent at most once: a challenge id, or `<prefix>:<the payment's own id>` for a payment. */
  spendId: string;
  /** Unix ms at or after which the credential is refused (by the object's clock too); the spent mark outlives it by `SPENT_MARGIN_MS`. */
  spendUntilMs: number;
  /** Id of the credit balance it opens (the access token's `jti`). */
  jti: string;
  /** Credits it buys. */
  credits: number;
  /** Unix ms when the credits expire. */
  tokenExpiresMs: number;
  /**
   * false (a solution, a one-time payment): a second redemption of `spendId` is refused
   * (`<prefix>_spent`). true (a credential sent on every request): once redeemed, later uses
   * spend the same balance (`jti`), so one payment buys one set of credits.
   */
  reusable: boolean;
  /** Prefix of refusal reasons (the scheme's `prefix`). */
  prefix: string;
  /** Whether redeeming counts as a solve (raises the caller's adaptive difficulty). */
  solve: boolean;
  /**
   * Leading zero bits the credential's challenge asked (proof of work only). When the caller's
   * difficulty at redemption is higher, the credential buys less (the object's `solutionWorth`).
   */
  difficulty?: number;
}

/** Why a request was not admitted by one of the caller's layers (no credential involved). */
export type LayerReason =
  | "over_budget"
  | "ceiling"
  | "sessions"
  | "streams"
  /** An operator blocked the caller (admin API, docs/admin.md): HTTP 403, refused before any credential is redeemed. */
  | "blocked";

/** An access token (`Tollbooth-Token`) refused: by its check, or by its balance in the caller's object. */
export type TokenRefusal = `token_${TokenError | "unknown" | "exhausted"}`;

/**
 * Why a request was not admitted, as `error.data.reason`: a layer, a refused access token,
 * or a refused credential of a scheme, `<prefix>_<reason>` (docs/wire-contract.md §1, §10).
 * `S`: the schemes' refusals (workers/schemes/registry.ts `SchemeRefusal` names every
 * registered scheme's); by default any `<prefix>_<reason>`.
 */
export type DenyReason<S extends string = `${string}_${string}`> = LayerReason | TokenRefusal | S;

/** What a scheme sees when it offers a challenge or verifies a credential. */
export interface SchemeContext {
  policy: Policy;
  plan: Plan;
  keyring: Keyring;
  /** The caller identity (`Identity.id`) the challenge or credential is bound to. */
  caller: string;
  /** Unix milliseconds, read after the request body arrived. */
  nowMs: number;
  /** Units the request costs (0 at `/verify` and `/challenge`). */
  cost: number;
  /**
   * The origin's congestion (docs/allocation.md), when the gateway has an origin ceiling: a
   * scheme that takes money offers, and verifies payments at, its price × `priceFactorPpm`
   * / 10^6, rounded up (`scaleSats`, `scaleAtomic`). The proof-of-work difficulty is raised
   * by the gateway (the plan's challenge asks the extra bits).
   */
  congestion?: Congestion | null;
}

/** What a 402 offers: the caller's current proof-of-work difficulty (bits) is known to the gateway. */
export interface OfferContext extends SchemeContext {
  /** The network the request came from (`ip:<network>`, or `anonymous`): what per-network bounds count. */
  network: string;
  /**
   * Whether the caller may draw on what a scheme reserves for callers it can trust: a verified
   * identity (an issued API key, a JWT), or a request proving a completed payment (a paid
   * credential checked without a settlement still to come, or an access token bought by a payer).
   */
  trusted: boolean;
  /** The caller's current proof-of-work difficulty, leading zero bits (adaptive). */
  difficulty: number;
  /** The request URL (the resource paid for). */
  url: URL;
  /** What the request is, for people (`tools/call search`). */
  what: string;
  /** Why it is over budget (`over_budget`, or a refused credential). */
  reason: string;
}

/** Where a credential may be: the request's headers, or its JSON-RPC body (MCP `_meta`). */
export interface CredentialSource {
  headers: Headers;
  /** The parsed JSON-RPC body on the MCP endpoint, else null. */
  body: ParsedBody | null;
  /** The raw body bytes, else null. */
  raw: Uint8Array<ArrayBuffer> | null;
}

/** A challenge a 402 (or 401) carries for one scheme. */
export interface Offer {
  ok: true;
  /** The scheme's `type` (`error.data.challenges[].type`). */
  type: string;
  /** Its `WWW-Authenticate` challenge (RFC 9110 §11.6.1), one field line; none for a scheme signalled by its own header. */
  challenge?: string;
  /** Headers it adds to the answer (a scheme signalled by its own header). */
  headers?: Record<string, string>;
  /** Its entry in `error.data.challenges` (`type` and `header` included). */
  json: Record<string, unknown>;
  /** How to take it, for `error.message`: one sentence of its own, capitalized, no trailing period (hints are joined with "; or" in the policy's `offerOrder`). */
  hint: string;
}

/** A scheme that cannot be offered right now (its backend is down or busy): listed, not offered. */
export interface Unavailable {
  ok: false;
  type: string;
  /** `backend_unavailable` or `busy`. */
  reason: string;
  message: string;
}

/** A credential read, verified, and what it buys. */
export interface Redeemable {
  redemption: Redemption;
  /** The caller the payment itself names, verified (a payer id, `SchemeModule.payers`); the request becomes that caller's. */
  identity?: string;
  /** Whether a one-time redemption returns an access token (default true; false when it pays for this request only). */
  token?: boolean;
  /** What the payment was, for the metrics (workers/observe/): an amount in the scheme's unit (`sats`, or `atomic` units of an asset). */
  paid?: { amount: string; unit: "sats" | "atomic" };
}

/** What settling a payment adds to the answer. */
export interface Settled {
  /** Response headers (the scheme's receipt header). */
  headers: Record<string, string>;
  /** A receipt for the MCP result's `_meta` (`key`: its member), when the payment came in `_meta`. */
  receipt?: { key: string; value: unknown };
}

/**
 * What the caller's object answered about a redemption it refused, for the scheme's words:
 * the redemption, the caller's difficulty now and what the credential bought at it.
 */
export interface RedemptionFacts {
  redemption: Redemption;
  /** The caller's difficulty at redemption, leading zero bits (the object's `difficulty`). */
  difficulty: number | undefined;
  /** Credits the credential bought at that difficulty (the object's `solutionCredits`). */
  worth: number | undefined;
  /** Units the request costs (0 at `/verify`). */
  cost: number;
  /** `GET /.well-known/tollbooth/challenge`, absolute (where a fresh challenge is). */
  challengeUrl: string;
}

/** `/verify`'s problem answer refusing a credential: HTTP status, `error`, `message`, extra members (in wire order). */
export interface VerifyRefusal {
  status: number;
  error: string;
  message: string;
  data: Record<string, unknown>;
}

/**
 * One payment scheme, as the gateway uses it. `C` is the scheme's parsed credential.
 * Every method may be called concurrently; none throws on bad input (they return refusals).
 */
export interface PaymentScheme<C = unknown> {
  /** `error.data.challenges[].type`, the `/verify` body's `type`, the `/challenge?type=` value. */
  readonly type: string;
  /**
   * Its name in reasons: refusals on the wire are `<prefix>_<reason>`, and a request it paid
   * for is recorded as paid by `<prefix>` (the metrics' `paid_by`).
   */
  readonly prefix: string;
  /**
   * true when a verified credential names its payer (`Redeemable.identity`), making the
   * request that payer's: the gateway then checks the block of the identity the request came
   * from before `verify` (docs/admin.md "Blocking").
   */
  readonly namesPayer?: boolean;
  /**
   * The admission class at the origin ceiling of the requests its credential admits, and of
   * the access token it buys (docs/allocation.md): `paid` for money, `worked` for work.
   */
  readonly admits: "paid" | "worked";
  /**
   * Credits one payment of this scheme buys under `plan` (0: not offered to that plan).
   * A request costing more is never offered this scheme.
   */
  credits(plan: Plan): number;
  /** A fresh challenge for the caller, or why it is unavailable. Never hangs (bounded by the scheme). */
  offer(ctx: OfferContext): Promise<Offer | Unavailable>;
  /**
   * This scheme's credential in the request; null when the request carries none. `body`:
   * the request body to forward instead, when the credential was in it (removed).
   */
  read(source: CredentialSource): Result<{ credential: C; body?: Uint8Array<ArrayBuffer> }, string> | null;
  /** What a `/verify` body of this scheme must hold, for the 400 that says so (a noun phrase). */
  readonly verifyFields: string;
  /** This scheme's credential in a `/verify` JSON body (its `type` already matched). */
  readJson(body: Record<string, unknown>): Result<{ credential: C }, string>;
  /** Check a credential statelessly (signatures, expiry, binding to the caller); single use is the Durable Object's. */
  verify(credential: C, ctx: SchemeContext): Promise<Result<Redeemable, string>>;
  /**
   * Complete a payment once the caller's Durable Object holds its redemption, before the
   * request is forwarded (e.g. settle with a facilitator). A refusal withdraws the credits it
   * bought and the request is refused. Schemes verified offline have none.
   */
  settle?(credential: C, ctx: SchemeContext): Promise<Result<Settled, string>>;
  /**
   * Whether a `settle` refusal with `reason` (without the prefix) left the payment untouched:
   * nothing that could complete it was submitted (its service did not answer a check made
   * before submitting). The gateway then lifts the spent marks its redemption set (in the
   * caller's object and gateway-wide), so the same credential may be sent again. Absent: never.
   */
  retryable?(reason: string): boolean;
  /**
   * HTTP status of a refusal with `reason` (already prefixed): 402 (pay or solve again,
   * with fresh challenges), 401 (the credential is invalid, for a scheme whose rule says
   * so), or 503 (a payment service did not answer).
   */
  refusalStatus(reason: string): 401 | 402 | 503;
  /** Remove this scheme's credential from headers about to be forwarded to the origin. */
  strip(headers: Headers): void;
  /**
   * The JSON-RPC body (UTF-8 JSON, already parsed once) without this scheme's credential in
   * it (a payment in MCP `_meta`), whatever paid for the request; null when it holds none.
   * A scheme that never reads the body has none.
   */
  stripBody?(raw: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | null;
  /** Its entries in a plan as `GET /.well-known/tollbooth` publishes it (its price; nothing when the plan has none). */
  publicPlan?(plan: Plan): Record<string, unknown>;
  /** Its top-level entries in `GET /.well-known/tollbooth`: what a client needs to pay (never a secret or a backend's URL). */
  publicPolicy?(): Record<string, unknown>;
  /**
   * The over-budget answer to a single `tools/call` (id `id`) as an MCP tool result, when the
   * scheme has that form and the policy asks for it: the JSON-RPC response, from the scheme's
   * `offer` and the 402's `error.data` (`challenges`, `reason`); null when it does not apply.
   */
  toolResult?(offer: Offer, id: JsonRpcId, data: Record<string, unknown>): Record<string, unknown> | null;
  /**
   * `/verify`'s answer refusing this scheme's credential: `reason` as the scheme or the
   * caller's object gave it, without the prefix; `facts` when the object refused the
   * redemption. Most schemes answer `credentialRefusal(this, reason)`.
   */
  verifyRefusal(reason: string, facts?: RedemptionFacts): VerifyRefusal;
  /**
   * `error.data.detail` of a 402 whose `reason` (prefixed) is the caller's object refusing
   * this scheme's redemption, when the scheme has more to say than the reason; else undefined.
   */
  refusalDetail?(reason: string, facts: RedemptionFacts): string | undefined;
}

/** What a scheme's factory may use, besides the policy: injectable `fetch` and the Worker's secrets. */
export interface SchemeDeps {
  /** `fetch` for backends (injectable, as the MCP SDK's `FetchLike`). */
  fetch: typeof fetch;
  /** The Worker's string bindings (the secrets a scheme names, e.g. its backend's credential). */
  secrets: Readonly<Record<string, string | undefined>>;
}

/**
 * Build a scheme for a validated policy, or null when the policy does not enable it.
 * @throws TypeError naming a missing secret or bad option
 */
export type SchemeFactory = (policy: Policy, deps: SchemeDeps) => PaymentScheme<any> | null;

/**
 * The caller ids a scheme's payments name (`Redeemable.identity`): public ids kept whole in
 * logs, accepted by the admin API, and recognised in an access token bought by a payer.
 */
export interface PayerIds {
  /** The ids' prefix, colon included (`<kind>:`); the admin API's caller kind is it without the colon. */
  prefix: string;
  /** A whole, well-formed id. */
  pattern: RegExp;
  /** The form for people, in the admin API's messages (`<kind>:<what follows>`). */
  spelled: string;
  /** The admin API's message for an id with the prefix but a malformed rest. */
  malformed: string;
}

/** Words for the metrics' help text (workers/observe/counters.ts), so observe/ names no scheme. */
export interface SchemeWords {
  /** What `redeemed_total{scheme}` counts of it, a noun phrase with its type (`<things> (<type>)`). */
  redeemed: string;
  /** The unit `paid_total` counts its payments in, with its type; absent when it takes no payment. */
  paidIn?: string;
  /**
   * How the admin API and its dashboard show the amounts `paid_total` counts for it: the
   * unit counted (`paid.unit` of its redemptions), the unit people read (`sats`, `USDC`)
   * and the decimals between the two (0 for sats; 6 from USDC's atomic units). Absent when
   * it takes no payment.
   */
  shownAs?: { counted: "sats" | "atomic"; unit: string; decimals: number };
  /** Its name in prose when a refused credential is answered 401 (`refusalStatus`); absent when never. */
  refusedWith401?: string;
}

/**
 * A scheme as registered (workers/schemes/registry.ts): its names, its factory, and what
 * the gateway needs of it without a policy (its policy section, its payer ids, its words).
 */
export interface SchemeModule {
  /** As `PaymentScheme.type`. */
  readonly type: string;
  /** As `PaymentScheme.prefix`. */
  readonly prefix: string;
  /** Build its instance for a validated policy (null: the policy does not enable it). */
  readonly make: SchemeFactory;
  /** Its part of the policy; none when it adds no field. */
  readonly policy?: PolicySection;
  /** The caller ids its payments name; none when its credentials name no payer. */
  readonly payers?: PayerIds;
  readonly words: SchemeWords;
}

/**
 * `/verify`'s usual refusal of a scheme's credential: `invalid_credential` with the prefixed
 * reason, at the scheme's `refusalStatus`.
 */
export function credentialRefusal(scheme: Pick<PaymentScheme, "prefix" | "refusalStatus">, reason: string): VerifyRefusal {
  const prefixed = `${scheme.prefix}_${reason}`;
  return {
    status: scheme.refusalStatus(prefixed),
    error: "invalid_credential",
    message: `Credential refused: ${prefixed}`,
    data: { reason: prefixed },
  };
}
