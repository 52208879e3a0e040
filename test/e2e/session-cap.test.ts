/**
 * The session cap against a real MCP origin (the SDK's Express app, stateful, counting the
 * sessions it holds): the cap can neither be walked around nor lock out an honest client.
 * - The tricks that used to free a slot while the session stayed alive at the origin —
 *   `DELETE /mcp` with `Mcp-Protocol-Version: 1999-01-01` (the SDK answers 400) and
 *   `GET /nope` with the session id (404 of another path) — leave the origin with at most the
 *   cap of live sessions, however often they are repeated.
 * - A client that never sends DELETE opens 50 sessions in a row under the default policy
 *   without a refusal: at the cap the gateway ends the caller's least recently used idle
 *   session at the origin, so the origin holds at most the cap (16).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type ExpressOrigin, startExpressOrigin } from "../helpers/express-origin.ts";

const VERSION = "2025-11-25";
const TRICK_CAP = 3;
let origin: ExpressOrigin;
let capped: Gateway;
let defaults: Gateway;

beforeAll(async () => {
  origin = await startExpressOrigin({ sessions: true });
  // Each trick as its own caller (the key names it); buckets that pay for every trick.
  capped = await startGateway({
    originUrl: origin.url,
    policy: {
      identity: { strategies: ["api-key-unverified", "ip"] },
      bucket: { capacity: 1000, refillPerSecond: 100 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      limits: { sessions: TRICK_CAP },
    },
  });
  defaults = await startGateway({ originUrl: origin.url });
});

afterAll(async () => {
  await capped?.close();
  await defaults?.close();
  await origin?.close();
});

beforeEach(() => origin.reset());

const JSON_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream" };

/** An MCP client's opening of a session through `gw` (initialize, then `notifications/initialized`): the status of each, and the session id. */
async function openSession(
  gw: Gateway,
  caller: Record<string, string>,
): Promise<{ status: number; session: string | null; body?: string }> {
  const init = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...JSON_HEADERS, ...caller },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: "never-deletes", version: "1" } },
    }),
  });
  const text = await init.text();
  const session = init.headers.get("mcp-session-id");
  if (init.status !== 200 || !session) return { status: init.status, session, body: text };
  const done = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...JSON_HEADERS, ...caller, "mcp-session-id": session, "mcp-protocol-version": VERSION },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await done.body?.cancel();
  return { status: done.status === 202 ? 200 : done.status, session };
}

describe("the tricks that walked around the cap leave the origin with at most the cap", () => {
  it("DELETE /mcp with Mcp-Protocol-Version 1999-01-01 (the SDK answers 400) after each session, 20 times", async () => {
    const caller = { "x-api-key": "trick-bad-version" };
    const before = origin.liveSessions();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const opened = await openSession(capped, caller);
      expect(opened.status, `session ${i}: ${opened.body}`).toBe(200);
      const del = await fetch(`${capped.url}/mcp`, {
        method: "DELETE",
        headers: { ...caller, "mcp-session-id": opened.session!, "mcp-protocol-version": "1999-01-01" },
      });
      statuses.push(del.status);
      await del.body?.cancel();
      expect(origin.liveSessions() - before, `after session ${i}`).toBeLessThanOrEqual(TRICK_CAP);
    }
    expect(new Set(statuses)).toEqual(new Set([400]));
    expect(origin.mostLiveSessions() - before).toBe(TRICK_CAP);
  });

  it("GET /nope with the session id (404 of another path) after each session, 12 times", async () => {
    const caller = { "x-api-key": "trick-other-path" };
    const before = origin.liveSessions();
    for (let i = 0; i < 12; i++) {
      const opened = await openSession(capped, caller);
      expect(opened.status, `session ${i}: ${opened.body}`).toBe(200);
      const nope = await fetch(`${capped.url}/nope`, { headers: { ...caller, "mcp-session-id": opened.session! } });
      expect(nope.status).toBe(404);
      await nope.body?.cancel();
      expect(origin.liveSessions() - before, `after session ${i}`).toBeLessThanOrEqual(TRICK_CAP);
    }
    expect(origin.mostLiveSessions() - before).toBe(TRICK_CAP);
  });
});

describe("a client that never sends DELETE is not locked out", () => {
  it("50 sessions in a row under the default policy: no refusal, the origin holds at most the default cap (16)", async () => {
    // The default policy names this caller by its network (127.0.0.1).
    const caller = {};
    const before = origin.liveSessions();
    const policy = (await (await fetch(`${defaults.url}/.well-known/tollbooth`)).json()) as { limits: { sessions: number } };
    expect(policy.limits.sessions).toBe(16);
    for (let i = 0; i < 50; i++) {
      const opened = await openSession(defaults, caller);
      expect(opened.status, `session ${i}: ${opened.body}`).toBe(200);
      expect(origin.liveSessions() - before, `after session ${i}`).toBeLessThanOrEqual(16);
      // Two requests per session, within the default ceiling's refill (10 requests/s).
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(origin.mostLiveSessions() - before).toBe(16);
    expect(origin.liveSessions() - before).toBe(16);
  });
});
