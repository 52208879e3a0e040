/**
 * x402 through the gateway in workerd (workers/schemes/x402/, docs/wire-contract.md §12),
 * with a fake facilitator answering the Worker's `fetch` (test/workers/payments.ts): every way
 * a payment can arrive — `PAYMENT-SIGNATURE`, v1's `X-PAYMENT`, `params._meta["x402/payment"]`
 * as an object and as base64 — reaches the origin without the payment (no credential header,
 * no `_meta` payment in the body, other `_meta` members kept), and a payment made inside MCP
 * gets its receipt in the tool result's `_meta`. The price is compared as an amount (an
 * underpayment that is not a string prefix of the price is refused), and a payment is spent
 * once by the gateway itself even when the facilitator would accept it again. Signatures and
 * settlement on a chain are test/e2e/x402*.test.ts's.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  base64Json,
  FACILITATOR,
  FACILITATOR_URL,
  fakeFacilitator,
  fromBase64Json,
  settlement,
  type X402Payment,
  x402Payment,
} from "../payments.ts";
import {
  errorBody,
  type Forwarded,
  freshIp,
  gateway,
  observeOrigin,
  parseChallenge,
  post,
  reasonOf,
  rpc,
  solve,
  toolCall,
} from "../support.ts";

const PRICE = "10000";
const POLICY = {
  bucket: { capacity: 1, refillPerSecond: 0.0001 },
  challenge: { difficulty: 4 },
  x402: { mode: "credits", amount: PRICE, credits: 5 },
  facilitator: FACILITATOR,
};
const send = gateway(POLICY);

let ip: string;
let origin: ReturnType<typeof observeOrigin>;
let facilitator: ReturnType<typeof fakeFacilitator>;

beforeEach(() => {
  ip = freshIp();
  facilitator = fakeFacilitator();
  origin = observeOrigin(undefined, { [FACILITATOR_URL]: facilitator.service });
});

/** A `tools/call` of `echo` with `params._meta` when given. */
const call = (id: number, meta?: Record<string, unknown>) =>
  rpc("tools/call", { name: "echo", arguments: { message: "hi" }, ...(meta ? { _meta: meta } : {}) }, id);

/** What the origin received carries no payment: no credential header, no `_meta` payment, not the signature anywhere. */
function expectNoPayment(f: Forwarded, p: X402Payment): void {
  expect(f.headers["payment-signature"]).toBeUndefined();
  expect(f.headers["x-payment"]).toBeUndefined();
  expect(f.body).not.toContain("x402/payment");
  expect(JSON.stringify(f.headers) + f.body).not.toContain(p.payload.signature);
  expect(JSON.stringify(f.headers) + f.body).not.toContain(base64Json(p));
}

describe("a payment in a header", () => {
  for (const header of ["payment-signature", "x-payment"] as const) {
    it(`${header}: admitted and settled; the origin gets the request as sent, without ${header}; PAYMENT-RESPONSE, and no receipt in the result`, async () => {
      const p = x402Payment(PRICE);
      const body = toolCall(1);
      const res = await send(post(body, { ip, headers: { [header]: base64Json(p) } }));
      expect(res.status).toBe(200);
      expect(fromBase64Json(res.headers.get("payment-response")!)).toEqual(settlement(p));
      expect(res.headers.get("tollbooth-credits")).toBe("4");
      expect(res.headers.get("tollbooth-token")).toMatch(/^tb1\./);
      // A payment made over HTTP gets its receipt in the header only: the origin's result as it was.
      expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 1, result: { content: [] } });
      expect(facilitator.calls.verify).toHaveLength(1);
      expect(facilitator.calls.settle).toHaveLength(1);
      expect(origin.requests).toHaveLength(1);
      expect(origin.requests[0]!.body).toBe(JSON.stringify(body));
      expectNoPayment(origin.requests[0]!, p);
      expect(origin.requests[0]!.headers["tollbooth-caller"]).toBe(`evm:${p.payload.authorization.from}`);
    });
  }
});

describe('a payment inside MCP (params._meta["x402/payment"])', () => {
  it("the PaymentPayload object: the receipt in the tool result's _meta; the origin gets the call without the payment (and without an emptied _meta)", async () => {
    const p = x402Payment(PRICE);
    const res = await send(post(call(7, { "x402/payment": p }), { ip }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 7, result: { content: [], _meta: { "x402/payment-response": settlement(p) } } });
    expect(fromBase64Json(res.headers.get("payment-response")!)).toEqual(settlement(p));
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual(call(7));
    expectNoPayment(origin.requests[0]!, p);
  });

  it("the base64 string (agents/x402's form): the receipt in _meta; the other _meta members reach the origin", async () => {
    const p = x402Payment(PRICE);
    const res = await send(post(call(8, { "x402/payment": base64Json(p), "example.com/trace": "keep-me", progressToken: 3 }), { ip }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 8, result: { content: [], _meta: { "x402/payment-response": settlement(p) } } });
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual(call(8, { "example.com/trace": "keep-me", progressToken: 3 }));
    expectNoPayment(origin.requests[0]!, p);
  });

  it("the receipt joins the origin's own result _meta", async () => {
    const p = x402Payment(PRICE);
    origin = observeOrigin(
      () => Response.json({ jsonrpc: "2.0", id: 9, result: { content: [{ type: "text", text: "ok" }], _meta: { "origin/own": 1 } } }),
      { [FACILITATOR_URL]: facilitator.service },
    );
    const res = await send(post(call(9, { "x402/payment": p }), { ip }));
    expect(await res.json()).toEqual({
      jsonrpc: "2.0",
      id: 9,
      result: { content: [{ type: "text", text: "ok" }], _meta: { "origin/own": 1, "x402/payment-response": settlement(p) } },
    });
  });
});

describe("a payment in _meta never reaches the origin, whichever way the request paid", () => {
  it("paid with PAYMENT-SIGNATURE, another payment in _meta: the header's is settled, the _meta one stripped and never sent to the facilitator", async () => {
    const paid = x402Payment(PRICE);
    const extra = x402Payment(PRICE);
    const res = await send(
      post(call(11, { "x402/payment": extra, "example.com/trace": "keep-me" }), { ip, headers: { "payment-signature": base64Json(paid) } }),
    );
    expect(res.status).toBe(200);
    expect(fromBase64Json(res.headers.get("payment-response")!)).toEqual(settlement(paid));
    expect(facilitator.calls.verify).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(JSON.stringify(facilitator.calls)).toContain(paid.payload.authorization.nonce);
    expect(JSON.stringify(facilitator.calls)).not.toContain(extra.payload.authorization.nonce);
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual(call(11, { "example.com/trace": "keep-me" }));
    expectNoPayment(origin.requests[0]!, paid);
    expectNoPayment(origin.requests[0]!, extra);
    expect(origin.requests[0]!.body).not.toContain(extra.payload.authorization.nonce);
  });

  it("paid with a solved challenge, a payment in _meta: admitted by the solution, the payment stripped, the facilitator never asked", async () => {
    expect((await send(post(toolCall(1), { ip }))).status).toBe(200); // the free unit
    const refused = await send(post(toolCall(2), { ip }));
    expect(refused.status).toBe(402);
    const pow = parseChallenge(
      refused.headers
        .get("www-authenticate")!
        .split(/, (?=[A-Za-z0-9-]+ )/)
        .find((c) => c.startsWith("PowChallenge"))!,
    );
    const p = x402Payment(PRICE);
    const res = await send(
      post(call(12, { "x402/payment": base64Json(p) }), { ip, headers: { "tollbooth-solution": (await solve(pow)).header } }),
    );
    expect(res.status).toBe(200);
    expect(facilitator.calls.verify).toHaveLength(0);
    expect(facilitator.calls.settle).toHaveLength(0);
    expect(origin.requests).toHaveLength(2);
    expect(JSON.parse(origin.requests[1]!.body)).toEqual(call(12));
    expectNoPayment(origin.requests[1]!, p);
  });

  it("paid by the free bucket, in a batch (never read as a credential): each message's _meta payment stripped, the rest as sent", async () => {
    const p = x402Payment(PRICE);
    const batch = [call(13, { "x402/payment": p, progressToken: 1 })];
    const res = await send(post(batch, { ip }));
    expect(res.status).toBe(200);
    expect(facilitator.calls.verify).toHaveLength(0);
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual([call(13, { progressToken: 1 })]);
    expectNoPayment(origin.requests[0]!, p);
  });
});

describe("the price is an amount, not a string", () => {
  // "9999" and "9" are less than 10000 but not string prefixes of "10000" (as text they sort after it).
  for (const amount of ["9999", "9", "1"]) {
    it(`${amount} < ${PRICE}: 402 x402_underpaid, in a header and in _meta; never sent to the facilitator; the origin gets nothing`, async () => {
      const viaHeader = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(x402Payment(amount)) } }));
      expect(await reasonOf(viaHeader)).toBe("x402_underpaid");
      const viaMeta = await send(post(call(2, { "x402/payment": x402Payment(amount) }), { ip }));
      expect(await reasonOf(viaMeta)).toBe("x402_underpaid");
      expect(facilitator.calls.verify).toHaveLength(0);
      expect(facilitator.calls.settle).toHaveLength(0);
      expect(origin.requests).toHaveLength(0);
    });
  }

  it("more than the price (25000) is accepted, verified and settled for the amount signed", async () => {
    const p = x402Payment("25000");
    const res = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }));
    expect(res.status).toBe(200);
    expect(facilitator.calls.verify.map((c) => c.paymentRequirements.amount)).toEqual(["25000"]);
    expect(facilitator.calls.settle.map((c) => c.paymentRequirements.amount)).toEqual(["25000"]);
    expect(origin.requests).toHaveLength(1);
  });

  it("exactly the price, to another payee or on another network: 402 x402_not_offered, never sent to the facilitator", async () => {
    const otherPayee = x402Payment(PRICE, { accepted: { payTo: `0x${"11".repeat(20)}` } });
    expect(await reasonOf(await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(otherPayee) } })))).toBe(
      "x402_not_offered",
    );
    const otherNetwork = x402Payment(PRICE, { accepted: { network: "eip155:1" } });
    expect(await reasonOf(await send(post(toolCall(2), { ip, headers: { "payment-signature": base64Json(otherNetwork) } })))).toBe(
      "x402_not_offered",
    );
    expect(facilitator.calls.verify).toHaveLength(0);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("spent once, by the gateway itself", () => {
  it("the same payment again, which the facilitator would still accept: 402 x402_spent, not settled again, the origin gets nothing more", async () => {
    const p = x402Payment(PRICE);
    expect((await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }))).status).toBe(200);
    const again = await send(post(toolCall(2), { ip: freshIp(), headers: { "payment-signature": base64Json(p) } }));
    expect(again.status).toBe(402);
    expect(again.headers.get("payment-required")).not.toBeNull();
    expect((await errorBody(again)).error.data!.reason).toBe("x402_spent");
    // The facilitator said valid twice; only the first was settled.
    expect(facilitator.calls.verify).toHaveLength(2);
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(origin.requests).toHaveLength(1);
  });

  it("the same payment in _meta again: x402_spent", async () => {
    const p = x402Payment(PRICE);
    expect((await send(post(call(1, { "x402/payment": p }), { ip }))).status).toBe(200);
    expect(await reasonOf(await send(post(call(2, { "x402/payment": base64Json(p) }), { ip })))).toBe("x402_spent");
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(origin.requests).toHaveLength(1);
  });
});
