/**
 * Proof-of-work solver for `PowChallenge` (see shared/challenge.ts): finds a decimal
 * nonce such that SHA-256(UTF-8(salt ‖ nonce)) has at least `difficulty` leading zero bits.
 *
 * Runs in any JavaScript runtime (Node, browsers, Workers) on @noble/hashes: the hash
 * state over the salt is computed once and cloned per try. It yields to the event loop
 * between batches so an `AbortSignal` and the time budget are honoured.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { leadingZeroBits } from "./challenge.ts";
import { utf8 } from "./encoding.ts";
import { TollboothError } from "./errors.ts";

/** Options of `solvePow`. */
export interface SolveOptions {
  /** Stop with `TollboothError("aborted")` when this fires. */
  signal?: AbortSignal | undefined;
  /** Time budget in milliseconds (default: no limit); past it, `TollboothError("solve_timeout")`. */
  maxMs?: number | undefined;
}

/** A found nonce and what it took. */
export interface PowSolution {
  /** ASCII decimal digits. */
  nonce: string;
  /** Hashes computed (tries). */
  hashes: number;
  /** Wall time in milliseconds. */
  ms: number;
}

/** Tries between two yields to the event loop. */
const BATCH = 4096;

/**
 * Find a nonce for `salt` at `difficulty` bits. Expected tries: 2^difficulty.
 * @throws TollboothError `aborted` or `solve_timeout`; RangeError for a difficulty outside 0–256
 */
export async function solvePow(salt: string, difficulty: number, options: SolveOptions = {}): Promise<PowSolution> {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > 256) throw new RangeError(`difficulty ${difficulty} is not 0–256`);
  const started = performance.now();
  const deadline = options.maxMs === undefined ? Infinity : started + options.maxMs;
  if (options.signal?.aborted) throw new TollboothError("aborted", "proof-of-work solve aborted");
  const prefix = sha256.create().update(utf8(salt));
  for (let nonce = 0; ; ) {
    for (const end = nonce + BATCH; nonce < end; nonce++) {
      // The state over the salt is reused: each try hashes only the nonce.
      const digest = prefix.clone().update(utf8(String(nonce))).digest();
      if (leadingZeroBits(digest) >= difficulty) {
        return { nonce: String(nonce), hashes: nonce + 1, ms: performance.now() - started };
      }
    }
    if (options.signal?.aborted) throw new TollboothError("aborted", "proof-of-work solve aborted");
    if (performance.now() > deadline) throw new TollboothError("solve_timeout", `no nonce found within ${options.maxMs} ms`);
    await new Promise<void>((resolve) => setTimeout(resolve, 0));
  }
}
