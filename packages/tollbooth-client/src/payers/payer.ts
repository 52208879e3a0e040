/**
 * The contract of the agent side's payers: one per way through a tollbooth 402
 * (docs/wire-contract.md §11). The resolver (`withTollbooth`, resolver/) knows no scheme: it
 * hands each payer of its `pay` option the 402 (its parsed `WWW-Authenticate` challenges,
 * headers and body) and asks, in that order, which challenges it is offered and whether it
 * takes one; the first that does obtains a proof or a credential.
 *
 * A payer is registered once (`PayerDefinition`, listed in payers/index.ts) and built per
 * resolver from `withTollbooth`'s options (`Payer`). It decides in two steps:
 *  1. `choose(challenge, context)`, synchronous and free: a refusal with a reason (too hard,
 *     over a spending limit, no wallet, unreadable), or a `Way` through;
 *  2. `way.obtain()`, the work or the payment: either headers to send once with the retry
 *     (`kind: "once"`, e.g. a proof-of-work solution) or a reusable credential the resolver
 *     caches per gateway origin (`kind: "credential"`, e.g. a paid Lightning credential).
 */
import type { ChallengeWithText } from "../../../../shared/wire/auth-params.ts";

/** One offered challenge: its scheme as received, parameters (names lowercased) and their text. */
export type OfferedChallenge = ChallengeWithText;

/** The 402 (or tollbooth 401) as a payer's `offered` sees it. */
export interface ChallengeResponse {
  /** The challenged request's URL. */
  url: string;
  status: number;
  headers: Headers;
  /** The challenges of its `WWW-Authenticate` (RFC 9110 §11.6.1), every scheme, in order. */
  challenges: OfferedChallenge[];
  /**
   * Its body parsed as JSON (the first message of a batch; `undefined` when not JSON).
   * Read only when a payer of `pay` has `readsBody`; `undefined` otherwise.
   */
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
 * - `over_limit`: a price over a per-request limit, or over an hourly limit with what was
 *   paid in the last hour
 * - `amountless`: an invoice naming no amount (the payer would choose what to pay)
 * - `no_wallet`: no wallet (or signer) to pay with
 * - `not_allowed`: nothing offered in a network or asset the caller allowed
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
  /** The name of the payer it came from. */
  payer: string;
  /**
   * The headers carrying it on a request whose own headers are `requestHeaders` (e.g.
   * `Authorization: <scheme> …`, or a header of tollbooth's own when the request already has
   * an `Authorization`). Header names lowercase.
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
      /** Headers to send once, with the retried request (names lowercase), e.g. a solution or a signed payment. */
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
 * of the gateway's shared/result.ts, with a message beside the reason).
 */
export type Choice = { ok: true; way: Way } | Refusal;

/** The payer of one scheme, built for one resolver (`PayerDefinition.create`). */
export interface Payer {
  /** Its name in the resolver's `pay` option. */
  readonly name: string;
  /**
   * What its way sends, for the resolver's messages ("the gateway refused the <proof>: …"),
   * e.g. `solution`, `credential`.
   */
  readonly proof: string;
  /** Whether `offered` reads the 402's body (the resolver parses it only then). */
  readonly readsBody: boolean;
  /**
   * `error.data.reason`s of a 402 answering this payer's fresh proof after which the resolver
   * takes that 402's fresh challenge as it would a first one (at most `MAX_RESOLVES` times a
   * call), instead of giving up with `challenge_refused`. Empty when none.
   */
  readonly renewOn: readonly string[];
  /**
   * The challenges of this payer the 402 offers, in the order it prefers them (from
   * `response.challenges`, or read elsewhere in the response); never throws.
   */
  offered(response: ChallengeResponse): OfferedChallenge[];
  /** Accept (a `Way`) or refuse (a `Refusal`) one offered challenge; never throws. */
  choose(challenge: OfferedChallenge, context: PayContext): Choice;
}

/**
 * A registered way through a 402 (payers/index.ts lists them). `Options` is the part of
 * `withTollbooth`'s options this payer reads; they are part of `WithTollboothOptions`.
 */
export interface PayerDefinition<Name extends string, Options> {
  /** Its name in the resolver's `pay` option. */
  readonly name: Name;
  /**
   * Checks its options when `pay` names it, at `withTollbooth` time.
   * @throws TypeError naming the option, for a missing or malformed one
   */
  check(options: Options): void;
  /** Its payer for one resolver; `signal` is the resolver's (cancels work and payments). */
  create(options: Options, signal: AbortSignal | undefined): Payer;
  /**
   * Whether a 401 whose `error.data.reason` is `reason` is tollbooth refusing this scheme's
   * credential (then it is handled as a challenge). A 401 no payer claims is the origin's
   * and is passed on.
   */
  claims401(reason: string): boolean;
}
