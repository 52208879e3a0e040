/**
 * Payment peers for the "workers" tests, answered in process through the `fetch` the Worker
 * calls (see `observeOrigin`'s `services` in ./support.ts): a fake x402 facilitator
 * (`POST /verify`, `POST /settle` of x402 v2, as `@x402/core`'s `HTTPFacilitatorClient`
 * calls them) and a fake LND REST backend (`POST /v1/invoices`) issuing BOLT11 invoices whose
 * preimages the test knows. Signatures and the chain are the end-to-end tests' business
 * (test/e2e/x402*.test.ts with anvil and a real facilitator, test/e2e/l402-lightning.test.ts
 * with the Lightning stand-in): here only what the gateway does with a payment is exercised.
 *
 * Everything is written from the specs, independently of shared/ and workers/: x402 v2
 * `PaymentPayload` (x402-foundation `specs/x402-specification-v2.md`, exact EVM scheme;
 * signed for real with a viem account, as the gateway recovers the signer itself),
 * BOLT11 (bech32, BIP-173; the invoice fields of BOLT #11) with an all-zero signature (the
 * gateway decodes invoices, it does not check their signature).
 */
import type { Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { b64url, hex, sha256 } from "./support.ts";

// ---------------------------------------------------------------------------------------------
// x402

/** A facilitator base URL the tests' `fetch` answers (never on the network). */
export const FACILITATOR_URL = "http://facilitator.test";
export const NETWORK = "eip155:84532";
/** The EIP-3009 token accepted (any 20-byte address: the fake facilitator checks nothing on chain; the signature's domain names it). */
export const ASSET = `0x${"a5".repeat(20)}`;
export const PAY_TO = `0x${"7e".repeat(20)}`;

/** The policy's `facilitator` section for the fake facilitator. */
export const FACILITATOR = {
  url: FACILITATOR_URL,
  payTo: PAY_TO,
  assets: [{ network: NETWORK, asset: ASSET, name: "USD Coin", version: "2" }],
};

/** An x402 v2 PaymentPayload of the exact EVM scheme (EIP-3009 `transferWithAuthorization`). */
export interface X402Payment {
  x402Version: 2;
  resource: { url: string; description: string; mimeType: string };
  accepted: {
    scheme: string;
    network: string;
    asset: string;
    amount: string;
    payTo: string;
    maxTimeoutSeconds: number;
    extra: { name: string; version: string };
  };
  payload: {
    signature: string;
    authorization: { from: string; to: string; value: string; validAfter: string; validBefore: string; nonce: string };
  };
}

const randomHex = (bytes: number) => hex(crypto.getRandomValues(new Uint8Array(bytes)));

/** EIP-3009's signed struct (`transferWithAuthorization`), as the x402 exact EVM scheme signs it. */
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

/**
 * A payment of `amount` atomic units (as signed) to the policy's payee, signed (EIP-712, a viem
 * account) by a fresh payer (or the key `key`), with a fresh nonce, valid 5 minutes;
 * `accepted` overrides the requirement it claims (the signature covers the asset and network
 * it names).
 */
export async function x402Payment(
  amount: string,
  opts: { key?: Hex; accepted?: Partial<X402Payment["accepted"]> } = {},
): Promise<X402Payment> {
  const account = privateKeyToAccount(opts.key ?? generatePrivateKey());
  const nowS = Math.floor(Date.now() / 1000);
  const accepted = {
    scheme: "exact",
    network: NETWORK,
    asset: ASSET,
    amount,
    payTo: PAY_TO,
    maxTimeoutSeconds: 120,
    extra: { name: "USD Coin", version: "2" },
    ...opts.accepted,
  };
  const authorization = {
    from: account.address,
    to: PAY_TO,
    value: amount,
    validAfter: String(nowS - 600),
    validBefore: String(nowS + 300),
    nonce: `0x${randomHex(32)}`,
  };
  const signature = await account.signTypedData({
    domain: {
      name: accepted.extra.name,
      version: accepted.extra.version,
      chainId: Number(accepted.network.split(":")[1]),
      verifyingContract: accepted.asset as Hex,
    },
    types: TRANSFER_WITH_AUTHORIZATION,
    primaryType: "TransferWithAuthorization",
    message: {
      ...authorization,
      to: PAY_TO as Hex,
      value: BigInt(amount),
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce as Hex,
    },
  });
  return {
    x402Version: 2,
    resource: { url: "http://gw.test/mcp", description: "tools/call echo", mimeType: "application/json" },
    accepted,
    payload: { signature, authorization },
  };
}

/** Base64 (standard alphabet, padded) of a value's JSON, as `PAYMENT-SIGNATURE` / `X-PAYMENT` and `agents/x402`'s `_meta` carry it. */
export function base64Json(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return btoa(String.fromCharCode(...bytes));
}

/** JSON of a base64 header value (PAYMENT-REQUIRED, PAYMENT-RESPONSE). */
export function fromBase64Json(value: string): any {
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(value), (c) => c.charCodeAt(0))));
}

/** What a `/settle` of the fake facilitator answers for a payment. */
export const settlement = (p: X402Payment) => ({
  success: true,
  transaction: `0x${"ab".repeat(32)}`,
  network: p.accepted.network,
  payer: p.payload.authorization.from,
});

/**
 * The fake facilitator: every `/verify` is valid (the payer is the authorization's `from`) and
 * every `/settle` succeeds, unless told otherwise (`setVerdict`) or down (`setDown`). Records each call's body.
 */
export function fakeFacilitator(): {
  service: (req: Request, body: string) => Response;
  calls: {
    verify: Array<{ paymentPayload: X402Payment; paymentRequirements: Record<string, unknown> }>;
    settle: Array<{ paymentPayload: X402Payment; paymentRequirements: Record<string, unknown> }>;
  };
  /** While true, every call answers 503 without a verdict (the facilitator is down); not counted. */
  setDown(down: boolean): void;
  /** `/verify`'s answer from now on (null: valid, the payer the authorization's `from`). */
  setVerdict(verdict: Record<string, unknown> | null): void;
} {
  const calls = { verify: [] as any[], settle: [] as any[] };
  let down = false;
  let verdict: Record<string, unknown> | null = null;
  const service = (req: Request, body: string): Response => {
    const path = new URL(req.url).pathname;
    if (down) return Response.json({ error: "facilitator down" }, { status: 503 });
    const parsed = JSON.parse(body) as { paymentPayload: X402Payment; paymentRequirements: Record<string, unknown> };
    if (req.method === "POST" && path === "/verify") {
      calls.verify.push(parsed);
      return Response.json(verdict ?? { isValid: true, payer: parsed.paymentPayload.payload.authorization.from });
    }
    if (req.method === "POST" && path === "/settle") {
      calls.settle.push(parsed);
      return Response.json(settlement(parsed.paymentPayload));
    }
    return Response.json({ error: "not found" }, { status: 404 });
  };
  return { service, calls, setDown: (d) => void (down = d), setVerdict: (v) => void (verdict = v) };
}

// ---------------------------------------------------------------------------------------------
// Lightning (L402)

/** The fake LND's base URL and the invoice macaroon it accepts (`TOLLBOOTH_LIGHTNING_SECRET`). */
export const LND_URL = "http://lnd.test";
export const LND_MACAROON_HEX = `0201036c6e64${"5a".repeat(32)}`;

const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/** BIP-173 checksum polymod. */
function polymod(values: number[]): number {
  const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GEN[i]!;
  }
  return chk;
}

/** bech32 (BIP-173) of 5-bit `words` under `hrp`, without the 90-character limit (BOLT11 lifts it). */
function bech32(hrp: string, words: number[]): string {
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  const mod = polymod([...expanded, ...words, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...words, ...checksum].map((w) => CHARSET[w]).join("")}`;
}

/** Bytes as 5-bit words, big-endian, the last padded with zero bits. */
function toWords(bytes: Uint8Array): number[] {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out.push((acc >>> (bits - 5)) & 31);
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out.push((acc << (5 - bits)) & 31);
  return out;
}

/** A non-negative integer as `length` 5-bit words (or as few as it needs), big-endian. */
function intWords(n: number, length?: number): number[] {
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 32)) out.unshift(v % 32);
  while (out.length < (length ?? 1)) out.unshift(0);
  return out;
}

/** A tagged field of BOLT11: type, 10-bit data length, data. */
const tagged = (type: number, data: number[]) => [type, ...intWords(data.length, 2), ...data];

/**
 * A regtest BOLT11 invoice (`lnbcrt…`) for `sats` with `paymentHash` (hex), created at
 * `timestamp` (unix s) and expiring `expirySeconds` later; its signature is all zeros.
 */
export function bolt11(sats: number, paymentHash: string, timestamp: number, expirySeconds: number, memo: string): string {
  const hashBytes = Uint8Array.from(paymentHash.match(/../g)!, (h) => parseInt(h, 16));
  const words = [
    ...intWords(timestamp, 7),
    ...tagged(1, toWords(hashBytes)),
    ...tagged(13, toWords(new TextEncoder().encode(memo))),
    ...tagged(6, intWords(expirySeconds)),
    ...tagged(16, toWords(crypto.getRandomValues(new Uint8Array(32)))),
    ...toWords(new Uint8Array(65)),
  ];
  // 1 "n" is 100 msat: `sats` × 10 of them.
  return bech32(`lnbcrt${sats * 10}n`, words);
}

/** The fake LND: `POST /v1/invoices` makes an invoice of a fresh preimage; `preimageOf` pays one (reveals its preimage). */
export function fakeLnd(): {
  service: (req: Request, body: string) => Promise<Response>;
  created: () => number;
  preimageOf: (invoice: string) => string;
} {
  const preimages = new Map<string, string>();
  const service = async (req: Request, body: string): Promise<Response> => {
    if (req.method !== "POST" || new URL(req.url).pathname !== "/v1/invoices")
      return Response.json({ message: "Not Found" }, { status: 404 });
    if (req.headers.get("grpc-metadata-macaroon") !== LND_MACAROON_HEX)
      return Response.json({ message: "verification failed" }, { status: 401 });
    const { value, memo, expiry } = JSON.parse(body) as { value: string; memo: string; expiry: string };
    const preimage = crypto.getRandomValues(new Uint8Array(32));
    const hash = await sha256(preimage);
    const invoice = bolt11(Number(value), hex(hash), Math.floor(Date.now() / 1000), Number(expiry), memo);
    preimages.set(invoice, hex(preimage));
    return Response.json({
      r_hash: btoa(String.fromCharCode(...hash)),
      payment_request: invoice,
      add_index: String(preimages.size),
      payment_addr: b64url(hash),
    });
  };
  return {
    service,
    created: () => preimages.size,
    preimageOf: (invoice) => {
      const p = preimages.get(invoice);
      if (p === undefined) throw new Error(`the fake LND never issued ${invoice}`);
      return p;
    },
  };
}
