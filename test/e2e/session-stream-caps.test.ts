/**
 * Free resources are capped per caller: a caller that opens MCP sessions (`initialize`,
 * cost 0) and GET SSE streams in a loop is stopped at its plan's caps (`limits.sessions` with
 * `onSessionCap: "refuse"`, `limits.streams`) with 429, and the streams it held at the origin are released when it
 * goes away (the gateway cancels the origin's stream when the client's ends).
 *
 * The origin is a small Streamable HTTP server written here that counts what a gateway
 * cannot see: sessions it created and GET streams open right now.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";

interface CountingOrigin {
  url: string;
  sessionsCreated(): number;
  openStreams(): number;
  close(): Promise<void>;
}

/** initialize → a new `Mcp-Session-Id`; GET → an SSE stream held open (counted until its connection closes); DELETE → 200. */
async function startCountingOrigin(): Promise<CountingOrigin> {
  let sessions = 0;
  let open = 0;
  const server = http.createServer((req, res) => {
    if (req.method === "GET") {
      open++;
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(": open\n\n");
      const ping = setInterval(() => res.write(": ping\n\n"), 200);
      res.on("close", () => {
        clearInterval(ping);
        open--;
      });
      return;
    }
    if (req.method === "DELETE") {
      res.writeHead(200).end();
      return;
    }
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const msg = JSON.parse(body) as { id?: number; method?: string };
      if (msg.method === "initialize") {
        sessions++;
        res.writeHead(200, { "content-type": "application/json", "mcp-session-id": `s-${sessions}` });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: msg.id,
            result: { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "counting", version: "1" } },
          }),
        );
        return;
      }
      res.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sessionsCreated: () => sessions,
    openStreams: () => open,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const SESSIONS = 3;
const STREAMS = 2;
let origin: CountingOrigin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startCountingOrigin();
  // Refused at the session cap (the default, eviction at the cap, is pinned in session-cap.test.ts).
  gateway = await startGateway({
    originUrl: origin.url,
    policy: { limits: { sessions: SESSIONS, onSessionCap: "refuse", streams: STREAMS } },
  });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

const caller = (key: string) => ({ "x-api-key": key });
const initialize = (key: string) =>
  fetch(`${gateway.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...caller(key) },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "loop", version: "1" } },
    }),
  });

describe("per-caller caps on sessions and GET streams", () => {
  it("initialize in a loop: stopped at the session cap with 429; a DELETE frees a place", async () => {
    const before = origin.sessionsCreated();
    const statuses: number[] = [];
    const ids: string[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 10; i++) {
      const res = await initialize("session-looper");
      statuses.push(res.status);
      if (res.status === 200) ids.push(res.headers.get("mcp-session-id")!);
      else refused ??= res;
      if (res !== refused) await res.body?.cancel();
    }
    expect(statuses).toEqual([...Array(SESSIONS).fill(200), ...Array(10 - SESSIONS).fill(429)]);
    expect(origin.sessionsCreated() - before).toBe(SESSIONS);
    const body = (await refused!.json()) as { error: { code: number; data: { layer: string; max: number } } };
    expect(body.error.data).toMatchObject({ layer: "sessions", max: SESSIONS });
    expect(Number(refused!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);

    // Another caller is not affected.
    const other = await initialize("someone-else");
    expect(other.status).toBe(200);
    await other.body?.cancel();

    // Ending one session (DELETE) lets the caller open one more, not two.
    const del = await fetch(`${gateway.url}/mcp`, {
      method: "DELETE",
      headers: { ...caller("session-looper"), "mcp-session-id": ids[0]! },
    });
    expect(del.status).toBe(200);
    await expect
      .poll(
        async () => {
          const res = await initialize("session-looper");
          await res.body?.cancel();
          return res.status;
        },
        { timeout: 5_000 },
      )
      .toBe(200);
    const again = await initialize("session-looper");
    expect(again.status).toBe(429);
    await again.body?.cancel();
  });

  it("GET streams in a loop: stopped at the stream cap; when the caller goes away its streams at the origin close", async () => {
    const key = "stream-looper";
    const controllers: AbortController[] = [];
    const open = async (): Promise<Response> => {
      const ac = new AbortController();
      const res = await fetch(`${gateway.url}/mcp`, { headers: { accept: "text/event-stream", ...caller(key) }, signal: ac.signal });
      if (res.status === 200) controllers.push(ac);
      return res;
    };
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await open();
      statuses.push(res.status);
      if (res.status !== 200) {
        const body = (await res.json()) as { error: { data: { layer: string } } };
        expect(body.error.data.layer).toBe("streams");
      }
    }
    expect(statuses).toEqual([...Array(STREAMS).fill(200), ...Array(6 - STREAMS).fill(429)]);
    await expect.poll(() => origin.openStreams(), { timeout: 5_000 }).toBe(STREAMS);

    // The caller goes away: its connections close, the gateway cancels the origin's streams.
    for (const ac of controllers.splice(0)) ac.abort();
    await expect.poll(() => origin.openStreams(), { timeout: 10_000 }).toBe(0);
    // And its places are free again.
    await expect
      .poll(
        async () => {
          const res = await open();
          return res.status;
        },
        { timeout: 5_000 },
      )
      .toBe(200);
    for (const ac of controllers.splice(0)) ac.abort();
    await expect.poll(() => origin.openStreams(), { timeout: 10_000 }).toBe(0);
  });
});
