/**
 * tollbooth's one failure convention: a function that can refuse returns a `Result` —
 * `{ ok: true, ...value }` or `{ ok: false, reason }` with a typed reason (a string
 * union, snake_case) — and throws only on programming errors (a `TypeError` naming the
 * bad argument). Reasons reach the wire as `error.data.reason` (docs/wire-contract.md §7).
 */

/**
 * Success carrying the fields of `T`, or a refusal with a reason from `R` and, optionally, a
 * `detail` from a peer that refused (e.g. an x402 facilitator's `invalidReason`).
 */
export type Result<T extends object, R extends string> = ({ ok: true } & T) | { ok: false; reason: R; detail?: string };

/** A refusal with `reason` (and a peer's `detail`, when there is one). */
export function refuse<R extends string>(reason: R, detail?: string): { ok: false; reason: R; detail?: string } {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail };
}
