/**
 * The proof-of-work payer (docs/wire-contract.md §1–2): reads a `PowChallenge`, refuses one
 * harder than `maxDifficulty`, else solves it and hands the resolver a `Tollbooth-Solution`
 * to send once with the retried request — the challenge's parameters exactly as received
 * (without the scheme) plus `nonce="…"`, redeemed in the same round trip.
 */
import { POW_SCHEME } from "../../../../shared/wire/pow.ts";
import { SOLUTION_HEADER } from "../../../../shared/wire/headers.ts";
import { solvePow, type PowSolution, type SolveOptions } from "../solver/solve-pow.ts";
import type { Choice, OfferedChallenge, PayContext, Payer } from "./payer.ts";

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

/** Options of {@link powPayer}. */
export interface PowPayerOptions {
  /** Most leading zero bits it will work for (default 24); harder → refusal `too_hard`. */
  maxDifficulty?: number;
  /** Time budget of one solve, milliseconds (default 60 000) → `TollboothError("solve_timeout")`. */
  maxSolveMs?: number;
  /** Cancels solving → `TollboothError("aborted")`. */
  signal?: AbortSignal | undefined;
  /** Called after each solve. */
  onSolve?: ((event: SolveEvent) => void) | undefined;
  /** The solver (default `solvePow` from solver/solve-pow.ts). */
  solve?: ((salt: string, difficulty: number, options: SolveOptions) => Promise<PowSolution>) | undefined;
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
    handles: (scheme) => scheme.toLowerCase() === POW_SCHEME.toLowerCase(),
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
