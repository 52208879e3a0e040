/**
 * The payment-scheme seam: a way through a 402 (proof of work, L402, …) is one module
 * implementing `PaymentScheme`, registered in `workers/schemes/index.ts`. The gateway knows
 * schemes only through this interface:
 * - `offer`: what a 402 offers (its `WWW-Authenticate` challenge, its entry in
 *   `error.data.challenges`), or why it cannot be offered now;
 * - `read` / `readJson`: the scheme's credential in a request's headers, or in the body
 *   of `POST /.well-known/tollbooth/verify` (`{ "type": <scheme>, … }`);
 * - `verify`: a credential, checked statelessly, into a `Redemption` — what it buys
 *   (credits, lifetime) and the id the caller's Durable Object spends once — or a typed
 *   refusal;
 * - `strip`: remove the scheme's credential from headers forwarded to the origin.
 * Refusals reach the wire as `error.data.reason` = `<prefix>_<reason>` (docs/wire-contract.md §1, §10).
 */
import type { ParsedBody } from "../../shared/jsonrpc.ts";
import type { Keyring } from "../../shared/credentials/keys.ts";
import type { Plan, Policy } from "../../shared/policy/index.ts";
import type { Result } from "../../shared/result.ts";
import type { Redemption } from "../caller-bucket.ts";

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
}

/** What a 402 offers: the caller's current proof-of-work difficulty (bits) is known to the gate. */
export interface OfferContext extends SchemeContext {
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
  /** Its `WWW-Authenticate` challenge (RFC 9110 §11.6.1), one field line; none for a scheme signalled by its own header (x402). */
  challenge?: string;
  /** Headers it adds to the answer (x402: `PAYMENT-REQUIRED`). */
  headers?: Record<string, string>;
  /** Its entry in `error.data.challenges` (`type` and `header` included). */
  json: Record<string, unknown>;
  /** How to take it, for `error.message` (one sentence, no trailing period). */
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
  /** The caller the payment itself names, verified (x402: `evm:<payer address>`); the request becomes that caller's. */
  identity?: string;
  /** Whether a one-time redemption returns an access token (default true; false when it pays for this request only). */
  token?: boolean;
  /** What the payment was, for the metrics (workers/observe/): sats (L402, the plan's price) or atomic units of the asset (x402, as signed). */
  paid?: { amount: string; unit: "sats" | "atomic" };
}

/** What settling a payment adds to the answer. */
export interface Settled {
  /** Response headers (x402: `PAYMENT-RESPONSE`). */
  headers: Record<string, string>;
  /** A receipt for the MCP result's `_meta` (`x402/payment-response`), when the payment came in `_meta`. */
  receipt?: { key: string; value: unknown };
}

/**
 * One payment scheme, as the gate uses it. `C` is the scheme's parsed credential.
 * Every method may be called concurrently; none throws on bad input (they return refusals).
 */
export interface PaymentScheme<C = unknown> {
  /** `error.data.challenges[].type`, the `/verify` body's `type`, the `/challenge?type=` value. */
  readonly type: string;
  /** Prefix of its refusal reasons on the wire (`solution` for proof of work, `l402`). */
  readonly prefix: string;
  /**
   * true when a verified credential names its payer (`Redeemable.identity`: x402's
   * `evm:<address>`), making the request that payer's: the gate then checks the block of the
   * identity the request came from before `verify` (docs/admin.md "Blocking").
   */
  readonly namesPayer?: boolean;
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
   * request is forwarded (x402: settle with the facilitator). A refusal withdraws the
   * credits it bought and the request is refused. Schemes verified offline have none.
   */
  settle?(credential: C, ctx: SchemeContext): Promise<Result<Settled, string>>;
  /**
   * HTTP status of a refusal with `reason` (already prefixed): 402 (pay or solve again,
   * with fresh challenges), 401 (the credential is invalid: L402's rule), or 503 (a
   * payment service did not answer).
   */
  refusalStatus(reason: string): 401 | 402 | 503;
  /** Remove this scheme's credential from headers about to be forwarded to the origin. */
  strip(headers: Headers): void;
}

/** What a scheme's factory may use, besides the policy: injectable `fetch` and the Worker's secrets. */
export interface SchemeDeps {
  /** `fetch` for backends (injectable, as the MCP SDK's `FetchLike`). */
  fetch: typeof fetch;
  /** The Worker's string bindings (secrets such as `TOLLBOOTH_LIGHTNING_SECRET`). */
  secrets: Readonly<Record<string, string | undefined>>;
}

/**
 * Build a scheme for a validated policy, or null when the policy does not enable it.
 * @throws TypeError naming a missing secret or bad option
 */
export type SchemeFactory = (policy: Policy, deps: SchemeDeps) => PaymentScheme<any> | null;
