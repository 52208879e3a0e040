/**
 * The x402 test rig against clients nobody here wrote: anvil + TestUSDC (test/helpers/chain.ts)
 * and a real facilitator (`x402Facilitator` + `@x402/evm` exact scheme,
 * test/helpers/facilitator.ts), paid by `@x402/evm`'s exact client through `@x402/core`'s
 * `x402Client`, and by `@x402/fetch`. Everything on-chain is real: EIP-712 signatures,
 * simulation, `transferWithAuthorization`.
 */

import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { x402Client } from "@x402/core/client";
import {
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentResponseHeader,
  HTTPFacilitatorClient,
} from "@x402/core/http";
import type { PaymentPayload, PaymentRequired, PaymentRequirements, SettleResponse, VerifyResponse } from "@x402/core/types";
import { authorizationTypes, eip3009ABI } from "@x402/evm";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { decodePaymentResponseHeader, wrapFetchWithPayment } from "@x402/fetch";
import { type Abi, type AbiFunction, getAddress, type Hex, toFunctionSignature } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Chain,
  type ChainAccount,
  COMPILED_JSON_PATH,
  compileContracts,
  loadCompiledContracts,
  NETWORK,
  PAYER_START_BALANCE,
  renderCompiledContracts,
  startChain,
  TEST_USDC_ABI,
  USDC_NAME,
  USDC_VERSION,
} from "../../helpers/chain.ts";
import { type Facilitator, startFacilitator } from "../../helpers/facilitator.ts";

const TOKEN = "fac-token-1";
let chain: Chain;
let fac: Facilitator;

beforeAll(async () => {
  chain = await startChain();
  fac = await startFacilitator(chain, { authToken: TOKEN });
}, 60_000);

afterAll(async () => {
  await fac?.close();
  await chain?.close();
});

function requirements(over: Partial<PaymentRequirements> = {}): PaymentRequirements {
  return {
    scheme: "exact",
    network: NETWORK,
    amount: "10000",
    asset: chain.usdc,
    payTo: chain.accounts.payTo.address,
    maxTimeoutSeconds: 120,
    extra: { name: USDC_NAME, version: USDC_VERSION },
    ...over,
  };
}

function paymentRequired(accepts: PaymentRequirements[]): PaymentRequired {
  return {
    x402Version: 2,
    error: "payment required",
    resource: { url: "http://127.0.0.1/tool", description: "a tool call", mimeType: "application/json" },
    accepts,
  };
}

/** A paying client: x402Client + @x402/evm exact scheme for a viem local account, TestUSDC allowed. */
function payingClient(payer: ChainAccount): x402Client {
  const client = new x402Client();
  registerExactEvmScheme(client, { signer: privateKeyToAccount(payer.privateKey) });
  return client.setSpendControls({ allowedAssets: [{ network: NETWORK, asset: chain.usdc }] });
}

async function post<T>(
  path: "/verify" | "/settle",
  paymentPayload: PaymentPayload,
  paymentRequirements: PaymentRequirements,
  token = TOKEN,
): Promise<{ status: number; body: T }> {
  const res = await fetch(fac.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ x402Version: 2, paymentPayload, paymentRequirements }),
  });
  return { status: res.status, body: (await res.json()) as T };
}

/** Signs an EIP-3009 TransferWithAuthorization by hand (for payloads the library client would not make). */
async function signedPayload(
  payer: ChainAccount,
  req: PaymentRequirements,
  auth: { value?: bigint; validAfter?: bigint; validBefore?: bigint; chainId?: number },
): Promise<PaymentPayload> {
  const account = privateKeyToAccount(payer.privateKey);
  const now = BigInt(Math.floor(Date.now() / 1000));
  const message = {
    from: account.address,
    to: getAddress(req.payTo),
    value: auth.value ?? BigInt(req.amount),
    validAfter: auth.validAfter ?? 0n,
    validBefore: auth.validBefore ?? now + 120n,
    nonce: `0x${randomBytes(32).toString("hex")}` as Hex,
  };
  const signature = await account.signTypedData({
    domain: { name: USDC_NAME, version: USDC_VERSION, chainId: auth.chainId ?? chain.chainId, verifyingContract: getAddress(req.asset) },
    types: authorizationTypes,
    primaryType: "TransferWithAuthorization",
    message,
  });
  return {
    x402Version: 2,
    accepted: req,
    payload: {
      signature,
      authorization: {
        ...message,
        value: message.value.toString(),
        validAfter: message.validAfter.toString(),
        validBefore: message.validBefore.toString(),
      },
    },
  };
}

describe("test/helpers/chain.ts", () => {
  it("runs anvil with TestUSDC deployed and the payers funded", async () => {
    expect(chain.chainId).toBe(31337);
    expect(chain.network).toBe("eip155:31337");
    expect(await chain.publicClient.getChainId()).toBe(31337);
    const rpc = await fetch(chain.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_accounts", params: [] }),
    });
    const rpcAccounts = ((await rpc.json()) as { result: string[] }).result.map((a) => getAddress(a));
    const ours = [chain.accounts.deployer, chain.accounts.facilitator, chain.accounts.payTo, ...chain.accounts.payers].map(
      (a) => a.address,
    );
    expect(ours).toEqual(rpcAccounts); // the hard-coded keys are anvil's dev keys, in order
    expect(chain.accounts.payers.length).toBeGreaterThanOrEqual(4);
    for (const p of chain.accounts.payers) expect(await chain.balanceOf(p.address)).toBe(PAYER_START_BALANCE);
    const read = <F extends "name" | "version" | "decimals" | "DOMAIN_SEPARATOR">(functionName: F) =>
      chain.publicClient.readContract({ address: chain.usdc, abi: TEST_USDC_ABI, functionName });
    expect(await read("name")).toBe("USD Coin");
    expect(await read("version")).toBe("2");
    expect(await read("decimals")).toBe(6);
    const domain = await chain.publicClient.readContract({ address: chain.usdc, abi: TEST_USDC_ABI, functionName: "eip712Domain" });
    expect(domain.slice(0, 5)).toEqual(["0x0f", "USD Coin", "2", 31337n, chain.usdc]);
  });

  it("deploys the committed compiler output, which is exactly what the .sol sources compile to", async () => {
    const fresh = await compileContracts();
    expect(
      await readFile(COMPILED_JSON_PATH, "utf8"),
      "stale: run node -e 'import(\"./test/helpers/chain.ts\").then((m) => m.writeCompiledContracts())'",
    ).toBe(renderCompiledContracts(fresh));
    expect(await chain.publicClient.getCode({ address: chain.usdc })).toBe(fresh.TestUSDC.deployedBytecode);
  }, 30_000);

  it("implements every function of @x402/evm's EIP-3009 ABI and the typed subset", () => {
    const { TestUSDC } = loadCompiledContracts();
    const sigs = new Set(TestUSDC.abi.filter((x): x is AbiFunction => x.type === "function").map((f) => toFunctionSignature(f)));
    const wanted = ([...eip3009ABI, ...TEST_USDC_ABI] as Abi)
      .filter((x): x is AbiFunction => x.type === "function")
      .map((f) => toFunctionSignature(f));
    // eip3009ABI also lists EIP-2612 `permit`/`nonces` (used only for Permit2 flows, not by the exact EIP-3009 path).
    const missing = wanted.filter((s) => !sigs.has(s) && !/^(permit|nonces)\(/.test(s));
    expect(missing).toEqual([]);
  });

  it("mints and reads balances", async () => {
    const someone = privateKeyToAccount(`0x${randomBytes(32).toString("hex")}`).address;
    await Promise.all([chain.mint(someone, 5n), chain.mint(someone, 7n)]);
    expect(await chain.balanceOf(someone)).toBe(12n);
  });
});

describe("test/helpers/facilitator.ts with @x402/evm's exact client", () => {
  it("answers /supported with the exact scheme on eip155:31337 and its signer", async () => {
    const res = await fetch(`${fac.url}/supported`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      kinds: { x402Version: number; scheme: string; network: string }[];
      signers: Record<string, string[]>;
    };
    expect(body.kinds).toContainEqual(expect.objectContaining({ x402Version: 2, scheme: "exact", network: "eip155:31337" }));
    expect(Object.values(body.signers).flat()).toContain(chain.accounts.facilitator.address);
  });

  it("verifies and settles a payment on chain, once", async () => {
    const payer = chain.accounts.payers[0]!;
    const req = requirements();
    const payload = await payingClient(payer).createPaymentPayload(paymentRequired([req]));
    expect(payload.x402Version).toBe(2);
    expect(payload.accepted).toEqual(req);
    const auth = (payload.payload as { authorization: { from: string; to: string; value: string; nonce: Hex } }).authorization;
    expect(auth).toMatchObject({ from: payer.address, to: chain.accounts.payTo.address, value: "10000" });

    const payerBefore = await chain.balanceOf(payer.address);
    const payToBefore = await chain.balanceOf(chain.accounts.payTo.address);
    const before = fac.calls();

    const verified = await post<VerifyResponse>("/verify", payload, req);
    expect(verified).toEqual({ status: 200, body: { isValid: true, payer: payer.address } });

    const settled = await post<SettleResponse>("/settle", payload, req);
    expect(settled.status).toBe(200);
    expect(settled.body).toMatchObject({ success: true, network: "eip155:31337", payer: payer.address });
    expect(settled.body.transaction).toMatch(/^0x[0-9a-f]{64}$/);
    const receipt = await chain.publicClient.getTransactionReceipt({ hash: settled.body.transaction as Hex });
    expect(receipt.status).toBe("success");
    expect(getAddress(receipt.from)).toBe(chain.accounts.facilitator.address);

    expect(await chain.balanceOf(payer.address)).toBe(payerBefore - 10000n);
    expect(await chain.balanceOf(chain.accounts.payTo.address)).toBe(payToBefore + 10000n);
    expect(await chain.authorizationState(payer.address, auth.nonce)).toBe(true);
    expect(fac.calls()).toEqual({ verify: before.verify + 1, settle: before.settle + 1 });

    // The same authorization again: refused, nothing moves.
    const again = await post<SettleResponse>("/settle", payload, req);
    expect(again.status).toBe(200);
    expect(again.body.success).toBe(false);
    expect(again.body.errorReason).toBe("invalid_exact_evm_nonce_already_used");
    const reverify = await post<VerifyResponse>("/verify", payload, req);
    expect(reverify.body).toMatchObject({ isValid: false, invalidReason: "invalid_exact_evm_nonce_already_used" });
    expect(await chain.balanceOf(payer.address)).toBe(payerBefore - 10000n);
    expect(await chain.balanceOf(chain.accounts.payTo.address)).toBe(payToBefore + 10000n);
  });

  it("refuses underpaid, wrong-network, expired, misdirected and unfunded payloads at /verify", async () => {
    const payer = chain.accounts.payers[1]!;
    const req = requirements();
    const balance = await chain.balanceOf(payer.address);

    // Underpaid: the library client signing a lower offer, presented against the real requirement.
    const cheap = await payingClient(payer).createPaymentPayload(paymentRequired([requirements({ amount: "9999" })]));
    expect((await post<VerifyResponse>("/verify", cheap, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_payload_authorization_value_mismatch",
      payer: payer.address,
    });

    // Wrong network: signed for eip155:1 (chain id 1 in the EIP-712 domain).
    const mainnetClient = new x402Client();
    registerExactEvmScheme(mainnetClient, { signer: privateKeyToAccount(payer.privateKey) });
    mainnetClient.setSpendControls({ allowedAssets: [{ network: "eip155:1", asset: chain.usdc }] });
    const mainnet = await mainnetClient.createPaymentPayload(paymentRequired([requirements({ network: "eip155:1" })]));
    expect((await post<VerifyResponse>("/verify", mainnet, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_network_mismatch",
    });
    // …and a requirement on a network this facilitator does not serve: 500 with the library's message.
    const unserved = await post<{ error: string }>("/verify", mainnet, requirements({ network: "eip155:1" }));
    expect(unserved.status).toBe(500);
    expect(unserved.body.error).toMatch(/No facilitator registered/);

    // Expired: validBefore in the past.
    const now = BigInt(Math.floor(Date.now() / 1000));
    const expired = await signedPayload(payer, req, { validAfter: now - 600n, validBefore: now - 60n });
    expect((await post<VerifyResponse>("/verify", expired, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_payload_authorization_valid_before",
    });
    // The same hand-signing path, unexpired, is accepted (so the refusal above is about time).
    expect((await post<VerifyResponse>("/verify", await signedPayload(payer, req, {}), req)).body).toMatchObject({ isValid: true });

    // Signed with the wrong chain id but claiming eip155:31337: bad signature.
    const forged = await signedPayload(payer, req, { chainId: 1 });
    expect((await post<VerifyResponse>("/verify", forged, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_signature",
    });

    // Paying someone else than payTo.
    const elsewhere = await payingClient(payer).createPaymentPayload(
      paymentRequired([requirements({ payTo: chain.accounts.deployer.address })]),
    );
    expect((await post<VerifyResponse>("/verify", elsewhere, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_recipient_mismatch",
    });

    // A wallet without USDC: the simulation fails, Multicall3 diagnoses it.
    const broke = { address: privateKeyToAccount(`0x${"11".repeat(32)}`).address, privateKey: `0x${"11".repeat(32)}` as Hex };
    const unfunded = await payingClient(broke).createPaymentPayload(paymentRequired([req]));
    expect((await post<VerifyResponse>("/verify", unfunded, req)).body).toMatchObject({
      isValid: false,
      invalidReason: "invalid_exact_evm_insufficient_balance",
    });

    // Settling a refused payload moves nothing either.
    expect((await post<SettleResponse>("/settle", cheap, req)).body).toMatchObject({ success: false, transaction: "" });
    expect(await chain.balanceOf(payer.address)).toBe(balance);
  });

  it("answers 503 while down, 401 without the token, 400 on a bad body", async () => {
    const req = requirements();
    const payload = await payingClient(chain.accounts.payers[2]!).createPaymentPayload(paymentRequired([req]));
    const before = fac.calls();
    fac.setDown(true);
    try {
      expect((await post("/verify", payload, req)).status).toBe(503);
      expect((await fetch(`${fac.url}/supported`)).status).toBe(503);
    } finally {
      fac.setDown(false);
    }
    expect((await post("/verify", payload, req, "wrong")).status).toBe(401);
    const bad = await fetch(`${fac.url}/verify`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: "{" });
    expect(bad.status).toBe(400);
    expect(fac.calls()).toEqual(before);
  });
});

describe("@x402/fetch paying through the facilitator", () => {
  it("pays a 402 PAYMENT-REQUIRED server, which verifies and settles via HTTPFacilitatorClient", async () => {
    const payer = chain.accounts.payers[3]!;
    const req = requirements({ amount: "25000" });
    const facClient = new HTTPFacilitatorClient({
      url: fac.url,
      createAuthHeaders: async () => {
        const headers = { Authorization: `Bearer ${TOKEN}` };
        return { verify: headers, settle: headers, supported: headers };
      },
    });
    const seen: string[] = [];
    const server = http.createServer((request, response) => {
      void (async () => {
        const sig = request.headers["payment-signature"];
        seen.push(typeof sig === "string" ? "paid" : "unpaid");
        if (typeof sig !== "string") {
          const required = paymentRequired([req]);
          response
            .writeHead(402, { "content-type": "application/json", "PAYMENT-REQUIRED": encodePaymentRequiredHeader(required) })
            .end(JSON.stringify(required));
          return;
        }
        const payload = decodePaymentSignatureHeader(sig);
        const verified = await facClient.verify(payload, req);
        if (!verified.isValid) {
          response.writeHead(402, { "content-type": "application/json" }).end(JSON.stringify(verified));
          return;
        }
        const settled = await facClient.settle(payload, req);
        response
          .writeHead(settled.success ? 200 : 402, {
            "content-type": "application/json",
            "PAYMENT-RESPONSE": encodePaymentResponseHeader(settled),
          })
          .end(JSON.stringify({ ok: settled.success }));
      })().catch((err: unknown) => response.writeHead(500).end(String(err)));
    });
    await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tool`;
      const payerBefore = await chain.balanceOf(payer.address);
      const payToBefore = await chain.balanceOf(chain.accounts.payTo.address);

      const payFetch = wrapFetchWithPayment(fetch, payingClient(payer));
      const res = await payFetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ ok: true });
      const receipt = decodePaymentResponseHeader(res.headers.get("PAYMENT-RESPONSE")!);
      expect(receipt).toMatchObject({ success: true, network: "eip155:31337", payer: payer.address });
      expect(receipt.transaction).toMatch(/^0x[0-9a-f]{64}$/);
      expect(seen).toEqual(["unpaid", "paid"]);
      expect(await chain.balanceOf(payer.address)).toBe(payerBefore - 25000n);
      expect(await chain.balanceOf(chain.accounts.payTo.address)).toBe(payToBefore + 25000n);

      // Without allowedAssets the client refuses TestUSDC (not one of its default assets).
      const strict = new x402Client();
      registerExactEvmScheme(strict, { signer: privateKeyToAccount(payer.privateKey) });
      await expect(wrapFetchWithPayment(fetch, strict)(url)).rejects.toThrow(/spendControls/);
      expect(await chain.balanceOf(payer.address)).toBe(payerBefore - 25000n);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
