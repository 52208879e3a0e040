/**
 * 429 mode (`overBudget: "429"`) for clients that cannot pay: a client written after mcptest's
 * Streamable HTTP transport — it retries 429 and 5xx a fixed number of times, waits a
 * whole-number `Retry-After` when there is one, and fails at once on any other non-2xx —
 * completes its calls through the gateway in 429 mode, and fails in the default 402 mode. The
 * origin (server-everything behind a counting proxy) runs each call exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

/** mcptest's client: a small fixed number of attempts; waits the integer Retry-After, else a short backoff step. */
const ATTEMPTS = 4;
const BACKOFF_MS = 200;

interface RetryLog {
  statuses: number[];
  waitsSeconds: number[];
}

class TransportError extends Error {
  readonly status: number;
  constructor(status: number, retryAfter: string | null) {
    super(`transport closed: last HTTP status ${status} (Retry-After: ${retryAfter})`);
    this.status = status;
  }
}

/**
 * POST one JSON-RPC message the way mcptest's transport does.
 * @returns the parsed JSON-RPC answer (JSON or the first SSE `data:` that answers the id)
 * @throws TransportError on a non-2xx it does not retry, or when the attempts are spent
 */
async function retryingPost(
  url: string,
  headers: Record<string, string>,
  message: Record<string, unknown>,
  log: RetryLog,
): Promise<{ res: Response; answer: any }> {
  let last: Response | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream", ...headers },
      body: JSON.stringify(message),
    });
    log.statuses.push(res.status);
    if (res.ok) {
      const text = await res.text();
      const type = res.headers.get("content-type") ?? "";
      if (!("id" in message)) return { res, answer: null };
      if (type.startsWith("text/event-stream")) {
        for (const line of text.split("\n")) {
          if (!line.startsWith("data:") || line.slice(5).trim() === "") continue;
          const data = JSON.parse(line.slice(5));
          if (data.id === message.id) return { res, answer: data };
        }
        throw new Error(`no answer for id ${String(message.id)} in the SSE stream`);
      }
      return { res, answer: JSON.parse(text) };
    }
    last = res;
    const retryAfter = res.headers.get("retry-after");
    await res.body?.cancel();
    const transient = res.status === 429 || res.status >= 500;
    if (!transient || attempt === ATTEMPTS) throw new TransportError(res.status, retryAfter);
    // Only the whole-seconds form is parsed (as mcptest does); anything else falls back to the backoff step.
    const seconds = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null;
    if (seconds !== null) log.waitsSeconds.push(seconds);
    await new Promise((r) => setTimeout(r, seconds !== null ? seconds * 1000 : BACKOFF_MS * 2 ** (attempt - 1)));
  }
  throw new TransportError(last?.status ?? 0, null);
}

/** mcptest's client connects: initialize, then notifications/initialized. @returns the headers of the session */
async function openSession(url: string, apiKey: string, log: RetryLog): Promise<Record<string, string>> {
  const headers: Record<string, string> = { "x-api-key": apiKey };
  const init = await retryingPost(
    url,
    headers,
    {
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "mcptest-like", version: "1" } },
    },
    log,
  );
  const session = init.res.headers.get("mcp-session-id");
  if (session) headers["mcp-session-id"] = session;
  headers["mcp-protocol-version"] = "2025-11-25";
  await retryingPost(url, headers, { jsonrpc: "2.0", method: "notifications/initialized" }, log);
  return headers;
}

/** A session of mcptest's client: connect, then `calls` echo calls. */
async function runSession(base: string, apiKey: string, calls: number, log: RetryLog): Promise<string[]> {
  const url = `${base}/mcp`;
  const headers = await openSession(url, apiKey, log);
  const texts: string[] = [];
  for (let i = 1; i <= calls; i++) {
    const { answer } = await retryingPost(
      url,
      headers,
      { jsonrpc: "2.0", id: i, method: "tools/call", params: { name: "echo", arguments: { message: `m${i}` } } },
      log,
    );
    expect(answer.error, JSON.stringify(answer)).toBeUndefined();
    texts.push(answer.result.content[0].text);
  }
  return texts;
}

// A bucket of 2 units refilling 1 unit per second: 5 calls need 3 waits of about 1 s.
const BUCKET = { capacity: 2, refillPerSecond: 1 };

let origin: Origin;
let mode429: Gateway;
let mode402: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  [mode429, mode402] = await Promise.all([
    startGateway({ originUrl: origin.url, policy: { bucket: BUCKET, overBudget: "429", challenge: { difficulty: 8 } } }),
    startGateway({ originUrl: origin.url, policy: { bucket: BUCKET, challenge: { difficulty: 8 } } }),
  ]);
});

afterAll(async () => {
  await Promise.all([mode429?.close(), mode402?.close()]);
  await origin?.close();
});

describe("overBudget: 429 with a client that only retries 429 and 5xx (as mcptest's)", () => {
  it("waits the integer Retry-After and completes every call; each call runs once at the origin", async () => {
    origin.reset();
    const log: RetryLog = { statuses: [], waitsSeconds: [] };
    const texts = await runSession(mode429.url, "mcptest-a", 5, log);
    expect(texts).toEqual([1, 2, 3, 4, 5].map((i) => `Echo: m${i}`));
    // Over budget it was told to wait, in whole seconds, and did: never a 402.
    expect(log.statuses).not.toContain(402);
    expect(log.statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(log.waitsSeconds.length).toBe(log.statuses.filter((s) => s === 429).length);
    expect(log.waitsSeconds.every((s) => Number.isInteger(s) && s >= 1)).toBe(true);
    expect(origin.counts()["tools/call:echo"]).toBe(5);
  });

  it("the 429 carries the challenge in error.data, and Retry-After is when the bucket admits the call again", async () => {
    const session = await openSession(`${mode429.url}/mcp`, "mcptest-b", { statuses: [], waitsSeconds: [] });
    const headers = { "content-type": "application/json", accept: "application/json, text/event-stream", ...session };
    const call = (id: number) =>
      fetch(`${mode429.url}/mcp`, {
        method: "POST",
        headers,
        body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name: "echo", arguments: { message: "x" } } }),
      });
    let res = await call(1);
    while (res.status === 200) {
      await res.body?.cancel();
      res = await call(2);
    }
    expect(res.status).toBe(429);
    const body = (await res.json()) as any;
    expect(body.error.code).toBe(429);
    expect(body.error.data.challenges[0].type).toBe("pow");
    expect(body.error.data.retryAfter).toBe(Number(res.headers.get("retry-after")));
    // 1 unit per second: the same call is admitted after the whole seconds it was told.
    await new Promise((r) => setTimeout(r, Number(res.headers.get("retry-after")) * 1000));
    const after = await call(3);
    expect(after.status).toBe(200);
    await after.body?.cancel();
  });

  it("in the default 402 mode the same client fails on the first 402 (it retries only 429 and 5xx)", async () => {
    const log: RetryLog = { statuses: [], waitsSeconds: [] };
    const failed = await runSession(mode402.url, "mcptest-c", 5, log).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(TransportError);
    expect((failed as TransportError).status).toBe(402);
  });
});
