/**
 * A loopback stand-in for the Lightning side of L402 tests: the operator's LND REST API
 * (and an LNbits wallet) issuing REAL signed regtest BOLT11 invoices (npm `bolt11`, with a
 * fixed node key), and the payer's node, which "pays" an invoice this stand-in issued by
 * settling it and revealing its preimage. No Lightning network is involved: the payment
 * itself is simulated, the invoices, hashes and preimages are real.
 *
 *   const ln = await startLightningStandin();
 *   const invoices = lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 1000 });
 *   const wallet = lndWallet({ url: ln.url, macaroonHex: ln.macaroonHex });
 *   ln.setDown(true);      // every endpoint answers 503
 *   ln.setDelayMs(2000);   // every answer waits 2 s
 *   ln.invoices();         // [{ paymentHash, bolt11, sats, msat, state, preimage }]
 *   const webln = standinWebln(ln); // payInvoice({ invoice }) / sendPayment(invoice) → { preimage }, as Alby's 402 helpers take
 *   await ln.close();
 *
 * Endpoints (JSON in and out):
 * - `POST /v1/invoices` (`Grpc-Metadata-macaroon` checked, else 401): `{ value | value_msat,
 *   memo?, expiry? }` → `{ r_hash (base64), payment_request, add_index, payment_addr (base64) }`
 * - `GET /v1/invoice/{r_hash hex}` (macaroon checked): `{ state, settled, r_preimage (base64),
 *   r_hash, value, value_msat, memo, payment_request }`; 404 when unknown
 * - `POST /v1/channels/transactions` (macaroon checked), the payer's node: `{ payment_request }`
 *   → `{ payment_error: "", payment_preimage (base64), payment_hash (base64) }`, or
 *   `{ payment_error: "…" }` for an invoice it did not issue, already settled or expired
 * - `POST /api/v1/payments` (LNbits, `X-Api-Key` checked, else 401): `{ out: false, amount
 *   (sats), memo?, expiry? }` → 201 `{ payment_hash (hex), payment_request, checking_id }`
 */
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import bolt11 from "bolt11";

/** bitcoinjs-style network parameters of regtest (BOLT11 prefix `lnbcrt`). */
export const REGTEST = { bech32: "bcrt", pubKeyHash: 111, scriptHash: 196, validWitnessVersions: [0, 1] };

/** The stand-in node's fixed private key (secp256k1, hex); every invoice is signed with it. */
export const STANDIN_NODE_KEY = "e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734";

/** The macaroon (hex) accepted unless another is given: opaque bytes, the stand-in compares it verbatim. */
export const STANDIN_MACAROON_HEX = `0201036c6e64${"5a".repeat(32)}`;

/** One invoice the stand-in issued. */
export interface StandinInvoice {
  /** 64 lowercase hex. */
  paymentHash: string;
  bolt11: string;
  /** The amount rounded up to whole satoshis. */
  sats: number;
  /** The exact amount, millisatoshis. */
  msat: number;
  state: "OPEN" | "SETTLED";
  /** 64 lowercase hex; SHA-256 of it is `paymentHash`. */
  preimage: string;
}

/** Handle returned by {@link startLightningStandin}. */
export interface LightningStandin {
  /** Base URL, e.g. `http://127.0.0.1:41234` (LND REST and LNbits at the same origin). */
  url: string;
  /** The macaroon (hex) the LND endpoints accept in `Grpc-Metadata-macaroon`. */
  macaroonHex: string;
  /** The key the LNbits endpoint accepts in `X-Api-Key`. */
  apiKey: string;
  close(): Promise<void>;
  /** While `down`, every request gets 503. */
  setDown(down: boolean): void;
  /** Every answer waits `ms` milliseconds before it is written (0: none). */
  setDelayMs(ms: number): void;
  /** Every invoice issued so far, oldest first (copies). */
  invoices(): StandinInvoice[];
  /** Satoshis paid so far through `/v1/channels/transactions` (sum of settled `sats`). */
  paidSats(): number;
  /** Invoices created so far (LND and LNbits endpoints). */
  created(): number;
}

interface Stored extends StandinInvoice {
  memo: string;
  expiresAt: number;
  addIndex: number;
}

/**
 * Starts the stand-in on 127.0.0.1 (free port).
 * @param opts.macaroonHex the macaroon to accept (default a fixed test value)
 * @param opts.apiKey the LNbits key to accept (default a fixed test value)
 */
export async function startLightningStandin(opts: { macaroonHex?: string; apiKey?: string } = {}): Promise<LightningStandin> {
  const macaroonHex = opts.macaroonHex ?? STANDIN_MACAROON_HEX;
  const apiKey = opts.apiKey ?? "standin-invoice-key";
  const byRequest = new Map<string, Stored>();
  const byHash = new Map<string, Stored>();
  let down = false;
  let delayMs = 0;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  function issue(msat: number, memo: string, expiry: number): Stored {
    const preimage = randomBytes(32);
    const paymentHash = createHash("sha256").update(preimage).digest("hex");
    const timestamp = Math.floor(Date.now() / 1000);
    const encoded = bolt11.encode({
      network: REGTEST,
      millisatoshis: String(msat),
      timestamp,
      tags: [
        { tagName: "payment_hash", data: paymentHash },
        { tagName: "description", data: memo },
        { tagName: "expire_time", data: expiry },
        { tagName: "payment_secret", data: randomBytes(32).toString("hex") },
      ],
    });
    const paymentRequest = bolt11.sign(encoded, STANDIN_NODE_KEY).paymentRequest;
    if (paymentRequest === undefined) throw new Error("bolt11.sign gave no payment request");
    const inv: Stored = {
      paymentHash,
      bolt11: paymentRequest,
      sats: Math.ceil(msat / 1000),
      msat,
      state: "OPEN",
      preimage: preimage.toString("hex"),
      memo,
      expiresAt: timestamp + expiry,
      addIndex: byHash.size + 1,
    };
    byRequest.set(paymentRequest, inv);
    byHash.set(paymentHash, inv);
    return inv;
  }

  function route(method: string, path: string, headers: http.IncomingHttpHeaders, body: Record<string, unknown>): [number, unknown] {
    const macaroonOk = headers["grpc-metadata-macaroon"] === macaroonHex;
    const denied: [number, unknown] = [
      401,
      { code: 2, message: "verification failed: signature mismatch after caveat verification", details: [] },
    ];
    if (method === "POST" && path === "/v1/invoices") {
      if (!macaroonOk) return denied;
      const msat = body.value_msat !== undefined ? count(body.value_msat) : count(body.value) * 1000;
      const expiry = body.expiry === undefined ? 86400 : count(body.expiry);
      if (!(msat > 0) || !(expiry > 0))
        return [400, { code: 3, message: "value/value_msat and expiry must be positive integers", details: [] }];
      const inv = issue(msat, typeof body.memo === "string" ? body.memo : "", expiry);
      return [
        200,
        {
          r_hash: b64(inv.paymentHash),
          payment_request: inv.bolt11,
          add_index: String(inv.addIndex),
          payment_addr: randomBytes(32).toString("base64"),
        },
      ];
    }
    const lookup = /^\/v1\/invoice\/([0-9a-f]{64})$/.exec(path);
    if (method === "GET" && lookup) {
      if (!macaroonOk) return denied;
      const inv = byHash.get(lookup[1]!);
      if (!inv) return [404, { code: 5, message: "unable to locate invoice", details: [] }];
      return [
        200,
        {
          memo: inv.memo,
          r_preimage: b64(inv.preimage),
          r_hash: b64(inv.paymentHash),
          value: String(Math.floor(inv.msat / 1000)),
          value_msat: String(inv.msat),
          settled: inv.state === "SETTLED",
          state: inv.state,
          payment_request: inv.bolt11,
          add_index: String(inv.addIndex),
        },
      ];
    }
    if (method === "POST" && path === "/v1/channels/transactions") {
      if (!macaroonOk) return denied;
      const pr = typeof body.payment_request === "string" ? body.payment_request.toLowerCase() : "";
      const inv = byRequest.get(pr);
      if (!inv) return [200, { payment_error: "unable to find a path to destination" }];
      if (inv.state === "SETTLED") return [200, { payment_error: "invoice is already paid" }];
      if (Date.now() / 1000 >= inv.expiresAt) return [200, { payment_error: "invoice expired" }];
      inv.state = "SETTLED";
      return [
        200,
        {
          payment_error: "",
          payment_preimage: b64(inv.preimage),
          payment_hash: b64(inv.paymentHash),
          payment_route: { total_amt: String(inv.sats), total_amt_msat: String(inv.msat), total_fees: "0", hops: [] },
        },
      ];
    }
    if (method === "POST" && path === "/api/v1/payments") {
      if (headers["x-api-key"] !== apiKey) return [401, { detail: "Invalid key" }];
      if (body.out !== false) return [400, { detail: "this stand-in only makes incoming invoices (out: false)" }];
      const sats = count(body.amount);
      const expiry = body.expiry === undefined ? 3600 : count(body.expiry);
      if (!(sats > 0) || !(expiry > 0)) return [400, { detail: "amount and expiry must be positive integers" }];
      const inv = issue(sats * 1000, typeof body.memo === "string" ? body.memo : "", expiry);
      return [201, { payment_hash: inv.paymentHash, payment_request: inv.bolt11, checking_id: inv.paymentHash }];
    }
    return [404, { code: 5, message: "Not Found", details: [] }];
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let status: number;
      let answer: unknown;
      if (down) [status, answer] = [503, { code: 14, message: "the stand-in is down", details: [] }];
      else {
        let body: unknown = {};
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          if (text !== "") body = JSON.parse(text);
        } catch {
          body = null;
        }
        if (typeof body !== "object" || body === null || Array.isArray(body))
          [status, answer] = [400, { code: 3, message: "body is not a JSON object", details: [] }];
        else
          [status, answer] = route(
            req.method ?? "",
            new URL(req.url ?? "/", "http://x").pathname,
            req.headers,
            body as Record<string, unknown>,
          );
      }
      const send = () => {
        if (!res.destroyed) res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(answer));
      };
      if (delayMs <= 0) return send();
      const t = setTimeout(() => {
        timers.delete(t);
        send();
      }, delayMs);
      timers.add(t);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    macaroonHex,
    apiKey,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    setDown: (d) => {
      down = d;
    },
    setDelayMs: (ms) => {
      delayMs = ms;
    },
    invoices: () =>
      [...byHash.values()].map(({ paymentHash, bolt11: pr, sats, msat, state, preimage }) => ({
        paymentHash,
        bolt11: pr,
        sats,
        msat,
        state,
        preimage,
      })),
    paidSats: () => [...byHash.values()].reduce((sum, inv) => sum + (inv.state === "SETTLED" ? inv.sats : 0), 0),
    created: () => byHash.size,
  };
}

/** A non-negative safe integer from a JSON number or decimal string (LND writes int64 as strings); NaN otherwise. */
function count(value: unknown): number {
  const n = typeof value === "number" ? value : typeof value === "string" && /^\d+$/.test(value) ? Number(value) : NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : NaN;
}

/** Standard base64 of hex bytes (how LND's REST API writes `bytes` fields). */
function b64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

/**
 * A WebLN-style wallet over the stand-in's payer node (`POST /v1/channels/transactions`),
 * the shape Alby's `@getalby/lightning-tools` 402 helpers take (`payInvoice({ invoice })`)
 * and WebLN's `sendPayment(invoice)`: both pay an invoice the stand-in issued and resolve with
 * its preimage (64 lowercase hex); an invoice it cannot pay (not its own, settled, expired)
 * rejects with the node's `payment_error`. `paid` lists the invoices paid through it, in order.
 */
export interface StandinWebln {
  payInvoice(args: { invoice: string }): Promise<{ preimage: string }>;
  sendPayment(invoice: string): Promise<{ preimage: string }>;
  paid: string[];
}

/** A {@link StandinWebln} wallet paying through `ln`. */
export function standinWebln(ln: Pick<LightningStandin, "url" | "macaroonHex">): StandinWebln {
  const paid: string[] = [];
  async function sendPayment(invoice: string): Promise<{ preimage: string }> {
    const res = await fetch(`${ln.url}/v1/channels/transactions`, {
      method: "POST",
      headers: { "grpc-metadata-macaroon": ln.macaroonHex, "content-type": "application/json" },
      body: JSON.stringify({ payment_request: invoice }),
    });
    const out = (await res.json()) as { payment_error?: string; payment_preimage?: string };
    if (!res.ok || out.payment_error || !out.payment_preimage) throw new Error(`payment failed: ${out.payment_error || res.status}`);
    paid.push(invoice);
    return { preimage: Buffer.from(out.payment_preimage, "base64").toString("hex") };
  }
  return { payInvoice: ({ invoice }) => sendPayment(invoice), sendPayment, paid };
}
