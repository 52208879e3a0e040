/**
 * Exact fixed-point numbers for the origin ceiling (shared/limits/origin-*.ts).
 *
 * A quantity is an integer count of **µunits** (1 unit = 1,000,000 µunits; a unit is one
 * JSON-RPC message forwarded to the origin) and a rate is an integer count of **µunits per
 * millisecond** (numerically: thousandths of a unit per second). Refilling for a whole number
 * of milliseconds is then an integer product, and a capacity or a rate split into parts
 * (classes, shards) gives integer parts that add up to the whole exactly: nothing is created
 * or lost by rounding. Every value stays below 2^53 (`Number.MAX_SAFE_INTEGER`) for
 * capacities and rates up to `MAX_UNITS` (10^9 units, 10^9 units per second).
 */
import type { BucketConfig } from "./bucket.ts";

/** µunits per unit. */
export const MICRO = 1_000_000;
/** Parts per million: the form of every fraction (a class's guarantee, a reserve, a share). */
export const PPM = 1_000_000;
/** Largest capacity (units) and rate (units per second) accepted. */
export const MAX_UNITS = 1_000_000_000;

/** A bucket in exact form: `cap` µunits, `rate` µunits per millisecond (both integers ≥ 0). */
export interface MicroBucket {
  readonly cap: number;
  readonly rate: number;
}

/**
 * A policy bucket (`capacity` units, `refillPerSecond` units/s) in exact form. The rate is
 * rounded to the nearest thousandth of a unit per second.
 * @throws RangeError when the capacity is not an integer in [1, MAX_UNITS] or the rate is
 *   below 0.001 units/s (it would round to nothing) or above MAX_UNITS
 */
export function microBucket(config: BucketConfig): MicroBucket {
  const { capacity, refillPerSecond } = config;
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_UNITS)
    throw new RangeError(`capacity ${capacity}: expected an integer in [1, ${MAX_UNITS}] (units)`);
  if (!(refillPerSecond >= 0.0005) || refillPerSecond > MAX_UNITS)
    throw new RangeError(`refillPerSecond ${refillPerSecond}: expected a number in [0.001, ${MAX_UNITS}] (units per second)`);
  return { cap: capacity * MICRO, rate: Math.round(refillPerSecond * 1000) };
}

/**
 * A fraction in [0, 1] as parts per million, rounded to the nearest.
 * @throws RangeError outside [0, 1] or not a number
 */
export function toPpm(fraction: number): number {
  if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`${fraction}: expected a fraction in [0, 1]`);
  return Math.round(fraction * PPM);
}

/**
 * `floor(x × ppm / 10^6)`, exact for integers 0 ≤ x ≤ 2^53 and 0 ≤ ppm ≤ 10^6 (the product
 * itself could pass 2^53, so it is split: x = q·10^6 + r).
 */
export function mulPpm(x: number, ppm: number): number {
  let q = Math.floor(x / PPM);
  let r = x - q * PPM;
  // Division of a large integer may round: correct q so that 0 ≤ r < 10^6.
  if (r < 0) {
    q -= 1;
    r += PPM;
  } else if (r >= PPM) {
    q += 1;
    r -= PPM;
  }
  return q * ppm + Math.floor((r * ppm) / PPM);
}

/**
 * Split the integer `total` into integer parts proportional to `weights` (largest
 * remainder; ties to the lower index): the parts are ≥ 0 and add up to `total` exactly.
 * All-zero (or empty-sum) weights split it evenly.
 * @param total an integer ≥ 0 (µunits or µunits/ms)
 * @param weights numbers ≥ 0, at least one
 * @throws RangeError when `weights` is empty or holds a negative or non-finite number
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  if (weights.length === 0) throw new RangeError("apportion: no weights");
  for (const w of weights) if (!(w >= 0 && Number.isFinite(w))) throw new RangeError(`apportion: weight ${w} is not a finite number ≥ 0`);
  const sum = weights.reduce((a, b) => a + b, 0);
  const w = sum > 0 ? weights : weights.map(() => 1);
  const wsum = sum > 0 ? sum : weights.length;
  const raw = w.map((x) => (total * x) / wsum);
  const parts = raw.map((x) => Math.max(0, Math.floor(x)));
  let left = total - parts.reduce((a, b) => a + b, 0);
  // Floating error can make the floors overshoot by a few: take them back from the largest parts.
  while (left < 0) {
    let i = 0;
    for (let j = 1; j < parts.length; j++) if (parts[j]! > parts[i]!) i = j;
    const d = Math.min(parts[i]!, -left);
    parts[i]! -= d;
    left += d;
  }
  if (left > 0) {
    const order = raw.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (let k = 0; left > 0; k = (k + 1) % order.length, left--) parts[order[k]![1]]! += 1;
  }
  return parts;
}
