/**
 * The gateway's own DELETE of a session (workers/proxy/end-session.ts) against a loopback
 * HTTP server: sent to the origin's base path + the endpoint, with the victim's session and
 * protocol version, the caller's credential when given, and an origin proof that verifies
 * (HMAC-SHA256 with node:crypto over the documented canonical bytes); the origin's status
 * comes back as is, no answer in time is `timeout`, a closed port `unreachable`.
 */
import { createHmac } from "node:crypto";
import http, { type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { importKeyring } from "../../../../shared/credentials/keys.ts";
import { sessionEnder } from "../../../../workers/proxy/end-session.ts";

const SECRET = "end-session-secret-0123456789abcdef";
const EMPTY_DIGEST = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
let server: http.Server;
let base: string;
const seen: IncomingMessage[] = [];
let answer: (res: http.ServerResponse) => void = (res) => res.writeHead(200).end();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push(req);
    answer(res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const ender = (originUrl: string, timeoutMs = 5_000) =>
  sessionEnder({ originUrl, proofKey: () => importKeyring(SECRET).then((k) => k.signer), timeoutMs });
const victim = {
  caller: "key:abc",
  path: "/mcp",
  sessionId: "s-1",
  version: "2025-11-25",
  credential: { authorization: "Bearer t" },
  url: new URL("https://gw.example/mcp"),
};

/** The canonical encoding of the origin proof's fields (`<UTF-8 byte length>:<value>` each), as documented. */
const canonical = (fields: Array<string | number>) => fields.map((f) => `${Buffer.byteLength(String(f))}:${f}`).join("");

describe("sessionEnder", () => {
  it("sends DELETE <base path><endpoint> with the session, its version, the caller's credential and an origin proof that verifies; answers the origin's status", async () => {
    answer = (res) => res.writeHead(204).end();
    expect(await ender(`${base}/base/`)(victim)).toBe(204);
    const req = seen.at(-1)!;
    expect([req.method, req.url]).toEqual(["DELETE", "/base/mcp"]);
    expect(req.headers).toMatchObject({
      "mcp-session-id": "s-1",
      "mcp-protocol-version": "2025-11-25",
      authorization: "Bearer t",
      "tollbooth-caller": "key:abc",
      "content-digest": EMPTY_DIGEST,
      "x-forwarded-host": "gw.example",
      "x-forwarded-proto": "https",
    });
    const m = /^t=(\d+), kid=([^,]+), sig=([A-Za-z0-9_-]+)$/.exec(String(req.headers["tollbooth-signature"]))!;
    const expected = createHmac("sha256", SECRET)
      .update(canonical(["tollbooth/origin-proof/v2", m[1]!, "key:abc", "DELETE", "/base/mcp", EMPTY_DIGEST]))
      .digest("base64url");
    expect(m[3]).toBe(expected);
  });

  it("no version and no credential: neither header is sent", async () => {
    answer = (res) => res.writeHead(404).end();
    expect(await ender(base)({ ...victim, version: null, credential: {} })).toBe(404);
    const req = seen.at(-1)!;
    expect(req.headers["mcp-protocol-version"]).toBeUndefined();
    expect(req.headers.authorization).toBeUndefined();
  });

  it("no answer within the bound: `timeout`; a closed port: `unreachable`", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    answer = () => {};
    expect(await ender(base, 200)(victim)).toBe("timeout");
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect(await ender(`http://127.0.0.1:${port}`)(victim)).toBe("unreachable");
  });
});
