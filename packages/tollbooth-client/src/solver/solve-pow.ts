/**
 * Proof-of-work solver for `PowChallenge` (see shared/wire/pow.ts, docs/wire-contract.md):
 * finds a nonce of ASCII decimal digits (5–32 of them, leading zeros allowed) such that
 * SHA-256(UTF-8(salt ‖ nonce)) has at least `difficulty` leading zero bits.
 *
 * How (details in docs/solver.md): the salt's full 64-byte blocks are hashed once (midstate);
 * nonces are a fixed-width prefix plus a 4-digit counter laid out so that the counter fills one
 * message word of the final block, so each try is one compression minus the rounds and schedule
 * words that precede that word (solver/midstate.ts). The loop runs in WebAssembly SIMD
 * (4 nonces per pass), else scalar WebAssembly, else JS (solver/kernel.ts); on several
 * cores in a pool of workers (solver/pool.ts) or on the calling thread, yielding to the
 * event loop every ~20 ms so an `AbortSignal` and the time budget are honoured.
 */

import { TollboothError } from "../errors.ts";
import type { KernelPath } from "./kernel.ts";
import { loadKernel } from "./kernel.ts";
import { processorCount, searchInWorkers, workersAvailable } from "./pool.ts";
import { createSearch, kernelDigest } from "./search.ts";

export type { KernelPath } from "./kernel.ts";

/** Below this difficulty (bits) `solvePow` stays on the calling thread by default: 2^17 tries take ~15 ms on one core. */
export const MULTI_THREAD_MIN_DIFFICULTY = 18;

/** Options of `solvePow`. */
export interface SolveOptions {
  /** Stop with `TollboothError("aborted")` when this fires. */
  signal?: AbortSignal | undefined;
  /** Time budget in milliseconds (default: no limit); past it, `TollboothError("solve_timeout")`. */
  maxMs?: number | undefined;
  /**
   * Threads to search on (≥ 1). 1 runs on the calling thread; more use the worker pool.
   * Default: every logical processor when `difficulty` ≥ `MULTI_THREAD_MIN_DIFFICULTY`
   * (18 bits) and the runtime has workers, else 1.
   */
  threads?: number | undefined;
  /** Force the kernel: "wasm-simd", "wasm-scalar" or "js" (default: the fastest this runtime runs). */
  kernel?: KernelPath | undefined;
}

/** A found nonce and what it took. */
export interface PowSolution {
  /** ASCII decimal digits. */
  nonce: string;
  /** Hashes computed (tries), over all threads. */
  hashes: number;
  /** Wall time in milliseconds. */
  ms: number;
  /**
   * Threads that searched: 1 on the calling thread, else the pool's worker count (a solve
   * that asked for workers but could not start them reports 1). Set by `solvePow`; a
   * custom solver may leave it out.
   */
  threads?: number;
}

/** Calling-thread time between two yields to the event loop, in milliseconds. */
const SLICE_MS = 20;

/** Let timers, I/O and abort events run: setImmediate in Node, a MessageChannel hop elsewhere. */
function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (cb: () => void) => void };
  if (g.setImmediate) return new Promise((resolve) => g.setImmediate!(resolve));
  if (typeof MessageChannel === "function") {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function aborted(): TollboothError {
  return new TollboothError("aborted", "proof-of-work solve aborted");
}

function timedOut(maxMs: number | undefined): TollboothError {
  return new TollboothError("solve_timeout", `no nonce found within ${maxMs} ms`);
}

async function solveHere(salt: string, difficulty: number, options: SolveOptions, started: number): Promise<PowSolution> {
  const deadline = options.maxMs === undefined ? Infinity : started + options.maxMs;
  const search = createSearch(await loadKernel(options.kernel), { salt, difficulty, first: 0, stride: 1 });
  for (;;) {
    if (options.signal?.aborted) throw aborted();
    const sliceEnd = Math.min(performance.now() + SLICE_MS, deadline);
    const step = search.run(() => performance.now() >= sliceEnd);
    if (step.kind === "found") return { nonce: step.nonce, hashes: search.hashes, ms: performance.now() - started, threads: 1 };
    if (step.kind === "exhausted") throw new TollboothError("solve_timeout", "every nonce of up to 32 digits was tried");
    if (performance.now() >= deadline) throw timedOut(options.maxMs);
    await yieldToEventLoop();
  }
}

/**
 * Find a nonce for `salt` at `difficulty` bits. Expected tries: 2^difficulty.
 * @param salt the challenge's `salt` (any string; hashed as UTF-8)
 * @param difficulty leading zero bits, integer 0–256
 * @throws TollboothError `aborted` (the signal fired) or `solve_timeout` (past `maxMs`);
 *   RangeError for a difficulty outside 0–256 or `threads` < 1;
 *   Error when `kernel` names a path this runtime cannot run
 */
export async function solvePow(salt: string, difficulty: number, options: SolveOptions = {}): Promise<PowSolution> {
  if (!Number.isInteger(difficulty) || difficulty < 0 || difficulty > 256) throw new RangeError(`difficulty ${difficulty} is not 0–256`);
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1)) {
    throw new RangeError(`threads ${options.threads} is not an integer ≥ 1`);
  }
  const started = performance.now();
  if (options.signal?.aborted) throw aborted();
  const threads = options.threads ?? (difficulty >= MULTI_THREAD_MIN_DIFFICULTY && workersAvailable() ? processorCount() : 1);
  if (threads > 1 && workersAvailable()) {
    let outcome;
    try {
      outcome = await searchInWorkers({ salt, difficulty, threads, kernel: options.kernel, signal: options.signal, maxMs: options.maxMs });
    } catch (error) {
      if (options.kernel !== undefined) throw error;
      // Workers could not start here (e.g. a bundle without the worker file): use this thread.
      return solveHere(salt, difficulty, options, started);
    }
    if (outcome.reason === "found") return { nonce: outcome.nonce!, hashes: outcome.hashes, ms: performance.now() - started, threads };
    if (outcome.reason === "aborted") throw aborted();
    if (outcome.reason === "timeout") throw timedOut(options.maxMs);
    throw new TollboothError("solve_timeout", "every nonce of up to 32 digits was tried");
  }
  return solveHere(salt, difficulty, options, started);
}

/**
 * Test hook: SHA-256(UTF-8(salt ‖ nonce)) as the solver's kernel computes it (midstate, batch
 * preparation, final compression), to check against a reference such as node:crypto.
 * @param nonce digits of a width the kernel uses after this salt (`planSalt(salt).layouts`)
 * @returns 32 bytes
 * @throws RangeError for other nonces; Error when `kernel` names a path this runtime cannot run
 */
export async function digestFor(salt: string, nonce: string, kernel?: KernelPath): Promise<Uint8Array> {
  return kernelDigest(await loadKernel(kernel), salt, nonce);
}
