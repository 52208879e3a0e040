/**
 * One body read two ways cannot run what the gateway did not price: a parser-differential
 * attack through the charset, through `wrangler dev`, against a real origin on the SDK's
 * Express app (`createMcpExpressApp` → `express.json()` → body-parser, which decodes the body
 * in the charset the request names).
 *
 * The body is ASCII. Read as UTF-8 (the gateway) it is a `ping` (cost 0) whose params hold
 * one string of UTF-7 escapes; read as UTF-7 (body-parser, `charset=utf-7`) those escapes
 * are quotes and braces, and the same bytes are a `tools/call` of `expensive` (cost 5:
 * `method` and `params` given again, and the last wins in `JSON.parse`) — or, in the batch
 * form, twenty of them. (The SDK refuses unknown top-level members, so the string sits in
 * `params`.) A caller whose budget is spent must get none
 * of them run: the tool-run counter of the origin is the proof.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Gateway, startGateway } from "../../scripts/stack/gateway.ts";
import { type ExpressOrigin, startExpressOrigin } from "../helpers/express-origin.ts";

const POLICY = { bucket: { capacity: 5, refillPerSecond: 0.01 }, costs: { tools: { expensive: 5 } } };
const ACCEPT = "application/json, text/event-stream";
const UTF7 = "application/json; charset=utf-7";

/** `s` as one UTF-7 shifted sequence (RFC 2152): `+`, base64 of UTF-16BE without padding, `-`. */
function utf7(s: string): string {
  const bytes = Buffer.alloc(s.length * 2);
  for (let i = 0; i < s.length; i++) bytes.writeUInt16BE(s.charCodeAt(i), i * 2);
  return `+${bytes.toString("base64").replace(/=+$/, "")}-`;
}

const call = (id: number) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"expensive","arguments":{}}}`;

/** To UTF-8: one `ping`. To UTF-7: `ping`'s `method` and `params` overridden by a later `tools/call` of `expensive`. */
const SINGLE = `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"note":"${utf7(`"},"method":"tools/call","params":{"name":"expensive","arguments":{},"note":"`)}"}}`;

const BATCH_CALLS = 20;
/** To UTF-8: a batch of one `ping`. To UTF-7: a `ping`, twenty `tools/call` of `expensive`, a `ping`. */
const BATCH = `[{"jsonrpc":"2.0","id":1,"method":"ping","params":{"note":"${utf7(
  `"}},${Array.from({ length: BATCH_CALLS }, (_, i) => call(100 + i)).join(",")},{"jsonrpc":"2.0","id":2,"method":"ping","params":{"note":"`,
)}"}}]`;

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

const post = (base: string, body: string, contentType: string | string[], extra: Record<string, string> = {}) => {
  const headers = new Headers({ accept: ACCEPT, ...extra });
  for (const t of Array.isArray(contentType) ? contentType : [contentType]) headers.append("content-type", t);
  return fetch(`${base}/mcp`, { method: "POST", headers, body });
};

describe("the attack is real: the origin reads the bytes another way", () => {
  it("to a UTF-8 reader the bodies are a ping and a batch of one ping", () => {
    expect(JSON.parse(SINGLE)).toMatchObject({ method: "ping" });
    expect(JSON.parse(BATCH)).toHaveLength(1);
    expect(JSON.parse(BATCH)[0]).toMatchObject({ method: "ping" });
    expect(/^[\x20-\x7e]+$/.test(SINGLE + BATCH)).toBe(true);
  });

  it("sent straight to the origin with charset=utf-7, they run expensive once, then twenty times", async () => {
    origin.reset();
    const single = await post(origin.url, SINGLE, UTF7);
    expect(single.status).toBe(200);
    expect(await single.json()).toMatchObject({ id: 1, result: { content: [{ text: "expensive run #1" }] } });
    expect(origin.runs().expensive).toBe(1);

    const batch = await post(origin.url, BATCH, UTF7);
    expect(batch.status).toBe(200);
    await batch.text();
    expect(origin.runs().expensive).toBe(1 + BATCH_CALLS);
    origin.reset();
  });
});

describe("through the gateway, nothing runs that the caller cannot pay for", () => {
  it("spend the budget on one paid call, then neither form runs anything, however the charset is spelled", async () => {
    origin.reset();
    const paid = await post(gateway.url, call(1), "application/json");
    expect(paid.status).toBe(200);
    await paid.text();
    expect(origin.runs().expensive).toBe(1);
    // The budget is spent: a plain priced call now gets a 402.
    const refused = await post(gateway.url, call(2), "application/json");
    expect(refused.status).toBe(402);
    await refused.text();
    const received = origin.requests().length;

    const spellings: Array<string | string[]> = [
      UTF7,
      "application/json;charset=UTF-7",
      'application/json; charset="utf-7"',
      "application/json; charset=utf-8; charset=utf-7",
      ["application/json", UTF7],
      ["application/json; charset=utf-8", UTF7],
    ];
    const statuses: number[] = [];
    for (const body of [SINGLE, BATCH]) {
      for (const type of spellings) {
        const res = await post(gateway.url, body, type);
        statuses.push(res.status);
        await res.text();
      }
    }
    // The proof: the origin ran nothing more than the one paid call.
    expect(origin.runs().expensive).toBe(1);
    expect(
      statuses.every((s) => s === 415),
      JSON.stringify(statuses),
    ).toBe(true);
    expect(origin.requests().length).toBe(received);
  });

  it("even declared as UTF-8, the same bytes reach the origin as what the gateway priced: a free ping, nothing run", async () => {
    origin.reset();
    for (const body of [SINGLE, BATCH]) {
      const res = await post(gateway.url, body, "application/json; charset=utf-8");
      expect(res.status).toBe(200);
      await res.text();
    }
    expect(origin.runs().expensive).toBe(0);
    const posts = origin.requests().filter((r) => r.method === "POST");
    expect(posts).toHaveLength(2);
    for (const r of posts) expect(r.headers["content-type"]).toBe("application/json");
    expect(posts[0]!.body).toMatchObject({ method: "ping" });
  });

  it("a compressed body is refused, not passed to an origin that would inflate it", async () => {
    origin.reset();
    const res = await post(gateway.url, SINGLE, "application/json", { "content-encoding": "gzip" });
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ error: { code: 415, message: expect.stringContaining("gzip") } });
    expect(origin.requests()).toHaveLength(0);
  });
});
