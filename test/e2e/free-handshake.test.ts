/**
 * The MCP handshake never trips the budget: with a free bucket of 1 unit and almost no
 * refill, the same caller connects the official SDK client again and again
 * (initialize, notifications/initialized, GET SSE, tools/list, ping, DELETE) without
 * a single 402, and no resolver is involved.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { connect, firstText, recordingFetch } from "../helpers/mcp.ts";
import { type Origin, startOrigin } from "../helpers/origin.ts";

let origin: Origin;
let gateway: Gateway;

beforeAll(async () => {
  origin = await startOrigin();
  gateway = await startGateway({
    originUrl: origin.url,
    // The safety ceiling is roomy: ~60 handshake requests in a second (a fast machine) must not
    // meet the default one (60, 10/s); only the free bucket is under test.
    policy: {
      bucket: { capacity: 1, refillPerSecond: 0.0001 },
      ceiling: { capacity: 1000, refillPerSecond: 100 },
      challenge: { difficulty: 8 },
    },
  });
});

afterAll(async () => {
  await gateway?.close();
  await origin?.close();
});

describe("handshake through the gateway (bucket capacity 1)", () => {
  it("five fresh SDK clients of one caller connect, list tools and ping without any 402", async () => {
    const rec = recordingFetch();
    for (let i = 0; i < 5; i++) {
      const c = await connect(`${gateway.url}/mcp`, { apiKey: "handshake-caller", fetch: rec.fetch });
      try {
        const { tools } = await c.client.listTools();
        expect(tools.map((t) => t.name)).toContain("echo");
        await expect(c.client.ping()).resolves.toEqual({});
        expect(c.client.getServerVersion()?.name).toBe("mcp-servers/everything");
        // The SDK opens its GET SSE stream in the background after initialization.
        await expect.poll(() => rec.log.filter((r) => r.method === "GET").length, { timeout: 5_000 }).toBe(i + 1);
      } finally {
        await c.close(true);
      }
    }

    const statuses = rec.log.map((r) => `${r.method} ${r.status}`);
    expect(
      statuses.filter((s) => s.endsWith(" 402")),
      statuses.join("\n"),
    ).toEqual([]);
    expect(
      rec.log.every((r) => r.status < 400),
      statuses.join("\n"),
    ).toBe(true);
    // Every handshake step really went through the gateway to the origin, five times.
    const counts = origin.counts();
    expect(counts.initialize).toBe(5);
    expect(counts["notifications/initialized"]).toBe(5);
    expect(counts["tools/list"]).toBe(5);
    expect(counts.ping).toBe(5);
    const methods = origin.requests().map((r) => r.method);
    expect(methods.filter((m) => m === "GET").length).toBe(5);
    expect(methods.filter((m) => m === "DELETE").length).toBe(5);
  });

  it("the handshakes charged nothing: the one free unit is still there, and then it runs out", async () => {
    const status = await fetch(`${gateway.url}/.well-known/tollbooth/status`, { headers: { "x-api-key": "handshake-caller" } });
    expect(status.status).toBe(200);
    const body = (await status.json()) as { bucket: { remaining: number; limit: number } };
    expect(body.bucket.limit).toBe(1);
    expect(body.bucket.remaining).toBe(1);

    // The budget is real: one paid call goes through, the next is 402 (no resolver).
    const c = await connect(`${gateway.url}/mcp`, { apiKey: "handshake-caller" });
    try {
      expect(firstText(await c.client.callTool({ name: "echo", arguments: { message: "one" } }))).toBe("Echo: one");
      await expect(c.client.callTool({ name: "echo", arguments: { message: "two" } })).rejects.toThrow(/402/);
      // A handshake after the budget is gone still works.
      const again = await connect(`${gateway.url}/mcp`, { apiKey: "handshake-caller" });
      await expect(again.client.ping()).resolves.toEqual({});
      await again.close(true);
    } finally {
      await c.close(true);
    }
  });
});
