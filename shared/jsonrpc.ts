/**
 * JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as MCP uses it: reading a POST
 * body into messages, costing them, and building error responses.
 */
import { methodCost, type Plan } from "./policy/index.ts";

/** A JSON-RPC id: string, number, or null when it cannot be read. */
export type JsonRpcId = string | number | null;

/** One message of a POST body, reduced to what the gateway needs. */
export interface JsonRpcMessage {
  /** Present on requests and notifications; absent on responses (client answering the server). */
  method?: string;
  /** Present on requests and responses; absent on notifications. */
  id?: JsonRpcId;
  /** `params.name` for `tools/call` / `prompts/get`, `params.uri` for `resources/read`. */
  name?: string;
}

/** A parsed body: one message or a batch. */
export interface ParsedBody {
  batch: boolean;
  messages: JsonRpcMessage[];
}

/**
 * Error codes tollbooth answers with, in `error.code`. Codes equal to an HTTP status
 * sit in the JSON-RPC application range (outside −32768…−32000, and so outside the MCP
 * reserved range −32020…−32099); the others are JSON-RPC's own.
 */
export const ErrorCode = {
  /** Over budget: solve the challenge in `error.data` or wait `retryAfter` seconds (HTTP 402). */
  PaymentRequired: 402,
  /** A payment credential that does not verify (L402): fresh challenges in `error.data` (HTTP 401). */
  Unauthorized: 401,
  /** Over the hard safety ceiling: wait `retryAfter` seconds (HTTP 429). */
  TooManyRequests: 429,
  /** `Origin` not allowed (HTTP 403). */
  ForbiddenOrigin: 403,
  /** 403: the caller is blocked by the operator (admin API, docs/admin.md). */
  Forbidden: 403,
  /** Method other than POST, GET, DELETE, OPTIONS on the MCP endpoint (HTTP 405). */
  MethodNotAllowed: 405,
  /** Body larger than `maxBodyBytes` (HTTP 413). */
  PayloadTooLarge: 413,
  /** POST body not `application/json` read as UTF-8: another type, charset or a `Content-Encoding` (HTTP 415). */
  UnsupportedMediaType: 415,
  /** The request body did not arrive within `bodyTimeoutMs` (HTTP 408). */
  RequestTimeout: 408,
  /** Origin unreachable or failed (HTTP 502). */
  BadGateway: 502,
  /** Gateway misconfigured or its state unavailable (HTTP 500 / 503). */
  Unavailable: 503,
  /** Origin did not answer in time (HTTP 504). */
  GatewayTimeout: 504,
  /** Body is not JSON (HTTP 400). */
  ParseError: -32700,
  /** Body is JSON but not JSON-RPC 2.0 (HTTP 400). */
  InvalidRequest: -32600,
  /** `Mcp-Method` / `Mcp-Name` header does not match the body (MCP 2026-07-28; HTTP 400). */
  HeaderMismatch: -32020,
} as const;

/** Why a body could not be read. */
export type BodyError = { code: typeof ErrorCode.ParseError | typeof ErrorCode.InvalidRequest; message: string };

function readMessage(value: unknown): JsonRpcMessage | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (v.jsonrpc !== "2.0") return null;
  const id = v.id;
  if (id !== undefined && id !== null && typeof id !== "string" && typeof id !== "number") return null;
  const msg: JsonRpcMessage = {};
  if ("id" in v) msg.id = id as JsonRpcId;
  if ("method" in v) {
    if (typeof v.method !== "string") return null;
    msg.method = v.method;
    const params = v.params;
    if (params !== undefined && (typeof params !== "object" || params === null)) return null;
    const p = (params ?? {}) as Record<string, unknown>;
    const name = v.method === "resources/read" ? p.uri : p.name;
    if (typeof name === "string") msg.name = name;
  } else if (!("result" in v) && !("error" in v)) {
    return null;
  }
  return msg;
}

/**
 * Parse a POST body (UTF-8 JSON) into JSON-RPC messages.
 * @param maxDepth deepest nesting of arrays and objects accepted (policy `maxJsonDepth`);
 *   checked by one linear scan of the bytes before anything is decoded or parsed
 * @returns the messages, or the JSON-RPC error to answer with: −32700 for invalid UTF-8
 *   or JSON, −32600 for nesting deeper than `maxDepth`, an empty batch, a member name given
 *   twice in one object (anywhere in the body), or a value that is not a JSON-RPC 2.0 message
 */
export function parseBody(bytes: ArrayBuffer | Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): ParsedBody | BodyError {
  if (nestingExceeds(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), maxDepth)) {
    return { code: ErrorCode.InvalidRequest, message: `Invalid Request: nesting deeper than ${maxDepth}` };
  }
  let text: string;
  let value: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    value = JSON.parse(text);
  } catch {
    return { code: ErrorCode.ParseError, message: "Parse error: the body is not valid UTF-8 JSON" };
  }
  // The origin receives the raw bytes: with a name given twice, its parser might act on
  // another value (first wins in some) than the one the cost was computed from (last wins).
  const duplicate = duplicateName(text);
  if (duplicate !== null) {
    return {
      code: ErrorCode.InvalidRequest,
      message: `Invalid Request: member name ${JSON.stringify(duplicate.slice(0, 64))} appears twice in one object`,
    };
  }
  const batch = Array.isArray(value);
  const items = batch ? (value as unknown[]) : [value];
  if (items.length === 0) return { code: ErrorCode.InvalidRequest, message: "Invalid Request: empty batch" };
  const messages: JsonRpcMessage[] = [];
  for (const item of items) {
    const msg = readMessage(item);
    if (!msg) return { code: ErrorCode.InvalidRequest, message: "Invalid Request: not a JSON-RPC 2.0 message" };
    messages.push(msg);
  }
  return { batch, messages };
}

/** Default of `parseBody`'s `maxDepth` (and of the policy's `maxJsonDepth`). */
export const DEFAULT_MAX_DEPTH = 64;

/**
 * Whether arrays and objects in `bytes` nest deeper than `maxDepth` (a top-level object
 * is depth 1). One pass over the bytes, no allocation: brackets inside strings do not
 * count (a string ends at a `"` not escaped by a backslash; `"` and `\` never occur inside
 * a multi-byte UTF-8 sequence). Meant for text not yet validated: on malformed JSON it
 * may answer either way, and `JSON.parse` refuses it afterwards.
 */
export function nestingExceeds(bytes: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  const n = bytes.length;
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (b === 0x22 /* " */) {
      for (i++; i < n; i++) {
        const c = bytes[i]!;
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22) break;
      }
    } else if (b === 0x7b /* { */ || b === 0x5b /* [ */) {
      if (++depth > maxDepth) return true;
    } else if (b === 0x7d /* } */ || b === 0x5d /* ] */) {
      depth--;
    }
  }
  return false;
}

/**
 * The first member name that appears twice in one object of `text` (compared after
 * unescaping, so `"method"` and `"\u006dethod"` are the same name), else null.
 * One pass, iterative: any nesting depth. I-JSON (RFC 7493 §2.3) requires unique names.
 * @param text JSON text that `JSON.parse` accepted (so strings are well formed, and
 *   numbers and literals hold no quote or structural character)
 */
function duplicateName(text: string): string | null {
  // One frame per open object (its names so far) or array (null).
  const stack: Array<{ names: Set<string>; expectName: boolean } | null> = [];
  let top: { names: Set<string>; expectName: boolean } | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      let end = text.indexOf('"', i + 1);
      for (;;) {
        // A quote preceded by an odd number of backslashes is escaped.
        let slashes = 0;
        while (text.charCodeAt(end - 1 - slashes) === 0x5c) slashes++;
        if (slashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (top?.expectName) {
        const raw = text.slice(i, end + 1);
        const name = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (top.names.has(name)) return name;
        top.names.add(name);
      }
      i = end;
    } else if (ch === 0x7b /* { */) {
      top = { names: new Set(), expectName: true };
      stack.push(top);
    } else if (ch === 0x5b /* [ */) {
      top = null;
      stack.push(null);
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      stack.pop();
      top = stack.length > 0 ? stack[stack.length - 1]! : null;
    } else if (top && ch === 0x2c /* , */) {
      top.expectName = true;
    } else if (top && ch === 0x3a /* : */) {
      top.expectName = false;
    }
  }
  return null;
}

/** Whether `parseBody` failed. */
export function isBodyError(parsed: ParsedBody | BodyError): parsed is BodyError {
  return "code" in parsed;
}

/**
 * Total cost of a body: the sum over its requests and notifications (responses cost 0).
 * @returns units, an integer ≥ 0
 */
export function bodyCost(policy: Pick<Plan, "costs">, body: ParsedBody): number {
  let total = 0;
  for (const m of body.messages) if (m.method !== undefined) total += methodCost(policy, m.method, m.name);
  return total;
}

/** Ids of the requests in a body (what error responses must answer). */
export function requestIds(body: ParsedBody | null): JsonRpcId[] {
  if (!body) return [];
  return body.messages.filter((m) => m.method !== undefined && m.id !== undefined).map((m) => m.id as JsonRpcId);
}

/** A JSON-RPC 2.0 error response object. */
export interface JsonRpcErrorResponse {
  jsonrpc: "2.0";
  id: JsonRpcId;
  error: { code: number; message: string; data?: unknown };
}

/**
 * Error responses for a body: one per request id (an array when the body was a batch),
 * or a single response with `id: null` when no id can be read.
 */
export function errorPayload(
  body: ParsedBody | null,
  code: number,
  message: string,
  data?: unknown,
): JsonRpcErrorResponse | JsonRpcErrorResponse[] {
  const make = (id: JsonRpcId): JsonRpcErrorResponse => ({
    jsonrpc: "2.0",
    id,
    error: data === undefined ? { code, message } : { code, message, data },
  });
  const ids = requestIds(body);
  if (body?.batch && ids.length > 0) return ids.map(make);
  return make(ids[0] ?? null);
}
