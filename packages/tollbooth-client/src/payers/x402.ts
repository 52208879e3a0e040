/**
 * The x402 payer (docs/wire-contract.md §11–12): pays a tollbooth 402 in a stablecoin (USDC)
 * over EVM, x402 v2, `exact` scheme (EIP-3009 `transferWithAuthorization`).
 *
 * x402 is not a `WWW-Authenticate` scheme: the 402 carries
 *
 *   PAYMENT-REQUIRED: <base64 JSON {x402Version: 2, resource, accepts: [PaymentRequirements…]}>
 *
 * (and its JSON-RPC body lists `{type: "x402", x402Version, accepts, …}` in
 * `error.data.challenges`). This payer picks an `exact` requirement on a network and asset the
 * caller allowed and within its spending limits, has `@x402/evm`'s exact client scheme sign
 * the authorization with the configured signer (no EIP-712 code here), and hands the resolver
 *
 *   PAYMENT-SIGNATURE: <base64 JSON PaymentPayload>
 *
 * to send once with the retried request. The gateway verifies and settles it, and answers
 * with `PAYMENT-RESPONSE` and, in credits mode, `Tollbooth-Token` (kept by the resolver like
 * one bought by a proof of work); in per-request mode every request pays again.
 */

import { x402Client } from "@x402/core/client";
import { decodePaymentRequiredHeader, encodePaymentRequiredHeader, encodePaymentSignatureHeader } from "@x402/core/http";
import type { Network, PaymentPayload, PaymentRequired, PaymentRequirements } from "@x402/core/types";
import type { ClientEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER } from "../../../../shared/wire/headers.ts";
import { TollboothError } from "../errors.ts";
import type { ChallengeResponse, Choice, OfferedChallenge, PayContext, Payer, PayerDefinition, Refusal } from "./payer.ts";

/** x402 v2 HTTP header names (lowercase), from shared/wire/headers.ts: the gateway uses the same. */
export { PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER };
/** The name of an x402 entry in `error.data.challenges` (`type`), and of the scheme of an `OfferedChallenge` this payer makes. */
export const X402_CHALLENGE_TYPE = "x402";

/** What the payer reports after signing a payment (`x402.onPay`). */
export interface X402PayEvent {
  /** The request URL that was challenged. */
  url: string;
  scheme: "x402";
  /** CAIP-2 network, e.g. `eip155:8453`. */
  network: string;
  /** The token contract address, as offered. */
  asset: string;
  /** Atomic units of the asset, a decimal string. */
  amount: string;
  /** Time to sign the authorization, milliseconds (settlement happens at the gateway, on the retry). */
  ms: number;
}

/**
 * The x402 side of the resolver's options (`withTollbooth`'s `x402`):
 *
 *   x402: {
 *     signer: privateKeyToAccount("0x…"),   // viem LocalAccount, or any ClientEvmSigner of @x402/evm
 *     networks: ["eip155:8453"],            // CAIP-2 networks it may pay on
 *     assets: ["0x8335…2913"],              // token addresses it may pay in (case-insensitive)
 *     maxPerRequest: 10_000n,               // atomic units (bigint or decimal string)
 *     maxPerHour: 1_000_000n,               // atomic units, per asset, sliding hour
 *     onPay: (e) => console.log(e),         // { url, scheme: "x402", network, asset, amount, ms }
 *   }
 */
export interface X402Options {
  /**
   * Signs EIP-712 `TransferWithAuthorization` (EIP-3009): a viem `LocalAccount` (e.g.
   * `privateKeyToAccount`) or any `ClientEvmSigner` `@x402/evm` accepts (`address` and
   * `signTypedData`).
   */
  signer: ClientEvmSigner;
  /** CAIP-2 networks it may pay on, e.g. `["eip155:8453"]` (only `eip155:<chain id>`). */
  networks: string[];
  /** Token contract addresses it may pay in (`0x` + 40 hex), compared case-insensitively. */
  assets: string[];
  /** Most atomic units one payment may ask; dearer → refused (`payment_refused`). */
  maxPerRequest: bigint | string;
  /**
   * Most atomic units signed for in any sliding hour, per asset (all gateways together); a
   * payment that would go over it is refused (`payment_refused`). Counted when signing starts,
   * also for payments the gateway then refuses (the authorization may still be settled).
   */
  maxPerHour: bigint | string;
  /** Called after each signed payment. */
  onPay?: (event: X402PayEvent) => void;
}

/** What the x402 payer reads from `withTollbooth`'s options (`pay: ["x402"]`). */
export interface X402ResolverOptions {
  /**
   * Signer, allowed networks and assets, and spending limits (atomic units):
   * `{ signer, networks, assets, maxPerRequest, maxPerHour, onPay? }` (see `X402Options`). An
   * offer on another network or asset, over `maxPerRequest`, or taking what was signed for in
   * the last hour in that asset over `maxPerHour`, is not paid. Required when `pay` names
   * `"x402"`; absent → every x402 offer is refused (`no_wallet`).
   */
  x402?: X402Options | undefined;
}

/** Options of {@link x402Payer}: its part of `withTollbooth`'s options, the resolver's signal, a clock. */
export interface X402PayerOptions extends X402ResolverOptions {
  /** Cancels before signing → `TollboothError("aborted")`. */
  signal?: AbortSignal | undefined;
  /** The clock, unix milliseconds (default `Date.now`; for tests). */
  now?: () => number;
}

const HOUR_MS = 3_600_000;
const CAIP2_EIP155 = /^eip155:[0-9]+$/;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const ATOMIC = /^[0-9]+$/;

/** `value` as a positive bigint (a bigint, or a decimal string of digits), else null. */
function positiveAtomic(value: unknown): bigint | null {
  let n: bigint;
  if (typeof value === "bigint") n = value;
  else if (typeof value === "string" && ATOMIC.test(value)) n = BigInt(value);
  else return null;
  return n > 0n ? n : null;
}

/**
 * Check `withTollbooth`'s `x402` option (programming errors → TypeError naming the option).
 * @param where the option's name in messages (default `withTollbooth: option x402`)
 */
export function checkX402Options(x402: X402Options | undefined, where = "withTollbooth: option x402"): void {
  if (!x402 || typeof x402 !== "object") {
    throw new TypeError(`${where} ({ signer, networks, assets, maxPerRequest, maxPerHour }) is missing, but option pay includes "x402"`);
  }
  const signer = x402.signer as Partial<ClientEvmSigner> | undefined;
  if (!signer || typeof signer.address !== "string" || !ADDRESS.test(signer.address) || typeof signer.signTypedData !== "function") {
    throw new TypeError(`${where}.signer must have an address (0x + 40 hex) and signTypedData (e.g. viem's privateKeyToAccount)`);
  }
  if (
    !Array.isArray(x402.networks) ||
    x402.networks.length === 0 ||
    !x402.networks.every((n) => typeof n === "string" && CAIP2_EIP155.test(n))
  ) {
    throw new TypeError(
      `${where}.networks must be a non-empty array of CAIP-2 EVM networks ("eip155:<chain id>"), got ${JSON.stringify(x402.networks)}`,
    );
  }
  if (!Array.isArray(x402.assets) || x402.assets.length === 0 || !x402.assets.every((a) => typeof a === "string" && ADDRESS.test(a))) {
    throw new TypeError(`${where}.assets must be a non-empty array of token addresses (0x + 40 hex), got ${JSON.stringify(x402.assets)}`);
  }
  for (const key of ["maxPerRequest", "maxPerHour"] as const) {
    if (positiveAtomic(x402[key]) === null) {
      throw new TypeError(
        `${where}.${key} must be a positive integer of atomic units (bigint or decimal string), got ${typeof x402[key] === "bigint" ? `${x402[key]}n` : JSON.stringify(x402[key])}`,
      );
    }
  }
  if (x402.onPay !== undefined && typeof x402.onPay !== "function") throw new TypeError(`${where}.onPay must be a function`);
}

/** The `error.data.challenges` entry `{type: "x402", x402Version, accepts, resource?}` of a JSON-RPC error body, if any. */
function bodyEntry(body: unknown): { x402Version: unknown; accepts: unknown[]; resource?: unknown; extensions?: unknown } | undefined {
  const challenges = (body as { error?: { data?: { challenges?: unknown } } } | null | undefined)?.error?.data?.challenges;
  if (!Array.isArray(challenges)) return undefined;
  return challenges.find(
    (c): c is { x402Version: unknown; accepts: unknown[] } =>
      typeof c === "object" &&
      c !== null &&
      (c as { type?: unknown }).type === X402_CHALLENGE_TYPE &&
      Array.isArray((c as { accepts?: unknown }).accepts),
  );
}

/** A well-formed `exact` requirement (strings where the spec has strings, a positive integer amount). */
function readableExact(r: unknown): r is PaymentRequirements {
  if (typeof r !== "object" || r === null) return false;
  const q = r as Record<string, unknown>;
  return (
    q.scheme === "exact" &&
    typeof q.network === "string" &&
    typeof q.asset === "string" &&
    typeof q.payTo === "string" &&
    positiveAtomic(q.amount) !== null
  );
}

/**
 * A payer for x402 v2 offers (the `PAYMENT-REQUIRED` header; else an `error.data.challenges`
 * entry of `type: "x402"`; the only payer that reads the 402's body). It takes no
 * `WWW-Authenticate` challenge: `offered(response)` reads its offer as one `OfferedChallenge`
 * of scheme `x402` whose `text` is the base64 `PaymentRequired`.
 *
 * `choose` refuses: `no_wallet` without `x402` options; `unreadable` when the header does not
 * decode to `{x402Version: 2, accepts: [...]}`; `not_allowed` when no well-formed `exact`
 * requirement names an allowed network and asset; `over_limit` when every allowed one asks
 * more than `maxPerRequest`, or more than what is left of `maxPerHour` for its asset. Otherwise
 * it takes the first allowed requirement within the limits, and its way is `kind: "once"`:
 * `obtain()` checks the limits again and counts the amount (so concurrent payments cannot
 * overshoot together), has `@x402/evm`'s `ExactEvmScheme` sign the authorization, and returns
 * `{ "payment-signature": <base64 PaymentPayload> }`. It throws `TollboothError`
 * `payment_refused` (over a limit by then), `aborted` (the signal fired before signing) or
 * `payment_failed` (the signer, or the scheme, failed — e.g. no EIP-712 `extra.name` /
 * `extra.version` in the requirement).
 *
 * The hour window is kept in memory by this payer: one resolver, every gateway origin.
 */
export function x402Payer(options: X402PayerOptions = {}): Payer {
  const x402 = options.x402;
  const limits = new SigningLimits(x402, options.now ?? (() => Date.now()));
  let client: x402Client | undefined;
  const sign = (request: PaymentRequired) => {
    client ??= exactClient(x402!, limits);
    return client.createPaymentPayload(request);
  };
  return {
    name: "x402",
    proof: "x402 payment",
    readsBody: true,
    renewOn: [],
    offered: offeredPayment,
    choose(challenge: OfferedChallenge, context: PayContext): Choice {
      if (!x402) return { ok: false, reason: "no_wallet", message: "an x402 offer, but no x402 signer is configured" };
      const read = readPaymentRequired(challenge.text);
      if (!read.ok) return read;
      const picked = limits.pick(read.paymentRequired.accepts);
      if (!picked.ok) return picked;
      const { paymentRequired } = read;
      const { requirement } = picked;
      return {
        ok: true,
        way: {
          kind: "once",
          obtain: () => signPayment({ x402, limits, sign, signal: options.signal, context, paymentRequired, requirement }),
        },
      };
    },
  };
}

/** The x402 way through (`pay: ["x402"]`, with `x402`). */
export const x402: PayerDefinition<"x402", X402ResolverOptions> = {
  name: "x402",
  check: (options) => checkX402Options(options.x402),
  create: ({ x402 }, signal) => x402Payer({ x402, signal }),
  claims401: () => false,
};

/** The offers of a 402: its `PAYMENT-REQUIRED` header, else its body's `error.data.challenges` entry, as one `OfferedChallenge`. */
function offeredPayment(response: ChallengeResponse): OfferedChallenge[] {
  const header = response.headers.get(PAYMENT_REQUIRED_HEADER)?.trim();
  if (header) return [{ scheme: X402_CHALLENGE_TYPE, params: {}, text: header }];
  const entry = bodyEntry(response.body);
  if (!entry) return [];
  try {
    const paymentRequired = {
      x402Version: entry.x402Version,
      resource: entry.resource ?? { url: response.url },
      accepts: entry.accepts,
      ...(entry.extensions === undefined ? {} : { extensions: entry.extensions }),
    } as PaymentRequired;
    return [{ scheme: X402_CHALLENGE_TYPE, params: {}, text: encodePaymentRequiredHeader(paymentRequired) }];
  } catch {
    return [];
  }
}

/** The base64 `PaymentRequired` of an offer, decoded; a refusal `unreadable` when it is not x402 v2 with `accepts`. */
function readPaymentRequired(text: string): { ok: true; paymentRequired: PaymentRequired } | Refusal {
  let paymentRequired: PaymentRequired;
  try {
    paymentRequired = decodePaymentRequiredHeader(text);
  } catch {
    return { ok: false, reason: "unreadable", message: "unreadable x402 offer: PAYMENT-REQUIRED is not base64 JSON" };
  }
  if (
    typeof paymentRequired !== "object" ||
    paymentRequired === null ||
    paymentRequired.x402Version !== 2 ||
    !Array.isArray(paymentRequired.accepts)
  ) {
    return { ok: false, reason: "unreadable", message: "unreadable x402 offer: not an x402 v2 PaymentRequired with accepts" };
  }
  return { ok: true, paymentRequired };
}

/**
 * The allowed networks and assets and the spending limits of one payer, with the hour window
 * of what it signed for (in memory: one resolver, every gateway origin).
 */
class SigningLimits {
  readonly networks: Set<string>;
  readonly assets: Set<string>;
  readonly maxPerRequest: bigint;
  readonly maxPerHour: bigint;
  private readonly now: () => number;
  /** Payments started in the last hour, per asset (lowercase): when (unix ms) and how much (atomic units). */
  private readonly spent = new Map<string, Array<{ at: number; amount: bigint }>>();

  constructor(x402: X402Options | undefined, now: () => number) {
    this.networks = new Set(x402?.networks ?? []);
    this.assets = new Set((x402?.assets ?? []).map((a) => a.toLowerCase()));
    this.maxPerRequest = positiveAtomic(x402?.maxPerRequest) ?? 0n;
    this.maxPerHour = positiveAtomic(x402?.maxPerHour) ?? 0n;
    this.now = now;
  }

  /** Atomic units of `asset` (lowercase) signed for in the last hour. */
  spentLastHour(asset: string): bigint {
    const list = this.spent.get(asset);
    if (!list) return 0n;
    const since = this.now() - HOUR_MS;
    while (list.length > 0 && list[0]!.at <= since) list.shift();
    return list.reduce((sum, p) => sum + p.amount, 0n);
  }

  /** Why `r` is over a limit now, or null when it is within both. */
  overLimit(r: PaymentRequirements): string | null {
    const amount = BigInt(r.amount);
    if (amount > this.maxPerRequest)
      return `x402 asks ${amount} atomic units of ${r.asset} on ${r.network}, more than maxPerRequest ${this.maxPerRequest}`;
    const hour = this.spentLastHour(r.asset.toLowerCase());
    if (hour + amount > this.maxPerHour)
      return `x402 asks ${amount} atomic units of ${r.asset}; with ${hour} signed for in the last hour that is more than maxPerHour ${this.maxPerHour}`;
    return null;
  }

  /** Counts a payment of `r` from now on (before signing, so concurrent payments cannot overshoot together). */
  count(r: PaymentRequirements): void {
    const asset = r.asset.toLowerCase();
    const list = this.spent.get(asset) ?? [];
    this.spent.set(asset, list);
    list.push({ at: this.now(), amount: BigInt(r.amount) });
  }

  /**
   * The first well-formed `exact` requirement of `accepts` on an allowed network and asset
   * and within the limits; else the refusal (`unreadable`, `not_allowed`, `over_limit`).
   */
  pick(accepts: unknown[]): { ok: true; requirement: PaymentRequirements } | Refusal {
    const exact = accepts.filter(readableExact);
    if (exact.length === 0) return { ok: false, reason: "unreadable", message: "x402 offer without a well-formed exact requirement" };
    const allowed = exact.filter((r) => this.networks.has(r.network) && this.assets.has(r.asset.toLowerCase()));
    if (allowed.length === 0) {
      const offered = exact.map((r) => `${r.asset} on ${r.network}`).join(", ");
      return {
        ok: false,
        reason: "not_allowed",
        message: `x402 offers ${offered}; none is an allowed network (${[...this.networks].join(", ")}) and asset (${[...this.assets].join(", ")})`,
      };
    }
    let firstOver: string | null = null;
    for (const r of allowed) {
      const over = this.overLimit(r);
      if (!over) return { ok: true, requirement: r };
      firstOver ??= over;
    }
    return { ok: false, reason: "over_limit", message: firstOver! };
  }
}

/** `@x402/core`'s client with the exact EVM scheme registered for each allowed network; its spend controls mirror `maxPerRequest`. */
function exactClient(x402: X402Options, limits: SigningLimits): x402Client {
  const scheme = new ExactEvmScheme(x402.signer);
  const client = new x402Client();
  for (const network of limits.networks) client.register(network as Network, scheme);
  // Our own checks come first; these only keep the library from signing anything else.
  client.setSpendControls({
    maxAmountPerPayment: false,
    allowedAssets: [...limits.networks].flatMap((network) =>
      [...limits.assets].map((asset) => ({ network: network as Network, asset, maxAmountPerPayment: String(limits.maxPerRequest) })),
    ),
  });
  return client;
}

/** What signing one chosen requirement needs. */
interface Signing {
  x402: X402Options;
  limits: SigningLimits;
  sign: (request: PaymentRequired) => Promise<PaymentPayload>;
  signal: AbortSignal | undefined;
  context: PayContext;
  paymentRequired: PaymentRequired;
  requirement: PaymentRequirements;
}

/**
 * The way's `obtain()`: checks the limits again and counts the amount, signs the
 * authorization, reports it, and returns `{ "payment-signature": <base64 PaymentPayload> }`.
 * @throws TollboothError `aborted`, `payment_refused` or `payment_failed`
 */
async function signPayment({
  x402,
  limits,
  sign,
  signal,
  context,
  paymentRequired,
  requirement,
}: Signing): Promise<Record<string, string>> {
  if (signal?.aborted) throw new TollboothError("aborted", "payment aborted");
  const stillOver = limits.overLimit(requirement);
  if (stillOver) throw new TollboothError("payment_refused", stillOver);
  limits.count(requirement);
  const t0 = performance.now();
  let payload: PaymentPayload;
  try {
    payload = await sign({
      x402Version: 2,
      resource: paymentRequired.resource ?? { url: context.url },
      accepts: [requirement],
      ...(paymentRequired.extensions ? { extensions: paymentRequired.extensions } : {}),
    });
  } catch (err) {
    const amount = BigInt(requirement.amount);
    throw new TollboothError(
      "payment_failed",
      `signing the x402 payment of ${amount} atomic units of ${requirement.asset} on ${requirement.network} failed: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  x402.onPay?.({
    url: context.url,
    scheme: "x402",
    network: requirement.network,
    asset: requirement.asset,
    amount: requirement.amount,
    ms: performance.now() - t0,
  });
  return { [PAYMENT_SIGNATURE_HEADER]: encodePaymentSignatureHeader(payload) };
}
