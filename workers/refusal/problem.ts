/**
 * Answers tollbooth writes itself as plain JSON (`application/json`, never cached): its own
 * endpoints' answers, and refusals as problem JSON `{ error, message, … }` on those
 * endpoints and in the router's answers.
 */
import { type Refusal, refusalHeaders } from "./refusal.ts";

/** Headers of every response tollbooth writes itself. */
export const BASE_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;

/** A plain JSON response: `value` as JSON, the base headers, then `headers`. */
export function json(status: number, value: unknown, headers?: Record<string, string>): Response {
  return new Response(JSON.stringify(value), { status, headers: { ...BASE_HEADERS, ...headers } });
}

/**
 * Render `r` for tollbooth's own endpoints (`/.well-known/tollbooth/…`): `{ error: r.code,
 * message, ...r.data }`, its headers then `Retry-After`.
 */
export function toProblem(r: Refusal): Response {
  return json(r.status, { error: r.code, message: r.message, ...r.data }, refusalHeaders(r));
}

/**
 * Render `r` as the router answers for itself (no route, a bad path, the network ceiling):
 * as `toProblem`, with `reason` (when the data has one) before the message.
 */
export function toRouterProblem(r: Refusal): Response {
  const reason = r.data?.reason;
  return json(r.status, { error: r.code, ...(reason !== undefined ? { reason } : {}), message: r.message, ...r.data }, refusalHeaders(r));
}
