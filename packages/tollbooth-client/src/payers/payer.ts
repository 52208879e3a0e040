/**
 * The agent side's payers: one per way through a tollbooth 402 (docs/wire-contract.md §11).
 * The resolver (`withTollbooth`, resolver.ts) reads every challenge of a
 * `WWW-Authenticate` list and asks, in the order of its `pay` option, the payer of each
 * offered scheme whether it accepts; the first that does obtains a credential. A payer whose
 * way is not a `WWW-Authenticate` scheme (x402: the `PAYMENT-REQUIRED` header, §12) reads
 * what it is offered from the 402 itself with `offered(response)`.
 *
 * A payer decides in two steps:
 *  1. `choose(challenge, context)`, synchronous and free: a refusal with a reason (too hard,
 *     over a spending limit, no wallet, unreadable), or a `Way` through;
 *  2. `way.obtain()`, the work or the payment: either headers to send once with the retry
 *     (`kind: "once"`, proof of work's `Tollbooth-Solution`) or a reusable credential the
 *     resolver caches per gateway origin (`kind: "credential"`, a paid L402 credential).
 */
import type { ChallengeWithText } from "../../../../shared/wire/auth-params.ts";

/** Names of the payers, as in the resolver's `pay` option. */
export type PayerName = "pow" | "l402" | "x402";

/** One offered challenge: its scheme as received, parameters (names lowercased) and their text. */
export type OfferedChallenge = ChallengeWithText;

/**
 * The 402 (or tollbooth 401) as a payer with `offered` sees it: its headers and its body
 * parsed as JSON (the first message of a batch; `undefined` when not JSON).
 */
export interface ChallengeResponse {
  /** The challenged request's URL. */
  url: string;
  status: number;
  headers: Headers;
  body: unknown;
}

/** What a payer knows about the request being paid for. */
export interface PayContext {
  /** The challenged request's URL. */
  url: string;
  /** The gateway origin (`scheme://host:port`) credentials are cached for. */
  origin: string;
  /** The request's own headers, before any tollbooth credential was added. */
  requestHeaders: Headers;
}

/**
 * Why a payer refuses a challenge:
 * - `too_hard`: a proof of work harder than `maxDifficulty`
 * - `over_limit`: an invoice over `maxSatsPerRequest`, or over `maxSatsPerHour` with what was
 *   paid in the last hour
 * - `amountless`: an invoice naming no amount (the payer would choose what to pay)
 * - `no_wallet`: no wallet (or signer) to pay with
 * - `not_allowed`: nothing offered in a network or asset the caller allowed (x402)
 * - `unreadable`: a parameter the payer needs is missing or malformed
 */
export type RefusalReason = "too_hard" | "over_limit" | "amountless" | "no_wallet" | "not_allowed" | "unreadable";

/** A refusal: `reason` for the resolver's error code, `message` for people. */
export interface Refusal {
  ok: false;
  reason: RefusalReason;
  message: string;
}

/**
 * A credential the resolver keeps per gateway origin and sends on later requests until the
 * gateway says its credits are spent (`Tollbooth-Credits: 0`) or refuses it.
 */
export interface ReusableCredential {
  /** The payer it came from. */
  payer: PayerName;
  /**
   * The headers carrying it on a request whose own headers are `requestHeaders` (e.g.
   * `Authorization: L402 …`, or `Tollbooth-L402` when the request already has an
   * `Authorization` of its own). Header names lowercase.
   */
  headersFor(requestHeaders: Headers): Record<string, string>;
  /** Unix milliseconds after which it is not sent (`Infinity` when unknown). */
  expiresMs: number;
}

/**
 * A way through a challenge. `obtain()` does the work or pays; it throws `TollboothError`
 * (`solve_timeout`, `aborted`, `payment_refused`, `payment_failed`) when it cannot.
 */
export type Way =
  | {
      /**
       * Headers to send once, with the retried request (names lowercase): proof of work's
       * `Tollbooth-Solution`, x402's `PAYMENT-SIGNATURE`.
       */
      kind: "once";
      obtain(): Promise<Record<string, string>>;
    }
  | {
      /** A reusable credential (cached per gateway origin by the resolver). */
      kind: "credential";
      obtain(): Promise<ReusableCredential>;
    };

/**
 * The outcome of `Payer.choose`: `{ ok: true, way }` or a `Refusal` (the `Result` convention
 * of shared/result.ts, with a message beside the reason).
 */
export type Choice = { ok: true; way: Way } | Refusal;

/** A payer of one scheme. */
export interface Payer {
  /** Its name in the resolver's `pay` option. */
  readonly name: PayerName;
  /**
   * Whether it reads challenges of `scheme` (a `WWW-Authenticate` scheme, compared
   * case-insensitively: `PowChallenge`; `L402` or `LSAT`).
   */
  handles(scheme: string): boolean;
  /**
   * Optional: the challenges of this payer that the 402 offers outside `WWW-Authenticate`
   * (x402's `PAYMENT-REQUIRED` header, or its `error.data.challenges` entry), as
   * `OfferedChallenge`s that its own `choose` reads; never throws. When present the resolver
   * asks it instead of filtering `WWW-Authenticate` with `handles`.
   */
  offered?(response: ChallengeResponse): OfferedChallenge[];
  /** Accept (a `Way`) or refuse (a `Refusal`) one offered challenge; never throws. */
  choose(challenge: OfferedChallenge, context: PayContext): Choice;
}
