/**
 * x402 through the gateway in workerd (workers/schemes/x402/, docs/wire-contract.md §12),
 * with a fake facilitator answering the Worker's `fetch` (test/workers/payments.ts): every way
 * a payment can arrive — `PAYMENT-SIGNATURE`, v1's `X-PAYMENT`, `params._meta["x402/payment"]`
 * as an object and as base64 — reaches the origin without the payment (no credential header,
 * no `_meta` payment in the body, other `_meta` members kept), and a payment made inside MCP
 * gets its receipt in the tool result's `_meta`. The price is compared as an amount (an
 * underpayment that is not a string prefix of the price is refused), and a payment is spent
 * once by the gateway itself even when the facilitator would accept it again. The cheap checks
 * come first: a forged signature, a payer over its ceiling, a spent payment never reach the
 * facilitator; a facilitator down at `/verify` leaves the payment usable again. Settlement on a
 * chain is test/e2e/x402*.test.ts's.
 */

import { generatePrivateKey } from "viem/accounts";
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
  decodeToken,
  errorBody,
  type Forwarded,
  freshIp,
  gateway,
  observeOrigin,
  parseChallenge,
  post,
  reasonOf,
  rows,
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
      const p = await x402Payment(PRICE);
      const body = toolCall(1);
      const res = await send(post(body, { ip, headers: { [header]: base64Json(p) } }));
      expect(res.status).toBe(200);
      expect(fromBase64Json(res.headers.get("payment-response")!)).toEqual(settlement(p));
      expect(res.headers.get("tollbooth-credits")).toBe("4");
      // The token says money bought it: its requests are paid traffic at the origin ceiling.
      expect(decodeToken(res.headers.get("tollbooth-token")!).claims).toMatchObject({
        sub: `evm:${p.payload.authorization.from.toLowerCase()}`,
        cr: 5,
        pd: 1,
      });
      // A payment made over HTTP gets its receipt in the header only: the origin's result as it was.
      expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 1, result: { content: [] } });
      expect(facilitator.calls.verify).toHaveLength(1);
      expect(facilitator.calls.settle).toHaveLength(1);
      expect(origin.requests).toHaveLength(1);
      expect(origin.requests[0]!.body).toBe(JSON.stringify(body));
      expectNoPayment(origin.requests[0]!, p);
      expect(origin.requests[0]!.headers["tollbooth-caller"]).toBe(`evm:${p.payload.authorization.from.toLowerCase()}`);
    });
  }
});

describe('a payment inside MCP (params._meta["x402/payment"])', () => {
  it("the PaymentPayload object: the receipt in the tool result's _meta; the origin gets the call without the payment (and without an emptied _meta)", async () => {
    const p = await x402Payment(PRICE);
    const res = await send(post(call(7, { "x402/payment": p }), { ip }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 7, result: { content: [], _meta: { "x402/payment-response": settlement(p) } } });
    expect(fromBase64Json(res.headers.get("payment-response")!)).toEqual(settlement(p));
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual(call(7));
    expectNoPayment(origin.requests[0]!, p);
  });

  it("the base64 string (agents/x402's form): the receipt in _meta; the other _meta members reach the origin", async () => {
    const p = await x402Payment(PRICE);
    const res = await send(post(call(8, { "x402/payment": base64Json(p), "example.com/trace": "keep-me", progressToken: 3 }), { ip }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ jsonrpc: "2.0", id: 8, result: { content: [], _meta: { "x402/payment-response": settlement(p) } } });
    expect(origin.requests).toHaveLength(1);
    expect(JSON.parse(origin.requests[0]!.body)).toEqual(call(8, { "example.com/trace": "keep-me", progressToken: 3 }));
    expectNoPayment(origin.requests[0]!, p);
  });

  it("the receipt joins the origin's own result _meta", async () => {
    const p = await x402Payment(PRICE);
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
    const paid = await x402Payment(PRICE);
    const extra = await x402Payment(PRICE);
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
    const p = await x402Payment(PRICE);
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
    const p = await x402Payment(PRICE);
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
      const viaHeader = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(await x402Payment(amount)) } }));
      expect(await reasonOf(viaHeader)).toBe("x402_underpaid");
      const viaMeta = await send(post(call(2, { "x402/payment": await x402Payment(amount) }), { ip }));
      expect(await reasonOf(viaMeta)).toBe("x402_underpaid");
      expect(facilitator.calls.verify).toHaveLength(0);
      expect(facilitator.calls.settle).toHaveLength(0);
      expect(origin.requests).toHaveLength(0);
    });
  }

  it("more than the price (25000) is accepted, verified and settled for the amount signed", async () => {
    const p = await x402Payment("25000");
    const res = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }));
    expect(res.status).toBe(200);
    expect(facilitator.calls.verify.map((c) => c.paymentRequirements.amount)).toEqual(["25000"]);
    expect(facilitator.calls.settle.map((c) => c.paymentRequirements.amount)).toEqual(["25000"]);
    expect(origin.requests).toHaveLength(1);
  });

  it("exactly the price, to another payee or on another network: 402 x402_not_offered, never sent to the facilitator", async () => {
    const otherPayee = await x402Payment(PRICE, { accepted: { payTo: `0x${"11".repeat(20)}` } });
    expect(await reasonOf(await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(otherPayee) } })))).toBe(
      "x402_not_offered",
    );
    const otherNetwork = await x402Payment(PRICE, { accepted: { network: "eip155:1" } });
    expect(await reasonOf(await send(post(toolCall(2), { ip, headers: { "payment-signature": base64Json(otherNetwork) } })))).toBe(
      "x402_not_offered",
    );
    expect(facilitator.calls.verify).toHaveLength(0);
    expect(origin.requests).toHaveLength(0);
  });
});

describe("spent once, by the gateway itself", () => {
  it("the same payment again, which the facilitator would still accept: 402 x402_spent, not settled again, the origin gets nothing more", async () => {
    const p = await x402Payment(PRICE);
    expect((await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }))).status).toBe(200);
    const again = await send(post(toolCall(2), { ip: freshIp(), headers: { "payment-signature": base64Json(p) } }));
    expect(again.status).toBe(402);
    expect(again.headers.get("payment-required")).not.toBeNull();
    expect((await errorBody(again)).error.data!.reason).toBe("x402_spent");
    // Refused by the gateway's own mark before the facilitator was asked: one /verify, one /settle.
    expect(facilitator.calls.verify).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(origin.requests).toHaveLength(1);
  });

  it("the same payment in _meta again: x402_spent", async () => {
    const p = await x402Payment(PRICE);
    expect((await send(post(call(1, { "x402/payment": p }), { ip }))).status).toBe(200);
    expect(await reasonOf(await send(post(call(2, { "x402/payment": base64Json(p) }), { ip })))).toBe("x402_spent");
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(origin.requests).toHaveLength(1);
  });
});

describe("cheap checks before the facilitator", () => {
  /** A payment signed by another key than the payer it names. */
  async function forged(): Promise<X402Payment> {
    const p = await x402Payment(PRICE);
    const other = await x402Payment(PRICE);
    return { ...p, payload: { ...p.payload, signature: other.payload.signature } };
  }

  it("forged signatures (another key's) from one network: 402 x402_invalid with the facilitator's word for it, not one facilitator call, nothing forwarded", async () => {
    for (let i = 0; i < 20; i++) {
      const res = await send(post(toolCall(i), { ip, headers: { "payment-signature": base64Json(await forged()) } }));
      expect(res.status).toBe(402);
      const body = await errorBody(res);
      expect(body.error.data!.reason).toBe("x402_invalid");
      expect(body.error.data!.detail).toBe("invalid_exact_evm_signature");
    }
    const meta = await send(post(call(21, { "x402/payment": await forged() }), { ip }));
    expect(await reasonOf(meta)).toBe("x402_invalid");
    expect(facilitator.calls).toEqual({ verify: [], settle: [] });
    expect(origin.requests).toHaveLength(0);
  });

  it("a payer over its ceiling: 429 before the facilitator is asked (its valid payments past the ceiling cost no /verify)", async () => {
    const tight = gateway({ ...POLICY, ceiling: { capacity: 2, refillPerSecond: 0.0001 } });
    const key = generatePrivateKey();
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++)
      statuses.push(
        (await tight(post(toolCall(i), { ip: freshIp(), headers: { "payment-signature": base64Json(await x402Payment(PRICE, { key })) } })))
          .status,
      );
    // Each payment buys 5 credits; the payer's ceiling (2) refuses the rest before /verify.
    expect(statuses).toEqual([200, 200, 429, 429, 429]);
    expect(facilitator.calls.verify).toHaveLength(2);
    expect(facilitator.calls.settle).toHaveLength(2);
    expect(origin.requests).toHaveLength(2);
  });

  it("the facilitator down at /verify: 503 x402_facilitator_unavailable, nothing settled or forwarded; the same payment works once it is back", async () => {
    const p = await x402Payment(PRICE);
    facilitator.setDown(true);
    const down = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }));
    expect(down.status).toBe(503);
    expect((await errorBody(down)).error.data!.reason).toBe("x402_facilitator_unavailable");
    expect(down.headers.get("tollbooth-token")).toBeNull();
    expect(origin.requests).toHaveLength(0);
    facilitator.setDown(false);
    // Its spent marks were lifted with the refusal: the same authorization is redeemed and settled now.
    const back = await send(post(toolCall(2), { ip, headers: { "payment-signature": base64Json(p) } }));
    expect(back.status).toBe(200);
    expect(facilitator.calls.settle).toHaveLength(1);
    expect(origin.requests).toHaveLength(1);
  });

  it("at POST /verify too: the facilitator down gives 503 and lifts both spent marks (the payer's object's, the gateway-wide claim); the same payment then buys its token", async () => {
    const p = await x402Payment(PRICE);
    const payer = `evm:${p.payload.authorization.from.toLowerCase()}`;
    const spendId = `x402:${p.accepted.network}:${p.accepted.asset.toLowerCase()}:${p.payload.authorization.from.toLowerCase()}:${p.payload.authorization.nonce}`;
    const verify = () => send(post({ type: "x402", payment: p }, { ip, path: "/.well-known/tollbooth/verify" }));
    facilitator.setDown(true);
    const down = await verify();
    expect(down.status).toBe(503);
    expect(((await down.json()) as { reason: string }).reason).toBe("x402_facilitator_unavailable");
    expect(await rows(payer, "spent")).toEqual([]);
    expect(await rows(payer, "tokens")).toEqual([]);
    expect(await rows(`spent:${spendId}`, "spent")).toEqual([]);
    facilitator.setDown(false);
    const bought = await verify();
    expect(bought.status).toBe(200);
    expect(((await bought.json()) as { credits: number }).credits).toBe(5);
    expect(await rows(payer, "spent")).toHaveLength(1);
    expect(await rows(`spent:${spendId}`, "spent")).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(1);
  });

  it("the facilitator refusing /verify (invalid): 402 with its reason, the payment spent (not asked again)", async () => {
    const p = await x402Payment(PRICE);
    facilitator.setVerdict({ isValid: false, invalidReason: "invalid_exact_evm_insufficient_funds" });
    const res = await send(post(toolCall(1), { ip, headers: { "payment-signature": base64Json(p) } }));
    expect(res.status).toBe(402);
    expect((await errorBody(res)).error.data).toMatchObject({ reason: "x402_invalid", detail: "invalid_exact_evm_insufficient_funds" });
    facilitator.setVerdict(null);
    // Both marks stay: the payer's object refuses it before the facilitator is asked again.
    const payer = `evm:${p.payload.authorization.from.toLowerCase()}`;
    expect(await rows(payer, "spent")).toHaveLength(1);
    expect(await rows(payer, "tokens")).toEqual([]);
    expect(await reasonOf(await send(post(toolCall(2), { ip, headers: { "payment-signature": base64Json(p) } })))).toBe("x402_spent");
    expect(facilitator.calls.verify).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(0);
    expect(origin.requests).toHaveLength(0);
  });
});
