/**
 * Agent-side resolver: `withTollbooth(fetch, options)` wraps a `fetch` so an MCP client
 * gets through tollbooth by itself.
 *
 *   const transport = new StreamableHTTPClientTransport(url, { fetch: withTollbooth(fetch) });
 *
 * On 402 it reads every challenge of `WWW-Authenticate` (RFC 9110 §11.6.1) — and what a
 * payer reads elsewhere in the 402 — and takes, in the order of its `pay` option (default
 * `["pow"]`), the first offered challenge whose payer accepts (docs/wire-contract.md §11;
 * the payers are listed in payers/index.ts, each documents its scheme). A payer's way is
 * either a fresh proof sent once with the retried request (redeemed in the same round trip;
 * the `Tollbooth-Token` the gateway may mint with it is kept per origin), or a reusable
 * credential kept per origin. What it keeps is sent until it expires or `Tollbooth-Credits`
 * reaches 0; a 402, or a 401 a payer claims, to a kept credential drops it and is handled
 * once as a fresh challenge. A refusal of a fresh proof is final, unless its payer renews on
 * that reason: a 402 `solution_too_easy` to a fresh solution (the caller's difficulty rose
 * while it solved) is handled as a fresh challenge — its 402 asks the current difficulty —
 * at most `MAX_RESOLVES` times a call. On 429 it waits the integer `Retry-After` (bounded)
 * and retries once; a 429 to a fresh proof is waited once more and retried with the same
 * proof. When it gives up it throws `TollboothError` with a code and the HTTP status
 * (resolver/call.ts).
 */
import { checkPayerOptions, createPayers, type PayerName, type PayerOptions } from "../payers/index.ts";
import { Call, type FetchLike, type Resolver } from "./call.ts";
import { KeptCredentials } from "./kept.ts";

export type { FetchLike } from "./call.ts";
export { MAX_RESOLVES } from "./call.ts";

/** The resolver's own options (beside those of its payers). */
export interface ResolverOptions {
  /** Longest `Retry-After` it waits on a 429, seconds (default 30) → `rate_limited`. */
  maxWaitSeconds?: number | undefined;
  /** Cancels solving, paying (before the payment starts) and waiting → `aborted`. */
  signal?: AbortSignal | undefined;
  /**
   * Ways through a 402 it may take, in order of preference (default `["pow"]`: proof of work
   * only). A way may need options of its own (see its payer's options in `PayerOptions`).
   */
  pay?: PayerName[] | undefined;
}

/**
 * Options of `withTollbooth`: the resolver's own and those each payer reads (`PayerOptions`,
 * payers/index.ts: e.g. `maxDifficulty`, `maxSolveMs`, `onSolve` for proof of work; a wallet
 * or a signer and spending limits for the paid ways).
 */
export interface WithTollboothOptions extends ResolverOptions, PayerOptions {}

/**
 * Wrap `fetch` with the tollbooth resolver.
 * @param fetchImpl the underlying fetch (default `globalThis.fetch`)
 * @param options limits, callbacks and the ways through (`pay` and each way's options); see
 *   `WithTollboothOptions`
 * @returns a `FetchLike` for `StreamableHTTPClientTransport`'s `fetch` option
 * @throws TypeError at once for `pay` naming an unknown way, or a way of `pay` without valid
 *   options of its own (a missing wallet or signer, no networks or assets, negative or
 *   non-positive limits: each payer's `check`); (from the returned function) TollboothError —
 *   see `TollboothErrorCode`
 */
export function withTollbooth(fetchImpl: FetchLike = (u, i) => globalThis.fetch(u, i), options: WithTollboothOptions = {}): FetchLike {
  const pay = checkPayerOptions(options.pay, options);
  const resolver: Resolver = {
    fetch: fetchImpl,
    payers: createPayers(pay, options, options.signal),
    kept: new KeptCredentials(),
    maxWaitSeconds: options.maxWaitSeconds ?? 30,
    signal: options.signal,
  };
  return async function tollboothFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    return new Call(resolver, url, init).run();
  };
}
