/**
 * `tollbooth-bridge` (packages/tollbooth-bridge/src/cli.ts) as an off-the-shelf stdio MCP
 * client sees it: the SDK `Client` over `StdioClientTransport` spawns the bridge, which relays
 * to a real gateway (`wrangler dev`) in front of a real server-everything. The budget forces
 * several 402s; the client never sees one. Also: session re-establishment after the origin
 * dropped the session, exit code 0 when stdin closes, exit code 2 on bad arguments.
 */
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema, ElicitRequestSchema, type JSONRPCMessage, type Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const CLI = fileURLToPath(new URL("../../packages/tollbooth-bridge/src/cli.ts", import.meta.url));
/** 2 free units, then tokens of 3 credits from 10-bit challenges. */
const POLICY = { bucket: { capacity: 2, refillPerSecond: 0.0001 }, challenge: { difficulty: 10, credits: 3 } };
const CHALLENGE_TEXT = /PowChallenge|Payment required|Tollbooth-|"code":\s*402/i;

let origin: Origin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({ originUrl: origin.url, policy: POLICY });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

/** An SDK client connected through a spawned bridge, with everything it received recorded. */
interface Bridged {
  client: Client;
  /** Every JSON-RPC message the client read from the bridge's stdout. */
  received: JSONRPCMessage[];
  /** Errors the client transport reported (a non-JSON stdout line would land here). */
  errors: Error[];
  stderr(): string;
  close(): Promise<void>;
}

async function connectThroughBridge(apiKey: string): Promise<Bridged> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, `${gateway.url}/mcp`, "--header", `x-api-key: ${apiKey}`, "--max-difficulty", "16"],
    stderr: "pipe",
  });
  let stderr = "";
  transport.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const received: JSONRPCMessage[] = [];
  const errors: Error[] = [];
  const client = new Client({ name: "bridge-e2e", version: "1.0.0" }, { capabilities: { sampling: {}, elicitation: {} } });
  client.onerror = (err) => errors.push(err);
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
    model: "bridge-e2e-model",
    role: "assistant",
    content: { type: "text", text: `sampled by the client: ${request.params.messages.length} message(s)` },
  }));
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "Ada Lovelace" } }));
  await client.connect(transport);
  // Record what arrives from here on (the client chains its handler in connect()).
  const onmessage = transport.onmessage;
  transport.onmessage = (m) => {
    received.push(m);
    onmessage?.(m);
  };
  return { client, received, errors, stderr: () => stderr, close: () => client.close() };
}

describe("tollbooth-bridge between an SDK stdio client and the gateway", () => {
  it("a whole session through forced 402s: tools, progress, sampling and elicitation, no challenge visible", async () => {
    origin.reset();
    const b = await connectThroughBridge("bridge-session");
    try {
      const tools = await b.client.listTools();
      const names = tools.tools.map((t) => t.name);
      expect(names).toEqual(
        expect.arrayContaining([
          "echo",
          "get-sum",
          "trigger-long-running-operation",
          "trigger-sampling-request",
          "trigger-elicitation-request",
        ]),
      );

      for (let i = 1; i <= 4; i++) {
        expect(firstText(await b.client.callTool({ name: "echo", arguments: { message: `hello-${i}` } }))).toBe(`Echo: hello-${i}`);
      }
      expect(firstText(await b.client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } }))).toBe("The sum of 2 and 3 is 5.");
      expect(firstText(await b.client.callTool({ name: "get-sum", arguments: { a: 40, b: 2 } }))).toBe("The sum of 40 and 2 is 42.");

      // Every progress notification reaches the client before its call's result, 20 runs in a
      // row: the bridge writes a result that follows a progress only after a ping to the client
      // came back (the SDK Client handles a notification one microtask after a response read
      // in the same chunk, so without it the last progress was dropped in about a third of runs).
      for (let run = 1; run <= 20; run++) {
        const progress: Progress[] = [];
        const before = b.received.length;
        const long = await b.client.callTool(
          { name: "trigger-long-running-operation", arguments: { duration: 0.08, steps: 4 } },
          undefined,
          { onprogress: (p) => progress.push(p) },
        );
        expect(firstText(long)).toContain("Long running operation completed");
        const relayed = b.received
          .slice(before)
          .filter((m) => "method" in m && m.method === "notifications/progress")
          .map((m) => ("params" in m ? m.params : undefined));
        expect({ run, relayed: relayed.map((p) => [p?.progress, p?.total]) }).toEqual({
          run,
          relayed: [
            [1, 4],
            [2, 4],
            [3, 4],
            [4, 4],
          ],
        });
        expect({ run, handled: progress.map((p) => [p.progress, p.total]) }).toEqual({
          run,
          handled: [
            [1, 4],
            [2, 4],
            [3, 4],
            [4, 4],
          ],
        });
      }

      const sampled = await b.client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } });
      expect(firstText(sampled)).toContain("sampled by the client: 1 message(s)");
      expect(firstText(sampled)).toContain("bridge-e2e-model");

      const elicited = await b.client.callTool({ name: "trigger-elicitation-request", arguments: {} });
      expect(JSON.stringify(elicited)).toContain("Ada Lovelace");
    } finally {
      await b.close();
    }

    // The gateway challenged (2 free units, 3 credits per solve, 28 calls; everything else
    // costs 0): calls 1–2 free, then 3–5, 6–8, …, 27–28 each on a token. Exactly nine solves
    // (below the 10 that would raise the difficulty): a bridge that did not reuse its token
    // would solve for each of calls 3–28.
    const solves = b.stderr().match(/solved challenge: 10 bits in \d+ ms/g) ?? [];
    expect(solves).toHaveLength(9);
    // Nothing of the challenges reached the client; stdout carried only JSON-RPC.
    // No progress notification came after its call's result ("unknown token").
    expect(b.errors).toEqual([]);
    expect(b.received.length).toBeGreaterThan(10);
    for (const m of b.received) {
      expect(m.jsonrpc).toBe("2.0");
      expect(JSON.stringify(m)).not.toMatch(CHALLENGE_TEXT);
      expect("error" in m).toBe(false);
    }
    // Every stderr line is a bridge log line.
    for (const line of b.stderr().trim().split("\n")) expect(line).toMatch(/^\[tollbooth-bridge\] /);

    const counts = origin.counts();
    expect(counts.initialize).toBe(1);
    expect(counts["tools/call:echo"]).toBe(4);
    expect(counts["tools/call:get-sum"]).toBe(2);
    expect(counts["tools/call:trigger-long-running-operation"]).toBe(20);
    expect(counts["tools/call:trigger-sampling-request"]).toBe(1);
    expect(counts["tools/call:trigger-elicitation-request"]).toBe(1);
    expect(counts["tools/call"]).toBe(28);
  });

  it("when the origin drops the session, the bridge starts a new one and the next call still succeeds", async () => {
    origin.reset();
    const b = await connectThroughBridge("bridge-reinit");
    let sessionId: unknown;
    try {
      expect(firstText(await b.client.callTool({ name: "echo", arguments: { message: "before" } }))).toBe("Echo: before");
      sessionId = origin.requests().find((r) => r.headers["mcp-session-id"])?.headers["mcp-session-id"];
      expect(typeof sessionId).toBe("string");

      // The origin forgets the session (as after a restart): it ends it, bypassing the bridge.
      const ended = await fetch(`${origin.url}/mcp`, { method: "DELETE", headers: { "mcp-session-id": String(sessionId) } });
      expect(ended.status).toBe(200);

      expect(firstText(await b.client.callTool({ name: "echo", arguments: { message: "after" } }))).toBe("Echo: after");
      expect(firstText(await b.client.callTool({ name: "get-sum", arguments: { a: 1, b: 1 } }))).toBe("The sum of 1 and 1 is 2.");
    } finally {
      await b.close();
    }
    expect(b.stderr()).toMatch(new RegExp(`session re-established: ${sessionId} → [0-9a-f-]{36}`));
    expect(b.errors).toEqual([]);
    for (const m of b.received) expect("error" in m).toBe(false);

    // The origin saw a second initialize (the client sent one); the refused call with the old
    // session id, then the same call once in the new session.
    const posts = origin.requests().filter((r) => r.method === "POST");
    const calls = (message: string) => posts.filter((r) => r.messages.some((m) => JSON.stringify(m).includes(`"message":"${message}"`)));
    expect(origin.counts().initialize).toBe(2);
    expect(calls("after").map((r) => r.headers["mcp-session-id"] === sessionId)).toEqual([true, false]);
    expect(calls("before")).toHaveLength(1);
    expect(origin.counts()["tools/call:get-sum"]).toBe(1);
  });

  it("exits with code 0 when stdin closes, ending its session with DELETE", async () => {
    origin.reset();
    const child = spawn(process.execPath, [CLI, `${gateway.url}/mcp`, "--header", "x-api-key: bridge-exit"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const initialize = {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    };
    child.stdin!.write(`${JSON.stringify(initialize)}\n`);
    const first = await lines.next();
    const answer = JSON.parse(String(first.value)) as { id: number; result: { protocolVersion: string } };
    expect(answer.id).toBe(1);
    expect(answer.result.protocolVersion).toBe("2025-06-18");

    child.stdin!.end();
    expect(await exited).toBe(0);
    const sessionId = origin.requests().find((r) => r.headers["mcp-session-id"])?.headers["mcp-session-id"];
    const deletes = origin.requests().filter((r) => r.method === "DELETE" && r.headers["mcp-session-id"] === sessionId);
    expect(deletes).toHaveLength(1);
  });

  it("bad arguments: exit code 2, what is wrong and where the options are, in two lines on stderr", () => {
    for (const args of [
      [],
      ["--max-difficulty", "lots", "http://127.0.0.1:1/mcp"],
      ["http://127.0.0.1:1/mcp", "--header", "no-colon"],
      ["ftp://example.com/mcp"],
    ]) {
      const run = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 20_000 });
      expect(run.status).toBe(2);
      expect(run.stdout).toBe("");
      const lines = run.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(/^tollbooth-bridge: /);
      expect(lines[1]).toBe("See tollbooth-bridge --help for the options.");
    }
    const bad = spawnSync(process.execPath, [CLI, "--max-difficulty", "lots", "http://127.0.0.1:1/mcp"], { encoding: "utf8" });
    expect(bad.stderr).toContain('--max-difficulty must be an integer from 1 to 256, got "lots"');
  });
});
