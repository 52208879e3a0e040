/**
 * The proof-of-work payer (docs/wire-contract.md §1–2): reads a `PowChallenge`, refuses one
 * harder than `maxDifficulty`, else solves it and hands the resolver a `Tollbooth-Solution`
 * to send once with the retried request — the challenge's parameters exactly as received
 * (without the scheme) plus `nonce="…"`, redeemed in the same round trip.
 */

import { SOLUTION_HEADER } from "../../../../shared/wire/headers.ts";
import { POW_SCHEME } from "../../../../shared/wire/pow.ts";
import { type PowSolution, type SolveOptions, solvePow } from "../solver/solve-pow.ts";
import type { ChallengeResponse, Choice, OfferedChallenge, PayContext, Payer, PayerDefinition } from "./payer.ts";

/** What the payer reports after solving a challenge (the resolver's `onSolve` event). */
export interface SolveEvent {
  /** The request URL that was challenged. */
  url: string;
  /** Leading zero bits asked. */
  difficulty: number;
  /** Hashes computed. */
  hashes: number;
  /** Solve time, milliseconds. */
  ms: number;
  /** Threads that searched (`PowSolution.threads`; absent when a custom solver did not say). */
  threads?: number | undefined;
}

/** What the proof-of-work payer reads from `withTollbooth`'s options. */
export interface PowResolverOptions {
  /** Most leading zero bits it will work for (default 24); harder → refusal `too_hard` (`challenge_too_hard`). */
  maxDifficulty?: number | undefined;
  /** Time budget of one solve, milliseconds (default 60 000) → `TollboothError("solve_timeout")`. */
  maxSolveMs?: number | undefined;
  /** Called after each solve (for logs and metrics). */
  onSolve?: ((event: SolveEvent) => void) | undefined;
  /** The solver (default `solvePow` from solver/solve-pow.ts). */
  solve?: ((salt: string, difficulty: number, options: SolveOptions) => Promise<PowSolution>) | undefined;
}

/** Options of {@link powPayer}: its part of `withTollbooth`'s options and the resolver's signal. */
export interface PowPayerOptions extends PowResolverOptions {
  /** Cancels solving → `TollboothError("aborted")`. */
  signal?: AbortSignal | undefined;
}

/**
 * A payer for `PowChallenge` challenges.
 *
 * `choose` refuses `unreadable` (no `salt`, a `difficulty` that is not an integer, an
 * `algorithm` other than `sha256`) and `too_hard` (`difficulty` > `maxDifficulty`); otherwise
 * its way is `kind: "once"`, whose `obtain()` solves (throwing `TollboothError`
 * `solve_timeout` / `aborted` from the solver) and returns `{ "tollbooth-solution": … }`.
 */
export function powPayer(options: PowPayerOptions = {}): Payer {
  const maxDifficulty = options.maxDifficulty ?? 24;
  const maxSolveMs = options.maxSolveMs ?? 60_000;
  const solve = options.solve ?? solvePow;
  return {
    name: "pow",
    proof: "solution",
    readsBody: false,
    // The caller's difficulty rose while it solved: the 402's fresh challenge asks the current one.
    renewOn: ["solution_too_easy"],
    offered: (response: ChallengeResponse) => response.challenges.filter((c) => c.scheme.toLowerCase() === POW_SCHEME.toLowerCase()),
    choose(challenge: OfferedChallenge, context: PayContext): Choice {
      const { salt, difficulty: bits, algorithm } = challenge.params;
      const difficulty = Number(bits);
      if (salt === undefined || !Number.isInteger(difficulty) || (algorithm ?? "sha256").toLowerCase() !== "sha256") {
        return { ok: false, reason: "unreadable", message: `unreadable challenge: ${challenge.scheme} ${challenge.text}` };
      }
      if (difficulty > maxDifficulty) {
        return { ok: false, reason: "too_hard", message: `challenge asks ${difficulty} bits, more than maxDifficulty ${maxDifficulty}` };
      }
      return {
        ok: true,
        way: {
          kind: "once",
          async obtain() {
            const solution = await solve(salt, difficulty, { signal: options.signal, maxMs: maxSolveMs });
            options.onSolve?.({ url: context.url, difficulty, hashes: solution.hashes, ms: solution.ms, threads: solution.threads });
            // The challenge's parameters exactly as received, plus the nonce.
            return { [SOLUTION_HEADER]: `${challenge.text}, nonce="${solution.nonce}"` };
          },
        },
      };
    },
  };
}

/** The proof-of-work way through (`pay: ["pow"]`, the default). */
export const pow: PayerDefinition<"pow", PowResolverOptions> = {
  name: "pow",
  check: () => {},
  create: ({ maxDifficulty, maxSolveMs, onSolve, solve }, signal) => powPayer({ maxDifficulty, maxSolveMs, onSolve, solve, signal }),
  claims401: () => false,
};
