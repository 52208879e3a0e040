/**
 * The public API of the agent side, the entry point of the `tollbooth-client` package
 * (packages/tollbooth-client; names in packages/names.json):
 *
 *   import { withTollbooth } from "tollbooth-client";
 *   const transport = new StreamableHTTPClientTransport(url, { fetch: withTollbooth(fetch) });
 *
 * - `withTollbooth(fetch, options)`: a `fetch` that gets through 402 challenges
 *   (resolver/with-tollbooth.ts), by the ways of payers/ its `pay` option names;
 * - `solvePow(salt, difficulty, options)`: the proof-of-work solver, on a worker pool for
 *   difficulties ≥ `MULTI_THREAD_MIN_DIFFICULTY` (solver/solve-pow.ts);
 * - `lndWallet(...)`: a Lightning wallet over LND's REST API, for the Lightning payer's
 *   `lightning.wallet` option (payers/lightning-wallet.ts);
 * - `TollboothError`: what they all throw, with a `code` (errors.ts).
 * In-repository code may keep importing the files themselves.
 */

export type { TollboothErrorCode } from "./errors.ts";
export { TollboothError } from "./errors.ts";
export type {
  LightningOptions,
  LightningWallet,
  LndWalletOptions,
  PayEvent,
  PayerName,
  PayerOptions,
  SolveEvent,
  WalletFetch,
  X402Options,
  X402PayEvent,
} from "./payers/index.ts";
export { invoiceAmountSats, invoicePaymentHash, lndWallet } from "./payers/index.ts";
export type { FetchLike, ResolverOptions, WithTollboothOptions } from "./resolver/with-tollbooth.ts";
export { withTollbooth } from "./resolver/with-tollbooth.ts";
export type { KernelPath, PowSolution, SolveOptions } from "./solver/solve-pow.ts";
export { MULTI_THREAD_MIN_DIFFICULTY, solvePow } from "./solver/solve-pow.ts";
