/**
 * x402 inside MCP (docs/wire-contract.md §12 "Inside MCP"; x402 transports-v2 mcp.md): the
 * payment taken out of a request's `params._meta` (or stripped from every message, whatever
 * paid: `withoutMeta`), and the receipt added to `result._meta`
 * of the origin's response to that request — JSON bodies and SSE streams, whatever their
 * chunking and line ends. Expected values come from an independent SSE reader (WHATWG HTML
 * §9.2.6) written here.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addResultMeta, takeMetaFromRequest, withoutMeta } from "../../../workers/proxy/mcp-meta.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KEY = "x402/payment";
const RECEIPT = { "x402/payment-response": { success: true, transaction: "0xabc", network: "eip155:8453" } };

// ---------------------------------------------------------------------------------------------
// Helpers

/** A stream of `chunks`, each enqueued on its own. */
function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else controller.close();
    },
  });
}

/** `bytes` cut at `cuts` (byte offsets; out-of-range and repeated ones ignored). */
function cut(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.slice(from, p));
    from = p;
  }
  return out.filter((c) => c.length > 0);
}

/** Every byte its own chunk. */
const bytewise = (bytes: Uint8Array) => Array.from(bytes, (b) => Uint8Array.of(b));

function sse(chunks: Uint8Array[] | string, headers: Record<string, string> = {}): Response {
  const parts = typeof chunks === "string" ? [enc.encode(chunks)] : chunks;
  return new Response(streamOf(parts), { status: 200, headers: { "content-type": "text/event-stream", ...headers } });
}

/** The body of `addResultMeta(sse(chunks), id, RECEIPT)`, as text. */
async function throughSse(chunks: Uint8Array[] | string, id: string | number = 7): Promise<string> {
  return addResultMeta(sse(chunks), id, RECEIPT).text();
}

interface SseEvent {
  id: string;
  event: string;
  data: string;
}

/** An independent SSE reader (WHATWG HTML §9.2.6): the events a client dispatches. */
function readSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  let lastId = "";
  let type = "";
  let data: string[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r\n|\r|\n/);
  lines.pop(); // the last piece is not a complete line
  for (const line of lines) {
    if (line === "") {
      if (data.length > 0) events.push({ id: lastId, event: type || "message", data: data.join("\n") });
      type = "";
      data = [];
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") type = value;
    else if (field === "id" && !value.includes("\0")) lastId = value;
  }
  return events;
}

const notification = { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: 7, progress: 1 } };
const serverRequest = { jsonrpc: "2.0", id: 7, method: "sampling/createMessage", params: { messages: [] } };
const result = (id: string | number, extra: Record<string, unknown> = {}) => ({
  jsonrpc: "2.0",
  id,
  result: { content: [{ type: "text", text: "ok\nline two" }], ...extra },
});
const withReceipt = (r: ReturnType<typeof result>) => ({
  ...r,
  result: { ...r.result, _meta: { ...(r.result as { _meta?: object })._meta, ...RECEIPT } },
});

// ---------------------------------------------------------------------------------------------
// takeMetaFromRequest

describe("takeMetaFromRequest", () => {
  const payment = { x402Version: 2, accepted: { scheme: "exact", network: "eip155:8453" }, payload: { signature: "0x12" } };

  it("takes the value out and keeps every other member's meaning", () => {
    const request = {
      jsonrpc: "2.0",
      id: "req-1",
      method: "tools/call",
      params: {
        name: "echo",
        arguments: { message: "hé \u2028 ✓", n: 1.5, list: [1, null, true] },
        _meta: { progressToken: 3, [KEY]: payment },
      },
    };
    // Spaced and ordered as a client might send it.
    const raw = enc.encode(JSON.stringify(request, null, 2));
    const taken = takeMetaFromRequest(raw, KEY);
    expect(taken).not.toBeNull();
    expect(taken!.value).toEqual(payment);
    const expected = structuredClone(request) as { params: { _meta: Record<string, unknown> } };
    delete expected.params._meta[KEY];
    expect(JSON.parse(dec.decode(taken!.body))).toEqual(expected);
  });

  it("drops `_meta` when the payment was all it held", () => {
    const request = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", _meta: { [KEY]: "base64payload" } } };
    const taken = takeMetaFromRequest(enc.encode(JSON.stringify(request)), KEY);
    expect(taken!.value).toBe("base64payload");
    expect(JSON.parse(dec.decode(taken!.body))).toEqual({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo" } });
  });

  it("takes a null value (present, so taken)", () => {
    const taken = takeMetaFromRequest(
      enc.encode(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { _meta: { [KEY]: null, a: 1 } } })),
      KEY,
    );
    expect(taken).not.toBeNull();
    expect(taken!.value).toBeNull();
    expect(JSON.parse(dec.decode(taken!.body)).params).toEqual({ _meta: { a: 1 } });
  });

  it("returns null when the key is absent, and for batches and bad input", () => {
    const absent = [
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo" } },
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", _meta: { other: 1 } } },
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", _meta: [payment] } },
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", _meta: null } },
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", arguments: { _meta: { [KEY]: payment } } } },
      { jsonrpc: "2.0", id: 1, method: "tools/call", _meta: { [KEY]: payment } },
      { jsonrpc: "2.0", id: 1, method: "ping" },
      [{ jsonrpc: "2.0", id: 1, method: "tools/call", params: { _meta: { [KEY]: payment } } }],
      "string",
      null,
    ];
    for (const body of absent) expect(takeMetaFromRequest(enc.encode(JSON.stringify(body)), KEY), JSON.stringify(body)).toBeNull();
    for (const raw of [enc.encode("{not json"), Uint8Array.of(0x7b, 0xff, 0x7d), new Uint8Array(0)])
      expect(takeMetaFromRequest(raw, KEY)).toBeNull();
    // An inherited name is not a member.
    expect(
      takeMetaFromRequest(enc.encode(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { _meta: {} } })), "toString"),
    ).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// withoutMeta

describe("withoutMeta", () => {
  const payment = { x402Version: 2, payload: { signature: "0x12" } };

  it("strips the member from a single message and from every message of a batch, `_meta` dropped where emptied", () => {
    const single = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "echo", _meta: { [KEY]: payment, progressToken: 2 } } };
    expect(JSON.parse(dec.decode(withoutMeta(enc.encode(JSON.stringify(single)), KEY)!))).toEqual({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "echo", _meta: { progressToken: 2 } },
    });
    const batch = [
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "a", _meta: { [KEY]: payment } } },
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "b", _meta: { [KEY]: "base64", other: true } } },
    ];
    expect(JSON.parse(dec.decode(withoutMeta(enc.encode(JSON.stringify(batch)), KEY)!))).toEqual([
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "a" } },
      { jsonrpc: "2.0", id: 2, method: "tools/list" },
      { jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "b", _meta: { other: true } } },
    ]);
  });

  it("returns null when no message holds the member (the body goes on byte for byte), and for bad input", () => {
    for (const body of [
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { _meta: { other: 1 } } },
      [{ jsonrpc: "2.0", id: 1, method: "ping" }],
      "x",
      null,
    ]) {
      expect(withoutMeta(enc.encode(JSON.stringify(body)), KEY), JSON.stringify(body)).toBeNull();
    }
    for (const raw of [enc.encode("{not json"), Uint8Array.of(0x7b, 0xff, 0x7d), new Uint8Array(0)])
      expect(withoutMeta(raw, KEY)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// addResultMeta, JSON

describe("addResultMeta: application/json", () => {
  const json = (body: unknown, headers: Record<string, string> = {}) =>
    new Response(typeof body === "string" ? body : JSON.stringify(body), {
      status: 200,
      headers: { "content-type": "application/json; charset=utf-8", "content-length": "999", "mcp-session-id": "s1", ...headers },
    });

  it("adds the receipt to the result, keeps status and other headers, drops Content-Length", async () => {
    const res = addResultMeta(json(result(7, { _meta: { "origin/own": 1 } })), 7, RECEIPT);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-length")).toBeNull();
    expect(res.headers.get("mcp-session-id")).toBe("s1");
    expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await res.json()).toEqual(withReceipt(result(7, { _meta: { "origin/own": 1 } })));
  });

  it("the gateway's members win over the origin's", async () => {
    const forged = result(7, { _meta: { "x402/payment-response": { success: true, transaction: "forged" } } });
    const body = (await addResultMeta(json(forged), 7, RECEIPT).json()) as { result: { _meta: unknown } };
    expect(body.result._meta).toEqual(RECEIPT);
  });

  it("adds to the matching member of a batch only", async () => {
    const batch = [result(1), result(7), result("7")];
    expect(await addResultMeta(json(batch), 7, RECEIPT).json()).toEqual([result(1), withReceipt(result(7)), result("7")]);
  });

  it("leaves errors, other ids, string/number id mismatches and non-JSON bodies byte for byte", async () => {
    const bodies = [
      JSON.stringify({ jsonrpc: "2.0", id: 7, error: { code: -32602, message: "bad", data: { x: 1 } } }, null, 1),
      JSON.stringify(result(8), null, 1),
      JSON.stringify(result("7"), null, 1),
      JSON.stringify(serverRequest, null, 1),
      JSON.stringify({ jsonrpc: "2.0", id: 7, result: "not an object" }),
      "{not json",
    ];
    for (const body of bodies) expect(await addResultMeta(json(body), 7, RECEIPT).text()).toBe(body);
  });

  it("leaves other content types and bodiless responses alone", async () => {
    const text = new Response(JSON.stringify(result(7)), { headers: { "content-type": "text/plain", "content-length": "5" } });
    expect(addResultMeta(text, 7, RECEIPT)).toBe(text);
    const empty = new Response(null, { status: 202, headers: { "content-type": "application/json" } });
    expect(addResultMeta(empty, 7, RECEIPT)).toBe(empty);
  });
});

// ---------------------------------------------------------------------------------------------
// addResultMeta, SSE

describe("addResultMeta: text/event-stream", () => {
  const stream =
    `: keepalive\n\n` +
    `id: ev-1\nevent: message\ndata: ${JSON.stringify(notification)}\n\n` +
    `id: ev-2\ndata: ${JSON.stringify(serverRequest)}\n\n` +
    `retry: 1000\nid: ev-3\nevent: message\ndata: ${JSON.stringify(result(7))}\n: trailing comment\n\n`;

  it("passes other events unchanged and adds the receipt to the response event, keeping its fields", async () => {
    const res = addResultMeta(sse(stream, { "content-length": "999", "x-accel-buffering": "no" }), 7, RECEIPT);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    expect(res.headers.get("content-length")).toBeNull();
    expect(res.headers.get("x-accel-buffering")).toBe("no");
    const out = await res.text();
    const head = stream.slice(0, stream.indexOf("retry:"));
    expect(out.startsWith(head)).toBe(true);
    expect(out.slice(head.length)).toBe(
      `retry: 1000\nid: ev-3\nevent: message\ndata: ${JSON.stringify(withReceipt(result(7)))}\n: trailing comment\n\n`,
    );
    const events = readSse(out);
    expect(events.map((e) => e.id)).toEqual(["ev-1", "ev-2", "ev-3"]);
    expect(JSON.parse(events[2]!.data)).toEqual(withReceipt(result(7)));
  });

  it("gives the same bytes fed one byte at a time as in one chunk", async () => {
    const bytes = enc.encode(stream);
    // The harness does deliver one byte per chunk to what reads the response body.
    let reads = 0;
    for (const reader = sse(bytewise(bytes)).body!.getReader(); !(await reader.read()).done; ) reads++;
    expect(reads).toBe(bytes.length);
    const whole = await throughSse([bytes]);
    expect(await throughSse(bytewise(bytes))).toBe(whole);
  });

  it("keeps CRLF and CR line ends, and reads data split over several lines", async () => {
    for (const eol of ["\r\n", "\r"]) {
      const pretty = JSON.stringify(result(7), null, 2).split("\n");
      const text =
        `id: a${eol}data: ${JSON.stringify(notification)}${eol}${eol}` +
        `id: b${eol}${pretty.map((l) => `data:${l}`).join(eol)}${eol}${eol}` +
        `data: ${JSON.stringify(notification)}${eol}${eol}`;
      const expected =
        `id: a${eol}data: ${JSON.stringify(notification)}${eol}${eol}` +
        `id: b${eol}data:${JSON.stringify(withReceipt(result(7)))}${eol}${eol}` +
        `data: ${JSON.stringify(notification)}${eol}${eol}`;
      expect(await throughSse(text), JSON.stringify(eol)).toBe(expected);
      expect(await throughSse(bytewise(enc.encode(text))), JSON.stringify(eol)).toBe(expected);
    }
  });

  it("leaves an error response, a response to another id, and a server request with the same id untouched", async () => {
    const error = { jsonrpc: "2.0", id: 7, error: { code: 402, message: "pay", data: { _meta: {} } } };
    for (const message of [error, result(8), result("7"), serverRequest]) {
      const text = `event: message\ndata: ${JSON.stringify(message)}\n\n`;
      expect(await throughSse(text)).toBe(text);
      expect(await throughSse(bytewise(enc.encode(text)))).toBe(text);
    }
  });

  it("rewrites only the first response to the id, and passes non-JSON and non-UTF-8 events unchanged", async () => {
    const head = `data: not json\n\n`;
    const bad = Uint8Array.of(...enc.encode('data: {"id":7,'), 0xff, ...enc.encode("}\n\n"));
    const tail = `data: ${JSON.stringify(result(7))}\n\n`;
    const chunks = [enc.encode(head), bad, enc.encode(tail), enc.encode(tail)];
    const out = await await addResultMeta(sse(chunks), 7, RECEIPT).arrayBuffer();
    const expected = [
      ...enc.encode(head),
      ...bad,
      ...enc.encode(`data: ${JSON.stringify(withReceipt(result(7)))}\n\n`),
      ...enc.encode(tail),
    ];
    expect([...new Uint8Array(out)]).toEqual(expected);
  });

  it("adds to the matching member of a batch in one event", async () => {
    const out = await throughSse(`data: ${JSON.stringify([result(1), result(7)])}\n\n`);
    expect(JSON.parse(readSse(out)[0]!.data)).toEqual([result(1), withReceipt(result(7))]);
  });

  it("keeps a leading BOM and still finds the response in the first event", async () => {
    const text = `\uFEFFdata: ${JSON.stringify(result(7))}\n\n`;
    // Read as bytes: `Response.text()` would drop the BOM itself.
    const raw = await addResultMeta(sse(bytewise(enc.encode(text))), 7, RECEIPT).arrayBuffer();
    const out = new TextDecoder("utf-8", { ignoreBOM: true }).decode(raw);
    expect(out.startsWith("\uFEFFdata: ")).toBe(true);
    expect(JSON.parse(readSse(out)[0]!.data)).toEqual(withReceipt(result(7)));
  });

  it("rewrites a final event ended by a CR at the very end, and passes an unfinished one as is", async () => {
    expect(await throughSse(`data: ${JSON.stringify(result(7))}\r\r`)).toBe(`data: ${JSON.stringify(withReceipt(result(7)))}\r\r`);
    const unfinished = `data: ${JSON.stringify(result(7))}\n`;
    expect(await throughSse(unfinished)).toBe(unfinished);
  });

  it("streams: events before the response reach the client before the response arrives", async () => {
    let origin!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (origin = c) });
    const res = addResultMeta(new Response(body, { headers: { "content-type": "text/event-stream" } }), 7, RECEIPT);
    const reader = res.body!.getReader();
    const received: string[] = [];
    const readUntil = async (marker: string) => {
      while (!received.join("").includes(marker)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${marker}`);
        received.push(dec.decode(value, { stream: true }));
      }
    };
    origin.enqueue(enc.encode(`data: ${JSON.stringify(notification)}\n\n: ping\n\ndata: {"jsonrpc":"2.0",`));
    await readUntil(": ping\n\n");
    expect(received.join("")).toBe(`data: ${JSON.stringify(notification)}\n\n: ping\n\n`);
    origin.enqueue(enc.encode(`"id":7,"result":{}}\n\n`));
    await readUntil(`"result"`);
    // After the response: bytes pass through as they arrive, even a partial event.
    origin.enqueue(enc.encode("data: partial"));
    await readUntil("data: partial");
    origin.close();
    expect((await reader.read()).done).toBe(true);
    expect(received.join("")).toBe(
      `data: ${JSON.stringify(notification)}\n\n: ping\n\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: 7, result: { _meta: RECEIPT } })}\n\ndata: partial`,
    );
  });

  it("property: output bytes do not depend on chunking, and only the response gains the receipt", async () => {
    const eol = fc.constantFrom("\n", "\r\n", "\r");
    const message = fc.constantFrom<unknown>(
      notification,
      serverRequest,
      result(8),
      result("7"),
      { jsonrpc: "2.0", id: 9, error: { code: 1, message: "x" } },
      "not json",
    );
    const event = fc.record({
      id: fc.option(fc.stringMatching(/^[a-z0-9-]{1,8}$/), { nil: undefined }),
      type: fc.option(fc.constantFrom("message", "other"), { nil: undefined }),
      comment: fc.boolean(),
      message,
      multiline: fc.boolean(),
      eol,
    });
    const render = (e: { id?: string; type?: string; comment: boolean; message: unknown; multiline: boolean; eol: string }) => {
      const json = typeof e.message === "string" ? e.message : JSON.stringify(e.message, null, e.multiline ? 1 : undefined);
      const lines = [
        ...(e.id ? [`id: ${e.id}`] : []),
        ...(e.comment ? [": c"] : []),
        ...(e.type ? [`event: ${e.type}`] : []),
        ...json.split("\n").map((l) => `data: ${l}`),
      ];
      return lines.join(e.eol) + e.eol + e.eol;
    };
    await fc.assert(
      fc.asyncProperty(
        fc.array(event, { maxLength: 4 }),
        event,
        fc.array(event, { maxLength: 3 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (before, target, after, cuts) => {
          const t = { ...target, message: result(7) };
          const text = [...before, t, ...after].map(render).join("");
          const bytes = enc.encode(text);
          const whole = await throughSse([bytes]);
          expect(
            await throughSse(
              cut(
                bytes,
                cuts.map((c) => c % (bytes.length + 1)),
              ),
            ),
          ).toBe(whole);
          const inEvents = readSse(text);
          const outEvents = readSse(whole);
          expect(outEvents.length).toBe(inEvents.length);
          const k = before.length;
          for (let i = 0; i < inEvents.length; i++) {
            if (i === k) {
              expect({ ...outEvents[i], data: JSON.parse(outEvents[i]!.data) }).toEqual({ ...inEvents[i], data: withReceipt(result(7)) });
            } else {
              expect(outEvents[i]).toEqual(inEvents[i]);
            }
          }
          // Bytes before the response event are the origin's, unchanged.
          const prefix = before.map(render).join("");
          expect(whole.startsWith(prefix)).toBe(true);
          expect(whole.endsWith(after.map(render).join(""))).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
