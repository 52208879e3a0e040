/**
 * `withTollbooth` paying over x402 v2 (docs/wire-contract.md §11–12) against a scripted fake
 * gateway: its 402 carries a `PowChallenge` (`WWW-Authenticate`) and a `PAYMENT-REQUIRED`
 * header built with `@x402/core`'s `encodePaymentRequiredHeader` (network `eip155:31337`);
 * a `PAYMENT-SIGNATURE` is decoded with `decodePaymentSignatureHeader` and its EIP-712
 * `TransferWithAuthorization` signature checked independently with viem's `verifyTypedData`
 * (domain "USD Coin" / "2" / 31337 / the asset) before the gateway answers 200 with
 * `PAYMENT-RESPONSE` and, in credits mode, `Tollbooth-Token`.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentResponseHeader,
  encodePaymentSignatureHeader,
} from "@x402/core/http";
import type { PaymentRequirements } from "@x402/core/types";
import { getAddress, type Hex, verifyTypedData } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import {
  type FetchLike,
  type WithTollboothOptions,
  withTollbooth,
  type X402Options,
  type X402PayEvent,
} from "../../../../../packages/tollbooth-client/src/index.ts";
import { PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER } from "../../../../../packages/tollbooth-client/src/payers/x402.ts";
import { formatAuthParams } from "../../../../../shared/wire/auth-params.ts";
import { CREDITS_HEADER, SOLUTION_HEADER, TOKEN_HEADER, WWW_AUTHENTICATE_HEADER } from "../../../../../shared/wire/headers.ts";

/** Anvil's first well-known test account. */
const ACCOUNT = privateKeyToAccount("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const NETWORK = "eip155:31337";
const ASSET = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const OTHER_ASSET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";
const PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const URL_ = "https://gw.example/mcp";

const TRANSFER_WITH_AUTHORIZATION = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

interface Authorization {
  from: string;
  to: string;
  value: string;
  validAfter: string;
  validBefore: string;
  nonce: Hex;
}

interface GatewayOptions {
  /** Atomic units asked (default "10000"). */
  amount?: string;
  network?: string;
  asset?: string;
  /** Credits a paid token carries (default 3); `null`: per-request mode, no token. */
  credits?: number | null;
  /** Put the x402 offer only in `error.data.challenges` (no PAYMENT-REQUIRED header). */
  bodyOnly?: boolean;
  /** Refuse every payment as the facilitator would (`x402_invalid`). */
  refusePayments?: boolean;
}

/** The scripted gateway and what it saw. */
function fakeGateway(opts: GatewayOptions = {}) {
  const difficulty = 4;
  const requirement: PaymentRequirements = {
    scheme: "exact",
    network: (opts.network ?? NETWORK) as PaymentRequirements["network"],
    amount: opts.amount ?? "10000",
    asset: opts.asset ?? ASSET,
    payTo: PAY_TO,
    maxTimeoutSeconds: 120,
    extra: { name: "USD Coin", version: "2" },
  };
  const resource = { url: URL_, description: "tools/call search", mimeType: "application/json" };
  const requests: Headers[] = [];
  /** Signatures received, with what the check found. */
  const payments: Array<{ authorization: Authorization; valid: boolean; accepted: PaymentRequirements }> = [];
  const spentNonces = new Set<string>();
  const tokens = new Map<string, number>();

  const refuse = (reason: string) => {
    const headers = new Headers({ "content-type": "application/json" });
    headers.append(
      WWW_AUTHENTICATE_HEADER,
      formatAuthParams("PowChallenge", {
        realm: "tollbooth",
        id: randomBytes(8).toString("base64url"),
        salt: randomBytes(16).toString("hex"),
        difficulty,
        algorithm: "sha256",
        expires: 1_900_000_000,
        credits: 3,
        kid: "k1",
        signature: "sig",
      }),
    );
    const offer = { x402Version: 2, error: reason, resource, accepts: [requirement] };
    if (!opts.bodyOnly) headers.set("PAYMENT-REQUIRED", encodePaymentRequiredHeader(offer));
    const body = {
      jsonrpc: "2.0",
      id: 1,
      error: {
        code: 402,
        message: `payment required (${reason})`,
        data: {
          reason,
          challenges: [
            { type: "pow", difficulty },
            { type: "x402", x402Version: 2, accepts: [requirement], mode: "credits", credits: 3, header: "PAYMENT-REQUIRED" },
          ],
        },
      },
    };
    return new Response(JSON.stringify(body), { status: 402, headers });
  };
  const ok = (extra: Record<string, string> = {}) =>
    new Response(JSON.stringify({ jsonrpc: "2.0", id: 1, result: {} }), {
      status: 200,
      headers: { "content-type": "application/json", ...extra },
    });
  const mint = (extra: Record<string, string>) => {
    if (opts.credits === null) return ok(extra);
    const token = `tb1.k1.${Buffer.from(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 300 })).toString("base64url")}.sig${tokens.size}`;
    const left = (opts.credits ?? 3) - 1;
    tokens.set(token, left);
    return ok({ ...extra, [TOKEN_HEADER]: token, [CREDITS_HEADER]: String(left) });
  };

  const answer = async (h: Headers): Promise<Response> => {
    const signature = h.get(PAYMENT_SIGNATURE_HEADER);
    if (signature) {
      const payload = decodePaymentSignatureHeader(signature);
      const { authorization, signature: sig } = payload.payload as { authorization: Authorization; signature: Hex };
      const accepted = payload.accepted;
      const valid = await verifyTypedData({
        address: authorization.from as Hex,
        domain: { name: "USD Coin", version: "2", chainId: 31337, verifyingContract: getAddress(accepted.asset) },
        types: TRANSFER_WITH_AUTHORIZATION,
        primaryType: "TransferWithAuthorization",
        message: {
          from: getAddress(authorization.from),
          to: getAddress(authorization.to),
          value: BigInt(authorization.value),
          validAfter: BigInt(authorization.validAfter),
          validBefore: BigInt(authorization.validBefore),
          nonce: authorization.nonce,
        },
        signature: sig,
      });
      payments.push({ authorization, valid, accepted });
      const offered =
        accepted.scheme === requirement.scheme &&
        accepted.network === requirement.network &&
        accepted.asset.toLowerCase() === requirement.asset.toLowerCase() &&
        accepted.payTo === requirement.payTo;
      if (!offered) return refuse("x402_not_offered");
      if (BigInt(authorization.value) < BigInt(requirement.amount) || getAddress(authorization.to) !== getAddress(PAY_TO))
        return refuse("x402_underpaid");
      if (!valid || opts.refusePayments) return refuse("x402_invalid");
      if (spentNonces.has(authorization.nonce)) return refuse("x402_spent");
      spentNonces.add(authorization.nonce);
      const receipt = encodePaymentResponseHeader({
        success: true,
        transaction: `0x${"ab".repeat(32)}`,
        network: requirement.network,
        payer: authorization.from,
      });
      return mint({ [PAYMENT_RESPONSE_HEADER]: receipt });
    }
    const solution = h.get(SOLUTION_HEADER);
    if (solution) {
      const salt = /salt="([0-9a-f]+)"/.exec(solution)?.[1];
      const nonce = /nonce="([0-9]+)"/.exec(solution)?.[1];
      const digest = createHash("sha256").update(`${salt}${nonce}`).digest();
      if (!salt || !nonce || digest.readUInt32BE(0) >>> (32 - difficulty) !== 0) return refuse("solution_insufficient_work");
      return mint({});
    }
    const token = h.get(TOKEN_HEADER);
    if (token) {
      const left = tokens.get(token);
      if (left === undefined || left <= 0) return refuse("token_exhausted");
      tokens.set(token, left - 1);
      return ok({ [CREDITS_HEADER]: String(left - 1) });
    }
    return refuse("over_budget");
  };

  const fetch: FetchLike = async (_url, init) => {
    const headers = new Headers(init?.headers);
    requests.push(headers);
    return answer(headers);
  };
  return {
    fetch,
    requests,
    payments,
    /** How many requests carried a PAYMENT-SIGNATURE / a Tollbooth-Solution. */
    signed: () => requests.filter((h) => h.has(PAYMENT_SIGNATURE_HEADER)).length,
    solved: () => requests.filter((h) => h.has(SOLUTION_HEADER)).length,
  };
}

const x402Options = (over: Partial<X402Options> = {}): X402Options => ({
  signer: ACCOUNT,
  networks: [NETWORK],
  assets: [ASSET],
  maxPerRequest: 50_000n,
  maxPerHour: 1_000_000n,
  ...over,
});

const call = (f: FetchLike) =>
  f(URL_, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call" }),
  });

async function refusal(p: Promise<unknown>): Promise<TollboothError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TollboothError);
  return err as TollboothError;
}

describe("withTollbooth x402", () => {
  it("pays with a signature that verifies: from = signer, to = payTo, value = amount; PAYMENT-RESPONSE comes back", async () => {
    const gw = fakeGateway({ amount: "12345" });
    const events: X402PayEvent[] = [];
    const f = withTollbooth(gw.fetch, { pay: ["x402", "pow"], x402: x402Options({ onPay: (e) => events.push(e) }) });
    const res = await call(f);
    expect(res.status).toBe(200);
    expect(gw.signed()).toBe(1);
    expect(gw.solved()).toBe(0);
    const [payment] = gw.payments;
    expect(payment!.valid).toBe(true);
    expect(getAddress(payment!.authorization.from)).toBe(ACCOUNT.address);
    expect(getAddress(payment!.authorization.to)).toBe(getAddress(PAY_TO));
    expect(payment!.authorization.value).toBe("12345");
    expect(payment!.accepted).toMatchObject({ scheme: "exact", network: NETWORK, asset: ASSET, amount: "12345", payTo: PAY_TO });
    const receipt = decodePaymentResponseHeader(res.headers.get(PAYMENT_RESPONSE_HEADER)!);
    expect(receipt).toMatchObject({ success: true, network: NETWORK, payer: ACCOUNT.address });
    expect(events).toEqual([{ url: URL_, scheme: "x402", network: NETWORK, asset: ASSET, amount: "12345", ms: expect.any(Number) }]);
  });

  it("keeps the Tollbooth-Token a payment bought and reuses it until its credits run out", async () => {
    const gw = fakeGateway({ credits: 3 });
    const f = withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options() });
    for (let i = 0; i < 3; i++) expect((await call(f)).status).toBe(200);
    expect(gw.signed()).toBe(1);
    // The second and third requests went with the token, not a payment.
    expect(gw.requests.slice(2).every((h) => h.has(TOKEN_HEADER) && !h.has(PAYMENT_SIGNATURE_HEADER))).toBe(true);
    // Credits spent (Tollbooth-Credits: 0): the next request pays again.
    expect((await call(f)).status).toBe(200);
    expect(gw.signed()).toBe(2);
    expect(new Set(gw.payments.map((p) => p.authorization.nonce)).size).toBe(2);
  });

  it("follows the order of pay: pow first solves and never signs; x402 first signs and never solves", async () => {
    const powFirst = fakeGateway();
    expect((await call(withTollbooth(powFirst.fetch, { pay: ["pow", "x402"], x402: x402Options() }))).status).toBe(200);
    expect([powFirst.solved(), powFirst.signed()]).toEqual([1, 0]);

    const x402First = fakeGateway();
    expect((await call(withTollbooth(x402First.fetch, { pay: ["x402", "pow"], x402: x402Options() }))).status).toBe(200);
    expect([x402First.solved(), x402First.signed()]).toEqual([0, 1]);
  });

  it("a proof-of-work-only agent (the default) never signs, even with x402 options", async () => {
    const gw = fakeGateway();
    let signs = 0;
    const signer = {
      ...ACCOUNT,
      signTypedData: (...a: Parameters<typeof ACCOUNT.signTypedData>) => (signs++, ACCOUNT.signTypedData(...a)),
    };
    const f = withTollbooth(gw.fetch, { x402: x402Options({ signer }) });
    expect((await call(f)).status).toBe(200);
    expect([gw.solved(), gw.signed(), signs]).toEqual([1, 0, 0]);
  });

  it("refuses an amount over maxPerRequest (payment_refused, nothing signed)", async () => {
    const gw = fakeGateway({ amount: "50001" });
    const err = await refusal(call(withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options({ maxPerRequest: "50000" }) })));
    expect(err.code).toBe("payment_refused");
    expect(err.status).toBe(402);
    expect(err.message).toMatch(/maxPerRequest 50000/);
    expect(gw.signed()).toBe(0);
  });

  it("falls back to the next way of pay when x402 is over a limit", async () => {
    const gw = fakeGateway({ amount: "50001" });
    expect((await call(withTollbooth(gw.fetch, { pay: ["x402", "pow"], x402: x402Options({ maxPerRequest: 50_000n }) }))).status).toBe(200);
    expect([gw.solved(), gw.signed()]).toEqual([1, 0]);
  });

  it("refuses what would take the sliding hour over maxPerHour (per asset)", async () => {
    const gw = fakeGateway({ amount: "10000", credits: null });
    const f = withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options({ maxPerHour: 20_000n }) });
    expect((await call(f)).status).toBe(200);
    expect((await call(f)).status).toBe(200);
    const err = await refusal(call(f));
    expect(err.code).toBe("payment_refused");
    expect(err.message).toMatch(/20000 signed for in the last hour.*maxPerHour 20000/);
    expect(gw.signed()).toBe(2);

    // Another asset has its own hour.
    const other = fakeGateway({ amount: "10000", credits: null, asset: OTHER_ASSET });
    const g = withTollbooth(other.fetch, { pay: ["x402"], x402: x402Options({ maxPerHour: 10_000n, assets: [ASSET, OTHER_ASSET] }) });
    expect((await call(g)).status).toBe(200);
    expect(other.signed()).toBe(1);
  });

  it("refuses a network or an asset the caller did not allow (payment_refused, nothing signed)", async () => {
    const wrongNetwork = fakeGateway({ network: "eip155:8453" });
    const e1 = await refusal(call(withTollbooth(wrongNetwork.fetch, { pay: ["x402"], x402: x402Options() })));
    expect(e1.code).toBe("payment_refused");
    expect(e1.message).toMatch(/eip155:8453/);
    expect(wrongNetwork.signed()).toBe(0);

    const wrongAsset = fakeGateway({ asset: OTHER_ASSET });
    const e2 = await refusal(call(withTollbooth(wrongAsset.fetch, { pay: ["x402"], x402: x402Options() })));
    expect(e2.code).toBe("payment_refused");
    expect(wrongAsset.signed()).toBe(0);
  });

  it("compares assets case-insensitively", async () => {
    const gw = fakeGateway({ asset: ASSET.toLowerCase() });
    expect(
      (await call(withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options({ assets: [ASSET.toUpperCase().replace("0X", "0x")] }) })))
        .status,
    ).toBe(200);
    expect(gw.payments[0]!.valid).toBe(true);
  });

  it("reads the offer from error.data.challenges when there is no PAYMENT-REQUIRED header", async () => {
    const gw = fakeGateway({ bodyOnly: true });
    expect((await call(withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options() }))).status).toBe(200);
    expect(gw.payments[0]).toMatchObject({ valid: true, authorization: { value: "10000" } });
  });

  it("a 402 after the signed payment ends the call (challenge_refused)", async () => {
    const gw = fakeGateway({ refusePayments: true });
    const err = await refusal(call(withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options() })));
    expect(err.code).toBe("challenge_refused");
    expect(err.message).toMatch(/x402 payment.*x402_invalid/);
    expect(gw.signed()).toBe(1);
  });

  it("the fake gateway's check is real: a tampered authorization does not verify", async () => {
    const gw = fakeGateway();
    const tamper: FetchLike = (u, i) => {
      const headers = new Headers(i?.headers);
      const sig = headers.get(PAYMENT_SIGNATURE_HEADER);
      if (sig) {
        const payload = decodePaymentSignatureHeader(sig);
        (payload.payload as { authorization: Authorization }).authorization.value = "10001";
        headers.set(PAYMENT_SIGNATURE_HEADER, encodePaymentSignatureHeader(payload));
      }
      return gw.fetch(u, { ...i, headers });
    };
    const err = await refusal(call(withTollbooth(tamper, { pay: ["x402"], x402: x402Options() })));
    expect(err.code).toBe("challenge_refused");
    expect(gw.payments[0]!.valid).toBe(false);
  });

  it("a signer that throws → payment_failed", async () => {
    const gw = fakeGateway();
    const signer = { address: ACCOUNT.address, signTypedData: async () => Promise.reject(new Error("hardware wallet unplugged")) };
    const err = await refusal(call(withTollbooth(gw.fetch, { pay: ["x402"], x402: x402Options({ signer }) })));
    expect(err.code).toBe("payment_failed");
    expect(err.message).toMatch(/hardware wallet unplugged/);
  });

  it("an x402-only agent with no x402 offer: challenge_unreadable", async () => {
    const gw = fakeGateway();
    const noOffer: FetchLike = async (u, i) => {
      const res = await gw.fetch(u, i);
      const headers = new Headers(res.headers);
      headers.delete("payment-required");
      return new Response(JSON.stringify({ jsonrpc: "2.0", id: 1, error: { code: 402, message: "x" } }), { status: res.status, headers });
    };
    const err = await refusal(call(withTollbooth(noOffer, { pay: ["x402"], x402: x402Options() })));
    expect(err.code).toBe("challenge_unreadable");
  });

  it("rejects bad options at once with a TypeError naming the option", () => {
    const f = (o: WithTollboothOptions) => () => withTollbooth(async () => new Response(), o);
    expect(f({ pay: ["x402"] })).toThrow(/option x402/);
    expect(f({ pay: ["x402"], x402: x402Options({ maxPerHour: 0n }) })).toThrow(/x402\.maxPerHour/);
    expect(f({ pay: ["x402"], x402: x402Options({ maxPerRequest: "-5" }) })).toThrow(/x402\.maxPerRequest/);
    expect(f({ pay: ["x402"], x402: x402Options({ maxPerRequest: "1.5" }) })).toThrow(/x402\.maxPerRequest/);
    expect(f({ pay: ["x402"], x402: x402Options({ networks: [] }) })).toThrow(/x402\.networks/);
    expect(f({ pay: ["x402"], x402: x402Options({ networks: ["base"] }) })).toThrow(/x402\.networks/);
    expect(f({ pay: ["x402"], x402: x402Options({ assets: ["usdc"] }) })).toThrow(/x402\.assets/);
    expect(f({ pay: ["x402"], x402: x402Options({ signer: {} as X402Options["signer"] }) })).toThrow(/x402\.signer/);
    expect(f({ pay: ["pow", "x402"], x402: x402Options() })).not.toThrow();
  });
});
