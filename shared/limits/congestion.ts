/**
 * Congestion pricing (docs/allocation.md, "The congestion curve"): as the origin ceiling
 * fills, the free tier shrinks and the price of a pass rises; as the load falls, both come
 * back. Pure functions of the **load level** ℓ ∈ [0, 1]: the demand on the origin (units per
 * second asked by every class, refused ones included) over the ceiling's refill rate, capped
 * at 1 and smoothed (`smoothLevel`: quick to rise, slow to fall), computed by the root object
 * (shared/limits/origin-root.ts) and carried to every isolate in its lease grants, so no
 * request pays a call for it.
 *
 * The curve: below `start` nothing changes. Above it, with x = (ℓ − start) / (1 − start) in
 * [0, 1], rounded down to a hundredth (so prices move in steps, not on every request):
 * - **free share** `1 − x·(1 − minFreeShare)`: a free request costs `ceil(cost / share)` units of
 *   the caller's free bucket (`freeCost`), so free callers meet a 402 earlier, and their stored
 *   tokens are intact when the share comes back;
 * - **extra bits** `floor(x · maxExtraBits)`: added to a proof-of-work challenge's difficulty
 *   (each bit doubles the expected work);
 * - **price factor** `maxPriceFactor^x`: L402 sats and x402 atomic units per bundle (or per
 *   unit) are multiplied by it, rounded up (`scaleSats`, `scaleAtomic`); equal steps of load
 *   multiply the price by equal ratios, like the work of a proof.
 * Mapping: mCaptcha raises difficulty with site-wide visitor levels; Aperture lets a backend
 * price dynamically; here both follow the origin's load, and paid traffic also gets priority
 * (shared/limits/origin-classes.ts).
 */

/** The curve's settings (`allocation.congestion` in the policy). */
export interface CongestionCurve {
  /** Load level (0–1) below which nothing changes. */
  readonly start: number;
  /** Free share at full load (0 < share ≤ 1): a free request then costs `1 / share` times as much. */
  readonly minFreeShare: number;
  /** Bits added to the proof-of-work difficulty at full load (integer 0–16). */
  readonly maxExtraBits: number;
  /** Price multiplier at full load (≥ 1). */
  readonly maxPriceFactor: number;
  /** Seconds over which the level follows a rise of the load (time constant, > 0). */
  readonly riseSeconds: number;
  /** Seconds over which the level follows a fall of the load (time constant, > 0): slower, so prices do not flap. */
  readonly fallSeconds: number;
}

/** Defaults: from half load, up to a tenth of the free budget, +4 bits (16× the work), 4× the price. */
export const DEFAULT_CONGESTION: CongestionCurve = {
  start: 0.5,
  minFreeShare: 0.1,
  maxExtraBits: 4,
  maxPriceFactor: 4,
  riseSeconds: 2,
  fallSeconds: 15,
};

/**
 * Check a curve.
 * @throws TypeError naming the field (`allocation.congestion.<field>`) and what was expected
 */
export function checkCongestionCurve(c: CongestionCurve): void {
  const bad = (f: string, v: unknown, want: string) => new TypeError(`allocation.congestion.${f}: ${v} is not ${want}`);
  if (!(c.start >= 0 && c.start < 1)) throw bad("start", c.start, "a level in [0, 1)");
  if (!(c.minFreeShare > 0 && c.minFreeShare <= 1)) throw bad("minFreeShare", c.minFreeShare, "a share in (0, 1]");
  if (!(Number.isInteger(c.maxExtraBits) && c.maxExtraBits >= 0 && c.maxExtraBits <= 16))
    throw bad("maxExtraBits", c.maxExtraBits, "an integer in [0, 16]");
  if (!(c.maxPriceFactor >= 1 && c.maxPriceFactor <= 1000)) throw bad("maxPriceFactor", c.maxPriceFactor, "a factor in [1, 1000]");
  if (!(c.riseSeconds > 0 && c.riseSeconds <= 3600)) throw bad("riseSeconds", c.riseSeconds, "a number of seconds in (0, 3600]");
  if (!(c.fallSeconds > 0 && c.fallSeconds <= 3600)) throw bad("fallSeconds", c.fallSeconds, "a number of seconds in (0, 3600]");
}

/** What a load level means for a request. */
export interface Congestion {
  /** The load level, 0–1, to two decimals. */
  level: number;
  /** Share of a caller's free bucket a free request may use (1: all of it). */
  freeShare: number;
  /** Bits added to proof-of-work challenges. */
  extraBits: number;
  /** Multiplier of L402 and x402 prices (1: list price), to three decimals. */
  priceFactor: number;
  /** The price factor in parts per million, for exact integer prices. */
  priceFactorPpm: number;
}

/**
 * The curve at load level `level`.
 * @param level ℓ, clamped to [0, 1] (NaN counts as 0)
 */
export function congestion(level: number, curve: CongestionCurve): Congestion {
  const l = level >= 0 ? Math.min(1, level) : 0;
  // x in hundredths, rounded down (a little slack for ℓ computed as a ratio).
  const steps = Math.min(100, Math.max(0, Math.floor(((l - curve.start) / (1 - curve.start)) * 100 + 1e-9)));
  const x = steps / 100;
  const priceFactorPpm = Math.round(curve.maxPriceFactor ** x * 1e6);
  return {
    level: Math.round(l * 100) / 100,
    freeShare: Math.round((1 - x * (1 - curve.minFreeShare)) * 1e6) / 1e6,
    extraBits: Math.floor(x * curve.maxExtraBits + 1e-9),
    priceFactor: Math.round(priceFactorPpm / 1000) / 1000,
    priceFactorPpm,
  };
}

/**
 * Units of a caller's free bucket a free request takes at free share `share`:
 * `ceil(cost / share)`, at most the bucket's capacity (so every request stays admissible to a
 * full bucket), and 0 for cost 0.
 * @param cost the request's cost (units, integer ≥ 0)
 * @param capacity the free bucket's capacity (units)
 */
export function freeCost(cost: number, share: number, capacity: number): number {
  if (cost <= 0) return 0;
  return Math.min(Math.max(cost, capacity), Math.ceil(cost / share - 1e-9));
}

/**
 * An L402 price at a price factor: `ceil(sats × factor)`, exact.
 * @param sats the list price (integer ≥ 1)
 * @param factorPpm `Congestion.priceFactorPpm`
 */
export function scaleSats(sats: number, factorPpm: number): number {
  return Number((BigInt(sats) * BigInt(factorPpm) + 999_999n) / 1_000_000n);
}

/**
 * An x402 amount (atomic units of the asset, decimal string) at a price factor, rounded up, exact.
 * @param amount a positive integer as a decimal string (`"10000"`)
 * @param factorPpm `Congestion.priceFactorPpm`
 * @throws SyntaxError when `amount` is not a decimal integer
 */
export function scaleAtomic(amount: string, factorPpm: number): string {
  if (!/^[0-9]+$/.test(amount)) throw new SyntaxError(`scaleAtomic: ${JSON.stringify(amount)} is not a decimal integer`);
  return ((BigInt(amount) * BigInt(factorPpm) + 999_999n) / 1_000_000n).toString();
}

/**
 * Move a smoothed level toward `target` over `dtMs`: exponentially, with the curve's
 * `riseSeconds` when rising and `fallSeconds` when falling.
 * @param level the current level (0–1)
 * @param target the load just measured (clamped to [0, 1])
 * @param dtMs milliseconds since `level` was computed (≤ 0: unchanged)
 */
export function smoothLevel(
  level: number,
  target: number,
  dtMs: number,
  curve: Pick<CongestionCurve, "riseSeconds" | "fallSeconds">,
): number {
  const t = target >= 0 ? Math.min(1, target) : 0;
  if (!(dtMs > 0)) return level;
  const tau = (t > level ? curve.riseSeconds : curve.fallSeconds) * 1000;
  return level + (t - level) * (1 - Math.exp(-dtMs / tau));
}

/**
 * `error.data.congestion` of a 402 (or 429) refused or priced under load: the level and what
 * it changed, and why, in words.
 * @param refusedAt where the request was refused: `"origin"` (its class had no room at the
 *   origin ceiling), `"budget"` (its free bucket, shrunk by the free share), or null (priced only)
 */
export function congestionData(c: Congestion, refusedAt: "origin" | "budget" | null): Record<string, unknown> {
  const why =
    refusedAt === "origin"
      ? `the origin is at ${Math.round(c.level * 100)} % of its ceiling: this request's class has no room now; paid and verified traffic is served first`
      : refusedAt === "budget"
        ? `the origin is at ${Math.round(c.level * 100)} % of its ceiling: free requests may use ${Math.round(c.freeShare * 100)} % of their budget`
        : `the origin is at ${Math.round(c.level * 100)} % of its ceiling`;
  return { level: c.level, freeShare: c.freeShare, extraBits: c.extraBits, priceFactor: c.priceFactor, why };
}
