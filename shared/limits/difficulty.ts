/**
 * Per-caller adaptive difficulty (pure; the caller's Durable Object stores the score).
 *
 * Each redeemed solve adds 1 to a score that decays exponentially with a half-life of
 * `halfLifeSeconds`; the next challenge asks `difficulty + floor(score / solvesPerStep)`
 * leading zero bits, at most `maxExtraBits` more than `difficulty` and never above 32.
 * A caller that solves steadily at `r` solves per second settles at a score of
 * `r × halfLife / ln 2` (capped at `maxExtraBits × solvesPerStep`); a quiet caller's score
 * halves every half-life, so its difficulty falls back one step at a time.
 * docs/adaptive-difficulty.md has the measured curve (`npm run bench:adaptive`).
 */

/** Settings of `challenge.adaptive` in the policy. */
export interface AdaptiveConfig {
  /** Decayed solves per extra bit (≥ 1). */
  readonly solvesPerStep: number;
  /** Half-life of the score, seconds (≥ 1). */
  readonly halfLifeSeconds: number;
  /** Most bits added to the base difficulty (0: adaptation off). */
  readonly maxExtraBits: number;
}

/** A decayed solve count as of `atMs` (unix milliseconds). */
export interface SolveScore {
  readonly score: number;
  readonly atMs: number;
}

/** No solves yet. */
export const NO_SOLVES: SolveScore = { score: 0, atMs: 0 };

/**
 * The score decayed to `nowMs`. A clock that went backwards decays nothing.
 * @param nowMs unix milliseconds
 */
export function decayed(s: SolveScore, halfLifeSeconds: number, nowMs: number): number {
  const elapsedMs = Math.max(0, nowMs - s.atMs);
  return s.score * 2 ** (-elapsedMs / (halfLifeSeconds * 1000));
}

/**
 * The score after one more solve at `nowMs`, at most `scoreCap(config)`: a caller at the
 * top difficulty gains nothing by solving more, and once quiet it falls back one bit
 * every `log2(n / (n − 1))` half-lives from the top (n steps), never stuck there for
 * longer than its last burst deserves.
 */
export function addSolve(s: SolveScore, config: AdaptiveConfig, nowMs: number): SolveScore {
  return { score: Math.min(scoreCap(config), decayed(s, config.halfLifeSeconds, nowMs) + 1), atMs: Math.max(nowMs, s.atMs) };
}

/** Highest score kept: the one that asks the most extra bits (`maxExtraBits × solvesPerStep`), at least 1. */
export function scoreCap(config: AdaptiveConfig): number {
  return Math.max(1, config.maxExtraBits * config.solvesPerStep);
}

/**
 * Leading zero bits the next challenge asks of a caller with decayed score `score`.
 * @param base the plan's `challenge.difficulty`, bits (1–32)
 * @returns bits, an integer in [base, min(32, base + maxExtraBits)]
 */
export function difficultyFor(base: number, config: AdaptiveConfig, score: number): number {
  const extra = Math.min(config.maxExtraBits, Math.floor(score / config.solvesPerStep + 1e-9));
  return Math.min(32, base + Math.max(0, extra));
}
