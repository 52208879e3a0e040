/**
 * tollbooth's one failure convention: a function that can refuse returns a `Result` —
 * `{ ok: true, ...value }` or `{ ok: false, reason }` with a typed reason (a string
 * union, snake_case) — and throws only on programming errors (a `TypeError` naming the
 * bad argument). Reasons reach the wire as `error.data.reason` (docs/wire-contract.md §7).
 */

/** Success carrying the fields of `T`, or a refusal with a reason from `R`. */
export type Result<T extends object, R extends string> = ({ ok: true } & T) | { ok: false; reason: R };

/** A refusal with `reason`. */
export function refuse<R extends string>(reason: R): { ok: false; reason: R } {
  return { ok: false, reason };
}
