/**
 * A real MCP origin on the official SDK's Express app (`createMcpExpressApp`, which parses
 * bodies with `express.json()`: body-parser, which honours `charset=utf-7`, `utf-16`, … and
 * `Content-Encoding`). Stateless Streamable HTTP by default (a fresh `McpServer` per request,
 * JSON answers), with two tools that count every run:
 *
 *   const origin = await startExpressOrigin();
 *   // MCP endpoint: `${origin.url}/mcp`
 *   origin.runs(); // { expensive: 0, cheap: 2 }
 *   await origin.close();
 *
 * With `{ sessions: true }`, stateful as the SDK's own example server: `initialize` opens a
 * session (its own `McpServer` and transport) that lives until the client's DELETE (the SDK's
 * transport answers it: 200, or 400 for an unsupported `Mcp-Protocol-Version`); a request
 * naming a session the origin does not hold gets 404 (MCP "Session Management"). It counts
 * the sessions it holds: `liveSessions()` now, `mostLiveSessions()` at any moment so far.
 */

import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

/** A request as Express hands it over (this repository does not install @types/express). */
type ExpressRequest = IncomingMessage & { body?: unknown; originalUrl: string };
type ExpressResponse = ServerResponse & { status(code: number): { json(value: unknown): void } };

/** One HTTP request the origin received. */
export interface ExpressSeen {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The body as express.json() parsed it (undefined when none was parsed). */
  body: unknown;
  /** When it arrived: `performance.now()` of this process, ms. */
  at: number;
}

/** Handle returned by {@link startExpressOrigin}. */
export interface ExpressOrigin {
  /** Base URL, e.g. `http://127.0.0.1:41234`; MCP lives at `${url}/mcp`. */
  url: string;
  /** Tool runs so far, by tool name (`expensive`, `cheap`), a copy. */
  runs(): { expensive: number; cheap: number };
  /** Every HTTP request received (any path, any method), a copy. */
  requests(): ExpressSeen[];
  /** Clears the run counts and the request log (and the most live sessions seen, down to those live now). */
  reset(): void;
  /** Sessions the origin holds now (`{ sessions: true }`; 0 when stateless). */
  liveSessions(): number;
  /** The most sessions it held at once since start or the last reset. */
  mostLiveSessions(): number;
  close(): Promise<void>;
}

/** Starts the origin on 127.0.0.1, on a free port; stateful with `sessions: true`. */
export async function startExpressOrigin(options: { sessions?: boolean } = {}): Promise<ExpressOrigin> {
  let runs = { expensive: 0, cheap: 0 };
  let seen: ExpressSeen[] = [];
  const live = new Map<string, StreamableHTTPServerTransport>();
  let most = 0;

  const newServer = () => {
    const server = new McpServer({ name: "express-origin", version: "1.0.0" });
    server.registerTool("expensive", { description: "An expensive tool: every run is counted." }, async () => {
      runs.expensive++;
      return { content: [{ type: "text", text: `expensive run #${runs.expensive}` }] };
    });
    server.registerTool("cheap", { description: "A cheap tool: every run is counted." }, async () => {
      runs.cheap++;
      return { content: [{ type: "text", text: `cheap run #${runs.cheap}` }] };
    });
    return server;
  };

  const app = createMcpExpressApp();
  // Registered after createMcpExpressApp's own middleware (host check, express.json()):
  // `req.body` is what body-parser made of the bytes.
  app.use((req: ExpressRequest, _res: ExpressResponse, next: () => void) => {
    seen.push({ method: req.method ?? "", path: req.originalUrl, headers: { ...req.headers }, body: req.body, at: performance.now() });
    next();
  });
  if (options.sessions)
    app.all(
      "/mcp",
      statefulHandler(newServer, live, () => (most = Math.max(most, live.size))),
    );
  else
    app.all("/mcp", async (req: ExpressRequest, res: ExpressResponse) => {
      const server = newServer();
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      res.on("close", () => {
        void transport.close();
        void server.close();
      });
      try {
        await server.connect(transport);
        await transport.handleRequest(req, res, req.body);
      } catch (err) {
        if (!res.headersSent) res.status(500).json({ jsonrpc: "2.0", id: null, error: { code: -32603, message: String(err) } });
      }
    });

  const http: Server = await new Promise((resolve, reject) => {
    const s = app.listen(0, "127.0.0.1", (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    runs: () => ({ ...runs }),
    requests: () => [...seen],
    reset: () => {
      runs = { expensive: 0, cheap: 0 };
      seen = [];
      most = live.size;
    },
    liveSessions: () => live.size,
    mostLiveSessions: () => most,
    close: async () => {
      for (const t of live.values()) await t.close();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/**
 * The stateful `/mcp` handler: a request without `Mcp-Session-Id` that is an `initialize`
 * opens a session (`onOpened` after it is held); one naming a session the origin holds goes
 * to its transport (which ends the session on DELETE); one naming any other session gets 404.
 */
function statefulHandler(newServer: () => McpServer, live: Map<string, StreamableHTTPServerTransport>, onOpened: () => void) {
  return async (req: ExpressRequest, res: ExpressResponse) => {
    const sid = req.headers["mcp-session-id"];
    try {
      if (typeof sid === "string") {
        const transport = live.get(sid);
        if (!transport) return res.status(404).json({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } });
        return await transport.handleRequest(req, res, req.body);
      }
      const server = newServer();
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          live.set(id, transport);
          onOpened();
        },
        onsessionclosed: (id) => {
          live.delete(id);
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) live.delete(transport.sessionId);
        void server.close();
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, req.body);
    } catch (err) {
      if (!res.headersSent) res.status(500).json({ jsonrpc: "2.0", id: null, error: { code: -32603, message: String(err) } });
    }
  };
}
