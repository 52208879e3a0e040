/**
 * Errors the agent-side resolver throws, in the manner of the MCP TypeScript SDK's
 * transport errors: a machine-readable `code` and, where one was received, the HTTP status.
 */

/**
 * - `challenge_too_hard`: the challenge asks more bits than `maxDifficulty` (and no other
 *   offered way through was refused for another reason)
 * - `solve_timeout`: no nonce found within `maxSolveMs`
 * - `aborted`: the `AbortSignal` fired
 * - `challenge_unreadable`: a 402 without a challenge the resolver can read in a scheme of
 *   its `pay` option (e.g. no `PowChallenge` for a proof-of-work-only agent)
 * - `challenge_refused`: the gateway answered 402 again after a solution was sent (or 402 /
 *   401 right after a freshly paid L402 credential); a 402 `solution_too_easy` is solved
 *   again (its fresh challenge) up to `MAX_RESOLVES` (3) times a call first
 * - `payment_refused`: an offered L402 challenge was not paid: its invoice is over
 *   `maxSatsPerRequest`, or would take the last hour's spending over `maxSatsPerHour`, or
 *   names no amount (docs/wire-contract.md §11); or an x402 offer was not signed: no
 *   requirement on an allowed network and asset, or its amount is over `x402.maxPerRequest`,
 *   or would take the last hour's signing in that asset over `x402.maxPerHour`; nothing was
 *   paid
 * - `payment_failed`: the wallet failed to pay, or returned a preimage whose SHA-256 is not
 *   the invoice's payment hash; or the x402 signer (or `@x402/evm`'s scheme) failed to sign
 * - `challenge_refused` also covers a 402 right after a signed x402 payment (the gateway's
 *   `x402_*` reason is in the message)
 * - `rate_limited`: 429 with a `Retry-After` longer than `maxWaitSeconds` (or a second 429)
 * - `body_not_replayable`: the request body is a stream, so it cannot be sent twice
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
  | "payment_failed";

/** An error of the resolver: `code` says what went wrong, `status` the HTTP status seen (if any). */
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
