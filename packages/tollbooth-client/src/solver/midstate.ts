/**
 * Nonce layout and per-batch precomputation for the proof-of-work search (see docs/solver.md).
 *
 * The message is UTF-8(salt) ‖ nonce, the nonce `width` ASCII decimal digits (leading zeros
 * allowed, wire contract: 1–32 digits). The salt's full 64-byte blocks are hashed once (the
 * midstate). A nonce is `outer` (width−4 digits, fixed for a batch) followed by `inner`
 * (4 digits, 0000–9999, the batch's 10 000 tries). The width is chosen so that the inner
 * digits fill exactly one big-endian message word `j` of the final block, so per batch:
 *  - every other word of the final block (salt tail, outer digits, 0x80 padding, bit
 *    length) is fixed; if the tail crosses a block boundary the first tail block is fixed
 *    too and is hashed once per batch (so a try is always one compression, never two);
 *  - rounds 0..j−1 do not read word j: their result is computed once per batch;
 *  - schedule words 16..t0−1 do not depend on word j: computed once per batch.
 * A try then costs schedule words t0..63 and rounds j..63. Widths are ranked by that cost.
 */
import { compressBlock, expand, IV, rounds } from "./sha256.ts";

/** Tries per batch: the four inner digits. */
export const BATCH = 10_000;

/** Estimated cost of one round and one schedule word, in vector operations (for ranking widths). */
const ROUND_COST = 35;
const SCHEDULE_COST = 21;

/** One way to lay the nonce out after a given salt. */
export interface NonceLayout {
  /** Nonce length in ASCII digits (5–32). */
  width: number;
  /** Word of the final block holding the four inner digits (0–12). */
  j: number;
  /** First schedule word (≥ 16) that depends on word j. */
  t0: number;
  /** Whether the tail spans two blocks (the first is hashed once per batch). */
  twoBlocks: boolean;
  /** Batches available: 10^(width−4), capped at 2^53. */
  batches: number;
}

/** A salt prepared for searching: its bytes, midstate and nonce layouts (best first). */
export interface SaltPlan {
  /** UTF-8 bytes of the salt. */
  bytes: Uint8Array;
  /** Bytes covered by the midstate: 64 × ⌊length/64⌋. */
  midLength: number;
  /** SHA-256 chaining state after the salt's full blocks (8 words). */
  mid: Int32Array;
  /** Valid layouts, cheapest per try first (ties: shorter nonce first). */
  layouts: NonceLayout[];
}

/** What the kernel needs for one batch (written by `prepareBatch`). */
export interface Batch {
  /** Chaining state before the final block (added to the result: feed-forward), 8 words. */
  mid: Int32Array;
  /** Working variables a..h after rounds 0..j−1 of the final block, 8 words. */
  state: Int32Array;
  /** Schedule words 0..t0−1 of the final block (word j is overwritten per try), 64 words. */
  w: Int32Array;
}

/** First schedule word ≥ 16 that depends on word j (FIPS 180-4 §6.2.2 step 1). */
function firstDependent(j: number): number {
  const dep = new Array<boolean>(64).fill(false);
  dep[j] = true;
  for (let t = 16; t < 64; t++) {
    dep[t] = dep[t - 2]! || dep[t - 7]! || dep[t - 15]! || dep[t - 16]!;
    if (dep[t]) return t;
  }
  return 64;
}

/**
 * Hash the salt's full blocks and list the nonce layouts that fit after its tail.
 * A width is valid when the inner digits end on a word boundary (tail + width ≡ 0 mod 4),
 * and the padding (0x80 and the 8-byte length) fits after the nonce in the inner digits' block.
 */
export function planSalt(salt: string): SaltPlan {
  const bytes = new TextEncoder().encode(salt);
  const midLength = bytes.length - (bytes.length % 64);
  const mid = IV.slice();
  const w = new Int32Array(64);
  for (let o = 0; o < midLength; o += 64) compressBlock(mid, bytes, o, w);
  const tail = bytes.length - midLength;
  const layouts: (NonceLayout & { cost: number })[] = [];
  for (let width = 5; width <= 32; width++) {
    const end = tail + width; // byte after the nonce, from the start of the tail
    if (end % 4 !== 0) continue;
    let j: number;
    if (end <= 52)
      j = end / 4 - 1; // one block: 0x80 and the length fit in bytes end..63
    else if (end >= 68 && end <= 116)
      j = (end - 64) / 4 - 1; // inner digits in the second block
    else continue; // inner digits end in bytes 53..64 of the first block: no room for padding there
    const t0 = firstDependent(j);
    const batches = Math.min(10 ** (width - 4), 2 ** 53);
    layouts.push({ width, j, t0, twoBlocks: end > 64, batches, cost: (64 - j) * ROUND_COST + (64 - t0) * SCHEDULE_COST });
  }
  layouts.sort((x, y) => x.cost - y.cost || x.width - y.width);
  return { bytes, midLength, mid, layouts: layouts.map(({ cost: _cost, ...layout }) => layout) };
}

/** A fresh `Batch` to pass to `prepareBatch`. */
export function newBatch(): Batch {
  return { mid: new Int32Array(8), state: new Int32Array(8), w: new Int32Array(64) };
}

const tailScratch = new Uint8Array(128);
const wScratch = new Int32Array(64);

/**
 * Fill `batch` for the nonces `outerDigits ‖ 0000` … `outerDigits ‖ 9999`.
 * @param outerDigits exactly `layout.width − 4` ASCII digits
 * @throws RangeError if `outerDigits` has the wrong length or a non-digit
 */
export function prepareBatch(plan: SaltPlan, layout: NonceLayout, outerDigits: string, batch: Batch): void {
  if (outerDigits.length !== layout.width - 4 || !/^[0-9]*$/.test(outerDigits)) {
    throw new RangeError(`outer digits "${outerDigits}" do not fit a ${layout.width}-digit nonce`);
  }
  const tailLength = plan.bytes.length - plan.midLength;
  const blockBytes = layout.twoBlocks ? 128 : 64;
  const t = tailScratch;
  t.fill(0, 0, blockBytes);
  t.set(plan.bytes.subarray(plan.midLength), 0);
  let p = tailLength;
  for (let i = 0; i < outerDigits.length; i++) t[p++] = outerDigits.charCodeAt(i);
  for (let i = 0; i < 4; i++) t[p++] = 0x30; // inner digits: the kernel writes word j per try
  t[p] = 0x80;
  const bits = (plan.bytes.length + layout.width) * 8;
  const hi = Math.floor(bits / 2 ** 32);
  const lo = bits >>> 0;
  const l = blockBytes - 8;
  t[l] = hi >>> 24;
  t[l + 1] = hi >>> 16;
  t[l + 2] = hi >>> 8;
  t[l + 3] = hi;
  t[l + 4] = lo >>> 24;
  t[l + 5] = lo >>> 16;
  t[l + 6] = lo >>> 8;
  t[l + 7] = lo;

  batch.mid.set(plan.mid);
  if (layout.twoBlocks) compressBlock(batch.mid, t, 0, wScratch);
  const o = blockBytes - 64;
  const w = batch.w;
  for (let i = 0; i < 16; i++) {
    const b = o + 4 * i;
    w[i] = (t[b]! << 24) | (t[b + 1]! << 16) | (t[b + 2]! << 8) | t[b + 3]!;
  }
  expand(w, 16, layout.t0);
  batch.state.set(batch.mid);
  rounds(batch.state, w, 0, layout.j);
}

/** Big-endian message word of the four ASCII digits of `inner` (0–9999, zero-padded). */
export function innerWord(inner: number): number {
  const d0 = Math.floor(inner / 1000) % 10,
    d1 = Math.floor(inner / 100) % 10,
    d2 = Math.floor(inner / 10) % 10,
    d3 = inner % 10;
  return ((0x30 + d0) << 24) | ((0x30 + d1) << 16) | ((0x30 + d2) << 8) | (0x30 + d3);
}

/** The nonce string for `outerDigits` and inner counter `inner` (0–9999). */
export function nonceOf(outerDigits: string, inner: number): string {
  return outerDigits + String(inner).padStart(4, "0");
}
