/**
 * Test origin: the real `@modelcontextprotocol/server-everything` MCP server
 * (streamable HTTP transport) behind a tiny counting reverse proxy, so tests can
 * assert what reached the origin.
 *
 *   const origin = await startOrigin();
 *   // MCP endpoint: `${origin.url}/mcp`
 *   origin.counts(); // { initialize: 1, "tools/call": 2, "tools/call:echo": 2, ... }
 *   origin.liveSessions(); // sessions it opened (an answer carrying a new Mcp-Session-Id) not yet ended by a DELETE answered 2xx
 *   await origin.close();
 */
import http, { type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { inject } from "vitest";
import { type Everything, startEverything } from "../../scripts/stack/everything.ts";

/**
 * The server-everything shared by the e2e files (test/e2e/global-setup.ts), as an
 * `Everything` whose close() leaves it running; undefined where none is provided (the load
 * test), and then `startOrigin` spawns its own.
 */
function sharedEverything(): Everything | undefined {
  let url: string | undefined;
  try {
    url = inject("everythingUrl");
  } catch {
    return undefined;
  }
  if (!url) return undefined;
  return { url, port: Number(new URL(url).port), output: () => "", close: async () => {} };
}

/** One HTTP request seen by the counting proxy. */
export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON-RPC messages of a POST body (a batch is flattened). */
  messages: unknown[];
  /** The raw body bytes of a POST (empty for other methods). */
  body: Uint8Array;
}

/** Handle returned by {@link startOrigin}. */
export interface Origin {
  /** Base URL of the counting proxy, e.g. `http://127.0.0.1:41234`. MCP lives at `${url}/mcp`. */
  url: string;
  /** JSON-RPC messages seen (POST bodies) by `method`, plus `"tools/call:<name>"` per tool. A copy. */
  counts(): Record<string, number>;
  /** Every HTTP request seen since start / last reset (extra, for header assertions). */
  requests(): SeenRequest[];
  /** Clears counts and the request log (and the most live sessions seen, down to those live now). */
  reset(): void;
  /** Sessions held at the origin now, as seen through this proxy: opened (an answer with a new `Mcp-Session-Id`) and not ended (DELETE answered 2xx). */
  liveSessions(): number;
  /** The most sessions held at once since start or the last reset. */
  mostLiveSessions(): number;
  /** Kills the MCP server and closes the proxy. */
  close(): Promise<void>;
}

/**
 * Puts a counting, streaming (unbuffered) reverse proxy on 127.0.0.1 in front of
 * server-everything: the one the e2e files share (test/e2e/global-setup.ts) or, where none
 * is provided, one spawned for this origin (see scripts/stack/everything.ts).
 */
export async function startOrigin(): Promise<Origin> {
  const server = sharedEverything() ?? (await startEverything());
  const originPort = server.port;

  let counts: Record<string, number> = {};
  let seen: SeenRequest[] = [];
  const bump = (key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  const live = new Set<string>();
  let most = 0;
  /** Count the session an answer opens or ends. */
  const sessionOf = (req: http.IncomingMessage, status: number, answered: string | string[] | undefined) => {
    const asked = req.headers["mcp-session-id"];
    if (req.method === "DELETE" && typeof asked === "string" && status >= 200 && status < 300) live.delete(asked);
    if (typeof answered === "string" && answered !== asked && status < 300 && !live.has(answered)) {
      live.add(answered);
      most = Math.max(most, live.size);
    }
  };
  const agent = new http.Agent({ keepAlive: true });

  const proxy = http.createServer(async (req, res) => {
    let body: Buffer | undefined;
    const entry: SeenRequest = {
      method: req.method ?? "",
      path: req.url ?? "/",
      headers: req.headers,
      messages: [],
      body: new Uint8Array(),
    };
    seen.push(entry);
    if (req.method === "POST") {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const raw = Buffer.concat(chunks);
      body = raw;
      entry.body = new Uint8Array(raw);
      entry.messages = parseMessages(raw);
      for (const msg of entry.messages) {
        const m = msg as { method?: unknown; params?: { name?: unknown } };
        if (typeof m?.method !== "string") continue;
        bump(m.method);
        if (m.method === "tools/call") bump(`tools/call:${String(m.params?.name)}`);
      }
    }
    const forward = (retried: boolean) => {
      const upstream = http.request(
        { host: "127.0.0.1", port: originPort, method: req.method, path: req.url, headers: req.headers, agent },
        (up) => {
          sessionOf(req, up.statusCode ?? 502, up.headers["mcp-session-id"]);
          res.writeHead(up.statusCode ?? 502, up.statusMessage, up.rawHeaders);
          res.flushHeaders();
          up.pipe(res); // streams SSE event by event
        },
      );
      upstream.on("error", (err: NodeJS.ErrnoException) => {
        // Node's keep-alive race (documented with `request.reusedSocket`): the origin closed an
        // idle socket just as it was reused, before reading the request. Send it once more on
        // a fresh connection; the request was counted above, once.
        if (
          !retried &&
          upstream.reusedSocket &&
          err.code === "ECONNRESET" &&
          !res.headersSent &&
          (body || req.method === "GET" || req.method === "DELETE")
        ) {
          forward(true);
          return;
        }
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" }).end(String(err));
        else res.destroy(err);
      });
      res.on("close", () => {
        if (!res.writableFinished) upstream.destroy();
      });
      if (body) upstream.end(body);
      else if (retried) upstream.end();
      else req.pipe(upstream);
    };
    forward(false);
  });
  await new Promise<void>((resolve, reject) => {
    proxy.once("error", reject);
    proxy.listen({ port: 0, host: "127.0.0.1" }, resolve);
  });
  const { port } = proxy.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => ({ ...counts }),
    requests: () => [...seen],
    reset: () => {
      counts = {};
      seen = [];
      most = live.size;
    },
    liveSessions: () => live.size,
    mostLiveSessions: () => most,
    close: async () => {
      proxy.closeAllConnections();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      agent.destroy();
      await server.close();
    },
  };
}

/** Parses a POST body as a JSON-RPC message or batch; non-JSON yields []. */
function parseMessages(body: Buffer): unknown[] {
  try {
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    return Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    return [];
  }
}
