/**
 * `tollbooth-bridge` (packages/tollbooth-bridge/src/cli.ts) as a process, as the README
 * promises it (bridge.test.ts has the whole session through an SDK client):
 *  - a failed connection is retried with backoff (5 attempts, 0.5–8 s), then the request
 *    gets a JSON-RPC error saying why (pointed at a closed port);
 *  - SIGINT / SIGTERM: exit code 0, the session ended with DELETE;
 *  - `${VAR}` in `--header` is read from the environment; an unset one is a usage error;
 *  - plain http to a host other than localhost is refused unless `--allow-http`;
 *  - `notifications/cancelled` from the client is relayed to the server;
 *  - session loss signalled by 404 (the spec's case) on a request with `Mcp-Session-Id`:
 *    a new session, the client's `initialize` re-sent, the request retried (against a small
 *    origin written here that answers an unknown session with 404).
 * The gateway is a real `wrangler dev` in front of server-everything; callers are told
 * apart by `x-api-key`.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import http from "node:http";
import { type AddressInfo, connect } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { firstText } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

const CLI = fileURLToPath(new URL("../../packages/tollbooth-bridge/src/cli.ts", import.meta.url));
const INITIALIZE = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

let origin: Origin;
let gateway: Gateway;

/** A bridge process driven line by line. */
interface RawBridge {
  child: ChildProcess;
  /** Resolves with the next JSON-RPC message the bridge writes to stdout. */
  next(): Promise<JSONRPCMessage>;
  send(message: unknown): void;
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

function spawnBridge(args: string[], env: NodeJS.ProcessEnv = process.env): RawBridge {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ["pipe", "pipe", "pipe"], env });
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    next: async () => {
      const line = await lines.next();
      if (line.done) throw new Error(`the bridge closed stdout; stderr:\n${stderr}`);
      return JSON.parse(String(line.value)) as JSONRPCMessage;
    },
    send: (message) => child.stdin!.write(`${JSON.stringify(message)}\n`),
    stderr: () => stderr,
    exited,
  };
}

/** Resolves once `text()` matches `pattern`; rejects after `ms` quoting the text. */
async function waitFor(text: () => string, pattern: RegExp, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pattern.test(text())) {
    if (Date.now() > deadline) throw new Error(`${pattern} not seen within ${ms} ms in:\n${text()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The closed-port run spends ~15.5 s in backoff; it starts with the file and is checked last.
let closedPort: Promise<{ answer: JSONRPCMessage; code: number | null; stderr: string; url: string }>;

/**
 * A closed port: one below Linux's ephemeral range (32768–60999), so no server that asks for
 * port 0 (origin, gateway) gets it later, not on fetch's bad-port list, and checked to refuse
 * connections.
 */
async function refusingPort(): Promise<number> {
  const refuses = (port: number) =>
    new Promise<boolean>((resolve) => {
      const socket = connect({ host: "127.0.0.1", port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(false);
      });
      socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
    });
  for (let tries = 0; tries < 50; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (await refuses(port)) return port;
  }
  throw new Error("no closed port found in 20000–29999");
}

beforeAll(async () => {
  const port = await refusingPort();
  closedPort = (async () => {
    const url = `http://127.0.0.1:${port}/mcp`;
    const b = spawnBridge([url, "--header", "x-api-key: bridge-closed-port"]);
    b.send(INITIALIZE);
    const answer = await b.next();
    b.child.stdin!.end();
    return { answer, code: await b.exited, stderr: b.stderr(), url };
  })();
  closedPort.catch(() => {}); // awaited in its test
  origin = await startOrigin();
  gateway = await startGateway({ originUrl: origin.url });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

describe("tollbooth-bridge: leaving", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal}: exit code 0, the session ended with DELETE`, async () => {
      origin.reset();
      const b = spawnBridge([`${gateway.url}/mcp`, "--header", `x-api-key: bridge-${signal}`]);
      b.send(INITIALIZE);
      const answer = (await b.next()) as { id: number; result?: unknown };
      expect(answer.id).toBe(1);
      // The origin's own initialize result, relayed unchanged.
      expect(answer.result).toMatchObject({
        protocolVersion: INITIALIZE.params.protocolVersion,
        serverInfo: { name: "mcp-servers/everything" },
      });
      // The session id the origin handed out, as the next request carries it.
      b.send({ jsonrpc: "2.0", method: "notifications/initialized" });
      await waitFor(() => JSON.stringify(origin.counts()), /"notifications\/initialized":1/);
      const session = origin.requests().find((r) => typeof r.headers["mcp-session-id"] === "string")!.headers["mcp-session-id"];
      expect(typeof session).toBe("string");

      b.child.kill(signal);
      expect(await b.exited).toBe(0);
      expect(b.stderr()).toContain(`${signal}: closing`);
      const deletes = origin.requests().filter((r) => r.method === "DELETE");
      expect(deletes.map((r) => r.headers["mcp-session-id"])).toEqual([session]);
    });
  }
});

describe("tollbooth-bridge: the command line", () => {
  it("${VAR} in --header is taken from the environment and sent expanded", async () => {
    origin.reset();
    const env = { ...process.env, TB_TEST_KEY: "bridge-env-key", TB_TEST_TRACE: "t-42" };
    const b = spawnBridge(
      [`${gateway.url}/mcp`, "--header", "x-api-key: ${TB_TEST_KEY}", "--header", "x-bridge-trace: pre-${TB_TEST_TRACE}-post"],
      env,
    );
    b.send(INITIALIZE);
    expect(((await b.next()) as { id: number }).id).toBe(1);
    b.child.stdin!.end();
    expect(await b.exited).toBe(0);
    const first = origin.requests()[0]!;
    expect(first.headers["x-bridge-trace"]).toBe("pre-t-42-post");
    expect(first.headers["x-api-key"]).toBe("bridge-env-key");
    expect(JSON.stringify(origin.requests().map((r) => r.headers))).not.toContain("${");
  });

  it("an unset ${VAR}: exit code 2, naming the variable", () => {
    const env = { ...process.env };
    delete env.TB_TEST_UNSET;
    const run = spawnSync(process.execPath, [CLI, `${gateway.url}/mcp`, "--header", "Authorization: Bearer ${TB_TEST_UNSET}"], {
      encoding: "utf8",
      env,
      timeout: 20_000,
    });
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain("${TB_TEST_UNSET}, which is not set in the environment");
  });

  it("plain http to a host other than localhost: refused (exit code 2) unless --allow-http", async () => {
    // tollbooth.invalid never resolves; nothing is sent before the client's first message.
    const refused = spawnSync(process.execPath, [CLI, "http://tollbooth.invalid/mcp"], { encoding: "utf8", timeout: 20_000, input: "" });
    expect(refused.status).toBe(2);
    expect(refused.stdout).toBe("");
    expect(refused.stderr).toContain("refusing plain http to tollbooth.invalid");

    const allowed = spawnBridge(["http://tollbooth.invalid/mcp", "--allow-http"]);
    await waitFor(allowed.stderr, /relaying stdio to http:\/\/tollbooth\.invalid\/mcp/);
    allowed.child.stdin!.end();
    expect(await allowed.exited).toBe(0);
    expect(allowed.stderr()).not.toContain("refusing");
  });
});

describe("tollbooth-bridge: relaying", () => {
  it("a request the client cancels: notifications/cancelled reaches the server with the request's id", async () => {
    origin.reset();
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, `${gateway.url}/mcp`, "--header", "x-api-key: bridge-cancel"],
      stderr: "pipe",
    });
    const client = new Client({ name: "bridge-cancel", version: "1.0.0" });
    await client.connect(transport);
    try {
      const controller = new AbortController();
      let progressed = 0;
      const call = client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 10, steps: 10 } }, undefined, {
        signal: controller.signal,
        onprogress: () => {
          if (++progressed === 1) controller.abort("the user changed their mind");
        },
      });
      await expect(call).rejects.toThrow();
      expect(progressed).toBeGreaterThanOrEqual(1);
      await waitFor(() => JSON.stringify(origin.counts()), /"notifications\/cancelled":1/);

      const messages = origin.requests().flatMap((r) => r.messages) as Array<{
        id?: unknown;
        method?: string;
        params?: { requestId?: unknown; name?: string };
      }>;
      const longCall = messages.find((m) => m.method === "tools/call" && m.params?.name === "trigger-long-running-operation")!;
      const cancelled = messages.find((m) => m.method === "notifications/cancelled")!;
      // A real id (the SDK numbers its requests), so the equality below cannot hold by both being absent.
      expect(longCall.id).toEqual(expect.any(Number));
      expect(cancelled.params?.requestId).toBe(longCall.id);
      // The session goes on.
      expect(firstText(await client.callTool({ name: "echo", arguments: { message: "after-cancel" } }))).toBe("Echo: after-cancel");
    } finally {
      await client.close();
    }
  });
});

/** A Streamable HTTP MCP server that answers a request naming an unknown session with 404 (the spec's case). */
async function startForgetfulOrigin() {
  const live = new Set<string>();
  let sessions = 0;
  const log: Array<{
    method: string;
    session: string | undefined;
    rpc: string | undefined;
    id: unknown;
    status: number;
    params?: unknown;
  }> = [];
  const server = http.createServer(async (req, res) => {
    const session = req.headers["mcp-session-id"] as string | undefined;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const msg = chunks.length
      ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id?: unknown; method?: string; params?: Record<string, any> })
      : undefined;
    const answer = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      log.push({ method: req.method!, session, rpc: msg?.method, id: msg?.id, status, params: msg?.params });
      res.writeHead(status, body === undefined ? headers : { "content-type": "application/json", ...headers });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (req.method === "GET") return answer(405, undefined, { allow: "POST, DELETE" });
    if (req.method === "DELETE") {
      live.delete(session ?? "");
      return answer(200);
    }
    if (msg?.method === "initialize") {
      const id = `s${++sessions}`;
      live.add(id);
      return answer(
        200,
        {
          jsonrpc: "2.0",
          id: msg.id,
          result: {
            protocolVersion: msg.params?.protocolVersion,
            capabilities: { tools: {} },
            serverInfo: { name: "forgetful", version: "1" },
          },
        },
        { "mcp-session-id": id },
      );
    }
    if (!session || !live.has(session)) {
      return answer(404, { jsonrpc: "2.0", id: msg?.id ?? null, error: { code: -32001, message: "Session not found" } });
    }
    if (msg?.id === undefined) return answer(202);
    if (msg.method === "tools/call") {
      return answer(200, {
        jsonrpc: "2.0",
        id: msg.id,
        result: { content: [{ type: "text", text: `${msg.params?.arguments?.message} in ${session}` }] },
      });
    }
    return answer(200, { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "Method not found" } });
  });
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    log,
    forget: (id: string) => live.delete(id),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("tollbooth-bridge: session loss signalled by 404", () => {
  it("a new session, the client's initialize re-sent, the request retried in it; the client sees no error", async () => {
    const forgetful = await startForgetfulOrigin();
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, forgetful.url], stderr: "pipe" });
    let stderr = "";
    transport.stderr!.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const client = new Client({ name: "bridge-404", version: "1.0.0" });
    const errors: Error[] = [];
    client.onerror = (e) => errors.push(e);
    try {
      await client.connect(transport);
      expect(firstText(await client.callTool({ name: "echo", arguments: { message: "before" } }))).toBe("before in s1");
      forgetful.forget("s1"); // as after a restart of the server
      expect(firstText(await client.callTool({ name: "echo", arguments: { message: "after" } }))).toBe("after in s2");
      expect(firstText(await client.callTool({ name: "echo", arguments: { message: "later" } }))).toBe("later in s2");
    } finally {
      await client.close();
      await forgetful.close();
    }
    expect(errors).toEqual([]);
    expect(stderr).toMatch(/session re-established: s1 → s2/);
    const posts = forgetful.log.filter((e) => e.method === "POST").map((e) => [e.rpc, e.session ?? null, e.status]);
    expect(posts).toEqual([
      ["initialize", null, 200],
      ["notifications/initialized", "s1", 202],
      ["tools/call", "s1", 200],
      ["tools/call", "s1", 404],
      ["initialize", null, 200],
      ["notifications/initialized", "s2", 202],
      ["tools/call", "s2", 200],
      ["tools/call", "s2", 200],
    ]);
    // The re-sent initialize is the client's own (same parameters), under a bridge-owned id.
    const inits = forgetful.log.filter((e) => e.rpc === "initialize");
    expect(inits[1]!.params).toEqual(inits[0]!.params);
    expect(inits[1]!.id).not.toEqual(inits[0]!.id);
  });
});

describe("tollbooth-bridge: an unreachable server", () => {
  it("retries a failed connection with backoff 0.5, 1, 2, 4, 8 s, then answers the request with a JSON-RPC error", async () => {
    const { answer, code, stderr, url } = await closedPort;
    expect(answer).toMatchObject({ jsonrpc: "2.0", id: 1, error: { code: -32000 } });
    const message = (answer as { error: { message: string } }).error.message;
    expect(message).toContain(`tollbooth-bridge: ${url}`);
    expect(message).toContain("ECONNREFUSED");
    const retries = [...stderr.matchAll(/retry (\d)\/5 in (\d+) ms/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(retries).toEqual([
      [1, 500],
      [2, 1000],
      [3, 2000],
      [4, 4000],
      [5, 8000],
    ]);
    expect(stderr).toMatch(/error: request 1 failed: .*ECONNREFUSED/);
    expect(code).toBe(0);
  });
});
