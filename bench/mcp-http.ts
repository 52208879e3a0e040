/**
 * A minimal MCP Streamable HTTP client over plain `fetch`, for load and benchmark
 * drivers (MCP 2025-11-25 transport): `initialize` + `notifications/initialized` to open
 * a session, then one JSON-RPC request per POST with `Mcp-Session-Id`. Lighter than the
 * SDK `Client` (no schema validation, no background GET stream), so a driver process can
 * keep hundreds of callers busy and measure the server side rather than itself.
 *
 *   const s = await openSession("http://127.0.0.1:8787/mcp", { "x-api-key": "k1" });
 *   const r = await s.request("tools/call", { name: "echo", arguments: { message: "hi" } });
 *   r.status; // 200, 402, 429, …
 */

/** What one POST came back with. */
export interface McpReply {
  /** HTTP status. */
  status: number;
  /** The response body as text (an SSE stream or JSON), read to the end. */
  text: string;
  /** Response headers. */
  headers: Headers;
  /** The JSON-RPC id {@link McpSession.request} gave the request. */
  id?: number;
}

/** An open MCP session. */
export interface McpSession {
  /** The endpoint URL. */
  url: string;
  /** `Mcp-Session-Id` the server assigned. */
  sessionId: string;
  /**
   * POST one JSON-RPC request (an id is added) and read the whole answer.
   * @param timeoutMs abort after this many milliseconds (default 10 000)
   * @throws the fetch error (connection refused/reset, `TimeoutError`)
   */
  request(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<McpReply>;
}

/** Protocol version sent in `initialize` and `MCP-Protocol-Version`. */
export const PROTOCOL_VERSION = "2025-11-25";

let nextId = 1;

/**
 * POST one JSON-RPC message to `url` as an MCP client would (Accept both JSON and SSE).
 * @param headers extra request headers (e.g. `x-api-key`, `mcp-session-id`)
 * @throws the fetch error (connection refused/reset, `TimeoutError` after `timeoutMs`)
 */
export async function postMessage(url: string, headers: Record<string, string>, message: object, timeoutMs = 10_000): Promise<McpReply> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
    body: JSON.stringify(message),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/**
 * Open a session: `initialize` then `notifications/initialized` (both cost 0 at the gateway).
 * @param url the MCP endpoint, e.g. `http://127.0.0.1:8787/mcp`
 * @param headers sent with every request of the session (e.g. `{ "x-api-key": … }`)
 * @throws Error with the status and body when `initialize` is not answered 200 with a session id
 */
export async function openSession(url: string, headers: Record<string, string> = {}): Promise<McpSession> {
  const init = await postMessage(url, headers, {
    jsonrpc: "2.0",
    id: nextId++,
    method: "initialize",
    params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: "tollbooth-bench", version: "1.0.0" } },
  });
  const sessionId = init.headers.get("mcp-session-id");
  if (init.status !== 200 || !sessionId)
    throw new Error(`initialize: HTTP ${init.status}, session ${sessionId}: ${init.text.slice(0, 300)}`);
  const sessionHeaders = { ...headers, "mcp-session-id": sessionId, "mcp-protocol-version": PROTOCOL_VERSION };
  const ack = await postMessage(url, sessionHeaders, { jsonrpc: "2.0", method: "notifications/initialized" });
  if (ack.status !== 202 && ack.status !== 200) throw new Error(`notifications/initialized: HTTP ${ack.status}: ${ack.text.slice(0, 300)}`);
  return {
    url,
    sessionId,
    request: async (method, params, timeoutMs) => {
      const id = nextId++;
      return { ...(await postMessage(url, sessionHeaders, { jsonrpc: "2.0", id, method, ...(params ? { params } : {}) }, timeoutMs)), id };
    },
  };
}
