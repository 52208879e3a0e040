/**
 * The L402 payer (docs/wire-contract.md §10–11): reads an `L402` (or `LSAT`) challenge,
 * prices it from the BOLT11 invoice itself (never from the JSON beside it), refuses what is
 * over its spending limits, else pays the invoice with the wallet, checks the preimage
 * against the invoice's payment hash and hands the resolver a reusable credential:
 *
 *   Authorization: L402 <macaroon>:<preimage>
 *
 * or, when the request already carries an `Authorization` of its own (OAuth to the origin),
 * `Tollbooth-L402: <macaroon>:<preimage>`.
 */
import { AUTHORIZATION_HEADER, L402_HEADER } from "../../../../shared/wire/headers.ts";
import { TollboothError } from "../errors.ts";
import { invoiceAmountSats, invoicePaymentHash, type LightningWallet, sha256Hex } from "./lightning-wallet.ts";
import type { ChallengeResponse, Choice, OfferedChallenge, PayContext, Payer, PayerDefinition, ReusableCredential } from "./payer.ts";

/** What the payer reports after paying an invoice (the resolver's `onPay` event). */
export interface PayEvent {
  /** The request URL that was challenged. */
  url: string;
  scheme: "l402";
  /** The invoice's amount, satoshis (rounded up from millisatoshis). */
  sats: number;
  /** Time from the start of the payment to the checked preimage, milliseconds. */
  ms: number;
}

/** The Lightning side of the resolver's options (`withTollbooth`'s `lightning`). */
export interface LightningOptions {
  /** Pays invoices (e.g. `lndWallet(…)` from payers/lightning-wallet.ts). */
  wallet: LightningWallet;
  /** Most satoshis one invoice may ask; dearer → refused (`payment_refused`). */
  maxSatsPerRequest: number;
  /**
   * Most satoshis paid in any sliding hour, all gateways together; an invoice that would go
   * over it is refused (`payment_refused`). Counted from when a payment starts, failed ones
   * included (a payment that timed out may still have gone through).
   */
  maxSatsPerHour: number;
}

/** What the Lightning payer reads from `withTollbooth`'s options (`pay: ["l402"]`). */
export interface L402ResolverOptions {
  /**
   * Wallet and spending limits (satoshis): an invoice over `maxSatsPerRequest`, or taking what
   * this resolver paid in the last hour (all origins) over `maxSatsPerHour`, is not paid.
   * Required when `pay` names `"l402"`.
   */
  lightning?: LightningOptions | undefined;
  /** Called after each Lightning payment: `{ url, scheme: "l402", sats, ms }`. */
  onPay?: ((event: PayEvent) => void) | undefined;
}

/** Options of {@link l402Payer}: its part of `withTollbooth`'s options, the resolver's signal, a clock. */
export interface L402PayerOptions extends L402ResolverOptions {
  /** Cancels before paying → `TollboothError("aborted")` (a payment under way is not interrupted). */
  signal?: AbortSignal | undefined;
  /** The clock, unix milliseconds (default `Date.now`; for tests). */
  now?: () => number;
}

const HOUR_MS = 3_600_000;
/** The `WWW-Authenticate` schemes it reads (lowercase): L402, and its former name LSAT. */
const SCHEMES = new Set(["l402", "lsat"]);
const HEX64 = /^[0-9a-fA-F]{64}$/;
/** base64 or base64url (with or without padding), as a macaroon in a challenge. */
const MACAROON = /^[A-Za-z0-9+/_-]+={0,2}$/;

/**
 * A payer for `L402` / `LSAT` challenges (parameters `token` or `macaroon` — `token`
 * preferred — and `invoice`).
 *
 * `choose` refuses: `no_wallet` without `lightning`; `unreadable` without a macaroon or an
 * invoice, or an invoice that does not decode or has no payment hash; `amountless` for an
 * invoice without an amount; `over_limit` when the amount is over `maxSatsPerRequest`, or
 * the satoshis this payer paid in the last hour plus the amount are over `maxSatsPerHour`.
 * Otherwise its way is `kind: "credential"`: `obtain()` checks the limits again and counts
 * the amount (so concurrent payments cannot overshoot together), pays, and checks that
 * SHA-256(preimage) is the payment hash. It throws `TollboothError` `payment_refused` (over a
 * limit by then), `aborted` (the signal fired before paying) or `payment_failed` (the wallet
 * threw, or a preimage that is not 64 hex characters or does not hash to the payment hash).
 *
 * The hour window is kept in memory by this payer: one resolver, every gateway origin.
 */
export function l402Payer(options: L402PayerOptions = {}): Payer {
  const lightning = options.lightning;
  const now = options.now ?? (() => Date.now());
  /** Payments started in the last hour: when (unix ms) and how much (sats). */
  const spent: Array<{ at: number; sats: number }> = [];
  const spentLastHour = () => {
    const since = now() - HOUR_MS;
    while (spent.length > 0 && spent[0]!.at <= since) spent.shift();
    return spent.reduce((sum, p) => sum + p.sats, 0);
  };
  const overLimit = (sats: number): string | null => {
    if (!lightning) return "no wallet";
    if (sats > lightning.maxSatsPerRequest) return `invoice asks ${sats} sats, more than maxSatsPerRequest ${lightning.maxSatsPerRequest}`;
    const hour = spentLastHour();
    if (hour + sats > lightning.maxSatsPerHour)
      return `invoice asks ${sats} sats; with ${hour} sats paid in the last hour that is more than maxSatsPerHour ${lightning.maxSatsPerHour}`;
    return null;
  };

  return {
    name: "l402",
    proof: "credential",
    readsBody: false,
    renewOn: [],
    offered: (response: ChallengeResponse) =>
      // L402 before LSAT (Aperture offers both for one invoice).
      response.challenges
        .filter((c) => SCHEMES.has(c.scheme.toLowerCase()))
        .sort((a, b) => Number(a.scheme.toLowerCase() === "lsat") - Number(b.scheme.toLowerCase() === "lsat")),
    choose(challenge: OfferedChallenge, context: PayContext): Choice {
      if (!lightning) return { ok: false, reason: "no_wallet", message: "an L402 challenge, but no Lightning wallet is configured" };
      const macaroon = challenge.params.token ?? challenge.params.macaroon;
      const invoice = challenge.params.invoice;
      if (!macaroon || !MACAROON.test(macaroon) || !invoice) {
        return { ok: false, reason: "unreadable", message: `unreadable ${challenge.scheme} challenge: no macaroon or no invoice` };
      }
      const paymentHash = invoicePaymentHash(invoice);
      if (paymentHash === null)
        return { ok: false, reason: "unreadable", message: `${challenge.scheme} invoice does not decode as BOLT11 with a payment hash` };
      const sats = invoiceAmountSats(invoice);
      if (sats === null)
        return { ok: false, reason: "amountless", message: `${challenge.scheme} invoice names no amount; refusing to choose one` };
      const over = overLimit(sats);
      if (over) return { ok: false, reason: "over_limit", message: over };

      return {
        ok: true,
        way: {
          kind: "credential",
          async obtain(): Promise<ReusableCredential> {
            if (options.signal?.aborted) throw new TollboothError("aborted", "payment aborted");
            const stillOver = overLimit(sats);
            if (stillOver) throw new TollboothError("payment_refused", stillOver);
            const started = now();
            spent.push({ at: started, sats });
            const t0 = performance.now();
            const preimage = await payForPreimage(lightning.wallet, invoice, sats, paymentHash);
            options.onPay?.({ url: context.url, scheme: "l402", sats, ms: performance.now() - t0 });
            const value = `${macaroon}:${preimage}`;
            return {
              payer: "l402",
              expiresMs: Infinity,
              headersFor: (requestHeaders): Record<string, string> =>
                requestHeaders.has(AUTHORIZATION_HEADER) ? { [L402_HEADER]: value } : { [AUTHORIZATION_HEADER]: `L402 ${value}` },
            };
          },
        },
      };
    },
  };
}

/**
 * Pay `invoice` (of `sats`) with `wallet` and check its preimage.
 * @returns the preimage, 64 lowercase hex characters whose SHA-256 is `paymentHash`
 * @throws TollboothError `payment_failed`: the wallet threw, or returned a preimage that is
 *   not 64 hex characters or does not hash to `paymentHash`
 */
async function payForPreimage(wallet: LightningWallet, invoice: string, sats: number, paymentHash: string): Promise<string> {
  let preimage: string;
  try {
    ({ preimage } = await wallet.payInvoice(invoice));
  } catch (err) {
    throw new TollboothError(
      "payment_failed",
      `paying the ${sats}-sat invoice failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  if (typeof preimage !== "string" || !HEX64.test(preimage)) {
    throw new TollboothError("payment_failed", "the wallet returned no 64-hex-character preimage");
  }
  preimage = preimage.toLowerCase();
  if ((await sha256Hex(preimage)) !== paymentHash) {
    throw new TollboothError("payment_failed", `the wallet's preimage does not hash to the invoice's payment hash ${paymentHash}`);
  }
  return preimage;
}

/**
 * Check `withTollbooth`'s `lightning` option (programming errors → TypeError naming the option).
 * @throws TypeError when it is missing, its wallet has no `payInvoice`, or a limit is not a number ≥ 0
 */
export function checkLightningOptions(ln: LightningOptions | undefined): void {
  if (!ln)
    throw new TypeError(
      `withTollbooth: option pay includes "l402" but option lightning ({ wallet, maxSatsPerRequest, maxSatsPerHour }) is missing`,
    );
  if (typeof ln.wallet?.payInvoice !== "function")
    throw new TypeError("withTollbooth: option lightning.wallet must have payInvoice(bolt11)");
  for (const key of ["maxSatsPerRequest", "maxSatsPerHour"] as const) {
    if (typeof ln[key] !== "number" || !(ln[key] >= 0))
      throw new TypeError(`withTollbooth: option lightning.${key} must be a number ≥ 0 (satoshis)`);
  }
}

/** The Lightning way through (`pay: ["l402"]`, with `lightning`). */
export const l402: PayerDefinition<"l402", L402ResolverOptions> = {
  name: "l402",
  check: (options) => checkLightningOptions(options.lightning),
  create: ({ lightning, onPay }, signal) => l402Payer({ lightning, onPay, signal }),
  // A 401 is tollbooth's only when it refuses a Lightning credential (its reasons are `l402_…`).
  claims401: (reason) => reason.startsWith("l402_"),
};
