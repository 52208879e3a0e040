/**
 * The operator's Lightning backend behind one small interface: `InvoiceProvider.create`
 * asks the operator's node or wallet for a BOLT11 invoice (docs/wire-contract.md §10).
 *
 *   const invoices = lndInvoices({ url: "https://lnd.example", macaroonHex, timeoutMs: 1500 });
 *   const inv = await invoices.create({ sats: 10, memo: "tollbooth", expirySeconds: 600 });
 *
 * Runs in workerd: it uses `fetch`, `atob` and timers only, no Node APIs. Every call is bounded
 * by `timeoutMs`, reading the body included, and fails with `InvoiceError`. The answer is
 * checked strictly: the BOLT11 is decoded (shared/credentials/bolt11.ts) and must carry the payment
 * hash the backend reported and exactly the amount asked for, so the macaroon's payment hash
 * and the invoice the caller pays cannot disagree.
 */
import { type Bolt11, decodeBolt11 } from "../../../shared/credentials/bolt11.ts";
import { fromBase64, toHex } from "../../../shared/wire/encoding.ts";

/** An invoice the backend made. */
export interface Invoice {
  /** The BOLT11 payment request (`lnbc…`, `lntb…`, `lnbcrt…`), lowercase. */
  bolt11: string;
  /** The invoice's payment hash: SHA-256 of the preimage, 64 lowercase hex characters. */
  paymentHash: string;
  /** Amount in satoshis (whole sats; the invoice carries exactly `sats * 1000` msat). */
  sats: number;
  /** When the invoice expires, unix seconds (its BOLT11 timestamp + expiry). */
  expiresAt: number;
}

/** What to invoice: `sats` a positive whole number of satoshis, `expirySeconds` the invoice lifetime in seconds. */
export interface InvoiceRequest {
  sats: number;
  memo: string;
  expirySeconds: number;
}

/** The operator's Lightning backend. */
export interface InvoiceProvider {
  /**
   * Makes an invoice for `req`.
   * @throws InvoiceError when the backend cannot be reached, is slower than the provider's
   *   `timeoutMs`, refuses (non-2xx), or answers anything but a well-formed invoice
   * @throws TypeError on a bad `req` (non-integer or non-positive `sats`/`expirySeconds`)
   */
  create(req: InvoiceRequest): Promise<Invoice>;
}

/**
 * - `unreachable`: the request did not get an HTTP answer (connection refused, DNS, TLS)
 * - `timeout`: no complete answer within `timeoutMs` (headers and body)
 * - `refused`: a non-2xx answer; `status` holds it
 * - `bad_response`: a 2xx answer that is not the expected JSON, or an invoice that does not
 *   decode or does not match the payment hash or amount
 */
export type InvoiceErrorCode = "unreachable" | "timeout" | "refused" | "bad_response";

/** A failure of {@link InvoiceProvider.create}: `code` says what went wrong, `status` the HTTP status seen (if any). */
export class InvoiceError extends Error {
  readonly code: InvoiceErrorCode;
  readonly status: number | undefined;

  constructor(code: InvoiceErrorCode, message: string, status?: number) {
    super(message);
    this.name = "InvoiceError";
    this.code = code;
    this.status = status;
  }
}

/** The `fetch` shape the providers call (the global `fetch` by default). */
export type InvoiceFetch = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Options of {@link lndInvoices}.
 * - `url`: LND's REST base URL, e.g. `https://lnd.example:8080` (behind a real certificate:
 *   a Worker cannot pin LND's self-signed one)
 * - `macaroonHex`: an invoice macaroon, hex (sent as `Grpc-Metadata-macaroon`)
 * - `timeoutMs`: bound on each call, milliseconds
 */
export interface LndInvoicesOptions {
  url: string;
  macaroonHex: string;
  timeoutMs: number;
  fetch?: InvoiceFetch;
}

/**
 * Invoices from LND's REST API: `POST {url}/v1/invoices` with `Grpc-Metadata-macaroon: <hex>`
 * and `{ value: "<sats>", memo, expiry: "<seconds>" }` (int64 as strings, as grpc-gateway
 * writes them); the answer `{ r_hash (base64, 32 bytes), payment_request, add_index,
 * payment_addr }` must carry an invoice whose payment hash is `r_hash`.
 * @throws TypeError on a bad `url`, `macaroonHex` or `timeoutMs`
 */
export function lndInvoices(opts: LndInvoicesOptions): InvoiceProvider {
  const base = baseUrl(opts.url);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(opts.macaroonHex)) throw new TypeError("macaroonHex must be hex");
  checkTimeout(opts.timeoutMs);
  const call = opts.fetch ?? ((url, init) => fetch(url, init));
  return {
    create: async (req) => {
      checkRequest(req);
      const body = await postJson(
        call,
        `${base}/v1/invoices`,
        { "Grpc-Metadata-macaroon": opts.macaroonHex },
        { value: String(req.sats), memo: req.memo, expiry: String(req.expirySeconds) },
        opts.timeoutMs,
      );
      const rHash = isRecord(body) ? body.r_hash : undefined;
      const bolt11 = isRecord(body) ? body.payment_request : undefined;
      const hashBytes = typeof rHash === "string" ? fromBase64(rHash) : null;
      if (hashBytes === null || hashBytes.length !== 32) throw new InvoiceError("bad_response", "LND answer has no 32-byte r_hash");
      if (typeof bolt11 !== "string") throw new InvoiceError("bad_response", "LND answer has no payment_request");
      return checkedInvoice(bolt11, toHex(hashBytes), req.sats);
    },
  };
}

/**
 * Options of {@link lnbitsInvoices}.
 * - `url`: the LNbits instance, e.g. `https://legend.lnbits.com`
 * - `apiKey`: the wallet's invoice/read key (sent as `X-Api-Key`)
 * - `timeoutMs`: bound on each call, milliseconds
 */
export interface LnbitsInvoicesOptions {
  url: string;
  apiKey: string;
  timeoutMs: number;
  fetch?: InvoiceFetch;
}

/**
 * Invoices from an LNbits wallet: `POST {url}/api/v1/payments` with `X-Api-Key` and
 * `{ out: false, amount: <sats>, memo, expiry: <seconds> }`; the answer
 * `{ payment_hash (hex), payment_request }` (LNbits 1.x also, or instead, `bolt11`) must
 * carry an invoice whose payment hash is `payment_hash`.
 * @throws TypeError on a bad `url`, `apiKey` or `timeoutMs`
 */
export function lnbitsInvoices(opts: LnbitsInvoicesOptions): InvoiceProvider {
  const base = baseUrl(opts.url);
  if (typeof opts.apiKey !== "string" || !/^[\x21-\x7e]+$/.test(opts.apiKey))
    throw new TypeError("apiKey must be a non-empty header-safe string");
  checkTimeout(opts.timeoutMs);
  const call = opts.fetch ?? ((url, init) => fetch(url, init));
  return {
    create: async (req) => {
      checkRequest(req);
      const body = await postJson(
        call,
        `${base}/api/v1/payments`,
        { "X-Api-Key": opts.apiKey },
        { out: false, amount: req.sats, memo: req.memo, expiry: req.expirySeconds },
        opts.timeoutMs,
      );
      if (!isRecord(body)) throw new InvoiceError("bad_response", "LNbits answer is not a JSON object");
      const { payment_hash: hash, payment_request: pr, bolt11: b11 } = body;
      const bolt11 = pr ?? b11;
      if (typeof hash !== "string" || !/^[0-9a-f]{64}$/i.test(hash))
        throw new InvoiceError("bad_response", "LNbits answer has no 64-hex payment_hash");
      if (typeof bolt11 !== "string" || (pr !== undefined && b11 !== undefined && pr !== b11))
        throw new InvoiceError("bad_response", "LNbits answer has no single payment_request");
      return checkedInvoice(bolt11, hash.toLowerCase(), req.sats);
    },
  };
}

/** Decodes `bolt11` and checks it carries `paymentHash` and exactly `sats * 1000` msat. */
function checkedInvoice(bolt11: string, paymentHash: string, sats: number): Invoice {
  const text = bolt11.toLowerCase();
  let decoded: Bolt11;
  try {
    decoded = decodeBolt11(text);
  } catch {
    throw new InvoiceError("bad_response", "the backend's invoice is not a valid BOLT11");
  }
  if (decoded.paymentHash !== paymentHash)
    throw new InvoiceError("bad_response", "the invoice's payment hash is not the one the backend reported");
  if (decoded.msat !== BigInt(sats) * 1000n) throw new InvoiceError("bad_response", `the invoice is not for ${sats} sats`);
  return { bolt11: text, paymentHash, sats, expiresAt: decoded.timestamp + decoded.expirySeconds };
}

/**
 * POSTs `payload` as JSON and returns the parsed 2xx answer. The whole exchange (headers
 * and body) is bounded by `timeoutMs`: the request is aborted and the call rejects with
 * `timeout`, even if an injected `fetch` ignores the signal.
 */
async function postJson(
  call: InvoiceFetch,
  url: string,
  headers: Record<string, string>,
  payload: unknown,
  timeoutMs: number,
): Promise<unknown> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new InvoiceError("timeout", `no answer from ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  const exchange = async (): Promise<unknown> => {
    let res: Response;
    try {
      res = await call(url, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(payload),
        signal: controller.signal,
      });
    } catch (err) {
      throw new InvoiceError("unreachable", `cannot reach ${url}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => {});
      throw new InvoiceError("refused", `${url} answered ${res.status}`, res.status);
    }
    let text: string;
    try {
      text = await res.text();
    } catch {
      throw new InvoiceError("unreachable", `the answer from ${url} broke off`, res.status);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new InvoiceError("bad_response", `${url} answered ${res.status} without JSON`, res.status);
    }
  };
  try {
    return await Promise.race([exchange(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** `url` without trailing slashes; only http(s). */
function baseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`url is not a URL: ${url}`);
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new TypeError("url must be http(s)");
  return url.replace(/\/+$/, "");
}

function checkTimeout(ms: number): void {
  if (!Number.isFinite(ms) || ms <= 0) throw new TypeError("timeoutMs must be a positive number of milliseconds");
}

function checkRequest(req: InvoiceRequest): void {
  if (!Number.isSafeInteger(req.sats) || req.sats <= 0) throw new TypeError("sats must be a positive integer");
  if (!Number.isSafeInteger(req.expirySeconds) || req.expirySeconds <= 0) throw new TypeError("expirySeconds must be a positive integer");
  if (typeof req.memo !== "string") throw new TypeError("memo must be a string");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
