/**
 * Shared helpers of the "workers" tests (they run inside workerd, see vitest.config.ts).
 *
 * Everything a test compares against is computed here independently of shared/ and
 * workers/: SHA-256 and HMAC with WebCrypto, the canonical encoding, RFC 9110 auth-params,
 * Structured Field lists, the token payload. Only the Worker itself is imported
 * (to call its fetch handler with a different policy).
 */
import { createExecutionContext, runInDurableObject, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect, vi } from "vitest";
import type { Env } from "../../workers/env.ts";
import worker from "../../workers/index.ts";

/** The bindings vitest.config.ts gives the Worker. */
export const SECRET = "test-secret-1-0123456789abcdef";
export const ORIGIN_URL = "http://127.0.0.1:9";
/** The gateway's own origin in these tests. */
export const GW = "http://gw.test";
export const MCP = `${GW}/mcp`;
export const WELL_KNOWN = `${GW}/.well-known/tollbooth`;

// ---------------------------------------------------------------------------------------------
// Callers

const runId = crypto.getRandomValues(new Uint8Array(2));
let ipSeq = 0;
/** A caller IP never used before in this run (each test gets its own Durable Object). */
export function freshIp(): string {
  ipSeq++;
  return `10.${runId[0]}.${(runId[1]! + (ipSeq >> 8)) & 255}.${ipSeq & 255}`;
}

/** Identity of an IP caller, as docs describe it. */
export const ipIdentity = (ip: string) => `ip:${ip}`;

/** Identity of an `Authorization` caller: `auth:` + first 16 bytes of SHA-256, hex. */
export async function authIdentity(value: string): Promise<string> {
  return `auth:${hex(await sha256(value)).slice(0, 32)}`;
}

// ---------------------------------------------------------------------------------------------
// The gateway

export type PolicyJson = Record<string, unknown>;

/**
 * A gateway to send requests to. Without arguments: the Worker exactly as configured by
 * vitest.config.ts + wrangler.toml, through `exports.default`. With a policy (and/or
 * binding overrides): the Worker's fetch handler called with a modified env.
 */
export function gateway(policy?: PolicyJson, overrides: Partial<Env> = {}): (req: Request) => Promise<Response> {
  if (policy === undefined && Object.keys(overrides).length === 0) return (req) => exports.default.fetch(req);
  const e: Env = { ...env, ...(policy === undefined ? {} : { TOLLBOOTH_POLICY: JSON.stringify(policy) }), ...overrides };
  return async (req) => {
    const ctx = createExecutionContext();
    const res = await worker.fetch(req as Request<unknown, IncomingRequestCfProperties>, e, ctx);
    await waitOnExecutionContext(ctx);
    return res;
  };
}

// ---------------------------------------------------------------------------------------------
// Requests

export type JsonRpcId = string | number | null;

/** A JSON-RPC request object (`id` undefined → a notification). */
export function rpc(method: string, params?: Record<string, unknown>, id?: JsonRpcId): Record<string, unknown> {
  return { jsonrpc: "2.0", ...(id === undefined ? {} : { id }), method, ...(params ? { params } : {}) };
}

/** `tools/call` of `name` with id `id`. */
export const toolCall = (id: JsonRpcId, name = "echo") => rpc("tools/call", { name, arguments: { message: "hi" } }, id);

export interface PostOptions {
  ip?: string;
  headers?: Record<string, string>;
  path?: string;
  /** Content-Type; `null` sends none. Default application/json. */
  contentType?: string | null;
}

/** POST to the MCP endpoint (or `path`): a JSON value, or a raw string / bytes body. */
export function post(body: unknown, opts: PostOptions = {}): Request {
  const headers = new Headers(opts.headers);
  if (opts.ip !== undefined) headers.set("cf-connecting-ip", opts.ip);
  const type = opts.contentType === undefined ? "application/json" : opts.contentType;
  if (type !== null) headers.set("content-type", type);
  const raw = typeof body === "string" || body instanceof Uint8Array ? (body as string | Uint8Array<ArrayBuffer>) : JSON.stringify(body);
  return new Request(`${GW}${opts.path ?? "/mcp"}`, { method: "POST", headers, body: raw });
}

/** A request that is not a POST with a body. */
export function request(method: string, url: string, opts: { ip?: string; headers?: Record<string, string> } = {}): Request {
  const headers = new Headers(opts.headers);
  if (opts.ip !== undefined) headers.set("cf-connecting-ip", opts.ip);
  return new Request(url.startsWith("http") ? url : `${GW}${url}`, { method, headers });
}

// ---------------------------------------------------------------------------------------------
// The origin, observed

/** What the gateway sent to the origin. */
export interface Forwarded {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
}

/** A service the Worker calls besides the origin (an x402 facilitator, a Lightning backend), answered in process: the request and its body text. */
export type Service = (req: Request, body: string) => Response | Promise<Response>;

/**
 * Observe `fetch`: calls to ORIGIN_URL are recorded and answered by `answer` (default: a
 * minimal JSON-RPC result echoing the request id); calls under a base URL of `services` are
 * answered by that service (test/workers/payments.ts); any other URL passes through.
 * The origin itself is exercised end to end in test/e2e with a real MCP server.
 */
export function observeOrigin(
  answer?: (f: Forwarded, signal: AbortSignal | undefined) => Response | Promise<Response>,
  services: Record<string, Service> = {},
): { requests: Forwarded[] } {
  const requests: Forwarded[] = [];
  const real = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const service = Object.keys(services).find((base) => req.url.startsWith(`${base}/`));
    if (service !== undefined) return services[service]!(req, await req.text());
    if (!req.url.startsWith(`${ORIGIN_URL}/`)) return real(input, init);
    const f: Forwarded = { url: req.url, method: req.method, headers: Object.fromEntries(req.headers), body: await req.text() };
    requests.push(f);
    if (answer) return answer(f, init?.signal ?? undefined);
    let id: unknown = null;
    try {
      id = (JSON.parse(f.body) as { id?: unknown }).id ?? null;
    } catch {
      /* not JSON: id null */
    }
    return new Response(JSON.stringify({ jsonrpc: "2.0", id, result: { content: [] } }), {
      status: 200,
      headers: { "content-type": "application/json" },
    });
  });
  return { requests };
}

// ---------------------------------------------------------------------------------------------
// Time

/** Freeze `Date` at the next whole second (never in the past: Durable Object alarms use real time). @returns that time, ms */
export function freezeTime(): number {
  const now = Math.ceil((Date.now() + 1) / 1000) * 1000;
  vi.setSystemTime(now);
  return now;
}

/** Move the frozen clock forward. */
export function advance(ms: number): number {
  const now = Date.now() + ms;
  vi.setSystemTime(now);
  return now;
}

// ---------------------------------------------------------------------------------------------
// Bytes and crypto (independent of shared/)

const enc = new TextEncoder();
export const utf8Length = (s: string) => enc.encode(s).byteLength;

export async function sha256(text: string | Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", typeof text === "string" ? enc.encode(text) : text));
}

export function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

export function fromB64url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** The canonical encoding of docs/gateway.md "Origin check": each field `<UTF-8 byte length>:<value>`, concatenated. */
export function canonical(fields: Array<string | number>): string {
  return fields.map((f) => `${utf8Length(String(f))}:${f}`).join("");
}

export async function hmacSha256(secret: string, data: string): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(data)));
}

/** Key id of a secret: base64url of the first 6 bytes of SHA-256(canonical(["tollbooth/kid/v1", secret])). */
export async function kidOf(secret: string): Promise<string> {
  return b64url((await sha256(canonical(["tollbooth/kid/v1", secret]))).subarray(0, 6));
}

/** Leading zero bits, from the most significant bit of byte 0. */
export function leadingZeroBits(bytes: Uint8Array): number {
  let bits = 0;
  for (const b of bytes) {
    for (let mask = 0x80; mask > 0; mask >>= 1) {
      if (b & mask) return bits;
      bits++;
    }
  }
  return bits;
}

/** Brute-force a decimal nonce with ≥ `difficulty` leading zero bits of SHA-256(UTF-8(salt ‖ nonce)). */
export async function solvePow(salt: string, difficulty: number, start = 0): Promise<string> {
  for (let n = start; ; n++) {
    if (leadingZeroBits(await sha256(salt + n)) >= difficulty) return String(n);
  }
}

/** A nonce that does NOT meet `difficulty` (difficulty ≥ 2 makes the first try almost always fail). */
export async function nonSolution(salt: string, difficulty: number): Promise<string> {
  for (let n = 0; ; n++) {
    if (leadingZeroBits(await sha256(salt + n)) < difficulty) return String(n);
  }
}

// ---------------------------------------------------------------------------------------------
// Wire syntax (independent parsers)

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = '"(?:[^"\\\\]|\\\\.)*"';

export interface Challenge {
  scheme: string;
  /** Parameter values (quoted-strings unescaped). */
  params: Record<string, string>;
  /** Whether each parameter was sent as a quoted-string (else a token). */
  quoted: Record<string, boolean>;
  /** The parameters exactly as received, without the scheme. */
  rest: string;
}

/**
 * Parse a challenge per RFC 9110 §11.6.1: `auth-scheme 1*SP auth-param *( OWS "," OWS auth-param )`,
 * `auth-param = token BWS "=" BWS ( token / quoted-string )`. Throws when the syntax is wrong.
 */
export function parseChallenge(header: string): Challenge {
  const head = new RegExp(`^(${TOKEN}) +`).exec(header);
  if (!head) throw new Error(`no auth-scheme in ${JSON.stringify(header)}`);
  const rest = header.slice(head[0].length);
  const param = new RegExp(`(${TOKEN})[ \\t]*=[ \\t]*(${TOKEN}|${QUOTED})`, "y");
  const sep = /[ \t]*,[ \t]*/y;
  const params: Record<string, string> = {};
  const quoted: Record<string, boolean> = {};
  let i = 0;
  for (;;) {
    param.lastIndex = i;
    const m = param.exec(rest);
    if (!m) throw new Error(`bad auth-param at ${i} in ${JSON.stringify(rest)}`);
    const name = m[1]!.toLowerCase();
    if (name in params) throw new Error(`auth-param ${name} twice`);
    const raw = m[2]!;
    quoted[name] = raw.startsWith('"');
    params[name] = quoted[name] ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
    i = param.lastIndex;
    if (i === rest.length) break;
    sep.lastIndex = i;
    if (!sep.exec(rest)) throw new Error(`expected "," at ${i} in ${JSON.stringify(rest)}`);
    i = sep.lastIndex;
  }
  return { scheme: head[1]!, params, quoted, rest };
}

/** A Structured Field list of strings with integer parameters (RFC 9651), e.g. `"free";q=10;w=20, "ceiling";q=60;w=6`. */
export function parseLimitList(value: string): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const member of value.split(/[ \t]*,[ \t]*/)) {
    const m = /^"([^"\\]*)"((?:;[a-z*][a-z0-9_.*-]*=-?\d{1,15})+)$/.exec(member);
    if (!m) throw new Error(`not an sf-string with integer params: ${JSON.stringify(member)} in ${JSON.stringify(value)}`);
    const params: Record<string, number> = {};
    for (const p of m[2]!.slice(1).split(";")) {
      const [k, v] = p.split("=") as [string, string];
      params[k] = Number(v);
    }
    out[m[1]!] = params;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Challenges, solutions, tokens

/** The 9 challenge parameters, in wire order. */
export const CHALLENGE_FIELDS = ["realm", "id", "salt", "difficulty", "algorithm", "expires", "credits", "kid", "signature"] as const;

/** Read the `PowChallenge` of a 402 (or of the challenge endpoint). */
export function challengeOf(res: Response): Challenge {
  const header = res.headers.get("www-authenticate");
  expect(header, "WWW-Authenticate").not.toBeNull();
  const ch = parseChallenge(header!);
  expect(ch.scheme).toBe("PowChallenge");
  return ch;
}

/** Solve a challenge: `Tollbooth-Solution` value (its parameters as received plus the nonce) and the verify body. */
export async function solve(ch: Challenge): Promise<{ nonce: string; header: string; verifyBody: Record<string, unknown> }> {
  const nonce = await solvePow(ch.params.salt!, Number(ch.params.difficulty));
  return {
    nonce,
    header: `${ch.rest}, nonce="${nonce}"`,
    verifyBody: {
      ...ch.params,
      difficulty: Number(ch.params.difficulty),
      expires: Number(ch.params.expires),
      credits: Number(ch.params.credits),
      nonce,
    },
  };
}

/** Ask the challenge endpoint for a challenge for the caller identified by `headers`. */
export async function fetchChallenge(gw: (r: Request) => Promise<Response>, headers: Record<string, string>): Promise<Challenge> {
  const res = await gw(request("GET", `${WELL_KNOWN}/challenge`, { headers }));
  expect(res.status).toBe(200);
  return challengeOf(res);
}

/** Decoded access token `tb1.<kid>.<payload>.<signature>`. */
export function decodeToken(token: string): {
  kid: string;
  claims: { sub: string; jti: string; exp: number; cr: number; pd?: 1 };
  signature: string;
  payload: string;
} {
  const parts = token.split(".");
  expect(parts).toHaveLength(4);
  expect(parts[0]).toBe("tb1");
  const [, kid, payload, signature] = parts as [string, string, string, string];
  return { kid, payload, signature, claims: JSON.parse(new TextDecoder().decode(fromB64url(payload))) };
}

/** Sign a token payload (JSON text) the documented way: HMAC over canonical([label, kid, payload]). */
export async function forgeToken(secret: string, claims: Record<string, unknown>, kid?: string): Promise<string> {
  const k = kid ?? (await kidOf(secret));
  const payload = b64url(new TextEncoder().encode(JSON.stringify(claims)));
  const sig = b64url(await hmacSha256(secret, canonical(["tollbooth/access-token/v1", k, payload])));
  return `tb1.${k}.${payload}.${sig}`;
}

// ---------------------------------------------------------------------------------------------
// Responses

export interface JsonRpcError {
  jsonrpc: "2.0";
  id: JsonRpcId;
  error: { code: number; message: string; data?: Record<string, any> };
}

/** The JSON-RPC error body of a gateway response (asserts application/json). */
export async function errorBody(res: Response): Promise<JsonRpcError> {
  expect(res.headers.get("content-type")).toMatch(/^application\/json\b/);
  const body = (await res.json()) as JsonRpcError;
  expect(body.jsonrpc).toBe("2.0");
  return body;
}

/** The refusal reason of a 402 (asserts the 402 shape). */
export async function reasonOf(res: Response): Promise<string> {
  expect(res.status).toBe(402);
  const body = await errorBody(res);
  expect(body.error.code).toBe(402);
  return body.error.data!.reason as string;
}

// ---------------------------------------------------------------------------------------------
// The Durable Object

/** The caller's Durable Object stub. */
export const stubFor = (identity: string) => env.CALLER_BUCKET.getByName(identity);

/** Rows of `table` in a Durable Object's SQLite; none when the table does not exist (an object never written stores no tables). */
function tableRows(sql: SqlStorage, table: string): Array<Record<string, SqlStorageValue>> {
  const exists = sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", table).toArray().length > 0;
  return exists ? sql.exec(`SELECT * FROM ${table}`).toArray() : [];
}

/** All rows of a table of the caller's Durable Object (none for a table not created yet). */
export async function rows<T = Record<string, unknown>>(identity: string, table: "buckets" | "spent" | "tokens"): Promise<T[]> {
  if (table === "buckets") {
    // The `limits` row holds both buckets; shown as one row per bucket, as docs/durable-object.md describes them.
    const limits = await runInDurableObject(stubFor(identity), (_instance, state) => tableRows(state.storage.sql, "limits"));
    return limits.flatMap((r) => [
      { name: "ceiling", tokens: r.ceiling_tokens, updated_ms: r.ceiling_ms },
      { name: "free", tokens: r.free_tokens, updated_ms: r.free_ms },
    ]) as T[];
  }
  return runInDurableObject(stubFor(identity), (_instance, state) => tableRows(state.storage.sql, table) as T[]);
}

/** The caller's scheduled alarm (unix ms) or null. */
export async function alarmOf(identity: string): Promise<number | null> {
  return runInDurableObject(stubFor(identity), (_instance, state) => state.storage.getAlarm());
}
