/**
 * The operator's invoice backends (workers/schemes/l402/invoices.ts) and the agent's LND wallet
 * (packages/tollbooth-client/src/payers/lightning-wallet.ts) against the loopback Lightning
 * stand-in, which issues real signed regtest BOLT11 invoices.
 */
import { createECDH, createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import bolt11 from "bolt11";
import { decode } from "light-bolt11-decoder";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { TollboothError } from "../../../../../packages/tollbooth-client/src/errors.ts";
import { invoiceAmountSats, invoicePaymentHash, lndWallet } from "../../../../../packages/tollbooth-client/src/payers/lightning-wallet.ts";
import { InvoiceError, type InvoiceFetch, lnbitsInvoices, lndInvoices } from "../../../../../workers/schemes/l402/invoices.ts";
import { type LightningStandin, REGTEST, STANDIN_NODE_KEY, startLightningStandin } from "../../../../helpers/lightning-standin.ts";

const NODE_PUBKEY = (() => {
  const ecdh = createECDH("secp256k1");
  ecdh.setPrivateKey(STANDIN_NODE_KEY, "hex");
  return ecdh.getPublicKey("hex", "compressed");
})();

let ln: LightningStandin;
beforeAll(async () => {
  ln = await startLightningStandin();
});
afterAll(async () => {
  await ln.close();
});
beforeEach(() => {
  ln.setDown(false);
  ln.setDelayMs(0);
});

/** The rejection of `p`, which must be an instance of `cls`. */
async function rejection<E>(p: Promise<unknown>, cls: new (...args: never[]) => E): Promise<E> {
  const err = await p.then(
    () => expect.fail("expected a rejection"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(cls);
  return err as E;
}

/** Decodes `pr` both ways: light-bolt11-decoder's fields, and `bolt11.decode`'s recovered signer. */
function read(pr: string): { hash: string | undefined; msat: string | undefined; signer: string | undefined } {
  const sections = decode(pr).sections;
  const field = (name: string) => (sections.find((s) => s.name === name) as { value?: string } | undefined)?.value;
  const verified = bolt11.decode(pr, REGTEST);
  expect(verified.complete).toBe(true);
  return { hash: field("payment_hash"), msat: field("amount"), signer: verified.payeeNodeKey };
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1" }, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A `fetch` that answers `status` with `body` (JSON unless a string), whatever is asked. */
function answering(status: number, body: unknown): InvoiceFetch {
  return async () =>
    new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

describe("lndInvoices", () => {
  it("returns a signed regtest invoice whose payment hash and amount match", async () => {
    const before = ln.created();
    const now = Math.floor(Date.now() / 1000);
    const inv = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 10,
      memo: "tollbooth: 100 credits",
      expirySeconds: 600,
    });
    const after = Math.floor(Date.now() / 1000);
    expect(inv.bolt11.startsWith("lnbcrt100n1")).toBe(true);
    expect(inv.paymentHash).toMatch(/^[0-9a-f]{64}$/);
    expect(inv.sats).toBe(10);
    // Made between `now` and `after` (whole seconds), for 600 s.
    expect(inv.expiresAt).toBeGreaterThanOrEqual(now + 600);
    expect(inv.expiresAt).toBeLessThanOrEqual(after + 600);
    expect(read(inv.bolt11)).toEqual({ hash: inv.paymentHash, msat: "10000", signer: NODE_PUBKEY });
    expect(ln.created()).toBe(before + 1);
    const issued = ln.invoices().at(-1)!;
    expect(issued).toMatchObject({ paymentHash: inv.paymentHash, bolt11: inv.bolt11, sats: 10, state: "OPEN" });
    expect(createHash("sha256").update(Buffer.from(issued.preimage, "hex")).digest("hex")).toBe(inv.paymentHash);
  });

  it("accepts a base URL with a trailing slash", async () => {
    const inv = await lndInvoices({ url: `${ln.url}/`, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 1,
      memo: "",
      expirySeconds: 60,
    });
    expect(read(inv.bolt11).msat).toBe("1000");
  });

  it("a wrong macaroon is refused with 401", async () => {
    const err = await rejection(
      lndInvoices({ url: ln.url, macaroonHex: "00ff", timeoutMs: 2000 }).create({ sats: 10, memo: "", expirySeconds: 600 }),
      InvoiceError,
    );
    expect([err.code, err.status]).toEqual(["refused", 401]);
  });

  it("a backend that is down is refused with 503", async () => {
    ln.setDown(true);
    const err = await rejection(
      lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({ sats: 10, memo: "", expirySeconds: 600 }),
      InvoiceError,
    );
    expect([err.code, err.status]).toEqual(["refused", 503]);
  });

  it("a slow backend times out", async () => {
    ln.setDelayMs(2000);
    const err = await rejection(
      lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 200 }).create({ sats: 10, memo: "", expirySeconds: 600 }),
      InvoiceError,
    );
    expect(err.code).toBe("timeout");
  });

  it("a fetch that ignores the abort signal still times out", async () => {
    const never: InvoiceFetch = () => new Promise<Response>(() => {});
    const err = await rejection(
      lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 100, fetch: never }).create({
        sats: 10,
        memo: "",
        expirySeconds: 600,
      }),
      InvoiceError,
    );
    expect(err.code).toBe("timeout");
  });

  it("a body that never ends times out", async () => {
    const stalled: InvoiceFetch = async () =>
      new Response(new ReadableStream({ start: (c) => c.enqueue(new TextEncoder().encode('{"r_hash":')) }), { status: 200 });
    const err = await rejection(
      lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 100, fetch: stalled }).create({
        sats: 10,
        memo: "",
        expirySeconds: 600,
      }),
      InvoiceError,
    );
    expect(err.code).toBe("timeout");
  });

  it("an unreachable backend is unreachable", async () => {
    const port = await closedPort();
    const err = await rejection(
      lndInvoices({ url: `http://127.0.0.1:${port}`, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
        sats: 10,
        memo: "",
        expirySeconds: 600,
      }),
      InvoiceError,
    );
    expect(err.code).toBe("unreachable");
  });

  it("odd answers are bad_response", async () => {
    const good = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 10,
      memo: "",
      expirySeconds: 600,
    });
    const other = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 10,
      memo: "",
      expirySeconds: 600,
    });
    const rHash = Buffer.from(good.paymentHash, "hex").toString("base64");
    const cases: unknown[] = [
      "not json",
      [],
      { payment_request: good.bolt11 },
      { r_hash: rHash.slice(4), payment_request: good.bolt11 },
      { r_hash: rHash, payment_request: other.bolt11 }, // another invoice's hash
      { r_hash: rHash, payment_request: "lnbcrt1garbage" },
      { r_hash: rHash, payment_request: 42 },
    ];
    for (const body of cases) {
      const err = await rejection(
        lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000, fetch: answering(200, body) }).create({
          sats: 10,
          memo: "",
          expirySeconds: 600,
        }),
        InvoiceError,
      );
      expect(err.code, JSON.stringify(body)).toBe("bad_response");
    }
    // The right invoice, but for another amount than asked.
    const wrongAmount = await rejection(
      lndInvoices({
        url: ln.url,
        macaroonHex: ln.macaroonHex,
        timeoutMs: 2000,
        fetch: answering(200, { r_hash: rHash, payment_request: good.bolt11 }),
      }).create({ sats: 11, memo: "", expirySeconds: 600 }),
      InvoiceError,
    );
    expect(wrongAmount.code).toBe("bad_response");
  });

  it("bad requests are programming errors", async () => {
    const p = lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 });
    await expect(p.create({ sats: 0, memo: "", expirySeconds: 600 })).rejects.toBeInstanceOf(TypeError);
    await expect(p.create({ sats: 1.5, memo: "", expirySeconds: 600 })).rejects.toBeInstanceOf(TypeError);
    await expect(p.create({ sats: 1, memo: "", expirySeconds: 0 })).rejects.toBeInstanceOf(TypeError);
    expect(() => lndInvoices({ url: "ftp://x", macaroonHex: "00", timeoutMs: 1 })).toThrow(TypeError);
    expect(() => lndInvoices({ url: ln.url, macaroonHex: "xyz", timeoutMs: 1 })).toThrow(TypeError);
    expect(() => lndInvoices({ url: ln.url, macaroonHex: "00", timeoutMs: 0 })).toThrow(TypeError);
  });
});

describe("lnbitsInvoices", () => {
  it("returns a signed regtest invoice whose payment hash and amount match", async () => {
    const before = ln.created();
    const inv = await lnbitsInvoices({ url: ln.url, apiKey: ln.apiKey, timeoutMs: 2000 }).create({
      sats: 250,
      memo: "tollbooth",
      expirySeconds: 300,
    });
    expect(inv.sats).toBe(250);
    expect(read(inv.bolt11)).toEqual({ hash: inv.paymentHash, msat: "250000", signer: NODE_PUBKEY });
    expect(ln.created()).toBe(before + 1);
    expect(ln.invoices().at(-1)).toMatchObject({ paymentHash: inv.paymentHash, sats: 250, state: "OPEN" });
  });

  it("accepts bolt11 in place of payment_request, and refuses two that differ", async () => {
    const a = await lnbitsInvoices({ url: ln.url, apiKey: ln.apiKey, timeoutMs: 2000 }).create({ sats: 5, memo: "", expirySeconds: 300 });
    const b = await lnbitsInvoices({ url: ln.url, apiKey: ln.apiKey, timeoutMs: 2000 }).create({ sats: 5, memo: "", expirySeconds: 300 });
    const viaBolt11 = await lnbitsInvoices({
      url: ln.url,
      apiKey: ln.apiKey,
      timeoutMs: 2000,
      fetch: answering(201, { payment_hash: a.paymentHash, bolt11: a.bolt11 }),
    }).create({ sats: 5, memo: "", expirySeconds: 300 });
    expect(viaBolt11).toEqual(a);
    const err = await rejection(
      lnbitsInvoices({
        url: ln.url,
        apiKey: ln.apiKey,
        timeoutMs: 2000,
        fetch: answering(201, { payment_hash: a.paymentHash, payment_request: a.bolt11, bolt11: b.bolt11 }),
      }).create({ sats: 5, memo: "", expirySeconds: 300 }),
      InvoiceError,
    );
    expect(err.code).toBe("bad_response");
  });

  it("a wrong key is refused with 401; down is 503; slow times out", async () => {
    const wrong = await rejection(
      lnbitsInvoices({ url: ln.url, apiKey: "nope", timeoutMs: 2000 }).create({ sats: 5, memo: "", expirySeconds: 300 }),
      InvoiceError,
    );
    expect([wrong.code, wrong.status]).toEqual(["refused", 401]);
    ln.setDown(true);
    const down = await rejection(
      lnbitsInvoices({ url: ln.url, apiKey: ln.apiKey, timeoutMs: 2000 }).create({ sats: 5, memo: "", expirySeconds: 300 }),
      InvoiceError,
    );
    expect([down.code, down.status]).toEqual(["refused", 503]);
    ln.setDown(false);
    ln.setDelayMs(2000);
    const slow = await rejection(
      lnbitsInvoices({ url: ln.url, apiKey: ln.apiKey, timeoutMs: 200 }).create({ sats: 5, memo: "", expirySeconds: 300 }),
      InvoiceError,
    );
    expect(slow.code).toBe("timeout");
  });

  it("an unreachable backend is unreachable", async () => {
    const port = await closedPort();
    const err = await rejection(
      lnbitsInvoices({ url: `http://127.0.0.1:${port}`, apiKey: ln.apiKey, timeoutMs: 2000 }).create({
        sats: 5,
        memo: "",
        expirySeconds: 300,
      }),
      InvoiceError,
    );
    expect(err.code).toBe("unreachable");
  });
});

describe("lndWallet", () => {
  it("pays an invoice and returns the preimage whose SHA-256 is the payment hash; paying twice fails", async () => {
    const inv = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 21,
      memo: "",
      expirySeconds: 600,
    });
    const paidBefore = ln.paidSats();
    const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 });
    const { preimage } = await wallet.payInvoice(inv.bolt11);
    expect(preimage).toMatch(/^[0-9a-f]{64}$/);
    expect(createHash("sha256").update(Buffer.from(preimage, "hex")).digest("hex")).toBe(inv.paymentHash);
    expect(ln.invoices().find((i) => i.paymentHash === inv.paymentHash)).toMatchObject({ state: "SETTLED", preimage });
    expect(ln.paidSats()).toBe(paidBefore + 21);

    const again = await rejection(wallet.payInvoice(inv.bolt11), TollboothError);
    expect(again.code).toBe("payment_failed");
    expect(again.message).toContain("already paid");
    expect(ln.paidSats()).toBe(paidBefore + 21);
  });

  it("an invoice the node cannot pay, or that does not decode, fails", async () => {
    const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 });
    const foreign = bolt11.sign(
      bolt11.encode({
        network: REGTEST,
        satoshis: 3,
        timestamp: Math.floor(Date.now() / 1000),
        tags: [
          { tagName: "payment_hash", data: "11".repeat(32) },
          { tagName: "description", data: "elsewhere" },
        ],
      }),
      "22".repeat(32),
    ).paymentRequest!;
    expect((await rejection(wallet.payInvoice(foreign), TollboothError)).code).toBe("payment_failed");
    expect((await rejection(wallet.payInvoice("lnbcrt1garbage"), TollboothError)).code).toBe("payment_failed");
  });

  it("a preimage that does not hash to the invoice's payment hash is bad_preimage", async () => {
    const inv = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 3,
      memo: "",
      expirySeconds: 600,
    });
    for (const body of [
      { payment_error: "", payment_preimage: Buffer.alloc(32, 7).toString("base64") },
      { payment_error: "" },
      { payment_error: "", payment_preimage: "AAAA" },
      "[]",
    ]) {
      const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex, fetch: answering(200, body) });
      expect((await rejection(wallet.payInvoice(inv.bolt11), TollboothError)).code, JSON.stringify(body)).toBe("bad_preimage");
    }
  });

  it("wrong macaroon, down, slow and unreachable nodes", async () => {
    const inv = await lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2000 }).create({
      sats: 4,
      memo: "",
      expirySeconds: 600,
    });
    const denied = await rejection(lndWallet({ url: ln.url, macaroonHex: "00ff" }).payInvoice(inv.bolt11), TollboothError);
    expect([denied.code, denied.status]).toEqual(["payment_failed", 401]);
    ln.setDown(true);
    const down = await rejection(lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex }).payInvoice(inv.bolt11), TollboothError);
    expect([down.code, down.status]).toEqual(["payment_failed", 503]);
    ln.setDown(false);
    ln.setDelayMs(2000);
    const slow = await rejection(
      lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 200 }).payInvoice(inv.bolt11),
      TollboothError,
    );
    expect(slow.code).toBe("timeout");
    ln.setDelayMs(0);
    const port = await closedPort();
    const gone = await rejection(
      lndWallet({ url: `http://127.0.0.1:${port}`, macaroonHex: ln.macaroonHex }).payInvoice(inv.bolt11),
      TollboothError,
    );
    expect(gone.code).toBe("unreachable");
  });
});

describe("invoiceAmountSats / invoicePaymentHash", () => {
  /** An invoice from the stand-in's LND endpoint for `amount` (`{ value }` in sats or `{ value_msat }`). */
  async function issued(amount: { value: string } | { value_msat: string }): Promise<{ payment_request: string; r_hash: string }> {
    const res = await fetch(`${ln.url}/v1/invoices`, {
      method: "POST",
      headers: { "Grpc-Metadata-macaroon": ln.macaroonHex },
      body: JSON.stringify({ ...amount, memo: "amount", expiry: "600" }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { payment_request: string; r_hash: string };
  }

  it("reads whole-sat amounts", async () => {
    for (const sats of [1, 10, 999, 1000, 123_456, 21_000_000]) {
      const { payment_request, r_hash } = await issued({ value: String(sats) });
      expect(invoiceAmountSats(payment_request)).toBe(sats);
      expect(invoicePaymentHash(payment_request)).toBe(Buffer.from(r_hash, "base64").toString("hex"));
    }
  });

  it("rounds millisatoshis up to whole sats", async () => {
    for (const [msat, sats] of [
      ["1", 1],
      ["999", 1],
      ["1000", 1],
      ["1001", 2],
      ["1500", 2],
      ["10000", 10],
      ["123456789", 123_457],
    ] as const) {
      const { payment_request } = await issued({ value_msat: msat });
      expect(read(payment_request).msat).toBe(msat);
      expect(invoiceAmountSats(payment_request), msat).toBe(sats);
    }
    expect(ln.invoices().find((i) => i.msat === 1500)?.sats).toBe(2);
  });

  it("null for amountless or undecodable invoices", () => {
    const amountless = bolt11.sign(
      bolt11.encode({
        network: REGTEST,
        timestamp: 1_800_000_000,
        tags: [
          { tagName: "payment_hash", data: "ab".repeat(32) },
          { tagName: "description", data: "any amount" },
        ],
      }),
      STANDIN_NODE_KEY,
    ).paymentRequest!;
    expect(invoiceAmountSats(amountless)).toBeNull();
    expect(invoicePaymentHash(amountless)).toBe("ab".repeat(32));
    for (const bad of ["", "lnbcrt1garbage", "not an invoice", amountless.slice(0, -1) + (amountless.endsWith("q") ? "p" : "q")]) {
      expect(invoiceAmountSats(bad), bad).toBeNull();
      expect(invoicePaymentHash(bad), bad).toBeNull();
    }
  });
});
