/**
 * The public API of the agent side, the entry point of the `tollbooth-client` package
 * (packages/tollbooth-client; names in packages/names.json):
 *
 *   import { withTollbooth } from "tollbooth-client";
 *   const transport = new StreamableHTTPClientTransport(url, { fetch: withTollbooth(fetch) });
 *
 * - `withTollbooth(fetch, options)`: a `fetch` that gets through 402 challenges (resolver.ts);
 * - `solvePow(salt, difficulty, options)`: the proof-of-work solver, on a worker pool for
 *   difficulties ≥ `MULTI_THREAD_MIN_DIFFICULTY` (solver.ts);
 * - `lndWallet(...)`: a Lightning wallet over LND's REST API, for `pay: ["l402"]` (wallets.ts);
 * - `TollboothError` / `WalletError`: what they throw, with a `code`.
 * In-repository code may keep importing the files themselves.
 */
export { withTollbooth } from "./resolver.ts";
export type {
  FetchLike,
  LightningOptions,
  PayEvent,
  PayerName,
  SolveEvent,
  WithTollboothOptions,
  X402Options,
  X402PayEvent,
} from "./resolver.ts";
export { MULTI_THREAD_MIN_DIFFICULTY, solvePow } from "./solver/solve-pow.ts";
export type { KernelPath, PowSolution, SolveOptions } from "./solver/solve-pow.ts";
export { TollboothError } from "./errors.ts";
export type { TollboothErrorCode } from "./errors.ts";
export { invoiceAmountSats, invoicePaymentHash, lndWallet, WalletError } from "./payers/lightning-wallet.ts";
export type { LightningWallet, LndWalletOptions, WalletErrorCode, WalletFetch } from "./payers/lightning-wallet.ts";
