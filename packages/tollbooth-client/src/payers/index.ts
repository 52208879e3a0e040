/**
 * The registry of the agent side's ways through a 402: every payer, in the order they are
 * listed to people (the `pay` option's names, its messages). Which ones a resolver takes,
 * and in which order of preference, is its `pay` option (default `["pow"]`).
 *
 * A new way through is one file in this folder: a `PayerDefinition` (payer.ts) with its own
 * options interface, added to `PAYERS` and to `PayerOptions` below. The resolver names no
 * scheme: everything it needs comes through the `Payer` interface.
 */
import { type L402ResolverOptions, l402 } from "./l402.ts";
import type { Payer } from "./payer.ts";
import { type PowResolverOptions, pow } from "./pow.ts";
import { type X402ResolverOptions, x402 } from "./x402.ts";

/** Every payer, in the order they are listed. */
export const PAYERS = [pow, l402, x402] as const;

/** Names of the payers, as in the resolver's `pay` option. */
export type PayerName = (typeof PAYERS)[number]["name"];

/** The options of every payer: the part of `withTollbooth`'s options the payers read. */
export type PayerOptions = PowResolverOptions & L402ResolverOptions & X402ResolverOptions;

/** The names in `PAYERS`, in order. */
export const PAYER_NAMES: readonly PayerName[] = PAYERS.map((p) => p.name);

/**
 * The payers of `pay`, built for one resolver from its options, in that order.
 * @param pay names checked with {@link checkPayerOptions}
 */
export function createPayers(pay: readonly PayerName[], options: PayerOptions, signal: AbortSignal | undefined): Payer[] {
  return pay.map((name) => PAYERS.find((p) => p.name === name)!.create(options, signal));
}

/**
 * Check `pay` and the options of the payers it names.
 * @returns `pay`, or `["pow"]` when it is undefined
 * @throws TypeError naming the option: `pay` empty, not an array, naming an unknown way or
 *   one twice; a payer's own options missing or malformed (see each payer's `check`)
 */
export function checkPayerOptions(pay: PayerName[] | undefined, options: PayerOptions): PayerName[] {
  const names = PAYER_NAMES.map((n) => JSON.stringify(n));
  const chosen = pay ?? ["pow"];
  if (!Array.isArray(chosen) || chosen.length === 0)
    throw new TypeError(`withTollbooth: option pay must be a non-empty array of ${names.join(" | ")}`);
  for (const name of chosen) {
    if (!PAYER_NAMES.includes(name))
      throw new TypeError(`withTollbooth: option pay names an unknown way ${JSON.stringify(name)} (known: ${names.join(", ")})`);
  }
  if (new Set(chosen).size !== chosen.length) throw new TypeError(`withTollbooth: option pay names a way twice: ${JSON.stringify(chosen)}`);
  for (const payer of PAYERS) if (chosen.includes(payer.name)) payer.check(options);
  return chosen;
}

/** Whether a 401 with this `error.data.reason` is tollbooth refusing a credential of some payer (else it is the origin's). */
export function claimed401(reason: string | undefined): boolean {
  return reason !== undefined && PAYERS.some((p) => p.claims401(reason));
}

export type { LightningOptions, PayEvent } from "./l402.ts";
export type { LightningWallet, LndWalletOptions, WalletFetch } from "./lightning-wallet.ts";
export { invoiceAmountSats, invoicePaymentHash, lndWallet } from "./lightning-wallet.ts";
export type { SolveEvent } from "./pow.ts";
export type { X402Options, X402PayEvent } from "./x402.ts";
