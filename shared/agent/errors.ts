/**
 * Errors the agent-side resolver throws, in the manner of the MCP TypeScript SDK's
 * transport errors: a machine-readable `code` and, where one was received, the HTTP status.
 */

/**
 * - `challenge_too_hard`: the challenge asks more bits than `maxDifficulty`
 * - `solve_timeout`: no nonce found within `maxSolveMs`
 * - `aborted`: the `AbortSignal` fired
 * - `challenge_unreadable`: a 402 without a `PowChallenge` the resolver can read
 * - `challenge_refused`: the gateway answered 402 again after a solution was sent
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
  | "body_not_replayable";

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
