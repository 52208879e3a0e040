/**
 * The transparent proxy to the origin MCP server (Streamable HTTP, MCP 2025-11-25 and
 * 2026-07-28): method, path, query, headers and body (none on GET, HEAD, DELETE and
 * OPTIONS: a body sent with one is dropped with its `Content-Type`) forwarded unchanged except for
 * tollbooth's own credentials (stripped), client-sent forwarding and method-override
 * headers (stripped; the gateway sets its own `X-Forwarded-*`), the `Content-Type` of a
 * JSON-RPC body (exactly `application/json`: the bytes the gateway read as UTF-8), and its
 * caller proof (added, over a `Content-Digest` of the body); the response — SSE included —
 * streamed back as it arrives, status and headers untouched (401/403 with
 * `WWW-Authenticate` included, so the origin's OAuth keeps working).
 *
 * Origin failures get a JSON-RPC error with the request's ids: 502 (unreachable), 504 (no
 * response headers within `originTimeoutMs`), and — when the origin resets an SSE answer
 * to a POST before answering every request in it — a final SSE event per unanswered
 * request id (`error.code` 502), after which the stream ends normally.
 */
import type { Context } from "hono";
import type { HmacKey } from "../../shared/credentials/keys.ts";
import { ErrorCode, requestIds } from "../../shared/jsonrpc.ts";
import { CALLER_HEADER, DIGEST_HEADER, PROOF_HEADER, SOLUTION_HEADER, TOKEN_HEADER } from "../../shared/wire/headers.ts";
import type { TollboothState, TollboothVariables } from "../pipeline/handoff.ts";
import { toJsonRpc } from "../refusal/json-rpc.ts";
import { Refusal } from "../refusal/refusal.ts";
import { contentDigest, originProver } from "./origin-proof.ts";
import { answerOnReset, appendOnReset, releaseOnEnd } from "./streams.ts";

export { CALLER_HEADER, DIGEST_HEADER, PROOF_HEADER };

/**
 * Never forwarded as the client sent them: hop-by-hop headers (RFC 9110 §7.6.1),
 * tollbooth's own, a client's claims about where it connects from (the gateway sets its
 * own `X-Forwarded-For`/`-Host`/`-Proto`), method overrides (an origin framework would
 * run another method than the one priced), and body framing the gateway recomputes.
 */
const STRIPPED = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  SOLUTION_HEADER,
  TOKEN_HEADER,
  CALLER_HEADER,
  PROOF_HEADER,
  DIGEST_HEADER,
  "content-length",
  "forwarded",
  "x-real-ip",
  "true-client-ip",
  "x-client-ip",
  "x-cluster-client-ip",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
];
/** Methods whose body is never forwarded. */
const BODILESS = ["GET", "HEAD", "DELETE", "OPTIONS"];
/** Headers describing a body, dropped with it. */
const CONTENT_HEADERS = ["content-type", "content-encoding"];
/** Every `X-Forwarded-*` header a client sends is dropped too. */
const FORWARDED_PREFIX = "x-forwarded-";
/** …and every `Tollbooth-*` header (tollbooth's own credentials, whichever scheme; the gateway sets its own). */
const OWN_PREFIX = "tollbooth-";

/** Options of `mcpProxy()`. */
export interface ProxyOptions {
  /** Base URL of the origin; the request path is appended to its path. */
  originUrl: string;
  /** Key of the origin proof (`Tollbooth-Signature`). */
  proofKey: () => Promise<HmacKey>;
  /** Milliseconds to wait for the origin's response headers. */
  timeoutMs: number;
}

/** Where and what the proxy sends: the origin's URL for the request, its headers and body. */
async function outgoing(
  state: TollboothState,
  req: Request,
  base: URL,
  prefix: string,
  prove: ReturnType<typeof originProver>,
): Promise<{ target: string; headers: Headers; body: Uint8Array<ArrayBuffer> | null }> {
  const { caller, body, rawBody } = state;
  const url = new URL(req.url);
  const pathAndQuery = `${prefix}${url.pathname}${url.search}`;
  const headers = forwardHeaders(req.headers, url);
  // Invariant: no payment credential reaches the origin (a credential in `Authorization` included).
  state.strip?.(headers);
  // No body on a method whose content has no defined meaning (RFC 9110 §9.3): the gateway
  // priced a DELETE or an OPTIONS without reading one, so the origin gets none to act on.
  const forwardedBody = rawBody && !BODILESS.includes(req.method) ? rawBody : null;
  if (rawBody && !forwardedBody) for (const name of CONTENT_HEADERS) headers.delete(name);
  // A JSON-RPC body goes on as the bytes the gateway read, declared as what it read them
  // as: UTF-8 JSON (jsonRequestProblem refused any other charset or an encoding).
  if (body) {
    headers.set("content-type", "application/json");
    headers.delete("content-encoding");
  }
  const digest = await contentDigest(forwardedBody);
  headers.set(DIGEST_HEADER, digest);
  headers.set(CALLER_HEADER, caller);
  headers.set(PROOF_HEADER, await prove(caller, req.method, pathAndQuery, digest));
  return { target: base.origin + pathAndQuery, headers, body: forwardedBody };
}

/**
 * The origin's answer as the client gets it: status and headers untouched, an SSE answer to
 * a POST guarded against a reset, a GET stream releasing its slot when it ends (any other
 * answer releases it at once).
 */
function passBack(upstream: Response, req: Request, state: TollboothState, release: () => void): Response {
  const out = new Headers(upstream.headers);
  let stream: ReadableStream<Uint8Array> | null = upstream.body;
  const isStream = (out.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream");
  if (isStream) {
    out.set("x-accel-buffering", "no");
    const ids = req.method === "POST" ? requestIds(state.body) : [];
    if (stream && ids.length > 0) {
      // One request (every MCP revision since 2025-06-18: no batches): the body is piped
      // natively and only a reset costs work. A batch: answered ids are tracked in JS.
      stream = state.body?.batch ? answerOnReset(stream, ids) : appendOnReset(stream, ids);
      out.delete("content-length");
    }
  }
  if (req.method === "GET" && isStream && stream) {
    // A GET stream holds one of the caller's stream slots until it ends, however it ends.
    stream = releaseOnEnd(stream, release, state.streamMaxMs);
  } else {
    release();
  }
  return new Response(stream, { status: upstream.status, statusText: upstream.statusText, headers: out });
}

/**
 * The origin's base URL and the path prefix every forwarded path is appended to.
 * @param who the builder named in errors (`mcpProxy()`, `sessionEnder()`)
 * @throws TypeError when `originUrl` is not an absolute http(s) URL
 */
export function originBase(originUrl: string, who: string): { base: URL; prefix: string } {
  let base: URL;
  try {
    base = new URL(originUrl);
  } catch {
    throw new TypeError(`${who}: option \`originUrl\` (ORIGIN_URL) is not a URL: ${JSON.stringify(originUrl)}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new TypeError(`${who}: option \`originUrl\` (ORIGIN_URL) must be http or https, got ${base.protocol}`);
  }
  return { base, prefix: base.pathname.replace(/\/+$/, "") };
}

/**
 * Build the proxy handler. Needs `tollbooth()` before it (reads `c.var.tollbooth`).
 * @throws TypeError when `originUrl` is not an absolute http(s) URL
 */
export function mcpProxy(options: ProxyOptions) {
  const { base, prefix } = originBase(options.originUrl, "mcpProxy()");
  const prove = originProver(options.proofKey);

  return async function mcpProxy(c: Context<{ Variables: TollboothVariables }>): Promise<Response> {
    const state = c.var.tollbooth;
    const req = c.req.raw;
    const release = once(state.release);
    const refund = once(state.refund);
    const send = await outgoing(state, req, base, prefix, prove);
    // The timeout covers the wait for response headers only; a stream may then run long.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeoutMs);
    let upstream: Response;
    try {
      upstream = await fetch(send.target, {
        method: req.method,
        headers: send.headers,
        body: send.body,
        redirect: "manual",
        signal: controller.signal,
      });
    } catch (err) {
      const timedOut = controller.signal.aborted;
      // The cause (which may name internal addresses) is logged, not sent to the caller.
      console.error(`tollbooth: origin fetch failed (${timedOut ? "timeout" : "error"})`, err);
      // The origin never answered: the request is not charged, and holds no stream.
      refund();
      release();
      state.origin?.(timedOut ? "timeout" : "unreachable");
      // 504: no response headers within timeoutMs; 502: unreachable. The request stays admitted in the record.
      const failed = timedOut
        ? new Refusal({
            status: 504,
            code: "origin_timeout",
            rpcCode: ErrorCode.GatewayTimeout,
            message: `Gateway timeout: the origin did not answer within ${options.timeoutMs} ms`,
          })
        : new Refusal({
            status: 502,
            code: "origin_unreachable",
            rpcCode: ErrorCode.BadGateway,
            message: "Bad gateway: the origin could not be reached",
          });
      return toJsonRpc(failed, state.body);
    } finally {
      clearTimeout(timer);
    }
    state.origin?.(upstream.status);
    return passBack(upstream, req, state, release);
  };
}

/** A callback that runs at most once (a no-op when absent). */
function once(fn: (() => void) | undefined): () => void {
  let done = false;
  return () => {
    if (done || !fn) return;
    done = true;
    try {
      fn();
    } catch (err) {
      console.error("tollbooth: proxy hook failed", err);
    }
  };
}

/**
 * The headers the origin receives: the client's, without hop-by-hop headers, tollbooth's
 * own, any client-sent forwarding header (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`,
 * `True-Client-IP`, `X-Client-IP`, `X-Cluster-Client-IP`) or method override
 * (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`); then the gateway's own
 * `X-Forwarded-For` (`CF-Connecting-IP`, when present), `X-Forwarded-Host` and
 * `X-Forwarded-Proto` (of the URL the client called).
 */
export function forwardHeaders(incoming: Headers, url: URL): Headers {
  const headers = new Headers(incoming);
  const drop: string[] = [...STRIPPED];
  for (const name of headers.keys()) if (name.startsWith(FORWARDED_PREFIX) || name.startsWith(OWN_PREFIX)) drop.push(name);
  for (const name of drop) headers.delete(name);
  const ip = incoming.get("cf-connecting-ip");
  if (ip !== null && ip.trim() !== "") headers.set("x-forwarded-for", ip.trim());
  headers.set("x-forwarded-host", url.host);
  headers.set("x-forwarded-proto", url.protocol.replace(":", ""));
  return headers;
}
