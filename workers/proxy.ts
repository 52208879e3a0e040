/**
 * The transparent proxy to the origin MCP server (Streamable HTTP, MCP 2025-11-25 and
 * 2026-07-28): method, path, query, headers and body forwarded unchanged except for
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
import { canonical, toBase64, toBase64Url } from "../shared/wire/encoding.ts";
import { ErrorCode, requestIds, type JsonRpcId } from "../shared/jsonrpc.ts";
import { hmac, type HmacKey } from "../shared/credentials/keys.ts";
import { CALLER_HEADER, DIGEST_HEADER, PROOF_HEADER, SOLUTION_HEADER, TOKEN_HEADER } from "../shared/wire/headers.ts";
import { toJsonRpc } from "./refusal/json-rpc.ts";
import { Refusal } from "./refusal/refusal.ts";
import type { TollboothVariables } from "./pipeline/middleware.ts";

export { CALLER_HEADER, DIGEST_HEADER, PROOF_HEADER };
/** Domain-separation label of the origin proof. */
export const PROOF_LABEL = "tollbooth/origin-proof/v2";

/**
 * Never forwarded as the client sent them: hop-by-hop headers (RFC 9110 §7.6.1),
 * tollbooth's own, a client's claims about where it connects from (the gateway sets its
 * own `X-Forwarded-For`/`-Host`/`-Proto`), method overrides (an origin framework would
 * run another method than the one priced), and body framing the gateway recomputes.
 */
const STRIPPED = [
  "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host",
  SOLUTION_HEADER, TOKEN_HEADER, CALLER_HEADER, PROOF_HEADER, DIGEST_HEADER, "content-length",
  "forwarded", "x-real-ip", "true-client-ip", "x-client-ip", "x-cluster-client-ip",
  "x-http-method-override", "x-http-method", "x-method-override",
];
/** Every `X-Forwarded-*` header a client sends is dropped too. */
const FORWARDED_PREFIX = "x-forwarded-";
/** …and every `Tollbooth-*` header (tollbooth's own credentials, whichever scheme; the gateway sets its own). */
const OWN_PREFIX = "tollbooth-";

/** Most origin proofs remembered within one second. */
const PROOF_MEMO_MAX = 1024;

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
 * The bytes the origin proof signs: canonical([label, t, caller, method, path+query,
 * content-digest]). An origin recomputes them to check `Tollbooth-Signature`, and checks
 * that `Content-Digest` is the SHA-256 of the body it received (see README, "Origin check").
 * @param t unix seconds
 * @param pathAndQuery the path and query the origin receives
 * @param contentDigest the `Content-Digest` value sent (see `contentDigest`)
 */
export function proofBytes(t: number, caller: string, method: string, pathAndQuery: string, contentDigest: string): Uint8Array<ArrayBuffer> {
  return canonical([PROOF_LABEL, t, caller, method, pathAndQuery, contentDigest]);
}

/** `Content-Digest` of the empty body: every request without one carries this. */
const EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";

/**
 * `Content-Digest` (RFC 9530) of a forwarded body: `sha-256=:<base64 of SHA-256>:`.
 * @param body the exact bytes forwarded (null or empty: the digest of the empty body)
 */
export async function contentDigest(body: Uint8Array<ArrayBuffer> | null): Promise<string> {
  if (!body || body.byteLength === 0) return EMPTY_DIGEST;
  return `sha-256=:${toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", body)))}:`;
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

  // The proof of one second is the same bytes for the same caller, method, path and body
  // digest: sign it once per second (an agent's calls to one endpoint repeat the first three;
  // GET, DELETE and repeated bodies repeat the digest).
  let proofSecond = -1;
  const proofs = new Map<string, string>();
  const proof = async (caller: string, method: string, pathAndQuery: string, digest: string): Promise<string> => {
    const t = Math.floor(Date.now() / 1000);
    if (t !== proofSecond) {
      proofSecond = t;
      proofs.clear();
    }
    const memo = JSON.stringify([caller, method, pathAndQuery, digest]);
    let value = proofs.get(memo);
    if (value === undefined) {
      const key = await options.proofKey();
      value = `t=${t}, kid=${key.kid}, sig=${toBase64Url(await hmac(key, proofBytes(t, caller, method, pathAndQuery, digest)))}`;
      if (proofs.size < PROOF_MEMO_MAX) proofs.set(memo, value);
    }
    return value;
  };

  return async function mcpProxy(c: Context<{ Variables: TollboothVariables }>): Promise<Response> {
    const state = c.var.tollbooth;
    const { caller, body, rawBody } = state;
    const req = c.req.raw;
    const url = new URL(req.url);
    const pathAndQuery = `${prefix}${url.pathname}${url.search}`;
    const target = base.origin + pathAndQuery;
    const isGet = req.method === "GET";
    const release = once(state.release);
    const refund = once(state.refund);

    const headers = forwardHeaders(req.headers, url);
    // Invariant: no payment credential reaches the origin (an L402 `Authorization` included).
    state.strip?.(headers);
    const forwardedBody = rawBody && !isGet && req.method !== "HEAD" ? rawBody : null;
    // A JSON-RPC body goes on as the bytes the gateway read, declared as what it read them
    // as: UTF-8 JSON (jsonRequestProblem refused any other charset or an encoding).
    if (body) {
      headers.set("content-type", "application/json");
      headers.delete("content-encoding");
    }
    const digest = await contentDigest(forwardedBody);
    headers.set(DIGEST_HEADER, digest);
    headers.set(CALLER_HEADER, caller);
    headers.set(PROOF_HEADER, await proof(caller, req.method, pathAndQuery, digest));

    // The timeout covers the wait for response headers only; a stream may then run long.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), options.timeoutMs);
    let upstream: Response;
    try {
      upstream = await fetch(target, {
        method: req.method,
        headers,
        body: forwardedBody,
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
      return toJsonRpc(originFailed(timedOut, options.timeoutMs), body);
    } finally {
      clearTimeout(timer);
    }
    state.origin?.(upstream.status);
    const out = new Headers(upstream.headers);
    let stream: ReadableStream<Uint8Array> | null = upstream.body;
    const isStream = (out.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream");
    if (isStream) {
      out.set("x-accel-buffering", "no");
      const ids = req.method === "POST" ? requestIds(body) : [];
      if (stream && ids.length > 0) {
        // One request (every MCP revision since 2025-06-18: no batches): the body is piped
        // natively and only a reset costs work. A batch: answered ids are tracked in JS.
        stream = body?.batch ? answerOnReset(stream, ids) : appendOnReset(stream, ids);
        out.delete("content-length");
      }
    }
    if (isGet && isStream && stream) {
      // A GET stream holds one of the caller's stream slots until it ends, however it ends.
      stream = releaseOnEnd(stream, release, state.streamMaxMs);
    } else {
      release();
    }
    return new Response(stream, { status: upstream.status, statusText: upstream.statusText, headers: out });
  };
}

/**
 * The answer for a request the origin never answered: 504 (no response headers within
 * `timeoutMs`) or 502 (unreachable). The request stays admitted in the decision record
 * (its `originError` says what happened).
 */
function originFailed(timedOut: boolean, timeoutMs: number): Refusal {
  return timedOut
    ? new Refusal({ status: 504, code: "origin_timeout", rpcCode: ErrorCode.GatewayTimeout, message: `Gateway timeout: the origin did not answer within ${timeoutMs} ms` })
    : new Refusal({ status: 502, code: "origin_unreachable", rpcCode: ErrorCode.BadGateway, message: "Bad gateway: the origin could not be reached" });
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

/**
 * Pass a GET SSE stream through (bytes untouched) and call `release` exactly once when it
 * ends: the origin ends it, it errors, the client cancels it (the origin's stream is then
 * cancelled too, so the origin sees it closed), or `maxMs` passes (the origin's stream is
 * cancelled and the client's ends normally; it resumes with `Last-Event-ID`).
 * @param maxMs longest life of the stream, milliseconds (none when undefined)
 */
export function releaseOnEnd(upstream: ReadableStream<Uint8Array>, release: () => void, maxMs?: number): ReadableStream<Uint8Array> {
  const reader = upstream.getReader();
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const finish = () => {
    if (finished) return false;
    finished = true;
    clearTimeout(timer);
    release();
    return true;
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (maxMs === undefined) return;
      timer = setTimeout(() => {
        if (!finish()) return;
        reader.cancel("tollbooth: stream lifetime reached").catch(() => {});
        try {
          controller.close();
        } catch {
          // already closed or errored
        }
      }, maxMs);
    },
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (finish()) controller.error(err);
        return;
      }
      if (finished) return;
      if (chunk.done) {
        finish();
        controller.close();
        return;
      }
      controller.enqueue(chunk.value);
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  });
}

/** `error.message` of the event that answers a request whose SSE stream the origin reset. */
export const RESET_MESSAGE = "origin reset the stream before answering";

/**
 * The end of the last complete SSE event in `bytes`: the index just after its blank line
 * (two line ends in a row; a line ends with CRLF, LF or CR — WHATWG HTML §9.2.6), or 0.
 * A CR as the very last byte may be the first half of a CRLF, so it ends nothing yet.
 */
export function lastEventEnd(bytes: Uint8Array): number {
  let end = 0;
  let lineEnds = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === 10) lineEnds++;
    else if (c === 13) {
      if (i === bytes.length - 1) break;
      if (bytes[i + 1] === 10) i++;
      lineEnds++;
    } else {
      lineEnds = 0;
      continue;
    }
    if (lineEnds >= 2) end = i + 1;
  }
  return end;
}

/** `JSON.stringify` of an id: the key that tells `1` from `"1"`. */
const idKey = (id: unknown) => JSON.stringify(id);

/**
 * Mark as answered the ids of the JSON-RPC responses (`result` or `error`, no `method`)
 * carried by the `data` of complete SSE events in `events`.
 */
function markAnswered(events: string, pending: Map<string, JsonRpcId>): void {
  for (const event of events.split(/(?:\r\n|\r|\n){2}/)) {
    const data = event
      .split(/\r\n|\r|\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(line.startsWith("data: ") ? 6 : 5))
      .join("\n");
    if (!data.includes('"id"')) continue;
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      continue;
    }
    for (const m of Array.isArray(value) ? value : [value]) {
      if (typeof m === "object" && m !== null && "id" in m && !("method" in m) && ("result" in m || "error" in m)) pending.delete(idKey(m.id));
    }
  }
}

/** The SSE events that answer `ids` with the reset error (`error.code` 502). */
function resetEvents(ids: Iterable<JsonRpcId>): string {
  let events = "";
  for (const id of ids) {
    const answer = { jsonrpc: "2.0", id, error: { code: ErrorCode.BadGateway, message: RESET_MESSAGE } };
    events += `event: message\ndata: ${JSON.stringify(answer)}\n\n`;
  }
  return events;
}

/**
 * Guard an origin's SSE answer to a single-request POST without touching its bytes: the
 * stream is piped natively (no JavaScript per chunk), and if the origin's stream errors
 * before it ended, a blank line (which ends any event the origin left half sent; a client
 * drops it as unparseable) and one event answering each id with `RESET_MESSAGE`
 * (`error.code` 502) are appended; then the stream ends normally. Unlike `answerOnReset`
 * it does not know whether the request was already answered: an origin that resets after
 * answering but before ending its stream yields a second answer for the id, which MCP
 * clients ignore as a response to no pending request.
 * @param upstream the origin's `text/event-stream` body
 * @param ids the request id(s) of the POST body (see `requestIds`)
 */
export function appendOnReset(upstream: ReadableStream<Uint8Array>, ids: JsonRpcId[]): ReadableStream<Uint8Array> {
  const { readable, writable } = new IdentityTransformStream();
  upstream
    .pipeTo(writable, { preventClose: true, preventAbort: true })
    .then(
      () => writable.close(),
      async (err: unknown) => {
        // Also reached when the caller went away (the write side errored): then the
        // writes below fail too, and there is nobody left to answer.
        const writer = writable.getWriter();
        await writer.write(new TextEncoder().encode(`\n\n${resetEvents(ids)}`));
        await writer.close();
        console.error(`tollbooth: origin reset the SSE stream before it ended (${ids.length} request id(s) answered with 502)`, err);
      },
    )
    .catch(() => {});
  return readable;
}

/**
 * Guard an origin's SSE answer to a POST. While some request id is unanswered, complete
 * events pass through (bytes unchanged; a partly received event is held until its blank
 * line) and the ids of the JSON-RPC responses in them are noted; once every id is
 * answered, chunks pass through untouched as they come. If the origin's stream errors
 * before every id was answered, the partial event is dropped and, for each request id not
 * yet answered, one event `event: message` /
 * `data: {"jsonrpc":"2.0","id":<id>,"error":{"code":502,"message":RESET_MESSAGE}}` is
 * appended; then the stream ends normally. A stream the origin ends is passed through as is.
 * @param upstream the origin's `text/event-stream` body
 * @param ids the request ids of the POST body (see `requestIds`)
 */
export function answerOnReset(upstream: ReadableStream<Uint8Array>, ids: JsonRpcId[]): ReadableStream<Uint8Array> {
  const pending = new Map(ids.map((id) => [idKey(id), id] as const));
  const reader = upstream.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  /** Bytes of an event whose blank line has not arrived yet. */
  let held: Uint8Array | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      // Loop until something is enqueued or the stream is closed: a pull that enqueues
      // nothing is not called again by the stream machinery.
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (pending.size > 0) console.error(`tollbooth: origin reset the SSE stream with ${pending.size} request(s) unanswered`, err);
          if (pending.size > 0) controller.enqueue(encoder.encode(resetEvents(pending.values())));
          controller.close();
          return;
        }
        if (chunk.done) {
          if (held) controller.enqueue(held);
          controller.close();
          return;
        }
        let bytes = chunk.value;
        if (held) {
          const joined = new Uint8Array(held.length + bytes.length);
          joined.set(held);
          joined.set(bytes, held.length);
          bytes = joined;
          held = null;
        }
        if (pending.size === 0) {
          controller.enqueue(bytes);
          return;
        }
        const end = lastEventEnd(bytes);
        if (end < bytes.length) held = bytes.slice(end);
        if (end === 0) continue;
        const complete = end === bytes.length ? bytes : bytes.subarray(0, end);
        // Complete events end on a line end, so they are whole UTF-8 sequences.
        markAnswered(decoder.decode(complete), pending);
        controller.enqueue(complete);
        return;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
