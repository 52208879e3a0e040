/**
 * Per-caller caps on open MCP sessions and GET SSE streams, kept in the caller's object: an
 * `initialize` the origin answers with `Mcp-Session-Id` holds a session slot until DELETE (or
 * its TTL); here with `limits.onSessionCap: "refuse"` (eviction at the cap, the default, is
 * pinned in caller-state.session-eviction.test.ts); a GET stream holds a stream slot until it ends however it ends (the client
 * cancelling it included, and then the origin's stream is cancelled too). At the cap: 429
 * naming the layer, and the origin never sees the request. An origin that never answered
 * (502) neither charges nor holds a slot.
 */
import { runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it, vi } from "vitest";
import {
  errorBody,
  type Forwarded,
  freezeTime,
  freshIp,
  gateway,
  ipIdentity,
  observeOrigin,
  post,
  request,
  rpc,
  stubFor,
  WELL_KNOWN,
} from "../support.ts";

const POLICY = {
  bucket: { capacity: 10, refillPerSecond: 0.001 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  limits: { sessions: 2, sessionTtlSeconds: 60, onSessionCap: "refuse", streams: 2, streamMaxSeconds: 30 },
};

let ip: string;
let send: (r: Request) => Promise<Response>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  send = gateway(POLICY);
});

const initialize = (id: number) =>
  post(rpc("initialize", { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } }, id), { ip });
const getStream = () => request("GET", "/mcp", { ip, headers: { accept: "text/event-stream" } });
const del = (session: string) => request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": session } });

/** Open slots of the caller's object, by kind. */
async function openSlots(kind: "session" | "stream"): Promise<number> {
  return runInDurableObject(
    stubFor(ipIdentity(ip)),
    (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM slots WHERE kind = ?", kind).one().n,
  );
}

async function statusOf(): Promise<Record<string, any>> {
  const res = await send(request("GET", `${WELL_KNOWN}/status`, { ip }));
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, any>;
}

/** An origin that opens a session per initialize, keeps GET streams open until cancelled, and answers DELETE. */
function mcpOrigin(opts: { sessionIds?: boolean } = {}) {
  let sessions = 0;
  const cancelled: string[] = [];
  const streams: Array<ReadableStreamDefaultController<Uint8Array>> = [];
  const origin = observeOrigin((f: Forwarded) => {
    if (f.method === "GET") {
      const n = streams.length;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          streams.push(c);
          c.enqueue(new TextEncoder().encode(`event: message\ndata: {"stream":${n}}\n\n`));
        },
        cancel() {
          cancelled.push(`stream-${n}`);
        },
      });
      return new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } });
    }
    if (f.method === "DELETE") return new Response(null, { status: 200 });
    const id = (JSON.parse(f.body) as { id: number }).id;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (opts.sessionIds !== false) headers["mcp-session-id"] = `s-${++sessions}`;
    return new Response(
      JSON.stringify({
        jsonrpc: "2.0",
        id,
        result: { protocolVersion: "2025-11-25", capabilities: {}, serverInfo: { name: "o", version: "1" } },
      }),
      { status: 200, headers },
    );
  });
  return { origin, cancelled, streams };
}

describe("session cap", () => {
  it("initialize answered with Mcp-Session-Id holds a slot; at limits.sessions the next initialize gets 429 layer sessions", async () => {
    const { origin } = mcpOrigin();
    const a = await send(initialize(1));
    expect(a.status).toBe(200);
    expect(a.headers.get("mcp-session-id")).toBe("s-1");
    expect((await send(initialize(2))).headers.get("mcp-session-id")).toBe("s-2");
    expect(await statusOf()).toMatchObject({ sessions: { open: 2, max: 2 } });

    const third = await send(initialize(3));
    expect(third.status).toBe(429);
    expect(third.headers.get("retry-after")).toBe("60"); // the oldest session slot ends with its TTL
    const body = await errorBody(third);
    expect(body.id).toBe(3);
    expect(body.error.data).toMatchObject({ layer: "sessions", max: 2 });
    expect(body.error.message).toContain("cap of 2 open sessions");
    expect(origin.requests.filter((f) => f.method === "POST")).toHaveLength(2);

    // DELETE ends one session and releases its slot.
    expect((await send(del("s-1"))).status).toBe(200);
    expect(await openSlots("session")).toBe(1);
    const again = await send(initialize(4));
    expect(again.status).toBe(200);
    expect(again.headers.get("mcp-session-id")).toBe("s-3");
    expect((await send(initialize(5))).status).toBe(429);
    expect(origin.requests.filter((f) => f.method === "POST")).toHaveLength(3);
  });

  it("a DELETE of a session the caller never opened releases nothing", async () => {
    mcpOrigin();
    for (const id of [1, 2]) expect((await send(initialize(id))).status).toBe(200);
    expect((await send(del("s-999"))).status).toBe(200);
    expect((await send(initialize(3))).status).toBe(429);
  });

  it("an initialize answered without a session (stateless origin) holds no slot", async () => {
    mcpOrigin({ sessionIds: false });
    for (let id = 1; id <= 5; id++) expect((await send(initialize(id))).status).toBe(200);
    expect(await openSlots("session")).toBe(0);
  });

  it("an origin 502 on initialize is not charged and holds no slot", async () => {
    let down = true;
    const origin = observeOrigin((f) => {
      if (down) throw new TypeError("connect ECONNREFUSED");
      const id = (JSON.parse(f.body) as { id: number }).id;
      return new Response(JSON.stringify({ jsonrpc: "2.0", id, result: {} }), {
        status: 200,
        headers: { "content-type": "application/json", "mcp-session-id": `s-${id}` },
      });
    });
    vi.spyOn(console, "error").mockImplementation(() => {});
    // initialize costs 1 here, so a charge would show in the bucket.
    const priced = gateway({ ...POLICY, bucket: { capacity: 2, refillPerSecond: 0.001 }, costs: { methods: { initialize: 1 } } });
    for (let id = 1; id <= 4; id++) {
      const res = await priced(initialize(id));
      expect(res.status, `attempt ${id}`).toBe(502);
      expect((await errorBody(res)).id).toBe(id);
    }
    expect(await openSlots("session")).toBe(0);
    down = false;
    expect((await priced(initialize(5))).status).toBe(200);
    expect((await priced(initialize(6))).status).toBe(200);
    expect(origin.requests).toHaveLength(6);
  });
});

describe("stream cap", () => {
  it("at limits.streams the next GET gets 429 layer streams; a stream the client cancels frees its slot and is cancelled at the origin", async () => {
    const { origin, cancelled } = mcpOrigin();
    const first = await send(getStream());
    const second = await send(getStream());
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(await statusOf()).toMatchObject({ streams: { open: 2, max: 2 } });

    const third = await send(getStream());
    expect(third.status).toBe(429);
    expect(third.headers.get("retry-after")).toBe("35"); // streamMaxSeconds + the slot's 5 s margin
    expect((await errorBody(third)).error.data).toMatchObject({ layer: "streams", max: 2 });
    expect(origin.requests.filter((f) => f.method === "GET")).toHaveLength(2);

    // The client reads its first event, then goes away.
    const reader = first.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('event: message\ndata: {"stream":0}\n\n');
    await reader.cancel();
    await vi.waitFor(async () => expect(await openSlots("stream")).toBe(1));
    expect(cancelled).toEqual(["stream-0"]);

    const fourth = await send(getStream());
    expect(fourth.status).toBe(200);
    expect(origin.requests.filter((f) => f.method === "GET")).toHaveLength(3);
    expect((await send(getStream())).status).toBe(429);
    await second.body!.cancel();
    await fourth.body!.cancel();
  });

  it("a stream the origin ends frees its slot", async () => {
    const { streams } = mcpOrigin();
    const a = await send(getStream());
    const b = await send(getStream());
    expect((await send(getStream())).status).toBe(429);
    streams[0]!.close();
    expect(await a.text()).toBe('event: message\ndata: {"stream":0}\n\n');
    await vi.waitFor(async () => expect(await openSlots("stream")).toBe(1));
    const c = await send(getStream());
    expect(c.status).toBe(200);
    await b.body!.cancel();
    await c.body!.cancel();
  });

  it("a GET the origin answers without a stream (405) holds no slot", async () => {
    const origin = observeOrigin(() => new Response(null, { status: 405, headers: { allow: "POST" } }));
    for (let i = 0; i < 5; i++) expect((await send(getStream())).status).toBe(405);
    expect(await openSlots("stream")).toBe(0);
    expect(origin.requests).toHaveLength(5);
  });
});
