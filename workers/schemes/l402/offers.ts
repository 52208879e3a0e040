/**
 * L402 offers, per isolate and bounded: invoices made per second (`lightning.invoicesPerSecond`,
 * burst 10×), of which a share (`INVOICE_RESERVE_SHARE`) is kept for trusted callers (a
 * verified identity, or a caller that proved a completed payment: `OfferContext.trusted`) —
 * past what is left to the others, L402 is offered to them as `busy` while trusted callers
 * still get invoices; each network's untrusted callers get at most `INVOICES_PER_NETWORK`
 * fresh invoices per `OFFER_REUSE_MS`; a 5 s pause after a backend failure (each 402 does not
 * wait for a dead backend's timeout); the caller's last offer reused for up to 60 s (a caller
 * retrying a 402 does not mint an invoice per retry; under the `ip` strategy an unverified
 * caller is its network, so its network's offer is reused); a paid invoice never offered
 * again (`forget`). Under congestion the price is the plan's × the curve's factor (`scaleSats`).
 */

import { formatL402Challenge, mintL402 } from "../../../shared/credentials/l402.ts";
import { type BucketConfig, type BucketState, fullBucket, refill } from "../../../shared/limits/bucket.ts";
import { scaleSats } from "../../../shared/limits/congestion.ts";
import type { Offer, OfferContext, Unavailable } from "../contract.ts";
import { InvoiceError, type InvoiceProvider } from "./invoices.ts";
import { type Lightning, l402PriceOf } from "./policy.ts";

/** Milliseconds the scheme stops asking a backend that failed. */
export const BACKEND_PAUSE_MS = 5_000;
/** Longest a caller's offer is reused, milliseconds. */
export const OFFER_REUSE_MS = 60_000;
/** Most offers, networks and verified credentials remembered per isolate (oldest dropped first). */
export const L402_MEMO_MAX = 4096;
/**
 * Share of the per-isolate invoice budget (its burst, `invoicesPerSecond` × 10, rounded down)
 * that only trusted callers may take: an invoice flood from unverified networks leaves it whole.
 */
export const INVOICE_RESERVE_SHARE = 0.5;
/** Fresh invoices the untrusted callers of one network may have per `OFFER_REUSE_MS` (per isolate). */
export const INVOICES_PER_NETWORK = 2;

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

/**
 * The per-isolate invoice budgets: `take(ctx)` takes one invoice from the share `ctx` may
 * draw on (all of it for a trusted caller; above the reserve, and within its network's
 * allowance, for any other) and answers null, or `busy` taking nothing.
 */
function invoiceBudgets(lightning: Lightning): { take(ctx: OfferContext): Unavailable | null } {
  const rate: BucketConfig = {
    capacity: Math.max(1, Math.round(lightning.invoicesPerSecond * 10)),
    refillPerSecond: lightning.invoicesPerSecond,
  };
  const reserve = Math.floor(rate.capacity * INVOICE_RESERVE_SHARE);
  const perNetwork: BucketConfig = { capacity: INVOICES_PER_NETWORK, refillPerSecond: INVOICES_PER_NETWORK / (OFFER_REUSE_MS / 1000) };
  let total: BucketState | null = null;
  const networks = new Map<string, BucketState>();
  return {
    take(ctx) {
      const now = refill(total ?? fullBucket(rate, ctx.nowMs), rate, ctx.nowMs);
      // Invariant: callers that are not trusted never take the reserve's units.
      if (now.tokens < (ctx.trusted ? 0 : reserve) + 1)
        return unavailable("busy", "The gateway is making too many invoices; solve the proof-of-work challenge instead, or retry");
      if (!ctx.trusted) {
        const network = refill(networks.get(ctx.network) ?? fullBucket(perNetwork, ctx.nowMs), perNetwork, ctx.nowMs);
        if (network.tokens < 1)
          return unavailable(
            "busy",
            "This network has asked for too many invoices; pay the invoice already offered, solve the proof-of-work challenge, or retry later",
          );
        networks.delete(ctx.network);
        bound(networks);
        networks.set(ctx.network, { tokens: network.tokens - 1, updatedMs: network.updatedMs });
      }
      total = { tokens: now.tokens - 1, updatedMs: now.updatedMs };
      return null;
    },
  };
}

/** The offers of one isolate: `offer` for a 402, `forget` once an invoice is paid. */
export interface L402Offers {
  offer(ctx: OfferContext): Promise<Offer | Unavailable>;
  /** Never offer the invoice of `paymentHash` (hex) again. */
  forget(paymentHash: string): void;
}

/** Offers of invoices from `backend`, with macaroons for `lightning.service`. */
export function l402Offers(lightning: Lightning, backend: InvoiceProvider): L402Offers {
  const { service } = lightning;
  const budgets = invoiceBudgets(lightning);
  let pausedUntilMs = 0;
  const offers = new Map<string, { offer: Offer; paymentHash: string; reuseUntilMs: number }>();

  return {
    async offer(ctx) {
      const price = l402PriceOf(ctx.plan);
      if (!price) return unavailable("backend_unavailable", "L402 is not offered to this plan");
      // Under congestion the price rises by the curve's factor (docs/allocation.md); an offer is reused only at its price.
      const sats = ctx.congestion ? scaleSats(price.sats, ctx.congestion.priceFactorPpm) : price.sats;
      const key = `${ctx.plan.name}\n${ctx.caller}\n${sats}`;
      const cached = offers.get(key);
      if (cached && ctx.nowMs < cached.reuseUntilMs) return cached.offer;
      if (ctx.nowMs < pausedUntilMs)
        return unavailable("backend_unavailable", "The Lightning backend is unavailable; solve the proof-of-work challenge instead");
      const busy = budgets.take(ctx);
      if (busy) return busy;
      let invoice;
      try {
        invoice = await backend.create({
          sats,
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
