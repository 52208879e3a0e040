/**
 * L402 offers, per isolate and bounded: invoices made per second (`lightning.invoicesPerSecond`,
 * burst 10×; past it L402 is offered as `busy`), a 5 s pause after a backend failure (each 402
 * does not wait for a dead backend's timeout), the caller's last offer reused for up to 60 s
 * (a caller retrying a 402 does not mint an invoice per retry), a paid invoice never offered
 * again (`forget`).
 */

import { formatL402Challenge, mintL402 } from "../../../shared/credentials/l402.ts";
import { type BucketConfig, type BucketState, take } from "../../../shared/limits/bucket.ts";
import type { Offer, OfferContext, Unavailable } from "../contract.ts";
import { InvoiceError, type InvoiceProvider } from "./invoices.ts";
import { type Lightning, l402PriceOf } from "./policy.ts";

/** Milliseconds the scheme stops asking a backend that failed. */
export const BACKEND_PAUSE_MS = 5_000;
/** Longest a caller's offer is reused, milliseconds. */
export const OFFER_REUSE_MS = 60_000;
/** Most offers and verified credentials remembered per isolate (oldest dropped first). */
export const L402_MEMO_MAX = 4096;

/** Drop the oldest entry of a memo that is full. */
export function bound<K, V>(memo: Map<K, V>): void {
  if (memo.size >= L402_MEMO_MAX) memo.delete(memo.keys().next().value!);
}

const unavailable = (reason: "backend_unavailable" | "busy", message: string): Unavailable => ({
  ok: false,
  type: "l402",
  reason,
  message,
});

/** The offers of one isolate: `offer` for a 402, `forget` once an invoice is paid. */
export interface L402Offers {
  offer(ctx: OfferContext): Promise<Offer | Unavailable>;
  /** Never offer the invoice of `paymentHash` (hex) again. */
  forget(paymentHash: string): void;
}

/** Offers of invoices from `backend`, with macaroons for `lightning.service`. */
export function l402Offers(lightning: Lightning, backend: InvoiceProvider): L402Offers {
  const { service } = lightning;
  const rate: BucketConfig = {
    capacity: Math.max(1, Math.round(lightning.invoicesPerSecond * 10)),
    refillPerSecond: lightning.invoicesPerSecond,
  };
  let invoiceBudget: BucketState | null = null;
  let pausedUntilMs = 0;
  const offers = new Map<string, { offer: Offer; paymentHash: string; reuseUntilMs: number }>();

  return {
    async offer(ctx) {
      const price = l402PriceOf(ctx.plan);
      if (!price) return unavailable("backend_unavailable", "L402 is not offered to this plan");
      const key = `${ctx.plan.name}\n${ctx.caller}`;
      const cached = offers.get(key);
      if (cached && ctx.nowMs < cached.reuseUntilMs) return cached.offer;
      if (ctx.nowMs < pausedUntilMs)
        return unavailable("backend_unavailable", "The Lightning backend is unavailable; solve the proof-of-work challenge instead");
      const budget = take(invoiceBudget ?? { tokens: rate.capacity, updatedMs: ctx.nowMs }, rate, 1, ctx.nowMs);
      if (!budget.result.success)
        return unavailable("busy", "The gateway is making too many invoices; solve the proof-of-work challenge instead, or retry");
      invoiceBudget = budget.state;
      let invoice;
      try {
        invoice = await backend.create({
          sats: price.sats,
          memo: `${service}: ${price.credits} credits`,
          expirySeconds: lightning.invoiceExpirySeconds,
        });
      } catch (err) {
        // Invariant: a backend that fails is left alone for BACKEND_PAUSE_MS, so a 402 never
        // waits more than one `timeoutMs` for it and most do not wait at all.
        pausedUntilMs = Date.now() + BACKEND_PAUSE_MS;
        console.error(`tollbooth: L402 invoice failed (${err instanceof InvoiceError ? err.code : "error"})`, err);
        return unavailable("backend_unavailable", "The Lightning backend is unavailable; solve the proof-of-work challenge instead");
      }
      const validUntil = Math.floor(ctx.nowMs / 1000) + price.ttlSeconds;
      const { macaroon } = await mintL402(ctx.keyring, {
        paymentHash: invoice.paymentHash,
        service,
        validUntil,
        credits: price.credits,
        caller: ctx.caller,
      });
      const header = formatL402Challenge({ macaroon, invoice: invoice.bolt11 });
      const offer: Offer = {
        ok: true,
        type: "l402",
        challenge: header,
        json: {
          type: "l402",
          version: "0",
          token: macaroon,
          macaroon,
          invoice: invoice.bolt11,
          paymentHash: invoice.paymentHash,
          sats: invoice.sats,
          credits: price.credits,
          expires: invoice.expiresAt,
          validUntil,
          header,
        },
        hint: `Pay the Lightning invoice of the l402 challenge (${invoice.sats} sats for ${price.credits} credits) and retry with header Authorization: L402 <macaroon>:<preimage hex>`,
      };
      bound(offers);
      offers.set(key, {
        offer,
        paymentHash: invoice.paymentHash,
        reuseUntilMs: ctx.nowMs + Math.min(OFFER_REUSE_MS, (lightning.invoiceExpirySeconds * 1000) / 2),
      });
      return offer;
    },
    forget(paymentHash) {
      for (const [k, o] of offers) if (o.paymentHash === paymentHash) offers.delete(k);
    },
  };
}
