/**
 * Spellings of the MCP endpoint's path at the real network boundary: a `wrangler dev`
 * gateway in front of a real Express 5 origin (the MCP SDK's `createMcpExpressApp()`,
 * `app.post("/mcp")`), raw paths sent as the
 * attacker writes them (Node's `http.request` sends `path` byte for byte). The attacker's
 * aim: a path the gateway prices as another (cheap) path that an origin routes to its
 * endpoint. What is checked, for every spelling:
 * - a spelling origins read differently (an escaped `/` or `\`, a dot segment after
 *   decoding, a malformed escape) is refused 400 `invalid_path` and reaches no origin;
 * - every other spelling is priced as the endpoint exactly when an origin would route it
 *   there: Express (the real router) and nginx (its documented reading, written out below:
 *   decode every escape once, merge slashes, resolve `.` and `..`) — a `tools/call` sent as
 *   `text/plain` is then refused 415 by the gateway, so none reaches the origin's endpoint;
 * - double encoding (`%252e`) stays encoded: a plain name for the gateway and both origins.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createMcpExpressApp } from "@modelcontextprotocol/sdk/server/express.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";

/** What the Express origin saw: the raw path of each request and whether its `/mcp` route took it. */
interface Seen {
  path: string;
  endpoint: boolean;
}

let seen: Seen[] = [];
let origin: http.Server;
let gateway: Gateway;

beforeAll(async () => {
  /** The parts of Express's request and response used here. */
  type Req = { originalUrl: string };
  type Res = { json(body: unknown): void; status(code: number): Res };
  // An Express 5 app as the MCP SDK builds one for an MCP server.
  const app = createMcpExpressApp();
  app.post("/mcp", (req: Req, res: Res) => {
    seen.push({ path: req.originalUrl, endpoint: true });
    res.json({ jsonrpc: "2.0", id: 1, result: { content: [] } });
  });
  app.use((req: Req, res: Res) => {
    seen.push({ path: req.originalUrl, endpoint: false });
    res.status(404).json({ error: "not found" });
  });
  origin = app.listen(0, "127.0.0.1");
  await new Promise<void>((resolve) => origin.once("listening", () => resolve()));
  const originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  gateway = await startGateway({ originUrl, policy: { bucket: { capacity: 1000, refillPerSecond: 10 }, costs: { otherPaths: 1 } } });
});

afterAll(async () => {
  await gateway?.close();
  origin?.closeAllConnections();
  await new Promise<void>((resolve) => (origin ? origin.close(() => resolve()) : resolve()));
});

/** nginx's reading of a request path (ngx_http_parse_complex_uri): every escape decoded once, slashes merged, dot segments resolved; null when `..` climbs above the root (nginx answers 400). */
function nginxReads(raw: string): string | null {
  const decoded = Buffer.from(
    raw.replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16))),
    "latin1",
  ).toString("latin1");
  const out: string[] = [];
  for (const seg of decoded.split("/")) {
    if (seg === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else if (seg !== "." && seg !== "") out.push(seg);
  }
  return `/${out.join("/")}`;
}

/** POST a raw path (byte for byte) to the gateway: its status and body. */
function send(path: string, contentType = "text/plain"): Promise<{ status: number; text: string }> {
  const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { message: "priced?" } } });
  const url = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: "POST",
        path,
        headers: { "content-type": contentType, accept: "application/json, text/event-stream", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("the MCP endpoint's path, however it is spelled", () => {
  it("a spelling origins read differently is refused 400 invalid_path and reaches no origin", async () => {
    const ambiguous = [
      "/x/..%2Fmcp",
      "/x/..%2fmcp",
      "/x%2F..%2Fmcp",
      "/x/%2e%2e%2fmcp",
      "/x/.%2e%2Fmcp",
      "/mcp%2F",
      "/x/..%5Cmcp",
      "/mcp/%zz",
      "/mcp%",
    ];
    seen = [];
    for (const path of ambiguous) {
      // With the endpoint's content type too: no spelling of it is priced at all.
      for (const type of ["text/plain", "application/json"]) {
        const res = await send(path, type);
        expect([path, type, res.status]).toEqual([path, type, 400]);
        expect(JSON.parse(res.text), path).toMatchObject({
          jsonrpc: "2.0",
          id: null,
          error: { code: -32600, message: expect.stringMatching(/^Invalid path: /) },
        });
      }
    }
    expect(seen).toEqual([]);
  });

  it("every other spelling is priced as the endpoint exactly when Express or nginx would route it there: none reaches the endpoint unpriced", async () => {
    // The endpoint for the gateway, and for an origin that decodes (nginx) or routes without case (Express).
    const endpoint = [
      "/mcp",
      "/MCP",
      "/mcp/",
      "//mcp",
      "/%6Dcp",
      "/%6dcp",
      "/mcp/./",
      "/x/../mcp",
      "/x/%2e%2e/mcp",
      "/x/%2E%2E/mcp",
      "/x/.%2e/mcp",
      "/./mcp",
      "/mcp/.",
      "/mcp/x/..",
    ];
    // Another path for all three: double encoding stays encoded, near misses stay misses.
    const other = ["/x/%252e%252e/mcp", "/x/%252e%252e%252fmcp", "/%252e%252e/mcp", "/mcp%252f", "/mcpx", "/mc", "/x/mcp"];
    for (const path of endpoint) {
      seen = [];
      // Priced as the endpoint: its body read as JSON-RPC and refused for its type; nothing forwarded.
      expect([path, (await send(path)).status]).toEqual([path, 415]);
      expect(seen, path).toEqual([]);
    }
    for (const path of other) {
      seen = [];
      expect([path, (await send(path)).status]).toEqual([path, 404]);
      // Forwarded as sent, and neither origin routes it to the endpoint.
      expect(seen, path).toEqual([{ path, endpoint: false }]);
      expect(nginxReads(path)?.toLowerCase(), path).not.toBe("/mcp");
    }
  });

  it("a dot segment the URL parser resolves reaches the origin resolved: the path priced is the path routed", async () => {
    for (const path of ["/x/../mcp", "/x/%2e%2e/mcp", "/mcp/./"]) {
      seen = [];
      const res = await send(path, "application/json");
      expect(res.status, path).toBe(200);
      expect(seen, path).toEqual([{ path: path === "/mcp/./" ? "/mcp/" : "/mcp", endpoint: true }]);
    }
  });
});
