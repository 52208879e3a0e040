/**
 * MCP client helpers for the end-to-end tests: an official SDK `Client` over
 * `StreamableHTTPClientTransport`, a fetch that records what came back, and a tiny
 * SSE reader for raw responses.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { ClientCapabilities } from "@modelcontextprotocol/sdk/types.js";

import type { FetchLike } from "../../packages/tollbooth-client/src/index.ts";

export type { FetchLike };

/** One response as the client saw it. */
export interface SeenResponse {
  method: string;
  url: string;
  status: number;
  headers: Headers;
  /** When the response headers arrived (performance.now()). */
  at: number;
}

/** A fetch that logs every response it returns (status, headers). */
export function recordingFetch(inner: FetchLike = (u, i) => fetch(u, i)): { fetch: FetchLike; log: SeenResponse[] } {
  const log: SeenResponse[] = [];
  return {
    log,
    fetch: async (url, init) => {
      const res = await inner(url, init);
      log.push({ method: init?.method ?? "GET", url: String(url), status: res.status, headers: res.headers, at: performance.now() });
      return res;
    },
  };
}

/** A connected SDK client. */
export interface Connected {
  client: Client;
  transport: StreamableHTTPClientTransport;
  /** Ends the session (DELETE) when `terminate`, then closes the client; never throws. */
  close(terminate?: boolean): Promise<void>;
}

/**
 * Connect an SDK `Client` (initialize + notifications/initialized; the SDK then opens
 * its GET SSE stream) to an MCP endpoint.
 * @param opts.apiKey sent as `x-api-key` on every request: the gateway's caller identity
 */
export async function connect(
  mcpUrl: string,
  opts: { apiKey?: string; fetch?: FetchLike; capabilities?: ClientCapabilities; headers?: Record<string, string> } = {},
): Promise<Connected> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.apiKey) headers["x-api-key"] = opts.apiKey;
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), {
    requestInit: { headers },
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
    // Tests close streams on purpose; do not reconnect in the background.
    reconnectionOptions: { initialReconnectionDelay: 60_000, maxReconnectionDelay: 60_000, reconnectionDelayGrowFactor: 1, maxRetries: 0 },
  });
  const client = new Client({ name: "tollbooth-e2e", version: "1.0.0" }, { capabilities: opts.capabilities ?? {} });
  await client.connect(transport);
  return {
    client,
    transport,
    close: async (terminate = false) => {
      if (terminate) await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
    },
  };
}

/** Text of the first content block of a tool result. */
export function firstText(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  const block = content.find((c) => c.type === "text");
  if (!block?.text) throw new Error(`no text content in ${JSON.stringify(result)}`);
  return block.text;
}

/** One Server-Sent Event. */
export interface SseEvent {
  id?: string;
  event?: string;
  data: string;
}

/**
 * Read SSE events from a response body until `stop(event)` is true or the stream ends,
 * then cancel the body. Times out after `timeoutMs`.
 */
export async function readSse(res: Response, stop: (e: SseEvent, all: SseEvent[]) => boolean, timeoutMs = 10_000): Promise<SseEvent[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: SseEvent[] = [];
  let buffer = "";
  const timer = setTimeout(() => void reader.cancel(new Error("readSse timeout")), timeoutMs);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return events;
      buffer += value.replaceAll("\r\n", "\n");
      for (let cut = buffer.indexOf("\n\n"); cut !== -1; cut = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const e: SseEvent = { data: "" };
        const data: string[] = [];
        for (const line of block.split("\n")) {
          const colon = line.indexOf(":");
          if (colon === 0) continue; // comment / keep-alive
          const field = colon === -1 ? line : line.slice(0, colon);
          const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "id") e.id = value;
          else if (field === "event") e.event = value;
          else if (field === "data") data.push(value);
        }
        e.data = data.join("\n");
        events.push(e);
        if (stop(e, events)) return events;
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

/** Headers of a raw MCP POST (JSON-RPC body; a JSON or SSE answer accepted), MCP 2025-11-25 Streamable HTTP. */
export const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" } as const;

let rawId = 0;

/**
 * Open an MCP session by hand, without the SDK: `initialize` (revision 2025-11-25; its answer
 * must be 200), then `notifications/initialized` — both cost 0 at the gateway.
 * @param url the MCP endpoint (`<gateway>/mcp`)
 * @param who the headers that choose the caller (`x-api-key`, `cf-connecting-ip`, …), sent with both
 * @param clientName `clientInfo.name`
 * @returns the session's own headers: `mcp-session-id` and `mcp-protocol-version`
 * @throws Error naming the status and body when `initialize` is not answered 200
 */
export async function openRawSession(url: string, who: Record<string, string>, clientName: string): Promise<Record<string, string>> {
  const init = await fetch(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...who },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: `raw-${++rawId}`,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: clientName, version: "0" } },
    }),
  });
  const text = await init.text();
  if (init.status !== 200) throw new Error(`initialize answered ${init.status}: ${text.slice(0, 300)}`);
  const session = { "mcp-session-id": init.headers.get("mcp-session-id")!, "mcp-protocol-version": "2025-11-25" };
  const note = await fetch(url, {
    method: "POST",
    headers: { ...MCP_HEADERS, ...who, ...session },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await note.text();
  return session;
}
