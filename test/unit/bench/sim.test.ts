/**
 * The simulation (bench/sim/, `npm run sim`) at a small scale, so it does not rot: 12 simulated
 * seconds at 3,000 requests/s over 20 locations. Asserts what must hold whatever the scale —
 * the ceiling in every window, every caller within its allowance, paid traffic never refused
 * at the origin, the congestion curve rising during the flood — not how fast it ran.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { defaultConfig, runSim, type SimResult, windowAllowance } from "../../../bench/sim/run.ts";
import type { Stats } from "../../../bench/sim/stats.ts";

describe("npm run sim, small", () => {
  let r: SimResult;
  let s: Stats;
  beforeAll(() => {
    r = runSim(
      defaultConfig({ seed: 7, rps: 3000, minutes: 0.2, locations: 20, isolatesPerLocation: 2, shards: 2, flood: { from: 0.1, to: 0.6 } }),
    );
    s = r.stats;
  });

  it("forwards no more than the ceiling allows in any 1 s or 10 s window, and uses it under the flood", () => {
    expect(s.worstWindow(10).units).toBeLessThanOrEqual(windowAllowance(r.ceiling, 1000));
    expect(s.worstWindow(100).units).toBeLessThanOrEqual(windowAllowance(r.ceiling, 10_000));
    // The flood asks far more than the ceiling: the origin is kept busy (work-conserving), not starved.
    expect(s.worstWindow(10).units).toBeGreaterThanOrEqual((r.ceiling.rate / 1000) * 0.9);
  });

  it("admits no caller above its allowance", () => {
    expect(r.worstCaller.ratio).toBeLessThanOrEqual(1);
  });

  it("never refuses a paying customer at the origin, and sheds free traffic first", () => {
    expect(s.refused[0]!.origin).toBe(0);
    expect(s.refused[3]!.origin).toBeGreaterThan(0);
    expect(s.forwarded[0]).toBeGreaterThan(0);
  });

  it("raises the price of a pass during the flood: the level passes the curve's start, free refusals solve proofs of work", () => {
    expect(s.peakLevel).toBeGreaterThan(r.config.curve.start);
    expect(s.solves).toBeGreaterThan(0);
    expect(s.forwarded[2]).toBeGreaterThan(0); // worked traffic: solved and admitted
  });
});
