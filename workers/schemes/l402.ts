/**
 * L402 over Lightning (docs/wire-contract.md §10; Lightning Labs' L402 protocol
 * specification, bLIP-0026): the paid way through a 402.
 * Offer: an invoice from the operator's backend (workers/invoices.ts) and a macaroon bound
 * to its payment hash, the service, the credits, an expiry and the caller
 * (`WWW-Authenticate: L402 version="0", token=…, macaroon=…, invoice=…`).
 * Credential: `Authorization: L402|LSAT <macaroon>:<preimage>` or `Tollbooth-L402:
 * <macaroon>:<preimage>`, sent on every request; verified offline (shared/credentials/l402.ts). The first
 * use opens the macaroon's credits in the caller's Durable Object (`l402:<payment hash>`,
 * spent once); later uses spend the same balance.
 * Refusals: `l402_<L402Error>` (401, fresh challenges), `l402_exhausted` (402).
 *
 * Per isolate, bounded: invoices made per second (`lightning.invoicesPerSecond`, burst 10×;
 * past it L402 is offered as `busy`), a 5 s pause after a backend failure (each 402 does not
 * wait for a dead backend's timeout), the caller's last offer reused for up to 60 s (a
 * caller retrying a 402 does not mint an invoice per retry), verified credentials remembered
 * until they expire (at most 4096).
 */
import { take, type BucketConfig, type BucketState } from "../../shared/limits/bucket.ts";
import { formatL402Challenge, mintL402, parseL402Authorization, readL402Credential, verifyL402, type L402Credential, type L402Error, type L402Grant } from "../../shared/credentials/l402.ts";
import type { Policy } from "../../shared/policy/index.ts";
import { refuse } from "../../shared/result.ts";
import { AUTHORIZATION_HEADER, L402_HEADER } from "../../shared/wire/headers.ts";
import { InvoiceError, lnbitsInvoices, lndInvoices, type InvoiceProvider } from "../invoices.ts";
import type { Offer, PaymentScheme, SchemeFactory, Unavailable } from "./scheme.ts";

/** An L402 refusal as it reaches the wire. */
export type L402Refusal = `l402_${L402Error | "exhausted" | "unknown"}`;

/** Secret binding holding the backend's credential (LND invoice macaroon hex, or LNbits invoice key). */
export const LIGHTNING_SECRET = "TOLLBOOTH_LIGHTNING_SECRET";
/** Milliseconds the scheme stops asking a backend that failed. */
export const BACKEND_PAUSE_MS = 5_000;
/** Longest a caller's offer is reused, milliseconds. */
export const OFFER_REUSE_MS = 60_000;
/** Most offers and verified credentials remembered per isolate (oldest dropped first). */
export const L402_MEMO_MAX = 4096;

/** Drop the oldest entry of a memo that is full. */
function bound<K, V>(memo: Map<K, V>): void {
  if (memo.size >= L402_MEMO_MAX) memo.delete(memo.keys().next().value!);
}

/** The backend named by the policy. @throws TypeError when its secret is missing or bad */
function backendFor(lightning: NonNullable<Policy["lightning"]>, secret: string | undefined, fetchImpl: typeof fetch): InvoiceProvider {
  if (!secret) throw new TypeError(`tollbooth(): policy.lightning is set but the ${LIGHTNING_SECRET} secret is missing (LND: invoice macaroon in hex; LNbits: invoice key)`);
  try {
    const opts = { url: lightning.url, timeoutMs: lightning.timeoutMs, fetch: fetchImpl };
    return lightning.backend === "lnd" ? lndInvoices({ ...opts, macaroonHex: secret.trim() }) : lnbitsInvoices({ ...opts, apiKey: secret.trim() });
  } catch (err) {
    throw new TypeError(`tollbooth(): policy.lightning: ${(err as Error).message}`);
  }
}

/** The L402 scheme; null when the policy sets no `lightning` backend. */
export const l402Scheme: SchemeFactory = (policy, deps) => {
  const lightning = policy.lightning;
  if (!lightning) return null;
  const backend = backendFor(lightning, deps.secrets[LIGHTNING_SECRET], deps.fetch);
  const service = lightning.service;
  const rate: BucketConfig = { capacity: Math.max(1, Math.round(lightning.invoicesPerSecond * 10)), refillPerSecond: lightning.invoicesPerSecond };
  let invoiceBudget: BucketState | null = null;
  let pausedUntilMs = 0;
  const offers = new Map<string, { offer: Offer; paymentHash: string; reuseUntilMs: number }>();
  const verified = new Map<string, L402Grant>();

  const unavailable = (reason: "backend_unavailable" | "busy", message: string): Unavailable => ({ ok: false, type: "l402", reason, message });

  const scheme: PaymentScheme<L402Credential & { text: string }> = {
    type: "l402",
    prefix: "l402",
    credits: (plan) => plan.l402?.credits ?? 0,
    verifyFields: `the credential's fields (l402: macaroon and preimage, as in ${L402_HEADER})`,
    async offer(ctx) {
      const price = ctx.plan.l402;
      if (!price) return unavailable("backend_unavailable", "L402 is not offered to this plan");
      const key = `${ctx.plan.name}\n${ctx.caller}`;
      const cached = offers.get(key);
      if (cached && ctx.nowMs < cached.reuseUntilMs) return cached.offer;
      if (ctx.nowMs < pausedUntilMs) return unavailable("backend_unavailable", "The Lightning backend is unavailable; solve the proof-of-work challenge instead");
      const budget = take(invoiceBudget ?? { tokens: rate.capacity, updatedMs: ctx.nowMs }, rate, 1, ctx.nowMs);
      if (!budget.result.success) return unavailable("busy", "The gateway is making too many invoices; solve the proof-of-work challenge instead, or retry");
      invoiceBudget = budget.state;
      let invoice;
      try {
        invoice = await backend.create({ sats: price.sats, memo: `${service}: ${price.credits} credits`, expirySeconds: lightning.invoiceExpirySeconds });
      } catch (err) {
        // Invariant: a backend that fails is left alone for BACKEND_PAUSE_MS, so a 402 never
        // waits more than one `timeoutMs` for it and most do not wait at all.
        pausedUntilMs = Date.now() + BACKEND_PAUSE_MS;
        console.error(`tollbooth: L402 invoice failed (${err instanceof InvoiceError ? err.code : "error"})`, err);
        return unavailable("backend_unavailable", "The Lightning backend is unavailable; solve the proof-of-work challenge instead");
      }
      const validUntil = Math.floor(ctx.nowMs / 1000) + price.ttlSeconds;
      const { macaroon } = await mintL402(ctx.keyring, { paymentHash: invoice.paymentHash, service, validUntil, credits: price.credits, caller: ctx.caller });
      const header = formatL402Challenge({ macaroon, invoice: invoice.bolt11 });
      const offer: Offer = {
        ok: true,
        type: "l402",
        challenge: header,
        json: { type: "l402", version: "0", token: macaroon, macaroon, invoice: invoice.bolt11, paymentHash: invoice.paymentHash, sats: invoice.sats, credits: price.credits, expires: invoice.expiresAt, validUntil, header },
        hint: `Or pay the Lightning invoice of the l402 challenge (${invoice.sats} sats for ${price.credits} credits) and retry with header Authorization: L402 <macaroon>:<preimage hex>`,
      };
      bound(offers);
      offers.set(key, { offer, paymentHash: invoice.paymentHash, reuseUntilMs: ctx.nowMs + Math.min(OFFER_REUSE_MS, (lightning.invoiceExpirySeconds * 1000) / 2) });
      return offer;
    },
    read({ headers }) {
      const own = headers.get(L402_HEADER);
      const read = own !== null ? readL402Credential(own.trim()) : parseL402Authorization(headers.get(AUTHORIZATION_HEADER) ?? "");
      if (read === null) return null;
      return read.ok ? { ok: true, credential: { ...read, text: own ?? headers.get(AUTHORIZATION_HEADER)! } } : read;
    },
    readJson(body) {
      const { macaroon, preimage } = body;
      if (typeof macaroon !== "string" || typeof preimage !== "string") return refuse("malformed");
      const text = `${macaroon}:${preimage}`;
      const read = readL402Credential(text);
      return read.ok ? { ok: true, credential: { ...read, text } } : read;
    },
    async verify(credential, ctx) {
      const memoKey = `${ctx.caller}\n${credential.text}`;
      let grant = verified.get(memoKey);
      if (grant === undefined || ctx.nowMs >= grant.validUntilMs) {
        const check = await verifyL402(ctx.keyring, credential, { service, caller: ctx.caller, nowMs: ctx.nowMs });
        if (!check.ok) return check;
        grant = check;
        bound(verified);
        verified.set(memoKey, grant);
        // A paid invoice is never offered again by this isolate.
        for (const [k, o] of offers) if (o.paymentHash === grant.paymentHash) offers.delete(k);
      }
      const id = `l402:${grant.paymentHash}`;
      return {
        ok: true,
        ...(ctx.plan.l402 ? { paid: { amount: String(ctx.plan.l402.sats), unit: "sats" as const } } : {}),
        redemption: { spendId: id, spendUntilMs: grant.validUntilMs, jti: id, credits: grant.credits, tokenExpiresMs: grant.validUntilMs, reusable: true, prefix: "l402", solve: false },
      };
    },
    // L402: an invalid credential is 401 with a fresh challenge; a spent one is 402 (pay again).
    refusalStatus: (reason) => (reason === "l402_exhausted" ? 402 : 401),
    strip(headers) {
      headers.delete(L402_HEADER);
      const auth = headers.get(AUTHORIZATION_HEADER);
      if (auth !== null && parseL402Authorization(auth) !== null) headers.delete(AUTHORIZATION_HEADER);
    },
  };
  return scheme;
};
