/**
 * Streamable HTTP through the gateway: SSE responses streamed event by event (progress
 * while a tool runs), server-to-client requests (sampling, elicitation, roots) answered
 * by the client, the GET SSE stream, DELETE, and the Last-Event-ID / MCP-Protocol-Version
 * headers reaching the origin unchanged.
 */
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { connect, firstText, readSse } from "../helpers/mcp.ts";
import { type Origin, type SeenRequest, startOrigin } from "../helpers/origin.ts";

let origin: Origin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({ originUrl: origin.url, policy: { bucket: { capacity: 100, refillPerSecond: 10 } } });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

const header = (r: SeenRequest, name: string) => {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(", ") : v;
};

describe("streaming through the gateway", () => {
  it("progress notifications of a long-running tool arrive one by one while it runs, in order, before the result", async () => {
    const c = await connect(`${gateway.url}/mcp`, { apiKey: "stream-progress" });
    try {
      // The POST's SSE answer read as it arrives: which read() of the body each event came in.
      const res = await fetch(`${gateway.url}/mcp`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": c.transport.sessionId!,
          "mcp-protocol-version": c.transport.protocolVersion!,
          "x-api-key": "stream-progress",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: "long",
          method: "tools/call",
          params: { name: "trigger-long-running-operation", arguments: { duration: 3, steps: 3 }, _meta: { progressToken: "p" } },
        }),
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const received: Array<{
        read: number;
        message: { id?: string; method?: string; params?: { progress?: number; total?: number; progressToken?: string }; result?: unknown };
      }> = [];
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (let read = 0; ; read++) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replaceAll("\r\n", "\n");
        for (let cut = buffer.indexOf("\n\n"); cut !== -1; cut = buffer.indexOf("\n\n")) {
          const data = buffer
            .slice(0, cut)
            .split("\n")
            .filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).trim())
            .join("\n");
          buffer = buffer.slice(cut + 2);
          if (data !== "") received.push({ read, message: JSON.parse(data) });
        }
      }

      // In order, each progress before the result, the result last.
      expect(received.map((e) => e.message.method ?? e.message.id)).toEqual([
        "notifications/progress",
        "notifications/progress",
        "notifications/progress",
        "long",
      ]);
      expect(received.slice(0, 3).map((e) => e.message.params)).toEqual(
        [1, 2, 3].map((progress) => ({ progress, total: 3, progressToken: "p" })),
      );
      expect(JSON.stringify(received[3]!.message.result)).toContain("Long running operation completed. Duration: 3 seconds, Steps: 3.");
      // Streamed, not buffered: the first progress (sent 1 s into the 3 s operation) came in
      // an earlier read of the body than the result, which the origin sent only at the end.
      // (A buffering gateway hands the whole answer over at once. The sampling test below
      // shows the same causally: a server request on the POST stream must reach the client
      // before the origin can finish.)
      expect(received[0]!.read).toBeLessThan(received[3]!.read);
    } finally {
      await c.close(true);
    }
  });

  it("sampling and elicitation requests from the server are answered by the client through the gateway", async () => {
    origin.reset();
    const sampled: string[] = [];
    const elicited: string[] = [];
    const c = await connect(`${gateway.url}/mcp`, {
      apiKey: "stream-sampling",
      capabilities: { sampling: {}, elicitation: {} },
    });
    c.client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      const content = req.params.messages[0]!.content;
      const first = Array.isArray(content) ? content[0] : content;
      sampled.push(first?.type === "text" ? first.text : String(first?.type));
      return { model: "e2e-model", role: "assistant", content: { type: "text", text: "sampled through tollbooth" } };
    });
    c.client.setRequestHandler(ElicitRequestSchema, async (req) => {
      elicited.push(req.params.message);
      return { action: "accept", content: { name: "Ada Lovelace", check: true } };
    });
    try {
      // The origin asks for the sample on this call's SSE stream and answers only once the
      // client has answered: a gateway that held the stream back until the end would hang it.
      const sampling = await c.client.callTool(
        { name: "trigger-sampling-request", arguments: { prompt: "hello gateway", maxTokens: 7 } },
        undefined,
        { timeout: 20_000 },
      );
      expect(sampled).toEqual(["Resource trigger-sampling-request context: hello gateway"]);
      expect(firstText(sampling)).toContain("LLM sampling result");
      expect(firstText(sampling)).toContain("sampled through tollbooth");
      expect(firstText(sampling)).toContain("e2e-model");

      const elicitation = await c.client.callTool({ name: "trigger-elicitation-request", arguments: {} });
      expect(elicited).toHaveLength(1);
      const texts = (elicitation.content as Array<{ text: string }>).map((b) => b.text).join("\n");
      expect(texts).toContain("User provided the requested information");
      expect(texts).toContain("- Name: Ada Lovelace");
      expect(texts).toContain("- Agreed to terms: true");
    } finally {
      await c.close(true);
    }
    // The client's answers (JSON-RPC responses, no method) were POSTed through the gateway.
    const answers = origin
      .requests()
      .filter((r) => r.method === "POST")
      .flatMap((r) => r.messages as Array<{ method?: string; result?: { model?: string; action?: string } }>)
      .filter((m) => m.method === undefined && m.result);
    expect(answers.map((m) => m.result!.model ?? m.result!.action)).toEqual(["e2e-model", "accept"]);
  });

  it("the GET SSE stream carries server-initiated requests; DELETE ends the session at the origin", async () => {
    origin.reset();
    let rootsAsked = 0;
    const logs: string[] = [];
    const c = await connect(`${gateway.url}/mcp`, { apiKey: "stream-get", capabilities: { roots: {} } });
    const sessionId = c.transport.sessionId!;
    expect(sessionId).toMatch(/^[0-9a-f-]{36}$/);
    const rootsReceived = new Promise<void>((resolve) => {
      c.client.setRequestHandler(ListRootsRequestSchema, async () => {
        rootsAsked++;
        resolve();
        return { roots: [{ uri: "file:///e2e/workspace", name: "workspace" }] };
      });
    });
    c.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void logs.push(String(n.params.data)));
    try {
      // server-everything asks for roots ~350 ms after initialization, on the GET stream
      // (it is not related to any POST), and logs what it got on the same stream.
      await rootsReceived;
      await expect.poll(() => logs, { timeout: 5_000 }).toContain("Roots updated: 1 root(s) received from client");
      expect(rootsAsked).toBe(1);
      const roots = await c.client.callTool({ name: "get-roots-list", arguments: {} });
      expect(firstText(roots)).toContain("file:///e2e/workspace");

      await c.transport.terminateSession();
      expect(c.transport.sessionId).toBeUndefined();
    } finally {
      await c.close();
    }

    const seen = origin.requests();
    const get = seen.find((r) => r.method === "GET" && r.path === "/mcp");
    expect(get, "the SDK's GET SSE request reached the origin").toBeDefined();
    expect(header(get!, "mcp-session-id")).toBe(sessionId);
    expect(header(get!, "accept")).toContain("text/event-stream");
    const del = seen.filter((r) => r.method === "DELETE");
    expect(del).toHaveLength(1);
    expect(del[0]!.path).toBe("/mcp");
    expect(header(del[0]!, "mcp-session-id")).toBe(sessionId);
    // The session is gone at the origin: a request with it is refused there (and passed back).
    const after = await fetch(`${gateway.url}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": sessionId,
        "x-api-key": "stream-get",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    });
    expect(after.status).toBe(400);
    expect(await after.text()).toContain("No valid session ID");
  });

  it("Last-Event-ID and MCP-Protocol-Version reach the origin unchanged: a stream resumes after its last event", async () => {
    origin.reset();
    const c = await connect(`${gateway.url}/mcp`, { apiKey: "stream-resume" });
    const sessionId = c.transport.sessionId!;
    const protocolVersion = c.transport.protocolVersion!;
    expect(protocolVersion).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    try {
      const eventIds: string[] = [];
      await c.client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 0.4, steps: 2 } }, undefined, {
        onresumptiontoken: (id) => void eventIds.push(id),
        onprogress: () => {},
      });
      // The POST stream's event ids: a priming event, two progress notifications, the result.
      expect(eventIds.length).toBeGreaterThanOrEqual(3);

      // Resume from the priming event: the origin replays what came after it.
      const lastEventId = eventIds[0]!;
      const res = await fetch(`${gateway.url}/mcp`, {
        headers: {
          accept: "text/event-stream",
          "mcp-session-id": sessionId,
          "mcp-protocol-version": protocolVersion,
          "last-event-id": lastEventId,
          "x-api-key": "stream-resume",
        },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      expect(res.headers.get("x-accel-buffering")).toBe("no");
      const replayed = await readSse(res, (e) => e.data.includes('"result"'));
      const messages = replayed
        .filter((e) => e.data.trim() !== "")
        .map((e) => JSON.parse(e.data) as { method?: string; params?: { progress?: number }; result?: unknown });
      expect(messages.filter((m) => m.method === "notifications/progress").map((m) => m.params!.progress)).toEqual([1, 2]);
      expect(JSON.stringify(messages.at(-1)!.result)).toContain("Long running operation completed. Duration: 0.4 seconds, Steps: 2.");
      expect(replayed.map((e) => e.id)).toEqual(eventIds.slice(1, 1 + replayed.length));

      const resumed = origin.requests().find((r) => r.method === "GET" && r.headers["last-event-id"] !== undefined);
      expect(resumed).toBeDefined();
      expect(header(resumed!, "last-event-id")).toBe(lastEventId);
      expect(header(resumed!, "mcp-protocol-version")).toBe(protocolVersion);
      // And every SDK request after initialize carried the negotiated version unchanged.
      const posts = origin.requests().filter((r) => r.method === "POST" && (r.messages[0] as { method?: string })?.method !== "initialize");
      expect(posts.length).toBeGreaterThan(0);
      expect(posts.every((r) => header(r, "mcp-protocol-version") === protocolVersion)).toBe(true);
    } finally {
      await c.close(true);
    }
  });
});
