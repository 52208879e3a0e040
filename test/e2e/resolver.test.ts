/**
 * `withTollbooth` (packages/tollbooth-client/src/resolver/) wrapped around the SDK transport's
 * fetch: an agent over budget solves challenges by itself and every call reaches the origin
 * exactly once. Without the resolver the stock SDK surfaces the 402 JSON-RPC error and its
 * challenge.
 *
 * Three gateways: "easy" (capacity 3, difficulty 10, 4 credits per solve), "hard"
 * (capacity 1, difficulty 32: far too much work for a test, for the give-up paths) and
 * "adaptive" (difficulty 8 + 1 bit per solve, 4 credits: a solution 2+ bits behind buys
 * nothing and is refused `solution_too_easy`).
 */
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TollboothError } from "../../packages/tollbooth-client/src/errors.ts";
import { type SolveEvent, withTollbooth } from "../../packages/tollbooth-client/src/index.ts";
import { solvePow } from "../../packages/tollbooth-client/src/solver/solve-pow.ts";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { connect, firstText, recordingFetch } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const EASY = { bucket: { capacity: 3, refillPerSecond: 0.0001 }, challenge: { difficulty: 10, credits: 4 } };
const HARD = { bucket: { capacity: 1, refillPerSecond: 0.0001 }, challenge: { difficulty: 32, credits: 4 } };
const ADAPTIVE = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  challenge: { difficulty: 8, credits: 4, adaptive: { solvesPerStep: 1, halfLifeSeconds: 600, maxExtraBits: 6 } },
};

let origin: Origin;
let easy: Gateway;
let hard: Gateway;
let adaptive: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  [easy, hard, adaptive] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: EASY }),
    startGateway({ originUrl: origin.url, policy: HARD }),
    startGateway({ originUrl: origin.url, policy: ADAPTIVE }),
  ]);
});

afterAll(async () => {
  await Promise.all([easy?.close(), hard?.close(), adaptive?.close()]);
  await origin?.close();
});

const echo = (i: number) => ({ name: "echo", arguments: { message: `call-${i}` } });

describe("withTollbooth through the SDK client", () => {
  it("ten tools/call echo all succeed, solving challenges on the way; the origin sees each call exactly once", async () => {
    origin.reset();
    const solves: SolveEvent[] = [];
    // Record what the gateway answered underneath the resolver.
    const wire = recordingFetch();
    const c = await connect(`${easy.url}/mcp`, {
      apiKey: "resolver-agent",
      fetch: withTollbooth(wire.fetch, { maxDifficulty: 16, maxSolveMs: 20_000, onSolve: (e) => solves.push(e) }),
    });
    try {
      for (let i = 1; i <= 10; i++) {
        expect(firstText(await c.client.callTool(echo(i)))).toBe(`Echo: call-${i}`);
      }
    } finally {
      await c.close(true);
    }

    // 3 free units, then tokens of 4 credits, the redeeming call paying 1 of them: calls 1–3
    // free, 4–7 on the first token, 8–10 on the second. Exactly two solves: a resolver that
    // did not reuse its token would solve for each of calls 4–10 (seven times).
    expect(solves.length).toBe(2);
    for (const s of solves) {
      expect(s.difficulty).toBe(10);
      expect(s.url).toBe(`${easy.url}/mcp`);
      expect(s.hashes).toBeGreaterThan(0);
    }
    const challenged = wire.log.filter((r) => r.status === 402);
    expect(challenged.length).toBe(solves.length);
    expect(challenged.every((r) => r.headers.get("www-authenticate")?.startsWith("PowChallenge "))).toBe(true);
    // Each redemption answered 200 with a fresh token.
    expect(wire.log.filter((r) => r.headers.get("tollbooth-token") !== null).length).toBe(solves.length);

    const counts = origin.counts();
    expect(counts["tools/call:echo"]).toBe(10);
    expect(counts["tools/call"]).toBe(10);
    for (const r of origin.requests()) {
      expect(r.headers["tollbooth-solution"]).toBeUndefined();
      expect(r.headers["tollbooth-token"]).toBeUndefined();
    }
  });

  it("without the resolver the same run fails at the fourth call with the 402 JSON-RPC error and its challenge", async () => {
    origin.reset();
    const c = await connect(`${easy.url}/mcp`, { apiKey: "bare-agent" });
    let error: unknown;
    let succeeded = 0;
    try {
      for (let i = 1; i <= 10; i++) {
        await c.client.callTool(echo(i));
        succeeded++;
      }
    } catch (err) {
      error = err;
    } finally {
      await c.close(true);
    }
    expect(succeeded).toBe(3);
    expect(error).toBeInstanceOf(StreamableHTTPError);
    expect((error as StreamableHTTPError).code).toBe(402);
    const message = (error as Error).message;
    expect(message).toContain('"code":402');
    expect(message).toContain("Payment required (over_budget)");
    expect(message).toMatch(/PowChallenge realm=\\?"tollbooth\\?"/);
    expect(message).toMatch(/"salt":"[0-9a-f]{32}"/);
    expect(message).toContain('"difficulty":10');
    // The body is the JSON-RPC error for the request that was refused.
    const body = JSON.parse(message.slice(message.indexOf("{"))) as {
      id: number;
      error: { code: number; data: { reason: string; challenges: Array<{ salt: string; header: string }> } };
    };
    expect(body.error.code).toBe(402);
    expect(body.error.data.reason).toBe("over_budget");
    expect(body.error.data.challenges[0]!.header).toContain(`salt="${body.error.data.challenges[0]!.salt}"`);
    expect(typeof body.id).toBe("number");
    // The refused call never reached the origin.
    expect(origin.counts()["tools/call:echo"]).toBe(3);
  });

  it("a challenge harder than maxDifficulty: TollboothError challenge_too_hard, status 402, nothing forwarded", async () => {
    origin.reset();
    let solved = 0;
    let solveCalls = 0;
    const c = await connect(`${hard.url}/mcp`, {
      apiKey: "too-hard-agent",
      fetch: withTollbooth(fetch, {
        maxDifficulty: 24,
        onSolve: () => solved++,
        // Counts attempts: the resolver must refuse before it starts any work.
        solve: (salt, difficulty, o) => {
          solveCalls++;
          return solvePow(salt, difficulty, o);
        },
      }),
    });
    try {
      expect(firstText(await c.client.callTool(echo(1)))).toBe("Echo: call-1");
      const err = await c.client.callTool(echo(2)).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TollboothError);
      expect((err as TollboothError).code).toBe("challenge_too_hard");
      expect((err as TollboothError).status).toBe(402);
      expect((err as Error).message).toMatch(/32 bits.*maxDifficulty 24/);
    } finally {
      await c.close(true);
    }
    expect(solveCalls).toBe(0); // it did not try
    expect(solved).toBe(0);
    expect(origin.counts()["tools/call:echo"]).toBe(1);
  });

  it("an AbortSignal fired while solving: TollboothError aborted, promptly, nothing forwarded", async () => {
    origin.reset();
    const controller = new AbortController();
    const c = await connect(`${hard.url}/mcp`, {
      apiKey: "abort-agent",
      fetch: withTollbooth(fetch, { maxDifficulty: 32, maxSolveMs: 60_000, signal: controller.signal }),
    });
    try {
      expect(firstText(await c.client.callTool(echo(1)))).toBe("Echo: call-1");
      const timer = setTimeout(() => controller.abort(), 300);
      const err = await c.client.callTool(echo(2)).then(
        () => null,
        (e: unknown) => e,
      );
      clearTimeout(timer);
      expect(err).toBeInstanceOf(TollboothError);
      // Not solve_timeout after maxSolveMs (60 s, past the test's timeout): the abort stopped it.
      expect((err as TollboothError).code).toBe("aborted");
    } finally {
      await c.close(true);
    }
    expect(origin.counts()["tools/call:echo"]).toBe(1);
  });

  it("an AbortSignal that has already fired stops even a cheap solve: no paid retry is sent", async () => {
    // At difficulty 10 a solve takes ~1000 tries, well inside the solver's first batch, so
    // this fails unless the signal is checked before any work. Three attempts make a false
    // pass negligible.
    const raw = (id: number) => ({
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": "pre-aborted-agent" },
      body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "echo", arguments: { message: `raw-${id}` } } }),
    });
    // Spend the 3 free units (no session: the origin answers 400, the gateway charged anyway).
    for (let i = 0; i < 3; i++) expect((await fetch(`${easy.url}/mcp`, raw(i))).status).not.toBe(402);
    expect((await fetch(`${easy.url}/mcp`, raw(99))).status).toBe(402);

    origin.reset();
    const outcomes: string[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const tollboothFetch = withTollbooth(fetch, { maxDifficulty: 16, signal: AbortSignal.abort() });
      outcomes.push(
        await tollboothFetch(`${easy.url}/mcp`, raw(100 + attempt)).then(
          (res) => `HTTP ${res.status} (solved and forwarded despite the aborted signal)`,
          (err: unknown) => (err instanceof TollboothError ? err.code : String(err)),
        ),
      );
    }
    expect(outcomes).toEqual(["aborted", "aborted", "aborted"]);
    expect(origin.counts()["tools/call"] ?? 0).toBe(0);
  });
});

describe("withTollbooth when the caller's difficulty rises while it solves", () => {
  it("a solution refused solution_too_easy: the resolver solves the 402's fresh challenge at the current difficulty and the call goes through once", async () => {
    origin.reset();
    const apiKey = "too-easy-agent";
    const wk = `${adaptive.url}/.well-known/tollbooth`;
    /** Another solver of the same caller, redeeming at /verify: each solve raises the difficulty one bit. */
    async function racingSolve(): Promise<number> {
      const ch = (await (await fetch(`${wk}/challenge`, { headers: { "x-api-key": apiKey } })).json()) as Record<string, unknown>;
      const { nonce } = await solvePow(ch.salt as string, ch.difficulty as number);
      const res = await fetch(`${wk}/verify`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": apiKey },
        body: JSON.stringify({ ...ch, nonce }),
      });
      expect(res.status).toBe(200);
      return ch.difficulty as number;
    }
    const statusOf = async () =>
      (await (await fetch(`${wk}/status`, { headers: { "x-api-key": apiKey } })).json()) as { difficulty: number; recentSolves: number };
    const raced: number[] = [];
    const solves: SolveEvent[] = [];
    const reasons: Array<string | null> = [];
    const wire = recordingFetch(async (url, init) => {
      const res = await fetch(url, init);
      if (res.status === 402)
        reasons.push(((await res.clone().json()) as { error?: { data?: { reason?: string } } }).error?.data?.reason ?? null);
      return res;
    });
    const c = await connect(`${adaptive.url}/mcp`, {
      apiKey,
      fetch: withTollbooth(wire.fetch, {
        maxDifficulty: 16,
        onSolve: (e) => solves.push(e),
        // While this agent solves its first challenge (8 bits), the same caller solves more elsewhere until it is at 11 bits.
        solve: async (salt, difficulty, options) => {
          if (raced.length === 0) while ((await statusOf()).difficulty < 11) raced.push(await racingSolve());
          return solvePow(salt, difficulty, options);
        },
      }),
    });
    try {
      expect(firstText(await c.client.callTool(echo(1)))).toBe("Echo: call-1"); // the free unit
      expect(firstText(await c.client.callTool(echo(2)))).toBe("Echo: call-2");
    } finally {
      await c.close(true);
    }
    expect(raced.length).toBeGreaterThanOrEqual(3);
    // Its own: 8 bits (worth 4 × 2^(8−11) = 0 at 11 bits: refused), then the fresh challenge at 11.
    expect(solves.map((s) => s.difficulty)).toEqual([8, 11]);
    expect(reasons).toEqual(["over_budget", "solution_too_easy"]);
    const minted = wire.log.filter((r) => r.headers.get("tollbooth-token") !== null);
    expect(minted).toHaveLength(1);
    expect(minted[0]!.headers.get("tollbooth-credits")).toBe("3");
    expect(origin.counts()["tools/call:echo"]).toBe(2);
    // The refused solution counted no solve: the raced ones and the agent's fresh one (decayed by the seconds the test took).
    expect((await statusOf()).recentSolves).toBeCloseTo(raced.length + 1, 1);
  });
});
