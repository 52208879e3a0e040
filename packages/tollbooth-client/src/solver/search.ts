/**
 * The batch loop of the proof-of-work search, run on the calling thread or in a worker:
 * walks the salt's nonce layouts (best first) and, within each, the batches
 * `first, first+stride, first+2·stride, …` (so `stride` workers split the nonce space
 * without overlap), hashing each batch's 10 000 nonces with a `Kernel`.
 */
import { leadingZeroBits } from "../../../../shared/wire/pow.ts";
import type { Kernel } from "./kernel.ts";
import { BATCH, type NonceLayout, newBatch, nonceOf, planSalt, prepareBatch, type SaltPlan } from "./midstate.ts";
import { digestBytes } from "./sha256.ts";

/** What one searcher covers. */
export interface SearchTask {
  /** The challenge salt (any string; hashed as UTF-8). */
  salt: string;
  /** Required leading zero bits, 0–256. */
  difficulty: number;
  /** This searcher's first batch (0 ≤ first < stride). */
  first: number;
  /** Batches between two of this searcher's batches (the number of searchers). */
  stride: number;
}

/** How a `run` ended: a nonce, `stop()` said so (between batches), or every layout is done. */
export type SearchStep = { kind: "found"; nonce: string } | { kind: "paused" } | { kind: "exhausted" };

/** A resumable search over one task. */
export interface Search {
  /** Hash batches until a nonce is found, `stop()` returns true (checked after each batch), or the space is exhausted. */
  run(stop: () => boolean): SearchStep;
  /** Nonces hashed so far. */
  readonly hashes: number;
}

/** Largest H0 (unsigned) that can start a digest with `difficulty` zero bits (exact for ≤ 32 bits). */
export function targetFor(difficulty: number): number {
  return difficulty >= 32 ? 0 : 2 ** (32 - difficulty) - 1;
}

/** The outer digits of batch `index` of `layout`. */
function outerDigits(layout: NonceLayout, index: number): string {
  return String(index).padStart(layout.width - 4, "0");
}

/** Start a search for `task` on `kernel`. */
export function createSearch(kernel: Kernel, task: SearchTask): Search {
  const plan = planSalt(task.salt);
  const target = targetFor(task.difficulty);
  const batch = newBatch();
  let layoutIndex = 0;
  let index = task.first;
  let hashes = 0;
  return {
    get hashes() {
      return hashes;
    },
    run(stop) {
      for (;;) {
        const layout = plan.layouts[layoutIndex];
        if (layout === undefined) return { kind: "exhausted" };
        if (index >= layout.batches) {
          layoutIndex++;
          index = task.first;
          continue;
        }
        const outer = outerDigits(layout, index);
        index += task.stride;
        prepareBatch(plan, layout, outer, batch);
        kernel.load(batch, layout);
        for (let start = 0; ; ) {
          const hit = kernel.search(start, BATCH, target);
          if (hit < 0) {
            hashes += BATCH - start;
            break;
          }
          hashes += hit - start + 1;
          // Only H0 was compared; past 32 bits the remaining words decide.
          if (task.difficulty <= 32 || leadingZeroBits(digestBytes(kernel.digest(hit))) >= task.difficulty) {
            return { kind: "found", nonce: nonceOf(outer, hit) };
          }
          start = hit + 1;
        }
        if (stop()) return { kind: "paused" };
      }
    },
  };
}

/**
 * Test hook: every inner counter of one batch whose digest has ≥ `difficulty` leading zero
 * bits, found by `kernel` through the same search-and-resume path `createSearch` uses.
 */
export function batchHits(kernel: Kernel, plan: SaltPlan, layout: NonceLayout, outer: string, difficulty: number): number[] {
  const batch = newBatch();
  prepareBatch(plan, layout, outer, batch);
  kernel.load(batch, layout);
  const hits: number[] = [];
  for (let start = 0; start < BATCH; ) {
    const hit = kernel.search(start, BATCH, targetFor(difficulty));
    if (hit < 0) break;
    if (leadingZeroBits(digestBytes(kernel.digest(hit))) >= difficulty) hits.push(hit);
    start = hit + 1;
  }
  return hits;
}

/**
 * SHA-256(UTF-8(salt ‖ nonce)) computed by `kernel` (midstate, batch preparation and the
 * kernel's final compression), for checking it against a reference implementation.
 * @throws RangeError when `nonce` is not digits of a width the kernel lays out after this salt
 *   (see `planSalt(salt).layouts`)
 */
export function kernelDigest(kernel: Kernel, salt: string, nonce: string): Uint8Array {
  const plan = planSalt(salt);
  const layout = plan.layouts.find((l) => l.width === nonce.length);
  if (layout === undefined || !/^[0-9]+$/.test(nonce))
    throw new RangeError(`"${nonce}" is not a nonce width the kernel uses after this salt`);
  const batch = newBatch();
  prepareBatch(plan, layout, nonce.slice(0, -4), batch);
  kernel.load(batch, layout);
  return digestBytes(kernel.digest(Number(nonce.slice(-4))));
}
