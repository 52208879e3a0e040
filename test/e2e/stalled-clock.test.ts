/**
 * A clock that cannot be stalled: a credential is judged when its body has arrived, through
 * `wrangler dev` in front of a real origin (the SDK's Express app, counting tool runs).
 *
 * A challenge with a short lifetime (5 s) is solved and redeemed once. Then the same
 * solution is sent again, its body trickled a few bytes at a time until well past the
 * challenge's expiry (and past the moment the spent mark of a challenge that old could be
 * cleaned up), within `bodyTimeoutMs`. The gateway must judge that request at the time the
 * body arrived, not when its headers did: refused as expired (402 `solution_expired`), and
 * the origin receives nothing.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type ExpressOrigin, startExpressOrigin } from "../helpers/express-origin.ts";

const TTL_SECONDS = 5;
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.001 },
  challenge: { difficulty: 8, ttlSeconds: TTL_SECONDS, credits: 1 },
  token: { ttlSeconds: 1 },
  bodyTimeoutMs: 30_000,
};
const HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": "stalled-clock-caller" };

let origin: ExpressOrigin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startExpressOrigin();
  gateway = await startGateway({ originUrl: origin.url, policy: POLICY });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

let rpcId = 0;
const cheapCall = () => JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method: "tools/call", params: { name: "cheap", arguments: {} } });

const send = (body: string, extra: Record<string, string> = {}) =>
  fetch(`${gateway.url}/mcp`, { method: "POST", headers: { ...HEADERS, ...extra }, body });

/**
 * POST `body` over a raw connection, writing it in `pieces` parts `everyMs` apart (the
 * headers go at once, with the whole Content-Length).
 */
function trickle(
  url: string,
  headers: Record<string, string>,
  body: string,
  pieces: number,
  everyMs: number,
): Promise<{ status: number; text: string }> {
  const bytes = Buffer.from(body);
  const size = Math.ceil(bytes.length / pieces);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { ...headers, "content-length": String(bytes.length) } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.flushHeaders();
    let i = 0;
    const tick = () => {
      const piece = bytes.subarray(i * size, (i + 1) * size);
      i++;
      if (i >= pieces) req.end(piece);
      else {
        req.write(piece);
        setTimeout(tick, everyMs);
      }
    };
    tick();
  });
}

describe("a spent, short-lived challenge replayed with a body trickled past its expiry", () => {
  it("is refused, and the origin receives nothing", { timeout: 60_000 }, async () => {
    // The one free unit, then a 402 with a challenge.
    const free = await send(cheapCall());
    expect(free.status).toBe(200);
    await free.text();
    const over = await send(cheapCall());
    expect(over.status).toBe(402);
    await over.text();
    const header = over.headers.get("www-authenticate")!;
    expect(header).toMatch(/^PowChallenge /);
    const params = header.slice("PowChallenge ".length);
    const salt = /salt="([^"]+)"/.exec(params)![1]!;
    const difficulty = Number(/difficulty=(\d+)/.exec(params)![1]);
    const expires = Number(/expires=(\d+)/.exec(params)![1]);
    expect(expires - Date.now() / 1000).toBeLessThanOrEqual(TTL_SECONDS + 1);

    // Solved and redeemed once.
    const { nonce } = await solvePow(salt, difficulty, { threads: 1 });
    const solution = `${params}, nonce="${nonce}"`;
    const redeemed = await send(cheapCall(), { "tollbooth-solution": solution });
    expect(redeemed.status).toBe(200);
    await redeemed.text();
    expect(origin.runs().cheap).toBe(2);
    const received = origin.requests().length;

    // The replay: its headers arrive while the challenge is still fresh, its body only
    // ~3.5 s after the challenge expired (a spent mark could be gone by then: here the
    // token lives 1 s, so nothing outlives the challenge for long).
    const msLeft = expires * 1000 - Date.now();
    expect(msLeft).toBeGreaterThan(0);
    const pieces = 12;
    const everyMs = Math.ceil((msLeft + 3_500) / (pieces - 1));
    const replay = await trickle(`${gateway.url}/mcp`, { ...HEADERS, "tollbooth-solution": solution }, cheapCall(), pieces, everyMs);
    expect(Date.now()).toBeGreaterThan(expires * 1000 + 2_000);

    // The body's last piece left ~3.5 s after the expiry (timers only fire late), so the
    // gateway, reading its clock once the body is in, finds the challenge expired: that
    // check comes before the spent mark is looked up. (Judged at the headers' time, it
    // would have been `solution_spent`, or admitted once the mark was gone.)
    expect(replay.status, replay.text).toBe(402);
    const reason = (JSON.parse(replay.text) as { error: { data: { reason: string } } }).error.data.reason;
    expect(reason).toBe("solution_expired");
    expect(origin.runs().cheap).toBe(2);
    expect(origin.requests().length).toBe(received);
  });
});
