/**
 * tollbooth's x402 facilitator client (workers/schemes/x402/facilitator.ts) against
 * `@x402/core`'s `HTTPFacilitatorClient`, the reference it replaces: for the same payment it
 * sends the same request (method, URL, `Content-Type`, `Authorization`, body) and reads the
 * same answers the same way — the spec's responses (only their members, in the spec's order),
 * a refusal with an error status that carries `isValid` / `success`, and anything else as no
 * answer. Its own: the `fetch` it is given (never the global one), and a bound on the whole
 * exchange even when that `fetch` ignores the abort signal.
 */
import { HTTPFacilitatorClient } from "@x402/core/http";
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FacilitatorError, facilitatorClient } from "../../../../../workers/schemes/x402/facilitator.ts";

const URL_ = "https://facilitator.example/x402/";
const AUTH = "Bearer facilitator-token";
const requirement: PaymentRequirements = {
  scheme: "exact",
  network: "eip155:8453",
  asset: `0x${"a5".repeat(20)}`,
  amount: "10000",
  payTo: `0x${"7e".repeat(20)}`,
  maxTimeoutSeconds: 120,
  extra: { name: "USD Coin", version: "2" },
};
const payload = {
  x402Version: 2,
  resource: { url: "https://gw.example/mcp" },
  accepted: requirement,
  payload: {
    signature: `0x${"5e".repeat(65)}`,
    authorization: {
      from: `0x${"01".repeat(20)}`,
      to: requirement.payTo,
      value: "10000",
      validAfter: "0",
      validBefore: "1900000000",
      nonce: `0x${"07".repeat(32)}`,
    },
  },
} as PaymentPayload;

afterEach(() => {
  vi.restoreAllMocks();
});

/** What a request looked like on the wire. */
async function seen(
  req: Request,
): Promise<{ method: string; url: string; contentType: string | null; authorization: string | null; body: unknown }> {
  return {
    method: req.method,
    url: req.url,
    contentType: req.headers.get("content-type"),
    authorization: req.headers.get("authorization"),
    body: JSON.parse(await req.text()),
  };
}

/** A `fetch` answering every request with `answer`, recording what it was sent. */
function peer(answer: () => Response) {
  const requests: Request[] = [];
  const f = async (input: RequestInfo | URL, init?: RequestInit) => {
    requests.push(new Request(input, init));
    return answer();
  };
  return { requests, fetch: f as typeof fetch };
}

const ours = (f: typeof fetch, timeoutMs = 2_000) => facilitatorClient({ url: URL_, timeoutMs, authorization: AUTH, fetch: f });
/** The reference client, its global `fetch` answered by `f`. */
function reference(f: typeof fetch): HTTPFacilitatorClient {
  vi.spyOn(globalThis, "fetch").mockImplementation(f);
  return new HTTPFacilitatorClient({
    url: URL_,
    createAuthHeaders: async () => ({
      verify: { Authorization: AUTH },
      settle: { Authorization: AUTH },
      supported: { Authorization: AUTH },
    }),
  });
}

describe("the same requests as HTTPFacilitatorClient", () => {
  for (const op of ["verify", "settle"] as const) {
    it(`POST /${op}: method, URL, Content-Type, Authorization and body`, async () => {
      const answer = op === "verify" ? { isValid: true, payer: "0x01" } : { success: true, transaction: "0xab", network: "eip155:8453" };
      const a = peer(() => Response.json(answer));
      const b = peer(() => Response.json(answer));
      await ours(a.fetch)[op](payload, requirement);
      await reference(b.fetch)[op](payload, requirement);
      expect(a.requests).toHaveLength(1);
      const mine = await seen(a.requests[0]!);
      expect(mine).toEqual(await seen(b.requests[0]!));
      expect(mine).toEqual({
        method: "POST",
        url: `https://facilitator.example/x402/${op}`,
        contentType: "application/json",
        authorization: AUTH,
        body: { x402Version: 2, paymentPayload: payload, paymentRequirements: requirement },
      });
    });
  }

  it("no Authorization when the operator set none", async () => {
    const a = peer(() => Response.json({ isValid: true }));
    await facilitatorClient({ url: URL_, timeoutMs: 1_000, authorization: undefined, fetch: a.fetch }).verify(payload, requirement);
    expect(a.requests[0]!.headers.get("authorization")).toBeNull();
  });

  it("only the fetch it is given: the global fetch is never called", async () => {
    const global = vi.spyOn(globalThis, "fetch").mockImplementation(async () => Response.json({ isValid: true }));
    const a = peer(() => Response.json({ isValid: true }));
    await ours(a.fetch).verify(payload, requirement);
    expect(a.requests).toHaveLength(1);
    expect(global).not.toHaveBeenCalled();
  });
});

describe("the same answers", () => {
  it("2xx: the spec's responses, their members only, null read as absent", async () => {
    const verify = { isValid: false, invalidReason: "invalid_exact_evm_insufficient_funds", invalidMessage: null, payer: "0x01", other: 1 };
    const settle = {
      success: true,
      errorReason: null,
      payer: "0x01",
      transaction: "0xab",
      network: "eip155:8453",
      amount: "10000",
      surplus: "x",
    };
    const a = peer(() => Response.json(verify));
    expect(await ours(a.fetch).verify(payload, requirement)).toEqual({
      isValid: false,
      invalidReason: "invalid_exact_evm_insufficient_funds",
      payer: "0x01",
    });
    const s = peer(() => Response.json(settle));
    const b = peer(() => Response.json(settle));
    const mine = await ours(s.fetch).settle(payload, requirement);
    expect(mine).toEqual(await reference(b.fetch).settle(payload, requirement));
    // The receipt header is this object's JSON: the spec's members, in the spec's order.
    expect(JSON.stringify(mine)).toBe(
      JSON.stringify({ success: true, payer: "0x01", transaction: "0xab", network: "eip155:8453", amount: "10000" }),
    );
  });

  it("an error status whose body carries isValid / success is the facilitator's refusal (never valid, never settled)", async () => {
    const v = peer(() => Response.json({ isValid: true, invalidReason: "invalid_exact_evm_nonce_already_used" }, { status: 400 }));
    expect(await ours(v.fetch).verify(payload, requirement)).toEqual({
      isValid: false,
      invalidReason: "invalid_exact_evm_nonce_already_used",
    });
    const ref = peer(() => Response.json({ isValid: true, invalidReason: "invalid_exact_evm_nonce_already_used" }, { status: 400 }));
    await expect(reference(ref.fetch).verify(payload, requirement)).rejects.toMatchObject({
      name: "VerifyError",
      invalidReason: "invalid_exact_evm_nonce_already_used",
    });
    const s = peer(() => Response.json({ success: true, errorReason: "transaction_failed" }, { status: 500 }));
    expect(await ours(s.fetch).settle(payload, requirement)).toEqual({ success: false, errorReason: "transaction_failed" });
  });

  it("anything else is no answer: not JSON, not the spec's shape, an error status without a verdict, no connection", async () => {
    const answers = [
      () => new Response("<html>bad gateway</html>", { status: 200 }),
      () => Response.json({ isValid: "yes" }),
      () => Response.json({ isValid: true, payer: 7 }),
      () => Response.json({ error: "down" }, { status: 503 }),
      () => new Response("oops", { status: 500 }),
    ];
    for (const answer of answers)
      await expect(ours(peer(answer).fetch).verify(payload, requirement)).rejects.toMatchObject({
        name: "FacilitatorError",
        code: "bad_response",
      });
    // A settlement without its transaction or network is no settlement.
    await expect(
      ours(peer(() => Response.json({ success: true, network: "eip155:8453" })).fetch).settle(payload, requirement),
    ).rejects.toBeInstanceOf(FacilitatorError);
    const refused = (async () => {
      throw new TypeError("fetch failed: connection refused");
    }) as typeof fetch;
    await expect(ours(refused).settle(payload, requirement)).rejects.toMatchObject({ code: "unreachable" });
  });
});

describe("bounded", () => {
  it("a facilitator that never answers, through a fetch that ignores the abort signal: timeout after timeoutMs, the signal aborted", async () => {
    let signal: AbortSignal | undefined;
    const hangs = ((_input: RequestInfo | URL, init?: RequestInit) => {
      signal = init?.signal ?? undefined;
      return new Promise<Response>(() => {});
    }) as typeof fetch;
    await expect(ours(hangs, 100).verify(payload, requirement)).rejects.toMatchObject({ name: "FacilitatorError", code: "timeout" });
    expect(signal?.aborted).toBe(true);
  });

  it("headers sent, then a body that never ends: timeout too", async () => {
    const trickle = (async () =>
      new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('{"isValid":')) }))) as typeof fetch;
    await expect(ours(trickle, 100).verify(payload, requirement)).rejects.toMatchObject({ code: "timeout" });
  });

  it("a bad url or timeout is a configuration error", () => {
    const f = peer(() => Response.json({})).fetch;
    expect(() => facilitatorClient({ url: "ftp://x", timeoutMs: 100, authorization: undefined, fetch: f })).toThrow(TypeError);
    expect(() => facilitatorClient({ url: URL_, timeoutMs: 0, authorization: undefined, fetch: f })).toThrow(TypeError);
  });
});
