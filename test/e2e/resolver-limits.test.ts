/**
 * How long `withTollbooth` (packages/tollbooth-client/src/resolver/) waits and when it gives
 * up, against a real gateway (`wrangler dev`) in front of server-everything, as README.md and
 * packages/tollbooth-client/src/errors.ts promise (resolver.test.ts has the way through):
 *  - on 429 it waits the integer `Retry-After`, then retries once; a `Retry-After` above
 *    `maxWaitSeconds` is `rate_limited` at once;
 *  - `solve_timeout` past `maxSolveMs`; `challenge_refused` when the gateway refuses the
 *    solution; `body_not_replayable` for a streamed body (on 402 and on 429);
 *  - a cached token is not sent within 2 s of its expiry.
 *
 * Two gateways: "cheap" (1 free unit, 8-bit challenges, 10 credits, 60 s tokens) and
 * "strict" (1 free unit, a ceiling of 3 requests refilling one every 4 s, 30-bit challenges:
 * far too much work for a test). Callers are told apart by `x-api-key`.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { TollboothError } from "../../packages/tollbooth-client/src/errors.ts";
import { type FetchLike, withTollbooth } from "../../packages/tollbooth-client/src/index.ts";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const CHEAP = { bucket: { capacity: 1, refillPerSecond: 0.0001 }, challenge: { difficulty: 8, credits: 10 }, token: { ttlSeconds: 60 } };
const STRICT = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  ceiling: { capacity: 3, refillPerSecond: 0.25 },
  challenge: { difficulty: 30, credits: 10 },
};

let origin: Origin;
let cheap: Gateway;
let strict: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  [cheap, strict] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: CHEAP }),
    startGateway({ originUrl: origin.url, policy: STRICT }),
  ]);
});

afterAll(async () => {
  await Promise.all([cheap?.close(), strict?.close()]);
  await origin?.close();
});

/** What the resolver sent underneath (request headers) and what came back (status, headers). */
interface Exchange {
  sent: Headers;
  status: number;
  headers: Headers;
  /** performance.now() when the response headers arrived. */
  at: number;
}

function wire(): { fetch: FetchLike; log: Exchange[] } {
  const log: Exchange[] = [];
  return {
    log,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      log.push({ sent: new Headers(init?.headers), status: res.status, headers: res.headers, at: performance.now() });
      return res;
    },
  };
}

const HEADERS = (apiKey: string) => ({
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
  "x-api-key": apiKey,
});

/** A raw MCP POST (no session: server-everything answers initialize with 200, other calls with 400). */
function mcp(apiKey: string, message: Record<string, unknown>): RequestInit {
  return { method: "POST", headers: HEADERS(apiKey), body: JSON.stringify({ jsonrpc: "2.0", ...message }) };
}

const initialize = (id: number) => ({
  id,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "resolver-promises", version: "1" } },
});
const echo = (id: number) => ({ id, method: "tools/call", params: { name: "echo", arguments: { message: `m-${id}` } } });

async function failure(promise: Promise<unknown>): Promise<TollboothError> {
  const err = await promise.then(
    (res) => new Error(`resolved with HTTP ${(res as Response).status}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TollboothError);
  return err as TollboothError;
}

/** Messages with `message` seen by the origin for tools/call echo. */
const echoed = (message: string) =>
  origin.requests().filter((r) => r.messages.some((m) => JSON.stringify(m).includes(`"message":"${message}"`))).length;

describe("429: waits the integer Retry-After, bounded by maxWaitSeconds", () => {
  it("waits Retry-After seconds, retries once and gets through", async () => {
    origin.reset();
    const w = wire();
    const tf = withTollbooth(w.fetch, { maxWaitSeconds: 10 });
    // initialize costs nothing but counts against the ceiling (3, +1 every 4 s): call until
    // one call meets a 429 (the 4th, unless the machine is slow enough for the ceiling to refill).
    let waitedCall: Exchange[] | undefined;
    let calls = 0;
    for (let i = 1; i <= 20 && !waitedCall; i++) {
      const before = w.log.length;
      const res = await tf(`${strict.url}/mcp`, mcp("waiter", initialize(i)));
      calls++;
      expect(res.status).toBe(200);
      await res.body?.cancel();
      const exchanges = w.log.slice(before);
      if (exchanges.some((e) => e.status === 429)) waitedCall = exchanges;
    }
    expect(waitedCall, "no call met the ceiling").toBeDefined();
    const [limited, retried] = waitedCall!;
    expect(waitedCall!.map((e) => e.status)).toEqual([429, 200]);
    const retryAfter = limited!.headers.get("retry-after")!;
    expect(retryAfter).toMatch(/^[1-9]\d*$/);
    // It slept at least Retry-After before retrying (had it not, the retry would have met the
    // ceiling again and failed with rate_limited).
    expect(retried!.at - limited!.at).toBeGreaterThanOrEqual(Number(retryAfter) * 1000 - 50);
    // Every call reached the origin exactly once; the refused attempt did not.
    expect(origin.counts().initialize).toBe(calls);
  });

  it("a Retry-After above maxWaitSeconds: TollboothError rate_limited, status 429, no wait and no retry", async () => {
    origin.reset();
    const w = wire();
    const tf = withTollbooth(w.fetch, { maxWaitSeconds: 0 });
    let error: TollboothError | undefined;
    let admitted = 0;
    for (let i = 1; i <= 20 && !error; i++) {
      const before = w.log.length;
      try {
        const res = await tf(`${strict.url}/mcp`, mcp("impatient", initialize(i)));
        await res.body?.cancel();
        admitted++;
      } catch (err) {
        expect(err).toBeInstanceOf(TollboothError);
        error = err as TollboothError;
        // One exchange: the 429, not retried.
        expect(w.log.slice(before).map((e) => e.status)).toEqual([429]);
      }
    }
    expect(error, "no call met the ceiling").toBeDefined();
    expect(error!.code).toBe("rate_limited");
    expect(error!.status).toBe(429);
    expect(error!.message).toMatch(/Retry-After \d+ exceeds 0 s/);
    expect(origin.counts().initialize ?? 0).toBe(admitted);
  });

  it("a streamed body cannot be sent again: body_not_replayable, status 429", async () => {
    const raw = (i: number) => fetch(`${strict.url}/mcp`, mcp("stream-429", initialize(i)));
    // Fill the ceiling, then send a streamed body until one meets the 429.
    let error: TollboothError | undefined;
    for (let i = 1; i <= 20 && !error; i++) {
      await (await raw(i)).body?.cancel();
      const stream = new Blob([JSON.stringify({ jsonrpc: "2.0", ...initialize(100 + i) })]).stream();
      const tf = withTollbooth(fetch, { maxWaitSeconds: 10 });
      try {
        const res = await tf(`${strict.url}/mcp`, {
          method: "POST",
          headers: HEADERS("stream-429"),
          body: stream,
          duplex: "half",
        } as RequestInit);
        await res.body?.cancel();
      } catch (err) {
        expect(err).toBeInstanceOf(TollboothError);
        error = err as TollboothError;
      }
    }
    expect(error, "no call met the ceiling").toBeDefined();
    expect(error!.code).toBe("body_not_replayable");
    expect(error!.status).toBe(429);
  });
});

describe("giving up on a challenge", () => {
  it("past maxSolveMs: TollboothError solve_timeout, nothing forwarded", async () => {
    origin.reset();
    // The real solver, with the budget it is handed recorded.
    const budgets: Array<number | undefined> = [];
    const tf = withTollbooth(fetch, {
      maxDifficulty: 30,
      maxSolveMs: 200,
      solve: (salt, difficulty, o) => {
        budgets.push(o.maxMs);
        return solvePow(salt, difficulty, o);
      },
    });
    const first = await tf(`${strict.url}/mcp`, mcp("slow-solver", echo(1)));
    expect(first.status).not.toBe(402); // the free unit (the origin answers 400: no session)
    await first.body?.cancel();
    const err = await failure(tf(`${strict.url}/mcp`, mcp("slow-solver", echo(2))));
    expect(err.code).toBe("solve_timeout");
    // The solve had exactly maxSolveMs (a 30-bit challenge takes far longer).
    expect(budgets).toEqual([200]);
    expect(echoed("m-1")).toBe(1);
    expect(echoed("m-2")).toBe(0);
  });

  it("the gateway refuses the solution: TollboothError challenge_refused, status 402, after one solve and one redemption", async () => {
    origin.reset();
    const w = wire();
    let solves = 0;
    const tf = withTollbooth(w.fetch, {
      maxDifficulty: 16,
      // A nonce that does not meet the difficulty: the gateway answers 402 solution_insufficient_work.
      solve: async (salt, difficulty) => {
        if (++solves > 3) throw new Error("solved again and again after the refusal");
        for (let n = 0; ; n++) {
          const digest = createHash("sha256")
            .update(salt + n)
            .digest();
          if (digest[0]! >> (8 - Math.min(8, difficulty)) !== 0) return { nonce: String(n), hashes: n + 1, ms: 0 };
        }
      },
    });
    const first = await tf(`${cheap.url}/mcp`, mcp("refused", echo(1)));
    expect(first.status).not.toBe(402);
    await first.body?.cancel();
    const err = await failure(tf(`${cheap.url}/mcp`, mcp("refused", echo(2))));
    expect(err.code).toBe("challenge_refused");
    expect(err.status).toBe(402);
    expect(err.message).toContain("solution_insufficient_work");
    expect(solves).toBe(1);
    // The call: a 402, then the redemption refused with 402; nothing more.
    expect(w.log.slice(1).map((e) => [e.status, e.sent.has("tollbooth-solution")])).toEqual([
      [402, false],
      [402, true],
    ]);
    expect(echoed("m-2")).toBe(0);
  });

  it("a streamed body cannot be sent again: body_not_replayable, status 402, nothing solved or forwarded", async () => {
    origin.reset();
    let solves = 0;
    const tf = withTollbooth(fetch, { maxDifficulty: 16, onSolve: () => solves++ });
    const first = await tf(`${cheap.url}/mcp`, mcp("streamer", echo(1)));
    await first.body?.cancel();
    const stream = new Blob([JSON.stringify({ jsonrpc: "2.0", ...echo(2) })]).stream();
    const err = await failure(
      tf(`${cheap.url}/mcp`, { method: "POST", headers: HEADERS("streamer"), body: stream, duplex: "half" } as RequestInit),
    );
    expect(err.code).toBe("body_not_replayable");
    expect(err.status).toBe(402);
    expect(solves).toBe(0);
    expect(echoed("m-2")).toBe(0);
  });
});

describe("the token's expiry margin", () => {
  it("a cached token is sent until 2 s before its exp, and not within those 2 s (a new challenge is solved instead)", async () => {
    origin.reset();
    const w = wire();
    // The resolver reads the clock before it calls the inner fetch: the clock it sees is set
    // per call, and the real one is back before the request leaves (the gateway is not fooled).
    const realNow = Date.now;
    let frozen: number | undefined;
    const clock = vi.spyOn(Date, "now").mockImplementation(() => frozen ?? realNow.call(Date));
    const inner: FetchLike = (url, init) => {
      frozen = undefined;
      return w.fetch(url, init);
    };
    let solves = 0;
    const tf = withTollbooth(inner, { maxDifficulty: 16, onSolve: () => solves++ });
    const call = async (id: number, at?: number) => {
      frozen = at;
      const res = await tf(`${cheap.url}/mcp`, mcp("margin", echo(id)));
      await res.body?.cancel();
      return res;
    };

    await call(1); // the free unit
    const bought = await call(2); // 402, solved, redeemed: a token
    expect(solves).toBe(1);
    const token = bought.headers.get("tollbooth-token")!;
    expect(token).toMatch(/^tb1\./);
    const exp = (JSON.parse(Buffer.from(token.split(".")[2]!, "base64url").toString()) as { exp: number }).exp * 1000;

    const sentToken = (from: number) => w.log.slice(from).map((e) => e.sent.get("tollbooth-token"));
    let from = w.log.length;
    expect((await call(3, exp - 2_001)).status).not.toBe(402);
    expect(sentToken(from)).toEqual([token]);
    expect(solves).toBe(1);

    from = w.log.length;
    await call(4, exp - 1_999);
    // Not sent: the gateway (whose clock is a minute earlier) would still have taken it.
    expect(sentToken(from)[0]).toBeNull();
    expect(w.log.slice(from).map((e) => e.status)).toEqual([402, expect.any(Number)]);
    expect(solves).toBe(2);
    expect(echoed("m-4")).toBe(1);
    clock.mockRestore();
  });
});
