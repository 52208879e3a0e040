/**
 * The Origin header step (workers/pipeline/origin-header.ts): a present Origin the policy
 * does not allow is refused 403 as a JSON-RPC error naming it; an absent one, the gateway's
 * own origin, a listed one or any with `*` pass unchanged.
 */
import { describe, expect, it } from "vitest";
import { originHeader } from "../../../../workers/pipeline/origin-header.ts";
import { toJsonRpc } from "../../../../workers/refusal/json-rpc.ts";
import { Refusal } from "../../../../workers/refusal/refusal.ts";
import { arrival, depsFor, request, toolCall } from "./support.ts";

const post = (origin?: string) => arrival(request("POST", "/mcp", { body: toolCall(1), headers: origin === undefined ? {} : { origin } }));

describe("the Origin header", () => {
  const deps = depsFor({ allowedOrigins: ["https://app.example"] });

  it("absent, the gateway's own origin, or a listed one: the request goes on as it was", () => {
    for (const s of [post(), post("http://gw.test"), post("https://app.example")]) expect(originHeader(s, deps)).toBe(s);
  });

  it("any other: 403, error.code 403, the origin named in the message and error.data, nothing else decided", async () => {
    const refusal = originHeader(post("https://evil.example"), deps);
    expect(refusal).toBeInstanceOf(Refusal);
    const res = toJsonRpc(refusal as Refusal, null);
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({
      jsonrpc: "2.0",
      id: null,
      error: { code: 403, message: "Forbidden: Origin https://evil.example is not allowed", data: { origin: "https://evil.example" } },
    });
    expect((refusal as Refusal).reason).toEqual({ decision: "bad_request", reason: "forbidden_origin" });
  });

  it("look-alikes of an allowed origin are refused: a longer host, another scheme or port, `null`, a trailing slash", () => {
    for (const origin of [
      "https://app.example.evil.example",
      "http://app.example",
      "https://app.example:8443",
      "null",
      "https://app.example/",
      "http://gw.test.evil.example",
    ]) {
      expect(originHeader(post(origin), deps), origin).toBeInstanceOf(Refusal);
    }
  });

  it('`"*"` allows any origin', () => {
    const s = post("https://anything.example");
    expect(originHeader(s, depsFor({ allowedOrigins: ["*"] }))).toBe(s);
  });
});
