/**
 * The one error of the agent side, in the manner of the MCP TypeScript SDK's transport
 * errors: a machine-readable `code` and, where one was received, the HTTP `status`. The
 * resolver, the payers, the wallet, the solver and the bridge's command line all throw it;
 * misuse of an API (a bad option, an argument out of range) throws `TypeError` /
 * `RangeError` instead, at once.
 */

/**
 * What went wrong, by who throws it.
 *
 * The resolver (`withTollbooth`'s fetch):
 * - `challenge_too_hard`: the proof-of-work challenge asks more bits than `maxDifficulty`
 *   (and no other offered way through was refused for another reason)
 * - `challenge_unreadable`: a 402 without a challenge the resolver can read in a scheme of
 *   its `pay` option (e.g. no `PowChallenge` for a proof-of-work-only agent)
 * - `challenge_refused`: the gateway answered 402 again after a fresh proof was sent (a
 *   solution, a signed payment; the gateway's reason is in the message), or 402 / 401 right
 *   after a freshly paid credential; a 402 `solution_too_easy` is solved again (its fresh
 *   challenge) up to `MAX_RESOLVES` (3) times a call first
 * - `rate_limited`: 429 with a `Retry-After` longer than `maxWaitSeconds` (or a second 429)
 * - `body_not_replayable`: the request body is a stream, so it cannot be sent twice
 * - `payment_refused`: no offered paid challenge was taken and nothing was paid: an invoice
 *   over `lightning.maxSatsPerRequest`, over `maxSatsPerHour` with the last hour's payments,
 *   or naming no amount (docs/wire-contract.md §11); a payment offer with no requirement on
 *   an allowed network and asset, over its `maxPerRequest`, or over its `maxPerHour` with
 *   the last hour's signing in that asset
 *
 * The payers (inside the resolver's fetch):
 * - `payment_refused`: as above, found when the payment was about to start (a concurrent
 *   payment used up the limit meanwhile)
 * - `payment_failed`: the wallet failed to pay (its error in the message), or returned a
 *   preimage whose SHA-256 is not the invoice's payment hash; or the signer (or the signing
 *   scheme) failed to sign
 * - `aborted`: the `AbortSignal` fired (solving, before a payment starts, or waiting)
 *
 * The solver (`solvePow`, and the resolver's solves):
 * - `solve_timeout`: no nonce found within the time budget (`maxSolveMs`, `maxMs`)
 * - `aborted`: the `AbortSignal` fired
 *
 * The Lightning wallet (`lndWallet(…).payInvoice`):
 * - `payment_failed`: the node reported a payment error (`payment_error`, or a non-2xx
 *   answer, `status` set), or the invoice does not decode (nothing was sent)
 * - `unreachable`: the node gave no HTTP answer
 * - `timeout`: no answer within `timeoutMs`; the payment may still complete on the node
 * - `bad_preimage`: the node claims success but gives no preimage whose SHA-256 is the
 *   invoice's payment hash
 *
 * The bridge (`tollbooth-bridge`'s `parseBridgeArgs`):
 * - `bad_arguments`: a command line it cannot use (the message names the argument and why)
 */
export type TollboothErrorCode =
  | "challenge_too_hard"
  | "solve_timeout"
  | "aborted"
  | "challenge_unreadable"
  | "challenge_refused"
  | "rate_limited"
  | "body_not_replayable"
  | "payment_refused"
  | "payment_failed"
  | "unreachable"
  | "timeout"
  | "bad_preimage"
  | "bad_arguments";

/** An agent-side failure: `code` says what went wrong, `status` the HTTP status seen (if any). */
export class TollboothError extends Error {
  readonly code: TollboothErrorCode;
  readonly status: number | undefined;

  constructor(code: TollboothErrorCode, message: string, status?: number) {
    super(message);
    this.name = "TollboothError";
    this.code = code;
    this.status = status;
  }
}
