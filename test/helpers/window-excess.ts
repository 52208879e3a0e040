/** The window check of the origin-ceiling property tests (test/unit/origin-*.test.ts). */
import { MICRO, type MicroBucket } from "../../shared/limits/micro-units.ts";

/**
 * Largest excess over cap + rate × T of any closed window [t_i, t_j] between two spends (µunits;
 * ≤ 0 when the ceiling held), in O(n): the excess of [i, j] is (S_j − rate·t_j) − (S_{i−1} − rate·t_i) − cap
 * with S the running sum, so a suffix maximum of S_j − rate·t_j gives every window at once.
 */
export function worstWindowExcess(spends: ReadonlyArray<readonly [number, number]>, share: MicroBucket): number {
  const s = [...spends].sort((a, b) => a[0] - b[0]);
  if (s.length === 0) return -Infinity;
  const t0 = s[0]![0];
  const cum: number[] = [];
  let sum = 0;
  for (const [, u] of s) cum.push((sum += u * MICRO));
  let best = -Infinity;
  let worst = -Infinity;
  for (let i = s.length - 1; i >= 0; i--) {
    const t = s[i]![0] - t0;
    best = Math.max(best, cum[i]! - share.rate * t);
    worst = Math.max(worst, best - ((i > 0 ? cum[i - 1]! : 0) - share.rate * t) - share.cap);
  }
  return worst;
}
