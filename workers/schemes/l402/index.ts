/**
 * L402 over Lightning (docs/wire-contract.md §10; Lightning Labs' L402 protocol
 * specification, bLIP-0026): the paid way through a 402.
 * Offer: an invoice from the operator's backend (./invoices.ts) and a macaroon bound
 * to its payment hash, the service, the credits, an expiry and the caller
 * (`WWW-Authenticate: L402 version="0", token=…, macaroon=…, invoice=…`; ./offers.ts).
 * Credential: `Authorization: L402|LSAT <macaroon>:<preimage>` or `Tollbooth-L402:
 * <macaroon>:<preimage>`, sent on every request; verified offline (shared/credentials/l402.ts). The first
 * use opens the macaroon's credits in the caller's Durable Object (`l402:<payment hash>`,
 * spent once); later uses spend the same balance.
 * Refusals: `l402_<L402Error>` (401, fresh challenges), `l402_exhausted` (402).
 * Policy: `l402` prices and the `lightning` backend (./policy.ts).
 *
 * Per isolate, bounded: the offers (./offers.ts), and verified credentials remembered until
 * they expire (at most 4096).
 */
import {
  type L402Credential,
  type L402Error,
  type L402Grant,
  parseL402Authorization,
  readL402Credential,
  verifyL402,
} from "../../../shared/credentials/l402.ts";
import { refuse } from "../../../shared/result.ts";
import { AUTHORIZATION_HEADER, L402_HEADER } from "../../../shared/wire/headers.ts";
import { credentialRefusal, type PaymentScheme, type SchemeFactory, type SchemeModule } from "../contract.ts";
import { type InvoiceProvider, lnbitsInvoices, lndInvoices } from "./invoices.ts";
import { bound, l402Offers } from "./offers.ts";
import { type Lightning, l402PriceOf, l402Section, lightningOf } from "./policy.ts";

export { BACKEND_PAUSE_MS, L402_MEMO_MAX, OFFER_REUSE_MS } from "./offers.ts";

/** An L402 refusal as it reaches the wire. */
export type L402Refusal = `l402_${L402Error | "exhausted" | "unknown"}`;

/** Secret binding holding the backend's credential (LND invoice macaroon hex, or LNbits invoice key). */
export const LIGHTNING_SECRET = "TOLLBOOTH_LIGHTNING_SECRET";

/** The backend named by the policy. @throws TypeError when its secret is missing or bad */
function backendFor(lightning: Lightning, secret: string | undefined, fetchImpl: typeof fetch): InvoiceProvider {
  if (!secret)
    throw new TypeError(
      `tollbooth(): policy.lightning is set but the ${LIGHTNING_SECRET} secret is missing (LND: invoice macaroon in hex; LNbits: invoice key)`,
    );
  try {
    const opts = { url: lightning.url, timeoutMs: lightning.timeoutMs, fetch: fetchImpl };
    return lightning.backend === "lnd"
      ? lndInvoices({ ...opts, macaroonHex: secret.trim() })
      : lnbitsInvoices({ ...opts, apiKey: secret.trim() });
  } catch (err) {
    throw new TypeError(`tollbooth(): policy.lightning: ${(err as Error).message}`);
  }
}

/** An L402 credential as read, with the text it was read from (the memo's key). */
type Credential = L402Credential & { text: string };

/** The L402 scheme's factory; null when the policy sets no `lightning` backend. */
export const l402Scheme: SchemeFactory = (policy, deps) => {
  const lightning = lightningOf(policy);
  if (!lightning) return null;
  const offers = l402Offers(lightning, backendFor(lightning, deps.secrets[LIGHTNING_SECRET], deps.fetch));
  const service = lightning.service;
  const verified = new Map<string, L402Grant>();

  const scheme: PaymentScheme<Credential> = {
    type: "l402",
    prefix: "l402",
    admits: "paid",
    credits: l402Section.credits,
    verifyFields: `the credential's fields (l402: macaroon and preimage, as in ${L402_HEADER})`,
    offer: (ctx) => offers.offer(ctx),
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
        offers.forget(grant.paymentHash);
      }
      const id = `l402:${grant.paymentHash}`;
      const price = l402PriceOf(ctx.plan);
      return {
        ok: true,
        ...(price ? { paid: { amount: String(price.sats), unit: "sats" as const } } : {}),
        redemption: {
          spendId: id,
          spendUntilMs: grant.validUntilMs,
          jti: id,
          credits: grant.credits,
          tokenExpiresMs: grant.validUntilMs,
          reusable: true,
          prefix: "l402",
          solve: false,
        },
      };
    },
    // L402: an invalid credential is 401 with a fresh challenge; a spent one is 402 (pay again).
    refusalStatus: (reason) => (reason === "l402_exhausted" ? 402 : 401),
    strip(headers) {
      headers.delete(L402_HEADER);
      const auth = headers.get(AUTHORIZATION_HEADER);
      if (auth !== null && parseL402Authorization(auth) !== null) headers.delete(AUTHORIZATION_HEADER);
    },
    publicPlan(plan) {
      const price = l402PriceOf(plan);
      return price ? { l402: price } : {};
    },
    // What a client needs to pay over Lightning (never the backend's URL or secret).
    publicPolicy: () => ({
      lightning: { service, invoiceExpirySeconds: lightning.invoiceExpirySeconds, credentialHeader: "Tollbooth-L402" },
    }),
    verifyRefusal: (reason) => credentialRefusal(scheme, reason),
  };
  return scheme;
};

/** L402 as registered. */
export const l402: SchemeModule = {
  type: "l402",
  prefix: "l402",
  make: l402Scheme,
  policy: l402Section,
  words: {
    redeemed: "paid L402 invoices (first use)",
    paidIn: "sats (l402)",
    shownAs: { counted: "sats", unit: "sats", decimals: 0 },
    refusedWith401: "L402",
  },
};
