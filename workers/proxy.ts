/**
 * The transparent proxy to the origin MCP server (Streamable HTTP, MCP 2025-11-25 and
 * 2026-07-28): method, path, query, headers and body forwarded unchanged except for
 * tollbooth's own credentials (stripped) and its caller proof (added); the response —
 * SSE included — streamed back as it arrives, status and headers untouched (401/403 with
 * `WWW-Authenticate` included, so the origin's OAuth keeps working).
 */
import type { Context } from "hono";
import { canonical, toBase64Url } from "../shared/encoding.ts";
import { ErrorCode } from "../shared/jsonrpc.ts";
import { hmac, type HmacKey } from "../shared/keys.ts";
import { SOLUTION_HEADER, TOKEN_HEADER } from "./payment.ts";
import { jsonRpcError } from "./responses.ts";
import type { TollboothVariables } from "./tollbooth.ts";

/** Header naming the caller identity, for the origin. */
export const CALLER_HEADER = "tollbooth-caller";
/** Header proving the request came through the gateway: `t=<unix s>, kid=<kid>, sig=<base64url>`. */
export const PROOF_HEADER = "tollbooth-signature";
/** Domain-separation label of the origin proof. */
export const PROOF_LABEL = "tollbooth/origin-proof/v1";

/** Hop-by-hop headers (RFC 9110 §7.6.1) and tollbooth's own, never forwarded. */
const STRIPPED = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host", SOLUTION_HEADER, TOKEN_HEADER, CALLER_HEADER, PROOF_HEADER];

/** Options of `mcpProxy()`. */
export interface ProxyOptions {
  /** Base URL of the origin; the request path is appended to its path. */
  originUrl: string;
  /** Key of the origin proof (`Tollbooth-Signature`). */
  proofKey: () => Promise<HmacKey>;
  /** Milliseconds to wait for the origin's response headers. */
  timeoutMs: number;
}

/**
 * The bytes the origin proof signs: canonical([label, t, caller, method, path+query]).
 * An origin recomputes them to check `Tollbooth-Signature` (see README, "Origin check").
 * @param t unix seconds
 * @param pathAndQuery the path and query the origin receives
 */
export function proofBytes(t: number, caller: string, method: string, pathAndQuery: string): Uint8Array<ArrayBuffer> {
  return canonical([PROOF_LABEL, t, caller, method, pathAndQuery]);
}

/**
 * Build the proxy handler. Needs `tollbooth()` before it (reads `c.var.tollbooth`).
 * @throws TypeError when `originUrl` is not an absolute http(s) URL
 */
export function mcpProxy(options: ProxyOptions) {
  let base: URL;
  try {
    base = new URL(options.originUrl);
  } catch {
    throw new TypeError(`mcpProxy(): option \`originUrl\` (ORIGIN_URL) is not a URL: ${JSON.stringify(options.originUrl)}`);
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new TypeError(`mcpProxy(): option \`originUrl\` (ORIGIN_URL) must be http or https, got ${base.protocol}`);
  }
  const prefix = base.pathname.replace(/\/+$/, "");

  return async function mcpProxy(c: Context<{ Variables: TollboothVariables }>): Promise<Response> {
    const { caller, body, rawBody } = c.var.tollbooth;
    const req = c.req.raw;
    const url = new URL(req.url);
    const pathAndQuery = `${prefix}${url.pathname}${url.search}`;
    const target = base.origin + pathAndQuery;

    const headers = new Headers(req.headers);
    for (const name of STRIPPED) headers.delete(name);
    headers.set("x-forwarded-host", url.host);
    headers.set("x-forwarded-proto", url.protocol.replace(":", ""));
    const key = await options.proofKey();
    const t = Math.floor(Date.now() / 1000);
    const sig = await hmac(key, proofBytes(t, caller, req.method, pathAndQuery));
    headers.set(CALLER_HEADER, caller);
    headers.set(PROOF_HEADER, `t=${t}, kid=${key.kid}, sig=${toBase64Url(sig)}`);

    // The timeout covers the wait for response headers only; a stream may then run long.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeoutMs);
    let upstream: Response;
    try {
      upstream = await fetch(target, {
        method: req.method,
        headers,
        body: rawBody && req.method !== "GET" && req.method !== "HEAD" ? rawBody : null,
        redirect: "manual",
        signal: controller.signal,
      });
    } catch (err) {
      const timedOut = controller.signal.aborted;
      // The cause (which may name internal addresses) is logged, not sent to the caller.
      console.error(`tollbooth: origin fetch failed (${timedOut ? "timeout" : "error"})`, err);
      return jsonRpcError(
        timedOut ? 504 : 502,
        body,
        timedOut ? ErrorCode.GatewayTimeout : ErrorCode.BadGateway,
        timedOut ? `Gateway timeout: the origin did not answer within ${options.timeoutMs} ms` : "Bad gateway: the origin could not be reached",
      );
    } finally {
      clearTimeout(timer);
    }
    const out = new Headers(upstream.headers);
    if ((out.get("content-type") ?? "").startsWith("text/event-stream")) out.set("x-accel-buffering", "no");
    return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: out });
  };
}
