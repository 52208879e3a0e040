/**
 * `Refusal`: one answer the gateway gives instead of forwarding a request, before it is
 * written for a surface. What the client sees (status, wire code, message, `Retry-After`,
 * challenges, data in wire order) is kept apart from why the gateway refused (`reason`: the
 * decision and reason it records, workers/observe/), as workers-oauth-provider's `OAuthError`
 * keeps its code apart from its description. Rendered in one place per surface:
 * - the MCP endpoint: a JSON-RPC error carrying the request's ids (./json-rpc.ts `toJsonRpc`);
 * - tollbooth's own endpoints and the router's answers: problem JSON `{ error, message, … }`
 *   (./problem.ts `toProblem`, `toRouterProblem`);
 * - the admin API: the same, indented, with its security headers (./admin.ts `toAdminProblem`).
 */
import type { DecisionRecord } from "../observe/types.ts";

/** Why the gateway refused, for the decision record: its decision and reason, and what else the record learns. */
export type RefusalReason = Pick<DecisionRecord, "decision"> & { reason: string } & Partial<
    Pick<DecisionRecord, "caller" | "scheme" | "difficulty" | "credits">
  >;

/** What a refusal is made of (see `Refusal`). */
export interface RefusalInit {
  /** HTTP status. */
  status: number;
  /** Its code on the wire: problem JSON's `error` (a JSON-RPC error carries its reason in `data`, when it has one). */
  code: string;
  /** JSON-RPC `error.code` (shared/jsonrpc.ts `ErrorCode`); default: the HTTP status. */
  rpcCode?: number;
  /** `error.message` / the problem's `message`. */
  message: string;
  /** Whole seconds of `Retry-After`, sent after every other header; none when absent. */
  retryAfter?: number;
  /** JSON-RPC `error.data` / the problem's members after `message`, in wire order; none when absent. */
  data?: Record<string, unknown>;
  /** Headers before `Retry-After` (rate-limit fields, a scheme's own header, `Allow`, …), in order. */
  headers?: Record<string, string>;
  /** `WWW-Authenticate` challenges, one field line each (RFC 9110 §11.6.1), after every other header. */
  challenges?: readonly string[];
  /**
   * The JSON-RPC response to send instead of an error, with HTTP 200 (an over-budget
   * `tools/call` answered as an MCP tool result, when a scheme has that form).
   */
  result?: Record<string, unknown>;
  /** Why, for the decision record; absent where no decision is recorded (the admin API). */
  reason?: RefusalReason;
}

/** A refusal, ready to be rendered for a surface (./json-rpc.ts, ./problem.ts, ./admin.ts). */
export class Refusal {
  declare readonly status: number;
  declare readonly code: string;
  declare readonly rpcCode: number;
  declare readonly message: string;
  declare readonly retryAfter: number | undefined;
  declare readonly data: Record<string, unknown> | undefined;
  declare readonly headers: Record<string, string>;
  declare readonly challenges: readonly string[];
  declare readonly result: Record<string, unknown> | undefined;
  declare readonly reason: RefusalReason | undefined;

  constructor(init: RefusalInit) {
    this.status = init.status;
    this.code = init.code;
    this.rpcCode = init.rpcCode ?? init.status;
    this.message = init.message;
    this.retryAfter = init.retryAfter;
    this.data = init.data;
    this.headers = init.headers ?? {};
    this.challenges = init.challenges ?? [];
    this.result = init.result;
    this.reason = init.reason;
  }
}

/** The headers every refusal is written with: its own, then `Retry-After` when it has one. */
export function refusalHeaders(r: Refusal): Record<string, string> {
  return r.retryAfter === undefined ? r.headers : { ...r.headers, "retry-after": String(r.retryAfter) };
}
