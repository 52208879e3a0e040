/**
 * Seeded randomness for the simulation (bench/sim/): the same seed gives the same run.
 */

/** A PRNG (mulberry32): returns numbers in [0, 1). */
export type Random = () => number;

/** mulberry32 seeded with a 32-bit integer. */
export function seeded(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n). */
export function below(rand: Random, n: number): number {
  return Math.floor(rand() * n);
}

/** A Poisson-distributed count of mean `mean` (Knuth below 30, a rounded normal above). */
export function poisson(rand: Random, mean: number): number {
  if (mean <= 0) return 0;
  if (mean < 30) {
    const limit = Math.exp(-mean);
    let k = 0;
    let p = rand();
    while (p > limit) {
      k++;
      p *= rand();
    }
    return k;
  }
  // Box–Muller.
  const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return Math.max(0, Math.round(mean + Math.sqrt(mean) * z));
}

/** Draw indexes with probability proportional to `weights` in O(1) (Walker's alias method). */
export function aliasSampler(weights: readonly number[]): (rand: Random) => number {
  const n = weights.length;
  const sum = weights.reduce((a, b) => a + b, 0);
  const prob = new Float64Array(n);
  const alias = new Int32Array(n);
  const scaled = weights.map((w) => (w * n) / sum);
  const small: number[] = [];
  const large: number[] = [];
  scaled.forEach((p, i) => {
    (p < 1 ? small : large).push(i);
  });
  while (small.length > 0 && large.length > 0) {
    const s = small.pop()!;
    const l = large.pop()!;
    prob[s] = scaled[s]!;
    alias[s] = l;
    scaled[l] = scaled[l]! + scaled[s]! - 1;
    (scaled[l]! < 1 ? small : large).push(l);
  }
  for (const i of [...small, ...large]) prob[i] = 1;
  return (rand) => {
    const i = Math.floor(rand() * n);
    return rand() < prob[i]! ? i : alias[i]!;
  };
}
