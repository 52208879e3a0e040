/**
 * The per-isolate invoice budgets of L402 offers (workers/schemes/l402/offers.ts) against the
 * Lightning stand-in, counting the invoices it really issued: an invoice flood from new
 * unverified networks takes at most what the reserve leaves (`INVOICE_RESERVE_SHARE` of the
 * burst), and trusted callers (a verified identity, a proven payer) still get an invoice each;
 * a network's unverified callers get at most `INVOICES_PER_NETWORK` fresh invoices per
 * `OFFER_REUSE_MS`, and a caller retrying gets its offer again, not another invoice.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importKeyring, type Keyring } from "../../../../../shared/credentials/keys.ts";
import type { OfferContext } from "../../../../../workers/schemes/contract.ts";
import { lndInvoices } from "../../../../../workers/schemes/l402/invoices.ts";
import { INVOICE_RESERVE_SHARE, INVOICES_PER_NETWORK, l402Offers, OFFER_REUSE_MS } from "../../../../../workers/schemes/l402/offers.ts";
import { lightningOf } from "../../../../../workers/schemes/l402/policy.ts";
import { type Policy, parsePolicy, planFor } from "../../../../../workers/schemes/policy.ts";
import { type LightningStandin, startLightningStandin } from "../../../../helpers/lightning-standin.ts";

/** 2 invoices per second, burst 20: 10 of them reserved. */
const PER_SECOND = 2;
const BURST = PER_SECOND * 10;
const RESERVE = Math.floor(BURST * INVOICE_RESERVE_SHARE);

let ln: LightningStandin;
let keyring: Keyring;
let policy: Policy;
beforeAll(async () => {
  ln = await startLightningStandin();
  keyring = await importKeyring("offers-secret-0123456789abcdef");
  policy = parsePolicy({ l402: { sats: 10, credits: 5 }, lightning: { backend: "lnd", url: ln.url, invoicesPerSecond: PER_SECOND } });
});
afterAll(async () => {
  await ln?.close();
});

/** Fresh offers of one isolate, its invoices from the stand-in. */
const offers = () => l402Offers(lightningOf(policy)!, lndInvoices({ url: ln.url, macaroonHex: ln.macaroonHex, timeoutMs: 2_000 }));

let seq = 0;
/** The offer context of `caller` on `network` at `nowMs`. */
function ctx(caller: string, network: string, trusted: boolean, nowMs: number): OfferContext {
  return {
    policy,
    plan: planFor(policy, undefined),
    keyring,
    caller,
    nowMs,
    cost: 1,
    difficulty: 8,
    url: new URL("https://gw.example/mcp"),
    what: "tools/call echo",
    reason: "over_budget",
    network,
    trusted,
  };
}
/** A new unverified network (its caller is the network). */
const newNetwork = () => {
  const network = `ip:198.51.${Math.floor(++seq / 250)}.${seq % 250}`;
  return { caller: network, network };
};

describe("a reserve for trusted callers", () => {
  it("an invoice flood from new networks gets what the reserve leaves, then busy; trusted callers each still get an invoice", async () => {
    const o = offers();
    const t0 = 1_900_000_000_000;
    const before = ln.created();
    const flood = [];
    for (let i = 0; i < 60; i++) {
      const { caller, network } = newNetwork();
      flood.push(await o.offer(ctx(caller, network, false, t0)));
    }
    expect(flood.slice(0, BURST - RESERVE).every((r) => r.ok)).toBe(true);
    expect(flood.slice(BURST - RESERVE).map((r) => (r.ok ? "offered" : r.reason))).toEqual(Array(60 - (BURST - RESERVE)).fill("busy"));
    expect(ln.created() - before).toBe(BURST - RESERVE);
    // Ten verified callers (API keys), all on the flooding networks' side of the isolate.
    for (let i = 0; i < RESERVE; i++) {
      const offer = await o.offer(ctx(`key:pro-${seq}-${i}`, newNetwork().network, true, t0));
      expect(offer.ok, JSON.stringify(offer)).toBe(true);
    }
    expect(ln.created() - before).toBe(BURST);
    // The whole budget is spent now: busy for everyone until it refills.
    expect(await o.offer(ctx(`key:pro-${seq}-late`, newNetwork().network, true, t0))).toMatchObject({ ok: false, reason: "busy" });
    // One second later: 2 invoices' worth. Untrusted callers may not take them (the reserve is below its floor); a trusted one may.
    expect(await o.offer(ctx(newNetwork().caller, newNetwork().network, false, t0 + 1_000))).toMatchObject({ ok: false, reason: "busy" });
    expect(await o.offer(ctx(`key:pro-${seq}-after`, newNetwork().network, true, t0 + 1_000))).toMatchObject({ ok: true });
  });

  it("the flood keeps taking the refill above the reserve, never below it: the trusted caller after it still finds the reserve whole", async () => {
    const o = offers();
    const t0 = 1_900_000_100_000;
    const before = ln.created();
    // 30 s of flood at 4 new networks a second: the budget refills 2 a second.
    let offered = 0;
    for (let s = 0; s < 30; s++) {
      for (let i = 0; i < 4; i++) {
        const { caller, network } = newNetwork();
        if ((await o.offer(ctx(caller, network, false, t0 + s * 1_000))).ok) offered++;
      }
    }
    // The burst above the reserve, then the refill: 10 + 29 × 2.
    expect(offered).toBe(BURST - RESERVE + 29 * PER_SECOND);
    expect(ln.created() - before).toBe(offered);
    for (let i = 0; i < RESERVE; i++)
      expect((await o.offer(ctx(`key:pay-${seq}-${i}`, `ip:203.0.113.${i}`, true, t0 + 29_500))).ok).toBe(true);
  });
});

describe("per network", () => {
  it("unverified callers of one network: INVOICES_PER_NETWORK fresh invoices, then busy; the allowance comes back over OFFER_REUSE_MS", async () => {
    const o = offers();
    const t0 = 1_900_000_200_000;
    const network = newNetwork().network;
    const callers = ["auth:a", "auth:b", "auth:c", "auth:d"].map((c) => `${c}-${seq}`);
    const answers = [];
    for (const caller of callers) answers.push(await o.offer(ctx(caller, network, false, t0)));
    expect(answers.map((a) => (a.ok ? "offered" : a.reason))).toEqual([
      ...Array(INVOICES_PER_NETWORK).fill("offered"),
      ...Array(callers.length - INVOICES_PER_NETWORK).fill("busy"),
    ]);
    const busy = answers.at(-1)!;
    expect(busy.ok ? "" : busy.message).toMatch(/This network has asked for too many invoices/);
    // Another network is not held back by it.
    expect((await o.offer(ctx(`auth:e-${seq}`, newNetwork().network, false, t0))).ok).toBe(true);
    // One invoice's worth comes back after OFFER_REUSE_MS / INVOICES_PER_NETWORK.
    const later = t0 + OFFER_REUSE_MS / INVOICES_PER_NETWORK;
    expect((await o.offer(ctx(callers[2]!, network, false, later))).ok).toBe(true);
    expect(await o.offer(ctx(callers[3]!, network, false, later))).toMatchObject({ ok: false, reason: "busy" });
  });

  it("a trusted caller is not held to its network's allowance", async () => {
    const o = offers();
    const t0 = 1_900_000_300_000;
    const network = newNetwork().network;
    for (let i = 0; i < INVOICES_PER_NETWORK; i++) expect((await o.offer(ctx(`auth:${i}-${seq}`, network, false, t0))).ok).toBe(true);
    expect(await o.offer(ctx(`auth:x-${seq}`, network, false, t0))).toMatchObject({ ok: false, reason: "busy" });
    for (let i = 0; i < 3; i++) expect((await o.offer(ctx(`key:${i}-${seq}`, network, true, t0))).ok).toBe(true);
  });

  it("a caller retrying gets its offer again (no new invoice, nothing taken from any budget)", async () => {
    const o = offers();
    const t0 = 1_900_000_400_000;
    const { caller, network } = newNetwork();
    const before = ln.created();
    const first = await o.offer(ctx(caller, network, false, t0));
    for (let i = 1; i <= 5; i++) expect(await o.offer(ctx(caller, network, false, t0 + i * 1_000))).toEqual(first);
    expect(ln.created() - before).toBe(1);
    // Its network's second invoice is still there for another of its callers.
    expect((await o.offer(ctx(`auth:other-${seq}`, network, false, t0 + 5_000))).ok).toBe(true);
  });
});
