/**
 * The local check of an x402 `exact` EVM payment (workers/schemes/x402/authorization.ts): its
 * EIP-712 hash is viem's `hashTypedData` for any domain and authorization (authorizations
 * signed by viem accounts are accepted; fast-check over names, versions, chain ids, amounts
 * and times), and every way to walk around it is refused with the facilitator's own code:
 * another key's signature, any signed field changed afterwards, a signature that recovers to
 * nobody (bad v, r or s; not 65 bytes; a smart wallet's longer signature), a payee or amount
 * other than the requirement's, a window not open yet or closing within 6 s, an address whose
 * EIP-55 checksum is wrong, fields not of EIP-3009's form.
 */
import type { PaymentPayload, PaymentRequirements } from "@x402/core/types";
import fc from "fast-check";
import { type Hex, hashTypedData } from "viem";
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import { describe, expect, it } from "vitest";
import { checkAuthorization } from "../../../../../workers/schemes/x402/authorization.ts";

const TYPES = {
  TransferWithAuthorization: [
    { name: "from", type: "address" },
    { name: "to", type: "address" },
    { name: "value", type: "uint256" },
    { name: "validAfter", type: "uint256" },
    { name: "validBefore", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

const PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const ASSET = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const NOW_MS = 1_900_000_000_000;
const NOW_S = NOW_MS / 1000;

interface Terms {
  name: string;
  version: string;
  chainId: bigint;
  asset: string;
  payTo: string;
  amount: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
}

const base: Terms = {
  name: "USD Coin",
  version: "2",
  chainId: 8453n,
  asset: ASSET,
  payTo: PAY_TO,
  amount: 10_000n,
  validAfter: BigInt(NOW_S - 600),
  validBefore: BigInt(NOW_S + 120),
  nonce: `0x${"07".repeat(32)}`,
};

/** The requirement `t` describes, as the gateway offers it. */
const requirementOf = (t: Terms): PaymentRequirements => ({
  scheme: "exact",
  network: `eip155:${t.chainId}`,
  asset: t.asset,
  amount: String(t.amount),
  payTo: t.payTo,
  maxTimeoutSeconds: 120,
  extra: { name: t.name, version: t.version },
});

/** A payment of `t` signed by `account` with viem's `signTypedData` (its own `hashTypedData`). */
async function signedBy(account: PrivateKeyAccount, t: Terms): Promise<PaymentPayload> {
  const message = {
    from: account.address,
    to: t.payTo as Hex,
    value: t.amount,
    validAfter: t.validAfter,
    validBefore: t.validBefore,
    nonce: t.nonce,
  };
  const signature = await account.signTypedData({
    domain: { name: t.name, version: t.version, chainId: t.chainId, verifyingContract: t.asset as Hex },
    types: TYPES,
    primaryType: "TransferWithAuthorization",
    message,
  });
  const authorization = {
    from: account.address,
    to: t.payTo,
    value: String(t.amount),
    validAfter: String(t.validAfter),
    validBefore: String(t.validBefore),
    nonce: t.nonce,
  };
  return {
    x402Version: 2,
    resource: { url: "https://gw.example/mcp" },
    accepted: requirementOf(t),
    payload: { signature, authorization },
  } as PaymentPayload;
}

/** The payment with its signature or authorization fields replaced. */
function edited(p: PaymentPayload, change: { signature?: string; authorization?: Record<string, string> }): PaymentPayload {
  const body = p.payload as { signature: string; authorization: Record<string, string> };
  return {
    ...p,
    payload: { signature: change.signature ?? body.signature, authorization: { ...body.authorization, ...change.authorization } },
  };
}

const account = privateKeyToAccount(generatePrivateKey());
const invalid = (detail: string) => ({ ok: false, reason: "invalid", detail });

describe("EIP-712 as viem hashes it", () => {
  it("a viem account's signature over any domain and authorization recovers to its address", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          name: fc.string({ minLength: 1, maxLength: 64 }),
          version: fc.string({ minLength: 1, maxLength: 16 }),
          chainId: fc.bigInt({ min: 1n, max: 10n ** 19n }),
          amount: fc.bigInt({ min: 1n, max: (1n << 256n) - 1n }),
          after: fc.integer({ min: 0, max: 10 ** 6 }),
          before: fc.integer({ min: 6, max: 10 ** 6 }),
          nonce: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        }),
        async (r) => {
          const t: Terms = {
            ...base,
            name: r.name,
            version: r.version,
            chainId: r.chainId,
            amount: r.amount,
            validAfter: BigInt(NOW_S - r.after),
            validBefore: BigInt(NOW_S + r.before),
            nonce: `0x${Buffer.from(r.nonce).toString("hex")}`,
          };
          const p = await signedBy(account, t);
          expect(checkAuthorization(p, requirementOf(t), NOW_MS)).toEqual({ ok: true, payer: account.address.toLowerCase() });
        },
      ),
      { numRuns: 60 },
    );
  });

  it("the digest the signature covers is viem's hashTypedData: a signature over that hash alone (sign, no typed data) is accepted too", async () => {
    const hash = hashTypedData({
      domain: { name: base.name, version: base.version, chainId: base.chainId, verifyingContract: base.asset as Hex },
      types: TYPES,
      primaryType: "TransferWithAuthorization",
      message: {
        from: account.address,
        to: PAY_TO,
        value: base.amount,
        validAfter: base.validAfter,
        validBefore: base.validBefore,
        nonce: base.nonce,
      },
    });
    const raw = await account.sign({ hash });
    const p = edited(await signedBy(account, base), { signature: raw });
    expect(checkAuthorization(p, requirementOf(base), NOW_MS)).toEqual({ ok: true, payer: account.address.toLowerCase() });
  });
});

describe("forgeries", () => {
  it("another key's signature, or any signed field changed after signing: invalid_exact_evm_signature", async () => {
    const p = await signedBy(account, base);
    const theirs = await signedBy(privateKeyToAccount(generatePrivateKey()), base);
    expect(
      checkAuthorization(edited(p, { signature: (theirs.payload as { signature: string }).signature }), requirementOf(base), NOW_MS),
    ).toEqual(invalid("invalid_exact_evm_signature"));
    // The thief's own payment names the thief: recovered, but not the victim's.
    expect(checkAuthorization(edited(theirs, { authorization: { from: account.address } }), requirementOf(base), NOW_MS)).toEqual(
      invalid("invalid_exact_evm_signature"),
    );
    const changes: Array<Record<string, string>> = [
      { nonce: `0x${"08".repeat(32)}` },
      { validBefore: String(base.validBefore + 1n) },
      { validAfter: String(base.validAfter - 1n) },
    ];
    for (const change of changes) {
      expect(checkAuthorization(edited(p, { authorization: change }), requirementOf(base), NOW_MS), JSON.stringify(change)).toEqual(
        invalid("invalid_exact_evm_signature"),
      );
    }
    // Signed for another token, chain, or domain name and version than the requirement's.
    for (const other of [{ asset: `0x${"22".repeat(20)}` }, { chainId: 1n }, { name: "USDC" }, { version: "1" }]) {
      const q = await signedBy(account, { ...base, ...other });
      expect(
        checkAuthorization(q, requirementOf(base), NOW_MS),
        JSON.stringify(other, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
      ).toEqual(invalid("invalid_exact_evm_signature"));
    }
  });

  it("a signature that recovers to nobody: v not 27/28/0/1, r or s zero or ≥ n, 64 or 66 bytes, a longer smart-wallet signature", async () => {
    const p = await signedBy(account, base);
    const sig = (p.payload as { signature: string }).signature;
    const n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    const bad = [
      `${sig.slice(0, -2)}1d`,
      `${sig.slice(0, -2)}02`,
      `0x${"00".repeat(32)}${sig.slice(66)}`,
      `${sig.slice(0, 66)}${"00".repeat(32)}${sig.slice(-2)}`,
      `0x${n}${sig.slice(66)}`,
      sig.slice(0, -2),
      `${sig}00`,
      `${sig}${"6492".repeat(16)}`,
    ];
    for (const s of bad)
      expect(checkAuthorization(edited(p, { signature: s }), requirementOf(base), NOW_MS), s).toEqual(
        invalid("invalid_exact_evm_signature"),
      );
    // v as the bare recovery id (0/1) is the same signature.
    const v = parseInt(sig.slice(-2), 16) - 27;
    expect(checkAuthorization(edited(p, { signature: `${sig.slice(0, -2)}0${v}` }), requirementOf(base), NOW_MS)).toMatchObject({
      ok: true,
    });
  });

  it("a mixed-case address whose EIP-55 checksum is wrong: refused as viem (the facilitator) refuses it; all-lowercase is fine", async () => {
    const p = await signedBy(account, base);
    const from = account.address;
    const flipped =
      from.slice(0, 2) +
      [...from.slice(2)]
        .map((c, i) => (i === from.slice(2).search(/[a-fA-F]/) ? (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()) : c))
        .join("");
    expect(checkAuthorization(edited(p, { authorization: { from: flipped } }), requirementOf(base), NOW_MS)).toEqual(
      invalid("invalid_exact_evm_signature"),
    );
    expect(checkAuthorization(edited(p, { authorization: { from: from.toLowerCase() } }), requirementOf(base), NOW_MS)).toMatchObject({
      ok: true,
    });
  });
});

describe("the terms", () => {
  it("another payee, or a value other than the requirement's amount: invalid with the facilitator's code", async () => {
    const otherPayee = await signedBy(account, { ...base, payTo: `0x${"33".repeat(20)}` });
    expect(checkAuthorization(otherPayee, requirementOf(base), NOW_MS)).toEqual(invalid("invalid_exact_evm_recipient_mismatch"));
    const more = await signedBy(account, { ...base, amount: base.amount + 1n });
    expect(checkAuthorization(more, requirementOf(base), NOW_MS)).toEqual(
      invalid("invalid_exact_evm_payload_authorization_value_mismatch"),
    );
  });

  it("the window: validBefore less than 6 s ahead is expired; validAfter ahead of now is not valid yet", async () => {
    const closing = await signedBy(account, { ...base, validBefore: BigInt(NOW_S + 5) });
    expect(checkAuthorization(closing, requirementOf(base), NOW_MS)).toEqual({
      ok: false,
      reason: "expired",
      detail: "invalid_exact_evm_payload_authorization_valid_before",
    });
    const sixAhead = await signedBy(account, { ...base, validBefore: BigInt(NOW_S + 6) });
    expect(checkAuthorization(sixAhead, requirementOf(base), NOW_MS)).toMatchObject({ ok: true });
    const early = await signedBy(account, { ...base, validAfter: BigInt(NOW_S + 1) });
    expect(checkAuthorization(early, requirementOf(base), NOW_MS)).toEqual(invalid("invalid_exact_evm_payload_authorization_valid_after"));
  });

  it("fields not of EIP-3009's form: malformed", async () => {
    const p = await signedBy(account, base);
    const bad: Array<{ signature?: string; authorization?: Record<string, string> }> = [
      { signature: "not-hex" },
      { signature: "0x123" },
      { authorization: { from: "0x1234" } },
      { authorization: { to: "payee" } },
      { authorization: { value: "-1" } },
      { authorization: { value: "1e4" } },
      { authorization: { value: "0x2710" } },
      { authorization: { validBefore: "01" } },
      { authorization: { nonce: "0x07" } },
      { authorization: { value: "1".repeat(79) } },
    ];
    for (const change of bad)
      expect(checkAuthorization(edited(p, change), requirementOf(base), NOW_MS), JSON.stringify(change)).toMatchObject({
        ok: false,
        reason: "malformed",
      });
    expect(
      checkAuthorization(
        { ...p, payload: { authorization: (p.payload as { authorization: unknown }).authorization } } as PaymentPayload,
        requirementOf(base),
        NOW_MS,
      ),
    ).toMatchObject({ ok: false, reason: "malformed" });
  });
});
