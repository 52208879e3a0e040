/**
 * The agent's side of L402 (docs/wire-contract.md §10–11): a Lightning wallet that pays a
 * gateway's invoice and hands back the preimage, and readers of the invoice itself (the
 * resolver prices an L402 challenge from the BOLT11, not from the JSON beside it).
 *
 *   const wallet = lndWallet({ url: "https://my-node:8080", macaroonHex });
 *   const { preimage } = await wallet.payInvoice(invoice);   // 64 hex, checked against the invoice
 *   invoiceAmountSats(invoice);                              // 10
 *
 * Invoices are decoded with light-bolt11-decoder (checksum checked; the node signature is
 * not, which is the paying node's job). Uses `fetch`, WebCrypto and `atob` only.
 */
import { decode } from "light-bolt11-decoder";
import { fromBase64, toHex } from "../../../../shared/wire/encoding.ts";
import { TollboothError } from "../errors.ts";

/** A wallet that can pay BOLT11 invoices: the shape the resolver's `lightning.wallet` option takes. */
export interface LightningWallet {
  /**
   * Pays `bolt11` and returns its preimage, 64 lowercase hex characters whose SHA-256 is the
   * invoice's payment hash.
   * @throws TollboothError when the payment fails or cannot be confirmed (`lndWallet`:
   *   `payment_failed`, `unreachable`, `timeout` or `bad_preimage`, see `TollboothErrorCode`)
   */
  payInvoice(bolt11: string): Promise<{ preimage: string }>;
}

/** The `fetch` shape {@link lndWallet} calls (the global `fetch` by default; the resolver's `FetchLike` fits). */
export type WalletFetch = (url: string, init: RequestInit) => Promise<Response>;

/**
 * Options of {@link lndWallet}.
 * - `url`: the paying node's LND REST base URL, e.g. `https://127.0.0.1:8080`
 * - `macaroonHex`: a macaroon allowed to send payments (admin), hex
 * - `timeoutMs`: bound on one payment, milliseconds (default 60 000)
 */
export interface LndWalletOptions {
  url: string;
  macaroonHex: string;
  timeoutMs?: number;
  fetch?: WalletFetch;
}

/**
 * A wallet paying through LND's REST API: `POST {url}/v1/channels/transactions` with
 * `Grpc-Metadata-macaroon: <hex>` and `{ payment_request }` (the synchronous SendPaymentSync
 * call); the answer `{ payment_error, payment_preimage (base64), payment_hash (base64) }`.
 * The preimage is accepted only if its SHA-256 is the payment hash decoded from the invoice.
 * @throws TypeError on a bad `url`, `macaroonHex` or `timeoutMs`; (from `payInvoice`)
 *   TollboothError `payment_failed`, `unreachable`, `timeout` or `bad_preimage`
 */
export function lndWallet(opts: LndWalletOptions): LightningWallet {
  let base: URL;
  try {
    base = new URL(opts.url);
  } catch {
    throw new TypeError(`url is not a URL: ${opts.url}`);
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") throw new TypeError("url must be http(s)");
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(opts.macaroonHex)) throw new TypeError("macaroonHex must be hex");
  const timeoutMs = opts.timeoutMs ?? 60_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TypeError("timeoutMs must be a positive number of milliseconds");
  const endpoint = `${opts.url.replace(/\/+$/, "")}/v1/channels/transactions`;
  const call = opts.fetch ?? ((url, init) => fetch(url, init));

  return {
    payInvoice: async (bolt11) => {
      const paymentHash = invoicePaymentHash(bolt11);
      if (paymentHash === null) throw new TollboothError("payment_failed", "the invoice does not decode as BOLT11; nothing was paid");
      const answer = await withDeadline(
        timeoutMs,
        `no answer from ${endpoint} within ${timeoutMs} ms (the payment may still complete)`,
        async (signal) => {
          let res: Response;
          try {
            res = await call(endpoint, {
              method: "POST",
              headers: { "Grpc-Metadata-macaroon": opts.macaroonHex, "content-type": "application/json" },
              body: JSON.stringify({ payment_request: bolt11 }),
              signal,
            });
          } catch (err) {
            throw new TollboothError("unreachable", `cannot reach ${endpoint}: ${err instanceof Error ? err.message : String(err)}`);
          }
          const text = await res.text().catch(() => "");
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined;
          }
          if (res.status < 200 || res.status > 299) {
            const message = isRecord(body) && typeof body.message === "string" ? body.message : text.slice(0, 200);
            throw new TollboothError("payment_failed", `${endpoint} answered ${res.status}: ${message}`, res.status);
          }
          return body;
        },
      );
      if (!isRecord(answer)) throw new TollboothError("bad_preimage", "the node's answer is not a JSON object");
      if (typeof answer.payment_error === "string" && answer.payment_error !== "")
        throw new TollboothError("payment_failed", `payment failed: ${answer.payment_error}`);
      const preimage = typeof answer.payment_preimage === "string" ? base64ToHex(answer.payment_preimage) : null;
      if (preimage === null || preimage.length !== 64)
        throw new TollboothError("bad_preimage", "the node's answer has no 32-byte payment_preimage");
      if ((await sha256Hex(preimage)) !== paymentHash)
        throw new TollboothError("bad_preimage", "SHA-256 of the preimage is not the invoice's payment hash");
      return { preimage };
    },
  };
}

/**
 * The amount of a BOLT11 invoice in satoshis, millisatoshis rounded up (1 msat → 1 sat,
 * 1500 msat → 2 sats): what paying it costs at most, in whole sats.
 * @returns null for an invoice that does not decode or carries no amount
 */
export function invoiceAmountSats(bolt11: string): number | null {
  const msat = section(bolt11, "amount");
  if (typeof msat !== "string" || !/^\d+$/.test(msat)) return null;
  const sats = Number((BigInt(msat) + 999n) / 1000n);
  return sats > 0 && Number.isSafeInteger(sats) ? sats : null;
}

/**
 * The payment hash of a BOLT11 invoice (its `p` field), 64 lowercase hex characters.
 * @returns null for an invoice that does not decode or has no payment hash
 */
export function invoicePaymentHash(bolt11: string): string | null {
  const hash = section(bolt11, "payment_hash");
  return typeof hash === "string" && /^[0-9a-f]{64}$/.test(hash) ? hash : null;
}

/** The value of the named section of a decoded invoice; undefined when absent or undecodable. */
function section(bolt11: string, name: "amount" | "payment_hash"): unknown {
  if (typeof bolt11 !== "string") return undefined;
  try {
    for (const s of decode(bolt11.trim()).sections) if (s.name === name) return s.value;
    return undefined;
  } catch {
    return undefined;
  }
}

/** Runs `work` with an AbortSignal that fires after `ms`; rejects with `timeout` then, even if `work` ignores the signal. */
async function withDeadline<T>(ms: number, message: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new TollboothError("timeout", message));
    }, ms);
  });
  try {
    return await Promise.race([work(controller.signal), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Standard or URL-safe base64 (as LND writes `bytes`) to lowercase hex; null when not base64. */
function base64ToHex(text: string): string | null {
  const bytes = fromBase64(text);
  return bytes ? toHex(bytes) : null;
}

/** SHA-256 of the bytes `hex` spells (an even number of hex digits), as lowercase hex. */
export async function sha256Hex(hex: string): Promise<string> {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}
