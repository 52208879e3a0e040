/**
 * Session slots that neither leak nor lock out (`limits.onSessionCap: "evict"`, the default):
 * a caller at its session cap that opens one more gets its least recently used idle session
 * (no GET stream open on it) ended at the origin by the gateway — a DELETE on its behalf,
 * with its `Mcp-Session-Id`, protocol version and the origin proof — and the new session is
 * forwarded only once the origin ended the old one (2xx or 404); otherwise 429 `sessions`
 * saying why, and the origin receives no `initialize`. A slot is released only when the
 * origin really ended the session: its DELETE answered 2xx, or its 404 for that session id on
 * the endpoint's own path — never a 400 / 405 to a DELETE, nor a 404 of another path or
 * spelling. The origin here holds sessions the way the MCP SDK does and counts them.
 */
import { runInDurableObject } from "cloudflare:test";
import { beforeEach, describe, expect, it } from "vitest";
import type { AdmitRequest } from "../../../workers/objects/caller-state.ts";
import { EVICTION_STALE_MS } from "../../../workers/objects/caller-state.ts";
import {
  advance,
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
  toolCall,
  WELL_KNOWN,
} from "../support.ts";

const CAP = 2;
const POLICY = {
  leases: false,
  bucket: { capacity: 1000, refillPerSecond: 100 },
  ceiling: { capacity: 1000, refillPerSecond: 100 },
  limits: { sessions: CAP, sessionTtlSeconds: 600, streams: 4, streamMaxSeconds: 60 },
};
const VERSION = "2025-11-25";
const SUPPORTED = ["2025-06-18", VERSION];
/** `Content-Digest` of the empty body. */
const EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";

let ip: string;
let send: (r: Request) => Promise<Response>;

beforeEach(() => {
  freezeTime();
  ip = freshIp();
  send = gateway(POLICY);
});

/**
 * An origin that holds sessions as the MCP SDK does: `initialize` opens `s-<n>`; a request
 * with a session it does not hold gets 404; an unsupported `Mcp-Protocol-Version` 400; DELETE
 * ends the session (200), or answers `deleteStatus` without ending it; GET opens a stream held
 * until cancelled. Only `/mcp` is routed (any other path or spelling: 404).
 */
function sessionOrigin() {
  const live = new Set<string>();
  let opened = 0;
  let most = 0;
  const o = { live, deleteStatus: 200, most: () => most, origin: undefined as unknown as { requests: Forwarded[] } };
  o.origin = observeOrigin((f) => {
    const sid = f.headers["mcp-session-id"];
    const version = f.headers["mcp-protocol-version"];
    if (new URL(f.url).pathname !== "/mcp") return new Response("Cannot route", { status: 404 });
    if (sid !== undefined && !live.has(sid))
      return Response.json({ jsonrpc: "2.0", id: null, error: { code: -32001, message: "Session not found" } }, { status: 404 });
    if (version !== undefined && !SUPPORTED.includes(version))
      return Response.json({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "Unsupported protocol version" } }, { status: 400 });
    if (f.method === "DELETE") {
      if (o.deleteStatus === 200) live.delete(sid!);
      return new Response(null, { status: o.deleteStatus });
    }
    if (f.method === "GET")
      return new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode(": open\n\n")) }), {
        headers: { "content-type": "text/event-stream" },
      });
    const msg = JSON.parse(f.body) as { id?: number; method: string };
    if (msg.method === "initialize") {
      const id = `s-${++opened}`;
      live.add(id);
      most = Math.max(most, live.size);
      return Response.json(
        { jsonrpc: "2.0", id: msg.id, result: { protocolVersion: VERSION, capabilities: {}, serverInfo: { name: "o", version: "1" } } },
        { headers: { "mcp-session-id": id } },
      );
    }
    if (msg.id === undefined) return new Response(null, { status: 202 });
    return Response.json({ jsonrpc: "2.0", id: msg.id, result: { content: [] } });
  });
  return o;
}

const initialize = (id: number, headers: Record<string, string> = {}) =>
  post(rpc("initialize", { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: "t", version: "1" } }, id), { ip, headers });
const inSession = (session: string, body: unknown, headers: Record<string, string> = {}) =>
  post(body, { ip, headers: { "mcp-session-id": session, "mcp-protocol-version": VERSION, ...headers } });

/** Initialize and send `notifications/initialized` in the new session, as an MCP client does; the session id. */
async function open(id: number, headers: Record<string, string> = {}): Promise<string> {
  const res = await send(initialize(id, headers));
  expect(res.status, `initialize ${id}`).toBe(200);
  const session = res.headers.get("mcp-session-id")!;
  expect((await send(inSession(session, rpc("notifications/initialized"), headers))).status).toBe(202);
  return session;
}

/** Session slots the caller's object holds (marked for eviction or not). */
async function sessionSlots(identity = ipIdentity(ip)): Promise<number> {
  return runInDurableObject(
    stubFor(identity),
    (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM slots WHERE kind = 'session'").one().n,
  );
}

const forwarded = (o: ReturnType<typeof sessionOrigin>, what: "initialize" | "DELETE") =>
  o.origin.requests.filter((f) => (what === "DELETE" ? f.method === "DELETE" : f.method === "POST" && f.body.includes('"initialize"')));

describe("at the session cap, the least recently used idle session is ended at the origin", () => {
  it("a client that never sends DELETE opens 10 sessions in a row: no refusal, the origin never holds more than the cap", async () => {
    const o = sessionOrigin();
    for (let i = 1; i <= 10; i++) {
      await open(i);
      advance(1_000);
      expect(o.live.size, `after session ${i}`).toBeLessThanOrEqual(CAP);
    }
    expect(o.most()).toBe(CAP);
    expect([...o.live]).toEqual(["s-9", "s-10"]);
    expect(forwarded(o, "DELETE").map((f) => f.headers["mcp-session-id"])).toEqual([
      "s-1",
      "s-2",
      "s-3",
      "s-4",
      "s-5",
      "s-6",
      "s-7",
      "s-8",
    ]);
    const status = (await (await send(request("GET", `${WELL_KNOWN}/status`, { ip }))).json()) as { sessions: unknown };
    expect(status.sessions).toEqual({ open: CAP, max: CAP });
  });

  it("the DELETE is sent before the new initialize, as a forwarded request: the victim's session id and protocol version, the origin proof of the caller", async () => {
    const o = sessionOrigin();
    await open(1, { authorization: "Bearer someone-on-this-network" });
    advance(1_000);
    await open(2);
    advance(1_000);
    const third = await send(initialize(3));
    expect(third.status).toBe(200);
    const order = o.origin.requests.slice(-2);
    expect(order.map((f) => f.method)).toEqual(["DELETE", "POST"]);
    const del = order[0]!;
    expect(new URL(del.url).pathname).toBe("/mcp");
    expect(del.headers).toMatchObject({
      "mcp-session-id": "s-1",
      "mcp-protocol-version": VERSION,
      "tollbooth-caller": ipIdentity(ip),
      "content-digest": EMPTY_DIGEST,
    });
    expect(del.headers["tollbooth-signature"]).toMatch(/^t=\d+, kid=[^,]+, sig=[A-Za-z0-9_-]+$/);
    // A network caller's sessions may be other users': no one's credential is sent for them.
    expect(del.headers.authorization).toBeUndefined();
    expect(await sessionSlots()).toBe(CAP);
  });

  it("the eviction DELETE carries the session's first protocol version: a later one the origin refused does not spoil it", async () => {
    const o = sessionOrigin();
    const s1 = await open(1);
    expect((await send(inSession(s1, toolCall(2), { "mcp-protocol-version": "1999-01-01" }))).status).toBe(400);
    expect(
      (await send(request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": s1, "mcp-protocol-version": "1999-01-01" } }))).status,
    ).toBe(400);
    await open(3);
    advance(1_000);
    expect((await send(initialize(4))).status).toBe(200);
    const [del] = forwarded(o, "DELETE").filter((f) => f.headers["mcp-protocol-version"] !== "1999-01-01");
    expect(del!.headers).toMatchObject({ "mcp-session-id": "s-1", "mcp-protocol-version": VERSION });
    expect(o.live.has("s-1")).toBe(false);
  });

  it("least recently used: a session used since is kept, the idle one goes", async () => {
    const o = sessionOrigin();
    const s1 = await open(1);
    advance(2_000);
    await open(2);
    advance(2_000);
    expect((await send(inSession(s1, toolCall(5)))).status).toBe(200);
    advance(2_000);
    expect((await send(initialize(6))).status).toBe(200);
    expect(forwarded(o, "DELETE").map((f) => f.headers["mcp-session-id"])).toEqual(["s-2"]);
    expect([...o.live].sort()).toEqual(["s-1", "s-3"]);
  });

  it("a session with a GET stream open is not idle; when every session has one, 429 `sessions` saying so and nothing reaches the origin", async () => {
    const o = sessionOrigin();
    const s1 = await open(1);
    advance(1_000);
    await open(2);
    advance(1_000);
    const stream1 = await send(
      request("GET", "/mcp", { ip, headers: { accept: "text/event-stream", "mcp-session-id": s1, "mcp-protocol-version": VERSION } }),
    );
    expect(stream1.status).toBe(200);
    const s3 = (await send(initialize(3))).headers.get("mcp-session-id")!;
    expect(forwarded(o, "DELETE").map((f) => f.headers["mcp-session-id"])).toEqual(["s-2"]);
    const stream3 = await send(request("GET", "/mcp", { ip, headers: { accept: "text/event-stream", "mcp-session-id": s3 } }));
    expect(stream3.status).toBe(200);
    const before = o.origin.requests.length;
    const refused = await send(initialize(4));
    expect(refused.status).toBe(429);
    const body = await errorBody(refused);
    expect(body.error.data).toMatchObject({ layer: "sessions", max: CAP });
    expect(body.error.message).toContain("every open session is in use");
    expect(o.origin.requests).toHaveLength(before);
    await stream1.body!.cancel();
    await stream3.body!.cancel();
  });

  it("the origin answers the eviction DELETE 404 (it had ended the session itself): the slot is freed and the new session opens", async () => {
    const o = sessionOrigin();
    await open(1);
    advance(1_000);
    await open(2);
    o.live.delete("s-1");
    const third = await send(initialize(3));
    expect(third.status).toBe(200);
    expect(forwarded(o, "DELETE")).toHaveLength(1);
    expect(await sessionSlots()).toBe(CAP);
  });

  for (const status of [405, 400, 503]) {
    it(`the origin answers the eviction DELETE ${status}: the session stays counted, the new one is refused 429 \`sessions\` saying why, no initialize reaches the origin`, async () => {
      const o = sessionOrigin();
      await open(1);
      advance(1_000);
      await open(2);
      o.deleteStatus = status;
      const refused = await send(initialize(3));
      expect(refused.status).toBe(429);
      const body = await errorBody(refused);
      expect(body.error.data).toMatchObject({ layer: "sessions", max: CAP });
      expect(body.error.message).toContain(`its DELETE answered ${status}`);
      if (status === 405) expect(body.error.message).toContain("does not let clients end sessions");
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(590);
      expect(forwarded(o, "initialize")).toHaveLength(2);
      expect(o.live.size).toBe(CAP);
      expect(await sessionSlots()).toBe(CAP);
      // The victim's mark is lifted: once the origin ends sessions again, the next initialize evicts it.
      o.deleteStatus = 200;
      expect((await send(initialize(4))).status).toBe(200);
      expect(forwarded(o, "DELETE").map((f) => f.headers["mcp-session-id"])).toEqual(["s-1", "s-1"]);
      expect(o.most()).toBe(CAP);
    });
  }

  it("an origin the eviction DELETE cannot reach: refused 429, no initialize forwarded", async () => {
    const o = sessionOrigin();
    await open(1);
    await open(2);
    const inner = o.origin;
    observeOrigin((f) => {
      inner.requests.push(f);
      if (f.method === "DELETE") throw new TypeError("connect ECONNREFUSED");
      return new Response(null, { status: 500 });
    });
    const refused = await send(initialize(3));
    expect(refused.status).toBe(429);
    expect((await errorBody(refused)).error.message).toContain("could not be reached");
    expect(forwarded(o, "initialize")).toHaveLength(2);
    expect(await sessionSlots()).toBe(CAP);
  });

  it('with `onSessionCap: "refuse"` the cap refuses as before: no DELETE is sent', async () => {
    const o = sessionOrigin();
    send = gateway({ ...POLICY, limits: { ...POLICY.limits, onSessionCap: "refuse" } });
    await open(1);
    await open(2);
    const refused = await send(initialize(3));
    expect(refused.status).toBe(429);
    expect((await errorBody(refused)).error.message).toContain("end one with DELETE");
    expect(forwarded(o, "DELETE")).toHaveLength(0);
  });

  it("a caller named by its API key: the eviction DELETE carries that key (every session of the caller was opened with it)", async () => {
    const o = sessionOrigin();
    send = gateway({ ...POLICY, identity: { strategies: ["api-key-unverified", "ip"] } });
    const key = { "x-api-key": "k-0123456789" };
    await open(1, key);
    advance(1_000);
    await open(2, key);
    expect((await send(initialize(3, key))).status).toBe(200);
    expect(forwarded(o, "DELETE")[0]!.headers["x-api-key"]).toBe("k-0123456789");
  });
});

describe("a session slot is released only when the origin ended the session", () => {
  it("walk-arounds free nothing: DELETE answered 400 (protocol version), 405, a 404 of another path or of another spelling of the endpoint", async () => {
    const o = sessionOrigin();
    send = gateway({ ...POLICY, limits: { ...POLICY.limits, onSessionCap: "refuse" } });
    const s1 = await open(1);
    await open(2);
    const tries: Array<[Request, number]> = [
      [request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": s1, "mcp-protocol-version": "1999-01-01" } }), 400],
      [request("GET", "/nope", { ip, headers: { "mcp-session-id": s1 } }), 404],
      [request("DELETE", "/MCP", { ip, headers: { "mcp-session-id": s1 } }), 404],
      [request("DELETE", "/%6Dcp", { ip, headers: { "mcp-session-id": s1 } }), 404],
    ];
    for (const [req, status] of tries) {
      expect((await send(req)).status, `${req.method} ${new URL(req.url).pathname}`).toBe(status);
      expect(await sessionSlots(), `${req.method} ${new URL(req.url).pathname}`).toBe(CAP);
    }
    o.deleteStatus = 405;
    expect((await send(request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": s1 } }))).status).toBe(405);
    expect(await sessionSlots()).toBe(CAP);
    expect((await send(initialize(3))).status).toBe(429);
    expect(o.live.size).toBe(CAP);
  });

  it("the origin's DELETE 200 or its 404 for the session id frees the slot", async () => {
    const o = sessionOrigin();
    const s1 = await open(1);
    const s2 = await open(2);
    expect((await send(request("DELETE", "/mcp", { ip, headers: { "mcp-session-id": s1 } }))).status).toBe(200);
    expect(await sessionSlots()).toBe(1);
    o.live.delete(s2);
    expect((await send(inSession(s2, toolCall(7)))).status).toBe(404);
    expect(await sessionSlots()).toBe(0);
  });
});

describe("session uses from a lease", () => {
  it("requests admitted from this isolate's lease (no object call) still make their session recent: their uses ride on the next call", async () => {
    const o = sessionOrigin();
    send = gateway({ ...POLICY, leases: true });
    const s1 = await open(1);
    advance(1_000);
    await open(2);
    // A busy caller: its isolate gets a lease (requests without a session, 20 per second).
    for (let i = 0; i < 20; i++) {
      expect((await send(post(toolCall(100 + i), { ip }))).status).toBe(200);
      advance(50);
    }
    // s-1 is used only by requests the lease admits.
    for (let i = 0; i < 5; i++) {
      expect((await send(inSession(s1, toolCall(200 + i)))).status).toBe(200);
      advance(50);
    }
    expect((await send(initialize(3))).status).toBe(200);
    expect(forwarded(o, "DELETE").map((f) => f.headers["mcp-session-id"])).toEqual(["s-2"]);
  });
});

describe("the object's eviction marks", () => {
  const admitSession = (nowMs: number, id: string): AdmitRequest => ({
    cost: 0,
    nowMs,
    bucket: POLICY.bucket,
    ceiling: POLICY.ceiling,
    slot: { kind: "session", id, max: CAP, expiresMs: nowMs + 600_000, evict: true },
  });

  it("a victim whose eviction is never reported (its isolate died) is not counted nor picked again, until its mark is stale", async () => {
    const stub = stubFor(`key:${crypto.randomUUID()}`);
    const t0 = Date.now();
    for (const n of [1, 2]) {
      expect((await stub.admit(admitSession(t0 + n, `slot-${n}`))).admitted).toBe(true);
      await stub.bindSession({ slotId: `slot-${n}`, sessionId: `s-${n}` });
    }
    const first = await stub.admit(admitSession(t0 + 10, "slot-3"));
    expect(first.evict).toMatchObject({ slotId: "slot-1", sessionId: "s-1", version: null });
    await stub.bindSession({ slotId: "slot-3", sessionId: "s-3" });
    // s-1 is being ended: the next eviction picks the next idlest.
    expect((await stub.admit(admitSession(t0 + 20, "slot-4"))).evict).toMatchObject({ sessionId: "s-2" });
    await stub.evicted({ slotId: "slot-2", ended: true });
    await stub.bindSession({ slotId: "slot-4", sessionId: "s-4" });
    // Never reported: once stale, s-1 counts again (3 open ≥ cap) and is the idlest again.
    const later = advance(EVICTION_STALE_MS + 1_000);
    expect((await stub.admit(admitSession(later, "slot-5"))).evict).toMatchObject({ sessionId: "s-1" });
  });

  it("an object whose slots table predates eviction gets the new columns and keeps its rows", async () => {
    const identity = `key:${crypto.randomUUID()}`;
    const stub = stubFor(identity);
    const now = Date.now();
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec("CREATE TABLE slots (id TEXT PRIMARY KEY, kind TEXT NOT NULL, session_id TEXT, expires_ms INTEGER NOT NULL)");
      state.storage.sql.exec(
        "INSERT INTO slots VALUES ('old-1', 'session', 's-old', ?), ('old-2', 'session', 's-old2', ?)",
        now + 600_000,
        now + 600_000,
      );
    });
    const res = await stub.admit(admitSession(now, "slot-new"));
    expect(res.admitted).toBe(true);
    expect(res.evict).toMatchObject({ slotId: "old-1", sessionId: "s-old" });
    const columns = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM pragma_table_info('slots')")
        .toArray()
        .map((c) => c.name),
    );
    expect(columns).toEqual(["id", "kind", "session_id", "expires_ms", "used_ms", "version", "evicting_ms"]);
  });
});
